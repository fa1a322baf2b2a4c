//! What the mail itself brings: attachments and the HTML part. Both come
//! from strangers, so an attachment is found only by a validated sha256 that
//! the attachments table knows (no name from the request reaches the disk),
//! only JPEG/PNG/GIF/WebP are served inline, and the HTML part is sanitized
//! and served as its own sandboxed document that can load nothing at all.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use super::{url_encode, App, WebError, CONTENT_SECURITY_POLICY};

/// An attachment as the ticket page links it.
#[derive(Debug, Serialize)]
pub(crate) struct FileLink {
    pub url: String,
    pub name: String,
    pub content_type: String,
    pub size: String,
}

/// A media type without its parameters, lower case: `image/jpeg`.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The image types every browser shows and that cannot carry script; the
/// type to serve them with. Anything else (HEIC, PDF, SVG, ...) is a
/// download.
pub(crate) fn inline_image_type(content_type: &str) -> Option<&'static str> {
    let essence = essence(content_type);
    match essence.as_str() {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => Some("image/jpeg"),
        "image/png" => Some("image/png"),
        "image/gif" => Some("image/gif"),
        "image/webp" => Some("image/webp"),
        _ => None,
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The name to show and save an attachment under when its sender gave
/// none, with the extension that lets the agent's computer open it: a mail
/// forwarded as an attachment becomes `forwarded-message.eml`, not a file
/// with no extension that nothing opens.
pub(crate) fn unnamed_file_name(content_type: &str) -> String {
    let essence = essence(content_type);
    let name = match essence.as_str() {
        "message/rfc822" | "message/global" => "forwarded-message.eml",
        "text/rfc822-headers" => "message-headers.txt",
        "application/ms-tnef" | "application/vnd.ms-tnef" => "winmail.dat",
        "application/pdf" => "document.pdf",
        "text/plain" => "text.txt",
        "text/html" => "page.html",
        "text/calendar" => "invite.ics",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "image.jpg",
        "image/png" => "image.png",
        "image/gif" => "image.gif",
        "image/webp" => "image.webp",
        "image/heic" => "image.heic",
        "image/heif" => "image.heif",
        "video/quicktime" => "video.mov",
        "video/mp4" => "video.mp4",
        _ => "attachment.bin",
    };
    name.to_string()
}

/// `attachment; filename="ascii"; filename*=UTF-8''utf8` (RFC 6266), with
/// anything that could end the header or the quoted string replaced. An
/// attachment its sender gave no name gets one from its type.
fn disposition(kind: &str, filename: Option<&str>, content_type: &str) -> HeaderValue {
    let fallback;
    let name = match filename.filter(|n| !n.trim().is_empty()) {
        Some(name) => name,
        None => {
            fallback = unnamed_file_name(content_type);
            &fallback
        }
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ';' | '%')) || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        url_encode(name)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[derive(Deserialize)]
pub(crate) struct AttachmentParams {
    /// The attachment row the link was made for.
    id: Option<i64>,
}

/// `/attachments/{sha256}?id=N`: the bytes of a stored attachment, under
/// the name and type of row N. The same bytes can arrive under several
/// names (one photo sent twice, a logo in many mails); without `id` the
/// first row's are used.
pub(crate) async fn attachment(
    State(app): State<App>,
    Path(sha256): Path<String>,
    Query(params): Query<AttachmentParams>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if !is_sha256(&sha256) {
        return Err(WebError::NotFound("There is no such attachment.".into()));
    }
    // Content-addressed: the bytes behind a digest never change, so the
    // digest is the ETag. The browser may keep them but must ask again
    // (no-cache), through the session check: after a logout, a shared
    // desk's browser shows no photo from its cache.
    let etag = format!("\"{sha256}\"");
    let cache_headers = |h: &mut HeaderMap| {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
    };
    let known = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().trim_start_matches("W/") == etag);
    let (content_type, filename, bytes) = app
        .db(move |store, _| {
            // A row of other bytes is no such attachment either.
            let meta: Option<(String, Option<String>)> = store
                .conn()
                .prepare_cached(
                    "SELECT content_type, filename FROM attachments
                     WHERE sha256 = ?1 AND (?2 IS NULL OR id = ?2) ORDER BY id LIMIT 1",
                )?
                .query_row(rusqlite::params![&sha256, params.id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((content_type, filename)) = meta else {
                return Err(WebError::NotFound("There is no such attachment.".into()));
            };
            if known {
                return Ok((content_type, filename, None));
            }
            // Only a 64-hex digest that the table knows becomes a path.
            let bytes = store.read_blob(&sha256)?;
            Ok((content_type, filename, Some(bytes)))
        })
        .await?;
    let Some(bytes) = bytes else {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        cache_headers(res.headers_mut());
        return Ok(res);
    };
    let (served_type, kind) = match inline_image_type(&content_type) {
        Some(t) => (t, "inline"),
        None => ("application/octet-stream", "attachment"),
    };
    let mut res = Response::new(Body::from(bytes));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(served_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(kind, filename.as_deref(), &content_type),
    );
    cache_headers(h);
    if let Ok(csp) = HeaderValue::from_str(&format!("{CONTENT_SECURITY_POLICY}; sandbox")) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(res)
}

/// Mail HTML without anything active or remote: no script, style element,
/// form or event handler survives ammonia; image sources are dropped (a
/// remote image is a tracking pixel; the photos are shown from the
/// attachments instead), and relative links, which would point at this
/// server, are removed.
pub(crate) fn sanitize_mail_html(html: &str) -> String {
    ammonia::Builder::default()
        .url_relative(ammonia::UrlRelative::Deny)
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer nofollow"))
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            ("img", "src" | "srcset") => None,
            _ => Some(Cow::Borrowed(value)),
        })
        .clean(html)
        .to_string()
}

/// The mail frame may be framed by our own pages only, is a sandbox even
/// when opened on its own, and loads nothing: no image, font or script.
const MESSAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'self'; sandbox";

#[derive(Deserialize)]
pub(crate) struct MessageParams {
    id: String,
}

/// `/message.html?id=MESSAGE-ID`: a message's HTML part, sanitized, as a
/// document for the ticket page's sandboxed iframe.
pub(crate) async fn message_html(
    State(app): State<App>,
    Query(params): Query<MessageParams>,
) -> Result<Response, WebError> {
    let html = app
        .db(move |store, _| {
            let found: Option<Option<String>> = store
                .conn()
                .query_row(
                    "SELECT html_body FROM messages WHERE message_id = ?1",
                    [&params.id],
                    |r| r.get(0),
                )
                .optional()?;
            found
                .flatten()
                .ok_or_else(|| WebError::NotFound("That message has no HTML part.".into()))
        })
        .await?;
    let clean = tokio::task::spawn_blocking(move || sanitize_mail_html(&html))
        .await
        .map_err(|e| WebError::Task(e.to_string()))?;
    let page = app.render(
        "message.html",
        minijinja::context! { body => minijinja::Value::from_safe_string(clean) },
    )?;
    let mut res = (StatusCode::OK, axum::response::Html(page)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MESSAGE_CSP),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_images_are_inline() {
        assert_eq!(inline_image_type("image/JPEG; name=x"), Some("image/jpeg"));
        assert_eq!(inline_image_type("image/webp"), Some("image/webp"));
        assert_eq!(inline_image_type("image/heic"), None);
        assert_eq!(inline_image_type("image/svg+xml"), None);
        assert_eq!(inline_image_type("text/html"), None);
    }

    #[test]
    fn digests_are_validated() {
        assert!(is_sha256(&"0a".repeat(32)));
        assert!(!is_sha256(&"0A".repeat(32)));
        assert!(!is_sha256("../../etc/passwd"));
        assert!(!is_sha256(&format!("{}/", "0".repeat(63))));
    }

    #[test]
    fn filenames_cannot_break_the_header() {
        let h = disposition("attachment", Some("a\"b;\r\nc é.pdf"), "application/pdf");
        let text = h.to_str().unwrap();
        assert!(text.starts_with("attachment; filename=\"a_b___c _.pdf\"; filename*=UTF-8''"));
        assert!(!text.contains('\n'));
    }

    #[test]
    fn unnamed_attachments_get_a_name_that_opens() {
        assert_eq!(
            disposition("attachment", None, "message/rfc822"),
            "attachment; filename=\"forwarded-message.eml\"; filename*=UTF-8''forwarded-message.eml"
        );
        assert_eq!(
            disposition("inline", Some(" "), "image/jpeg"),
            "inline; filename=\"image.jpg\"; filename*=UTF-8''image.jpg"
        );
        assert_eq!(
            unnamed_file_name("application/x-whatever"),
            "attachment.bin"
        );
    }

    #[test]
    fn mail_html_loses_script_and_remote_images() {
        let clean = sanitize_mail_html(
            "<p onclick=\"x()\">Hi<script>alert(1)</script></p>\
             <img src=\"http://tracker.example/p.gif\" alt=\"logo\">\
             <div style=\"background:url(http://x.example/y)\">s</div>\
             <a href=\"/logout\">rel</a><a href=\"https://whatnot.com\">ok</a>",
        );
        assert!(!clean.contains("script"), "{clean}");
        assert!(!clean.contains("onclick"), "{clean}");
        assert!(!clean.contains("tracker"), "{clean}");
        assert!(!clean.contains("x.example"), "{clean}");
        assert!(!clean.contains("/logout"), "{clean}");
        assert!(clean.contains("alt=\"logo\""), "{clean}");
        assert!(clean.contains("https://whatnot.com"), "{clean}");
    }
}

//! Raw bytes to `InboundMessage`: the fields the rest of ticketd needs, taken
//! out of mail-parser's tree once, so nothing downstream touches MIME.

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};

use super::large_parts;
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

/// One attachment as the sender sent it. `filename` is metadata only: it is
/// never used to build a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundAttachment {
    pub filename: Option<String>,
    pub content_type: String,
    pub content_id: Option<String>,
    pub data: Vec<u8>,
    /// sha256 (hex) and size of the content, when `data` was not kept
    /// (`parse_lean`, for large parts).
    pub digest: Option<(String, usize)>,
}

impl InboundAttachment {
    /// The content's size in bytes.
    pub fn size(&self) -> usize {
        self.digest
            .as_ref()
            .map_or(self.data.len(), |(_, size)| *size)
    }

    /// Whether this is a photo the buyer sent: an image by its type, or a
    /// phone's photo sent as `application/octet-stream` (HEIC from an
    /// iPhone) by its name. A small image shown inline (a logo or icon in
    /// a mail signature, `image001.png`) is not one.
    pub fn is_photo(&self) -> bool {
        const PHOTO_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "heic", "heif", "webp", "dng"];
        let by_type = self.content_type.to_ascii_lowercase().starts_with("image/");
        let by_name = self
            .filename
            .as_deref()
            .and_then(|f| f.rsplit_once('.'))
            .is_some_and(|(_, ext)| PHOTO_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)));
        let signature_art = self.content_id.is_some() && self.size() < 16 * 1024;
        (by_type || by_name) && !signature_art
    }
}

/// Headers that say whether a machine sent the message (RFC 3834 and
/// de-facto ones), kept raw so `classify` can decide without the parser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineHeaders {
    pub auto_submitted: Option<String>,
    pub precedence: Option<String>,
    pub x_auto_response_suppress: Option<String>,
    pub x_autoreply: bool,
    pub list_id: Option<String>,
    pub list_unsubscribe: bool,
    /// `Some("")` for `Return-Path: <>`, the mark of a bounce.
    pub return_path: Option<String>,
    pub content_type: Option<String>,
    /// An Authentication-Results header (added by the receiving mail
    /// server) says the From line failed DMARC: it is probably forged.
    pub dmarc_failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The Message-ID without angle brackets, or `sha256:<hex>` of the raw
    /// bytes when the mail has none: the key that makes filing idempotent.
    pub dedupe_key: String,
    /// The Message-ID as the sender wrote it (without brackets), if any.
    pub message_id: Option<String>,
    /// The name its raw bytes are stored under: `raw_name`.
    pub raw_blob: String,
    pub raw_size: usize,
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<InboundAttachment>,
    /// Mail attached whole (message/rfc822: Outlook's and Thunderbird's
    /// "forward as attachment"): each one's Subject line and text, for
    /// search and for the facts the buyer did not type.
    pub attached_text: String,
    pub machine: MachineHeaders,
    /// What could not be read; the message is still filed with its raw bytes.
    pub problems: Vec<String>,
}

impl InboundMessage {
    /// Completes a message from `parse_lean`.
    pub fn set_raw_blob(&mut self, name: String) {
        self.raw_blob = name;
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The name a raw mail is stored under (`blobs/` or the `blobs` table):
/// its BLAKE3 hash in hex, 64 characters like the sha256 names of
/// attachments and of mail stored before. BLAKE3 because every byte of
/// every mail goes through it: 2.5x the speed of sha256 here, on the
/// largest part of an ingest's CPU time (BENCHMARKS.md). Attachments keep
/// sha256, and so does the dedupe key of a mail without Message-ID.
pub fn raw_name(raw: &[u8]) -> String {
    blake3::hash(raw).to_hex().to_string()
}

/// What re-deliveries of a mail without Message-ID are known by: the
/// sha256 of its raw bytes (stores filed before `raw_name` have it too).
fn raw_dedupe_key(raw: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(raw))
}

fn strip_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let mut out = Vec::new();
    match value {
        HeaderValue::Text(t) => out.extend(split_ids(t)),
        HeaderValue::TextList(list) => {
            for t in list {
                out.extend(split_ids(t));
            }
        }
        _ => {}
    }
    out.retain(|s| !s.is_empty());
    out
}

fn split_ids(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .map(strip_id)
        .filter(|s| !s.is_empty())
        .collect()
}

fn addresses(addr: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    addr.map(|a| a.iter().filter_map(address_of).collect())
        .unwrap_or_default()
}

/// The address of one mailbox, lower case, as written on the wire. A bare
/// quoted local part (`From: "anna de vries"@buyer.test`) comes back from
/// mail-parser as a display name and `@buyer.test`: joined again here.
fn address_of(a: &mail_parser::Addr<'_>) -> Option<String> {
    let address = a.address()?.trim();
    let joined;
    let address = match (address.strip_prefix('@'), a.name()) {
        (Some(_), Some(local)) if !local.is_empty() => {
            joined = format!("{local}{address}");
            &joined
        }
        _ => address,
    };
    Some(quote_local_part(&address.to_ascii_lowercase()))
}

/// An address as it is written on the wire: mail-parser returns a quoted
/// local part (`"anna de vries"@buyer.test`) without its quotes, which no
/// mail library takes as an address. Quotes it again when it is not a
/// plain dot-atom (RFC 5322 3.4.1).
pub fn quote_local_part(address: &str) -> String {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return address.to_string();
    };
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        return address.to_string();
    }
    let dot_atom = !local.is_empty()
        && local
            .split('.')
            .all(|w| !w.is_empty() && w.chars().all(atext));
    if dot_atom {
        return address.to_string();
    }
    let mut quoted = String::with_capacity(local.len() + domain.len() + 4);
    quoted.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push_str("\"@");
    quoted.push_str(domain);
    quoted
}

/// Whether an Authentication-Results value reports `dmarc=fail` (RFC 8601;
/// white space around `=` allowed, case ignored). Only a failure counts: a
/// sender can write any header, but one that says its own mail failed
/// harms only itself, and the receiving server's own header is always
/// there beside a forged "pass".
fn dmarc_fails(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    // "dmarc = fail" as "dmarc=fail": no white space next to an `=`.
    let mut joined = String::with_capacity(lower.len());
    for part in lower.split('=') {
        if !joined.is_empty() {
            joined.truncate(joined.trim_end().len());
            joined.push('=');
            joined.push_str(part.trim_start());
        } else {
            joined.push_str(part);
        }
    }
    joined
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '(' | ')'))
        .any(|item| item == "dmarc=fail")
}

fn header_text(msg: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    msg.header_raw(name).map(|s| s.trim().to_string())
}

fn to_utc(d: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    if !d.is_valid() {
        return None;
    }
    Utc.timestamp_opt(d.to_timestamp(), 0).single()
}

/// Parses raw bytes. Never fails: a message mail-parser cannot make sense of
/// becomes an `InboundMessage` with empty fields and a problem noted, so it is
/// still stored and findable by its raw bytes.
pub fn parse(raw: &[u8]) -> InboundMessage {
    parse_with(raw, raw_name(raw), nonce(), false)
}

/// `parse` for the ingest, which hashes the raw bytes on another thread
/// meanwhile and keeps attachments in the raw mail: `raw_blob` is empty
/// until `InboundMessage::set_raw_blob` gives it, and a large part's
/// attachment has a `digest` instead of its `data`.
pub fn parse_lean(raw: &[u8]) -> InboundMessage {
    parse_with(raw, String::new(), nonce(), true)
}

/// A value no mail can contain by design: the placeholders for large parts
/// carry it (`large_parts::mask`). Random, once per process.
fn nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // Only collisions are at stake (a mail naming a placeholder
            // is parsed again as it is): the clock will do.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            bytes = t.as_nanos().to_le_bytes();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

fn parse_with(raw: &[u8], raw_blob: String, nonce: &str, digest: bool) -> InboundMessage {
    // Large photos and documents are decoded outside mail-parser (see
    // large_parts); whenever that does not come out exactly, the mail is
    // parsed again as it is.
    match parse_masked(raw, &raw_blob, nonce, digest) {
        Some(parsed) => parsed,
        None => parse_whole(raw, raw_blob),
    }
}

/// `parse` by way of `large_parts`: `None` when the mail has no large part
/// to take out, or not every placeholder came back as an attachment.
pub fn parse_taking_out_large_parts(raw: &[u8]) -> Option<InboundMessage> {
    parse_masked(raw, &raw_name(raw), nonce(), false)
}

fn parse_masked(raw: &[u8], raw_blob: &str, nonce: &str, digest: bool) -> Option<InboundMessage> {
    let mut masked = if digest {
        large_parts::mask_digested(raw, nonce)?
    } else {
        large_parts::mask(raw, nonce)?
    };
    let msg = MessageParser::default().parse(&masked.raw)?;
    from_tree(raw, raw_blob, &msg, Some(&mut masked.parts))
}

/// As `parse`, with every part decoded by mail-parser itself: the
/// reference the large-part decoding is tested against.
pub fn parse_unmasked(raw: &[u8]) -> InboundMessage {
    parse_whole(raw, raw_name(raw))
}

fn parse_whole(raw: &[u8], raw_blob: String) -> InboundMessage {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return InboundMessage {
            dedupe_key: raw_dedupe_key(raw),
            message_id: None,
            raw_blob,
            raw_size: raw.len(),
            from_address: None,
            from_name: None,
            to: vec![],
            cc: vec![],
            subject: String::new(),
            date: None,
            in_reply_to: vec![],
            references: vec![],
            text: String::from_utf8_lossy(raw).into_owned(),
            html: None,
            attachments: vec![],
            attached_text: String::new(),
            machine: MachineHeaders::default(),
            problems: vec!["not a parseable e-mail message".to_string()],
        };
    };
    from_tree(raw, &raw_blob, &msg, None).expect("no placeholders to put back")
}

/// The fields ticketd needs from mail-parser's tree of `raw`. With `large`,
/// the tree is of the masked copy: each placeholder attachment gets its
/// decoded bytes back, and `None` says they did not all come out exactly
/// once as attachments.
fn from_tree(
    raw: &[u8],
    raw_blob: &str,
    msg: &mail_parser::Message<'_>,
    mut large: Option<&mut Vec<large_parts::Part>>,
) -> Option<InboundMessage> {
    let raw_blob = raw_blob.to_string();
    let mut problems = Vec::new();

    let message_id = msg.message_id().map(strip_id).filter(|s| !s.is_empty());
    if message_id.is_none() {
        problems.push("no Message-ID header".to_string());
    }
    let from = msg.from().and_then(|a| a.first());
    let from_address = from.and_then(address_of).filter(|s| !s.is_empty());
    let from_name = from
        .and_then(|a| a.name())
        .map(|s| {
            if s.contains('\u{FFFD}') {
                // Re-read the display name from the raw From header.
                let raw_from = raw_header_value(raw, "From").unwrap_or_default();
                let fixed = decode_header_bytes(&raw_from);
                let name = fixed
                    .split('<')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"')
                    .trim()
                    .to_string();
                if name.is_empty() {
                    s.trim().to_string()
                } else {
                    name
                }
            } else {
                s.trim().to_string()
            }
        })
        .filter(|s| !s.is_empty());

    let html = body_html(msg);
    let mut recovered_part = None;
    let mut no_text_part = false;
    let mut text = match body_text(msg) {
        Some(t) => t,
        None => match recover_text(msg) {
            Some((i, t)) => {
                problems.push("malformed text part; decoded leniently".to_string());
                recovered_part = Some(i);
                t
            }
            // Said below, unless winmail.dat holds the body.
            None => {
                no_text_part = true;
                String::new()
            }
        },
    };
    // A text part that only says "view this in HTML" tells nothing: read
    // the HTML instead.
    if let Some(h) = &html {
        if text.split_whitespace().count() < 15 {
            let from_html = super::html::to_text(h);
            if from_html.split_whitespace().count() > text.split_whitespace().count() {
                text = from_html;
            }
        }
    }

    let attached = attached_mails(msg);
    // A large part taken out of a mail attached whole would leave its
    // placeholder in that mail's own bytes (the .eml download): such a
    // mail is parsed as it is.
    if let Some(parts) = large.as_deref() {
        let nested_placeholder = attached
            .iter()
            .flat_map(|m| m.attachments())
            .any(|a| parts.iter().any(|p| p.marker == a.contents()));
        if nested_placeholder {
            return None;
        }
    }
    let mut put_back = 0;
    // The files of a mail attached whole (the shop's mail with its photos,
    // forwarded as an attachment), and of the mails attached to that one,
    // are this message's too: shown on the ticket page, and counted as
    // photos sent. (The attached mails themselves are files of the level
    // above: the .eml of the first level holds the rest.)
    let nested = attached.iter().flat_map(|&m| {
        m.attachments()
            .filter(|a| a.message().is_none())
            .map(move |a| (m, a))
    });
    let attachments = msg
        .attachments()
        .enumerate()
        .filter(|(i, _)| Some(*i) != recovered_part)
        .map(|(_, part)| (msg, part))
        .chain(nested)
        .map(|(owner, part)| {
            let (data, digest) = match large.as_deref_mut().and_then(|l| {
                l.iter_mut()
                    .find(|p| !p.marker.is_empty() && p.marker == part.contents())
            }) {
                Some(p) => {
                    put_back += 1;
                    p.marker.clear();
                    (std::mem::take(&mut p.data), p.digest.take())
                }
                None => (part.contents().to_vec(), None),
            };
            (owner, part, data, digest)
        })
        .map(|(owner, part, data, digest)| InboundAttachment {
            data,
            digest,
            filename: part
                .attachment_name()
                .map(|name| match name.contains('\u{FFFD}') {
                    true => owner
                        .raw_message()
                        .get(part.raw_header_offset() as usize..part.raw_body_offset() as usize)
                        .and_then(continued_filename)
                        .unwrap_or_else(|| name.to_string()),
                    false => name.to_string(),
                })
                .and_then(|name| clean_filename(&name)),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".to_string())
                .to_ascii_lowercase(),
            content_id: part.content_id().map(strip_id),
        })
        .collect::<Vec<_>>();
    if large.is_some_and(|l| l.len() != put_back) {
        return None;
    }
    let text_missing = text.trim().is_empty();
    let (attachments, tnef_body) = unpack_winmail(attachments, text_missing, &mut problems);
    match tnef_body {
        // Outlook put the whole body in winmail.dat.
        Some(body) => text = body,
        None if no_text_part => problems.push("no text body".to_string()),
        None => {}
    }

    let attached_text = attached_messages(&attached);
    let return_path = msg.header_raw("Return-Path").map(strip_id);
    let machine = MachineHeaders {
        auto_submitted: header_text(msg, "Auto-Submitted"),
        precedence: header_text(msg, "Precedence"),
        x_auto_response_suppress: header_text(msg, "X-Auto-Response-Suppress"),
        x_autoreply: msg.header_raw("X-Autoreply").is_some()
            || msg.header_raw("X-Autorespond").is_some(),
        list_id: header_text(msg, "List-Id"),
        list_unsubscribe: msg.header_raw("List-Unsubscribe").is_some(),
        return_path,
        content_type: msg.content_type().map(|ct| {
            let mut s = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
            if let Some(rt) = ct.attribute("report-type") {
                s.push_str("; report-type=");
                s.push_str(rt);
            }
            s.to_ascii_lowercase()
        }),
        dmarc_failed: msg.headers_raw().any(|(name, value)| {
            name.eq_ignore_ascii_case("Authentication-Results") && dmarc_fails(value)
        }),
    };

    Some(InboundMessage {
        dedupe_key: message_id.clone().unwrap_or_else(|| raw_dedupe_key(raw)),
        message_id,
        raw_blob,
        raw_size: raw.len(),
        from_address,
        from_name,
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        subject: clean_header(
            msg.subject().unwrap_or(""),
            raw_header_value(raw, "Subject"),
        ),
        date: msg.date().and_then(to_utc),
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        text,
        html,
        attachments,
        attached_text,
        machine,
        problems,
    })
}

/// Outlook's `winmail.dat` gives way to the files inside it (the buyer's
/// photos, with their names), so an agent sees them and the ack counts
/// them. It stays as it came when it cannot be read, holds no file, or
/// holds an item that is not a file (an embedded Outlook item, an OLE
/// object), which only it carries. For a mail without text of its own
/// (`text_missing`), the body inside it is returned as the text; one that
/// cannot be read keeps `winmail.dat` too.
fn unpack_winmail(
    attachments: Vec<InboundAttachment>,
    text_missing: bool,
    problems: &mut Vec<String>,
) -> (Vec<InboundAttachment>, Option<String>) {
    use super::tnef::Body;
    if !attachments
        .iter()
        .any(|a| super::tnef::is_tnef(&a.content_type, a.filename.as_deref()))
    {
        return (attachments, None);
    }
    let mut body = None;
    let mut out = Vec::with_capacity(attachments.len());
    for a in attachments {
        if !super::tnef::is_tnef(&a.content_type, a.filename.as_deref()) || a.digest.is_some() {
            out.push(a);
            continue;
        }
        match super::tnef::files(&a.data) {
            Ok(contents) => {
                let mut keep = contents.files.is_empty();
                if text_missing && body.is_none() {
                    match contents.body() {
                        Body::Text(t) => body = Some(t),
                        Body::Unreadable => {
                            problems.push(
                                "the text in winmail.dat could not be read; kept as it came"
                                    .to_string(),
                            );
                            keep = true;
                        }
                        Body::None => {}
                    }
                }
                out.extend(contents.files.into_iter().map(|f| InboundAttachment {
                    filename: f.name.as_deref().and_then(clean_filename),
                    content_type: f.content_type,
                    content_id: None,
                    data: f.data,
                    digest: None,
                }));
                if contents.skipped > 0 {
                    problems.push(format!(
                        "winmail.dat holds {} item(s) that are not files; kept as it came",
                        contents.skipped
                    ));
                    keep = true;
                }
                if keep {
                    out.push(a);
                }
            }
            Err(e) => {
                problems.push(format!(
                    "winmail.dat could not be read ({e}); kept as it came"
                ));
                out.push(a);
            }
        }
    }
    (out, body)
}

/// How deep mails attached to attached mails are read: a forward of a
/// forward of the shop's mail is three.
const ATTACHED_DEPTH: usize = 5;

/// The mails attached whole to `msg`, and those attached to them, down to
/// ATTACHED_DEPTH levels, each followed by its own (as a mail client would
/// list them).
fn attached_mails<'a>(msg: &'a mail_parser::Message<'a>) -> Vec<&'a mail_parser::Message<'a>> {
    let attached = |m: &'a mail_parser::Message<'a>| {
        m.attachments()
            .filter_map(|p| p.message())
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    let mut next: Vec<_> = attached(msg).into_iter().rev().map(|m| (m, 1)).collect();
    while let Some((m, depth)) = next.pop() {
        out.push(m);
        if depth < ATTACHED_DEPTH {
            next.extend(attached(m).into_iter().rev().map(|n| (n, depth + 1)));
        }
    }
    out
}

/// Who wrote each of these mails attached whole (`attached_mails`), when,
/// its Subject and its text, one after another. (Its files are the
/// message's attachments.)
fn attached_messages(attached: &[&mail_parser::Message<'_>]) -> String {
    let mut text = String::new();
    for &nested in attached {
        // Who wrote it and when, as a mail client heads a forward.
        if let Some(from) = nested.from().and_then(|a| a.first()) {
            let address = from.address().unwrap_or_default();
            text.push_str("From: ");
            match from.name().filter(|n| !n.trim().is_empty()) {
                Some(name) => text.push_str(&format!("{name} <{address}>")),
                None => text.push_str(address),
            }
            text.push('\n');
        }
        if let Some(date) = nested.date() {
            text.push_str("Date: ");
            text.push_str(&date.to_rfc822());
            text.push('\n');
        }
        if let Some(subject) = nested.subject() {
            text.push_str("Subject: ");
            text.push_str(subject);
            text.push('\n');
        }
        if let Some(body) = body_text(nested) {
            text.push('\n');
            text.push_str(body.trim_end());
            text.push_str("\n\n");
        }
    }
    text
}

/// The text of every inline text part, in order: iOS Mail puts what the
/// buyer types after a photo in a text part of its own after the image.
/// `None` when the mail has no readable text part.
fn body_text(msg: &mail_parser::Message<'_>) -> Option<String> {
    let mut pieces = Vec::new();
    for (i, part) in msg.text_bodies().enumerate() {
        if !part.is_text() {
            // An inline image between the text parts.
            continue;
        }
        // An HTML part without a text alternative: mail-parser's own
        // conversion runs <div>s and table cells together.
        let repaired = repaired_text(msg, part);
        let t = match repaired.as_deref().or(part.text_contents()) {
            Some(html) if part.is_text_html() => Cow::Owned(super::html::to_text(html)),
            Some(text) if repaired.is_some() => Cow::Owned(text.to_string()),
            _ => match msg.body_text(i) {
                Some(t) => t,
                None => continue,
            },
        };
        let flowed = part.content_type().and_then(|ct| {
            ct.attribute("format")
                .filter(|f| f.eq_ignore_ascii_case("flowed"))
                .map(|_| {
                    ct.attribute("delsp")
                        .is_some_and(|d| d.eq_ignore_ascii_case("yes"))
                })
        });
        pieces.push(match flowed {
            Some(delsp) => unflow(&t, delsp),
            None => t.into_owned(),
        });
    }
    if pieces.len() <= 1 {
        return pieces.pop();
    }
    let mut text = String::new();
    for piece in pieces {
        if piece.trim().is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.truncate(text.trim_end().len());
            text.push_str("\n\n");
        }
        text.push_str(piece.trim_start_matches(['\r', '\n']));
    }
    Some(text)
}

/// The HTML of every inline part, in order (iOS Mail splits it around each
/// photo as it does the text). mail-parser synthesises an HTML body from
/// text; `None` unless at least one part is real HTML.
fn body_html(msg: &mail_parser::Message<'_>) -> Option<String> {
    if !msg.html_bodies().any(|p| p.is_text_html()) {
        return None;
    }
    let mut html = String::new();
    for (i, part) in msg.html_bodies().enumerate() {
        if part.is_text() {
            match repaired_text(msg, part) {
                Some(fixed) if part.is_text_html() => html.push_str(&fixed),
                _ => html.push_str(&msg.body_html(i)?),
            }
        }
    }
    Some(html)
}

/// A text part whose 8-bit content mail-parser could only read with
/// U+FFFD in it because it names no charset, `us-ascii`, or one nobody
/// knows (`unknown-8bit`): its bytes again, read as UTF-8 when they are,
/// else as Windows-1252 (the 8-bit text of Western mail clients), as
/// headers are read. `None` when the part reads well as it is.
fn repaired_text(
    msg: &mail_parser::Message<'_>,
    part: &mail_parser::MessagePart<'_>,
) -> Option<String> {
    if !part.text_contents()?.contains('\u{FFFD}') {
        return None;
    }
    let declared = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(|c| c.trim().to_ascii_lowercase());
    let unreliable = match declared.as_deref() {
        None => true,
        Some("us-ascii" | "ascii") => true,
        Some(c) => encoding_rs::Encoding::for_label(c.as_bytes()).is_none(),
    };
    if !unreliable {
        return None;
    }
    let start = part.raw_body_offset() as usize;
    let end = part.raw_end_offset() as usize;
    let body = msg.raw_message().get(start..end)?;
    let bytes = transfer_decoded(body, part.content_transfer_encoding())?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(&bytes).0.into_owned(),
    };
    Some(text)
}

/// A part's body decoded from its Content-Transfer-Encoding, leniently:
/// base64 ignores characters outside its alphabet (RFC 2045 6.8) and a
/// broken quoted-printable escape is kept as it is. `None` when base64
/// has nothing decodable in it.
fn transfer_decoded(body: &[u8], encoding: Option<&str>) -> Option<Vec<u8>> {
    use base64::Engine;
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        Some("base64") => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
                .collect();
            // A last group of 2 or 3 characters holds 1 or 2 bytes (its
            // padding was filtered out above); only a lone 1 is no byte.
            let usable = clean.len() - usize::from(clean.len() % 4 == 1);
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_allow_trailing_bits(true)
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            lenient.decode(&clean[..usable]).ok()
        }
        Some("quoted-printable") => {
            quoted_printable::decode(body, quoted_printable::ParseMode::Robust).ok()
        }
        _ => Some(body.to_vec()),
    }
}

/// Undoes RFC 3676 format=flowed: a line ending in a space continues on
/// the next (with `delsp`, that space goes too). "-- " stays a signature.
fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        let content = bare.strip_prefix(' ').unwrap_or(bare);
        if content.ends_with(' ') && content != "-- " && !content.starts_with('>') {
            out.push_str(if delsp {
                &content[..content.len() - 1]
            } else {
                content
            });
        } else {
            out.push_str(content);
            if line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// A file name continued over several RFC 2231 segments
/// (`filename*0*=iso-8859-1''r%E9; filename*1*=sum%E9.pdf`), whole, from a
/// part's raw headers: mail-parser applies the charset of the first
/// segment to that segment only. `None` when there is no such name.
fn continued_filename(headers: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(headers);
    let unfolded: String = text
        .lines()
        .map(|l| {
            if l.starts_with([' ', '\t']) {
                format!(" {}", l.trim())
            } else {
                format!("\n{}", l.trim_end())
            }
        })
        .collect();
    for param in ["filename", "name"] {
        let mut segments: Vec<(u32, bool, &str)> = Vec::new();
        for piece in unfolded.split([';', '\n']) {
            let Some((key, value)) = piece.trim().split_once('=') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let Some(rest) = key.strip_prefix(param).and_then(|r| r.strip_prefix('*')) else {
                continue;
            };
            let (number, encoded) = match rest.strip_suffix('*') {
                Some(n) => (n, true),
                None => (rest, false),
            };
            if let Ok(n) = number.parse::<u32>() {
                segments.push((n, encoded, value.trim().trim_matches('"')));
            }
        }
        if segments.len() < 2 {
            continue;
        }
        segments.sort_by_key(|s| s.0);
        let mut charset = "utf-8";
        let mut bytes = Vec::new();
        for (i, &(_, encoded, mut value)) in segments.iter().enumerate() {
            if i == 0 && encoded {
                let mut parts = value.splitn(3, '\'');
                if let (Some(cs), Some(_), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                    charset = cs;
                    value = v;
                }
            }
            if !encoded {
                bytes.extend_from_slice(value.as_bytes());
                continue;
            }
            let raw = value.as_bytes();
            let mut j = 0;
            while j < raw.len() {
                let hex = raw
                    .get(j + 1..j + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (raw[j], hex) {
                    (b'%', Some(b)) => {
                        bytes.push(b);
                        j += 3;
                    }
                    (b, _) => {
                        bytes.push(b);
                        j += 1;
                    }
                }
            }
        }
        return Some(decode_charset(&bytes, charset));
    }
    None
}

/// A body part mail-parser could not make text of (a multipart without
/// boundary, base64 with junk in it): the first unnamed text or multipart
/// part, decoded leniently. Returns its attachment index and the text.
fn recover_text(msg: &mail_parser::Message<'_>) -> Option<(usize, String)> {
    let (i, part) = msg.attachments().enumerate().find(|(_, p)| {
        p.attachment_name().is_none()
            && p.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("text")
                    || ct.ctype().eq_ignore_ascii_case("multipart")
            })
    })?;
    let raw = part.contents();
    let bytes = if part
        .content_transfer_encoding()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"))
    {
        transfer_decoded(raw, Some("base64")).unwrap_or_else(|| raw.to_vec())
    } else {
        raw.to_vec()
    };
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .unwrap_or("utf-8");
    Some((i, decode_charset(&bytes, charset)))
}

fn decode_charset(bytes: &[u8], charset: &str) -> String {
    match encoding_rs::Encoding::for_label(charset.trim().as_bytes()) {
        Some(enc) => enc.decode(bytes).0.into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The raw bytes of a top-level header's value, unfolded.
fn raw_header_value(raw: &[u8], name: &str) -> Option<Vec<u8>> {
    let block = header_block(raw);
    let mut value: Option<Vec<u8>> = None;
    for line in block.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match &mut value {
            Some(v) if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') => {
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii_start());
            }
            Some(_) => break,
            None => {
                if line.len() > name.len()
                    && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                    && line[name.len()] == b':'
                {
                    value = Some(line[name.len() + 1..].trim_ascii().to_vec());
                }
            }
        }
    }
    value
}

/// Decodes a header value the way clients show it: RFC 2047 encoded words,
/// with adjacent words of one charset joined as bytes before decoding (a
/// character may be split across two words), and raw 8-bit bytes read as
/// UTF-8 or else Windows-1252.
pub fn decode_header_bytes(value: &[u8]) -> String {
    use base64::Engine;
    let plain = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    };
    let text = value;
    let mut out = String::new();
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut i = 0;
    let mut gap_start = 0;
    while i < text.len() {
        if text[i..].starts_with(b"=?") {
            // =?charset?enc?data?=
            let rest = &text[i + 2..];
            let parts: Option<(usize, &[u8], u8, &[u8])> = (|| {
                let q1 = rest.iter().position(|b| *b == b'?')?;
                let enc = *rest.get(q1 + 1)?;
                if rest.get(q1 + 2) != Some(&b'?') {
                    return None;
                }
                let data_start = q1 + 3;
                let end = rest[data_start..].windows(2).position(|w| w == b"?=")? + data_start;
                Some((end + 2, &rest[..q1], enc, &rest[data_start..end]))
            })();
            if let Some((len, charset, enc, data)) = parts {
                let gap = &text[gap_start..i];
                let charset = String::from_utf8_lossy(charset)
                    .split('*')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let bytes = match enc.to_ascii_uppercase() {
                    b'B' => base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .or_else(|_| {
                            base64::engine::general_purpose::STANDARD_NO_PAD
                                .decode(data.strip_suffix(b"=").unwrap_or(data))
                        })
                        .unwrap_or_default(),
                    _ => {
                        let mut v = Vec::with_capacity(data.len());
                        let mut j = 0;
                        while j < data.len() {
                            match data[j] {
                                b'_' => v.push(b' '),
                                b'=' if j + 2 < data.len() => {
                                    match std::str::from_utf8(&data[j + 1..j + 3])
                                        .ok()
                                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                                    {
                                        Some(b) => {
                                            v.push(b);
                                            j += 2;
                                        }
                                        None => v.push(b'='),
                                    }
                                }
                                b => v.push(b),
                            }
                            j += 1;
                        }
                        v
                    }
                };
                let gap_is_space = gap.iter().all(|b| b.is_ascii_whitespace());
                match &mut pending {
                    Some((cs, buf)) if *cs == charset && gap_is_space => {
                        buf.extend_from_slice(&bytes)
                    }
                    _ => {
                        if let Some((cs, buf)) = pending.take() {
                            out.push_str(&decode_charset(&buf, &cs));
                            if !gap_is_space {
                                out.push_str(&plain(gap));
                            }
                        } else {
                            out.push_str(&plain(gap));
                        }
                        pending = Some((charset, bytes));
                    }
                }
                i += 2 + len;
                gap_start = i;
                continue;
            }
        }
        i += 1;
    }
    let tail = &text[gap_start..];
    if let Some((cs, buf)) = pending.take() {
        out.push_str(&decode_charset(&buf, &cs));
    }
    out.push_str(&plain(tail));
    out.trim().to_string()
}

/// mail-parser's reading of a header, unless it lost characters (U+FFFD):
/// then our own decoding of the raw bytes.
fn clean_header(parsed: &str, raw_value: Option<Vec<u8>>) -> String {
    if parsed.contains('\u{FFFD}') {
        if let Some(v) = raw_value {
            let decoded = decode_header_bytes(&v);
            if !decoded.contains('\u{FFFD}') {
                return decoded;
            }
        }
    }
    parsed.trim().to_string()
}

/// Message-IDs quoted inside the body, as a bounce carries those of the
/// mail that failed (message/rfc822 or text/rfc822-headers parts).
pub fn embedded_message_ids(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let body = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .map(|(_, b)| b)
        .unwrap_or("");
    let mut out = Vec::new();
    for line in body.lines() {
        let l = line.trim_start();
        let label = l.as_bytes().get(..11);
        if label.is_some_and(|b| b.eq_ignore_ascii_case(b"message-id:")) {
            // The label is ASCII, so byte 11 is a character boundary.
            let id = strip_id(&l[11..]);
            if !id.is_empty() && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// The header block of a raw message (up to and including the blank line),
/// for mail too large to keep whole.
pub fn header_block(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(raw.len());
    &raw[..end]
}

/// A sender-chosen file name made safe to show: no control characters (NUL
/// included), no surrounding space, at most 255 characters. It is still
/// metadata only and never becomes part of a path.
pub fn clean_filename(name: &str) -> Option<String> {
    const MAX: usize = 255;
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string();
    if cleaned.is_empty() {
        return None;
    }
    let chars: Vec<char> = cleaned.chars().collect();
    if chars.len() <= MAX {
        return Some(cleaned);
    }
    // Too long: keep the start and the extension, which says what it is.
    let ext: String = match cleaned.rfind('.') {
        Some(dot) if cleaned.len() - dot <= 10 => cleaned[dot..].to_string(),
        _ => String::new(),
    };
    let keep = MAX - ext.chars().count();
    Some(chars[..keep].iter().collect::<String>() + &ext)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mail_without_message_id_keeps_the_dedupe_key_stores_have() {
        // Stores filed before raw mails were named by BLAKE3 know such a
        // mail by the sha256 of its bytes: fetched again after a
        // UIDVALIDITY reset, it must be the same key, or it is filed twice.
        let raw: &[u8] =
            b"From: koper@buyer.test\r\nSubject: waar blijft mijn pakket\r\n\r\nNog niets ontvangen.\r\n";
        let key = "sha256:655983bd09bf930145176f9c34871224a29ad1da3e86e0b98b367636bdbd6c42";
        for msg in [
            super::parse(raw),
            super::parse_lean(raw),
            super::parse_unmasked(raw),
        ] {
            assert_eq!(msg.dedupe_key, key);
        }
        assert_eq!(super::parse(raw).raw_blob, super::raw_name(raw));
        assert_ne!(super::raw_name(raw), key["sha256:".len()..]);
        // Nor a mail that is no mail at all.
        let junk: &[u8] = b"\x00\x01 not a mail";
        assert_eq!(
            super::parse(junk).dedupe_key,
            format!("sha256:{}", super::sha256_hex(junk))
        );
    }

    #[test]
    fn a_dmarc_failure_is_read_from_authentication_results() {
        use super::dmarc_fails;
        assert!(dmarc_fails(
            "mx.google.com; dkim=none; spf=softfail smtp.mailfrom=x@evil.test; \
             dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=example.test"
        ));
        assert!(dmarc_fails(
            "mx; arc=pass DMARC = FAIL header.from=example.test"
        ));
        assert!(dmarc_fails(
            "mx;\r\n dmarc=fail action=none header.from=example.test"
        ));
        assert!(!dmarc_fails(
            "mx.google.com; dkim=pass; dmarc=pass (p=REJECT) header.from=example.test"
        ));
        assert!(!dmarc_fails("mx; dmarc=none header.from=example.test"));
        assert!(!dmarc_fails("mx; dkim=pass header.d=dmarc.fail.test"));
    }

    use super::*;

    #[test]
    fn photos_by_type_or_name_but_not_signature_art() {
        let b64 = |n: usize| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(vec![7u8; n])
        };
        let raw = format!(
            "From: a@b.test\r\nSubject: kapot\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/related; boundary=\"x\"\r\n\r\n\
             --x\r\nContent-Type: text/plain\r\n\r\nzie foto\r\n\
             --x\r\nContent-Type: application/octet-stream; name=\"IMG_1234.HEIC\"\r\n\
             Content-Disposition: attachment; filename=\"IMG_1234.HEIC\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{heic}\r\n\
             --x\r\nContent-Type: image/png; name=\"image001.png\"\r\nContent-ID: <image001.png@01DB>\r\n\
             Content-Disposition: inline; filename=\"image001.png\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{logo}\r\n\
             --x\r\nContent-Type: image/jpeg; name=\"pasted.jpg\"\r\nContent-ID: <pasted@x>\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{pasted}\r\n\
             --x\r\nContent-Type: application/pdf; name=\"factuur.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n--x--\r\n",
            heic = b64(40_000),
            logo = b64(3_000),
            pasted = b64(60_000),
            pdf = b64(50_000),
        );
        let m = parse(raw.as_bytes());
        let photos: Vec<(&str, bool)> = m
            .attachments
            .iter()
            .map(|a| (a.filename.as_deref().unwrap_or("?"), a.is_photo()))
            .collect();
        assert_eq!(
            photos,
            vec![
                ("IMG_1234.HEIC", true),
                ("image001.png", false),
                ("pasted.jpg", true),
                ("factuur.pdf", false)
            ]
        );
    }

    #[test]
    fn text_typed_after_an_iphone_photo_is_kept() {
        // iOS Mail: text, the photo, then what the buyer typed after it.
        let raw = "From: Lisa <lisa@icloud.test>\r\nSubject: Kapot\r\nMessage-Id: <p1@icloud.test>\r\n\
             Mime-Version: 1.0 (1.0)\r\nContent-Type: multipart/mixed; boundary=AM\r\n\r\n\
             --AM\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHierbij de foto van de deuk.\r\n\
             --AM\r\nContent-Type: image/jpeg; name=IMG_1.jpeg\r\n\
             Content-Disposition: inline; filename=IMG_1.jpeg\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n/9j/4AAQSkZJRgABAQ==\r\n\
             --AM\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             En de onderkant is gescheurd. Bestelnummer 8rESQedUStPKR0CsTy4Qwb\r\n\r\n\
             Verstuurd vanaf mijn iPhone\r\n--AM--\r\n";
        let m = parse(raw.as_bytes());
        assert_eq!(
            m.text,
            "Hierbij de foto van de deuk.\n\n\
             En de onderkant is gescheurd. Bestelnummer 8rESQedUStPKR0CsTy4Qwb\r\n\r\n\
             Verstuurd vanaf mijn iPhone"
        );
        assert_eq!(m.attachments.len(), 1);
        assert!(m.problems.is_empty(), "{:?}", m.problems);

        // The same with HTML: both pieces are in the HTML view.
        let raw = raw
            .replace("text/plain", "text/html")
            .replace("Hierbij", "<div>Hierbij")
            .replace("iPhone\r\n--AM--", "iPhone</div>\r\n--AM--");
        let html = parse(raw.as_bytes()).html.unwrap();
        assert!(html.starts_with("<div>Hierbij de foto"), "{html}");
        assert!(html.contains("8rESQedUStPKR0CsTy4Qwb"), "{html}");
    }

    #[test]
    fn html_only_mail_keeps_its_lines_apart() {
        // Webmail without a text part: every line a <div>, a table, and
        // the quoted acknowledgement under an <hr>.
        let raw = "From: Kees <kees@b.test>\r\nSubject: Pakket\r\nMessage-ID: <h1@b.test>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
             <html><body><div>Mijn pakket is nog steeds niet aangekomen.</div>\
             <div>Bestelnummer</div><div>fJBd0Kh8oOOL8dKLzdocJ2</div>\
             <table><tr><td>Gebruikersnaam</td><td>kees</td></tr></table><div>Groet, Kees</div>\
             <hr><div><b>Van:</b> Whatnot Support &lt;support@example.test&gt;<br>\
             <b>Verzonden:</b> dinsdag 24 november 2026 10:12<br>\
             <b>Onderwerp:</b> [WN-000001] ontvangen</div>\
             <div>Je bestelnummer (bijvoorbeeld dQzGdHsKxwaEyrQfCdcCs8)</div></body></html>\r\n";
        let m = parse(raw.as_bytes());
        assert!(m.text.contains("\nfJBd0Kh8oOOL8dKLzdocJ2\n"), "{}", m.text);
        assert!(m.text.contains("\nGebruikersnaam kees\n"), "{}", m.text);
        assert_eq!(
            crate::core::quote::new_text(&m.text),
            "Mijn pakket is nog steeds niet aangekomen.\n\nBestelnummer\n\n\
             fJBd0Kh8oOOL8dKLzdocJ2\n\nGebruikersnaam kees\n\nGroet, Kees"
        );
    }

    #[test]
    fn eight_bit_text_without_a_usable_charset_is_read_as_windows_1252() {
        let mail = |ct: &str, cte: &str, body: &[u8]| {
            let mut raw = format!(
                "From: a@b.test\r\nSubject: x\r\nMessage-ID: <c@b.test>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: {ct}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
            )
            .into_bytes();
            raw.extend_from_slice(body);
            parse(&raw).text
        };
        let latin = b"Pi\xe8ce ab\xeem\xe9e, \x93kapot\x94 \x80 5\r\n";
        let want = "Pièce abîmée, “kapot” € 5\r\n";
        assert_eq!(mail("text/plain", "8bit", latin), want);
        assert_eq!(
            mail("text/plain; charset=unknown-8bit", "8bit", latin),
            want
        );
        assert_eq!(mail("text/plain; charset=us-ascii", "8bit", latin), want);
        assert_eq!(
            mail(
                "text/plain; charset=x-unknown",
                "quoted-printable",
                b"caf=E9 =\r\nau lait\r\n"
            ),
            "café au lait\r\n"
        );
        let multipart = b"--b\r\nContent-Type: text/plain\r\n\r\ncaf\xe9\r\n--b--\r\n";
        assert_eq!(
            mail("multipart/mixed; boundary=b", "7bit", multipart),
            "café"
        );
        // A known charset, and UTF-8 without a label, are read as before.
        assert_eq!(
            mail("text/plain; charset=iso-8859-15", "8bit", b"\xa4 5\r\n"),
            "€ 5\r\n"
        );
        assert_eq!(mail("text/plain", "8bit", "één\r\n".as_bytes()), "één\r\n");
    }

    #[test]
    fn a_mail_attached_whole_gives_its_text_and_photos() {
        // Outlook's "forward as attachment" of the buyer's earlier mail to
        // the seller, with two photos in it.
        let photo = "/9j/4AAQSkZJRgABAQ==";
        let raw = format!(
            "From: Anna <anna@buyer.test>\r\nSubject: FW: Kapotte kaart\r\n\
             Message-ID: <fa1@buyer.test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=OUT\r\n\r\n\
             --OUT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nZie bijlage.\r\n\
             --OUT\r\nContent-Type: message/rfc822\r\n\
             Content-Disposition: attachment; filename=\"Kapotte kaart.eml\"\r\n\r\n\
             From: Anna <anna@buyer.test>\r\nTo: shop@seller.test\r\nSubject: Kapotte kaart\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=IN\r\n\r\n\
             --IN\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Bestelling BenQtYh5Xj8TPQxjq4i9Do kwam geknakt aan.\r\n\
             --IN\r\nContent-Type: image/jpeg\r\n\
             Content-Disposition: attachment; filename=IMG_1.jpeg\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{photo}\r\n\
             --IN\r\nContent-Type: image/jpeg\r\n\
             Content-Disposition: attachment; filename=IMG_2.jpeg\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{photo}\r\n\
             --IN--\r\n--OUT--\r\n"
        );
        let m = parse(raw.as_bytes());
        assert_eq!(m.text.trim(), "Zie bijlage.");
        let names: Vec<_> = m
            .attachments
            .iter()
            .map(|a| a.filename.as_deref())
            .collect();
        assert_eq!(
            names,
            [
                Some("Kapotte kaart.eml"),
                Some("IMG_1.jpeg"),
                Some("IMG_2.jpeg")
            ]
        );
        assert_eq!(m.attachments.iter().filter(|a| a.is_photo()).count(), 2);
        assert_eq!(m.attachments[1].data, m.attachments[2].data);
        assert_eq!(m.attachments[1].content_type, "image/jpeg");
        assert!(
            m.attached_text.contains("Subject: Kapotte kaart"),
            "{}",
            m.attached_text
        );
        assert!(
            m.attached_text.contains("BenQtYh5Xj8TPQxjq4i9Do"),
            "{}",
            m.attached_text
        );
        let plain = parse(b"From: a@b.test\r\nSubject: x\r\n\r\nhoi\r\n");
        assert_eq!(plain.attached_text, "");
        assert!(plain.attachments.is_empty());
    }

    #[test]
    fn a_forward_of_a_forward_keeps_the_photos_and_text_two_levels_down() {
        // The buyer forwards, as an attachment, their own forward (also as
        // an attachment) of the mail to the seller, which holds a small
        // photo and one large enough to be taken out of the raw mail.
        let large: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let large_b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&large)
        };
        let large_lines: String = large_b64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let raw = format!(
            "From: Anna <anna@buyer.test>\r\nSubject: FW: FW: Kapotte kaart\r\n\
             Message-ID: <ff1@buyer.test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=L0\r\n\r\n\
             --L0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nNog een keer.\r\n\
             --L0\r\nContent-Type: message/rfc822\r\n\r\n\
             From: Anna <anna@buyer.test>\r\nTo: support@example.test\r\nSubject: FW: Kapotte kaart\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=L1\r\n\r\n\
             --L1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nZie bijlage.\r\n\
             --L1\r\nContent-Type: message/rfc822\r\n\r\n\
             From: Anna <anna@buyer.test>\r\nTo: shop@seller.test\r\nSubject: Kapotte kaart\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=L2\r\n\r\n\
             --L2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Bestelling BenQtYh5Xj8TPQxjq4i9Do kwam geknakt aan.\r\n\
             --L2\r\nContent-Type: image/jpeg\r\n\
             Content-Disposition: attachment; filename=klein.jpeg\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n/9j/4AAQSkZJRgABAQ==\r\n\
             --L2\r\nContent-Type: image/jpeg\r\n\
             Content-Disposition: attachment; filename=groot.jpeg\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{large_lines}\
             --L2--\r\n--L1--\r\n--L0--\r\n"
        );
        for (m, digested) in [
            (parse(raw.as_bytes()), false),
            (parse_lean(raw.as_bytes()), true),
        ] {
            assert_eq!(m.text.trim(), "Nog een keer.");
            let names: Vec<_> = m
                .attachments
                .iter()
                .map(|a| a.filename.as_deref())
                .collect();
            assert_eq!(names, [None, Some("klein.jpeg"), Some("groot.jpeg")]);
            assert_eq!(m.attachments.iter().filter(|a| a.is_photo()).count(), 2);
            let groot = &m.attachments[2];
            match digested {
                false => assert_eq!(groot.data, large),
                true => assert_eq!(
                    groot
                        .digest
                        .clone()
                        .unwrap_or_else(|| (sha256_hex(&groot.data), groot.data.len())),
                    (sha256_hex(&large), large.len())
                ),
            }
            // Both forwards' headers and the shop mail's text, in order.
            let text = &m.attached_text;
            let first = text.find("Subject: FW: Kapotte kaart").expect(text);
            let second = text.find("Subject: Kapotte kaart").expect(text);
            assert!(first < second, "{text}");
            assert!(text.contains("BenQtYh5Xj8TPQxjq4i9Do"), "{text}");
        }
    }

    /// A relay that relabels winmail.dat as application/octet-stream, in a
    /// mail large enough for the ingest's lean parse to take its large
    /// parts out: it is still opened, by its name.
    #[test]
    fn winmail_dat_by_its_name_alone_is_opened_in_a_large_mail() {
        use crate::core::tnef::tests::Writer;
        use base64::Engine;
        let photo: Vec<u8> = b"\xFF\xD8\xFF\xE0"
            .iter()
            .copied()
            .chain((0..120_000u32).map(|i| ((i * 7919) >> 5) as u8))
            .collect();
        let mut w = Writer::new();
        w.file("IMG_20~1.JPG", "IMG_2026.jpg", None, &photo);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&w.0);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        for (ct, disposition) in [
            ("application/octet-stream; name=\"winmail.dat\"", ""),
            (
                "application/octet-stream",
                "Content-Disposition: attachment;\r\n filename=\"WINMAIL.DAT\"\r\n",
            ),
        ] {
            let raw = format!(
                "From: a@buyer.test\r\nMessage-ID: <w@buyer.test>\r\n\
                 Content-Type: multipart/mixed; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: text/plain\r\n\r\nKapot.\r\n\
                 --b\r\nContent-Type: {ct}\r\n{disposition}\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
                lines.join("\r\n")
            );
            let m = parse_lean(raw.as_bytes());
            let names: Vec<_> = m.attachments.iter().map(|a| a.filename.clone()).collect();
            assert_eq!(
                names,
                [Some("IMG_2026.jpg".to_string())],
                "{ct} {disposition}"
            );
            assert!(m.attachments[0].is_photo(), "{ct}");
        }
    }

    #[test]
    fn winmail_dat_gives_way_to_its_files_unless_it_holds_more() {
        use crate::core::tnef::tests::Writer;
        use base64::Engine;
        let mail = |tnef: &[u8]| -> InboundMessage {
            let b64 = base64::engine::general_purpose::STANDARD.encode(tnef);
            parse(
                format!(
                    "From: a@buyer.test\r\nMessage-ID: <w@buyer.test>\r\n\
                     Content-Type: multipart/mixed; boundary=b\r\n\r\n\
                     --b\r\nContent-Type: text/plain\r\n\r\nKapot.\r\n\
                     --b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
                )
                .as_bytes(),
            )
        };
        let jpeg = b"\xFF\xD8\xFF\xE0 photo".as_slice();
        let names = |m: &InboundMessage| -> Vec<String> {
            m.attachments
                .iter()
                .map(|a| {
                    format!(
                        "{} {}",
                        a.filename.as_deref().unwrap_or("?"),
                        a.content_type
                    )
                })
                .collect()
        };

        let mut w = Writer::new();
        w.file("IMG_20~1.JPG", "IMG_2026.jpg", None, jpeg);
        let m = mail(&w.0);
        assert_eq!(names(&m), ["IMG_2026.jpg image/jpeg"]);
        assert_eq!(m.attachments.iter().filter(|a| a.is_photo()).count(), 1);
        assert!(m.problems.is_empty(), "{:?}", m.problems);

        // An OLE object beside the photo (a picture pasted into the rich
        // text): winmail.dat is kept for it.
        let mut rend = 2u16.to_le_bytes().to_vec();
        rend.extend_from_slice(&[0; 12]);
        w.attr(2, 0x0006_9002, &rend);
        let m = mail(&w.0);
        assert_eq!(
            names(&m),
            ["IMG_2026.jpg image/jpeg", "winmail.dat application/ms-tnef"]
        );
        assert!(m.problems[0].contains("not files"), "{:?}", m.problems);

        // Cut short: kept as it came, and said.
        let m = mail(&w.0[..w.0.len() - 5]);
        assert_eq!(names(&m), ["winmail.dat application/ms-tnef"]);
        assert!(
            m.problems[0].contains("could not be read"),
            "{:?}",
            m.problems
        );

        // The whole mail in winmail.dat: its body is the text; a body that
        // cannot be read keeps winmail.dat beside the photo.
        let only_tnef = |tnef: &[u8]| -> InboundMessage {
            let b64 = base64::engine::general_purpose::STANDARD.encode(tnef);
            parse(
                format!(
                    "From: a@buyer.test\r\nMessage-ID: <w@buyer.test>\r\n\
                     Content-Type: application/ms-tnef; name=winmail.dat\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
                )
                .as_bytes(),
            )
        };
        let rtf = compressed_rtf::compress_rtf("{\\rtf1\\ansi Kapot aangekomen.\\par}").unwrap();
        let with_body = |rtf: &[u8]| {
            let mut props = 1u32.to_le_bytes().to_vec();
            props.extend_from_slice(&0x0102u16.to_le_bytes());
            props.extend_from_slice(&0x1009u16.to_le_bytes());
            props.extend_from_slice(&1u32.to_le_bytes());
            props.extend_from_slice(&(rtf.len() as u32).to_le_bytes());
            props.extend_from_slice(rtf);
            props.resize(props.len().next_multiple_of(4), 0);
            let mut w = Writer::new();
            w.attr(1, 0x0006_9003, &props);
            w.file("IMG_20~1.JPG", "IMG_2026.jpg", None, jpeg);
            w.0
        };
        let m = only_tnef(&with_body(&rtf));
        assert_eq!(m.text, "Kapot aangekomen.");
        assert_eq!(names(&m), ["IMG_2026.jpg image/jpeg"]);
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        let mut bad = rtf.clone();
        bad[12] ^= 1;
        let m = only_tnef(&with_body(&bad));
        assert_eq!(m.text, "");
        assert_eq!(
            names(&m),
            ["IMG_2026.jpg image/jpeg", "winmail.dat application/ms-tnef"]
        );
        assert!(
            m.problems.iter().any(|p| p.contains("text in winmail.dat")),
            "{:?}",
            m.problems
        );
    }

    #[test]
    fn lenient_base64_keeps_the_last_bytes() {
        use base64::Engine;
        for text in [
            "caf\u{e9}",
            "ab",
            "abc",
            "Bestelnummer dQzGdHsKxwaEyrQfCdcCs8",
        ] {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            let with_junk = format!("{}\r\n!{}", &encoded[..2], &encoded[2..]);
            assert_eq!(
                transfer_decoded(with_junk.as_bytes(), Some("base64")).as_deref(),
                Some(text.as_bytes()),
                "{encoded}"
            );
        }
    }

    #[test]
    fn a_file_name_continued_in_latin_1_keeps_every_accent() {
        let raw = "From: a@b.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
                   Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\
                   Content-Type: text/plain\r\n\r\nhoi\r\n--B\r\n\
                   Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n \
                   filename*0*=iso-8859-1''r%E9; filename*1*=sum%E9;\r\n filename*2=\".pdf\"\r\n\r\n\
                   JVBERi0=\r\n--B--\r\n";
        let m = parse(raw.as_bytes());
        assert_eq!(
            m.attachments[0].filename.as_deref(),
            Some("r\u{e9}sum\u{e9}.pdf")
        );
    }

    #[test]
    fn reads_threading_headers_and_body() {
        let raw = b"From: Anna de Vries <Anna@Buyer.test>\r\n\
To: support@example.test\r\n\
Subject: =?UTF-8?Q?Re:_[WN-000001]_Pakket_beschadigd?=\r\n\
Message-ID: <abc@buyer.test>\r\n\
In-Reply-To: <ack-1@example.test>\r\n\
References: <first@buyer.test> <ack-1@example.test>\r\n\
Date: Tue, 24 Nov 2026 10:12:00 +0100\r\n\
\r\n\
Hallo, hier zijn de foto's.\r\n";
        let m = parse(raw);
        assert_eq!(m.message_id.as_deref(), Some("abc@buyer.test"));
        assert_eq!(m.dedupe_key, "abc@buyer.test");
        assert_eq!(m.from_address.as_deref(), Some("anna@buyer.test"));
        assert_eq!(m.from_name.as_deref(), Some("Anna de Vries"));
        assert_eq!(m.subject, "Re: [WN-000001] Pakket beschadigd");
        assert_eq!(m.in_reply_to, vec!["ack-1@example.test"]);
        assert_eq!(m.references, vec!["first@buyer.test", "ack-1@example.test"]);
        assert!(m.text.contains("foto's"));
        assert!(m.html.is_none());
        assert_eq!(m.date.unwrap().to_rfc3339(), "2026-11-24T09:12:00+00:00");
    }

    #[test]
    fn a_quoted_local_part_stays_quoted() {
        // mail-parser hands the address back unquoted, which is no address
        // at all: the ack could not be sent to it.
        let raw = b"From: \"anna de vries\"@buyer.test\r\n\
To: support@example.test, Inkoop <\"inkoop afdeling\"@Shop.test>\r\n\
Subject: Kaart\r\n\
Message-ID: <q@buyer.test>\r\n\
\r\n\
Hallo.\r\n";
        let m = parse(raw);
        let from = m.from_address.as_deref().expect("from");
        assert_eq!(from, "\"anna de vries\"@buyer.test");
        assert!(from.parse::<lettre::Address>().is_ok(), "{from}");
        assert!(
            m.to.contains(&"\"inkoop afdeling\"@shop.test".to_string()),
            "{:?}",
            m.to
        );
        // Plain local parts are written as they were.
        assert_eq!(
            quote_local_part("anna.b+wn@buyer.test"),
            "anna.b+wn@buyer.test"
        );
        assert_eq!(quote_local_part("a\"b@buyer.test"), "\"a\\\"b\"@buyer.test");
        assert_eq!(quote_local_part(".anna@buyer.test"), "\".anna\"@buyer.test");
    }

    #[test]
    fn missing_message_id_falls_back_to_hash() {
        let m = parse(b"From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n");
        assert!(m.dedupe_key.starts_with("sha256:"));
        assert!(m.problems.iter().any(|p| p.contains("Message-ID")));
    }

    #[test]
    fn lean_parse_is_the_same_but_for_hash_and_large_parts() {
        let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&photo)
        };
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        for id in ["", "Message-ID: <p@example.test>\r\n"] {
            let raw = format!(
                "From: a@b.test\r\n{id}Subject: photo\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                 Content-Type: text/plain\r\n\r\nsee photo\r\n--b\r\n\
                 Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                 {}\r\n--b--\r\n",
                lines.join("\r\n")
            );
            let whole = parse(raw.as_bytes());
            let mut lean = parse_lean(raw.as_bytes());
            assert!(lean.raw_blob.is_empty());
            lean.set_raw_blob(raw_name(raw.as_bytes()));
            assert!(lean.attachments[0].data.is_empty());
            assert_eq!(
                lean.attachments[0].digest,
                Some((sha256_hex(&photo), photo.len()))
            );
            lean.attachments[0].data = photo.clone();
            lean.attachments[0].digest = None;
            assert_eq!(lean, whole);
            assert_eq!(whole.attachments[0].data, photo);
            assert_eq!(whole, parse_unmasked(raw.as_bytes()));
        }
    }

    #[test]
    fn bounces_name_the_failed_message() {
        let raw = b"From: MAILER-DAEMON@mx.test\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <wn-000001.x@example.test>\r\nSubject: hi\r\n--b--\r\n";
        assert_eq!(embedded_message_ids(raw), vec!["wn-000001.x@example.test"]);
    }

    #[test]
    fn multibyte_text_near_a_label_does_not_panic() {
        // Found by the property test: a mutation put '\u{FFFD}' at byte 10.
        let raw = "Subject: x\r\n\r\nMessage-:@\u{FFFD}ID: <a@b>\r\nMessage-ID: <c@d>\r\n";
        assert_eq!(embedded_message_ids(raw.as_bytes()), vec!["c@d"]);
    }

    #[test]
    fn filenames_are_cleaned_not_trusted() {
        assert_eq!(
            clean_filename("../../etc/passwd").as_deref(),
            Some("../../etc/passwd")
        );
        assert_eq!(clean_filename("a\0b.jpg").as_deref(), Some("ab.jpg"));
        assert_eq!(clean_filename(&"x".repeat(300)).map(|s| s.len()), Some(255));
        let long = format!("{}.jpg", "y".repeat(300));
        let kept = clean_filename(&long).unwrap();
        assert_eq!(kept.len(), 255);
        assert!(kept.ends_with("y.jpg"));
        assert_eq!(clean_filename(" \t"), None);
    }

    #[test]
    fn header_block_stops_at_blank_line() {
        assert_eq!(header_block(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
        assert_eq!(header_block(b"A: b\n\nbody"), b"A: b\n\n");
        assert_eq!(header_block(b"A: b"), b"A: b");
    }

    #[test]
    fn header_words_split_mid_character_and_raw_latin1() {
        // "één" split across two B words in the middle of the é bytes.
        let v = b"Pakket =?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?=n";
        assert_eq!(decode_header_bytes(v), "Pakket één");
        let split = b"=?UTF-8?B?4oCTIMM=?= =?UTF-8?B?qcOpbg==?=";
        assert_eq!(decode_header_bytes(split), "– één");
        assert_eq!(
            decode_header_bytes(b"Pi\xe8ce ab\xeem\xe9e"),
            "Pièce abîmée"
        );
        assert_eq!(
            decode_header_bytes(b"=?iso-8859-1?Q?caf=E9_au_lait?= ok"),
            "café au lait ok"
        );
    }

    #[test]
    fn flowed_text_is_joined() {
        assert_eq!(
            unflow("gekocht op 4 \nnovember 2026\n-- \nAnna\n", false),
            "gekocht op 4 november 2026\n-- \nAnna\n"
        );
        assert_eq!(unflow("ab \ncd\n", true), "abcd\n");
    }

    #[test]
    fn garbage_does_not_panic() {
        for raw in [
            &b""[..],
            b"\xff\xfe\x00",
            b"\r\n\r\n",
            b"Content-Type: multipart/mixed\r\n\r\n--",
        ] {
            let m = parse(raw);
            assert!(!m.dedupe_key.is_empty());
        }
    }
}

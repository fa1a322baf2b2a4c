//! The agents' pages: the response queue, search, one ticket with its
//! thread, and the actions on a ticket (close, reopen, reply). Handlers read
//! through `store::views`, the same data the CLI prints, and hand plain
//! structs to the templates, which escape everything they show.

use std::collections::HashSet;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::response::{Redirect, Response};
use axum::{Extension, Form};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::auth::{CsrfForm, Session};
use super::files::{inline_image_type, unnamed_file_name, FileLink};
use super::{url_encode, App, WebError};
use crate::config::Config;
use crate::core::thread::ticket_token;
use crate::store::views::{self, ListFilter};

/// How many open tickets the queue shows.
const QUEUE_LIMIT: usize = 500;
const SEARCH_LIMIT: usize = 50;

fn fmt_time(config: &Config, unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|d| {
            d.with_timezone(&config.tickets.time_zone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        })
        .unwrap_or_default()
}

/// A length of time the way an agent says it: "2 d 3 h", "5 h 10 min".
fn span(seconds: i64) -> String {
    let minutes = seconds.unsigned_abs() / 60;
    let (d, h, m) = (minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    }
}

/// Where a ticket stands against its response promise.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Due {
    at: String,
    note: String,
    overdue: bool,
}

fn due(
    config: &Config,
    status: &str,
    due_at: Option<i64>,
    responded_at: Option<i64>,
    now: i64,
) -> Option<Due> {
    let at = due_at?;
    let (note, overdue) = if responded_at.is_some() {
        ("answered".to_string(), false)
    } else if status != "open" {
        ("closed".to_string(), false)
    } else if at < now {
        (format!("overdue by {}", span(now - at)), true)
    } else {
        (format!("{} left", span(at - now)), false)
    };
    Some(Due {
        at: fmt_time(config, at),
        note,
        overdue,
    })
}

#[derive(Serialize)]
struct QueueRow {
    ticket: String,
    subject: String,
    requester: String,
    issue_type: String,
    due: Option<Due>,
}

#[derive(Serialize)]
struct QueuePage {
    agent: String,
    csrf: String,
    query: String,
    rows: Vec<QueueRow>,
    overdue: usize,
}

/// The SLA queue: open tickets, the ones due first.
pub(crate) async fn queue(
    State(app): State<App>,
    Extension(session): Extension<Session>,
) -> Result<Response, WebError> {
    let now = Utc::now().timestamp();
    let rows = app
        .db(move |store, app| {
            let conn = store.conn();
            let prefix = &app.config.tickets.prefix;
            Ok(views::list(conn, prefix, ListFilter::Open, QUEUE_LIMIT)?
                .into_iter()
                .map(|t| QueueRow {
                    due: due(&app.config, &t.status, t.due_at, t.responded_at, now),
                    ticket: t.ticket,
                    subject: t.subject,
                    requester: t.requester,
                    issue_type: t.issue_type,
                })
                .collect::<Vec<_>>())
        })
        .await?;
    let overdue = rows
        .iter()
        .filter(|r| r.due.as_ref().is_some_and(|d| d.overdue))
        .count();
    app.page(
        "queue.html",
        QueuePage {
            agent: session.agent,
            csrf: session.csrf,
            query: String::new(),
            rows,
            overdue,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct SearchParams {
    q: Option<String>,
}

#[derive(Serialize)]
struct SearchRow {
    ticket: String,
    status: String,
    requester: String,
    subject: String,
    last_activity: String,
    matched: String,
    /// Escaped here, with the match in `<mark>`: the template shows it as is.
    snippet_html: Option<String>,
}

#[derive(Serialize)]
struct SearchPage {
    agent: String,
    csrf: String,
    query: String,
    searched: bool,
    hits: Vec<SearchRow>,
}

/// The views mark a full-text match as `[word]`; this escapes the snippet
/// and turns the markers into `<mark>`, always balanced.
fn highlight(snippet: &str) -> String {
    let mut out = String::with_capacity(snippet.len() + 16);
    let mut open = false;
    for c in snippet.chars() {
        match c {
            '[' if !open => {
                out.push_str("<mark>");
                open = true;
            }
            ']' if open => {
                out.push_str("</mark>");
                open = false;
            }
            c => out.push_str(&super::escape_html(c.encode_utf8(&mut [0u8; 4]))),
        }
    }
    if open {
        out.push_str("</mark>");
    }
    out
}

/// Takes the same queries as `ticketd search`.
pub(crate) async fn search(
    State(app): State<App>,
    Extension(session): Extension<Session>,
    Query(params): Query<SearchParams>,
) -> Result<Response, WebError> {
    let query = params.q.unwrap_or_default().trim().to_string();
    let q = query.clone();
    let hits = app
        .db(move |store, app| {
            let config = &app.config;
            let hits = views::search(store.conn(), &config.tickets.prefix, &q, SEARCH_LIMIT)?;
            Ok(hits
                .into_iter()
                .map(|h| SearchRow {
                    last_activity: fmt_time(config, h.last_activity),
                    snippet_html: h.snippet.as_deref().map(highlight),
                    ticket: h.ticket,
                    status: h.status,
                    requester: h.requester,
                    subject: h.subject,
                    matched: h.matched,
                })
                .collect::<Vec<_>>())
        })
        .await?;
    app.page(
        "search.html",
        SearchPage {
            agent: session.agent,
            csrf: session.csrf,
            searched: !query.is_empty(),
            query,
            hits,
        },
    )
}

#[derive(Serialize)]
struct Fact {
    label: &'static str,
    values: Vec<String>,
}

#[derive(Serialize)]
struct MessageItem {
    direction: String,
    kind: String,
    from: String,
    subject: String,
    when: String,
    text: String,
    /// The text of mails attached whole.
    attached_text: Option<String>,
    images: Vec<FileLink>,
    files: Vec<FileLink>,
    /// The sanitized HTML part, for the sandboxed frame.
    html_url: Option<String>,
    ack: Option<String>,
}

#[derive(Serialize)]
struct TicketPage {
    agent: String,
    csrf: String,
    query: String,
    ticket: String,
    status: String,
    open: bool,
    subject: String,
    requester: String,
    requester_name: Option<String>,
    language: String,
    created: String,
    closed: Option<String>,
    due: Option<Due>,
    facts: Vec<Fact>,
    messages: Vec<MessageItem>,
    full: bool,
    notice: Option<&'static str>,
    /// Replies need [smtp]; without it the page says so instead of a form.
    can_reply: bool,
}

#[derive(Deserialize)]
pub(crate) struct TicketParams {
    full: Option<String>,
    done: Option<String>,
}

fn ticket_id(app: &App, text: &str) -> Result<i64, WebError> {
    views::parse_ticket_ref(&app.config.tickets.prefix, text)
        .ok_or_else(|| WebError::NotFound(format!("`{text}` is not a ticket ID.")))
}

fn size_text(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} kB", b as f64 / (1 << 10) as f64),
        b => format!("{b} bytes"),
    }
}

/// One ticket: facts, due time, the thread with photos, and the actions.
pub(crate) async fn ticket(
    State(app): State<App>,
    Extension(session): Extension<Session>,
    Path(ticket): Path<String>,
    Query(params): Query<TicketParams>,
) -> Result<Response, WebError> {
    let id = ticket_id(&app, &ticket)?;
    let full = params.full.is_some_and(|f| f == "1");
    let notice = match params.done.as_deref() {
        Some("closed") => Some("Ticket closed."),
        Some("reopened") => Some("Ticket reopened."),
        Some("replied") => Some("Reply queued: it goes out with the next outbox run."),
        _ => None,
    };
    let now = Utc::now().timestamp();
    let page = app
        .db(move |store, app| {
            let conn = store.conn();
            let config = &app.config;
            let view = views::ticket(conn, &config.tickets.prefix, id, full)?;
            let with_html: HashSet<String> = conn
                .prepare_cached(
                    "SELECT message_id FROM messages
                     WHERE ticket_id = ?1 AND html_body IS NOT NULL AND html_body != ''",
                )?
                .query_map([id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let messages = view
                .messages
                .into_iter()
                .map(|m| {
                    let (images, files): (Vec<_>, Vec<_>) = m
                        .attachments
                        .iter()
                        .map(|a| FileLink {
                            // The row names which of the names and types
                            // the same bytes may have here is this one's.
                            url: format!("/attachments/{}?id={}", a.sha256, a.id),
                            name: a
                                .filename
                                .clone()
                                .filter(|n| !n.trim().is_empty())
                                .unwrap_or_else(|| unnamed_file_name(&a.content_type)),
                            content_type: a.content_type.clone(),
                            size: size_text(a.size),
                        })
                        .partition(|f| inline_image_type(&f.content_type).is_some());
                    MessageItem {
                        html_url: with_html
                            .contains(&m.message_id)
                            .then(|| format!("/message.html?id={}", url_encode(&m.message_id))),
                        ack: m.ack.map(|a| match a {
                            views::AckView::Queued { status, .. } => {
                                format!("acknowledgement {status}")
                            }
                            views::AckView::Skipped { skipped } => {
                                format!("no acknowledgement ({skipped})")
                            }
                        }),
                        direction: m.direction,
                        kind: m.kind,
                        from: m.from.unwrap_or_else(|| "(no sender)".to_string()),
                        subject: m.subject,
                        when: fmt_time(config, m.received_at),
                        text: m.text,
                        attached_text: m.attached_text,
                        images,
                        files,
                    }
                })
                .collect();
            let mut facts = vec![
                Fact {
                    label: "Issue",
                    values: vec![view.issue_type.clone()],
                },
                Fact {
                    label: "Category",
                    values: view.category.clone().into_iter().collect(),
                },
                Fact {
                    label: "Order numbers",
                    values: view.order_numbers,
                },
                Fact {
                    label: "Shipment numbers",
                    values: view.shipment_numbers,
                },
                Fact {
                    label: "Usernames",
                    values: view.usernames,
                },
                Fact {
                    label: "Account e-mail",
                    values: view.account_emails,
                },
                Fact {
                    label: "Purchased",
                    values: view.purchase_dates,
                },
                Fact {
                    label: "Delivered",
                    values: view.delivery_dates,
                },
            ];
            facts.retain(|f| !f.values.is_empty());
            Ok(TicketPage {
                agent: String::new(),
                csrf: String::new(),
                query: String::new(),
                open: view.status == "open",
                due: due(config, &view.status, view.due_at, view.responded_at, now),
                created: fmt_time(config, view.created_at),
                closed: view.closed_at.map(|c| fmt_time(config, c)),
                ticket: view.ticket,
                status: view.status,
                subject: view.subject,
                requester: view.requester,
                requester_name: view.requester_name,
                language: view.language,
                facts,
                messages,
                full,
                notice,
                can_reply: config.smtp.is_some(),
            })
        })
        .await?;
    app.page(
        "ticket.html",
        TicketPage {
            agent: session.agent,
            csrf: session.csrf,
            ..page
        },
    )
}

fn back_to(app: &App, id: i64, done: &str) -> Response {
    use axum::response::IntoResponse;
    Redirect::to(&format!(
        "/tickets/{}?done={done}",
        ticket_token(&app.config.tickets.prefix, id)
    ))
    .into_response()
}

fn csrf_of(form: &Result<Form<CsrfForm>, FormRejection>) -> Option<&str> {
    form.as_ref().ok().and_then(|Form(f)| f.csrf.as_deref())
}

async fn set_status(
    app: App,
    session: Session,
    ticket: String,
    open: bool,
    csrf: Option<&str>,
) -> Result<Response, WebError> {
    session.check_csrf(csrf)?;
    let id = ticket_id(&app, &ticket)?;
    let now = Utc::now().timestamp();
    app.db(move |store, _| Ok(store.set_ticket_status(id, open, now)?))
        .await?;
    let done = if open { "reopened" } else { "closed" };
    info!(agent = %session.agent, ticket = %ticket_token(&app.config.tickets.prefix, id), "web: ticket {done}");
    Ok(back_to(&app, id, done))
}

pub(crate) async fn close(
    State(app): State<App>,
    Extension(session): Extension<Session>,
    Path(ticket): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    set_status(app, session, ticket, false, csrf_of(&form)).await
}

pub(crate) async fn reopen(
    State(app): State<App>,
    Extension(session): Extension<Session>,
    Path(ticket): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    set_status(app, session, ticket, true, csrf_of(&form)).await
}

#[derive(Deserialize)]
pub(crate) struct ReplyForm {
    csrf: Option<String>,
    #[serde(default)]
    body: String,
}

/// Queues the agent's answer as mail to the requester (see `reply`).
pub(crate) async fn reply(
    State(app): State<App>,
    Extension(session): Extension<Session>,
    Path(ticket): Path<String>,
    form: Result<Form<ReplyForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Ok(Form(form)) = form else {
        return Err(super::auth::csrf_refused());
    };
    session.check_csrf(form.csrf.as_deref())?;
    let id = ticket_id(&app, &ticket)?;
    // Browsers send CRLF from a textarea; the mail builder wants lines.
    let body = form.body.replace("\r\n", "\n");
    let agent = session.agent.clone();
    let message_id = app
        .db(move |store, app| {
            Ok(crate::reply::queue_reply(
                store,
                &app.config,
                id,
                &agent,
                &body,
                Utc::now(),
            )?)
        })
        .await?;
    info!(
        agent = %session.agent,
        ticket = %ticket_token(&app.config.tickets.prefix, id),
        message_id = %message_id,
        "web: reply queued"
    );
    Ok(back_to(&app, id, "replied"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlight_escapes_and_balances() {
        assert_eq!(
            highlight("a <b> [word] & [open"),
            "a &lt;b&gt; <mark>word</mark> &amp; <mark>open</mark>"
        );
        assert_eq!(highlight("x] y"), "x] y");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(59), "0 min");
        assert_eq!(span(-(3 * 3600 + 120)), "3 h 2 min");
        assert_eq!(span(2 * 86400 + 3600), "2 d 1 h");
    }

    #[test]
    fn due_notes() {
        let config = crate::config::Config::parse(
            "[store]\ndata_dir = \"/tmp/x\"\n",
            std::path::Path::new("/etc/ticketd/t.toml"),
        )
        .unwrap();
        let d = due(&config, "open", Some(1_000), None, 1_000 + 7200).unwrap();
        assert!(d.overdue);
        assert_eq!(d.note, "overdue by 2 h 0 min");
        let d = due(&config, "open", Some(1_000), Some(900), 9_000).unwrap();
        assert!(!d.overdue);
        assert_eq!(d.note, "answered");
        assert!(due(&config, "open", None, None, 0).is_none());
    }
}

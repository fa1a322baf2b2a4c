//! Read-only views for agents and tools: one ticket with its thread, search,
//! and the JSON Lines export. Everything here is `Serialize`, so `--json`
//! output and the human output come from the same data.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::StoreError;
use crate::core::thread::{subject_tokens, ticket_token};

#[derive(Debug, Serialize)]
pub struct AttachmentView {
    /// The attachment's row: the same bytes may be stored under other
    /// names and types too (`sha256` is shared by them).
    pub id: i64,
    pub filename: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AckView {
    Queued { message_id: String, status: String },
    Skipped { skipped: String },
}

#[derive(Debug, Serialize)]
pub struct MessageView {
    pub message_id: String,
    pub direction: String,
    pub kind: String,
    pub from: Option<String>,
    pub subject: String,
    pub received_at: i64,
    pub text: String,
    /// The text of mails attached whole (forwarded as attachment).
    pub attached_text: Option<String>,
    pub attachments: Vec<AttachmentView>,
    pub ack: Option<AckView>,
}

#[derive(Debug, Serialize)]
pub struct TicketView {
    pub ticket: String,
    pub status: String,
    pub subject: String,
    pub requester: String,
    pub requester_name: Option<String>,
    pub language: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub due_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub responded_at: Option<i64>,
    pub issue_type: String,
    pub category: Option<String>,
    pub order_numbers: Vec<String>,
    pub shipment_numbers: Vec<String>,
    pub usernames: Vec<String>,
    pub account_emails: Vec<String>,
    pub purchase_dates: Vec<String>,
    pub delivery_dates: Vec<String>,
    pub messages: Vec<MessageView>,
}

fn attachments(conn: &Connection, message: i64) -> Result<Vec<AttachmentView>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, filename, content_type, size, sha256 FROM attachments WHERE message = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([message], |r| {
        Ok(AttachmentView {
            id: r.get(0)?,
            filename: r.get(1)?,
            content_type: r.get(2)?,
            size: r.get(3)?,
            sha256: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn ack_of(
    conn: &Connection,
    message: i64,
    skip: Option<String>,
) -> Result<Option<AckView>, StoreError> {
    let queued = conn
        .prepare_cached(
            "SELECT message_id, status FROM outbox WHERE cause = ?1 ORDER BY id LIMIT 1",
        )?
        .query_row([message], |r| {
            Ok(AckView::Queued {
                message_id: r.get(0)?,
                status: r.get(1)?,
            })
        })
        .optional()?;
    Ok(queued.or(skip.map(|skipped| AckView::Skipped { skipped })))
}

/// Parses `WN-000123` (or `123`) into a ticket number.
pub fn parse_ticket_ref(prefix: &str, text: &str) -> Option<i64> {
    let t = text.trim();
    if let Some(n) = subject_tokens(&format!("[{t}]"), prefix).first() {
        return Some(*n);
    }
    t.parse().ok().filter(|n: &i64| *n > 0)
}

/// One ticket with its thread. `full` gives each message's whole text,
/// quoted history included; otherwise only what the sender wrote anew.
pub fn ticket(
    conn: &Connection,
    prefix: &str,
    id: i64,
    full: bool,
) -> Result<TicketView, StoreError> {
    let mut view = conn
        .query_row(
            "SELECT status, subject, requester, requester_name, language, created_at, updated_at, due_at,
                    closed_at, issue_type, category, responded_at
             FROM tickets WHERE id = ?1",
            [id],
            |r| {
                Ok(TicketView {
                    ticket: ticket_token(prefix, id),
                    status: r.get(0)?,
                    subject: r.get(1)?,
                    requester: r.get(2)?,
                    requester_name: r.get(3)?,
                    language: r.get(4)?,
                    created_at: r.get(5)?,
                    updated_at: r.get(6)?,
                    due_at: r.get(7)?,
                    closed_at: r.get(8)?,
                    issue_type: r.get(9)?,
                    category: r.get(10)?,
                    responded_at: r.get(11)?,
                    order_numbers: vec![],
                    shipment_numbers: vec![],
                    usernames: vec![],
                    account_emails: vec![],
                    purchase_dates: vec![],
                    delivery_dates: vec![],
                    messages: vec![],
                })
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("no ticket {}", ticket_token(prefix, id))))?;
    let mut stmt = conn.prepare_cached(
        // `+kind`: without it SQLite may pick the (kind, value) index and
        // scan every order number in the store.
        "SELECT value FROM facts WHERE ticket_id = ?1 AND +kind = ?2 GROUP BY value ORDER BY min(id)",
    )?;
    let mut facts = |kind: &str| -> Result<Vec<String>, StoreError> {
        Ok(stmt
            .query_map(params![id, kind], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    };
    view.order_numbers = facts("order")?;
    view.shipment_numbers = facts("shipment")?;
    view.usernames = facts("username")?;
    view.account_emails = facts("account_email")?;
    view.purchase_dates = facts("purchase_date")?;
    view.delivery_dates = facts("delivery_date")?;
    let body = if full { "text_body" } else { "new_text" };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, message_id, direction, kind, from_addr, subject, received_at, {body}, ack_skip,
                attached_text
         FROM messages WHERE ticket_id = ?1 ORDER BY received_at, id"
    ))?;
    let rows: Vec<(i64, MessageView, Option<String>)> = stmt
        .query_map([id], |r| {
            Ok((
                r.get(0)?,
                MessageView {
                    message_id: r.get(1)?,
                    direction: r.get(2)?,
                    kind: r.get(3)?,
                    from: r.get(4)?,
                    subject: r.get(5)?,
                    received_at: r.get(6)?,
                    text: r.get(7)?,
                    attached_text: r.get(9)?,
                    attachments: vec![],
                    ack: None,
                },
                r.get(8)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (row, mut m, skip) in rows {
        m.attachments = attachments(conn, row)?;
        if m.direction == "in" {
            m.ack = ack_of(conn, row, skip)?;
        }
        view.messages.push(m);
    }
    Ok(view)
}

/// Which tickets `list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter {
    Open,
    Closed,
    All,
    /// Open, unanswered, and past the promised response time at `now`.
    Overdue {
        now: i64,
    },
    /// Open, unanswered, and due before `until` (overdue ones included).
    DueBefore {
        until: i64,
    },
}

#[derive(Debug, Serialize)]
pub struct ListedTicket {
    pub ticket: String,
    pub status: String,
    pub requester: String,
    pub subject: String,
    pub issue_type: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub due_at: Option<i64>,
    /// When an agent first answered; the response clock stops then.
    pub responded_at: Option<i64>,
}

/// Tickets, the ones due first (the response queue).
pub fn list(
    conn: &Connection,
    prefix: &str,
    filter: ListFilter,
    limit: usize,
) -> Result<Vec<ListedTicket>, StoreError> {
    let (cond, bound) = match filter {
        ListFilter::Open => ("WHERE status = 'open'", 0),
        ListFilter::Closed => ("WHERE status = 'closed'", 0),
        ListFilter::All => ("WHERE ?2 = ?2", 0),
        ListFilter::Overdue { now } => (
            "WHERE status = 'open' AND responded_at IS NULL AND due_at < ?2",
            now,
        ),
        ListFilter::DueBefore { until } => (
            "WHERE status = 'open' AND responded_at IS NULL AND due_at < ?2",
            until,
        ),
    };
    let cond = if cond.contains("?2") {
        cond.to_string()
    } else {
        format!("{cond} AND ?2 = ?2")
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, status, requester, subject, issue_type, created_at, updated_at, due_at, responded_at
         FROM tickets {cond} ORDER BY due_at IS NULL, due_at, id LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![limit as i64, bound], |r| {
        Ok(ListedTicket {
            ticket: ticket_token(prefix, r.get(0)?),
            status: r.get(1)?,
            requester: r.get(2)?,
            subject: r.get(3)?,
            issue_type: r.get(4)?,
            created_at: r.get(5)?,
            updated_at: r.get(6)?,
            due_at: r.get(7)?,
            responded_at: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Serialize)]
pub struct UnfiledMessage {
    pub message_id: String,
    pub kind: String,
    pub from: Option<String>,
    pub subject: String,
    pub received_at: i64,
}

/// Machine mail that belongs to no ticket, newest first.
pub fn unfiled(conn: &Connection, limit: usize) -> Result<Vec<UnfiledMessage>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT message_id, kind, from_addr, subject, received_at FROM messages
         WHERE ticket_id IS NULL AND direction = 'in' ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(UnfiledMessage {
            message_id: r.get(0)?,
            kind: r.get(1)?,
            from: r.get(2)?,
            subject: r.get(3)?,
            received_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Serialize)]
pub struct SearchHit {
    pub ticket: String,
    pub status: String,
    pub requester: String,
    pub subject: String,
    pub last_activity: i64,
    pub matched: String,
    pub snippet: Option<String>,
}

fn looks_like_order(q: &str) -> bool {
    q.len() == 22 && q.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Exact identifiers (ticket ID, order number, e-mail address) go through
/// indexed tables; anything else is a full-text query with the user's input
/// quoted, so `ORD-123`, quotes or `*` never become FTS syntax.
pub fn search(
    conn: &Connection,
    prefix: &str,
    query: &str,
    limit: usize,
) -> Result<Vec<SearchHit>, StoreError> {
    search_filtered(
        conn,
        prefix,
        query,
        &SearchFilter {
            limit,
            ..SearchFilter::default()
        },
    )
}

/// Narrows a search.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// "open" or "closed".
    pub status: Option<String>,
    /// Only tickets active since (unix seconds).
    pub since: Option<i64>,
    pub limit: usize,
}

/// `search` with a status, a since-date and a limit.
pub fn search_filtered(
    conn: &Connection,
    prefix: &str,
    query: &str,
    filter: &SearchFilter,
) -> Result<Vec<SearchHit>, StoreError> {
    // Filters apply to the hits, so with one there are more to pick from.
    let filtered = filter.status.is_some() || filter.since.is_some();
    let ask = if filtered {
        filter.limit.saturating_mul(10).max(200)
    } else {
        filter.limit
    };
    let mut hits = search_unfiltered(conn, prefix, query, ask)?;
    hits.retain(|h| {
        filter.status.as_deref().is_none_or(|s| h.status == s)
            && filter.since.is_none_or(|t| h.last_activity >= t)
    });
    hits.truncate(filter.limit);
    Ok(hits)
}

fn search_unfiltered(
    conn: &Connection,
    prefix: &str,
    query: &str,
    limit: usize,
) -> Result<Vec<SearchHit>, StoreError> {
    let q = query.trim();
    if q.is_empty() {
        return Ok(vec![]);
    }
    let limit = limit as i64;
    let base = "SELECT t.id, t.status, t.requester, t.subject, t.updated_at FROM tickets t";
    let (sql, param, matched): (String, String, &str) = if let Some(n) =
        subject_tokens(&format!("[{q}]"), prefix).first()
    {
        (
            format!("{base} WHERE t.id = ?1 LIMIT ?2"),
            n.to_string(),
            "ticket",
        )
    } else if looks_like_order(q) {
        (
            format!("{base} WHERE t.id IN (SELECT ticket_id FROM facts WHERE kind = 'order' AND value = ?1) ORDER BY t.updated_at DESC LIMIT ?2"),
            q.to_string(),
            "order number",
        )
    } else if q.contains('@') && !q.contains(char::is_whitespace) {
        (
            format!("{base} WHERE t.id IN (SELECT ticket_id FROM participants WHERE address = lower(?1)) ORDER BY t.updated_at DESC LIMIT ?2"),
            q.to_string(),
            "e-mail address",
        )
    } else {
        return full_text(conn, prefix, q, limit);
    };
    let mut stmt = conn.prepare(&sql)?;
    let hits = stmt
        .query_map(params![param, limit], |r| {
            Ok(SearchHit {
                ticket: ticket_token(prefix, r.get(0)?),
                status: r.get(1)?,
                requester: r.get(2)?,
                subject: r.get(3)?,
                last_activity: r.get(4)?,
                matched: matched.to_string(),
                snippet: None,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(hits)
}

/// What an agent typed, as FTS5 queries. `forms` matches each word's
/// inflections; `widened` also any word that starts with it (compounds:
/// "pakket" finds "pakketpunt"). `widened` is asked only when `forms` finds
/// fewer than a page: a prefix makes FTS5 gather every match of every word
/// under it before the newest can be picked, tens of milliseconds for a
/// word in a fifth of a large store, while the inflections are read newest
/// first and stop at the page.
#[derive(Debug, PartialEq, Eq)]
struct FtsQuery {
    forms: String,
    widened: String,
}

fn fts_query(q: &str) -> Option<FtsQuery> {
    let mut forms = Vec::new();
    let mut widened = Vec::new();
    for w in q.split_whitespace() {
        let word = w.trim_end_matches('*');
        let alnum = word.chars().filter(|c| c.is_alphanumeric()).count();
        if alnum == 0 {
            // Punctuation alone: no token to look for.
            continue;
        }
        if word.len() < w.len() {
            // "pokem*": the agent asked for a prefix.
            let p = format!("{}*", fts_phrase(word));
            forms.push(p.clone());
            widened.push(p);
        } else if alnum >= 4 && word.chars().all(char::is_alphabetic) {
            let terms: Vec<String> = inflections(word).iter().map(|f| fts_phrase(f)).collect();
            let terms = terms.join(" OR ");
            forms.push(format!("({terms})"));
            widened.push(format!("({terms} OR {}*)", fts_phrase(word)));
        } else if alnum >= 4 {
            // An order or tracking number, an address: as typed, or longer.
            forms.push(fts_phrase(word));
            widened.push(format!("{}*", fts_phrase(word)));
        } else {
            forms.push(fts_phrase(word));
            widened.push(fts_phrase(word));
        }
    }
    if forms.is_empty() {
        return None;
    }
    Some(FtsQuery {
        forms: forms.join(" AND "),
        widened: widened.join(" AND "),
    })
}

/// An FTS string ("..." with quotes doubled): a plain term or phrase, no
/// operators from user input.
fn fts_phrase(w: &str) -> String {
    format!("\"{}\"", w.replace('"', "\"\""))
}

/// A word and the Dutch words it may be an inflection of or inflect to:
/// the stems left by taking off a plural (-en, -s), diminutive (-je,
/// -tjes), adjective (-e) or past (-de, -te) ending, with a doubled last
/// consonant made single (pakketten, kapotte), a long vowel written twice
/// again and z/v back to s/f (dozen, brieven, boten), and those stems with
/// each ending put on, spelled the same way back (doos/dozen, prijs/
/// prijzen, straat/straten). Irregular plurals come from a list
/// (`IRREGULAR`: schip/schepen, kind/kinderen, glas/glazen). English
/// needs none of this: the index stems it (porter).
/// A form that no mail contains costs one index lookup.
fn inflections(word: &str) -> Vec<String> {
    const OFF: [&str; 10] = ["tjes", "jes", "tje", "je", "en", "de", "te", "es", "s", "e"];
    const ON: [&str; 9] = ["e", "en", "s", "je", "jes", "de", "te", "d", "t"];
    let is_vowel = |c: char| "aeiouy".contains(c);
    // s and f are voiced before a vowel: doos/dozen, brief/brieven.
    let voiced = |c: char| match c {
        's' => 'z',
        'f' => 'v',
        c => c,
    };
    let w = word.to_lowercase();
    let mut stems = vec![w.clone()];
    for suffix in OFF {
        if let Some(s) = w.strip_suffix(suffix) {
            // The s of doos, prijs or huis is no plural.
            let vowel_end = s.ends_with(is_vowel) || s.ends_with("ij");
            if s.chars().count() >= 3 && !(suffix == "s" && vowel_end) {
                stems.push(s.to_string());
                if suffix.starts_with('e') {
                    // dozen -> doos, brieven -> brief, boten -> boot.
                    let mut cs: Vec<char> = s.chars().collect();
                    let n = cs.len();
                    match cs[n - 1] {
                        'z' => cs[n - 1] = 's',
                        'v' => cs[n - 1] = 'f',
                        _ => {}
                    }
                    let unvoiced: String = cs.iter().collect();
                    if unvoiced != s {
                        stems.push(unvoiced);
                    }
                    if n >= 3
                        && !is_vowel(cs[n - 1])
                        && "aeou".contains(cs[n - 2])
                        && !is_vowel(cs[n - 3])
                    {
                        cs.insert(n - 1, cs[n - 2]);
                        stems.push(cs.iter().collect());
                    }
                }
            }
        }
    }
    for i in 0..stems.len() {
        let cs: Vec<char> = stems[i].chars().collect();
        let n = cs.len();
        if n >= 4 && cs[n - 1] == cs[n - 2] && !is_vowel(cs[n - 1]) {
            stems.push(cs[..n - 1].iter().collect());
        }
    }
    // An irregular plural and its singular (the diminutive too), both
    // ways; the rules above still add the regular forms, as for gaten.
    // Short ones included (eitje is ei).
    let short: Vec<&str> = OFF.iter().filter_map(|o| w.strip_suffix(o)).collect();
    let irregular: Vec<(&str, &str)> = IRREGULAR
        .iter()
        .filter(|(one, many)| {
            let named = |s: &str| s == *one || s == *many;
            stems.iter().any(|s| named(s)) || short.iter().any(|s| named(s))
        })
        .copied()
        .collect();
    for (one, many) in irregular {
        for form in [one, many] {
            if !stems.iter().any(|s| s == form) {
                stems.push(form.to_string());
            }
        }
    }
    let mut forms: Vec<String> = Vec::new();
    let mut add = |f: String| {
        if !forms.contains(&f) {
            forms.push(f);
        }
    };
    for s in &stems {
        add(s.clone());
        for suffix in ON {
            add(format!("{s}{suffix}"));
        }
        // A short vowel keeps its sound by doubling the consonant after it.
        let cs: Vec<char> = s.chars().collect();
        let n = cs.len();
        if n >= 3 && !is_vowel(cs[n - 1]) && is_vowel(cs[n - 2]) && !is_vowel(cs[n - 3]) {
            let c = cs[n - 1];
            add(format!("{s}{c}en"));
            add(format!("{s}{c}e"));
        }
        // A long vowel is written once when a syllable follows (boot,
        // boten; doos, dozen), and s and f after it are voiced (prijs,
        // prijzen; brief, brieven).
        if n >= 3 && !is_vowel(cs[n - 1]) {
            let c = cs[n - 1];
            let head = &cs[..n - 1];
            let doubled = head.len() >= 2
                && "aeou".contains(head[head.len() - 1])
                && head[head.len() - 1] == head[head.len() - 2];
            let head: String = head.iter().collect();
            let stem: Option<String> = if doubled {
                head.get(..head.len() - 1).map(str::to_string)
            } else if matches!(c, 's' | 'f')
                && ["ie", "ui", "ei", "ij", "ou", "au", "eu", "oe"]
                    .iter()
                    .any(|d| head.ends_with(d))
            {
                Some(head)
            } else {
                None
            };
            if let Some(stem) = stem {
                let c = voiced(c);
                add(format!("{stem}{c}en"));
                add(format!("{stem}{c}e"));
            }
        }
    }
    forms
}

/// Dutch plurals the rules of `inflections` do not make: a vowel that
/// changes (schip/schepen), a short vowel that lengthens with a voiced
/// consonant (glas/glazen), -eren (kind/kinderen), and a few more; the
/// words buyers write about parcels, goods and addresses first.
const IRREGULAR: [(&str, &str); 21] = [
    ("schip", "schepen"),
    ("stad", "steden"),
    ("lid", "leden"),
    ("smid", "smeden"),
    ("glas", "glazen"),
    ("graf", "graven"),
    ("hof", "hoven"),
    ("staf", "staven"),
    ("kind", "kinderen"),
    ("ei", "eieren"),
    ("blad", "bladeren"),
    ("kalf", "kalveren"),
    ("lam", "lammeren"),
    ("rund", "runderen"),
    ("goed", "goederen"),
    ("lied", "liederen"),
    ("volk", "volkeren"),
    ("been", "beenderen"),
    ("gelid", "gelederen"),
    ("koe", "koeien"),
    ("vlo", "vlooien"),
];

fn full_text(
    conn: &Connection,
    prefix: &str,
    q: &str,
    limit: i64,
) -> Result<Vec<SearchHit>, StoreError> {
    let Some(query) = fts_query(q) else {
        return Ok(vec![]);
    };
    let mut want = limit * 4;
    let mut fts = &query.forms;
    let mut found = newest_matches(conn, prefix, fts, want)?;
    if (found.len() as i64) < want && query.widened != query.forms {
        fts = &query.widened;
        found = newest_matches(conn, prefix, fts, want)?;
    }
    loop {
        let read = found.len() as i64;
        let hits = newest_per_ticket(found, limit);
        // A long thread can fill the messages read with few tickets: read
        // further back while there is more and the page is not full.
        if hits.len() as i64 >= limit || read < want || want >= limit * 256 {
            return Ok(hits);
        }
        want *= 8;
        found = newest_matches(conn, prefix, fts, want)?;
    }
}

/// Up to `limit` tickets of these hits, most recently active first, each
/// with its newest matching message.
fn newest_per_ticket(mut found: Vec<SearchHit>, limit: i64) -> Vec<SearchHit> {
    found.sort_by_key(|h| std::cmp::Reverse(h.last_activity));
    let mut hits: Vec<SearchHit> = Vec::new();
    for hit in found {
        if !hits.iter().any(|h| h.ticket == hit.ticket) {
            hits.push(hit);
        }
        if hits.len() as i64 >= limit {
            break;
        }
    }
    hits
}

/// The newest `want` messages matching an FTS5 query, straight from the
/// index (rowid order), with their tickets: a common word matches a fifth
/// of a large store, and sorting all of it by ticket would take seconds.
fn newest_matches(
    conn: &Connection,
    prefix: &str,
    fts: &str,
    want: i64,
) -> Result<Vec<SearchHit>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, t.status, t.requester, t.subject, t.updated_at, f.snip
         FROM (SELECT rowid AS rid, snippet(messages_fts, -1, '[', ']', '…', 12) AS snip
               FROM messages_fts WHERE messages_fts MATCH ?1 ORDER BY rowid DESC LIMIT ?2) f
         JOIN messages m ON m.id = f.rid JOIN tickets t ON t.id = m.ticket_id",
    )?;
    let rows = stmt.query_map(params![fts, want], |r| {
        Ok(SearchHit {
            ticket: ticket_token(prefix, r.get(0)?),
            status: r.get(1)?,
            requester: r.get(2)?,
            subject: r.get(3)?,
            last_activity: r.get(4)?,
            matched: "text".to_string(),
            snippet: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Serialize)]
pub struct ExportRecord {
    pub message_id: String,
    pub ticket: Option<String>,
    pub direction: String,
    /// human, autoreply, bounce, list, own or noreply.
    pub kind: String,
    pub from: Option<String>,
    pub subject: String,
    pub received_at: String,
    pub language: Option<String>,
    pub issue_type: Option<String>,
    pub order_numbers: Vec<String>,
    pub shipment_numbers: Vec<String>,
    pub username: Option<String>,
    pub account_email: Option<String>,
    pub category: Option<String>,
    pub purchase_date: Option<String>,
    pub delivery_date: Option<String>,
    pub attachments: Vec<AttachmentView>,
    pub ack: Option<AckView>,
    pub problems: Option<String>,
}

/// Calls `emit` once per inbound stored message, oldest first.
pub fn export(
    conn: &Connection,
    prefix: &str,
    mut emit: impl FnMut(ExportRecord) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, message_id, ticket_id, direction, kind, from_addr, subject, received_at,
                language, ack_skip, problems, issue_type
         FROM messages WHERE direction = 'in' ORDER BY id",
    )?;
    let mut facts =
        conn.prepare_cached("SELECT kind, value FROM facts WHERE message = ?1 ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let ticket: Option<i64> = r.get(2)?;
        let received: i64 = r.get(7)?;
        let found: Vec<(String, String)> = facts
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let all = |kind: &str| -> Vec<String> {
            found
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let one = |kind: &str| all(kind).into_iter().next();
        let record = ExportRecord {
            message_id: r.get(1)?,
            ticket: ticket.map(|t| ticket_token(prefix, t)),
            direction: r.get(3)?,
            kind: r.get(4)?,
            from: r.get(5)?,
            subject: r.get(6)?,
            received_at: chrono::DateTime::from_timestamp(received, 0)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default(),
            language: r.get(8)?,
            issue_type: r.get(11)?,
            order_numbers: all("order"),
            shipment_numbers: all("shipment"),
            username: one("username"),
            account_email: one("account_email"),
            category: one("category"),
            purchase_date: one("purchase_date"),
            delivery_date: one("delivery_date"),
            attachments: attachments(conn, id)?,
            ack: ack_of(conn, id, r.get(9)?)?,
            problems: r.get(10)?,
        };
        emit(record).map_err(|e| StoreError::Io {
            path: "<stdout>".into(),
            source: e,
        })?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub ticket: String,
    pub message_id: String,
    pub to: String,
    pub status: String,
    pub attempts: i64,
    /// Attempts the SMTP server refused (an item is given up after
    /// `smtp::MAX_ATTEMPTS` of them).
    pub refused: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
}

/// The outbox, newest first.
pub fn outbox(conn: &Connection, prefix: &str, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, ticket_id, message_id, envelope_to, status, attempts, last_error, created_at,
                next_attempt_at, sent_at, failures
         FROM outbox ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(OutboxRow {
            id: r.get(0)?,
            ticket: ticket_token(prefix, r.get(1)?),
            message_id: r.get(2)?,
            to: r.get(3)?,
            status: r.get(4)?,
            attempts: r.get(5)?,
            last_error: r.get(6)?,
            created_at: r.get(7)?,
            next_attempt_at: r.get(8)?,
            sent_at: r.get(9)?,
            refused: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub tickets_open: i64,
    pub tickets_closed: i64,
    pub tickets_overdue: i64,
    pub messages_in: i64,
    pub messages_out: i64,
    pub unfiled: i64,
    pub attachments: i64,
    pub attachment_bytes: i64,
    pub outbox: Vec<(String, i64)>,
    pub mailboxes: Vec<MailboxStat>,
    /// Messages the server left out of its answers, still asked for.
    pub left_out: Vec<crate::store::LeftOut>,
    /// Messages deleted on request (`ticketd delete`), remembered so they
    /// are not filed again.
    pub deleted_messages: i64,
}

#[derive(Debug, Serialize)]
pub struct MailboxStat {
    pub mailbox: String,
    pub uidvalidity: i64,
    pub last_uid: i64,
}

/// Counts for `ticketd stats`; `now` decides what is overdue.
pub fn stats(conn: &Connection, now: i64) -> Result<Stats, StoreError> {
    let count =
        |sql: &str| -> Result<i64, StoreError> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    let mut outbox =
        conn.prepare("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status")?;
    let outbox = outbox
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut mb = conn
        .prepare("SELECT mailbox, uidvalidity, last_uid FROM mailbox_positions ORDER BY mailbox")?;
    let mailboxes = mb
        .query_map([], |r| {
            Ok(MailboxStat {
                mailbox: r.get(0)?,
                uidvalidity: r.get(1)?,
                last_uid: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Stats {
        tickets_open: count("SELECT count(*) FROM tickets WHERE status = 'open'")?,
        tickets_closed: count("SELECT count(*) FROM tickets WHERE status = 'closed'")?,
        tickets_overdue: conn.query_row(
            "SELECT count(*) FROM tickets WHERE status = 'open' AND responded_at IS NULL AND due_at < ?1",
            [now],
            |r| r.get(0),
        )?,
        messages_in: count("SELECT count(*) FROM messages WHERE direction = 'in'")?,
        messages_out: count("SELECT count(*) FROM messages WHERE direction = 'out'")?,
        unfiled: count("SELECT count(*) FROM messages WHERE ticket_id IS NULL")?,
        attachments: count("SELECT count(*) FROM attachments")?,
        attachment_bytes: count("SELECT coalesce(sum(size), 0) FROM attachments")?,
        outbox,
        mailboxes,
        left_out: crate::store::left_out(conn, None)?,
        deleted_messages: count("SELECT count(*) FROM deleted_mail")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn full_text_is_safe_and_forgiving() {
        let dir = tempfile_dir();
        let store = Store::open(&dir).unwrap();
        let c = store.conn();
        c.execute_batch(
            "INSERT INTO tickets (id, subject, requester, language, created_at, updated_at) VALUES (1, 's', 'a@b.test', 'nl', 0, 0);
             INSERT INTO messages (id, ticket_id, message_id, direction, kind, subject, received_at, text_body, new_text, raw_sha256, raw_size)
               VALUES (1, 1, 'm1', 'in', 'human', 'Kaart', 0, '', '', 'x', 0);
             INSERT INTO messages_fts (rowid, subject, body) VALUES (1, 'Kaart', 'De hoek is beschadigde en the cards were damaged, café ORD-123');",
        )
        .unwrap();
        for q in [
            "beschadigd",
            "damage",
            "cafe",
            "ORD-123",
            "\"*",
            "AND OR NOT",
            "kaart*",
        ] {
            let hits = search(c, "WN", q, 10).unwrap_or_else(|e| panic!("{q}: {e}"));
            if !matches!(q, "\"*" | "AND OR NOT") {
                assert_eq!(hits.len(), 1, "{q}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dutch_inflections_both_ways() {
        let has = |w: &str, f: &str| inflections(w).iter().any(|x| x == f);
        for (w, f) in [
            ("pakket", "pakketten"),
            ("pakket", "pakketje"),
            ("pakketten", "pakket"),
            ("pakketjes", "pakket"),
            ("beschadigd", "beschadigde"),
            ("beschadigde", "beschadigd"),
            ("kapot", "kapotte"),
            ("kapotte", "kapot"),
            ("bestelling", "bestellingen"),
            ("kaarten", "kaart"),
            ("Kaart", "kaartje"),
            // A long vowel written once when a syllable follows, and s/f
            // voiced to z/v: doos/dozen, prijs/prijzen, brief/brieven.
            ("doos", "dozen"),
            ("dozen", "doos"),
            ("doosje", "dozen"),
            ("prijs", "prijzen"),
            ("prijzen", "prijs"),
            ("brief", "brieven"),
            ("brieven", "brief"),
            ("huis", "huizen"),
            ("boot", "boten"),
            ("boten", "boot"),
            ("straat", "straten"),
            ("straten", "straat"),
            ("groot", "grote"),
            ("grote", "groot"),
            ("hoes", "hoezen"),
            ("hoezen", "hoes"),
            // Irregular plurals, from the list.
            ("schip", "schepen"),
            ("schepen", "schip"),
            ("stad", "steden"),
            ("steden", "stad"),
            ("glas", "glazen"),
            ("glazen", "glas"),
            ("kind", "kinderen"),
            ("kinderen", "kind"),
            ("kinderen", "kindje"),
            ("goederen", "goed"),
            ("goed", "goederen"),
            ("ei", "eieren"),
            ("eitje", "eieren"),
            ("koe", "koeien"),
            // Regular after all, by the rules above (not in the list).
            ("oog", "ogen"),
            ("weg", "wegen"),
            ("lot", "loten"),
            ("dag", "dagen"),
            ("dagen", "dag"),
        ] {
            assert!(has(w, f), "{w} -> {f}: {:?}", inflections(w));
        }
        // Nor is a word's own s a plural to take off: doos is no dood.
        assert!(!has("doos", "dood"), "{:?}", inflections("doos"));
        assert!(!has("huis", "huid"), "{:?}", inflections("huis"));
        assert!(has("tickets", "ticket"));
        assert_eq!(inflections("pakket")[0], "pakket");
        for w in ["beschadigde", "brieven", "straten", "bestellingen"] {
            assert!(inflections(w).len() <= 60, "{w}: {:?}", inflections(w));
        }
    }

    #[test]
    fn full_text_finds_inflections_and_compounds_when_few() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = store.conn();
        for (i, body) in [
            "Twee pakketten kwijt",
            "Mijn pakketje is nat",
            "Het ligt bij het pakketpunt",
            "Pokemon booster box",
            "Iets anders",
            "De dozen waren ingedeukt, de prijs klopte niet",
        ]
        .iter()
        .enumerate()
        {
            let id = i as i64 + 1;
            c.execute(
                "INSERT INTO tickets (id, subject, requester, language, created_at, updated_at)
                 VALUES (?1, 's', 'a@b.test', 'nl', 0, ?1)",
                [id],
            )
            .unwrap();
            c.execute(
                "INSERT INTO messages (id, ticket_id, message_id, direction, kind, subject, received_at, text_body, new_text, raw_sha256, raw_size)
                 VALUES (?1, ?1, 'm' || ?1, 'in', 'human', 's', 0, '', '', 'x', 0)",
                [id],
            )
            .unwrap();
            c.execute(
                "INSERT INTO messages_fts (rowid, subject, body) VALUES (?1, 's', ?2)",
                rusqlite::params![id, body],
            )
            .unwrap();
        }
        let found = |q: &str| -> Vec<String> {
            let mut t: Vec<String> = search(c, "WN", q, 10)
                .unwrap()
                .into_iter()
                .map(|h| h.ticket)
                .collect();
            t.sort();
            t
        };
        // Inflections, and with fewer than a page of those, compounds too.
        assert_eq!(found("pakket"), ["WN-000001", "WN-000002", "WN-000003"]);
        assert_eq!(found("pakketten"), ["WN-000001", "WN-000002"]);
        assert_eq!(found("pakketjes"), ["WN-000001", "WN-000002"]);
        // A short word is a prefix only when asked for.
        assert!(found("pok").is_empty());
        assert_eq!(found("pok*"), ["WN-000004"]);
        assert_eq!(found("poke"), ["WN-000004"]);
        assert_eq!(found("pakketten nat"), ["WN-000002"]);
        assert_eq!(found("doos"), ["WN-000006"]);
        assert_eq!(found("prijzen"), ["WN-000006"]);
        // The snippet marks the word as written in the mail.
        let hit = &search(c, "WN", "pakketten nat", 10).unwrap()[0];
        assert_eq!(hit.snippet.as_deref(), Some("Mijn [pakketje] is [nat]"));
        assert!(fts_query("\"* ...").is_none());
    }

    #[test]
    fn a_long_thread_does_not_crowd_out_other_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = store.conn();
        for t in 1..=3i64 {
            c.execute(
                "INSERT INTO tickets (id, subject, requester, language, created_at, updated_at)
                 VALUES (?1, 's', 'a@b.test', 'nl', 0, ?1)",
                [t],
            )
            .unwrap();
        }
        // Ticket 1's thread holds the 40 newest mentions; 2 and 3 one each, older.
        let tickets = [2i64, 3].into_iter().chain(std::iter::repeat_n(1, 40));
        for (i, t) in tickets.enumerate() {
            let id = i as i64 + 1;
            c.execute(
                "INSERT INTO messages (id, ticket_id, message_id, direction, kind, subject, received_at, text_body, new_text, raw_sha256, raw_size)
                 VALUES (?1, ?2, 'm' || ?1, 'in', 'human', 's', 0, '', '', 'x', 0)",
                [id, t],
            )
            .unwrap();
            c.execute(
                "INSERT INTO messages_fts (rowid, subject, body) VALUES (?1, 's', 'waar blijft mijn pakket')",
                [id],
            )
            .unwrap();
        }
        let hits = search(c, "WN", "pakket", 3).unwrap();
        let tickets: Vec<&str> = hits.iter().map(|h| h.ticket.as_str()).collect();
        assert_eq!(tickets, ["WN-000003", "WN-000002", "WN-000001"]);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ticketd-views-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}

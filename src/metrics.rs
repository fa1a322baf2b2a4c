//! Prometheus metrics at `[metrics] listen`: what was filed by kind, acks
//! by status and skip reason, outbox depth, the oldest unanswered ticket,
//! IMAP reconnects, the last successful sync and how long each stage of
//! filing was busy. Counts come from the store at scrape time (so they
//! survive restarts); the live figures come from the running daemon.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use rusqlite::Connection;
use tracing::{error, info};

use crate::daemon::Shutdown;
use crate::store::{Store, StoreError};

/// Figures only the running daemon knows.
#[derive(Debug, Default)]
pub struct Live {
    pub imap_reconnects: AtomicU64,
    /// Unix seconds of each mailbox's last successful sync; 0 before the
    /// first. One stuck mailbox of several shows.
    last_sync: Mutex<BTreeMap<String, i64>>,
    /// Microseconds each stage of filing was busy (see `SyncStats`):
    /// fetching, parsing, filing.
    stage_busy_us: [AtomicU64; 3],
}

/// The stages of `Live::stage_busy_us`, as the metric labels them.
const STAGES: [&str; 3] = ["fetch", "parse", "file"];

impl Live {
    /// The mailboxes watched, each at 0 until its first sync.
    pub fn watching(&self, mailboxes: &[String]) {
        let mut map = self.last_sync.lock().unwrap_or_else(|e| e.into_inner());
        for m in mailboxes {
            map.entry(m.clone()).or_insert(0);
        }
    }
    pub fn synced(&self, mailbox: &str) {
        let now = chrono::Utc::now().timestamp();
        self.last_sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mailbox.to_string(), now);
    }
    fn last_syncs(&self) -> Vec<(String, i64)> {
        let map = self.last_sync.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(m, t)| (m.clone(), *t)).collect()
    }
    pub fn reconnect(&self) {
        self.imap_reconnects.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds a sync's busy time per stage.
    pub fn filed(&self, stats: &crate::imap::SyncStats) {
        let busy = [stats.fetching, stats.parsing, stats.filing];
        for (counter, d) in self.stage_busy_us.iter().zip(busy) {
            let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            counter.fetch_add(us, Ordering::Relaxed);
        }
    }
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// A skip reason without its details ("rate limit: x@y ..." -> "rate
/// limit"), so addresses never become label values.
fn reason_class(reason: &str) -> &str {
    reason.split([':', '(']).next().unwrap_or(reason).trim()
}

fn grouped(conn: &Connection, sql: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            r.get(1)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The exposition text at `now` (unix seconds).
pub fn render(conn: &Connection, live: &Live, now: i64) -> Result<String, StoreError> {
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, samples: Vec<(String, i64)>, label_name: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (l, v) in samples {
                if label_name.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{label_name}=\"{}\"}} {v}", label(&l));
                }
            }
        };
    family(
        "ticketd_messages_ingested_total",
        "counter",
        "Inbound messages stored, by kind (human, autoreply, bounce, list, own, noreply, agent).",
        grouped(conn, "SELECT kind, count(*) FROM messages WHERE direction = 'in' GROUP BY kind ORDER BY kind")?,
        "kind",
    );
    // A counter must never go down, or rate() and increase() read a
    // reset: the outbox by status is a gauge (queued items get sent, a
    // bounce turns a sent one into bounced, a retry a failed one into
    // queued), and what only grows is counted apart.
    family(
        "ticketd_outbox_items",
        "gauge",
        "Acknowledgements and replies in the outbox now, by status (queued, sent, failed, bounced).",
        grouped(
            conn,
            "SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status",
        )?,
        "status",
    );
    let sent: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    family(
        "ticketd_acks_sent_total",
        "counter",
        "Acknowledgements and replies the SMTP server took (bounced ones included).",
        vec![(String::new(), sent)],
        "",
    );
    let mut skipped: Vec<(String, i64)> = Vec::new();
    for (reason, n) in grouped(
        conn,
        "SELECT ack_skip, count(*) FROM messages WHERE ack_skip IS NOT NULL GROUP BY ack_skip",
    )? {
        let class = reason_class(&reason).to_string();
        match skipped.iter_mut().find(|(c, _)| *c == class) {
            Some((_, total)) => *total += n,
            None => skipped.push((class, n)),
        }
    }
    skipped.sort();
    family(
        "ticketd_acks_skipped_total",
        "counter",
        "Messages that got no acknowledgement, by reason.",
        skipped,
        "reason",
    );
    let depth: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE status = 'queued'",
        [],
        |r| r.get(0),
    )?;
    family(
        "ticketd_outbox_depth",
        "gauge",
        "Mails waiting to be sent.",
        vec![(String::new(), depth)],
        "",
    );
    let oldest: Option<i64> = conn.query_row(
        "SELECT min(created_at) FROM tickets WHERE status = 'open' AND responded_at IS NULL",
        [],
        |r| r.get(0),
    )?;
    family(
        "ticketd_oldest_unanswered_ticket_age_seconds",
        "gauge",
        "Age of the oldest open ticket no agent has answered (0 when none).",
        vec![(String::new(), oldest.map(|t| (now - t).max(0)).unwrap_or(0))],
        "",
    );
    let mut left_out: Vec<(String, i64)> = Vec::new();
    for l in crate::store::left_out(conn, None)? {
        match left_out.iter_mut().find(|(m, _)| *m == l.mailbox) {
            Some((_, n)) => *n += 1,
            None => left_out.push((l.mailbox, 1)),
        }
    }
    family(
        "ticketd_imap_left_out_messages",
        "gauge",
        "Messages the server left out of its answers, still asked for on every pass, by mailbox.",
        left_out,
        "mailbox",
    );
    family(
        "ticketd_imap_reconnects_total",
        "counter",
        "IMAP connections lost and made anew since start.",
        vec![(
            String::new(),
            live.imap_reconnects.load(Ordering::Relaxed) as i64,
        )],
        "",
    );
    family(
        "ticketd_last_sync_timestamp_seconds",
        "gauge",
        "When each mailbox was last synced successfully (unix time; 0 before the first).",
        live.last_syncs(),
        "mailbox",
    );
    // Seconds, in a float: not a family of whole numbers.
    let name = "ticketd_ingest_busy_seconds_total";
    let _ = writeln!(
        out,
        "# HELP {name} How long each stage of filing new mail was busy since start: fetch \
         (waiting for the server's answers), parse (and writing large raw mails), file (rows, \
         acks, commits and their syncs). The stages run at once; the one that grows as fast as \
         the time a backlog takes is what holds it up.\n# TYPE {name} counter"
    );
    for (stage, us) in STAGES.iter().zip(&live.stage_busy_us) {
        let secs = us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}{{stage=\"{stage}\"}} {secs:.6}");
    }
    Ok(out)
}

/// Serves `/metrics` until shutdown.
/// The metrics port, taken at start: a port in use fails the start, as
/// for any listener an operator configured, instead of a service running
/// on without the metrics it was asked for.
pub async fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    data_dir: &std::path::Path,
    live: Arc<Live>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let store = Store::open(data_dir).map_err(std::io::Error::other)?;
    let store = Arc::new(Mutex::new(store));
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let store = store.clone();
            let live = live.clone();
            async move {
                let result = tokio::task::spawn_blocking(move || {
                    let store = store
                        .lock()
                        .map_err(|_| "store lock poisoned".to_string())?;
                    render(store.conn(), &live, chrono::Utc::now().timestamp())
                        .map_err(|e| e.to_string())
                })
                .await;
                let text = match result {
                    Ok(r) => r,
                    Err(e) => Err(e.to_string()),
                };
                match text {
                    Ok(text) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(e) => {
                        error!(error = %e, "metrics: cannot read the store");
                        (StatusCode::INTERNAL_SERVER_ERROR, "store unavailable\n").into_response()
                    }
                }
            }
        }),
    );
    info!(addr = %listener.local_addr()?, "metrics: listening on /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_out_messages_are_counted_by_mailbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = store.conn();
        crate::store::note_left_out(c, "INBOX", 7, &[3, 5], 100).unwrap();
        crate::store::note_left_out(c, "Klantenservice", 2, &[9], 100).unwrap();
        let text = render(c, &Live::default(), 200).unwrap();
        assert!(
            text.contains("# TYPE ticketd_imap_left_out_messages gauge"),
            "{text}"
        );
        assert!(
            text.contains("ticketd_imap_left_out_messages{mailbox=\"INBOX\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ticketd_imap_left_out_messages{mailbox=\"Klantenservice\"} 1"),
            "{text}"
        );
    }

    /// Sample value of `line_start` (a metric name with its labels).
    fn sample(text: &str, line_start: &str) -> Option<i64> {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
    }

    /// What is declared a counter never goes down while the outbox moves
    /// on: items queued then sent, a sent one bounced, a failed one retried.
    #[test]
    fn counters_never_go_down_as_the_outbox_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = store.conn();
        c.execute_batch(
            "INSERT INTO tickets (id, requester, subject, language, created_at, updated_at)
               VALUES (1, 'a@buyer.test', 's', 'nl', 0, 0);",
        )
        .unwrap();
        for id in 1..=3 {
            c.execute(
                "INSERT INTO outbox (id, ticket_id, message_id, envelope_from, envelope_to, raw,
                   created_at, next_attempt_at) VALUES (?1, 1, ?2, 'us@x.test', 'a@buyer.test', x'00', 0, 0)",
                rusqlite::params![id, format!("<{id}@x.test>")],
            )
            .unwrap();
        }
        let steps = [
            "UPDATE outbox SET status = 'sent', sent_at = 10 WHERE id IN (1, 2)",
            "UPDATE outbox SET status = 'failed' WHERE id = 3",
            "UPDATE outbox SET status = 'bounced' WHERE id = 1",
            "UPDATE outbox SET status = 'queued' WHERE id = 3",
        ];
        let counters = |text: &str| -> Vec<(String, i64)> {
            let names: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.strip_suffix(" counter"))
                .collect();
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| names.iter().any(|n| l.starts_with(n)))
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect()
        };
        let mut before = counters(&render(c, &Live::default(), 20).unwrap());
        for step in steps {
            c.execute(step, []).unwrap();
            let text = render(c, &Live::default(), 20).unwrap();
            let now = counters(&text);
            for (name, old) in &before {
                let new = now.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
                assert!(
                    new.is_some_and(|v| v >= *old),
                    "after `{step}`: counter {name} went from {old} to {new:?}\n{text}"
                );
            }
            before = now;
        }
        let text = render(c, &Live::default(), 20).unwrap();
        assert_eq!(sample(&text, "ticketd_acks_sent_total "), Some(2), "{text}");
        assert_eq!(
            sample(&text, "ticketd_outbox_items{status=\"bounced\"} "),
            Some(1),
            "{text}"
        );
    }

    /// Each mailbox has its own last sync, so one stuck mailbox of several
    /// shows; one not synced yet reads 0.
    #[test]
    fn last_sync_is_per_mailbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = Live::default();
        live.watching(&["INBOX".to_string(), "Support/Retouren".to_string()]);
        live.synced("INBOX");
        let text = render(store.conn(), &live, 20).unwrap();
        let inbox = sample(
            &text,
            "ticketd_last_sync_timestamp_seconds{mailbox=\"INBOX\"} ",
        );
        assert!(inbox.is_some_and(|t| t > 0), "{text}");
        assert_eq!(
            sample(
                &text,
                "ticketd_last_sync_timestamp_seconds{mailbox=\"Support/Retouren\"} "
            ),
            Some(0),
            "{text}"
        );
    }

    /// Each stage's busy time adds up over syncs, in seconds.
    #[test]
    fn busy_time_adds_up_per_stage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = Live::default();
        let ms = std::time::Duration::from_millis;
        let stats = crate::imap::SyncStats {
            fetching: ms(1500),
            parsing: ms(250),
            filing: ms(2),
            ..Default::default()
        };
        live.filed(&stats);
        live.filed(&stats);
        let text = render(store.conn(), &live, 20).unwrap();
        for (stage, secs) in [
            ("fetch", "3.000000"),
            ("parse", "0.500000"),
            ("file", "0.004000"),
        ] {
            let line = format!("ticketd_ingest_busy_seconds_total{{stage=\"{stage}\"}} {secs}\n");
            assert!(text.contains(&line), "{line:?} not in\n{text}");
        }
        assert!(
            text.contains("# TYPE ticketd_ingest_busy_seconds_total counter"),
            "{text}"
        );
    }

    #[test]
    fn reasons_lose_their_details() {
        assert_eq!(
            reason_class("rate limit: a@b.test already got 3"),
            "rate limit"
        );
        assert_eq!(reason_class("machine mail (autoreply)"), "machine mail");
        assert_eq!(label("a\"b"), "a\\\"b");
    }
}

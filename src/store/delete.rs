//! Deleting tickets on request: a buyer who asks for their data to be
//! erased, or a retention period for closed tickets. Everything of a
//! ticket goes in one transaction: its messages (the buyer's, the agents'
//! and the acks'), their text in the full-text index, attachments, facts,
//! participants and outbox rows; then the raw mails and attachments no
//! other message names, from the database and the blob directory.
//!
//! Deleted means gone from the file too: every connection runs with
//! `secure_delete` (what is deleted or rewritten is zeroed), the full-text
//! index deletes with FTS5's `secure-delete` (terms leave the index at
//! once, not at the next merge), and the write-ahead log is checkpointed
//! afterwards. Backups
//! taken before still hold it, and so does the mailbox, which ticketd
//! never changes; `deleted_mail` keeps a hash of each deleted message's
//! key so that the mail still there is not filed again.

use std::path::PathBuf;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Store, StoreError};

/// Which tickets to delete.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These tickets (by number).
    Tickets(Vec<i64>),
    /// Every ticket this address opened, and its mail that belongs to no
    /// ticket (auto-replies, bounces).
    Requester(String),
    /// Closed tickets closed before this time (unix seconds).
    ClosedBefore(i64),
}

/// What a deletion removes (or, planned, would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Deletion {
    pub tickets: Vec<i64>,
    /// Tickets asked for by number that do not exist.
    pub not_found: Vec<i64>,
    pub messages: usize,
    pub attachments: usize,
    pub outbox: usize,
    /// Stored raw mails and attachments no remaining message names.
    pub blobs: usize,
    /// For `Requester`: their messages on tickets others opened, kept.
    pub kept_on_other_tickets: usize,
}

/// The key a deleted message is remembered by: its Message-ID (or raw
/// hash) and sender, hashed. A key made unique for a second sender
/// (`id#sender`) is remembered as the mail itself carried it.
pub fn deleted_key(message_key: &str, from: Option<&str>) -> String {
    let from = from.unwrap_or_default().to_ascii_lowercase();
    let base = message_key
        .strip_suffix(from.as_str())
        .and_then(|k| k.strip_suffix('#'))
        .filter(|_| !from.is_empty())
        .unwrap_or(message_key);
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    h.update(b"\n");
    h.update(from.as_bytes());
    hex::encode(h.finalize())
}

/// Whether a message with this key and sender was deleted on request.
pub fn was_deleted(
    conn: &Connection,
    message_key: &str,
    from: Option<&str>,
) -> Result<bool, StoreError> {
    use super::Cached;
    Ok(conn
        .row_cached(
            "SELECT 1 FROM deleted_mail WHERE key_sha256 = ?1",
            [deleted_key(message_key, from)],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn ids(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(p, |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The tickets and messages a selection covers.
fn select(conn: &Connection, sel: &Selection) -> Result<(Deletion, Vec<i64>), StoreError> {
    let mut d = Deletion::default();
    let mut unfiled = Vec::new();
    match sel {
        Selection::Tickets(wanted) => {
            for &t in wanted {
                let found: Option<i64> = conn
                    .query_row("SELECT id FROM tickets WHERE id = ?1", [t], |r| r.get(0))
                    .optional()?;
                match found {
                    Some(t) if !d.tickets.contains(&t) => d.tickets.push(t),
                    Some(_) => {}
                    None => d.not_found.push(t),
                }
            }
        }
        Selection::Requester(address) => {
            let address = address.trim().to_ascii_lowercase();
            d.tickets = ids(
                conn,
                "SELECT id FROM tickets WHERE requester = ?1 ORDER BY id",
                [&address],
            )?;
            unfiled = ids(
                conn,
                "SELECT id FROM messages WHERE ticket_id IS NULL AND lower(from_addr) = ?1",
                [&address],
            )?;
            d.kept_on_other_tickets = conn.query_row(
                "SELECT count(*) FROM messages m JOIN tickets t ON t.id = m.ticket_id
                 WHERE lower(m.from_addr) = ?1 AND t.requester != ?1",
                [&address],
                |r| r.get(0),
            )?;
        }
        Selection::ClosedBefore(at) => {
            d.tickets = ids(
                conn,
                "SELECT id FROM tickets WHERE status = 'closed' AND closed_at < ?1 ORDER BY id",
                [at],
            )?;
        }
    }
    let mut messages = unfiled;
    for &t in &d.tickets {
        messages.extend(ids(
            conn,
            "SELECT id FROM messages WHERE ticket_id = ?1",
            [t],
        )?);
    }
    Ok((d, messages))
}

/// What `delete` would remove, without removing anything.
pub fn plan(conn: &Connection, sel: &Selection) -> Result<Deletion, StoreError> {
    Ok(counted(conn, sel)?.0)
}

/// The selection with its counts, and the messages it covers.
fn counted(conn: &Connection, sel: &Selection) -> Result<(Deletion, Vec<i64>), StoreError> {
    let (mut d, messages) = select(conn, sel)?;
    d.messages = messages.len();
    for &m in &messages {
        d.attachments += conn.query_row(
            "SELECT count(*) FROM attachments WHERE message = ?1",
            [m],
            |r| r.get::<_, usize>(0),
        )?;
    }
    for &t in &d.tickets {
        d.outbox += conn.query_row(
            "SELECT count(*) FROM outbox WHERE ticket_id = ?1",
            [t],
            |r| r.get::<_, usize>(0),
        )?;
    }
    Ok((d, messages))
}

impl Store {
    /// Deletes what `sel` covers, in one transaction, then the files no
    /// remaining row names. Returns what went.
    pub fn delete(&mut self, sel: &Selection, now: i64) -> Result<Deletion, StoreError> {
        let (d, files) = self.delete_inner(sel, now)?;
        for path in files {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        // The old pages are in the write-ahead log until a checkpoint
        // copies the zeroed ones over them; TRUNCATE empties it too. A
        // reader (the daemon, the web page) may hold it back: they are
        // overwritten at the next checkpoint then.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(d)
    }

    fn delete_inner(
        &mut self,
        sel: &Selection,
        now: i64,
    ) -> Result<(Deletion, Vec<PathBuf>), StoreError> {
        let data_dir = self.data_dir.clone();
        let tx = self.transaction()?;
        let (mut d, messages) = counted(&tx, sel)?;
        // Set-wise below: a retention run can cover thousands of tickets.
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS gone_tickets (id INTEGER PRIMARY KEY);
             CREATE TEMP TABLE IF NOT EXISTS gone_messages (id INTEGER PRIMARY KEY);
             CREATE TEMP TABLE IF NOT EXISTS gone_names (name TEXT PRIMARY KEY);
             DELETE FROM gone_tickets; DELETE FROM gone_messages; DELETE FROM gone_names;",
        )?;
        for &t in &d.tickets {
            tx.execute("INSERT INTO gone_tickets (id) VALUES (?1)", [t])?;
        }
        for &m in &messages {
            tx.execute("INSERT OR IGNORE INTO gone_messages (id) VALUES (?1)", [m])?;
        }
        tx.execute(
            "INSERT INTO ticket_high_water (id, last) SELECT 1, max(id) FROM tickets WHERE true
             ON CONFLICT (id) DO UPDATE SET last = max(last, excluded.last)",
            [],
        )?;
        // Remembered, so the mail still in the mailbox is not filed again.
        {
            let mut stmt = tx.prepare(
                "SELECT m.message_id, m.from_addr FROM messages m JOIN gone_messages g ON g.id = m.id
                 WHERE m.direction = 'in'",
            )?;
            let keys = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for (key, from) in keys {
                tx.execute(
                    "INSERT OR IGNORE INTO deleted_mail (key_sha256, deleted_at) VALUES (?1, ?2)",
                    params![deleted_key(&key, from.as_deref()), now],
                )?;
            }
        }
        tx.execute_batch(
            "INSERT OR IGNORE INTO gone_names (name)
                 SELECT raw_sha256 FROM messages WHERE id IN (SELECT id FROM gone_messages)
                 AND raw_sha256 != '';
             INSERT OR IGNORE INTO gone_names (name)
                 SELECT sha256 FROM attachments WHERE message IN (SELECT id FROM gone_messages);
             INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1);
             DELETE FROM messages_fts WHERE rowid IN (SELECT id FROM gone_messages);
             DELETE FROM facts WHERE message IN (SELECT id FROM gone_messages)
                 OR ticket_id IN (SELECT id FROM gone_tickets);
             DELETE FROM attachments WHERE message IN (SELECT id FROM gone_messages);
             DELETE FROM outbox WHERE cause IN (SELECT id FROM gone_messages)
                 OR ticket_id IN (SELECT id FROM gone_tickets);
             DELETE FROM participants WHERE ticket_id IN (SELECT id FROM gone_tickets);
             DELETE FROM messages WHERE id IN (SELECT id FROM gone_messages);
             DELETE FROM tickets WHERE id IN (SELECT id FROM gone_tickets);
             -- Still named by a message or attachment left: kept.
             DELETE FROM gone_names WHERE name IN
                 (SELECT raw_sha256 FROM messages WHERE raw_sha256 IN (SELECT name FROM gone_names));
             DELETE FROM gone_names WHERE EXISTS
                 (SELECT 1 FROM attachments a WHERE a.sha256 = gone_names.name);",
        )?;
        let names: Vec<String> = {
            let mut stmt = tx.prepare("SELECT name FROM gone_names")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut files = Vec::new();
        for name in names {
            let inline = tx.execute("DELETE FROM blobs WHERE sha256 = ?1", [&name])?;
            let path = super::blob_path(&data_dir, &name);
            let file = path.exists();
            if inline > 0 || file {
                d.blobs += 1;
            }
            if file {
                files.push(path);
            }
        }
        tx.commit()?;
        Ok((d, files))
    }
}

//! One raw message in, one store transaction out. The message, its
//! attachments, the ticket change, the acknowledgement it causes (as an outbox
//! row) and the advanced mailbox position commit together, so a crash at any
//! point either files the message completely or not at all.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection};
use tracing::{debug, info, warn};

use crate::ack::{self, AckContext, AckEnvelope, AckKind, AckTemplates};
use crate::config::{Config, Language};
use crate::core::classify::{classify, MessageKind};
use crate::core::extract::{self, Facts};
use crate::core::parse::{self, sha256_hex, InboundMessage};
use crate::core::policy::response_due;
use crate::core::quote;
use crate::core::thread::{self, ThreadMatch};
use crate::store::{self, Cached, MailboxPosition, Store, StoreError, INLINE_BLOB_MAX};

/// Follow-up notes (`ack_followups`) a ticket gets at most until an agent
/// answers it.
const MAX_FOLLOWUP_NOTES: i64 = 3;

/// Threads writing a batch's large raw mails to files.
const WRITERS: usize = 2;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Filed on a ticket; `new` when this message opened it.
    Filed {
        ticket: i64,
        new: bool,
        ack_queued: bool,
    },
    /// Machine mail that belongs to no ticket: stored, not filed.
    Unfiled { kind: &'static str },
    /// Already stored (same Message-ID, or same bytes when it has none).
    Duplicate,
    /// Deleted on request (`ticketd delete`) earlier: not filed again.
    Deleted,
}

/// One message to file, with where it sits in its mailbox.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub raw: &'a [u8],
    pub position: Option<MailboxPosition>,
    /// Set when only the headers were fetched: the message's full size.
    pub too_large: Option<u64>,
    /// When the mail server received it (IMAP INTERNALDATE), if known.
    pub received: Option<DateTime<Utc>>,
}

/// A batch parsed by `Ingestor::prepare`, its large raw mails written to
/// files that are not yet durable; `Ingestor::commit` files it.
pub struct Prepared {
    messages: Vec<PreparedMessage>,
    /// Whether the batch has large raw mails, whose files need a sync.
    wrote_files: bool,
    /// The files written for it, to be let go from the page cache once
    /// durable.
    files: Vec<std::path::PathBuf>,
}

impl Prepared {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// About how much memory the batch holds: the raw mails kept for the
    /// database and the texts read from them (large raw mails are in
    /// their files already).
    pub fn held_bytes(&self) -> usize {
        self.messages
            .iter()
            .map(|m| {
                m.inline_raw.as_ref().map_or(0, Vec::len)
                    + m.msg.text.len()
                    + m.msg.html.as_ref().map_or(0, String::len)
                    + m.new_text.len()
            })
            .sum()
    }

    /// Adds a later batch, to be filed after this one's messages in the
    /// same transaction (its files made durable by the same sync).
    pub fn append(&mut self, later: Prepared) {
        self.messages.extend(later.messages);
        self.wrote_files |= later.wrote_files;
        self.files.extend(later.files);
    }
}

struct PreparedMessage {
    msg: InboundMessage,
    /// The message's text without quoted replies and signatures.
    new_text: String,
    facts: Facts,
    kind: MessageKind,
    /// sha256 and size of each attachment, in the order of `msg.attachments`.
    attachments: Vec<(String, usize)>,
    /// The raw mail, when small enough to be stored in the database.
    inline_raw: Option<Vec<u8>>,
    /// For a bounce: the Message-IDs of the mail it returns.
    embedded_ids: Vec<String>,
    position: Option<MailboxPosition>,
    /// When the mail server received it (IMAP INTERNALDATE), if known.
    received: Option<DateTime<Utc>>,
}

/// What one writer thread did for a batch: the sha256 of each large raw
/// mail it wrote (by its index in the batch), and the files it created.
#[derive(Default)]
struct Written {
    hashed: Vec<(usize, String)>,
    files: Vec<std::path::PathBuf>,
}

/// Files raw messages. Holds what every message needs: settings and the
/// loaded templates.
pub struct Ingestor<'a> {
    pub config: &'a Config,
    pub templates: &'a AckTemplates,
}

impl Ingestor<'_> {
    /// Files one message. `position` is where this message sits in its
    /// mailbox; it is stored in the same transaction.
    pub fn ingest(
        &self,
        store: &mut Store,
        raw: &[u8],
        position: Option<&MailboxPosition>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        if raw.len() as u64 > self.config.max_message_bytes {
            return self.ingest_headers_only(
                store,
                parse::header_block(raw),
                raw.len() as u64,
                position,
                now,
            );
        }
        self.file(store, raw, None, position, now)
    }

    /// Files a message too large to keep whole from its headers alone, so
    /// it is recorded, findable and never fetched again.
    pub fn ingest_headers_only(
        &self,
        store: &mut Store,
        headers: &[u8],
        full_size: u64,
        position: Option<&MailboxPosition>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        self.file(store, headers, Some(full_size), position, now)
    }

    fn file(
        &self,
        store: &mut Store,
        raw: &[u8],
        too_large: Option<u64>,
        position: Option<&MailboxPosition>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let item = Incoming {
            raw,
            too_large,
            position: position.cloned(),
            received: None,
        };
        let mut outcomes = self.ingest_batch(store, std::slice::from_ref(&item), now)?;
        Ok(outcomes.pop().unwrap_or(Outcome::Duplicate))
    }

    /// Files several messages in one transaction, in order: their blobs are
    /// written first and made durable with one filesystem sync, then every
    /// row, ticket change, queued ack and the last mailbox position commit
    /// together. All or nothing, so exactly-once holds as for one message,
    /// at a fraction of the fsyncs.
    pub fn ingest_batch(
        &self,
        store: &mut Store,
        items: &[Incoming<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let prepared = self.prepare(store.data_dir(), items, now)?;
        self.commit(store, prepared, now)
    }

    /// The first half of `ingest_batch`, which needs no database: parses
    /// the messages, reads their facts and writes the large raw mails'
    /// files (not yet made durable). What it returns owns its data, so the
    /// raw bytes can be let go and another thread can `commit` it while the
    /// next batch is prepared.
    pub fn prepare(
        &self,
        data_dir: &Path,
        items: &[Incoming<'_>],
        now: DateTime<Utc>,
    ) -> Result<Prepared, StoreError> {
        let today = now
            .with_timezone(&self.config.tickets.time_zone)
            .date_naive();
        // The large raw mails' files are written by threads of their own
        // while the batch is parsed. (Parsing a batch on several cores was
        // tried: 1.2-1.35x on the full mix, but two large mails decoded at
        // once broke the memory budget. See BENCHMARKS.md.) The writers
        // also hash what they write: the two largest costs of a photo mail
        // on two cores. Two of them, so one hashes while the other copies.
        let (to_writer, files) = std::sync::mpsc::channel::<(usize, &[u8])>();
        // Shared by the writers; a writer that fails drops it, which stops
        // the other one and the parsing (its next send fails).
        let files = std::sync::Mutex::new(Some(files));
        let files = &files;
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|_| {
                    scope.spawn(move || -> Result<Written, StoreError> {
                        let mut written = Written::default();
                        loop {
                            // The lock is held while waiting, not while writing.
                            let next = files
                                .lock()
                                .ok()
                                .and_then(|rx| rx.as_ref().map(|rx| rx.recv()));
                            let Some(Ok((i, raw))) = next else { break };
                            let sha = parse::raw_name(raw);
                            match store::write_blob_file(data_dir, &sha, raw) {
                                Ok(file) => written.files.extend(file),
                                Err(e) => {
                                    if let Ok(mut rx) = files.lock() {
                                        *rx = None;
                                    }
                                    return Err(e);
                                }
                            }
                            written.hashed.push((i, sha));
                        }
                        Ok(written)
                    })
                })
                .collect();
            let mut messages = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (raw, too_large) = match item.too_large {
                    Some(size) => (item.raw, Some(size)),
                    None if item.raw.len() as u64 > self.config.max_message_bytes => {
                        (parse::header_block(item.raw), Some(item.raw.len() as u64))
                    }
                    None => (item.raw, None),
                };
                let msg = if raw.len() > INLINE_BLOB_MAX {
                    if to_writer.send((i, raw)).is_err() {
                        // The writers stopped on an error, returned below.
                        break;
                    }
                    parse::parse_lean(raw)
                } else {
                    parse::parse(raw)
                };
                let mut prepared =
                    self.prepare_one(raw, msg, too_large, item.position.clone(), today);
                prepared.received = item.received;
                messages.push(prepared);
            }
            drop(to_writer);
            let mut written = Written::default();
            let mut failed = None;
            for writer in writers {
                match writer
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                {
                    Ok(w) => {
                        written.hashed.extend(w.hashed);
                        written.files.extend(w.files);
                    }
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let wrote_files = !written.hashed.is_empty();
            for (i, sha) in written.hashed {
                messages[i].msg.set_raw_blob(sha);
            }
            for m in &messages {
                for problem in &m.msg.problems {
                    warn!(message_id = %m.msg.dedupe_key, uid = ?m.position.as_ref().map(|p| p.last_uid), problem, "message partly unreadable; kept raw");
                }
            }
            Ok(Prepared {
                messages,
                wrote_files,
                files: written.files,
            })
        })
    }

    fn prepare_one(
        &self,
        raw: &[u8],
        mut msg: InboundMessage,
        too_large: Option<u64>,
        position: Option<MailboxPosition>,
        today: NaiveDate,
    ) -> PreparedMessage {
        if let Some(size) = too_large {
            msg.problems.push(format!(
                "message of {size} bytes is larger than max_message_bytes ({}): only its headers were kept",
                self.config.max_message_bytes
            ));
            msg.raw_size = size as usize;
        }
        let kind = classify(&msg, self.config.own_address.as_deref());
        // Attachments are in the raw mail already: one is decoded from it
        // when asked for (Store::read_blob) instead of being written twice,
        // so its decoded bytes are let go here.
        let attachments = msg
            .attachments
            .iter_mut()
            .map(|a| {
                let meta = a
                    .digest
                    .take()
                    .unwrap_or_else(|| (sha256_hex(&a.data), a.data.len()));
                a.data = Vec::new();
                meta
            })
            .collect();
        // What the buyer wrote and what it says need no database either.
        let new_text = quote::new_text(&msg.text);
        let mut facts = extract::extract(&msg.subject, &new_text, today);
        // A forwarded shipping or order mail, under "see below" or attached
        // whole: its numbers are what the buyer sends us, where they typed
        // none.
        // (A bounce carries our own ack attached: not a forward.)
        let mut forwarded = String::new();
        if kind == MessageKind::Human {
            if quote::is_forward(&msg.subject) && new_text.len() < msg.text.trim().len() {
                forwarded.push_str(&msg.text);
                forwarded.push('\n');
            }
            forwarded.push_str(&msg.attached_text);
        }
        if !forwarded.trim().is_empty() {
            // Only its numbers are taken: the rest of `extract` (dates,
            // issue type, category, language) is not read for it.
            let forwarded = format!("{}\n{forwarded}", msg.subject);
            if facts.order_numbers.is_empty() {
                facts.order_numbers = extract::order_numbers(&forwarded);
            }
            if facts.shipment_numbers.is_empty() {
                facts.shipment_numbers = extract::shipment_numbers(&forwarded);
            }
        }
        PreparedMessage {
            new_text,
            facts,
            inline_raw: (raw.len() <= INLINE_BLOB_MAX).then(|| raw.to_vec()),
            embedded_ids: if kind == MessageKind::Bounce {
                parse::embedded_message_ids(raw)
            } else {
                Vec::new()
            },
            msg,
            kind,
            attachments,
            position,
            received: None,
        }
    }

    /// The second half of `ingest_batch`: makes the prepared batch's files
    /// durable, then writes its rows and commits them in one transaction.
    pub fn commit(
        &self,
        store: &mut Store,
        prepared: Prepared,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let data_dir = store.data_dir().to_path_buf();
        std::thread::scope(|scope| {
            // The files are made durable while the rows are written; only
            // the commit, which names them, has to wait for that.
            let files = prepared.files;
            let synced = prepared.wrote_files.then(|| {
                scope.spawn(move || {
                    store::sync_blobs(&data_dir)?;
                    files.iter().for_each(|f| store::drop_cached(f));
                    Ok::<_, StoreError>(files)
                })
            });
            let tx = store.transaction()?;
            let mut outcomes = Vec::with_capacity(prepared.messages.len());
            // The files of large mails filed already under another name.
            let mut unnamed = Vec::new();
            for message in prepared.messages {
                outcomes.push(self.file_one(&tx, message, now, &mut unnamed)?);
            }
            let written = match synced {
                Some(synced) => synced
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
                None => Vec::new(),
            };
            tx.commit()?;
            remove_unnamed(store, &unnamed, &written);
            Ok(outcomes)
        })
    }

    /// Moves the mailbox position past a filed message and, when filed
    /// mail is flagged or moved on the server, notes it for that.
    fn advance(&self, tx: &Connection, pos: &MailboxPosition) -> Result<(), StoreError> {
        store::set_position(tx, pos)?;
        if self
            .config
            .imap
            .as_ref()
            .is_some_and(|i| i.changes_mailbox())
        {
            store::queue_after_filing(tx, pos)?;
        }
        Ok(())
    }

    /// Files one prepared message in `tx`. A large mail filed already
    /// whose stored copy has other bytes (so its file another name) adds
    /// the name of this copy's file to `unnamed`.
    fn file_one(
        &self,
        tx: &Connection,
        message: PreparedMessage,
        now: DateTime<Utc>,
        unnamed: &mut Vec<String>,
    ) -> Result<Outcome, StoreError> {
        let PreparedMessage {
            mut msg,
            new_text,
            facts,
            kind,
            attachments: attachment_shas,
            inline_raw,
            embedded_ids,
            position,
            received,
        } = message;
        let tickets = &self.config.tickets;
        let aged = aged_out(received, now, tickets.ack_max_age_days)
            .or_else(|| answered_before(received, tickets.acked_before));
        let now = received_at(received, now, tickets.response_hours);
        let position = position.as_ref();
        let (key, from) = (msg.dedupe_key.clone(), msg.from_address.clone());
        let filed = already_filed(tx, &mut msg)?;
        if !filed && store::delete::was_deleted(tx, &key, from.as_deref())? {
            // Its bytes are its own (another message with them would have
            // its key): the file this batch wrote for it goes.
            if inline_raw.is_none() && !msg.raw_blob.is_empty() {
                unnamed.push(msg.raw_blob.clone());
            }
            if let Some(pos) = position {
                self.advance(tx, pos)?;
            }
            info!(message_id = %key, "deleted on request (ticketd delete); not filed again");
            return Ok(Outcome::Deleted);
        }
        if filed {
            if inline_raw.is_none()
                && !msg.raw_blob.is_empty()
                && store::stored_raw_blob(tx, &msg.dedupe_key)?.as_ref() != Some(&msg.raw_blob)
            {
                unnamed.push(msg.raw_blob.clone());
            }
            if let Some(pos) = position {
                self.advance(tx, pos)?;
            }
            info!(message_id = %msg.dedupe_key, "duplicate delivery; already filed");
            return Ok(Outcome::Duplicate);
        }
        if let Some(raw) = &inline_raw {
            store::put_blob_inline(tx, &msg.raw_blob, raw)?;
        }

        let prefix = &self.config.tickets.prefix;
        let mut matched = thread::decide(&msg, prefix, &store::Lookup(tx));
        // An agent's answer sent from their own client (or found in the
        // Sent folder): filed as the agent's reply, never acknowledged.
        let mut kind = kind;
        if matches!(kind, MessageKind::Human | MessageKind::Own) {
            if let Some(own) = self.config.own_address.as_deref() {
                // An agent is no participant of a ticket yet when they
                // first answer the buyer's mail from their own client.
                let threaded = matched.ticket().or(matched.referenced());
                if let Some(t) =
                    thread::agent_reply(&msg, threaded, prefix, own, &store::Lookup(tx))
                {
                    matched = ThreadMatch::ByReference(t);
                    kind = MessageKind::Agent;
                    tx.exec_cached(
                        "UPDATE tickets SET responded_at = coalesce(responded_at, ?2) WHERE id = ?1",
                        params![t, now.timestamp()],
                    )?;
                }
            }
        }
        if kind == MessageKind::Bounce && matched.ticket().is_none() {
            // A bounce of one of our acks belongs to that ack's ticket.
            if let Some(t) = store::ticket_of_sent(tx, &embedded_ids)? {
                matched = ThreadMatch::ByReference(t);
                for id in &embedded_ids {
                    tx.exec_cached(
                        "UPDATE outbox SET status = 'bounced', last_error = 'bounced: ' || ?2
                         WHERE message_id = ?1",
                        params![id, msg.dedupe_key],
                    )?;
                }
            }
        }
        let now_s = now.timestamp();

        let (ticket, new) = match (matched.ticket(), kind.is_machine()) {
            (Some(t), _) => {
                // A follow-up reopens a closed ticket and may be the first
                // to say what the problem is.
                // A machine (vacation reply, bounce) never reopens a ticket.
                if kind.is_machine() {
                    tx.exec_cached(
                        "UPDATE tickets SET updated_at = ?2 WHERE id = ?1",
                        params![t, now_s],
                    )?;
                } else {
                    tx.exec_cached(
                        "UPDATE tickets SET updated_at = ?2, status = 'open', closed_at = NULL,
                         issue_type = CASE WHEN issue_type = 'general' THEN ?3 ELSE issue_type END,
                         category = coalesce(category, ?4)
                         WHERE id = ?1",
                        params![
                            t,
                            now_s,
                            facts.issue_type.as_str(),
                            facts.category.map(|c| c.as_str())
                        ],
                    )?;
                }
                (Some(t), false)
            }
            (None, true) => (None, false),
            (None, false) => {
                let language = facts
                    .language
                    .unwrap_or(self.config.tickets.default_language);
                let requester = msg.from_address.clone().unwrap_or_default();
                let due = response_due(now, self.config.tickets.response_hours);
                tx.exec_cached(
                    // Past every number given out, deleted tickets' too
                    // (`ticket_high_water`): a number names one ticket only.
                    "INSERT INTO tickets (id, subject, requester, requester_name, language, created_at,
                     updated_at, due_at, issue_type, category) VALUES (
                     max(coalesce((SELECT max(id) FROM tickets), 0),
                         coalesce((SELECT last FROM ticket_high_water), 0)) + 1,
                     ?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
                    params![
                        msg.subject,
                        requester,
                        msg.from_name,
                        language.code(),
                        now_s,
                        due.timestamp(),
                        facts.issue_type.as_str(),
                        facts.category.map(|c| c.as_str())
                    ],
                )?;
                (Some(tx.last_insert_rowid()), true)
            }
        };
        if let (Some(t), Some(from)) = (ticket, msg.from_address.as_deref()) {
            if !kind.is_machine() {
                tx.exec_cached(
                    "INSERT OR IGNORE INTO participants (ticket_id, address) VALUES (?1, ?2)",
                    params![t, from],
                )?;
            }
        }
        match matched {
            ThreadMatch::StrangerToken(other) => {
                warn!(message_id = %msg.dedupe_key, named = other, "subject names a ticket the sender is not part of; opened a new ticket");
            }
            ThreadMatch::StrangerReference(other) => {
                warn!(message_id = %msg.dedupe_key, named = other, "replies to a buyer's mail on a ticket the sender is not part of; opened a new ticket");
            }
            _ => {}
        }

        let message_row =
            insert_message(tx, &msg, &new_text, kind, ticket, &facts, position, now_s)?;
        for (a, (sha, size)) in msg.attachments.iter().zip(&attachment_shas) {
            tx.exec_cached(
                "INSERT INTO attachments (message, sha256, filename, content_type, size, content_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    message_row,
                    sha,
                    a.filename,
                    a.content_type,
                    *size as i64,
                    a.content_id
                ],
            )?;
        }
        if let Some(t) = ticket {
            insert_facts(tx, t, message_row, &facts)?;
        }

        let followup = !new && !kind.is_machine() && self.config.tickets.ack_followups;
        let ack_queued = match ticket {
            Some(t) if new || followup => {
                if let Some(reason) = aged {
                    info!(ticket = %thread::ticket_token(prefix, t), %reason, "no acknowledgement");
                    set_ack_skip(tx, message_row, &reason)?;
                    false
                } else {
                    let which = if new { AckKind::New } else { AckKind::Followup };
                    match self.queue_ack(which, tx, &msg, &new_text, &facts, t, message_row, now) {
                        Ok(()) => true,
                        Err(reason) => {
                            warn!(ticket = %thread::ticket_token(prefix, t), %reason, "no acknowledgement");
                            set_ack_skip(tx, message_row, &reason)?;
                            false
                        }
                    }
                }
            }
            _ => {
                let reason = if kind == MessageKind::Agent {
                    "an agent's reply".to_string()
                } else if kind.is_machine() {
                    format!("machine mail ({})", kind.as_str())
                } else {
                    "follow-up on an existing ticket".to_string()
                };
                set_ack_skip(tx, message_row, &reason)?;
                false
            }
        };

        if let Some(pos) = position {
            self.advance(tx, pos)?;
        }

        Ok(match ticket {
            Some(t) => {
                info!(message_id = %msg.dedupe_key, ticket = %thread::ticket_token(prefix, t), new, kind = kind.as_str(), "filed");
                Outcome::Filed {
                    ticket: t,
                    new,
                    ack_queued,
                }
            }
            None => {
                info!(message_id = %msg.dedupe_key, kind = kind.as_str(), "machine mail kept unfiled");
                Outcome::Unfiled {
                    kind: kind.as_str(),
                }
            }
        })
    }

    /// Renders and queues the acknowledgement. An `Err` is the reason none
    /// was queued; the message itself is filed either way.
    #[allow(clippy::too_many_arguments)]
    fn queue_ack(
        &self,
        which: AckKind,
        tx: &Connection,
        msg: &InboundMessage,
        new_text: &str,
        facts: &Facts,
        ticket: i64,
        cause: i64,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let smtp = self
            .config
            .smtp
            .as_ref()
            .ok_or("acknowledgements are off: no [smtp] section in the config")?;
        let to = msg
            .from_address
            .as_deref()
            .ok_or("the message has no sender address")?;
        if msg.machine.dmarc_failed {
            // Whoever wrote it is not who From names: an ack would carry
            // their subject and text from our address to that person.
            return Err(
                "the From address failed DMARC (Authentication-Results): it may be forged"
                    .to_string(),
            );
        }
        if let Some(asked) = msg.machine.x_auto_response_suppress.as_deref() {
            // Exchange and other helpdesks ask this of every automatic
            // answer (MS-OXCMAIL: All, or AutoReply among others).
            let no_replies = asked.split([',', ' ']).any(|v| {
                v.trim().eq_ignore_ascii_case("all") || v.trim().eq_ignore_ascii_case("autoreply")
            });
            if no_replies {
                return Err(format!(
                    "the sender asked for no automatic replies (X-Auto-Response-Suppress: {asked})"
                ));
            }
        }
        let cfg = &self.config.tickets;
        let recent: i64 = tx
            .row_cached(
                "SELECT count(*) FROM outbox WHERE envelope_to = ?1 AND created_at > ?2",
                params![to, now.timestamp() - 3600],
                |r| r.get(0),
            )
            .map_err(|e| format!("database error: {e}"))?;
        if recent >= i64::from(cfg.max_acks_per_sender_per_hour) {
            return Err(format!(
                "rate limit: {to} already got {recent} acknowledgement(s) in the last hour"
            ));
        }
        if which == AckKind::Followup {
            let to_ticket: i64 = tx
                .row_cached(
                    "SELECT count(*) FROM messages WHERE ticket_id = ?1 AND kind = 'followup'
                     AND received_at > ?2",
                    params![ticket, now.timestamp() - 3600],
                    |r| r.get(0),
                )
                .map_err(|e| format!("database error: {e}"))?;
            if to_ticket > 0 {
                return Err(
                    "follow-up: a note already went to this ticket in the last hour".to_string(),
                );
            }
            // A responder that sets no machine header and answers every
            // note would otherwise get one an hour for ever.
            let unanswered: i64 = tx
                .row_cached(
                    "SELECT count(*) FROM messages WHERE ticket_id = ?1 AND kind = 'followup'
                     AND received_at >= coalesce((SELECT max(received_at) FROM messages
                         WHERE ticket_id = ?1 AND kind = 'agent'), 0)",
                    params![ticket],
                    |r| r.get(0),
                )
                .map_err(|e| format!("database error: {e}"))?;
            if unanswered >= MAX_FOLLOWUP_NOTES {
                return Err(format!(
                    "follow-up: {unanswered} notes already went to this ticket since an agent last answered"
                ));
            }
        }
        let lang = store::ticket_language(tx, ticket)
            .ok()
            .and_then(|l| Language::from_code(&l))
            .unwrap_or(cfg.default_language);
        let token = thread::ticket_token(&cfg.prefix, ticket);
        let ctx = AckContext::for_message(&token, lang, cfg, now, msg, new_text, facts);
        let rendered = self
            .templates
            .render_kind(which, lang, &ctx)
            .map_err(|e| e.to_string())?;
        let message_id = ack::new_message_id(&token, &smtp.from_address);
        let raw = ack::build_mail(
            &rendered,
            &AckEnvelope {
                from_name: &smtp.from_name,
                from_address: &smtp.from_address,
                to_name: msg.from_name.as_deref(),
                to_address: to,
                in_reply_to: msg.message_id.as_deref(),
                references: &msg.references,
                message_id: &message_id,
                automatic: true,
            },
        )
        .map_err(|e| e.to_string())?;
        let now_s = now.timestamp();
        let db = |e: rusqlite::Error| format!("database error: {e}");
        // The ack is also a message of the ticket, so a reply to it threads.
        tx.exec_cached(
            "INSERT INTO messages (ticket_id, message_id, direction, kind, from_addr, from_name,
             subject, received_at, in_reply_to, text_body, new_text, html_body, raw_sha256, raw_size,
             language)
             VALUES (?1, ?2, 'out', ?12, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, '', ?10, ?11)",
            params![
                ticket,
                message_id,
                smtp.from_address,
                smtp.from_name,
                rendered.subject,
                now_s,
                msg.message_id,
                rendered.text,
                rendered.html,
                raw.len() as i64,
                lang.code(),
                match which {
                    AckKind::New => "ack",
                    AckKind::Followup => "followup",
                }
            ],
        )
        .map_err(db)?;
        tx.exec_cached(
            "INSERT INTO outbox (ticket_id, cause, message_id, envelope_from, envelope_to, raw,
             created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![ticket, cause, message_id, smtp.from_address, to, raw, now_s],
        )
        .map_err(db)?;
        Ok(())
    }
}

/// Why mail gets no ack when the server received it more than
/// `max_days` before it is filed: a mailbox watched for the first time
/// holds mail answered long ago, whose buyers should not all hear "we
/// received your message" now. INTERNALDATE only (mail from IMAP): a Date
/// header is the sender's to write.
fn aged_out(
    received: Option<DateTime<Utc>>,
    filed_at: DateTime<Utc>,
    max_days: Option<u32>,
) -> Option<String> {
    let (received, days) = (received?, max_days?);
    (filed_at - received > chrono::Duration::days(i64::from(days))).then(|| {
        format!(
            "old mail: received {}, more than {days} days before it was filed (tickets.ack_max_age_days)",
            received.format("%Y-%m-%d %H:%M UTC")
        )
    })
}

/// Why mail gets no ack when the server received it before the time an
/// operator said everything was answered (`poll --acked-before`).
fn answered_before(received: Option<DateTime<Utc>>, cut: Option<DateTime<Utc>>) -> Option<String> {
    let (received, cut) = (received?, cut?);
    (received < cut).then(|| {
        format!(
            "answered before: received {}, before {} (poll --acked-before)",
            received.format("%Y-%m-%d %H:%M:%S UTC"),
            cut.format("%Y-%m-%d %H:%M:%S UTC")
        )
    })
}

/// When a message counts as received, which starts its response clock:
/// when the mail server received it, so mail that waited out an outage or
/// a backlog is promised an answer 48 hours after it came, not after it
/// was filed. Only while that is still ahead: older mail (a mailbox
/// imported for the first time, a server clock that is off) counts from
/// now, so no ack names a due time already past.
fn received_at(
    received: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    response_hours: u32,
) -> DateTime<Utc> {
    let window = chrono::Duration::hours(i64::from(response_hours));
    match received {
        Some(r) if r <= now && now - r < window => r,
        _ => now,
    }
}

/// Removes the files a batch wrote for mail that was filed already with
/// other bytes: the same mail delivered again (another Received line, a
/// second alias) has a file name of its own, which no row names and
/// which would stay on the disk for good. Only files this batch wrote,
/// after its commit; only space is at stake, so a failure is logged.
fn remove_unnamed(store: &Store, names: &[String], written: &[std::path::PathBuf]) {
    for name in names {
        let path = store.blob_path(name);
        if !written.contains(&path) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                debug!(path = %path.display(), "removed the raw file of a mail filed already")
            }
            // Two such copies in one batch share the file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "could not remove the raw file of a mail filed already")
            }
        }
    }
}

/// Whether the message is a re-delivery of one already stored under its
/// dedupe key (its Message-ID, or the hash of its bytes). Another sender's
/// mail under a Message-ID already used (a careless mailer, or someone
/// copying a known one) is a different mail: it gets a key of its own, the
/// Message-ID and its sender, and is filed unless that is stored too. A
/// copy of our own mail coming back is always the same mail.
fn already_filed(tx: &Connection, msg: &mut InboundMessage) -> Result<bool, StoreError> {
    let Some(stored) = store::stored_sender(tx, &msg.dedupe_key)? else {
        return Ok(false);
    };
    let from = msg.from_address.as_deref().unwrap_or_default();
    if stored.is_none_or(|f| f.eq_ignore_ascii_case(from)) {
        return Ok(true);
    }
    warn!(message_id = %msg.dedupe_key, %from, "Message-ID already used by another sender's mail; filing this one as its own");
    msg.dedupe_key = format!("{}#{}", msg.dedupe_key, from.to_ascii_lowercase());
    Ok(store::stored_sender(tx, &msg.dedupe_key)?.is_some())
}

fn set_ack_skip(tx: &Connection, message: i64, reason: &str) -> Result<(), StoreError> {
    tx.exec_cached(
        "UPDATE messages SET ack_skip = ?2 WHERE id = ?1",
        params![message, reason],
    )?;
    Ok(())
}

fn insert_facts(tx: &Connection, ticket: i64, message: i64, f: &Facts) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO facts (ticket_id, message, kind, value) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let dates = [
        ("purchase_date", f.purchase_date.map(|d| d.to_string())),
        ("delivery_date", f.delivery_date.map(|d| d.to_string())),
    ];
    let singles = [
        ("username", f.username.clone()),
        ("account_email", f.account_email.clone()),
        ("category", f.category.map(|c| c.as_str().to_string())),
    ];
    let all = f
        .order_numbers
        .iter()
        .map(|o| ("order", Some(o.clone())))
        .chain(
            f.shipment_numbers
                .iter()
                .map(|s| ("shipment", Some(s.clone()))),
        )
        .chain(singles)
        .chain(dates);
    for (kind, value) in all {
        if let Some(v) = value {
            stmt.execute(params![ticket, message, kind, v])?;
        }
    }
    Ok(())
}

/// The text of mails a person attached whole, for the ticket page and
/// the search. A bounce or an autoreply attaches our own ack: not that.
fn attached_text(msg: &InboundMessage, kind: MessageKind) -> Option<&str> {
    let person = matches!(kind, MessageKind::Human | MessageKind::Agent);
    (person && !msg.attached_text.trim().is_empty()).then_some(msg.attached_text.as_str())
}

#[allow(clippy::too_many_arguments)]
fn insert_message(
    tx: &Connection,
    msg: &InboundMessage,
    new_text: &str,
    kind: MessageKind,
    ticket: Option<i64>,
    facts: &Facts,
    position: Option<&MailboxPosition>,
    now: i64,
) -> Result<i64, StoreError> {
    let problems = (!msg.problems.is_empty()).then(|| msg.problems.join("; "));
    tx.exec_cached(
        "INSERT INTO messages (ticket_id, message_id, direction, kind, from_addr, from_name, subject,
         date_header, received_at, in_reply_to, refs, text_body, new_text, html_body, issue_type,
         raw_sha256, raw_size, language, mailbox, uid, problems, attached_text)
         VALUES (?1, ?2, 'in', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21)",
        params![
            ticket,
            msg.dedupe_key,
            kind.as_str(),
            msg.from_address,
            msg.from_name,
            msg.subject,
            msg.date.map(|d| d.timestamp()),
            now,
            (!msg.in_reply_to.is_empty()).then(|| msg.in_reply_to.join(" ")),
            (!msg.references.is_empty()).then(|| msg.references.join(" ")),
            msg.text,
            new_text,
            msg.html,
            facts.issue_type.as_str(),
            msg.raw_blob,
            msg.raw_size as i64,
            facts.language.map(|l| l.code()),
            position.map(|p| p.mailbox.as_str()),
            position.map(|p| p.last_uid),
            problems,
            attached_text(msg, kind),
        ],
    )?;
    let id = tx.last_insert_rowid();
    let attachment_names: Vec<&str> = msg
        .attachments
        .iter()
        .filter_map(|a| a.filename.as_deref())
        .collect();
    // Quoted history is our own mail or the buyer's earlier one, found
    // already; a forwarded mail is new to the ticket, and searched for.
    // A bounce or an autoreply quotes or attaches our own ack: not that.
    let person = matches!(kind, MessageKind::Human | MessageKind::Agent);
    let searched = if person && quote::is_forward(&msg.subject) {
        msg.text.as_str()
    } else {
        new_text
    };
    let attached = attached_text(msg, kind).unwrap_or_default();
    tx.exec_cached(
        "INSERT INTO messages_fts (rowid, subject, body) VALUES (?1, ?2, ?3)",
        params![
            id,
            msg.subject,
            format!("{searched}\n{attached}{}", attachment_names.join("\n"))
        ],
    )?;
    Ok(id)
}

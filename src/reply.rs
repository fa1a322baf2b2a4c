//! An agent's answer on a ticket: built as a mail from Whatnot Support with
//! the ticket token and the thread's headers, stored in the thread, queued
//! in the outbox (sent after commit like an ack), and the ticket's response
//! clock stopped.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use crate::ack::{self, AckEnvelope, RenderedAck};
use crate::config::Config;
use crate::core::thread::ticket_token;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("replies need an [smtp] section in the config")]
    NoSmtp,
    #[error("the reply is empty")]
    Empty,
    #[error("no ticket {0}")]
    NoTicket(String),
    #[error(transparent)]
    Mail(#[from] ack::AckError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ReplyError {
    fn from(e: rusqlite::Error) -> Self {
        ReplyError::Store(StoreError::Sql(e))
    }
}

/// The subject of our mails on a ticket: the buyer's subject without reply
/// prefixes or old tokens, with our token first and "Whatnot Support" last,
/// so the buyer finds it by searching either.
pub fn reply_subject(token: &str, original: &str) -> String {
    let mut s = original.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let prefix = ["re:", "antw:", "aw:", "sv:", "fwd:", "fw:", "doorst:"]
            .iter()
            .find(|p| lower.starts_with(*p));
        if let Some(p) = prefix {
            s = s[p.len()..].trim_start();
        } else if s.starts_with('[') && s.contains(']') {
            let end = s.find(']').map(|i| i + 1).unwrap_or(0);
            s = s[end..].trim_start();
        } else {
            break;
        }
    }
    let s = s.trim_end_matches(" - Whatnot Support").trim();
    if s.is_empty() {
        format!("[{token}] Whatnot Support")
    } else {
        format!("[{token}] {s} - Whatnot Support")
    }
}

/// Queues `body` as the agent's reply on `ticket`. Returns the reply's
/// Message-ID. The mail goes to the ticket's requester.
pub fn queue_reply(
    store: &mut Store,
    config: &Config,
    ticket: i64,
    agent: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<String, ReplyError> {
    let smtp = config.smtp.as_ref().ok_or(ReplyError::NoSmtp)?;
    let body = body.trim_end();
    if body.trim().is_empty() {
        return Err(ReplyError::Empty);
    }
    let token = ticket_token(&config.tickets.prefix, ticket);
    let tx = store.transaction()?;
    let (requester, requester_name, subject): (String, Option<String>, String) = tx
        .query_row(
            "SELECT requester, requester_name, subject FROM tickets WHERE id = ?1",
            [ticket],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| ReplyError::NoTicket(token.clone()))?;
    // The thread so far, oldest first: References, and the newest as parent.
    let chain: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT message_id FROM messages WHERE ticket_id = ?1 AND message_id NOT LIKE 'sha256:%'
             ORDER BY received_at, id",
        )?;
        let ids = stmt
            .query_map([ticket], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        ids
    };
    let parent = chain.last().cloned();
    let references: Vec<String> = chain.iter().rev().skip(1).take(20).rev().cloned().collect();
    let message_id = ack::new_message_id(&token, &smtp.from_address);
    let mail = RenderedAck {
        subject: reply_subject(&token, &subject),
        text: format!("{body}\n"),
        html: String::new(),
    };
    let raw = ack::build_mail(
        &mail,
        &AckEnvelope {
            from_name: &smtp.from_name,
            from_address: &smtp.from_address,
            to_name: requester_name.as_deref(),
            to_address: &requester,
            in_reply_to: parent.as_deref(),
            references: &references,
            message_id: &message_id,
            automatic: false,
        },
    )?;
    let now_s = now.timestamp();
    tx.execute(
        "INSERT INTO messages (ticket_id, message_id, direction, kind, from_addr, from_name, subject,
         received_at, in_reply_to, text_body, new_text, raw_sha256, raw_size)
         VALUES (?1, ?2, 'out', 'agent', ?3, ?4, ?5, ?6, ?7, ?8, ?8, '', ?9)",
        params![
            ticket,
            message_id,
            smtp.from_address,
            format!("{agent} ({})", smtp.from_name),
            mail.subject,
            now_s,
            parent,
            body,
            raw.len() as i64
        ],
    )?;
    let row = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO messages_fts (rowid, subject, body) VALUES (?1, ?2, ?3)",
        params![row, mail.subject, body],
    )?;
    tx.execute(
        "INSERT INTO outbox (ticket_id, message_id, envelope_from, envelope_to, raw, created_at,
         next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![ticket, message_id, smtp.from_address, requester, raw, now_s],
    )?;
    tx.execute(
        "UPDATE tickets SET responded_at = coalesce(responded_at, ?2), updated_at = ?2 WHERE id = ?1",
        params![ticket, now_s],
    )?;
    tx.commit()?;
    Ok(message_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_token_and_name_once() {
        assert_eq!(
            reply_subject("WN-000001", "Pakket beschadigd"),
            "[WN-000001] Pakket beschadigd - Whatnot Support"
        );
        assert_eq!(
            reply_subject(
                "WN-000001",
                "Re: [WN-000001] Pakket beschadigd - Whatnot Support"
            ),
            "[WN-000001] Pakket beschadigd - Whatnot Support"
        );
        assert_eq!(
            reply_subject("WN-000002", "  "),
            "[WN-000002] Whatnot Support"
        );
    }
}

//! Which messages in a shared mailbox are support mail. Decided from the
//! headers alone, before any body is fetched: addressed to a support
//! address or alias, a subject naming "Whatnot Support", or part of a known
//! ticket's thread. Everything else is left alone.

use std::collections::HashSet;

use super::parse::InboundMessage;
use super::thread::{self, ThreadLookup, ThreadMatch};

/// The operator's rules (`[intake]`).
#[derive(Debug, Clone)]
pub struct IntakeRules {
    /// Lower-cased support addresses and aliases.
    pub addresses: Vec<String>,
    /// Lower-cased subject fragments.
    pub subject_contains: Vec<String>,
    /// Mail that belongs to a known ticket always counts.
    pub thread_replies: bool,
}

/// Why a message was taken, or that it was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Address(String),
    Subject(String),
    Thread,
    NotSelected,
}

impl Selection {
    pub fn is_selected(&self) -> bool {
        *self != Selection::NotSelected
    }
    pub fn reason(&self) -> String {
        match self {
            Selection::Address(a) => format!("address {a}"),
            Selection::Subject(s) => format!("subject contains \"{s}\""),
            Selection::Thread => "reply in a known ticket's thread".to_string(),
            Selection::NotSelected => "not support mail".to_string(),
        }
    }
}

/// Headers whose values decide selection; fetched with
/// `BODY.PEEK[HEADER.FIELDS (...)]`.
pub const HEADER_FIELDS: &str =
    "FROM TO CC DELIVERED-TO X-ORIGINAL-TO SUBJECT MESSAGE-ID IN-REPLY-TO REFERENCES";

/// Addresses in Delivered-To / X-Original-To, which mail-parser leaves raw.
fn envelope_recipients(headers: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(headers);
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name == "delivered-to" || name == "x-original-to" {
            let v = value
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_ascii_lowercase();
            if !v.is_empty() {
                out.push(v);
            }
        }
    }
    out
}

/// Decides one message. `seen_ids` holds the Message-IDs selected earlier
/// in the same pass, so a quick reply to mail not yet filed still counts.
pub fn select(
    headers: &[u8],
    msg: &InboundMessage,
    rules: &IntakeRules,
    prefix: &str,
    lookup: &dyn ThreadLookup,
    seen_ids: &HashSet<String>,
) -> Selection {
    let recipients = msg
        .to
        .iter()
        .chain(msg.cc.iter())
        .cloned()
        .chain(envelope_recipients(headers));
    for r in recipients {
        if rules.addresses.contains(&r) {
            return Selection::Address(r);
        }
    }
    if rules.thread_replies {
        let refs_seen = msg
            .in_reply_to
            .iter()
            .chain(msg.references.iter())
            .any(|id| seen_ids.contains(id));
        let known = matches!(
            thread::decide(msg, prefix, lookup),
            ThreadMatch::ByReference(_)
                | ThreadMatch::BySubjectToken(_)
                | ThreadMatch::StrangerReference(_)
        );
        if refs_seen || known {
            return Selection::Thread;
        }
    }
    let subject = msg.subject.to_lowercase();
    for s in &rules.subject_contains {
        if subject.contains(s.as_str()) {
            return Selection::Subject(s.clone());
        }
    }
    Selection::NotSelected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::parse::parse;

    struct Lookup;
    impl ThreadLookup for Lookup {
        fn ticket_of_message(&self, ids: &[String]) -> Option<i64> {
            ids.iter().any(|i| i == "ack-1@example.test").then_some(1)
        }
        fn is_participant(&self, ticket: i64, address: &str) -> Option<bool> {
            (ticket == 1).then(|| address == "anna@buyer.test")
        }
    }

    fn rules() -> IntakeRules {
        IntakeRules {
            addresses: vec!["help@shop.test".into(), "klantenservice@shop.test".into()],
            subject_contains: vec!["whatnot support".into()],
            thread_replies: true,
        }
    }

    fn decide(h: &str) -> Selection {
        let raw = format!("{h}Message-ID: <m@x.test>\r\n\r\n");
        select(
            raw.as_bytes(),
            &parse(raw.as_bytes()),
            &rules(),
            "WN",
            &Lookup,
            &HashSet::new(),
        )
    }

    #[test]
    fn by_address_alias_and_envelope() {
        assert_eq!(
            decide("From: a@buyer.test\r\nTo: Help <HELP@shop.test>\r\nSubject: x\r\n"),
            Selection::Address("help@shop.test".into())
        );
        assert_eq!(
            decide("From: a@buyer.test\r\nTo: team@shop.test\r\nCc: klantenservice@shop.test\r\nSubject: x\r\n"),
            Selection::Address("klantenservice@shop.test".into())
        );
        assert_eq!(
            decide("Delivered-To: klantenservice@shop.test\r\nFrom: a@buyer.test\r\nTo: undisclosed-recipients:;\r\nSubject: x\r\n"),
            Selection::Address("klantenservice@shop.test".into())
        );
    }

    #[test]
    fn by_subject_and_thread() {
        assert_eq!(
            decide(
                "From: a@buyer.test\r\nTo: x@shop.test\r\nSubject: Vraag voor Whatnot Support\r\n"
            ),
            Selection::Subject("whatnot support".into())
        );
        assert_eq!(
            decide("From: a@buyer.test\r\nTo: x@shop.test\r\nSubject: Re: foto\r\nIn-Reply-To: <ack-1@example.test>\r\n"),
            Selection::Thread
        );
        assert_eq!(
            decide("From: anna@buyer.test\r\nTo: x@shop.test\r\nSubject: Re: [WN-000001] foto\r\n"),
            Selection::Thread
        );
    }

    #[test]
    fn everything_else_is_left_alone() {
        assert_eq!(
            decide("From: billing@vendor.test\r\nTo: finance@shop.test\r\nSubject: Invoice 2026-11 (support contract)\r\n"),
            Selection::NotSelected
        );
        assert_eq!(
            decide(
                "From: mallory@evil.test\r\nTo: x@shop.test\r\nSubject: Re: [WN-000001] foto\r\n"
            ),
            Selection::NotSelected
        );
    }
}

//! Who sent a message: a person, or a machine that must never be answered
//! (RFC 3834 auto-replies, bounces, list mail, our own mail, no-reply
//! senders). Answering any of these is how mail loops start.

use super::parse::InboundMessage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Human,
    AutoReply,
    Bounce,
    List,
    Own,
    NoReply,
    /// An agent's answer from their own mail client (decided by threading,
    /// not here: it needs the ticket).
    Agent,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Human => "human",
            MessageKind::AutoReply => "autoreply",
            MessageKind::Bounce => "bounce",
            MessageKind::List => "list",
            MessageKind::Own => "own",
            MessageKind::NoReply => "noreply",
            MessageKind::Agent => "agent",
        }
    }

    /// Never answered and never reopens a ticket: machines, and agents.
    pub fn is_machine(self) -> bool {
        self != MessageKind::Human
    }
}

const AUTO_SUBJECTS: &[&str] = &[
    "automatisch antwoord",
    "automatic reply",
    "auto reply",
    "autoreply",
    "out of office",
    "afwezigheidsbericht",
    "niet aanwezig",
];

const AUTO_SUBJECT_PREFIXES: &[&str] = &[
    "automatisch antwoord:",
    "automatic reply:",
    "auto reply:",
    "auto-reply:",
    "autoreply:",
    "out of office autoreply",
    "out of office:",
    "out of the office:",
    "afwezigheidsbericht",
    "afwezig:",
    "abwesenheitsnotiz",
];

fn is_noreply(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("");
    let squashed: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    squashed.starts_with("noreply") || squashed.starts_with("donotreply")
}

/// Decides the kind. `own_address` is our From address, lower-cased.
pub fn classify(msg: &InboundMessage, own_address: Option<&str>) -> MessageKind {
    let h = &msg.machine;
    let from = msg.from_address.as_deref().unwrap_or("");
    let local = from.split('@').next().unwrap_or("").to_ascii_lowercase();

    if own_address.is_some_and(|own| own.eq_ignore_ascii_case(from)) {
        return MessageKind::Own;
    }
    let report = h
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("multipart/report"));
    if report
        || local == "mailer-daemon"
        || local == "postmaster"
        || h.return_path.as_deref() == Some("")
    {
        return MessageKind::Bounce;
    }
    if h.auto_submitted
        .as_deref()
        .is_some_and(|v| !v.eq_ignore_ascii_case("no"))
        || h.x_autoreply
    {
        return MessageKind::AutoReply;
    }
    let subject = msg.subject.to_lowercase();
    if h.x_auto_response_suppress.is_some() && AUTO_SUBJECTS.iter().any(|s| subject.contains(s)) {
        return MessageKind::AutoReply;
    }
    // Responders that set no header at all (Lotus Notes, some webmail):
    // their subject prefixes are distinctive enough on their own.
    if AUTO_SUBJECT_PREFIXES.iter().any(|p| subject.starts_with(p)) {
        return MessageKind::AutoReply;
    }
    if let Some(p) = h.precedence.as_deref() {
        let p = p.to_ascii_lowercase();
        if p == "auto_reply" || p == "bulk" || p == "junk" {
            return MessageKind::AutoReply;
        }
        if p == "list" {
            return MessageKind::List;
        }
    }
    if h.list_id.is_some() || h.list_unsubscribe {
        return MessageKind::List;
    }
    if from.is_empty() || is_noreply(from) {
        return MessageKind::NoReply;
    }
    MessageKind::Human
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::parse::parse;

    fn kind(headers: &str) -> MessageKind {
        let raw = format!("{headers}Message-ID: <x@y.test>\r\nSubject: Hallo\r\n\r\nbody\r\n");
        classify(&parse(raw.as_bytes()), Some("support@example.test"))
    }

    #[test]
    fn people_and_machines() {
        assert_eq!(kind("From: a@buyer.test\r\n"), MessageKind::Human);
        assert_eq!(
            kind("From: a@buyer.test\r\nAuto-Submitted: no\r\n"),
            MessageKind::Human
        );
        assert_eq!(
            kind("From: a@buyer.test\r\nAuto-Submitted: auto-replied\r\n"),
            MessageKind::AutoReply
        );
        assert_eq!(
            kind("From: a@buyer.test\r\nPrecedence: bulk\r\n"),
            MessageKind::AutoReply
        );
        assert_eq!(
            kind("From: a@buyer.test\r\nList-Id: <news.shop.test>\r\n"),
            MessageKind::List
        );
        assert_eq!(
            kind("From: MAILER-DAEMON@mx.buyer.test\r\n"),
            MessageKind::Bounce
        );
        assert_eq!(
            kind("From: a@buyer.test\r\nReturn-Path: <>\r\n"),
            MessageKind::Bounce
        );
        assert_eq!(
            kind("From: Whatnot Support <Support@Example.test>\r\n"),
            MessageKind::Own
        );
        assert_eq!(kind("From: no-reply@shop.test\r\n"), MessageKind::NoReply);
        let lotus = "From: a@buyer.test\r\nMessage-ID: <y@z.test>\r\nSubject: Out of Office AutoReply: Pakket\r\n\r\nb\r\n";
        assert_eq!(
            classify(&parse(lotus.as_bytes()), None),
            MessageKind::AutoReply
        );
        assert_eq!(
            kind("From: do_not_reply@shop.test\r\n"),
            MessageKind::NoReply
        );
    }
}

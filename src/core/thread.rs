//! Which ticket a message belongs to. Order: (1) In-Reply-To/References
//! naming a stored message, our acknowledgements included; (2) a `[WN-000123]`
//! subject token; (3) a new ticket. Neither lets a stranger into someone
//! else's ticket: a token counts only from a participant of the ticket, and
//! a reference from someone else only when it names one of our own mails
//! (an ack or an agent's reply: its Message-ID is ours, unguessable). A
//! buyer's Message-ID is chosen by whoever sent it, so anyone could file a
//! mail under an ID first and then have a buyer's reply to it (a phishing
//! mail sent under that ID) threaded into their own ticket.

use super::parse::InboundMessage;

/// What threading needs to know from the store.
pub trait ThreadLookup {
    /// The ticket of the first of these Message-IDs that is stored.
    fn ticket_of_message(&self, message_ids: &[String]) -> Option<i64>;
    /// The ticket of the first of these Message-IDs that is one of our own
    /// mails (an ack or an agent's reply).
    fn ticket_of_sent(&self, _message_ids: &[String]) -> Option<i64> {
        None
    }
    /// Whether the ticket exists and `address` is one of its participants.
    fn is_participant(&self, ticket: i64, address: &str) -> Option<bool>;
    /// The address that opened the ticket.
    fn requester(&self, _ticket: i64) -> Option<String> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadMatch {
    ByReference(i64),
    BySubjectToken(i64),
    New,
    /// The subject names a ticket the sender is no part of.
    StrangerToken(i64),
    /// The mail replies to a buyer's message of a ticket the sender is no
    /// part of (and to none of our mails on it).
    StrangerReference(i64),
}

impl ThreadMatch {
    pub fn ticket(self) -> Option<i64> {
        match self {
            ThreadMatch::ByReference(t) | ThreadMatch::BySubjectToken(t) => Some(t),
            ThreadMatch::New
            | ThreadMatch::StrangerToken(_)
            | ThreadMatch::StrangerReference(_) => None,
        }
    }

    /// The ticket the mail's references name, whoever sent it.
    pub fn referenced(self) -> Option<i64> {
        match self {
            ThreadMatch::ByReference(t) | ThreadMatch::StrangerReference(t) => Some(t),
            _ => None,
        }
    }
}

/// Finds every `[PREFIX-digits]` token in a subject, in order.
pub fn subject_tokens(subject: &str, prefix: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut rest = subject;
    let open = format!("[{prefix}-");
    while let Some(pos) = find_ci(rest, &open) {
        let after = &rest[pos + open.len()..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !digits.is_empty() && digits.len() <= 12 && after[digits.len()..].starts_with(']') {
            if let Ok(n) = digits.parse::<i64>() {
                out.push(n);
            }
        }
        rest = &rest[pos + open.len()..];
    }
    out
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .to_ascii_uppercase()
        .find(&needle.to_ascii_uppercase())
}

/// Formats a ticket number as the buyer sees it: `WN-000123`.
pub fn ticket_token(prefix: &str, number: i64) -> String {
    format!("{prefix}-{number:06}")
}

pub fn decide(msg: &InboundMessage, prefix: &str, lookup: &dyn ThreadLookup) -> ThreadMatch {
    let mut ids: Vec<String> = msg.in_reply_to.clone();
    ids.extend(msg.references.iter().rev().cloned());
    // A From line that failed DMARC at our mail server is no proof of who
    // wrote: such mail is nobody's participant.
    let from = match msg.machine.dmarc_failed {
        true => "",
        false => msg.from_address.as_deref().unwrap_or(""),
    };
    let mut referenced = None;
    if !ids.is_empty() {
        if let Some(t) = lookup.ticket_of_message(&ids) {
            let participant = !from.is_empty() && lookup.is_participant(t, from) == Some(true);
            if participant || lookup.ticket_of_sent(&ids) == Some(t) {
                return ThreadMatch::ByReference(t);
            }
            referenced = Some(t);
        }
    }
    let mut stranger = None;
    for number in subject_tokens(&msg.subject, prefix) {
        match lookup.is_participant(number, from) {
            Some(true) if !from.is_empty() => return ThreadMatch::BySubjectToken(number),
            Some(_) => stranger = stranger.or(Some(number)),
            None => {}
        }
    }
    match (referenced, stranger) {
        (Some(t), _) => ThreadMatch::StrangerReference(t),
        (None, Some(t)) => ThreadMatch::StrangerToken(t),
        (None, None) => ThreadMatch::New,
    }
}

/// An agent answering from their own mail client: sent from our own
/// address or from someone at our own domain, on a ticket it threads to
/// (`threaded`: it names one of the ticket's messages) or, by its token in
/// the subject, on a ticket the sender already takes part in, the same rule
/// as for buyers. A token alone from our domain is not enough: the From line
/// is easily forged, and a forged "agent's reply" would mark a buyer's
/// ticket as answered. The ticket's own requester stays a buyer even when
/// they write from our domain (a support address on a webmail domain).
/// Returns that ticket.
pub fn agent_reply(
    msg: &InboundMessage,
    threaded: Option<i64>,
    prefix: &str,
    own_address: &str,
    lookup: &dyn ThreadLookup,
) -> Option<i64> {
    if msg.machine.dmarc_failed {
        return None;
    }
    let from = msg.from_address.as_deref()?;
    let own_domain = own_address.rsplit_once('@').map(|(_, d)| d)?;
    let ours = from.eq_ignore_ascii_case(own_address)
        || from
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(own_domain));
    if !ours {
        return None;
    }
    let ticket = threaded.or_else(|| {
        subject_tokens(&msg.subject, prefix)
            .into_iter()
            .find(|t| lookup.is_participant(*t, from) == Some(true))
    })?;
    let requester = lookup.requester(ticket);
    if requester.is_some_and(|r| r.eq_ignore_ascii_case(from)) {
        return None;
    }
    Some(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::parse::parse;

    struct Fake;
    impl ThreadLookup for Fake {
        fn ticket_of_message(&self, ids: &[String]) -> Option<i64> {
            ids.iter()
                .any(|i| i == "ack-7@example.test" || i == "anna-1@buyer.test")
                .then_some(7)
        }
        fn ticket_of_sent(&self, ids: &[String]) -> Option<i64> {
            ids.iter().any(|i| i == "ack-7@example.test").then_some(7)
        }
        fn is_participant(&self, ticket: i64, address: &str) -> Option<bool> {
            (ticket == 7).then(|| address == "anna@buyer.test" || address == "piet@example.test")
        }
        fn requester(&self, ticket: i64) -> Option<String> {
            (ticket == 7).then(|| "anna@buyer.test".to_string())
        }
    }

    fn msg(headers: &str) -> InboundMessage {
        parse(format!("{headers}Message-ID: <n@x.test>\r\n\r\nhoi\r\n").as_bytes())
    }

    #[test]
    fn tokens_behind_any_prefix() {
        assert_eq!(subject_tokens("Antw: [WN-000007] Pakket", "WN"), vec![7]);
        assert_eq!(subject_tokens("RE: [wn-000123]", "WN"), vec![123]);
        assert_eq!(subject_tokens("[WN-12x] [WN-] [WN-000042]", "WN"), vec![42]);
        assert!(subject_tokens("WN-000001 without brackets", "WN").is_empty());
        assert_eq!(ticket_token("WN", 1), "WN-000001");
    }

    #[test]
    fn reference_wins_then_participant_token() {
        let by_ref = msg("From: x@y.test\r\nIn-Reply-To: <ack-7@example.test>\r\nSubject: hi\r\n");
        assert_eq!(decide(&by_ref, "WN", &Fake), ThreadMatch::ByReference(7));
        let by_token = msg("From: anna@buyer.test\r\nSubject: Re: [WN-000007] hi\r\n");
        assert_eq!(
            decide(&by_token, "WN", &Fake),
            ThreadMatch::BySubjectToken(7)
        );
    }

    #[test]
    fn agents_answer_from_their_own_client() {
        // By the token of a ticket they take part in, or by naming one of
        // its messages.
        let own = msg("From: Piet <piet@example.test>\r\nSubject: RE: [WN-000007] hi\r\n");
        assert_eq!(
            agent_reply(&own, None, "WN", "support@example.test", &Fake),
            Some(7)
        );
        let support = msg("From: support@example.test\r\nSubject: [WN-000007] hi\r\n");
        assert_eq!(
            agent_reply(&support, Some(7), "WN", "support@example.test", &Fake),
            Some(7)
        );
        let outsider = msg("From: x@evil.test\r\nSubject: [WN-000007] hi\r\n");
        assert_eq!(
            agent_reply(&outsider, Some(7), "WN", "support@example.test", &Fake),
            None
        );
        let unknown = msg("From: piet@example.test\r\nSubject: [WN-000999] hi\r\n");
        assert_eq!(
            agent_reply(&unknown, None, "WN", "support@example.test", &Fake),
            None
        );
    }

    #[test]
    fn a_token_alone_from_our_domain_is_not_an_agents_reply() {
        // Anyone can write From: anything@our-domain and guess a number.
        for from in ["support@example.test", "refunds@example.test"] {
            let forged = msg(&format!(
                "From: Whatnot Support <{from}>\r\nSubject: [WN-000007] resolved\r\n"
            ));
            assert_eq!(
                agent_reply(&forged, None, "WN", "support@example.test", &Fake),
                None,
                "{from}"
            );
        }
    }

    #[test]
    fn the_requester_stays_a_buyer_on_a_shared_domain() {
        // Our address on a webmail domain: the buyer who opened ticket 7
        // from that domain answers the ack; that is no agent's reply.
        let buyer =
            msg("From: anna@buyer.test\r\nIn-Reply-To: <ack-7@example.test>\r\nSubject: hi\r\n");
        assert_eq!(
            agent_reply(&buyer, Some(7), "WN", "desk@buyer.test", &Fake),
            None
        );
        let colleague = msg("From: desk2@buyer.test\r\nSubject: hi\r\n");
        assert_eq!(
            agent_reply(&colleague, Some(7), "WN", "desk@buyer.test", &Fake),
            Some(7)
        );
    }

    #[test]
    fn a_stranger_replying_to_a_buyers_mail_gets_a_new_ticket() {
        // Anna's own mail, or our ack: anyone who replies to our ack joins.
        let anna = msg("From: anna@buyer.test\r\nIn-Reply-To: <anna-1@buyer.test>\r\n");
        assert_eq!(decide(&anna, "WN", &Fake), ThreadMatch::ByReference(7));
        let to_ack = msg(
            "From: bob@buyer.test\r\nIn-Reply-To: <ack-7@example.test>\r\n\
             References: <anna-1@buyer.test> <ack-7@example.test>\r\n",
        );
        assert_eq!(decide(&to_ack, "WN", &Fake), ThreadMatch::ByReference(7));
        // Someone else answering Anna's mail (or a mail sent to them under
        // its Message-ID) does not get into her ticket.
        let other = msg("From: mallory@evil.test\r\nIn-Reply-To: <anna-1@buyer.test>\r\n");
        let d = decide(&other, "WN", &Fake);
        assert_eq!(d, ThreadMatch::StrangerReference(7));
        assert_eq!((d.ticket(), d.referenced()), (None, Some(7)));
        let anonymous = msg("In-Reply-To: <anna-1@buyer.test>\r\n");
        assert_eq!(decide(&anonymous, "WN", &Fake).ticket(), None);
    }

    #[test]
    fn a_from_line_that_failed_dmarc_is_nobodys() {
        let failed =
            "Authentication-Results: mx.example.test; spf=fail smtp.mailfrom=evil.test;\r\n \
                      dmarc=fail (p=none) header.from=buyer.test\r\n";
        // Anna's address with her ticket's token, or replying to her own
        // mail: forged, so a new ticket.
        let token = msg(&format!(
            "{failed}From: anna@buyer.test\r\nSubject: Re: [WN-000007] hi\r\n"
        ));
        assert!(token.machine.dmarc_failed);
        assert_eq!(decide(&token, "WN", &Fake), ThreadMatch::StrangerToken(7));
        let own = msg(&format!(
            "{failed}From: anna@buyer.test\r\nIn-Reply-To: <anna-1@buyer.test>\r\n"
        ));
        assert_eq!(decide(&own, "WN", &Fake), ThreadMatch::StrangerReference(7));
        // A reply to our ack still joins (the ack's ID is the proof).
        let to_ack = msg(&format!(
            "{failed}From: anna@buyer.test\r\nIn-Reply-To: <ack-7@example.test>\r\n"
        ));
        assert_eq!(decide(&to_ack, "WN", &Fake), ThreadMatch::ByReference(7));
        // An agent who takes part, forged: not an agent's reply.
        let agent = msg(&format!(
            "{failed}From: Piet <piet@example.test>\r\nSubject: RE: [WN-000007] opgelost\r\n"
        ));
        assert_eq!(
            agent_reply(&agent, None, "WN", "support@example.test", &Fake),
            None
        );
        assert_eq!(
            agent_reply(&agent, Some(7), "WN", "support@example.test", &Fake),
            None
        );
        // The same mail with the server's dmarc=pass is Piet's.
        let real = msg(&format!(
            "{}From: Piet <piet@example.test>\r\nSubject: RE: [WN-000007] opgelost\r\n",
            failed.replace("dmarc=fail", "dmarc=pass")
        ));
        assert_eq!(
            agent_reply(&real, None, "WN", "support@example.test", &Fake),
            Some(7)
        );
    }

    #[test]
    fn stranger_with_token_gets_a_new_ticket() {
        let m = msg("From: mallory@evil.test\r\nSubject: Re: [WN-000007] hi\r\n");
        let d = decide(&m, "WN", &Fake);
        assert_eq!(d, ThreadMatch::StrangerToken(7));
        assert_eq!(d.ticket(), None);
        let unknown = msg("From: anna@buyer.test\r\nSubject: [WN-000999] hi\r\n");
        assert_eq!(decide(&unknown, "WN", &Fake), ThreadMatch::New);
    }
}

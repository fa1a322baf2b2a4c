//! The whole product against a real Dovecot and Postfix: a buyer's mail
//! becomes a ticket and an acknowledgement lands in the buyer's mailbox; the
//! buyer's reply joins the ticket; a restart files nothing twice; TLS is
//! verified.

mod common;

use std::time::Duration;

use common::*;
use ticketd::core::parse::parse;
use ticketd::rig::MailRig;

const WAIT: Duration = Duration::from_secs(20);

fn tickets_of(export: &[serde_json::Value]) -> Vec<Option<String>> {
    export
        .iter()
        .map(|m| m["ticket"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn mail_in_ticket_filed_ack_out_reply_threads_restart_is_idempotent() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let mut daemon = Daemon::start(&s.config);

    // (1) A buyer writes in; the ack reaches the buyer's mailbox.
    let anna = "anna@buyer.test";
    rig.send(
        anna,
        &[SUPPORT],
        &buyer_mail(
            anna,
            "Anna de Vries",
            "Pakket beschadigd aangekomen",
            "first@buyer.test",
            "Hallo, mijn pakket is beschadigd aangekomen. Bestelnummer dQzGdHsKxwaEyrQfCdcCs8.\r\nGroeten, Anna",
            "",
        ),
    )
    .unwrap();
    rig.wait_for_mail(anna, 1, WAIT)
        .unwrap_or_else(|e| panic!("{e}; daemon log:\n{}", daemon.log()));
    let inbox = imap_messages(&rig, anna);
    assert_eq!(inbox.len(), 1);
    let ack = parse(&inbox[0]);
    let raw = String::from_utf8_lossy(&inbox[0]);
    assert!(
        raw.contains("From: \"Whatnot Support\" <support@example.test>"),
        "{raw}"
    );
    assert_eq!(
        ack.subject,
        "[WN-000001] We hebben je verzoek ontvangen - Whatnot Support"
    );
    assert_eq!(ack.machine.auto_submitted.as_deref(), Some("auto-replied"));
    assert_eq!(ack.in_reply_to, vec!["first@buyer.test"]);
    assert_eq!(ack.references, vec!["first@buyer.test"]);
    assert!(ack.text.contains("binnen 48 uur"), "{}", ack.text);
    assert!(ack.text.contains("WN-000001"));
    let ack_id = ack.message_id.clone().expect("ack has a Message-ID");
    assert!(ack_id.ends_with("@example.test"));

    let show = ticketd(&s.config, &["show", "WN-000001", "--json"]);
    assert!(show.status.success());
    let view: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(view["requester"], anna);
    assert_eq!(view["order_numbers"][0], "dQzGdHsKxwaEyrQfCdcCs8");
    assert_eq!(view["messages"][0]["ack"]["status"], "sent");

    // (2) The buyer answers the ack from their client: it joins WN-000001
    // and gets no second ack.
    rig.send(
        anna,
        &[SUPPORT],
        &buyer_mail(
            anna,
            "Anna de Vries",
            "Re: [WN-000001] We hebben je verzoek ontvangen - Whatnot Support",
            "reply@buyer.test",
            "Hier is nog een foto.\r\n\r\nOp wo 25 nov 2026 om 10:00 schreef Whatnot Support:\r\n> Bedankt",
            &format!("In-Reply-To: <{ack_id}>\r\nReferences: <first@buyer.test> <{ack_id}>\r\n"),
        ),
    )
    .unwrap();
    let exported = wait_until("the reply to be filed", WAIT, || {
        let e = export(&s.config);
        (e.len() == 2).then_some(e)
    });
    assert_eq!(tickets_of(&exported), vec![Some("WN-000001".into()); 2]);
    assert_eq!(
        exported[1]["ack"]["skipped"],
        "follow-up on an existing ticket"
    );

    // (3) Stop (SIGTERM exits 0), mail arrives while down, restart: the new
    // mail is filed once, nothing old is filed again, no ack is sent twice.
    let status = daemon.stop();
    assert!(status.success(), "exit status {status:?}");
    let bob = "bob@shop.test";
    rig.send(
        bob,
        &[SUPPORT],
        &buyer_mail(
            bob,
            "Bob",
            "Where is my order?",
            "bob1@shop.test",
            "Hi, my order has not arrived yet. Thanks",
            "",
        ),
    )
    .unwrap();
    rig.wait_for_mail(SUPPORT, 3, WAIT).unwrap();
    let _daemon = Daemon::start(&s.config);
    rig.wait_for_mail(bob, 1, WAIT).unwrap();
    let bob_ack = parse(&imap_messages(&rig, bob)[0]);
    assert_eq!(
        bob_ack.subject,
        "[WN-000002] We received your request - Whatnot Support"
    );
    assert!(bob_ack.text.contains("within 48 hours"));

    let exported = export(&s.config);
    let ids: Vec<&str> = exported
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["first@buyer.test", "reply@buyer.test", "bob1@shop.test"]
    );
    assert_eq!(
        tickets_of(&exported),
        vec![
            Some("WN-000001".into()),
            Some("WN-000001".into()),
            Some("WN-000002".into())
        ]
    );
    // Give a wrongly repeated ack every chance to arrive before counting.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rig.maildir_count(anna), 1);
    assert_eq!(rig.maildir_count(bob), 1);
}

#[test]
fn a_second_poll_files_nothing_and_flags_stay_untouched() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    for i in 0..3 {
        let from = format!("buyer{i}@buyer.test");
        rig.send(
            &from,
            &[SUPPORT],
            &buyer_mail(
                &from,
                "Koper",
                "Vraag over mijn bestelling",
                &format!("m{i}@buyer.test"),
                "Waar is mijn pakket?",
                "",
            ),
        )
        .unwrap();
    }
    rig.wait_for_mail(SUPPORT, 3, WAIT).unwrap();
    for _ in 0..2 {
        let out = ticketd(&s.config, &["poll", "--once"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let exported = export(&s.config);
    assert_eq!(exported.len(), 3);
    assert!(exported.iter().all(|m| m["ack"]["status"] == "sent"));
    for i in 0..3 {
        assert_eq!(rig.maildir_count(&format!("buyer{i}@buyer.test")), 1);
    }
    // BODY.PEEK and EXAMINE: the support mailbox still shows all as unread.
    assert_eq!(unseen_count(&rig, SUPPORT), 3);
}

#[test]
fn implicit_tls_and_starttls_with_the_rigs_ca() {
    let rig = MailRig::start().unwrap();
    rig.send(
        "cara@buyer.test",
        &[SUPPORT],
        &buyer_mail(
            "cara@buyer.test",
            "Cara",
            "Account question",
            "c1@buyer.test",
            "Hello, I cannot log in to my account.",
            "",
        ),
    )
    .unwrap();
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();
    for mode in [Imap::Implicit, Imap::Starttls] {
        let s = setup(&rig, mode, None);
        let out = ticketd(&s.config, &["poll", "--once"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exported = export(&s.config);
        assert_eq!(exported.len(), 1);
        assert_eq!(exported[0]["ticket"], "WN-000001");
    }
}

#[test]
fn a_certificate_from_another_ca_is_refused_clearly() {
    let rig = MailRig::start().unwrap();
    let other = MailRig::start().unwrap();
    for mode in [Imap::Implicit, Imap::Starttls] {
        // Trust only the other rig's CA: the handshake must fail.
        let s = setup(&rig, mode, Some(other.ca_file()));
        let out = ticketd(&s.config, &["poll", "--once"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not trusted"), "{err}");
        assert!(err.contains("ca_file"), "{err}");
        assert!(export(&s.config).is_empty());
    }
}

#[test]
fn a_mail_over_max_message_bytes_keeps_its_headers_and_the_mail_after_it_is_filed() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace("[store]\n", "[store]\nmax_message_bytes = 100000\n"),
    )
    .unwrap();
    let big = format!(
        "Foto's in de bijlage.\r\n{}",
        "x".repeat(76)
            .repeat(2000)
            .replace(&"x".repeat(76), &format!("{}\r\n", "x".repeat(76)))
    );
    for (n, body) in [
        ("before", "Waar blijft mijn pakket?"),
        ("big", big.as_str()),
        ("after", "Nog een vraag over mijn bestelling."),
    ] {
        let from = format!("{n}@buyer.test");
        rig.send(
            &from,
            &[SUPPORT],
            &buyer_mail(
                &from,
                n,
                &format!("Vraag {n}"),
                &format!("{n}@buyer.test"),
                body,
                "",
            ),
        )
        .unwrap();
    }
    rig.wait_for_mail(SUPPORT, 3, WAIT).unwrap();
    let out = ticketd(&s.config, &["poll", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = export(&s.config);
    let inbound: Vec<_> = rows.iter().filter(|r| r["direction"] == "in").collect();
    assert_eq!(inbound.len(), 3, "{rows:#?}");
    for r in &inbound {
        let problems = r["problems"].as_str().unwrap_or("");
        let big = r["message_id"] == "big@buyer.test";
        assert_eq!(
            problems.contains("only its headers were kept"),
            big,
            "{r:#?}"
        );
        assert!(r["ticket"].is_string(), "{r:#?}");
    }
}

/// A mailbox whose server says "try again later" (450) uses up the ack's
/// tries; rounds in which the SMTP server could not be reached at all (a
/// long outage) do not, and `outbox retry` gives a given-up ack its tries
/// back.
#[test]
fn an_outage_does_not_use_up_an_acks_tries_a_refusing_server_does() {
    let mut rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let buyer = ticketd::rig::TEMPFAIL_ADDRESS;
    rig.send(
        buyer,
        &[SUPPORT],
        &buyer_mail(
            buyer,
            "Tim",
            "Waar blijft mijn pakket?",
            "busy@buyer.test",
            "Mijn pakket is nog niet aangekomen.",
            "",
        ),
    )
    .unwrap();
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();
    let poll = || {
        let out = ticketd(&s.config, &["poll", "--once"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    poll();
    let db = rusqlite::Connection::open(s.dir.path().join("data/ticketd.sqlite3")).unwrap();
    let outbox = || -> (String, i64, i64) {
        db.query_row("SELECT status, attempts, failures FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap()
    };
    let due_now = || {
        db.execute("UPDATE outbox SET next_attempt_at = 0", [])
            .unwrap();
    };

    assert_eq!(outbox(), ("queued".to_string(), 1, 1), "refused once");
    // The server cannot be reached: an attempt, not a refusal.
    rig.stop_postfix();
    due_now();
    poll();
    assert_eq!(outbox(), ("queued".to_string(), 2, 1), "unreachable");
    rig.start_postfix().unwrap();
    // As after a day-long outage: many rounds that never reached it.
    db.execute("UPDATE outbox SET attempts = 40", []).unwrap();
    due_now();
    poll();
    assert_eq!(outbox(), ("queued".to_string(), 41, 2), "after an outage");
    // The listing tells an operator both counts and when it tries again.
    let listed = ticketd(&s.config, &["outbox"]);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.contains(&format!(
            "attempts 41 (refused 2/{})",
            ticketd::smtp::MAX_ATTEMPTS
        )) && listed.contains("next try "),
        "{listed}"
    );
    // Refused for the MAX_ATTEMPTS-th time: given up, left to an operator.
    db.execute(
        "UPDATE outbox SET failures = ?1 - 1",
        [ticketd::smtp::MAX_ATTEMPTS],
    )
    .unwrap();
    due_now();
    poll();
    assert_eq!(
        outbox(),
        ("failed".to_string(), 42, ticketd::smtp::MAX_ATTEMPTS)
    );
    let id: i64 = db
        .query_row("SELECT id FROM outbox", [], |r| r.get(0))
        .unwrap();
    let out = ticketd(&s.config, &["outbox", "retry", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(outbox(), ("queued".to_string(), 42, 0), "retried");
}

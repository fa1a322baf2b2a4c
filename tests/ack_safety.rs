//! "Never answer a machine", and acks that survive an SMTP outage, against a
//! real Dovecot and Postfix: two desks acknowledging each other do not loop;
//! vacation responders (RFC 3834, `Precedence: bulk` only, Outlook) get no
//! answer; acks queued while Postfix is down go out once it is back, once
//! each, also while new mail is being filed; one sender gets at most three
//! acks; no-reply senders and our own address get none.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use ticketd::core::parse::{parse, InboundMessage};
use ticketd::rig::{MailRig, RIG_PASSWORD};

const WAIT: Duration = Duration::from_secs(30);
/// How long mailboxes must stay unchanged before a count is final: long
/// enough for a wrongly sent mail to be filed, answered and delivered.
const QUIET: Duration = Duration::from_secs(3);
/// The second desk: a shop's helpdesk that also runs ticketd.
const HELPDESK: &str = "helpdesk@shop.test";

/// A config for a second ticketd that watches and sends as `address`.
fn desk_setup(rig: &MailRig, address: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("password");
    std::fs::write(&pw, format!("{RIG_PASSWORD}\n")).unwrap();
    let text = format!(
        r#"
[imap]
host = "127.0.0.1"
port = {imap}
tls = "none"
username = "{address}"
password_file = "{pw}"
poll_interval = 1

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
from_name = "Whatnot Support"
from_address = "{address}"

[store]
data_dir = "{data}"

[tickets]
templates_dir = "{templates}"
"#,
        imap = rig.imap_port(),
        pw = pw.display(),
        smtp = rig.smtp_port(),
        data = dir.path().join("data").display(),
        templates = templates_dir().display(),
    );
    let config = dir.path().join("ticketd.toml");
    std::fs::write(&config, text).unwrap();
    Setup { dir, config }
}

/// A command of ours that must succeed; returns its standard error.
fn ok(config: &Path, args: &[&str]) -> String {
    let out = ticketd(config, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "ticketd {args:?} failed ({}):\n{stderr}",
        out.status
    );
    stderr
}

/// A `--json` command's output, parsed.
fn json(config: &Path, args: &[&str]) -> Value {
    let out = ticketd(config, args);
    assert!(
        out.status.success(),
        "ticketd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ticketd outbox --json`, all rows, oldest first.
fn outbox(config: &Path) -> Vec<Value> {
    let mut rows = json(config, &["outbox", "--json", "--limit", "100000"])
        .as_array()
        .unwrap()
        .clone();
    rows.reverse();
    rows
}

/// Mail a machine sent (RFC 3834 Auto-Submitted other than "no").
fn is_machine(m: &InboundMessage) -> bool {
    m.machine
        .auto_submitted
        .as_deref()
        .is_some_and(|v| !v.eq_ignore_ascii_case("no"))
}

fn mailbox(rig: &MailRig, user: &str) -> Vec<InboundMessage> {
    rig.maildir_messages(user)
        .iter()
        .map(|r| parse(r))
        .collect()
}

/// A log line without the terminal colours the daemon's logger adds.
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn ack_status(m: &Value) -> Option<&str> {
    m["ack"]["status"].as_str()
}

fn ack_skipped(m: &Value) -> Option<&str> {
    m["ack"]["skipped"].as_str()
}

#[test]
fn two_desks_acknowledging_each_other_do_not_loop() {
    let rig = MailRig::start().unwrap();
    let a = setup(&rig, Imap::Plain, None);
    let b = desk_setup(&rig, HELPDESK);
    let mut desk_a = Daemon::start(&a.config);
    let mut desk_b = Daemon::start(&b.config);
    let logs = |a: &Daemon, b: &Daemon| format!("A:\n{}\nB:\n{}", a.log(), b.log());
    // Both have opened their stores and logged in before any mail moves.
    wait_until("both desks to watch their mailboxes", WAIT, || {
        (desk_a.log().contains("watching") && desk_b.log().contains("watching")).then_some(())
    });

    // Someone at B writes to A from B's desk address: A acknowledges to
    // helpdesk@, so A's ack lands in the mailbox B watches.
    rig.send(
        HELPDESK,
        &[SUPPORT],
        &buyer_mail(
            HELPDESK,
            "Shop Helpdesk",
            "Question about a shared customer",
            "b-to-a@shop.test",
            "Hello, a customer of ours asks about an order placed with you.",
            "",
        ),
    )
    .unwrap();
    rig.wait_for_mail(HELPDESK, 1, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&desk_a, &desk_b)));
    wait_until("B to file A's ack", WAIT, || {
        (export(&b.config).len() == 1).then_some(())
    });

    // And the other way round: A's desk address writes to B, B acknowledges
    // into the mailbox A watches.
    let a_to_b = format!(
        "From: Whatnot Support <{SUPPORT}>\r\nTo: Shop Helpdesk <{HELPDESK}>\r\n\
         Subject: Question about order 4711\r\nMessage-ID: <a-to-b@example.test>\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello, could you tell us when order 4711 was shipped?\r\n"
    );
    rig.send(SUPPORT, &[HELPDESK], a_to_b.as_bytes()).unwrap();
    rig.wait_for_mail(SUPPORT, 2, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&desk_a, &desk_b)));
    wait_until("A to file B's ack", WAIT, || {
        (export(&a.config).len() == 2).then_some(())
    });

    // Both desks keep running: nothing more may arrive anywhere.
    let counts = settled_counts(&rig, &[SUPPORT, HELPDESK], QUIET);
    assert!(desk_a.stop().success(), "{}", logs(&desk_a, &desk_b));
    assert!(desk_b.stop().success(), "{}", logs(&desk_a, &desk_b));
    assert_eq!(
        counts,
        vec![2, 2],
        "[support, helpdesk] mailbox sizes; each should hold the other's mail and one ack"
    );
    for (user, other) in [(SUPPORT, HELPDESK), (HELPDESK, SUPPORT)] {
        let machine: Vec<_> = mailbox(&rig, user)
            .into_iter()
            .filter(|m| m.from_address.as_deref() == Some(other) && is_machine(m))
            .collect();
        assert_eq!(machine.len(), 1, "machine mail from {other} in {user}");
    }

    // A filed B's person as a ticket and acked it, and kept B's ack unfiled.
    let ea = export(&a.config);
    assert_eq!(ea[0]["message_id"], "b-to-a@shop.test");
    assert_eq!(ea[0]["kind"], "human");
    assert_eq!(ack_status(&ea[0]), Some("sent"), "{}", ea[0]);
    assert_eq!(ea[1]["from"], HELPDESK);
    assert_eq!(ea[1]["kind"], "autoreply", "{}", ea[1]);
    assert!(ack_skipped(&ea[1]).is_some(), "{}", ea[1]);
    // B the same, the other way round.
    let eb = export(&b.config);
    assert_eq!(eb[0]["from"], SUPPORT);
    assert_eq!(eb[0]["kind"], "autoreply", "{}", eb[0]);
    assert!(ack_skipped(&eb[0]).is_some(), "{}", eb[0]);
    assert_eq!(eb[1]["message_id"], "a-to-b@example.test");
    assert_eq!(eb[1]["kind"], "human");
    assert_eq!(ack_status(&eb[1]), Some("sent"), "{}", eb[1]);
    assert_eq!(outbox(&a.config).len(), 1);
    assert_eq!(outbox(&b.config).len(), 1);
}

/// The kinds of vacation responder buyers have.
#[derive(Clone, Copy, Debug)]
enum Responder {
    /// RFC 3834: `Auto-Submitted: auto-replied`, In-Reply-To the ack.
    Rfc3834,
    /// Old vacation(1)-style: only `Precedence: bulk`, a "Re:" subject, no
    /// threading headers.
    PrecedenceBulk,
    /// Outlook/Exchange: "Automatisch antwoord: ..." with
    /// `X-Auto-Response-Suppress: All`, no Auto-Submitted.
    Outlook,
}

fn auto_reply(kind: Responder, buyer: &str, ack: &InboundMessage, n: usize) -> (String, Vec<u8>) {
    let ack_id = ack.message_id.clone().expect("the ack has a Message-ID");
    let id = format!("away-{n}.{buyer}");
    let (subject, headers) = match kind {
        Responder::Rfc3834 => (
            format!("Auto: {}", ack.subject),
            format!(
                "Auto-Submitted: auto-replied\r\nIn-Reply-To: <{ack_id}>\r\nReferences: <{ack_id}>\r\n"
            ),
        ),
        Responder::PrecedenceBulk => (format!("Re: {}", ack.subject), "Precedence: bulk\r\n".into()),
        Responder::Outlook => (
            format!("Automatisch antwoord: {}", ack.subject),
            format!(
                "X-Auto-Response-Suppress: All\r\nIn-Reply-To: <{ack_id}>\r\nReferences: <{ack_id}>\r\n\
                 Thread-Topic: {}\r\n",
                ack.subject
            ),
        ),
    };
    let raw = format!(
        "From: Koper <{buyer}>\r\nTo: Whatnot Support <{SUPPORT}>\r\nSubject: {subject}\r\n\
         Message-ID: <{id}>\r\nDate: Wed, 25 Nov 2026 10:05:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n{headers}\r\n\
         Ik ben afwezig tot 1 december en lees mijn mail dan pas.\r\n"
    );
    (id, raw.into_bytes())
}

/// A buyer with a vacation responder writes in. The responder answers every
/// mail it receives (at most 5 times, so a loop cannot run away); the
/// daemon must file the auto-reply on the buyer's ticket and answer nothing.
fn vacation_responder_gets_no_answer(kind: Responder, buyer: &str) {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let mut daemon = Daemon::start(&s.config);
    rig.send(
        buyer,
        &[SUPPORT],
        &buyer_mail(
            buyer,
            "Koper",
            "Mijn bestelling is niet aangekomen",
            &format!("first.{buyer}"),
            "Hallo, mijn bestelling is nog steeds niet aangekomen. Groeten",
            "",
        ),
    )
    .unwrap();

    // The responder script: runs until its reply is filed and nothing has
    // happened for QUIET.
    let mut answered: Vec<String> = Vec::new();
    let mut replies: Vec<String> = Vec::new();
    let mut seen = 0;
    let mut filed = 0;
    let mut last_event = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let inbox = mailbox(&rig, buyer);
        if inbox.len() != seen {
            seen = inbox.len();
            last_event = Instant::now();
        }
        for m in &inbox {
            let id = m.message_id.clone().unwrap_or_default();
            if answered.contains(&id) || replies.len() >= 5 {
                continue;
            }
            let (reply_id, raw) = auto_reply(kind, buyer, m, replies.len());
            rig.send(buyer, &[SUPPORT], &raw).unwrap();
            answered.push(id);
            replies.push(reply_id);
            last_event = Instant::now();
        }
        // (The store exists once an ack has arrived.)
        if !replies.is_empty() {
            let now_filed = export(&s.config).len();
            if now_filed != filed {
                filed = now_filed;
                last_event = Instant::now();
            }
        }
        if !replies.is_empty() && filed > replies.len() && last_event.elapsed() >= QUIET {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kind:?}: timed out waiting for the auto-reply to be filed and all to go quiet: \
             {} ack(s) received, {} auto-replies sent, {filed} mails filed; daemon log:\n{}",
            inbox.len(),
            replies.len(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = daemon.stop();
    assert!(status.success(), "{status:?}\n{}", daemon.log());

    let inbox = mailbox(&rig, buyer);
    assert_eq!(
        inbox.len(),
        1,
        "{kind:?}: the buyer should hold exactly the one ack, got subjects {:?}",
        inbox.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    assert_eq!(
        replies.len(),
        1,
        "{kind:?}: the responder answered {replies:?}"
    );

    let exported = export(&s.config);
    assert_eq!(exported.len(), 2, "{exported:?}");
    assert_eq!(exported[0]["ticket"], "WN-000001");
    assert_eq!(ack_status(&exported[0]), Some("sent"));
    let auto = &exported[1];
    assert_eq!(auto["message_id"], replies[0].as_str());
    assert_eq!(auto["kind"], "autoreply", "{kind:?}: {auto}");
    assert_eq!(
        auto["ticket"], "WN-000001",
        "{kind:?}: the auto-reply belongs on the buyer's ticket: {auto}"
    );
    assert!(ack_skipped(auto).is_some(), "{kind:?}: {auto}");
    assert_eq!(outbox(&s.config).len(), 1);
}

#[test]
fn an_rfc3834_vacation_reply_gets_no_answer() {
    vacation_responder_gets_no_answer(Responder::Rfc3834, "vakantie@buyer.test");
}

#[test]
fn a_vacation_reply_marked_only_precedence_bulk_gets_no_answer() {
    vacation_responder_gets_no_answer(Responder::PrecedenceBulk, "weg@shop.test");
}

#[test]
fn an_outlook_automatisch_antwoord_gets_no_answer() {
    vacation_responder_gets_no_answer(Responder::Outlook, "afwezig@buyer.test");
}

#[test]
fn acks_queued_while_smtp_is_down_go_out_once_it_is_back() {
    let mut rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let buyers: Vec<String> = (0..5).map(|i| format!("wacht{i}@buyer.test")).collect();
    for (i, b) in buyers.iter().enumerate() {
        let raw = buyer_mail(
            b,
            "Koper",
            &format!("Pakket {i} is zoek"),
            &format!("outage{i}@buyer.test"),
            "Hallo, mijn pakket is zoek. Groeten",
            "",
        );
        rig.send(b, &[SUPPORT], &raw).unwrap();
    }
    rig.wait_for_mail(SUPPORT, 5, WAIT).unwrap();

    rig.stop_postfix();
    // Filing does not depend on SMTP: the pass succeeds, the acks wait.
    ok(&s.config, &["poll", "--once"]);
    let exported = export(&s.config);
    assert_eq!(exported.len(), 5);
    for (i, m) in exported.iter().enumerate() {
        assert_eq!(m["ticket"], format!("WN-{:06}", i + 1));
        assert_eq!(ack_status(m), Some("queued"), "{m}");
    }
    let rows = outbox(&s.config);
    assert_eq!(rows.len(), 5, "{rows:?}");
    for r in &rows {
        assert_eq!(r["status"], "queued", "{r}");
        assert!(r["attempts"].as_i64().unwrap() >= 1, "{r}");
        assert!(
            r["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{r}"
        );
    }

    rig.start_postfix().unwrap();
    let mut daemon = Daemon::start(&s.config);
    for b in &buyers {
        rig.wait_for_mail(b, 1, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", daemon.log()));
    }
    wait_until("the outbox to show every ack sent", WAIT, || {
        outbox(&s.config)
            .iter()
            .all(|r| r["status"] == "sent")
            .then_some(())
    });
    let status = daemon.stop();
    assert!(status.success(), "{status:?}\n{}", daemon.log());

    let users: Vec<&str> = buyers.iter().map(String::as_str).collect();
    assert_eq!(
        settled_counts(&rig, &users, Duration::from_secs(1)),
        vec![1; 5],
        "an ack was sent twice"
    );
    let rows = outbox(&s.config);
    for b in &buyers {
        let r = rows
            .iter()
            .find(|r| r["to"] == b.as_str())
            .unwrap_or_else(|| panic!("no outbox row for {b}: {rows:?}"));
        let got = parse(&rig.maildir_messages(b)[0]);
        assert_eq!(
            got.message_id.as_deref(),
            r["message_id"].as_str(),
            "the ack sent is the one queued during the outage"
        );
    }
    assert_eq!(export(&s.config).len(), 5);
}

#[test]
fn the_backlog_after_an_outage_goes_out_while_new_mail_is_filed() {
    // 40 acks queue up while Postfix is down; once it is back, 60 new mails
    // arrive. The daemon sends the backlog and files the new mail at the
    // same time: both must go through without tripping over each other.
    let mut rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let buyer = |i: usize| format!("stapel{i:02}@buyer.test");
    let send = |rig: &MailRig, i: usize| {
        let b = buyer(i);
        let raw = buyer_mail(
            &b,
            "Koper",
            &format!("Vraag {i} over mijn bestelling"),
            &format!("backlog{i}@buyer.test"),
            "Hallo, waar blijft mijn bestelling? Groeten",
            "",
        );
        rig.send(&b, &[SUPPORT], &raw).unwrap();
    };
    for i in 0..40 {
        send(&rig, i);
    }
    rig.wait_for_mail(SUPPORT, 40, WAIT).unwrap();
    rig.stop_postfix();
    ok(&s.config, &["poll", "--once"]);
    rig.start_postfix().unwrap();
    for i in 40..100 {
        send(&rig, i);
    }
    rig.wait_for_mail(SUPPORT, 100, WAIT).unwrap();
    // Start once the backlog is due, so sending begins right away.
    wait_until("the queued acks to be due", WAIT, || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        outbox(&s.config)
            .iter()
            .all(|r| r["next_attempt_at"].as_i64().unwrap() < now)
            .then_some(())
    });

    let mut daemon = Daemon::start(&s.config);
    for i in 0..100 {
        rig.wait_for_mail(&buyer(i), 1, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", daemon.log()));
    }
    let status = daemon.stop();
    let log = daemon.log();
    assert!(status.success(), "{status:?}\n{log}");

    let exported = export(&s.config);
    assert_eq!(exported.len(), 100);
    assert!(outbox(&s.config).iter().all(|r| r["status"] == "sent"));
    let users: Vec<String> = (0..100).map(buyer).collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    assert_eq!(
        settled_counts(&rig, &users, Duration::from_secs(1)),
        vec![1; 100]
    );
    let errors: Vec<String> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("database is locked"))
        .map(strip_ansi)
        .collect();
    assert!(
        errors.is_empty(),
        "the daemon reported errors while sending and filing at once \
         (nothing was wrong with IMAP or SMTP):\n{}",
        errors.join("\n")
    );
}

#[test]
fn one_sender_gets_at_most_three_acks() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let eager = "ongeduldig@buyer.test";
    let subjects = [
        "Waar is mijn pakket?",
        "Verkeerde maat ontvangen",
        "Vraag over mijn account",
        "Terugbetaling aangevraagd",
        "Nog een vraag",
    ];
    for (i, subject) in subjects.iter().enumerate() {
        let raw = buyer_mail(
            eager,
            "Ongeduldige Koper",
            subject,
            &format!("eager{i}@buyer.test"),
            &format!("Hallo, {subject} Groeten"),
            "",
        );
        rig.send(eager, &[SUPPORT], &raw).unwrap();
        // One at a time, so the mailbox order is the order written.
        rig.wait_for_mail(SUPPORT, i + 1, WAIT).unwrap();
    }
    ok(&s.config, &["poll", "--once"]);

    let exported = export(&s.config);
    assert_eq!(exported.len(), 5);
    for (i, m) in exported.iter().enumerate() {
        assert_eq!(m["message_id"], format!("eager{i}@buyer.test"));
        assert_eq!(
            m["ticket"],
            format!("WN-{:06}", i + 1),
            "each mail is a new ticket"
        );
        if i < 3 {
            assert_eq!(ack_status(m), Some("sent"), "{m}");
        } else {
            assert!(
                ack_skipped(m).is_some_and(|r| r.contains("rate limit")),
                "{m}"
            );
        }
    }
    rig.wait_for_mail(eager, 3, WAIT).unwrap();
    assert_eq!(settled_counts(&rig, &[eager], QUIET), vec![3]);
    assert_eq!(outbox(&s.config).len(), 3);
}

#[test]
fn no_reply_senders_and_our_own_address_get_no_ack() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let noreply = "noreply@shop.test";
    rig.send(
        noreply,
        &[SUPPORT],
        &buyer_mail(
            noreply,
            "Shop",
            "Your order has shipped",
            "shipped@shop.test",
            "Your order is on its way. Please do not reply to this e-mail.",
            "",
        ),
    )
    .unwrap();
    let own = format!(
        "From: Whatnot Support <{SUPPORT}>\r\nTo: Whatnot Support <{SUPPORT}>\r\n\
         Subject: Note to self about a refund\r\nMessage-ID: <own@example.test>\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nRemember the refund for order 4711.\r\n"
    );
    rig.send(SUPPORT, &[SUPPORT], own.as_bytes()).unwrap();
    rig.wait_for_mail(SUPPORT, 2, WAIT).unwrap();
    ok(&s.config, &["poll", "--once"]);

    let exported = export(&s.config);
    assert_eq!(exported.len(), 2, "{exported:?}");
    for (id, kind) in [
        ("shipped@shop.test", "noreply"),
        ("own@example.test", "own"),
    ] {
        let m = exported
            .iter()
            .find(|m| m["message_id"] == id)
            .unwrap_or_else(|| panic!("{id} not filed: {exported:?}"));
        assert_eq!(m["kind"], kind, "{m}");
        assert_eq!(m["ticket"], Value::Null, "{m}");
        assert!(
            m["ack"].is_null() || ack_skipped(m).is_some(),
            "no ack may be queued: {m}"
        );
    }
    let unfiled = json(&s.config, &["list", "--unfiled", "--json"]);
    let mut ids: Vec<&str> = unfiled
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!["own@example.test", "shipped@shop.test"]);
    assert_eq!(json(&s.config, &["list", "--json"]), serde_json::json!([]));
    assert!(outbox(&s.config).is_empty());
    // Nothing went to the no-reply address, nothing came back to us.
    assert_eq!(settled_counts(&rig, &[noreply, SUPPORT], QUIET), vec![0, 2]);
}

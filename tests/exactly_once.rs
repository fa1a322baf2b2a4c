//! "No mail is lost, none is filed twice", against a real Dovecot and
//! Postfix: ticketd is SIGKILLed at random moments while it files a full
//! mailbox and sends the acknowledgements; a changed UIDVALIDITY makes it
//! rescan the mailbox; Postfix delivers the same mail twice. In every case
//! each buyer's mail ends up on exactly one ticket and each buyer gets one
//! acknowledgement (the one documented exception: an ack that went out just
//! before a SIGKILL, before its status was committed, is sent again with the
//! same Message-ID). Read commands started while the daemon first creates
//! its store must not break either of them.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use ticketd::core::parse::parse;
use ticketd::rig::MailRig;

const WAIT: Duration = Duration::from_secs(30);
/// Mails in the SIGKILL test.
const MAILS: usize = 300;
/// How many times ticketd is started and SIGKILLed.
const KILLS: usize = 24;

/// xorshift64*: a fixed seed gives the same delays on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in 0..=max for test delays.
    fn up_to(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (n, chunk) in bytes.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n"); // 76-character lines
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Buyer number `i`: all distinct, on two of the rig's buyer domains.
fn buyer(i: usize) -> String {
    if i % 2 == 0 {
        format!("koper{i:03}@buyer.test")
    } else {
        format!("klant{i:03}@shop.test")
    }
}

fn message_id(i: usize) -> String {
    format!("kill-{i:03}.{}", buyer(i))
}

/// Every seventh mail carries a small photo.
fn attachment(i: usize) -> Option<(String, Vec<u8>)> {
    (i % 7 == 3).then(|| {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend((0..600 + i).map(|n| (n * 31 + i) as u8));
        (format!("foto-{i:03}.png"), png)
    })
}

fn mail(i: usize) -> Vec<u8> {
    let from = buyer(i);
    let (subject, body) = if i % 2 == 0 {
        (
            format!("Pakket {i} niet ontvangen"),
            format!(
                "Hallo,\r\n\r\nmijn pakket (nummer {i}) is nog niet aangekomen.\r\n\r\nGroeten"
            ),
        )
    } else {
        (
            format!("Order {i} has not arrived"),
            format!("Hello,\r\n\r\nmy order (number {i}) has not arrived yet.\r\n\r\nThanks"),
        )
    };
    let Some((name, data)) = attachment(i) else {
        return buyer_mail(&from, "Koper", &subject, &message_id(i), &body, "");
    };
    format!(
        "From: Koper <{from}>\r\nTo: Whatnot Support <{SUPPORT}>\r\nSubject: {subject}\r\n\
         Message-ID: <{id}>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"part-{i}\"\r\n\r\n\
         --part-{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
         --part-{i}\r\nContent-Type: image/png; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{data}\r\n--part-{i}--\r\n",
        id = message_id(i),
        data = base64(&data),
    )
    .into_bytes()
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

/// `ticketd outbox --json`, all rows.
fn outbox(config: &Path) -> Vec<Value> {
    let out = ticketd(config, &["outbox", "--json", "--limit", "100000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Message-IDs of the mails in `user`'s mailbox, in delivery order.
fn delivered_ids(rig: &MailRig, user: &str) -> Vec<String> {
    rig.maildir_messages(user)
        .iter()
        .map(|raw| parse(raw).message_id.unwrap_or_default())
        .collect()
}

/// Log lines that show a run doing real work: a mail filed, an ack sent.
const PROGRESS: [&str; 3] = ["filed", "duplicate delivery", "acknowledgement sent"];

/// Starts `ticketd ARGS`, waits until it reports progress (at most a few
/// seconds: with nothing left to do there is none), then SIGKILLs it after
/// `delay`, unless it exits by itself first. Anchoring the delay there makes
/// the kills land while mail is filed and acks are sent, not while the
/// first batch is still being fetched. Returns whether it was killed.
fn run_and_kill(config: &Path, args: &[&str], delay: Duration, log: &Path) -> bool {
    let log_len = |log: &Path| std::fs::metadata(log).map_or(0, |m| m.len() as usize);
    let offset = log_len(log);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TICKETD_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let exited = |child: &mut std::process::Child| {
        let status = child.try_wait().unwrap()?;
        assert!(
            status.success(),
            "ticketd {args:?} exited with {status}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Some(())
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if exited(&mut child).is_some() {
            return false;
        }
        let text = std::fs::read(log).unwrap_or_default();
        let new = String::from_utf8_lossy(&text[offset.min(text.len())..]).into_owned();
        if PROGRESS.iter().any(|p| new.contains(p)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let start = Instant::now();
    while start.elapsed() < delay {
        if exited(&mut child).is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Our own child, not yet reaped: Child::kill is SIGKILL to its PID.
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

#[test]
fn sigkill_at_random_points_files_every_mail_once_and_acks_it_once() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    for i in 0..MAILS {
        rig.send(&buyer(i), &[SUPPORT], &mail(i)).unwrap();
    }
    rig.wait_for_mail(SUPPORT, MAILS, Duration::from_secs(180))
        .unwrap();

    let log = s.dir.path().join("killed-runs.log");
    let mut rng = Rng(0x7469_636b_6574_6464);
    let mut kills = 0;
    for round in 0..KILLS {
        // The daemon (IMAP and the outbox worker at once) and the one-shot
        // pass (filing, then sending) in turn.
        let args: &[&str] = if round % 2 == 1 {
            &["poll", "--once"]
        } else {
            &["run"]
        };
        let delay = Duration::from_millis(rng.up_to(400));
        let killed = run_and_kill(&s.config, args, delay, &log);
        kills += usize::from(killed);
        let filed = export(&s.config).len();
        let sent = outbox(&s.config)
            .iter()
            .filter(|r| r["status"] == "sent")
            .count();
        eprintln!(
            "round {round:2}: {args:?} {} after {delay:?}: {filed} filed, {sent} acks sent",
            if killed { "SIGKILLed" } else { "exited" }
        );
    }
    // Failures that do not stop the other checks; reported together at the end.
    let mut failures: Vec<String> = Vec::new();
    let killed_log = std::fs::read_to_string(&log).unwrap_or_default();
    let errors: Vec<&str> = killed_log.lines().filter(|l| l.contains("ERROR")).collect();
    if !errors.is_empty() {
        failures.push(format!(
            "the killed runs logged {} error(s) although IMAP and SMTP were fine, e.g.:\n{}",
            errors.len(),
            errors[..errors.len().min(3)].join("\n")
        ));
    }

    let filed_before = export(&s.config).len();
    let sent_before = outbox(&s.config)
        .iter()
        .filter(|r| r["status"] == "sent")
        .count();
    ok(&s.config, &["poll", "--once"]);
    let unsent = outbox(&s.config)
        .iter()
        .filter(|r| r["status"] != "sent")
        .count();
    if unsent > 0 {
        failures.push(format!(
            "one clean `poll --once` left {unsent} of {MAILS} acks unsent (it found {filed_before} \
             mails filed and {sent_before} acks sent before it)"
        ));
        // Let further passes send the rest, so every other check still runs.
        for _ in 0..MAILS / 50 {
            ok(&s.config, &["poll", "--once"]);
        }
    }

    // Every Message-ID exactly once, each on its own ticket, attachments kept.
    let exported = export(&s.config);
    let mut by_id: HashMap<String, &Value> = HashMap::new();
    for m in &exported {
        let id = m["message_id"].as_str().unwrap().to_string();
        assert!(by_id.insert(id.clone(), m).is_none(), "{id} filed twice");
    }
    let expected: HashSet<String> = (0..MAILS).map(message_id).collect();
    let got: HashSet<String> = by_id.keys().cloned().collect();
    assert_eq!(
        got.symmetric_difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "filed Message-IDs differ from the mails sent"
    );
    let mut ticket_of: HashMap<String, String> = HashMap::new();
    for i in 0..MAILS {
        let m = by_id[&message_id(i)];
        assert_eq!(m["from"], buyer(i), "{m}");
        let ticket = m["ticket"]
            .as_str()
            .unwrap_or_else(|| panic!("unfiled: {m}"));
        if let Some(other) = ticket_of.insert(ticket.to_string(), message_id(i)) {
            panic!("{ticket} holds both {other} and {}", message_id(i));
        }
        match attachment(i) {
            Some((name, data)) => {
                let a = m["attachments"].as_array().unwrap();
                assert_eq!(a.len(), 1, "{m}");
                assert_eq!(a[0]["filename"], name.as_str());
                assert_eq!(a[0]["size"], data.len());
            }
            None => assert_eq!(m["attachments"], serde_json::json!([]), "{m}"),
        }
    }

    // Exactly one outbox row per ticket, all sent, to the ticket's buyer.
    let rows = outbox(&s.config);
    let mut row_of: HashMap<String, &Value> = HashMap::new();
    for r in &rows {
        let ticket = r["ticket"].as_str().unwrap().to_string();
        assert!(
            row_of.insert(ticket.clone(), r).is_none(),
            "two outbox rows for {ticket}"
        );
    }
    assert_eq!(rows.len(), MAILS, "one outbox row per ticket");
    let unsent: Vec<String> = rows
        .iter()
        .filter(|r| r["status"] != "sent")
        .map(|r| format!("{} {} attempts {}", r["ticket"], r["status"], r["attempts"]))
        .collect();
    assert!(unsent.is_empty(), "acks never sent: {unsent:?}");

    // Each buyer: one ack, answering their mail; a second copy only as the
    // same mail (same Message-ID), and at most one such resend per SIGKILL.
    let buyers: Vec<String> = (0..MAILS).map(buyer).collect();
    wait_until("every buyer's ack", Duration::from_secs(120), || {
        buyers
            .iter()
            .all(|b| rig.maildir_count(b) >= 1)
            .then_some(())
    });
    let counts = settled_counts(&rig, &buyers, Duration::from_secs(2));
    let mut copies: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, b) in buyers.iter().enumerate() {
        *copies.entry(counts[i]).or_default() += 1;
        let m = by_id[&message_id(i)];
        let row = row_of[m["ticket"].as_str().unwrap()];
        assert_eq!(row["to"], b.as_str());
        assert_eq!(m["ack"]["message_id"], row["message_id"], "{m}");
        let ack_id = row["message_id"].as_str().unwrap();
        for raw in rig.maildir_messages(b) {
            let ack = parse(&raw);
            assert_eq!(
                ack.message_id.as_deref(),
                Some(ack_id),
                "{b} got a different mail than the queued ack"
            );
            assert_eq!(ack.in_reply_to, vec![message_id(i)]);
        }
    }
    let resent: usize = counts.iter().map(|c| c - 1).sum();
    eprintln!(
        "{kills} SIGKILLs of a running ticketd; buyers by number of copies of their ack: \
         {copies:?}; {resent} resent ack(s)"
    );
    if resent > kills {
        failures.push(format!(
            "{resent} acks were sent again, more than the {kills} SIGKILLs can explain: {copies:?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_changed_uidvalidity_rescans_without_filing_or_acking_twice() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let buyers: Vec<String> = (0..5).map(|i| format!("uv{i}@buyer.test")).collect();
    for (i, b) in buyers.iter().enumerate() {
        let raw = buyer_mail(
            b,
            "Koper",
            &format!("Vraag {i} over mijn bestelling"),
            &format!("uv{i}@buyer.test"),
            "Waar blijft mijn pakket?",
            "",
        );
        rig.send(b, &[SUPPORT], &raw).unwrap();
    }
    rig.wait_for_mail(SUPPORT, 5, WAIT).unwrap();
    ok(&s.config, &["poll", "--once"]);
    let before = export(&s.config);
    assert_eq!(before.len(), 5);
    for b in &buyers {
        rig.wait_for_mail(b, 1, WAIT).unwrap();
    }

    // The server says the mailbox is a different one now (as after a
    // restore or a migration): the stored position no longer applies.
    {
        let store = ticketd::store::Store::open(&s.dir.path().join("data")).unwrap();
        let changed = store
            .conn()
            .execute(
                "UPDATE mailbox_positions SET uidvalidity = uidvalidity + 1",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1, "one mailbox position is stored");
    }
    let stderr = ok(&s.config, &["poll", "--once"]);
    assert!(stderr.contains("UIDVALIDITY"), "{stderr}");

    let after = export(&s.config);
    assert_eq!(after, before, "the rescan changed what is filed");
    assert_eq!(outbox(&s.config).len(), 5);
    let counts = settled_counts(&rig, &buyers, Duration::from_secs(1));
    assert_eq!(counts, vec![1; 5], "an ack was sent again after the rescan");

    // The position is usable again: new mail is filed, and only that.
    let late = "uv-late@buyer.test";
    rig.send(
        late,
        &[SUPPORT],
        &buyer_mail(
            late,
            "Laat",
            "Nog een vraag",
            "uv-late@buyer.test",
            "Hallo?",
            "",
        ),
    )
    .unwrap();
    rig.wait_for_mail(SUPPORT, 6, WAIT).unwrap();
    let stderr = ok(&s.config, &["poll", "--once"]);
    assert!(
        !stderr.contains("UIDVALIDITY changed"),
        "the new UIDVALIDITY was not stored: {stderr}"
    );
    let last = export(&s.config);
    assert_eq!(last.len(), 6);
    assert_eq!(last[5]["message_id"], "uv-late@buyer.test");
    assert_eq!(last[5]["ticket"], "WN-000006");
    rig.wait_for_mail(late, 1, WAIT).unwrap();
    let mut all = buyers.clone();
    all.push(late.to_string());
    assert_eq!(
        settled_counts(&rig, &all, Duration::from_secs(1)),
        vec![1; 6]
    );
}

#[test]
fn the_same_mail_delivered_twice_is_filed_once_and_acked_once() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);

    // Both copies in the mailbox before ticketd looks.
    let dora = "dora@buyer.test";
    let raw = buyer_mail(
        dora,
        "Dora",
        "Beschadigd pakket",
        "twice@buyer.test",
        "Mijn pakket kwam beschadigd aan.",
        "",
    );
    rig.send(dora, &[SUPPORT], &raw).unwrap();
    rig.send(dora, &[SUPPORT], &raw).unwrap();
    rig.wait_for_mail(SUPPORT, 2, WAIT).unwrap();
    ok(&s.config, &["poll", "--once"]);
    let exported = export(&s.config);
    assert_eq!(exported.len(), 1, "{exported:?}");
    assert_eq!(exported[0]["message_id"], "twice@buyer.test");
    assert_eq!(exported[0]["ticket"], "WN-000001");
    assert_eq!(exported[0]["ack"]["status"], "sent");

    // The second copy arrives while the daemon watches, after the first was
    // filed and acknowledged.
    let mut daemon = Daemon::start(&s.config);
    let emil = "emil@shop.test";
    let raw = buyer_mail(
        emil,
        "Emil",
        "Where is my order?",
        "twice@shop.test",
        "Hi, my order has not arrived.",
        "",
    );
    rig.send(emil, &[SUPPORT], &raw).unwrap();
    rig.wait_for_mail(emil, 1, WAIT)
        .unwrap_or_else(|e| panic!("{e}; daemon log:\n{}", daemon.log()));
    rig.send(emil, &[SUPPORT], &raw).unwrap();
    rig.wait_for_mail(SUPPORT, 4, WAIT).unwrap();
    wait_until("the daemon to see the second copy", WAIT, || {
        daemon.log().contains("duplicate delivery").then_some(())
    });
    let status = daemon.stop();
    assert!(status.success(), "{status:?}\n{}", daemon.log());

    let exported = export(&s.config);
    let ids: Vec<&str> = exported
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["twice@buyer.test", "twice@shop.test"]);
    assert_eq!(exported[1]["ticket"], "WN-000002");
    assert_eq!(outbox(&s.config).len(), 2);
    let buyers = [dora.to_string(), emil.to_string()];
    assert_eq!(
        settled_counts(&rig, &buyers, Duration::from_secs(1)),
        vec![1, 1]
    );
    assert_eq!(delivered_ids(&rig, dora).len(), 1);
}

#[test]
fn commands_run_while_the_daemon_first_starts_do_not_break_it() {
    // An operator's monitoring (or a shell) runs `ticketd export` in the
    // very moment the service starts on a fresh data directory: the daemon
    // must come up and file mail, and the read commands must succeed.
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let fred = "fred@buyer.test";
    rig.send(
        fred,
        &[SUPPORT],
        &buyer_mail(
            fred,
            "Fred",
            "Waar is mijn pakket?",
            "fresh@buyer.test",
            "Hallo?",
            "",
        ),
    )
    .unwrap();
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();

    let readers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_ticketd"))
                .arg("--config")
                .arg(&s.config)
                .args(["export", "--jsonl"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut daemon = Daemon::start(&s.config);
    for r in readers {
        let out = r.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "`ticketd export` next to a starting daemon failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    rig.wait_for_mail(fred, 1, WAIT)
        .unwrap_or_else(|e| panic!("{e}; daemon log:\n{}", daemon.log()));
    assert!(daemon.stop().success(), "{}", daemon.log());
    assert_eq!(export(&s.config).len(), 1);
}

//! A shared mailbox: support mail (to the support address or an alias, or
//! naming "Whatnot Support") and its replies become tickets; invoices,
//! newsletters and colleagues' mail stay exactly as they were.

mod common;

use std::time::Duration;

use common::*;
use ticketd::core::parse::parse;
use ticketd::rig::MailRig;

const SHARED: &str = "shared@example.test";
const WAIT: Duration = Duration::from_secs(20);

fn mail(from: &str, to: &str, subject: &str, id: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n{extra}\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn shared_setup(rig: &MailRig) -> Setup {
    let s = setup(rig, Imap::Plain, None);
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text = text.replace(
        &format!("username = \"{SUPPORT}\""),
        &format!("username = \"{SHARED}\""),
    )
        + "\n[intake]\naddresses = [\"support@example.test\", \"klantenservice@example.test\"]\n";
    std::fs::write(&s.config, text).unwrap();
    s
}

#[test]
fn only_support_threads_are_filed_and_the_rest_is_untouched() {
    let rig = MailRig::start().unwrap();
    let s = shared_setup(&rig);
    let mails: Vec<(&str, Vec<u8>)> = vec![
        (
            "support",
            mail(
                "Anna <anna@buyer.test>",
                "support@example.test",
                "Kaart beschadigd",
                "s1@buyer.test",
                "Mijn kaart is geknakt aangekomen. Bestelnummer dQzGdHsKxwaEyrQfCdcCs8",
                "",
            ),
        ),
        (
            "alias",
            mail(
                "Bob <bob@shop.test>",
                "Klantenservice <klantenservice@example.test>",
                "Where is my order?",
                "s2@shop.test",
                "My order has not arrived yet.",
                "",
            ),
        ),
        (
            "subject",
            mail(
                "cara@buyer.test",
                "team@example.test",
                "Vraag aan Whatnot Support",
                "s3@buyer.test",
                "Hoe kan ik mijn gebruikersnaam wijzigen?",
                "",
            ),
        ),
        (
            "newsletter",
            mail(
                "news@vendor.test",
                "shared@example.test",
                "Our November deals",
                "n1@vendor.test",
                "Big sale! Contact our support team for details.",
                "List-Id: <deals.vendor.test>\r\nList-Unsubscribe: <mailto:u@vendor.test>\r\n",
            ),
        ),
        (
            "invoice",
            mail(
                "billing@vendor.test",
                "finance@example.test",
                "Invoice 2026-11 for your support contract",
                "n2@vendor.test",
                "Please find the invoice attached.",
                "",
            ),
        ),
        (
            "colleague",
            mail(
                "piet@example.test",
                "team@example.test",
                "Re: rooster",
                "n3@example.test",
                "Ik neem morgen de support-dienst over, prima?",
                "",
            ),
        ),
    ];
    for (_, raw) in &mails {
        rig.send("sender@shop.test", &[SHARED], raw).unwrap();
    }
    rig.wait_for_mail(SHARED, mails.len(), WAIT).unwrap();
    let before = rig.maildir_messages(SHARED);

    // A dry run says what it would take and why, and files nothing.
    let dry = ticketd(&s.config, &["poll", "--once", "--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        dry_out.lines().filter(|l| l.contains(": take (")).count(),
        3,
        "{dry_out}"
    );
    assert_eq!(
        dry_out.lines().filter(|l| l.contains(": skip (")).count(),
        3,
        "{dry_out}"
    );
    assert!(
        dry_out.contains("address klantenservice@example.test"),
        "{dry_out}"
    );
    assert!(export(&s.config).is_empty());

    let check = ticketd(&s.config, &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check_out.contains("intake on the last 6 message(s)"),
        "{check_out}"
    );
    assert!(check_out.contains("3  not support mail"), "{check_out}");

    let out = ticketd(&s.config, &["poll", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = export(&s.config);
    // Postfix may deliver in any order.
    let mut ids: Vec<&str> = exported
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!["s1@buyer.test", "s2@shop.test", "s3@buyer.test"]);
    let anna_ticket = exported
        .iter()
        .find(|m| m["message_id"] == "s1@buyer.test")
        .unwrap()["ticket"]
        .clone();

    // Byte for byte and flag for flag as before: nothing read, moved or stored.
    assert_eq!(rig.maildir_messages(SHARED), before);
    assert_eq!(unseen_count(&rig, SHARED), mails.len() as u32);
    // Only the three support mails' raw bytes were stored: the unrelated
    // mail never reached the store (nor, with headers fetched first, the
    // wire in full).
    let files = walk_files(&s.dir.path().join("data/blobs"));
    let inline: i64 = rusqlite::Connection::open(s.dir.path().join("data/ticketd.sqlite3"))
        .unwrap()
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(files + inline as usize, 3, "stored blobs");

    // Anna answers the ack; her client dropped "Whatnot Support" from the
    // subject and she writes only to the shared address: the thread counts.
    rig.wait_for_mail("anna@buyer.test", 1, WAIT).unwrap();
    let ack = parse(&rig.maildir_messages("anna@buyer.test")[0]);
    let ack_id = ack.message_id.unwrap();
    rig.send(
        "anna@buyer.test",
        &[SHARED],
        &mail(
            "Anna <anna@buyer.test>",
            "shared@example.test",
            "Re: foto's",
            "s4@buyer.test",
            "Hier zijn de foto's.",
            &format!("In-Reply-To: <{ack_id}>\r\nReferences: <s1@buyer.test> <{ack_id}>\r\n"),
        ),
    )
    .unwrap();
    // And an unrelated mail after it, so the watermark must pass both.
    rig.send(
        "sender@shop.test",
        &[SHARED],
        &mail(
            "news@vendor.test",
            "shared@example.test",
            "More deals",
            "n4@vendor.test",
            "Sale",
            "List-Id: <deals.vendor.test>\r\n",
        ),
    )
    .unwrap();
    rig.wait_for_mail(SHARED, mails.len() + 2, WAIT).unwrap();
    let out = ticketd(&s.config, &["poll", "--once"]);
    assert!(out.status.success());
    let exported = export(&s.config);
    assert_eq!(exported.len(), 4);
    assert_eq!(exported[3]["message_id"], "s4@buyer.test");
    assert_eq!(exported[3]["ticket"], anna_ticket);

    // Nothing is looked at twice: a third pass finds nothing new.
    let out = ticketd(&s.config, &["poll", "--once", "--dry-run"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk_files(&p)
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

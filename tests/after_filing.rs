//! Opt-in changes to the mailbox once mail is filed: `imap.mark_seen` flags
//! it \Seen, `imap.move_to` moves it to another mailbox. Only filed mail is
//! touched (in a shared mailbox, not the invoices beside it), only after
//! its commit, and what the server refuses is done on a later pass.

mod common;
mod proxy;

use std::time::Duration;

use common::*;
use proxy::Proxy;
use ticketd::rig::MailRig;

const SHARED: &str = "shared@example.test";
const WAIT: Duration = Duration::from_secs(20);

fn mail(from: &str, to: &str, subject: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nMijn kaart is geknakt aangekomen.\r\n"
    )
    .into_bytes()
}

/// A shared mailbox with two support mails and a newsletter, and a config
/// that files the support mail with `extra` in its [imap] section.
fn shared_mailbox(rig: &MailRig, extra: &str) -> Setup {
    let s = setup(rig, Imap::Plain, None);
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text = text.replace(
        &format!("username = \"{SUPPORT}\""),
        &format!("username = \"{SHARED}\"\n{extra}"),
    ) + "\n[intake]\naddresses = [\"support@example.test\"]\n";
    std::fs::write(&s.config, text).unwrap();
    let mails = [
        mail(
            "anna@buyer.test",
            SUPPORT,
            "Kaart beschadigd",
            "a1@buyer.test",
        ),
        mail("bob@buyer.test", SUPPORT, "Pakket kwijt", "b1@buyer.test"),
        mail(
            "news@vendor.test",
            SHARED,
            "Our November deals",
            "n1@vendor.test",
        ),
    ];
    for raw in &mails {
        rig.send("sender@shop.test", &[SHARED], raw).unwrap();
    }
    rig.wait_for_mail(SHARED, mails.len(), WAIT).unwrap();
    s
}

/// Runs `f` on an IMAP session of the account `s` files from.
fn imap_session<T>(s: &Setup, f: impl AsyncFnOnce(&mut ticketd::imap::ImapSession) -> T) -> T {
    let cfg = ticketd::config::Config::load(&s.config)
        .unwrap()
        .imap
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut session = ticketd::imap::connect(&cfg).await.unwrap();
        let out = f(&mut session).await;
        ticketd::imap::logout(session).await;
        out
    })
}

/// (messages, unseen) in `mailbox` of the shared account.
fn status(s: &Setup, mailbox: &str) -> (u32, u32) {
    imap_session(s, async |session| {
        let st = session
            .status(mailbox, "(MESSAGES UNSEEN)")
            .await
            .unwrap_or_else(|e| panic!("STATUS {mailbox}: {e}"));
        (st.exists, st.unseen.unwrap_or(0))
    })
}

fn poll(s: &Setup) -> String {
    let out = ticketd(&s.config, &["poll", "--once"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

fn filed(s: &Setup) -> usize {
    export(&s.config).len()
}

#[test]
fn mark_seen_flags_the_filed_mail_and_nothing_else() {
    let rig = MailRig::start().unwrap();
    let s = shared_mailbox(&rig, "mark_seen = true");
    assert_eq!(status(&s, "INBOX"), (3, 3));

    // A dry run changes nothing.
    let dry = ticketd(&s.config, &["poll", "--once", "--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(status(&s, "INBOX"), (3, 3));

    poll(&s);
    assert_eq!(filed(&s), 2);
    assert_eq!(status(&s, "INBOX"), (3, 1), "only the newsletter unread");
    let check = ticketd(&s.config, &["check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("ok: filed mail is flagged \\Seen\n"), "{out}");
    // Bodies are fetched with PEEK: unflagged mail stays unread.
    poll(&s);
    assert_eq!(status(&s, "INBOX"), (3, 1));
}

#[test]
fn move_to_moves_the_filed_mail_and_what_the_server_refused_goes_later() {
    let rig = MailRig::start().unwrap();
    // Dovecot refuses a mailbox name starting with `~`: the CREATE and the
    // MOVE are refused, the mail is filed all the same.
    let s = shared_mailbox(&rig, "mark_seen = true\nmove_to = \"~Verwerkt\"");
    let log = poll(&s);
    assert_eq!(filed(&s), 2);
    assert!(log.contains("refused to flag or move"), "{log}");
    assert_eq!(status(&s, "INBOX"), (3, 1), "flagged, not moved: {log}");

    // The operator fixes the name: the next pass moves what was filed.
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, text.replace("~Verwerkt", "Verwerkt")).unwrap();
    let log = poll(&s);
    assert_eq!(filed(&s), 2, "{log}");
    assert_eq!(status(&s, "INBOX"), (1, 1), "the newsletter stays: {log}");
    assert_eq!(status(&s, "Verwerkt"), (2, 0), "moved, and read: {log}");

    let check = ticketd(&s.config, &["check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("ok: filed mail is flagged \\Seen and moved to Verwerkt (UID MOVE)"),
        "{out}"
    );

    // New support mail is filed and moved in one pass; the moved mail is
    // not filed again.
    rig.send(
        "sender@shop.test",
        &[SHARED],
        &mail("cara@buyer.test", SUPPORT, "Account", "c1@buyer.test"),
    )
    .unwrap();
    rig.wait_for_mail(SHARED, 2, WAIT).unwrap();
    poll(&s);
    assert_eq!(filed(&s), 3);
    assert_eq!(status(&s, "INBOX"), (1, 1));
    assert_eq!(status(&s, "Verwerkt"), (3, 0));
    let stats = ticketd(&s.config, &["stats"]);
    assert!(String::from_utf8_lossy(&stats.stdout).contains("3 in"));
}

/// A server with UIDPLUS but without MOVE: filed mail is copied, flagged
/// \Deleted and expunged by UID, and nothing else in the mailbox (a
/// colleague's mail flagged \Deleted but kept) is expunged with it. A
/// server with neither cannot move: `check` says so.
#[test]
fn without_move_the_mail_is_copied_and_only_it_is_expunged() {
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    p.hide_capability("MOVE");
    let s = shared_mailbox(&rig, "move_to = \"Verwerkt\"");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text = text.replace(
        &format!("port = {}", rig.imap_port()),
        &format!("port = {}", p.port()),
    );
    std::fs::write(&s.config, text).unwrap();
    // Someone flagged the newsletter \Deleted without expunging it.
    imap_session(&s, async |session| {
        use futures::TryStreamExt;
        session.select("INBOX").await.unwrap();
        let uids = session.uid_search("FROM news@vendor.test").await.unwrap();
        assert_eq!(uids.len(), 1);
        let uid = uids.into_iter().next().unwrap().to_string();
        let _: Vec<_> = session
            .uid_store(&uid, "+FLAGS.SILENT (\\Deleted)")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
    });

    let check = ticketd(&s.config, &["check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("moved to Verwerkt (UID COPY and UID EXPUNGE)"),
        "{out}"
    );
    let log = poll(&s);
    assert_eq!(filed(&s), 2, "{log}");
    assert_eq!(status(&s, "Verwerkt").0, 2, "{log}");
    assert_eq!(
        status(&s, "INBOX").0,
        1,
        "the newsletter was expunged: {log}"
    );

    p.hide_capability("UIDPLUS");
    let check = ticketd(&s.config, &["check"]);
    assert!(!check.status.success());
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains("needs the server's MOVE or UIDPLUS"), "{err}");
}

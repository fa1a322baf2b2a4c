//! SMTP over TLS and with a login, against the rig's real Postfix (SASL by
//! the rig's Dovecot): implicit TLS on the SMTPS port and STARTTLS on the
//! plain port both deliver the acknowledgement, authenticated; a wrong SMTP
//! password keeps the ack queued (attempts counted, never given up for it)
//! until the right one sends it, once; a certificate from another CA is
//! refused with the fix in the message; `ticketd check` says the same.
//!
//! The mailbox side stays on plain IMAP: these tests are about SMTP.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;
use ticketd::rig::{MailRig, RIG_PASSWORD};

const WAIT: Duration = Duration::from_secs(20);
const WRONG_PASSWORD: &str = "not-the-smtp-password";

#[derive(Clone, Copy, Debug)]
enum SmtpTls {
    Implicit,
    Starttls,
}

/// Replaces the `[smtp]` section that `setup` wrote (plain, no login) with
/// one using `tls` against the rig, trusting `ca`, logging in as the support
/// address with `password`.
fn use_smtp(rig: &MailRig, s: &Setup, tls: SmtpTls, ca: &Path, password: &str) {
    let pw = s.dir.path().join("smtp-password");
    fs::write(&pw, format!("{password}\n")).unwrap();
    let (port, mode) = match tls {
        SmtpTls::Implicit => (rig.smtps_port(), "implicit"),
        SmtpTls::Starttls => (rig.smtp_port(), "starttls"),
    };
    let text = fs::read_to_string(&s.config).unwrap();
    let start = text.find("[smtp]\n").expect("an [smtp] section");
    let end = start
        + text[start..]
            .find("\n\n")
            .expect("end of the [smtp] section");
    let section = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{mode}\"\nca_file = \"{ca}\"\n\
         username = \"{SUPPORT}\"\npassword_file = \"{pw}\"\n\
         from_name = \"Whatnot Support\"\nfrom_address = \"{SUPPORT}\"",
        ca = ca.display(),
        pw = pw.display(),
    );
    fs::write(
        &s.config,
        format!("{}{section}{}", &text[..start], &text[end..]),
    )
    .unwrap();
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn set_smtp_password(s: &Setup, password: &str) {
    fs::write(s.dir.path().join("smtp-password"), format!("{password}\n")).unwrap();
}

fn send_buyer(rig: &MailRig, buyer: &str, message_id: &str) {
    rig.send(
        buyer,
        &[SUPPORT],
        &buyer_mail(
            buyer,
            "Buyer",
            "Where is my order?",
            message_id,
            "Hi, my order has not arrived yet. Thanks",
            "",
        ),
    )
    .unwrap();
}

/// `ticketd poll --once`, which must exit 0 (SMTP trouble is recorded on
/// the outbox rows, not fatal); returns its stderr (the log).
fn poll(config: &Path) -> String {
    let out = ticketd(config, &["poll", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "poll --once failed:\n{stderr}");
    stderr
}

/// `ticketd outbox --json`, oldest first.
fn outbox(config: &Path) -> Vec<Value> {
    let out = ticketd(config, &["outbox", "--json", "--limit", "1000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.reverse();
    rows
}

fn the_only_row(config: &Path) -> Value {
    let rows = outbox(config);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows.into_iter().next().unwrap()
}

/// `ticketd check`: (exit ok, stdout, stderr).
fn check(config: &Path) -> (bool, String, String) {
    let out = ticketd(config, &["check"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until Postfix has nothing left in its queue, so every message it
/// accepted has been delivered (or bounced) and a count of a maildir is final.
fn wait_queue_empty(rig: &MailRig) {
    fn files_under(dir: &Path) -> usize {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    files_under(&p)
                } else {
                    1
                }
            })
            .sum()
    }
    let spool = rig.dir().join("spool");
    wait_until("Postfix's queue to drain", WAIT, || {
        let queued: usize = ["maildrop", "incoming", "active", "deferred", "hold"]
            .iter()
            .map(|q| files_under(&spool.join(q)))
            .sum();
        (queued == 0).then_some(())
    });
}

/// The `Received:` line Postfix added when it accepted the message from
/// ticketd (the first one is Dovecot LMTP's).
fn postfix_received(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut headers = Vec::<String>::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            headers.push(line.to_string());
        }
    }
    headers
        .into_iter()
        .find(|h| h.starts_with("Received:") && h.contains("by mx.example.test (Postfix)"))
        .unwrap_or_else(|| panic!("no Received: line from Postfix in\n{text}"))
}

// ---------------------------------------------------------------------------
// The rig itself

/// Reads one (possibly multi-line) SMTP reply.
fn reply(r: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("reading an SMTP reply");
        assert!(
            !line.is_empty(),
            "server closed the connection after {all:?}"
        );
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

fn command<S: Read + Write>(s: &mut BufReader<S>, line: &str) -> String {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .unwrap();
    s.get_mut().flush().unwrap();
    reply(s)
}

fn rig_tls_config(rig: &MailRig) -> Arc<rustls::ClientConfig> {
    ticketd::net::tls_config(Some(rig.ca_file())).unwrap()
}

fn tls(
    config: &Arc<rustls::ClientConfig>,
    tcp: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    rustls::StreamOwned::new(
        rustls::ClientConnection::new(config.clone(), name).unwrap(),
        tcp,
    )
}

fn connect(port: u16) -> TcpStream {
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp
}

/// AUTH PLAIN with the support address and `password`: the reply.
fn auth_plain<S: Read + Write>(s: &mut BufReader<S>, password: &str) -> String {
    use base64::Engine;
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{SUPPORT}\0{password}"));
    command(s, &format!("AUTH PLAIN {token}"))
}

#[test]
fn the_rig_offers_starttls_and_auth_only_after_tls() {
    let rig = MailRig::start().unwrap();
    let config = rig_tls_config(&rig);

    // Plain port: STARTTLS offered, AUTH not before it.
    let mut plain = BufReader::new(connect(rig.smtp_port()));
    assert!(reply(&mut plain).starts_with("220 "));
    let ehlo = command(&mut plain, "EHLO client.localhost");
    assert!(ehlo.contains("250-STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo}");
    let refused = auth_plain(&mut plain, RIG_PASSWORD);
    assert!(refused.starts_with('5'), "AUTH before TLS: {refused}");
    assert!(command(&mut plain, "STARTTLS").starts_with("220 "));
    let mut upgraded = BufReader::new(tls(&config, plain.into_inner()));
    let ehlo = command(&mut upgraded, "EHLO client.localhost");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let wrong = auth_plain(&mut upgraded, WRONG_PASSWORD);
    assert!(wrong.starts_with("535 "), "{wrong}");
    let ok = auth_plain(&mut upgraded, RIG_PASSWORD);
    assert!(ok.starts_with("235 "), "{ok}");
    command(&mut upgraded, "QUIT");

    // SMTPS port: TLS from the first byte, AUTH offered at once.
    let mut smtps = BufReader::new(tls(&config, connect(rig.smtps_port())));
    assert!(reply(&mut smtps).starts_with("220 "));
    let ehlo = command(&mut smtps, "EHLO client.localhost");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let ok = auth_plain(&mut smtps, RIG_PASSWORD);
    assert!(ok.starts_with("235 "), "{ok}");
    command(&mut smtps, "QUIT");

    // And the plain path without a login works as before.
    rig.send("p@buyer.test", &[SUPPORT], b"Subject: plain\r\n\r\nhi\r\n")
        .unwrap();
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();
}

// ---------------------------------------------------------------------------
// ticketd

#[test]
fn acks_go_out_over_implicit_tls_and_starttls_with_a_login() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let buyers = ["implicit@buyer.test", "starttls@buyer.test"];
    for (i, (tls, buyer)) in [SmtpTls::Implicit, SmtpTls::Starttls]
        .into_iter()
        .zip(buyers)
        .enumerate()
    {
        // The same store throughout: the second poll files only the new mail.
        use_smtp(&rig, &s, tls, rig.ca_file(), RIG_PASSWORD);
        send_buyer(&rig, buyer, &format!("order{i}@buyer.test"));
        rig.wait_for_mail(SUPPORT, i + 1, WAIT).unwrap();
        let log = poll(&s.config);
        rig.wait_for_mail(buyer, 1, WAIT)
            .unwrap_or_else(|e| panic!("{tls:?}: {e}\nticketd log:\n{log}"));
        let rows = outbox(&s.config);
        assert_eq!(rows.len(), i + 1, "{rows:#?}");
        let row = &rows[i];
        assert_eq!(row["to"], buyer, "{row}");
        assert_eq!(row["status"], "sent", "{tls:?}: {row}");
        assert_eq!(row["attempts"], 1, "{row}");

        let ack = &rig.maildir_messages(buyer)[0];
        assert!(
            String::from_utf8_lossy(ack).contains(&format!("[WN-00000{}]", i + 1)),
            "{}",
            String::from_utf8_lossy(ack)
        );
        // Postfix notes TLS (S) and SMTP AUTH (A) in the protocol it records.
        let received = postfix_received(ack);
        assert!(received.contains("with ESMTPSA"), "{tls:?}: {received}");
    }
    wait_queue_empty(&rig);
    assert_eq!(rig.maildir_count(buyers[0]), 1);
    assert_eq!(rig.maildir_count(buyers[1]), 1);
}

#[test]
fn a_wrong_smtp_password_keeps_the_ack_queued_until_the_right_one_sends_it_once() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    use_smtp(&rig, &s, SmtpTls::Implicit, rig.ca_file(), WRONG_PASSWORD);
    let buyer = "locked-out@buyer.test";
    send_buyer(&rig, buyer, "locked1@buyer.test");
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();

    // The mail is filed; the ack is not sent, and not given up either.
    let log = poll(&s.config);
    let filed = export(&s.config);
    assert_eq!(filed.len(), 1, "{log}");
    assert_eq!(filed[0]["ticket"], "WN-000001");
    let row = the_only_row(&s.config);
    assert_eq!(row["status"], "queued", "{row}");
    assert_eq!(row["attempts"], 1, "{row}");
    let error = row["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("login as {SUPPORT} refused")),
        "{row}"
    );
    assert!(!error.contains(WRONG_PASSWORD), "{row}");
    assert!(!log.contains(WRONG_PASSWORD), "{log}");
    wait_queue_empty(&rig);
    assert_eq!(rig.maildir_count(buyer), 0);

    // The right password: once the backoff has passed, the next poll sends
    // it. (Waits for the recorded time; nothing asserts on durations.)
    set_smtp_password(&s, RIG_PASSWORD);
    let due = row["next_attempt_at"].as_i64().unwrap();
    while unix_now() <= due {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = poll(&s.config);
    let row = the_only_row(&s.config);
    assert_eq!(row["status"], "sent", "{row}\n{log}");
    assert_eq!(row["attempts"], 2, "{row}");
    assert!(row["last_error"].is_null(), "{row}");
    rig.wait_for_mail(buyer, 1, WAIT).unwrap();

    // Nothing more to send: another poll leaves everything as it is.
    poll(&s.config);
    let row = the_only_row(&s.config);
    assert_eq!(row["status"], "sent", "{row}");
    assert_eq!(row["attempts"], 2, "{row}");
    wait_queue_empty(&rig);
    assert_eq!(rig.maildir_count(buyer), 1);
    assert_eq!(export(&s.config).len(), 1);
}

#[test]
fn an_smtp_certificate_from_another_ca_is_refused_clearly() {
    let rig = MailRig::start().unwrap();
    let other = MailRig::start().unwrap();
    let buyer = "wary@buyer.test";
    send_buyer(&rig, buyer, "wary1@buyer.test");
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();
    for tls in [SmtpTls::Implicit, SmtpTls::Starttls] {
        let s = setup(&rig, Imap::Plain, None);
        // Trust only the other rig's CA: the handshake must fail.
        use_smtp(&rig, &s, tls, other.ca_file(), RIG_PASSWORD);
        let log = poll(&s.config);
        assert_eq!(export(&s.config).len(), 1, "{log}");
        let row = the_only_row(&s.config);
        assert_eq!(row["status"], "queued", "{tls:?}: {row}");
        assert_eq!(row["attempts"], 1, "{row}");
        let error = row["last_error"].as_str().unwrap_or_default();
        for want in ["not trusted", "ca_file", "certificate"] {
            assert!(error.contains(want), "{tls:?}: {want:?} not in {error}");
        }
        if let SmtpTls::Starttls = tls {
            assert!(error.contains("STARTTLS"), "{error}");
        }
        assert!(log.contains("not trusted"), "{log}");

        let (ok, stdout, stderr) = check(&s.config);
        assert!(!ok, "{tls:?}: check passed:\n{stdout}");
        assert!(stdout.contains("ok: IMAP"), "{stdout}");
        assert!(!stdout.contains("ok: SMTP"), "{stdout}");
        for want in ["SMTP check failed", "not trusted", "ca_file"] {
            assert!(stderr.contains(want), "{tls:?}: {want:?} not in\n{stderr}");
        }
    }
    wait_queue_empty(&rig);
    assert_eq!(rig.maildir_count(buyer), 0);
}

#[test]
fn check_passes_with_implicit_tls_and_a_login_and_names_a_refused_login() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    for tls in [SmtpTls::Implicit, SmtpTls::Starttls] {
        use_smtp(&rig, &s, tls, rig.ca_file(), RIG_PASSWORD);
        let (ok, stdout, stderr) = check(&s.config);
        assert!(ok, "{tls:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        let port = match tls {
            SmtpTls::Implicit => rig.smtps_port(),
            SmtpTls::Starttls => rig.smtp_port(),
        };
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("ok: SMTP 127.0.0.1:{port}")),
            "{stdout}"
        );
    }

    use_smtp(&rig, &s, SmtpTls::Implicit, rig.ca_file(), WRONG_PASSWORD);
    let (ok, stdout, stderr) = check(&s.config);
    assert!(!ok, "check passed with a wrong password:\n{stdout}");
    for passed in ["config", "templates", "store", "IMAP"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("ok: {passed}"))),
            "no `ok: {passed}`:\n{stdout}"
        );
    }
    assert!(!stdout.contains("ok: SMTP"), "{stdout}");
    for want in [
        format!("SMTP check failed for 127.0.0.1:{}", rig.smtps_port()),
        format!("login as {SUPPORT} refused"),
        "the login".to_string(),
    ] {
        assert!(stderr.contains(&want), "{want:?} not in\n{stderr}");
    }
    assert!(!stderr.contains(WRONG_PASSWORD), "{stderr}");
}

//! Smoke tests for the MailRig harness (src/rig.rs): mail sent over SMTP
//! reaches the IMAP mailbox of the same address, foreign domains are refused,
//! TLS verifies against the rig's CA, rigs coexist, and stopping a rig really
//! closes its ports. Needs root and the packages from scripts/setup.sh.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use ticketd::rig::{MailRig, RigError, RIG_PASSWORD};

const WAIT: Duration = Duration::from_secs(10);

fn start_rig() -> MailRig {
    let t = Instant::now();
    let rig = MailRig::start().unwrap_or_else(|e| panic!("starting the mail rig: {e}"));
    eprintln!("rig {} started in {:?}", rig.dir().display(), t.elapsed());
    rig
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Buyer <buyer@buyer.test>\r\nTo: support@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@buyer.test>\r\n\r\nHello,\r\nmy order is late.\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Line-oriented IMAP over any stream; enough for LOGIN/SELECT/IDLE.
struct Imap<S: Read + Write> {
    stream: BufReader<S>,
}

impl<S: Read + Write> Imap<S> {
    fn new(stream: S) -> Self {
        let mut imap = Imap {
            stream: BufReader::new(stream),
        };
        let greeting = imap.line();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        imap
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("reading from IMAP");
        assert!(!line.is_empty(), "IMAP server closed the connection");
        line
    }

    fn send(&mut self, line: &str) {
        let s = self.stream.get_mut();
        s.write_all(format!("{line}\r\n").as_bytes())
            .expect("writing to IMAP");
        s.flush().expect("flushing IMAP");
    }

    /// Sends `tag command` and returns all lines up to the tagged reply,
    /// asserting that it is OK.
    fn run(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(&format!("{tag} {command}"));
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                break;
            }
        }
        let last = lines.last().map(String::as_str).unwrap_or_default();
        assert!(
            last.starts_with(&format!("{tag} OK")),
            "{command}: {lines:?}"
        );
        lines
    }
}

fn imap_plain(rig: &MailRig) -> Imap<TcpStream> {
    let tcp =
        TcpStream::connect((Ipv4Addr::LOCALHOST, rig.imap_port())).expect("connecting to IMAP");
    tcp.set_read_timeout(Some(WAIT)).expect("read timeout");
    Imap::new(tcp)
}

fn tls_config(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca_file).expect("reading the rig CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.expect("parsing the rig CA"))
            .expect("adding the rig CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn tls(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    tcp: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let conn = rustls::ClientConnection::new(config.clone(), name).expect("TLS client");
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn delivers_over_smtp_and_serves_over_imap_then_stops() {
    let mut rig = start_rig();
    let t = Instant::now();
    rig.send(
        "buyer@buyer.test",
        &["support@example.test"],
        &message("Order 1001 is late"),
    )
    .expect("sending to the support address");
    rig.wait_for_mail("support@example.test", 1, WAIT)
        .expect("delivery to support@example.test");
    eprintln!("SMTP accept to maildir took {:?}", t.elapsed());
    let msgs = rig.maildir_messages("support@example.test");
    assert_eq!(msgs.len(), 1);
    assert!(contains(&msgs[0], b"Subject: Order 1001 is late"));
    assert!(contains(&msgs[0], b"my order is late."));

    let mut imap = imap_plain(&rig);
    imap.run("a", &format!("LOGIN support@example.test {RIG_PASSWORD}"));
    let select = imap.run("b", "SELECT INBOX");
    assert!(
        select.iter().any(|l| l.trim_end() == "* 1 EXISTS"),
        "{select:?}"
    );
    imap.run("c", "LOGOUT");

    let err = rig
        .send("buyer@buyer.test", &["someone@gmail.com"], &message("Leak"))
        .expect_err("mail to a foreign domain must be refused");
    assert!(matches!(err, RigError::Smtp { .. }), "{err}");
    assert!(err.to_string().contains("gmail.com"), "{err}");

    let ports = [
        rig.imap_port(),
        rig.imaps_port(),
        rig.lmtp_port(),
        rig.smtp_port(),
        rig.smtps_port(),
    ];
    let t = Instant::now();
    rig.stop();
    eprintln!("rig stopped in {:?}", t.elapsed());
    for port in ports {
        assert!(
            !accepts_connections(port),
            "port {port} still open after stop()"
        );
    }
    assert_eq!(
        rig.maildir_count("support@example.test"),
        1,
        "mail survives stop()"
    );
}

#[test]
fn message_bytes_survive_dot_stuffing_and_bare_newlines() {
    let rig = start_rig();
    let raw = b"From: a@shop.test\nTo: b@shop.test\nSubject: dots\n\n.leading dot\n.\nafter the lone dot\rlast line";
    rig.send("a@shop.test", &["B@Shop.test"], raw)
        .expect("sending");
    rig.wait_for_mail("b@shop.test", 1, WAIT).expect("delivery");
    let stored = &rig.maildir_messages("b@shop.test")[0];
    // Dovecot stores maildir files with LF line endings.
    assert!(
        contains(
            stored,
            b"\n.leading dot\n.\nafter the lone dot\nlast line\n"
        ),
        "{}",
        String::from_utf8_lossy(stored)
    );
}

#[test]
fn tls_endpoints_verify_against_the_rig_ca() {
    let rig = start_rig();
    let config = tls_config(rig.ca_file());

    for name in ["localhost", "127.0.0.1"] {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, rig.imaps_port())).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).expect("read timeout");
        let mut imap = Imap::new(tls(&config, name, tcp));
        imap.run("a", &format!("LOGIN tls@example.test {RIG_PASSWORD}"));
        imap.run("b", "LOGOUT");
    }

    let mut plain = imap_plain(&rig);
    plain.run("s", "STARTTLS");
    let tcp = plain.stream.into_inner();
    let tls_stream = tls(&config, "localhost", tcp);
    let mut imap = Imap {
        stream: BufReader::new(tls_stream),
    };
    imap.run("a", &format!("LOGIN starttls@example.test {RIG_PASSWORD}"));
    imap.run("b", "LOGOUT");
}

#[test]
fn idle_reports_new_mail() {
    let rig = start_rig();
    let mut imap = imap_plain(&rig);
    imap.run("a", &format!("LOGIN idle@example.test {RIG_PASSWORD}"));
    let select = imap.run("b", "SELECT INBOX");
    assert!(
        select.iter().any(|l| l.trim_end() == "* 0 EXISTS"),
        "{select:?}"
    );
    imap.send("c IDLE");
    let cont = imap.line();
    assert!(cont.starts_with('+'), "{cont}");
    let t = Instant::now();
    rig.send("buyer@buyer.test", &["idle@example.test"], &message("Idle"))
        .expect("sending");
    loop {
        let line = imap.line();
        if line.trim_end() == "* 1 EXISTS" {
            break;
        }
    }
    eprintln!("IDLE saw the new mail after {:?}", t.elapsed());
    imap.send("DONE");
    imap.run("d", "LOGOUT");
}

#[test]
fn two_rigs_coexist() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(start_rig);
        let b = s.spawn(start_rig);
        (a.join().expect("rig a"), b.join().expect("rig b"))
    });
    assert_ne!(a.dir(), b.dir());
    let ports_a = [
        a.imap_port(),
        a.imaps_port(),
        a.lmtp_port(),
        a.smtp_port(),
        a.smtps_port(),
    ];
    let ports_b = [
        b.imap_port(),
        b.imaps_port(),
        b.lmtp_port(),
        b.smtp_port(),
        b.smtps_port(),
    ];
    assert!(
        ports_a.iter().all(|p| !ports_b.contains(p)),
        "{ports_a:?} {ports_b:?}"
    );

    a.send("x@buyer.test", &["support@example.test"], &message("For A"))
        .expect("send to a");
    b.send("y@buyer.test", &["support@example.test"], &message("For B"))
        .expect("send to b");
    a.wait_for_mail("support@example.test", 1, WAIT)
        .expect("a delivers");
    b.wait_for_mail("support@example.test", 1, WAIT)
        .expect("b delivers");
    let in_a = a.maildir_messages("support@example.test");
    let in_b = b.maildir_messages("support@example.test");
    assert_eq!((in_a.len(), in_b.len()), (1, 1));
    assert!(contains(&in_a[0], b"For A") && contains(&in_b[0], b"For B"));
}

#[test]
fn postfix_can_be_stopped_and_started_again() {
    let mut rig = start_rig();
    rig.stop_postfix();
    assert!(!accepts_connections(rig.smtp_port()));
    assert!(!accepts_connections(rig.smtps_port()));
    assert!(
        accepts_connections(rig.imap_port()),
        "Dovecot keeps running"
    );
    assert!(rig
        .send("b@buyer.test", &["support@example.test"], &message("Down"))
        .is_err());

    rig.start_postfix().expect("restarting Postfix");
    rig.send("b@buyer.test", &["support@example.test"], &message("Back"))
        .expect("sending after restart");
    rig.wait_for_mail("support@example.test", 1, WAIT)
        .expect("delivery after restart");
}

//! Fault tests: `ticketd run` against a real Dovecot and Postfix while the
//! world misbehaves. The IMAP server goes away (through a fault-injecting
//! proxy, `tests/proxy`), a connection stalls mid-FETCH or while idle,
//! Postfix is down while acknowledgements queue, another process holds the
//! SQLite write lock past the busy timeout, the data directory's disk is
//! full, two mailboxes are watched at once, and SIGHUP reloads the
//! templates (a broken edit is refused and the running ones kept).
//!
//! Every test ends the same way: each buyer's Message-ID is filed exactly
//! once (`ticketd export --jsonl`), every ack is marked sent, and each buyer
//! has exactly one acknowledgement in their mailbox. `run` is still running
//! at the end (no network or store error makes it exit) and exits 0 on
//! SIGTERM.
//!
//! The tests take turns (one `SERIAL` lock): several are about timeouts and
//! backoff, and on a two-core machine parallel rigs would blur the timing.
//! They need root, like every rig test; the disk-full test also mounts a
//! small tmpfs (and unmounts it on drop).

mod common;
mod proxy;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{append_received_ago, buyer_mail, export, templates_dir, ticketd, SUPPORT};
use proxy::Proxy;
use serde_json::Value;
use ticketd::core::parse::parse;
use ticketd::rig::{MailRig, RIG_PASSWORD};

/// Generous bound for anything that should take a second or two.
const WAIT: Duration = Duration::from_secs(30);
/// One test at a time (see the module comment).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Config and the daemon process

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// A config for `rig` with IMAP on `imap_port` (the rig's, or a proxy's),
/// plain text on loopback. `imap_extra` goes at the end of `[imap]`
/// (e.g. `timeout = 5` or `[[imap.mailboxes]]` tables).
fn env(rig: &MailRig, imap_port: u16, imap_extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    env_in(dir, rig, imap_port, imap_extra, &data, &templates_dir())
}

fn env_in(
    dir: tempfile::TempDir,
    rig: &MailRig,
    imap_port: u16,
    imap_extra: &str,
    data_dir: &Path,
    templates: &Path,
) -> Env {
    let pw = dir.path().join("password");
    fs::write(&pw, format!("{RIG_PASSWORD}\n")).unwrap();
    let text = format!(
        r#"[imap]
host = "127.0.0.1"
port = {imap_port}
tls = "none"
username = "{SUPPORT}"
password_file = "{pw}"
poll_interval = 1
{imap_extra}

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
from_name = "Whatnot Support"
from_address = "{SUPPORT}"

[store]
data_dir = "{data}"

[tickets]
templates_dir = "{templates}"
"#,
        pw = pw.display(),
        smtp = rig.smtp_port(),
        data = data_dir.display(),
        templates = templates.display(),
    );
    let config = dir.path().join("ticketd.toml");
    fs::write(&config, text).unwrap();
    Env { dir, config }
}

/// `ticketd run` as a child, stderr to a file; SIGTERM (then SIGKILL) on
/// drop. Only this child's PID is ever signalled.
struct Run {
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
}

impl Run {
    fn start(config: &Path) -> Run {
        Run::spawn(config, None, None)
    }

    /// As under systemd with `WatchdogSec=`: the daemon renews IDLE at a
    /// third of `period`. WATCHDOG_PID must be the daemon's own PID, so a
    /// shell sets it to its `$$` and then execs ticketd in its place.
    fn start_with_watchdog(config: &Path, period: Duration) -> Run {
        Run::spawn(config, Some(period), None)
    }

    fn spawn(config: &Path, watchdog: Option<Duration>, notify: Option<&Path>) -> Run {
        let log = config.with_file_name(format!(
            "run-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let bin = env!("CARGO_BIN_EXE_ticketd");
        let mut cmd = match watchdog {
            None => Command::new(bin),
            Some(period) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c")
                    .arg(r#"WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@""#)
                    .arg(bin)
                    .env("WATCHDOG_USEC", period.as_micros().to_string());
                c
            }
        };
        match notify {
            Some(socket) => cmd.env("NOTIFY_SOCKET", socket),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
        let child = cmd
            .arg("--config")
            .arg(config)
            .arg("--log-format")
            .arg("text")
            .arg("run")
            .env("TICKETD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id();
        let run = Run {
            child: Some(child),
            pid,
            log,
        };
        // The store is open (and migrated) once it says so; only then may
        // the test's own `ticketd export` open it (see
        // concurrent_first_open_of_a_new_store).
        run.wait_log("watching", 1, WAIT);
        run
    }

    /// The daemon's log so far, without colour codes.
    fn log(&self) -> String {
        strip_ansi(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {} failed", self.pid);
    }

    /// Waits until the log has `needle` at least `times` times.
    fn wait_log(&self, needle: &str, times: usize, timeout: Duration) {
        wait_for(
            &format!("{needle:?} x{times} in the log"),
            timeout,
            self,
            || (self.log().matches(needle).count() >= times).then_some(()),
        );
    }

    /// SIGTERM, then the exit status.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon already stopped");
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon ignored SIGTERM for 20 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
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

/// Polls `f` every 50 ms; fails with the daemon's log after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, run: &Run, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; daemon log:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Mail and the end-of-test invariant

/// A new buyer's first mail: English, distinct sender, so it opens a ticket
/// and earns exactly one ack.
fn send_buyer(rig: &MailRig, buyer: &str, message_id: &str) {
    let mail = buyer_mail(
        buyer,
        "Buyer",
        &format!("Order question {message_id}"),
        message_id,
        "Hello, my order has not arrived yet. Can you help me?\r\nThanks",
        "",
    );
    rig.send(buyer, &[SUPPORT], &mail).unwrap();
}

/// A buyer's mail with `photo` (base64 lines) attached: the large mail of
/// the tests that slow, stall or cut its FETCH.
fn photo_mail(buyer: &str, message_id: &str, photo: &str) -> Vec<u8> {
    format!(
        "From: Buyer <{buyer}>\r\nTo: Whatnot Support <{SUPPORT}>\r\nSubject: Damaged parcel, photos\r\n\
         Message-ID: <{message_id}>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello, my parcel arrived damaged, see the photo.\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"photo.bin\"\r\n\
         Content-Disposition: attachment; filename=\"photo.bin\"\r\n\r\n{photo}\r\n--b--\r\n"
    )
    .into_bytes()
}

/// Waits until the support mailbox holds `count` mails (delivered by
/// Postfix through LMTP, so they have their UIDs).
fn wait_delivered(rig: &MailRig, count: usize) {
    let start = Instant::now();
    while rig.maildir_count(SUPPORT) < count {
        assert!(start.elapsed() < WAIT, "{count} mail(s) did not arrive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn buyer(test: &str, i: usize) -> String {
    format!("{test}{i}@buyer.test")
}

fn mid(test: &str, i: usize) -> String {
    format!("{test}-{i}@buyer.test")
}

/// Waits until `ids` are all filed and every one of `buyers` has an ack.
fn wait_filed_and_acked(rig: &MailRig, s: &Env, run: &Run, ids: &[String], buyers: &[String]) {
    wait_for("every message filed", WAIT, run, || {
        let e = export(&s.config);
        ids.iter()
            .all(|id| e.iter().any(|m| m["message_id"] == id.as_str()))
            .then_some(())
    });
    for b in buyers {
        wait_for(&format!("the ack to {b}"), WAIT, run, || {
            (rig.maildir_count(b) >= 1).then_some(())
        });
    }
}

/// The invariant every fault test ends with: each Message-ID filed once on
/// a ticket, each ack sent, each buyer holding exactly one ack.
fn assert_exactly_once(rig: &MailRig, s: &Env, run: &Run, ids: &[String], buyers: &[String]) {
    // Give a wrongly repeated ack (or a late duplicate) time to show up.
    std::thread::sleep(Duration::from_secs(1));
    let exported = export(&s.config);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in &exported {
        *seen.entry(m["message_id"].as_str().unwrap()).or_default() += 1;
    }
    for id in ids {
        assert_eq!(
            seen.get(id.as_str()).copied(),
            Some(1),
            "{id} filed {:?} times; export: {exported:#?}\nlog:\n{}",
            seen.get(id.as_str()),
            run.log()
        );
    }
    assert_eq!(
        exported.len(),
        ids.len(),
        "unexpected messages: {exported:#?}"
    );
    for m in &exported {
        assert!(m["ticket"].is_string(), "not on a ticket: {m}");
        assert_eq!(m["ack"]["status"], "sent", "ack not sent: {m}");
    }
    for b in buyers {
        assert_eq!(
            rig.maildir_count(b),
            1,
            "{b} should have exactly one ack; log:\n{}",
            run.log()
        );
        let ack = parse(&rig.maildir_messages(b)[0]);
        assert!(ack.subject.contains("Whatnot Support"), "{}", ack.subject);
    }
}

fn finish(run: &mut Run) {
    assert!(
        run.running(),
        "ticketd run exited by itself; log:\n{}",
        run.log()
    );
    let status = run.stop();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        run.log()
    );
}

/// The daemon's IMAP view of the support mailbox, for CREATE and APPEND.
fn support_session<T>(
    config: &Path,
    f: impl AsyncFnOnce(&mut ticketd::imap::ImapSession) -> T,
) -> T {
    let cfg = ticketd::config::Config::load(config).unwrap();
    let imap = cfg.imap.unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s = ticketd::imap::connect(&imap).await.unwrap();
        let out = f(&mut s).await;
        ticketd::imap::logout(s).await;
        out
    })
}

// ---------------------------------------------------------------------------
// The proxy itself, and the store's first open, without a rig

/// `ticketd run` and an operator's `ticketd stats` (or two mailbox
/// watchers) opening a brand-new data directory at the same moment: both
/// must work. Each process reads `PRAGMA user_version`, and the schema is
/// created by whoever gets there; the other must notice, not fail.
#[test]
fn concurrent_first_open_of_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for round in 0..10 {
        let config = dir.path().join(format!("ticketd-{round}.toml"));
        fs::write(
            &config,
            format!(
                "[store]\ndata_dir = \"{}\"\n[tickets]\ntemplates_dir = \"{}\"\n",
                dir.path().join(format!("data-{round}")).display(),
                templates_dir().display()
            ),
        )
        .unwrap();
        let children: Vec<Child> = (0..4)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_ticketd"))
                    .arg("--config")
                    .arg(&config)
                    .args(["stats", "--json"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            if !out.status.success() {
                failures.push(String::from_utf8_lossy(&out.stderr).trim().to_string());
            }
        }
    }
    let n = failures.len();
    failures.sort();
    failures.dedup();
    assert!(
        failures.is_empty(),
        "{n} of 40 concurrent first opens failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn proxy_forwards_cuts_stalls_refuses_and_delays() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    // An echo server on loopback.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in server.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let p = Proxy::start(upstream);
    let connect = || {
        let c = TcpStream::connect(("127.0.0.1", p.port())).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        c
    };
    let echo = |c: &mut TcpStream, msg: &[u8]| -> std::io::Result<Vec<u8>> {
        c.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got)?;
        Ok(got)
    };

    let mut a = connect();
    assert_eq!(echo(&mut a, b"hello").unwrap(), b"hello");

    // Stall: nothing comes back, the socket stays open; on release the
    // held bytes arrive.
    p.stall(true);
    a.write_all(b"held").unwrap();
    let mut buf = [0u8; 4];
    let err = a.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    p.stall(false);
    a.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"held");

    // Delay: each chunk waits.
    p.delay(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(echo(&mut a, b"slow").unwrap(), b"slow");
    assert!(
        t.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
    p.delay(Duration::ZERO);

    // Cut: the current connection is closed.
    p.cut();
    let mut rest = Vec::new();
    assert!(matches!(a.read_to_end(&mut rest), Ok(0) | Err(_)));

    // Refuse: new connections are closed at once; then accepted again.
    p.refuse(true);
    let mut b = connect();
    assert!(matches!(b.read(&mut buf), Ok(0) | Err(_)));
    assert!(p.refused() >= 1);
    p.refuse(false);
    let mut c = connect();
    assert_eq!(echo(&mut c, b"back").unwrap(), b"back");
    assert_eq!(p.accepted(), 2);
    assert!(p.bytes_down() >= 17 && p.bytes_up() >= 17);
    drop(p); // joins every thread
}

// ---------------------------------------------------------------------------
// IMAP server gone, stalled connections

#[test]
fn imap_server_gone_for_a_while_then_everything_is_filed() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "");
    let mut run = Run::start(&s.config);
    let ids: Vec<String> = (0..5).map(|i| mid("gone", i)).collect();
    let buyers: Vec<String> = (0..5).map(|i| buyer("gone", i)).collect();

    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);

    // The server goes away: connections drop, new ones are refused, and
    // Postfix keeps delivering into Dovecot meanwhile.
    let down = Instant::now();
    p.refuse(true);
    p.cut();
    for i in 1..5 {
        send_buyer(&rig, &buyers[i], &ids[i]);
    }
    rig.wait_for_mail(SUPPORT, 5, WAIT).unwrap();
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    assert!(run.running(), "run exited; log:\n{}", run.log());
    assert!(p.refused() >= 2, "the daemon did not retry while down");
    assert_eq!(
        export(&s.config).len(),
        1,
        "filed while the server was away?"
    );
    assert!(
        run.log().contains("IMAP connection failed"),
        "{}",
        run.log()
    );

    // Back: the daemon reconnects by itself (next try within ~12 s).
    p.refuse(false);
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert!(p.accepted() >= 2);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// Backoff is for consecutive failures: once a connection has been healthy
/// for a while (the daemon's rule: it lasted over 60 s), the next drop is
/// retried after about a second, not after the delay the last outage had
/// grown to (16 s or more after a 10 s outage).
#[test]
fn backoff_starts_again_after_a_successful_reconnect() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "");
    let mut run = Run::start(&s.config);
    let ids: Vec<String> = (0..3).map(|i| mid("reset", i)).collect();
    let buyers: Vec<String> = (0..3).map(|i| buyer("reset", i)).collect();

    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);

    // An outage of ~10 s: about four failed attempts in a row.
    p.refuse(true);
    p.cut();
    std::thread::sleep(Duration::from_secs(10));
    p.refuse(false);
    send_buyer(&rig, &buyers[1], &ids[1]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..2], &buyers[..2]);

    // Healthy again for a while, then one short drop.
    std::thread::sleep(HEALTHY);
    p.cut();
    let dropped = Instant::now();
    send_buyer(&rig, &buyers[2], &ids[2]);
    wait_for(
        "the mail after a single drop to be filed within 8 s (backoff should start again at 1 s)",
        Duration::from_secs(8),
        &run,
        || {
            export(&s.config)
                .iter()
                .any(|m| m["message_id"] == ids[2].as_str())
                .then_some(())
        },
    );
    eprintln!("filed {:?} after the drop", dropped.elapsed());
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// Longer than the 60 s after which daemon::mailbox_loop counts a
/// connection as healthy and starts its backoff afresh.
const HEALTHY: Duration = Duration::from_secs(62);

/// A big mail over a slow link; the link stalls halfway through the body.
/// `imap.timeout = 5` gives up on the FETCH, the daemon reconnects when the
/// link moves again and files the mail once.
#[test]
fn connection_stalled_mid_fetch_times_out_and_the_mail_is_filed_once() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "timeout = 5");
    let mut run = Run::start(&s.config);
    let ids = vec![mid("stall", 0), mid("stall", 1)];
    let buyers = vec![buyer("stall", 0), buyer("stall", 1)];

    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);

    // ~1 MB at 16 KiB per 25 ms: the body takes ~1.6 s to come through.
    let photo: String = (0..1_000_000u32)
        .map(|i| char::from(b'A' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
        .collect::<String>()
        .as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n");
    let big = photo_mail(&buyers[1], &ids[1], &photo);
    p.delay(Duration::from_millis(25));
    let before = p.bytes_down();
    rig.send(&buyers[1], &[SUPPORT], &big).unwrap();
    wait_for("the body FETCH to be under way", WAIT, &run, || {
        (p.bytes_down() > before + 300_000).then_some(())
    });
    p.stall(true);
    p.delay(Duration::ZERO);
    let stalled = Instant::now();
    run.wait_log("IMAP UID FETCH timed out", 1, Duration::from_secs(20));
    eprintln!("FETCH timed out {:?} after the stall", stalled.elapsed());
    assert_eq!(export(&s.config).len(), 1, "filed from a half-read FETCH?");
    p.stall(false);

    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    let exported = export(&s.config);
    let size = exported[1]["attachments"][0]["size"].as_u64().unwrap_or(0);
    assert!(size > 1_000_000, "{}", exported[1]);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// Three buyers' mails, delivered one at a time (so UID n holds mail n - 1).
fn three_mails(rig: &MailRig, test: &str) -> Vec<String> {
    let ids: Vec<String> = (0..3).map(|i| mid(test, i)).collect();
    for (n, id) in ids.iter().enumerate() {
        send_buyer(rig, &buyer(test, n), id);
        wait_delivered(rig, n + 1);
    }
    ids
}

/// The Message-IDs filed so far, sorted.
fn filed(s: &Env) -> Vec<String> {
    let mut ids: Vec<String> = export(&s.config)
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// `poll --once`, which must succeed; gives its log.
fn poll_once(s: &Env) -> String {
    let out = ticketd(&s.config, &["poll", "--once"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

/// What `ticketd stats` says about messages left out.
fn left_out_lines(s: &Env) -> Vec<String> {
    let out = ticketd(&s.config, &["stats"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("left out:"))
        .map(str::to_string)
        .collect()
}

/// Three mails, the server leaving UID 2 out of its answer once (`omit`):
/// the others are filed at once, the missing one is recorded before the
/// position moves past it (a warning, a `stats` line), and the next pass
/// asks for it again and files it, each mail once.
fn left_out_once_then_filed(test: &str, omit: impl Fn(&Proxy)) {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "");
    let ids = three_mails(&rig, test);

    omit(&p);
    let log = poll_once(&s);
    assert_eq!(p.omitted(), 1, "the proxy did not drop UID 2's response");
    assert_eq!(filed(&s), [ids[0].clone(), ids[2].clone()], "log:\n{log}");
    assert!(log.contains("left the message out"), "{log}");
    let lines = left_out_lines(&s);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("INBOX UID 2: not sent by the server in 1 pass"),
        "{lines:?}"
    );

    let log = poll_once(&s);
    assert_eq!(filed(&s), ids, "log:\n{log}");
    assert!(left_out_lines(&s).is_empty());
}

/// A body left out of a FETCH answer (a tagged NO, which async-imap does
/// not report) ended the pass there, holding up all later mail.
#[test]
fn a_body_left_out_of_a_fetch_is_filed_on_the_next_pass_and_holds_nothing_up() {
    left_out_once_then_filed("gap", |p| p.omit_body(2, 1));
}

/// A UID the size listing leaves out (though UID SEARCH lists it) was
/// passed by the position and never filed.
#[test]
fn a_message_left_out_of_the_size_listing_is_filed_on_the_next_pass() {
    left_out_once_then_filed("sizegap", |p| p.omit_size(2, 1));
}

/// A message the server never sends holds nothing up and does not flood
/// the log (a warning on the 1st, 2nd and 4th pass, not the 3rd); once it
/// is gone from the mailbox it is no longer asked for.
#[test]
fn a_message_the_server_never_sends_is_asked_for_until_it_is_gone() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "");
    let ids = three_mails(&rig, "never");

    p.omit_body(2, 1000);
    let warned: Vec<bool> = (0..4)
        .map(|_| poll_once(&s).contains("left the message out"))
        .collect();
    assert_eq!(warned, [true, true, false, true]);
    assert_eq!(p.omitted(), 4);
    assert_eq!(filed(&s), [ids[0].clone(), ids[2].clone()]);
    let lines = left_out_lines(&s);
    assert!(
        lines[0].contains("UID 2: not sent by the server in 4 pass"),
        "{lines:?}"
    );

    // Mail that comes meanwhile is filed as usual.
    send_buyer(&rig, &buyer("never", 3), &mid("never", 3));
    wait_delivered(&rig, 4);
    poll_once(&s);
    assert!(filed(&s).contains(&mid("never", 3)));

    // Someone deletes it from the mailbox: no longer asked for.
    use futures::TryStreamExt;
    support_session(&s.config, async |imap| {
        imap.select("INBOX").await.unwrap();
        let flagged: Vec<_> = imap
            .uid_store("2", "+FLAGS (\\Deleted)")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(flagged.len(), 1);
        let _: Vec<_> = imap.expunge().await.unwrap().try_collect().await.unwrap();
    });
    let omitted = p.omitted();
    let log = poll_once(&s);
    assert!(log.contains("no longer in the mailbox"), "{log}");
    assert_eq!(p.omitted(), omitted, "asked for UID 2 again");
    assert!(left_out_lines(&s).is_empty());
    assert_eq!(filed(&s).len(), 3);
}

/// `poll_once` on a current-thread runtime (an embedder's, or a test's)
/// has no thread to spare for the filing stages: it fetches and files one
/// batch after the other, with the same handling of a left-out message.
#[test]
fn on_a_current_thread_runtime_batches_are_filed_one_after_the_other() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "");
    let ids = three_mails(&rig, "onethread");
    let config = ticketd::config::Config::load(&s.config).unwrap();
    let templates = ticketd::ack::AckTemplates::load(&config.tickets.templates_dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let poll = || {
        rt.block_on(ticketd::daemon::poll_once(&config, &templates, None))
            .unwrap()
    };

    p.omit_body(2, 1);
    poll();
    assert_eq!(p.omitted(), 1);
    assert_eq!(filed(&s), [ids[0].clone(), ids[2].clone()]);
    assert_eq!(left_out_lines(&s).len(), 1);
    poll();
    assert_eq!(filed(&s), ids);
    assert!(left_out_lines(&s).is_empty());
    // Each acknowledged once.
    for n in 0..3 {
        rig.wait_for_mail(&buyer("onethread", n), 1, WAIT).unwrap();
    }
    assert_eq!(
        common::settled_counts(
            &rig,
            &(0..3).map(|n| buyer("onethread", n)).collect::<Vec<_>>(),
            Duration::from_millis(500)
        ),
        [1, 1, 1]
    );
}

/// Mail that arrives while the daemon fetches a slow, large message is
/// announced in that FETCH's answer (Dovecot sends `* 2 EXISTS` before its
/// OK) and never again: it is filed right after, not at the next IDLE
/// renewal (two minutes here).
#[test]
fn mail_announced_during_a_fetch_is_filed_right_after_it() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "");
    let mut run = Run::start(&s.config);
    let ids = vec![mid("during", 0), mid("during", 1), mid("during", 2)];
    let buyers = vec![buyer("during", 0), buyer("during", 1), buyer("during", 2)];
    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);

    // ~1 MB at 16 KiB per 40 ms: the body takes ~2.5 s to come through.
    let photo = "QUJDRA==".repeat(125_000);
    let big = photo_mail(&buyers[1], &ids[1], &photo);
    p.delay(Duration::from_millis(40));
    let before = p.bytes_down();
    rig.send(&buyers[1], &[SUPPORT], &big).unwrap();
    wait_for("the body FETCH to be under way", WAIT, &run, || {
        (p.bytes_down() > before + 100_000).then_some(())
    });
    send_buyer(&rig, &buyers[2], &ids[2]);
    let sent = Instant::now();
    wait_for("the large mail filed", WAIT, &run, || {
        let e = export(&s.config);
        e.iter()
            .any(|m| m["message_id"] == ids[1].as_str())
            .then_some(())
    });
    p.delay(Duration::ZERO);
    wait_for("the mail sent during the FETCH filed", WAIT, &run, || {
        let e = export(&s.config);
        e.iter()
            .any(|m| m["message_id"] == ids[2].as_str())
            .then_some(())
    });
    let took = sent.elapsed();
    eprintln!("filed {took:?} after it was sent");
    assert!(
        took < Duration::from_secs(20),
        "waited {took:?} for the IDLE renewal; log:\n{}",
        run.log()
    );
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// A large mail on a slow link takes longer than `imap.timeout` to come
/// through: the FETCH is given time for its size (at 1 Mbit/s) instead of
/// being cut off, and fetched again and cut off again, on every pass.
#[test]
fn a_large_mail_on_a_slow_link_is_not_cut_off_by_the_timeout() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "timeout = 2");
    let ids = vec![mid("slow", 0)];
    let buyers = vec![buyer("slow", 0)];
    // ~1.3 MB at 16 KiB per 50 ms (~330 KB/s): about 4 s, twice the timeout.
    let photo = "QUJDRA==".repeat(125_000);
    let big = photo_mail(&buyers[0], &ids[0], &photo);
    rig.send(&buyers[0], &[SUPPORT], &big).unwrap();
    wait_delivered(&rig, 1);
    p.delay(Duration::from_millis(50));
    let mut run = Run::start(&s.config);
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert!(
        !run.log().contains("timed out"),
        "cut off by the timeout; log:\n{}",
        run.log()
    );
    p.delay(Duration::ZERO);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// The 48 hours start when the mail server received the mail (its
/// INTERNALDATE), not when ticketd files it: mail that waited out an
/// outage is promised an answer 48 hours after it came. Mail older than
/// that (a mailbox imported for the first time) counts from now, so no ack
/// names a due time already past.
#[test]
fn the_response_clock_starts_when_the_server_received_the_mail() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let s = env(&rig, rig.imap_port(), "");
    let cases = [
        ("recent", chrono::Duration::hours(5)),
        ("old", chrono::Duration::days(10)),
    ];
    for (i, (name, ago)) in cases.iter().enumerate() {
        let id = mid("clock", i);
        let mail = buyer_mail(
            &buyer("clock", i),
            "Buyer",
            &format!("Order question ({name})"),
            &id,
            "Hello, my order has not arrived yet.",
            "",
        );
        append_received_ago(&rig, &mail, *ago);
    }
    let polled = chrono::Utc::now();
    let out = ticketd(&s.config, &["poll", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let due = |ticket: &str| {
        let show = ticketd(&s.config, &["show", ticket, "--json"]);
        assert!(show.status.success());
        let view: Value = serde_json::from_slice(&show.stdout).unwrap();
        view["due_at"].as_i64().unwrap()
    };
    let hours_48 = 48 * 3600;
    let recent = (polled - cases[0].1).timestamp() + hours_48;
    assert!(
        (due("WN-000001") - recent).abs() <= 2,
        "due {} against received + 48 h {recent}",
        due("WN-000001")
    );
    let from_now = polled.timestamp() + hours_48;
    let old = due("WN-000002");
    assert!(
        (from_now - 2..=from_now + 120).contains(&old),
        "due {old} against now + 48 h {from_now}"
    );
}

/// One buyer's question per entry of `ago`, put into the support mailbox
/// as received by the server that long ago (buyer and Message-ID from
/// `test` and the index).
fn append_questions_received_ago(rig: &MailRig, test: &str, ago: &[chrono::Duration]) {
    for (i, ago) in ago.iter().enumerate() {
        let mail = buyer_mail(
            &buyer(test, i),
            "Buyer",
            &format!("Order question {i}"),
            &mid(test, i),
            "Hello, my order has not arrived yet.",
            "",
        );
        append_received_ago(rig, &mail, *ago);
    }
}

/// `poll --once` with `args`, which must succeed; then every stored
/// message's export record, by Message-ID.
fn poll_and_export(s: &Env, args: &[&str]) -> Vec<Value> {
    let out = ticketd(&s.config, &[&["poll", "--once"][..], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut records = export(&s.config);
    records.sort_by_key(|r| r["message_id"].as_str().unwrap_or("").to_string());
    records
}

/// A mailbox watched for the first time holds mail answered long ago (by
/// hand, or by the desk before): filing it must not send every buyer who
/// ever wrote a "we received your message" now. Mail the server received
/// more than `tickets.ack_max_age_days` (7) before it is filed gets its
/// ticket and no ack, with the reason recorded; newer mail is answered.
/// 0 turns the rule off.
#[test]
fn mail_received_long_before_it_is_filed_gets_no_ack() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let cases = [
        chrono::Duration::hours(5),
        chrono::Duration::days(3),
        chrono::Duration::days(40),
    ];
    append_questions_received_ago(&rig, "aged", &cases);
    let acks = |s: &Env| -> Vec<Value> {
        let records = poll_and_export(s, &[]);
        assert_eq!(records.len(), 3, "every mail filed: {records:?}");
        assert!(
            records.iter().all(|r| r["ticket"].is_string()),
            "{records:?}"
        );
        records.iter().map(|r| r["ack"].clone()).collect()
    };

    let s = env(&rig, rig.imap_port(), "");
    let got = acks(&s);
    assert!(got[0]["message_id"].is_string(), "5 hours old: {}", got[0]);
    assert!(got[1]["message_id"].is_string(), "3 days old: {}", got[1]);
    let skipped = got[2]["skipped"].as_str().unwrap_or_default();
    assert!(
        skipped.contains("received") && skipped.contains("ack_max_age_days"),
        "40 days old: {}",
        got[2]
    );
    rig.wait_for_mail(&buyer("aged", 1), 1, WAIT).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rig.maildir_count(&buyer("aged", 2)),
        0,
        "the old mail's buyer got an ack"
    );

    // Off: a fresh store over the same mailbox answers all three.
    let off = env(&rig, rig.imap_port(), "");
    let mut text = fs::read_to_string(&off.config).unwrap();
    text.push_str("ack_max_age_days = 0\n");
    fs::write(&off.config, text).unwrap();
    let got = acks(&off);
    assert!(got.iter().all(|a| a["message_id"].is_string()), "{got:?}");
}

/// After a restore from a backup (or a move from another helpdesk) the
/// mailbox holds mail that was answered before; `poll --acked-before
/// TIME` files it without acknowledging what the server received before
/// TIME, and answers what came after.
#[test]
fn poll_acked_before_files_answered_mail_without_a_second_ack() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let ago = [chrono::Duration::hours(3), chrono::Duration::minutes(30)];
    append_questions_received_ago(&rig, "restored", &ago);
    let s = env(&rig, rig.imap_port(), "");
    let cut = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let records = poll_and_export(&s, &["--acked-before", &cut]);
    assert_eq!(records.len(), 2, "{records:?}");
    let skipped = records[0]["ack"]["skipped"].as_str().unwrap_or_default();
    assert!(skipped.contains("--acked-before"), "{}", records[0]["ack"]);
    assert!(
        records[1]["ack"]["message_id"].is_string(),
        "{}",
        records[1]["ack"]
    );
    assert!(ticketd(
        &s.config,
        &["poll", "--once", "--acked-before", "yesterday"]
    )
    .status
    .code()
    .is_some_and(|c| c != 0));
}

/// The connection stalls while the daemon idles: the server's EXISTS never
/// arrives. IDLE is renewed at the keepalive (a third of the systemd
/// watchdog period, here 6 s / 3), the DONE times out after
/// `imap.timeout`, and the daemon reconnects and files the mail.
#[test]
fn connection_stalled_while_idle_is_noticed_at_the_keepalive() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(&rig, p.port(), "timeout = 5");
    let mut run = Run::start_with_watchdog(&s.config, Duration::from_secs(6));
    let ids = vec![mid("idle", 0), mid("idle", 1)];
    let buyers = vec![buyer("idle", 0), buyer("idle", 1)];

    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);

    p.stall(true);
    let stalled = Instant::now();
    send_buyer(&rig, &buyers[1], &ids[1]);
    rig.wait_for_mail(SUPPORT, 2, WAIT).unwrap();
    run.wait_log("timed out", 1, Duration::from_secs(30));
    eprintln!("stall noticed {:?} after it began", stalled.elapsed());
    assert_eq!(export(&s.config).len(), 1);
    p.stall(false);

    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

// ---------------------------------------------------------------------------
// SMTP down, database locked, disk full

#[test]
fn smtp_down_while_acks_queue_then_each_ack_arrives_once() {
    let _serial = serial();
    let mut rig = MailRig::start().unwrap();
    let s = env(&rig, rig.imap_port(), "");
    let ids: Vec<String> = (0..3).map(|i| mid("smtp", i)).collect();
    let buyers: Vec<String> = (0..3).map(|i| buyer("smtp", i)).collect();
    for i in 0..3 {
        send_buyer(&rig, &buyers[i], &ids[i]);
    }
    rig.wait_for_mail(SUPPORT, 3, WAIT).unwrap();

    // The mail is in the mailbox; Postfix goes down before ticketd starts,
    // so every ack has to wait in the outbox.
    rig.stop_postfix();
    let mut run = Run::start(&s.config);
    wait_for("all three filed", WAIT, &run, || {
        (export(&s.config).len() == 3).then_some(())
    });
    // First attempt fails at once, the next after 5 s: two failed attempts
    // each, and nothing marked sent.
    let outbox = wait_for("two failed attempts per ack", WAIT, &run, || {
        let out = ticketd(&s.config, &["outbox", "--json"]);
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        (rows.len() == 3 && rows.iter().all(|r| r["attempts"].as_i64() >= Some(2))).then_some(rows)
    });
    for r in &outbox {
        assert_eq!(r["status"], "queued", "{r}");
        assert!(r["last_error"].is_string(), "{r}");
    }
    assert!(
        run.log().contains("cannot reach the SMTP server"),
        "{}",
        run.log()
    );

    rig.start_postfix().unwrap();
    // The next attempt is due 10 s after the second.
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// Another process holds the SQLite write lock for longer than the busy
/// timeout (10 s) while mail arrives. The commit fails, the message is not
/// skipped: once the lock is gone it is filed, once.
#[test]
fn database_locked_during_a_commit_the_message_is_retried_not_skipped() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let s = env(&rig, rig.imap_port(), "");
    let mut run = Run::start(&s.config);
    let ids: Vec<String> = (0..3).map(|i| mid("locked", i)).collect();
    let buyers: Vec<String> = (0..3).map(|i| buyer("locked", i)).collect();
    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);

    let db = rusqlite::Connection::open(s.dir.path().join("data/ticketd.sqlite3")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Instant::now();
    send_buyer(&rig, &buyers[1], &ids[1]);
    send_buyer(&rig, &buyers[2], &ids[2]);
    rig.wait_for_mail(SUPPORT, 3, WAIT).unwrap();
    // The commit gives up (after the busy timeout, or at once: see the
    // next test) and says why; the lock is held past the busy timeout.
    run.wait_log("database is locked", 1, Duration::from_secs(30));
    eprintln!("lock error logged {:?} after locking", locked.elapsed());
    std::thread::sleep(BUSY_TIMEOUT.saturating_sub(locked.elapsed()) + Duration::from_secs(2));
    assert!(run.running());
    let (filed, uid): (i64, Option<i64>) = db
        .query_row(
            "SELECT (SELECT count(*) FROM messages WHERE direction = 'in'),
                    (SELECT max(last_uid) FROM mailbox_positions)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((filed, uid), (1, Some(1)), "nothing may move while locked");
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);

    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// The store's busy timeout (`Store::open`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A write lock shorter than the busy timeout (an operator's `ticketd
/// close`, a backup, the web page) only delays the commit: no error, no
/// reconnect. SQLite calls the busy handler only when a transaction starts
/// as a writer (BEGIN IMMEDIATE); a deferred transaction that has already
/// read gets SQLITE_BUSY at once when it tries to write.
#[test]
fn a_write_lock_shorter_than_the_busy_timeout_only_delays_the_commit() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let s = env(&rig, rig.imap_port(), "");
    let mut run = Run::start(&s.config);
    let ids: Vec<String> = (0..2).map(|i| mid("brief", i)).collect();
    let buyers: Vec<String> = (0..2).map(|i| buyer("brief", i)).collect();
    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);

    let db = rusqlite::Connection::open(s.dir.path().join("data/ticketd.sqlite3")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    send_buyer(&rig, &buyers[1], &ids[1]);
    rig.wait_for_mail(SUPPORT, 2, WAIT).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    let released = Instant::now();

    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    eprintln!("filed {:?} after the lock was released", released.elapsed());
    let log = run.log();
    assert!(
        !log.contains("database is locked"),
        "a 3 s lock made the commit fail although the busy timeout is 10 s:\n{log}"
    );
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// A tmpfs mounted on a fresh temporary directory; unmounted (and the
/// directory removed) on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the disk-full test needs root and CAP_SYS_ADMIN): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { path, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = fs::File::create(path).unwrap();
    for chunk in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
        let block = vec![0x5au8; chunk];
        while f.write_all(&block).is_ok() {}
    }
    let _ = f.sync_all();
}

/// The data directory's file system is full when mail arrives: the daemon
/// logs the error and does not move past the message; once there is space
/// the message is filed, once.
#[test]
fn disk_full_then_freed_the_message_is_filed_once() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let tmpfs = Tmpfs::mount("16m");
    let data = tmpfs.path.join("data");
    let s = env_in(
        tempfile::tempdir().unwrap(),
        &rig,
        rig.imap_port(),
        "",
        &data,
        &templates_dir(),
    );
    let mut run = Run::start(&s.config);
    let ids: Vec<String> = (0..2).map(|i| mid("full", i)).collect();
    let buyers: Vec<String> = (0..2).map(|i| buyer("full", i)).collect();
    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);

    let filler = tmpfs.path.join("filler");
    fill(&filler);
    send_buyer(&rig, &buyers[1], &ids[1]);
    rig.wait_for_mail(SUPPORT, 2, WAIT).unwrap();
    // Logged, retried (a second time), and still not past the message. A
    // small mail fails in SQLite ("database or disk is full"), a large
    // one's blob file with ENOSPC.
    let full = |l: &str| l.contains("No space left on device") || l.contains("disk is full");
    wait_for("the full disk logged twice", WAIT, &run, || {
        (run.log().lines().filter(|l| full(l)).count() >= 2).then_some(())
    });
    let log = run.log();
    eprintln!("{}", log.lines().find(|l| full(l)).unwrap());
    assert!(run.running());
    // Straight from the file, read-only: one message, position at UID 1.
    let db = rusqlite::Connection::open_with_flags(
        data.join("ticketd.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (filed, uid): (i64, Option<i64>) = db
        .query_row(
            "SELECT (SELECT count(*) FROM messages WHERE direction = 'in'),
                    (SELECT max(last_uid) FROM mailbox_positions)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    drop(db);
    assert_eq!((filed, uid), (1, Some(1)), "moved past the message");
    // An operator can still read the tickets while the disk is full
    // (checked at the end, so the rest of the test runs either way).
    let read_while_full: Vec<String> = [
        &["export", "--jsonl"][..],
        &["stats", "--json"][..],
        &["list"][..],
    ]
    .iter()
    .filter_map(|args| {
        let out = ticketd(&s.config, args);
        (!out.status.success()).then(|| {
            format!(
                "`ticketd {}` failed on a full disk: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
    })
    .collect();

    fs::remove_file(&filler).unwrap();
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
    drop(run);
    drop(tmpfs);
    assert!(read_while_full.is_empty(), "{}", read_while_full.join("\n"));
}

// ---------------------------------------------------------------------------
// Two mailboxes, SIGHUP

#[test]
fn two_mailboxes_are_watched_together() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let s = env(
        &rig,
        rig.imap_port(),
        "\n[[imap.mailboxes]]\nname = \"INBOX\"\n\n[[imap.mailboxes]]\nname = \"Klantenservice\"\n",
    );
    support_session(&s.config, async |session| {
        session.create("Klantenservice").await.unwrap();
    });
    let ids: Vec<String> = (0..4).map(|i| mid("two", i)).collect();
    let buyers: Vec<String> = (0..4).map(|i| buyer("two", i)).collect();
    let append = |i: usize| {
        append_dutch(
            &s,
            &buyers[i],
            &ids[i],
            "Hallo, waar is mijn pakket? Het is nog niet aangekomen.\r\nGroeten",
        )
    };
    // One in each before start, one in each while running.
    send_buyer(&rig, &buyers[0], &ids[0]);
    append(1);
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();
    let mut run = Run::start(&s.config);
    wait_filed_and_acked(&rig, &s, &run, &ids[..2], &buyers[..2]);
    send_buyer(&rig, &buyers[2], &ids[2]);
    append(3);
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);

    let stats = ticketd(&s.config, &["stats", "--json"]);
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    let mut positions: Vec<(String, i64)> = stats["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mailbox"].as_str().unwrap().to_string(),
                m["last_uid"].as_i64().unwrap(),
            )
        })
        .collect();
    positions.sort();
    assert_eq!(
        positions,
        vec![("INBOX".to_string(), 2), ("Klantenservice".to_string(), 2)]
    );
    finish(&mut run);
}

/// One mailbox's server slow to send a mail (the proxy holds back its
/// body's FETCH for 8 s) holds up no other mailbox: each is watched by a
/// task of its own, so INBOX's mail is filed as it comes, while the other
/// watcher waits for its bytes. (With both watchers in one task, INBOX's
/// mail waited until the held FETCH was read, or longer.)
#[test]
fn a_mailbox_slow_to_send_holds_up_no_other_mailbox() {
    const HOLD: Duration = Duration::from_secs(8);
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let p = Proxy::start(rig.imap_port());
    let s = env(
        &rig,
        p.port(),
        "\n[[imap.mailboxes]]\nname = \"INBOX\"\n\n[[imap.mailboxes]]\nname = \"Klantenservice\"\n",
    );
    support_session(&s.config, async |session| {
        session.create("Klantenservice").await.unwrap();
    });
    let ids: Vec<String> = (0..4).map(|i| mid("held", i)).collect();
    let buyers: Vec<String> = (0..4).map(|i| buyer("held", i)).collect();
    let append = |i: usize, text: &str| append_dutch(&s, &buyers[i], &ids[i], text);
    // One mail in each before the start: both watchers have synced and
    // are waiting in IDLE once both are filed.
    send_buyer(&rig, &buyers[0], &ids[0]);
    append(1, "Hallo, waar is mijn pakket?\r\nGroeten");
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();
    let mut run = Run::start(&s.config);
    wait_filed_and_acked(&rig, &s, &run, &ids[..2], &buyers[..2]);

    p.hold("HOLD-THIS-BODY", HOLD);
    append(
        2,
        "Hallo, waar is mijn pakket?\r\nHOLD-THIS-BODY\r\nGroeten",
    );
    wait_for("the held FETCH", WAIT, &run, || {
        (p.held() == 1).then_some(())
    });
    let held = Instant::now();
    send_buyer(&rig, &buyers[3], &ids[3]);
    wait_for("INBOX's mail filed", WAIT, &run, || {
        filed(&s).contains(&ids[3]).then_some(())
    });
    let took = held.elapsed();
    eprintln!("INBOX's mail filed {took:?} into the other mailbox's hold");
    assert!(
        took < HOLD - Duration::from_secs(3),
        "INBOX's mail waited {took:?} for the other mailbox's held FETCH; log:\n{}",
        run.log()
    );
    assert!(
        !filed(&s).contains(&ids[2]),
        "the held mail was filed before its bytes came"
    );
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// A Dutch buyer's mail with `text`, put straight into the support
/// account's second mailbox, Klantenservice (IMAP APPEND).
fn append_dutch(s: &Env, buyer: &str, message_id: &str, text: &str) {
    let mail = buyer_mail(
        buyer,
        "Koper",
        "Vraag over mijn bestelling",
        message_id,
        text,
        "",
    );
    support_session(&s.config, async |session| {
        session
            .append("Klantenservice", None, None, &mail)
            .await
            .unwrap();
    });
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn ack_text(rig: &MailRig, buyer: &str) -> String {
    let msgs = rig.maildir_messages(buyer);
    assert_eq!(msgs.len(), 1, "{buyer} should have one ack");
    parse(&msgs[0]).text
}

#[test]
fn sighup_reloads_templates_and_keeps_the_last_good_ones_on_error() {
    let _serial = serial();
    let rig = MailRig::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    copy_dir(&templates_dir(), &templates);
    let data = dir.path().join("data");
    let s = env_in(dir, &rig, rig.imap_port(), "", &data, &templates);
    let mut run = Run::start(&s.config);
    let ids: Vec<String> = (0..3).map(|i| mid("hup", i)).collect();
    let buyers: Vec<String> = (0..3).map(|i| buyer("hup", i)).collect();

    send_buyer(&rig, &buyers[0], &ids[0]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..1], &buyers[..1]);
    assert!(!ack_text(&rig, &buyers[0]).contains("EDITED-1"));

    // An edit, then SIGHUP: the next ack uses it.
    let ack_txt = templates.join("en/ack.txt");
    let good = fs::read_to_string(&ack_txt).unwrap();
    fs::write(&ack_txt, format!("EDITED-1 {good}")).unwrap();
    run.signal("HUP");
    run.wait_log("configuration and templates reloaded", 1, WAIT);
    send_buyer(&rig, &buyers[1], &ids[1]);
    wait_filed_and_acked(&rig, &s, &run, &ids[..2], &buyers[..2]);
    let second = ack_text(&rig, &buyers[1]);
    assert!(second.contains("EDITED-1 "), "{second}");

    // A broken edit (line 3), then SIGHUP: logged with file and line, the
    // daemon keeps running with the last good templates.
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(2, "EDITED-2 {% if %}");
    fs::write(&ack_txt, lines.join("\n")).unwrap();
    run.signal("HUP");
    run.wait_log("reload failed", 1, WAIT);
    let log = run.log();
    let failed = &log[log.find("reload failed").unwrap()..];
    eprintln!("{}", failed.lines().next().unwrap());
    assert!(failed.contains("ack.txt"), "{failed}");
    assert!(failed.contains("line 3"), "{failed}");
    assert!(run.running());
    send_buyer(&rig, &buyers[2], &ids[2]);
    wait_filed_and_acked(&rig, &s, &run, &ids, &buyers);
    let third = ack_text(&rig, &buyers[2]);
    assert!(third.contains("EDITED-1 "), "{third}");
    assert!(!third.contains("EDITED-2"), "{third}");
    assert_exactly_once(&rig, &s, &run, &ids, &buyers);
    finish(&mut run);
}

/// A first start on a mailbox with a backlog (here two batches): READY,
/// a watchdog ping and the outbox's wake-up come as each batch is
/// committed, not only once the whole backlog is filed. A backlog of tens
/// of thousands of mails otherwise outlasts TimeoutStartSec (systemd kills
/// the start, over and over) or, later, WatchdogSec; and no ack went out
/// until the last batch was in.
#[test]
fn ready_and_watchdog_pings_come_while_a_backlog_is_filed() {
    let rig = MailRig::start().unwrap();
    let n = 260;
    for i in 0..n {
        let from = format!("backlog{i}@buyer.test");
        let mail = buyer_mail(
            &from,
            "Koper",
            &format!("Vraag {i}"),
            &format!("backlog{i}@buyer.test"),
            "Waar blijft mijn pakket?",
            "",
        );
        rig.send(&from, &[SUPPORT], &mail).unwrap();
    }
    rig.wait_for_mail(SUPPORT, n, WAIT).unwrap();
    let s = env(&rig, rig.imap_port(), "");
    let socket_path = s.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let run = Run::spawn(&s.config, Some(Duration::from_secs(60)), Some(&socket_path));
    run.wait_log("mailbox synced", 1, WAIT);
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(len) = socket.recv(&mut buf) {
        said.push(String::from_utf8_lossy(&buf[..len]).replace('\n', " "));
    }
    let ready = said
        .iter()
        .find(|m| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY: {said:?}"));
    assert!(
        ready.contains("STATUS=filing"),
        "READY came only after the backlog: {said:?}"
    );
    let pings_while_filing = said
        .iter()
        .filter(|m| m.contains("WATCHDOG=1") && m.contains("STATUS=filing"))
        .count();
    assert!(pings_while_filing >= 2, "{said:?}");
}

/// The mail server away at start, or refusing the login: the service is
/// up all the same (READY, with the reason as its status) and keeps
/// trying, instead of failing its start, which systemd would repeat every
/// few seconds, for ever. A refused login is tried again only minutes
/// later: a wrong password retried every few seconds gets the mailbox
/// locked at Google or Microsoft.
#[test]
fn a_mail_server_away_at_start_leaves_the_service_up_and_trying() {
    let rig = MailRig::start().unwrap();
    let nobody_there = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let readiness = |s: &Env, name: &str| -> (Run, Vec<String>, std::os::unix::net::UnixDatagram) {
        let socket_path = s.dir.path().join(name);
        let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // WatchdogSec=3: pings due every second.
        let run = Run::spawn(&s.config, Some(Duration::from_secs(3)), Some(&socket_path));
        let mut said = Vec::new();
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10)
            && !said.iter().any(|m: &String| m.contains("READY=1"))
        {
            if let Ok(len) = socket.recv(&mut buf) {
                said.push(String::from_utf8_lossy(&buf[..len]).replace('\n', " "));
            }
        }
        (run, said, socket)
    };

    let s = env(&rig, nobody_there, "");
    let (mut run, said, _socket) = readiness(&s, "notify-down.sock");
    let ready = said
        .iter()
        .find(|m| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY while the server is away: {said:?}"));
    assert!(
        ready.contains("STATUS=") && ready.contains("retrying in"),
        "{said:?}"
    );
    run.wait_log("IMAP connection failed", 2, WAIT);
    finish(&mut run);

    // The real Dovecot, the wrong password.
    let s = env(&rig, rig.imap_port(), "");
    fs::write(s.dir.path().join("password"), "not-the-password\n").unwrap();
    let (mut run, said, socket) = readiness(&s, "notify-refused.sock");
    assert!(
        said.iter()
            .any(|m| m.contains("READY=1") && m.contains("refused")),
        "{said:?}"
    );
    // Minutes of waiting, and the watchdog hears from it all along.
    let mut pings = 0;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        if let Ok(len) = socket.recv(&mut buf) {
            pings += usize::from(String::from_utf8_lossy(&buf[..len]).contains("WATCHDOG=1"));
        }
    }
    assert!(
        pings >= 2,
        "{pings} watchdog pings in 3.5 s of a 3 s watchdog"
    );
    run.wait_log("IMAP login refused", 1, WAIT);
    let log = run.log();
    let wait: f64 = log
        .split("retry_in=")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("no retry_in: {log}"));
    assert!(
        wait >= 300.0,
        "a refused login retried after {wait} s:\n{log}"
    );
    finish(&mut run);
}

/// A wrong SMTP password: the outbox logs in once, then waits minutes
/// before the next try, however many acks are queued meanwhile. Trying
/// at every new ack (a busy desk files one a minute) is a run of failed
/// logins that gets the account locked.
#[test]
fn a_refused_smtp_login_is_not_tried_again_at_every_new_ack() {
    let rig = MailRig::start().unwrap();
    let s = env(&rig, rig.imap_port(), "");
    let pw = s.dir.path().join("smtp-password");
    fs::write(&pw, "not-the-smtp-password\n").unwrap();
    let text = fs::read_to_string(&s.config).unwrap();
    let plain = format!("port = {}\ntls = \"none\"\n", rig.smtp_port());
    assert!(text.contains(&plain), "{text}");
    let text = text.replace(
        &plain,
        &format!(
            "port = {}\ntls = \"implicit\"\nca_file = \"{}\"\nusername = \"{SUPPORT}\"\n\
             password_file = \"{}\"\n",
            rig.smtps_port(),
            rig.ca_file().display(),
            pw.display()
        ),
    );
    fs::write(&s.config, text).unwrap();
    let mut run = Run::spawn(&s.config, None, None);
    for i in 1..=3 {
        let from = format!("refused{i}@buyer.test");
        let mail = buyer_mail(
            &from,
            "Koper",
            &format!("Vraag {i}"),
            &format!("refused{i}@buyer.test"),
            "Waar blijft mijn pakket?",
            "",
        );
        rig.send(&from, &[SUPPORT], &mail).unwrap();
        run.wait_log("filed message_id=", i, WAIT);
        // Time for the outbox to take each new ack in hand.
        std::thread::sleep(Duration::from_millis(700));
    }
    run.wait_log("SMTP login refused", 1, WAIT);
    let log = run.log();
    assert_eq!(
        log.matches("refused: ").count(),
        1,
        "one login for three acks:\n{log}"
    );
    finish(&mut run);
}

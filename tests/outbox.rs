//! The outbox sender (`smtp::deliver_due`) against the rig's real Postfix:
//! each acknowledgement reaches its buyer once, whoever sends and whatever
//! goes wrong around the send. A scripted SMTP listener on loopback stands
//! in for Postfix only where the fault cannot be made with the real one (a
//! server that stops answering after DATA).
//!
//! Needs root, like every rig test.

mod common;
mod proxy;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    buyer_mail, settled_counts, setup, store_config, ticketd, wait_until, Daemon, Imap, Setup,
};
use proxy::Proxy;
use ticketd::config::Config;
use ticketd::daemon::{shutdown_channel, Shutdown};
use ticketd::ingest::{Ingestor, Outcome};
use ticketd::rig::MailRig;
use ticketd::smtp::{self, DeliveryStats};
use ticketd::store::Store;

/// Long enough for a wrongly repeated ack to arrive through Postfix.
const QUIET: Duration = Duration::from_secs(2);

/// A desk on the rig: its config (SMTP to the rig's Postfix) and store.
struct Desk {
    s: Setup,
    config: Config,
}

fn desk(rig: &MailRig) -> Desk {
    let s = setup(rig, Imap::Plain, None);
    let config = Config::load(&s.config).unwrap();
    Desk { s, config }
}

/// A desk for tests against a scripted server only: no rig.
fn desk_without_servers() -> Desk {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let s = Setup {
        config: dir.path().join("ticketd.toml"),
        dir,
    };
    Desk { s, config }
}

impl Desk {
    fn store(&self) -> Store {
        Store::open(&self.config.data_dir).unwrap()
    }

    fn transport(&self) -> smtp::Transport {
        smtp::transport(self.config.smtp.as_ref().unwrap()).unwrap()
    }

    /// A transport to another SMTP port on loopback (a proxy, a script).
    fn transport_to(&self, port: u16) -> smtp::Transport {
        let mut cfg = self.config.smtp.clone().unwrap();
        cfg.port = port;
        smtp::transport(&cfg).unwrap()
    }

    /// Files a mail from each buyer straight into the store, as `ingest`
    /// does, so each has an acknowledgement queued.
    fn queue_acks(&self, buyers: &[String]) {
        let templates =
            ticketd::ack::AckTemplates::load(&self.config.tickets.templates_dir).unwrap();
        let ingestor = Ingestor {
            config: &self.config,
            templates: &templates,
        };
        let mut store = self.store();
        for (i, b) in buyers.iter().enumerate() {
            let raw = mail(b, i);
            let outcome = ingestor
                .ingest(&mut store, &raw, None, chrono::Utc::now())
                .unwrap();
            assert!(
                matches!(
                    outcome,
                    Outcome::Filed {
                        ack_queued: true,
                        ..
                    }
                ),
                "{outcome:?}"
            );
        }
    }

    /// Makes the store refuse to mark outbox items sent, as a full disk or
    /// a write lock held past the busy timeout would, until `allow_marking`.
    fn refuse_marking(&self) {
        self.store()
            .conn()
            .execute_batch(
                "CREATE TRIGGER test_refuse_marking BEFORE UPDATE OF status ON outbox
                 WHEN NEW.status = 'sent' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
            )
            .unwrap();
    }

    /// Every queued item after 30 attempts, one refusal short of being
    /// given up.
    fn one_refusal_short_of_giving_up(&self) {
        self.store()
            .conn()
            .execute(
                "UPDATE outbox SET attempts = 30, failures = ?1 - 1",
                [smtp::MAX_ATTEMPTS],
            )
            .unwrap();
    }

    fn allow_marking(&self) {
        self.store()
            .conn()
            .execute_batch("DROP TRIGGER test_refuse_marking")
            .unwrap();
    }

    /// (status, attempts, failures) of every outbox row, by id.
    fn outbox(&self) -> Vec<(String, i64, i64)> {
        let store = self.store();
        let mut stmt = store
            .conn()
            .prepare("SELECT status, attempts, failures FROM outbox ORDER BY id")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }
}

/// A scripted SMTP server on loopback, for what Postfix cannot be made to
/// do: after a message's final dot it never answers again (`hang`), or
/// answers 250 only after `slow` and then never answers QUIT (`slow_then_
/// deaf_to_quit`), or answers MAIL FROM with 421 (`busy`). Connections
/// stay open until the client closes them. Counts the messages it got
/// whole.
struct Scripted {
    port: u16,
    got: Arc<AtomicUsize>,
}

#[derive(Clone, Copy)]
enum Script {
    Hang,
    SlowThenDeafToQuit(Duration),
    Busy,
}

impl Scripted {
    fn hang() -> Scripted {
        Self::start(Script::Hang)
    }

    fn slow_then_deaf_to_quit(slow: Duration) -> Scripted {
        Self::start(Script::SlowThenDeafToQuit(slow))
    }

    fn busy() -> Scripted {
        Self::start(Script::Busy)
    }

    fn start(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(AtomicUsize::new(0));
        let count = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let count = count.clone();
                std::thread::spawn(move || {
                    let _ = Self::serve(conn, &count, script);
                });
            }
        });
        Scripted { port, got }
    }

    fn got(&self) -> usize {
        self.got.load(Ordering::SeqCst)
    }

    fn serve(conn: TcpStream, got: &AtomicUsize, script: Script) -> std::io::Result<()> {
        let mut w = conn.try_clone()?;
        let mut r = BufReader::new(conn);
        // No answer, ever: read (and drop) until the client goes.
        let deaf = |r: &mut BufReader<TcpStream>, line: &mut Vec<u8>| -> std::io::Result<()> {
            while r.read_until(b'\n', line)? > 0 {}
            Ok(())
        };
        w.write_all(b"220 scripted.localhost ESMTP\r\n")?;
        let mut line = Vec::new();
        let mut in_data = false;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if in_data {
                if line == b".\r\n" {
                    got.fetch_add(1, Ordering::SeqCst);
                    let Script::SlowThenDeafToQuit(after) = script else {
                        return deaf(&mut r, &mut line);
                    };
                    std::thread::sleep(after);
                    w.write_all(b"250 2.0.0 queued\r\n")?;
                    in_data = false;
                }
                continue;
            }
            let cmd = String::from_utf8_lossy(&line).to_ascii_uppercase();
            if cmd.starts_with("EHLO") {
                w.write_all(b"250-scripted.localhost\r\n250 8BITMIME\r\n")?;
            } else if cmd.starts_with("DATA") {
                in_data = true;
                w.write_all(b"354 go ahead\r\n")?;
            } else if cmd.starts_with("MAIL") && matches!(script, Script::Busy) {
                w.write_all(b"421 4.3.2 scripted.localhost busy, try again later\r\n")?;
            } else if cmd.starts_with("QUIT") {
                return deaf(&mut r, &mut line);
            } else {
                w.write_all(b"250 ok\r\n")?;
            }
        }
    }
}

fn mail(buyer: &str, i: usize) -> Vec<u8> {
    buyer_mail(
        buyer,
        "Koper",
        &format!("Pakket {i} niet ontvangen"),
        &format!("{}@buyer.test", buyer.replace('@', ".")),
        "Mijn pakket is nog niet aangekomen.",
        "",
    )
}

fn buyers(test: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{test}{i}@buyer.test")).collect()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Sends the desk's outbox through `port`, asking for shutdown `after`
/// the start; what deliver_due returned and how long it took.
fn deliver_stopped_after(
    d: &Desk,
    port: u16,
    after: Duration,
) -> (Result<smtp::DeliveryStats, smtp::SmtpError>, Duration) {
    let mut store = d.store();
    let t = d.transport_to(port);
    let (trigger, stop) = shutdown_channel();
    let started = Instant::now();
    let r = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(after);
            trigger.trigger();
        });
        block_on(smtp::deliver_due(&mut store, &t, &stop))
    });
    (r, started.elapsed())
}

fn all(status: &str, rows: &[(String, i64, i64)]) -> bool {
    rows.iter().all(|(s, _, _)| s == status)
}

/// `run`'s sender and a `poll` (or `reply --send`) at the same moment: the
/// second finds the outbox taken and leaves it to the first.
#[test]
fn two_senders_at_once_send_each_ack_once() {
    let rig = MailRig::start().unwrap();
    let d = desk(&rig);
    let buyers = buyers("twice", 3);
    d.queue_acks(&buyers);
    let (mut a, mut b) = (d.store(), d.store());
    let t = d.transport();
    let never = Shutdown::never();
    let (ra, rb) = block_on(async {
        tokio::join!(
            smtp::deliver_due(&mut a, &t, &never),
            smtp::deliver_due(&mut b, &t, &never)
        )
    });
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let stats = [ra, rb];
    assert_eq!(stats.iter().filter(|s| s.elsewhere).count(), 1, "{stats:?}");
    assert!(stats.contains(&DeliveryStats {
        sent: 3,
        failed: 0,
        elsewhere: false,
        login_refused: false,
    }));
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![1, 1, 1]);
    assert!(all("sent", &d.outbox()), "{:?}", d.outbox());
}

/// `ingest --send` and `poll` while another process sends the outbox:
/// they say so and send nothing; the holder sends it.
#[test]
fn send_commands_leave_the_outbox_to_the_process_sending_it() {
    let rig = MailRig::start().unwrap();
    let d = desk(&rig);
    let buyers = buyers("held", 1);
    let file = d.s.dir.path().join("mail.eml");
    std::fs::write(&file, mail(&buyers[0], 0)).unwrap();
    let mut holder = d.store();
    let lock = holder.try_lock_outbox().unwrap().expect("outbox free");

    let out = ticketd(&d.s.config, &["ingest", "--send", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("another ticketd"), "{stdout}");
    let out = ticketd(&d.s.config, &["poll", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("another ticketd"), "{stderr}");
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![0]);
    assert_eq!(d.outbox(), vec![("queued".to_string(), 0, 0)]);

    drop(lock);
    let stats = block_on(smtp::deliver_due(
        &mut holder,
        &d.transport(),
        &Shutdown::never(),
    ))
    .unwrap();
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![1]);
}

/// The server took the ack (250) but the store would not mark it sent for
/// a moment: the mark is tried again, the ack is not sent again.
#[test]
fn a_sent_ack_the_store_cannot_mark_at_once_is_marked_later_not_resent() {
    let rig = MailRig::start().unwrap();
    let d = desk(&rig);
    let buyers = buyers("markretry", 1);
    d.queue_acks(&buyers);
    d.refuse_marking();
    let mut store = d.store();
    let t = d.transport();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            d.allow_marking();
        });
        // As the outbox worker does: a round, and another.
        for _ in 0..2 {
            let r = block_on(smtp::deliver_due(&mut store, &t, &Shutdown::never()));
            eprintln!("{r:?}");
        }
    });
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![1]);
    assert_eq!(d.outbox(), vec![("sent".to_string(), 1, 0)]);
}

/// The store refuses for longer than the retries last: the ack is
/// remembered and not sent again by this process, nothing new is sent
/// while the store refuses, and the mark is made once it takes writes.
#[test]
fn a_sent_ack_the_store_will_not_mark_is_never_resent_by_this_process() {
    let rig = MailRig::start().unwrap();
    let d = desk(&rig);
    let buyers = buyers("nomark", 2);
    d.queue_acks(&buyers[..1]);
    d.refuse_marking();
    let mut store = d.store();
    let t = d.transport();
    let started = std::time::Instant::now();
    let r = block_on(smtp::deliver_due(&mut store, &t, &Shutdown::never()));
    assert!(r.is_err(), "{r:?}");
    let retried = started.elapsed();
    // Another process (`ingest --send`, `poll`) must not send it either:
    // this one keeps the outbox lock while it holds sent items unmarked.
    let again = d.s.dir.path().join("again.eml");
    std::fs::write(&again, mail(&buyers[0], 0)).unwrap();
    let out = common::ticketd(&d.s.config, &["ingest", "--send", again.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("duplicate")
            || String::from_utf8_lossy(&out.stderr).contains("duplicate"),
        "{out:?}"
    );
    d.queue_acks(&buyers[1..]);
    let r = block_on(smtp::deliver_due(&mut store, &t, &Shutdown::never()));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![1, 0]);
    assert!(
        retried > Duration::from_secs(5),
        "marking retried for {retried:?}"
    );
    assert_eq!(
        d.outbox(),
        vec![("queued".to_string(), 0, 0), ("queued".to_string(), 0, 0)]
    );

    d.allow_marking();
    let stats = block_on(smtp::deliver_due(&mut store, &t, &Shutdown::never())).unwrap();
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![1, 1]);
    assert!(all("sent", &d.outbox()), "{:?}", d.outbox());
}

/// The store will not mark a sent ack and the process stops before it
/// can (`poll --once` gives up after its retries; a restart of the
/// service, a crash): the next process does not send it again. The send
/// was written down in the data directory first, and the next sender
/// marks it sent from there.
#[test]
fn a_sent_ack_left_unmarked_by_a_stopped_process_is_not_resent_by_the_next() {
    let rig = MailRig::start().unwrap();
    let d = desk(&rig);
    let buyers = buyers("restartmark", 1);
    d.queue_acks(&buyers);
    d.refuse_marking();
    let out = common::ticketd(&d.s.config, &["poll", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot mark it sent"), "{stderr}");
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![1]);
    assert_eq!(d.outbox(), vec![("queued".to_string(), 0, 0)]);

    d.allow_marking();
    let out = common::ticketd(&d.s.config, &["poll", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("marked sent now"), "{stderr}");
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![1], "sent again");
    assert_eq!(d.outbox()[0].0, "sent");
}

/// An operator's `poll` or `reply --send` under sudo writes down its sends
/// in a file the service's user (who owns the data directory) can still
/// write and empty.
#[test]
fn the_sent_log_root_makes_belongs_to_the_service_user() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the ownership of root's files is not checked");
        return;
    }
    let rig = MailRig::start().unwrap();
    let d = desk(&rig);
    d.queue_acks(&buyers("rootlog", 1));
    let data = &d.config.data_dir;
    std::os::unix::fs::chown(data, Some(65534), Some(65534)).unwrap();
    let out = common::ticketd(&d.s.config, &["poll", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::metadata(data.join(smtp::SENT_LOG)).unwrap();
    assert_eq!((log.uid(), log.gid()), (65534, 65534));
    assert_eq!(log.mode() & 0o777, 0o600);
}

/// SIGTERM while a backlog goes out over a slow link: the sender stops
/// after the item in hand instead of working through the backlog, and what
/// it sent is marked sent, the rest left queued and untouched.
#[test]
fn shutdown_stops_a_backlog_between_items() {
    let rig = MailRig::start().unwrap();
    let d = desk(&rig);
    let buyers = buyers("backlog", 30);
    d.queue_acks(&buyers);
    let slow = Proxy::start(rig.smtp_port());
    slow.delay(Duration::from_millis(100));
    let (stats, took) = deliver_stopped_after(&d, slow.port(), Duration::from_millis(1500));
    let stats = stats.unwrap();
    let counts = settled_counts(&rig, &buyers, QUIET);
    let rows = d.outbox();
    let sent = rows.iter().filter(|r| r.0 == "sent").count();
    assert!(
        stats.sent < buyers.len(),
        "the whole backlog went out: {stats:?} in {took:?}"
    );
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    assert_eq!(sent, stats.sent, "{rows:?}");
    assert_eq!(counts.iter().sum::<usize>(), stats.sent, "{counts:?}");
    assert!(counts.iter().all(|&n| n <= 1), "{counts:?}");
    assert!(
        rows.iter().all(|r| r.0 == "sent" || r.1 == 0),
        "an unsent item was touched: {rows:?}"
    );
}

/// The same for `ticketd run` under systemd: SIGTERM while the backlog
/// goes out, and the process exits well within TimeoutStopSec (30 s).
#[test]
fn run_stops_on_sigterm_while_a_backlog_goes_out() {
    let rig = MailRig::start().unwrap();
    let d = desk(&rig);
    let buyers = buyers("runbacklog", 30);
    d.queue_acks(&buyers);
    let slow = Proxy::start(rig.smtp_port());
    slow.delay(Duration::from_millis(100));
    let text = std::fs::read_to_string(&d.s.config).unwrap();
    let smtp = format!("port = {}\ntls", rig.smtp_port());
    assert!(text.contains(&smtp));
    let text = text.replace(&smtp, &format!("port = {}\ntls", slow.port()));
    std::fs::write(&d.s.config, text).unwrap();
    let mut daemon = Daemon::start(&d.s.config);
    wait_until("the first ack", Duration::from_secs(30), || {
        daemon.log().contains("acknowledgement sent").then_some(())
    });
    let started = Instant::now();
    let status = daemon.stop();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert!(
        took < Duration::from_secs(5),
        "stopped after {took:?}\n{}",
        daemon.log()
    );
    let sent = d.outbox().iter().filter(|r| r.0 == "sent").count();
    assert!(sent < buyers.len(), "the whole backlog went out first");
    let counts = settled_counts(&rig, &buyers, QUIET);
    assert_eq!(counts.iter().sum::<usize>(), sent, "{counts:?}");
}

/// SIGTERM while the server sits on a message after its final dot: the
/// send in hand gets SHUTDOWN_GRACE, not the whole SMTP timeout (60 s),
/// and stays queued, its attempt not counted; nothing after it starts.
#[test]
fn shutdown_during_a_hung_send_waits_only_the_grace() {
    let d = desk_without_servers();
    d.queue_acks(&buyers("hungstop", 2));
    let server = Scripted::hang();
    let (r, took) = deliver_stopped_after(&d, server.port, Duration::from_secs(1));
    let stats = r.unwrap();
    assert_eq!((stats.sent, stats.failed), (0, 0), "{stats:?}");
    assert!(
        took < smtp::SHUTDOWN_GRACE + Duration::from_secs(3),
        "stopped after {took:?}"
    );
    assert_eq!(server.got(), 1);
    assert_eq!(
        d.outbox(),
        vec![("queued".to_string(), 0, 0), ("queued".to_string(), 0, 0)]
    );
}

/// A server that takes a message and then never answers: it may have
/// delivered it, so the try counts (a resend each time would reach the
/// buyer again and again); an item one refusal short of its last is given
/// up. The sender goes on to the next item (the QUIT after the timeout
/// does not wait for an answer either).
#[test]
fn no_answer_after_the_message_uses_up_a_try_as_it_may_have_been_delivered() {
    let d = desk_without_servers();
    d.queue_acks(&buyers("timeout", 2));
    let db = d.store();
    d.one_refusal_short_of_giving_up();
    let server = Scripted::hang();
    let mut store = d.store();
    let t = d
        .transport_to(server.port)
        .with_timeout(Duration::from_secs(1))
        .with_data_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let r = block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            smtp::deliver_due(&mut store, &t, &Shutdown::never()),
        )
        .await
    });
    let took = started.elapsed();
    let stats = r.expect("the sender hung").unwrap();
    assert_eq!((stats.sent, stats.failed), (0, 2), "{stats:?}");
    assert_eq!(server.got(), 2, "the second ack was not tried");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let given_up = ("failed".to_string(), 31, smtp::MAX_ATTEMPTS);
    assert_eq!(d.outbox(), vec![given_up.clone(), given_up]);
    let error: String = db
        .conn()
        .query_row("SELECT max(last_error) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert!(error.contains("may have delivered it"), "{error}");
}

/// A relay whose content filter takes longer than one SMTP step to answer
/// the final dot: the answer is waited for (RFC 5321 gives it 10
/// minutes), so the ack goes out once, not once per retry.
#[test]
fn a_slow_answer_to_the_message_is_waited_for_and_the_ack_sent_once() {
    let d = desk_without_servers();
    d.queue_acks(&buyers("slowdot", 1));
    let server = Scripted::slow_then_deaf_to_quit(Duration::from_millis(2500));
    let t = d
        .transport_to(server.port)
        .with_timeout(Duration::from_secs(1));
    for _ in 0..3 {
        let mut store = d.store();
        let stats = block_on(smtp::deliver_due(&mut store, &t, &Shutdown::never())).unwrap();
        store
            .conn()
            .execute("UPDATE outbox SET next_attempt_at = 0", [])
            .unwrap();
        if stats.sent == 1 {
            break;
        }
    }
    assert_eq!(server.got(), 1, "the ack reached the server more than once");
    assert_eq!(d.outbox(), vec![("sent".to_string(), 1, 0)]);
}

/// 421 (service not available, e.g. a relay in maintenance or rate
/// limiting) says nothing about the message: like a server that cannot be
/// reached, it delays the ack (backoff) without using up its tries.
#[test]
fn a_421_delays_an_ack_but_does_not_use_up_its_tries() {
    let d = desk_without_servers();
    d.queue_acks(&buyers("busy", 1));
    let db = d.store();
    d.one_refusal_short_of_giving_up();
    let server = Scripted::busy();
    let mut store = d.store();
    let t = d
        .transport_to(server.port)
        .with_timeout(Duration::from_secs(1));
    let before = chrono::Utc::now().timestamp();
    let stats = block_on(smtp::deliver_due(&mut store, &t, &Shutdown::never())).unwrap();
    assert_eq!((stats.sent, stats.failed), (0, 1), "{stats:?}");
    assert_eq!(server.got(), 0);
    assert_eq!(
        d.outbox(),
        vec![("queued".to_string(), 31, smtp::MAX_ATTEMPTS - 1)]
    );
    let (next, error): (i64, String) = db
        .conn()
        .query_row("SELECT next_attempt_at, last_error FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(next >= before + smtp::backoff(30), "no backoff");
    assert!(error.contains("421"), "{error}");
}

/// SIGTERM while the server takes its time over an ack: the ack in hand
/// finishes and is marked sent, the next is not started, and a server that
/// then does not answer QUIT does not hold the stop up.
#[test]
fn shutdown_lets_the_send_in_hand_finish_and_is_not_held_up_by_quit() {
    let d = desk_without_servers();
    d.queue_acks(&buyers("slowstop", 2));
    let server = Scripted::slow_then_deaf_to_quit(Duration::from_secs(2));
    let (r, took) = deliver_stopped_after(&d, server.port, Duration::from_secs(1));
    let stats = r.unwrap();
    assert_eq!((stats.sent, stats.failed), (1, 0), "{stats:?}");
    assert_eq!(server.got(), 1);
    assert!(took < Duration::from_secs(6), "stopped after {took:?}");
    assert_eq!(
        d.outbox(),
        vec![("sent".to_string(), 1, 0), ("queued".to_string(), 0, 0)]
    );
}

/// A relay that takes every message and never answers the final dot: each
/// send may have reached the buyer, so the ack is given up after
/// MAX_UNCERTAIN such sends, not after the 20 tries a refusing server
/// gets; `outbox retry` can send it again.
#[test]
fn sends_that_may_have_been_delivered_are_bounded_apart() {
    let d = desk_without_servers();
    d.queue_acks(&buyers("uncertain", 1));
    let server = Scripted::hang();
    let t = d
        .transport_to(server.port)
        .with_timeout(Duration::from_secs(1))
        .with_data_timeout(Duration::from_secs(1));
    for round in 1..=smtp::MAX_UNCERTAIN + 1 {
        // Due again at once, as if its backoff had passed.
        d.store()
            .conn()
            .execute("UPDATE outbox SET next_attempt_at = 0", [])
            .unwrap();
        let mut store = d.store();
        block_on(smtp::deliver_due(&mut store, &t, &Shutdown::never())).unwrap();
        assert_eq!(
            server.got(),
            round.min(smtp::MAX_UNCERTAIN) as usize,
            "round {round}"
        );
    }
    let rows = d.outbox();
    assert_eq!(rows[0].0, "failed", "{rows:?}");
    assert_eq!(rows[0].2, smtp::MAX_UNCERTAIN, "{rows:?}");
    let error: String = d
        .store()
        .conn()
        .query_row("SELECT last_error FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert!(error.contains("outbox retry"), "{error}");
    // Every one of them counted, the last one too.
    let uncertain: i64 = d
        .store()
        .conn()
        .query_row("SELECT uncertain FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(uncertain, smtp::MAX_UNCERTAIN);
}

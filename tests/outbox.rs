//! The outbox sender (`smtp::deliver_due`) against the rig's real Postfix:
//! each acknowledgement reaches its buyer once, whoever sends and whatever
//! goes wrong around the send. A scripted SMTP listener on loopback stands
//! in for Postfix only where the fault cannot be made with the real one (a
//! server that stops answering after DATA).
//!
//! Needs root, like every rig test.

mod common;

use std::time::Duration;

use common::{buyer_mail, settled_counts, setup, ticketd, Imap, Setup};
use ticketd::config::Config;
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

impl Desk {
    fn store(&self) -> Store {
        Store::open(&self.config.data_dir).unwrap()
    }

    fn transport(&self) -> smtp::Transport {
        smtp::transport(self.config.smtp.as_ref().unwrap()).unwrap()
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
    let (ra, rb) = block_on(async {
        tokio::join!(smtp::deliver_due(&mut a, &t), smtp::deliver_due(&mut b, &t))
    });
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let stats = [ra, rb];
    assert_eq!(stats.iter().filter(|s| s.elsewhere).count(), 1, "{stats:?}");
    assert!(stats.contains(&DeliveryStats {
        sent: 3,
        failed: 0,
        elsewhere: false
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
    let stats = block_on(smtp::deliver_due(&mut holder, &d.transport())).unwrap();
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
            let r = block_on(smtp::deliver_due(&mut store, &t));
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
    let r = block_on(smtp::deliver_due(&mut store, &t));
    assert!(r.is_err(), "{r:?}");
    let retried = started.elapsed();
    d.queue_acks(&buyers[1..]);
    let r = block_on(smtp::deliver_due(&mut store, &t));
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
    let stats = block_on(smtp::deliver_due(&mut store, &t)).unwrap();
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!(settled_counts(&rig, &buyers, QUIET), vec![1, 1]);
    assert!(all("sent", &d.outbox()), "{:?}", d.outbox());
}

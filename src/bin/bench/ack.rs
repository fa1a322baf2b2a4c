//! Scenario 2: time to acknowledge. `ticketd run` idles on the support
//! mailbox (IMAP IDLE) and sends acks through the rig's Postfix; the bench
//! submits buyer mails to Postfix at 1/s, then a burst of 200, each from its
//! own address, and times each from SMTP accept (rig.send returning) to the
//! ack landing in that buyer's maildir. Along the way it notes when the
//! buyer's mail reached the support maildir (Postfix + LMTP: the baseline),
//! when ticketd logged it filed, and when it logged the ack sent, which
//! splits the time into its parts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::child::{self, NotifySocket, Tls, SUPPORT};
use crate::mailgen::buyer_mail;
use crate::report::{Row, Section};
use crate::startup::start_run;
use crate::util::{dur, Spread};
use crate::{fresh_dir, mailbox_for, Ctx};

pub const TITLE: &str = "2. Time to acknowledge (ticketd run, IDLE)";

/// One buyer mail and what happened to it.
#[derive(Debug, Clone)]
struct Probe {
    tag: String,
    buyer_maildir: PathBuf,
    sent: Option<Instant>,
    delivered: Option<Instant>,
    acked: Option<Instant>,
}

/// Watches the maildirs every 2 ms: the support maildir for the buyers'
/// mails (matched by Message-ID), each buyer's maildir for its ack.
fn watch(
    support: PathBuf,
    probes: Arc<Mutex<Vec<Probe>>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut seen: HashMap<String, ()> = HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut found: Vec<String> = Vec::new();
            for sub in ["new", "cur"] {
                let Ok(entries) = std::fs::read_dir(support.join(sub)) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let base = name.split(':').next().unwrap_or(&name).to_string();
                    if seen.contains_key(&base) {
                        continue;
                    }
                    let head = std::fs::read(e.path()).unwrap_or_default();
                    let head = String::from_utf8_lossy(&head[..head.len().min(4096)]).into_owned();
                    if let Some(i) = head.find("Message-ID: <ackprobe-") {
                        let rest = &head[i + "Message-ID: <".len()..];
                        let tag = rest.split('@').next().unwrap_or("").to_string();
                        found.push(tag);
                    }
                    seen.insert(base, ());
                }
            }
            if let Ok(mut ps) = probes.lock() {
                for p in ps.iter_mut() {
                    if p.delivered.is_none() && found.contains(&p.tag) {
                        p.delivered = Some(now);
                    }
                    if p.sent.is_some() && p.acked.is_none() {
                        let has = |d: &str| {
                            std::fs::read_dir(p.buyer_maildir.join(d))
                                .map(|mut it| it.next().is_some())
                                .unwrap_or(false)
                        };
                        if has("new") || has("cur") {
                            p.acked = Some(now);
                        }
                    }
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
    })
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let mut s = Section::new("ack", TITLE);
    let support_dir = mailbox_for(ctx, SUPPORT)?;
    let data = fresh_dir(&ctx.work, "ack-data")?;
    let conf = child::write_config(
        &ctx.work.join("ack-conf"),
        &ctx.rig,
        Tls::None,
        SUPPORT,
        ctx.rig.smtp_port(),
        &data,
        &ctx.templates,
    )?;
    let notify = NotifySocket::bind(ctx.work.join("notify-ack.sock"))?;
    let (mut daemon, ready) = start_run(ctx, &conf, &notify, |_| true)?;
    ctx.progress(&format!("ack: ticketd run READY after {}", dur(ready)));

    let steady_n = if ctx.quick { 30 } else { 60 };
    let burst_n = 200;
    let run_id = std::process::id();
    let probes: Arc<Mutex<Vec<Probe>>> = Arc::new(Mutex::new(
        (0..steady_n + burst_n)
            .map(|i| {
                let tag = format!("ackprobe-{run_id}-{i}");
                let buyer = format!("ackbuyer{run_id}x{i}@buyer.test");
                Probe {
                    buyer_maildir: ctx.rig.maildir_path(&buyer),
                    tag,
                    sent: None,
                    delivered: None,
                    acked: None,
                }
            })
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(support_dir, probes.clone(), stop.clone());
    let send = |i: usize| -> Result<Instant> {
        let buyer = format!("ackbuyer{run_id}x{i}@buyer.test");
        let tag = format!("ackprobe-{run_id}-{i}");
        let raw = buyer_mail(&buyer, "Bench Koper", &format!("{tag}@buyer.test"), 5, i);
        ctx.rig.send(&buyer, &[SUPPORT], &raw)?;
        Ok(Instant::now())
    };
    let mark = |i: usize, at: Instant| {
        if let Ok(mut ps) = probes.lock() {
            ps[i].sent = Some(at);
        }
    };

    ctx.progress(&format!("ack: {steady_n} mails at 1/s"));
    let t0 = Instant::now();
    for i in 0..steady_n {
        let due = t0 + Duration::from_secs(i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let at = send(i)?;
        mark(i, at);
    }
    wait_acked(&probes, 0..steady_n, Duration::from_secs(20));

    ctx.progress(&format!("ack: burst of {burst_n}"));
    let burst_start = Instant::now();
    for i in steady_n..steady_n + burst_n {
        let at = send(i)?;
        mark(i, at);
    }
    let burst_sent = burst_start.elapsed();
    wait_acked(
        &probes,
        steady_n..steady_n + burst_n,
        Duration::from_secs(60),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let stopping = Instant::now();
    let status = daemon.stop(Duration::from_secs(20));
    let stop_took = stopping.elapsed();
    let lines = daemon.lines.lock().map(|v| v.clone()).unwrap_or_default();
    let log_path = ctx.cache.join("ack-ticketd.log");
    let _ = std::fs::write(
        &log_path,
        lines
            .iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>(),
    );
    let probes = probes.lock().map(|v| v.clone()).unwrap_or_default();

    // ticketd's own moments, from its log: filed (by Message-ID) and ack
    // sent (by recipient).
    let mut filed: HashMap<usize, Instant> = HashMap::new();
    let mut sent: HashMap<usize, Instant> = HashMap::new();
    for (at, line) in &lines {
        let idx = |key: &str| -> Option<usize> {
            let i = line.find(key)? + key.len();
            let digits: String = line[i..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        if line.contains(" filed") {
            if let Some(i) = idx(&format!("ackprobe-{run_id}-")) {
                filed.entry(i).or_insert(*at);
            }
        } else if line.contains("acknowledgement sent") {
            if let Some(i) = idx(&format!("ackbuyer{run_id}x")) {
                sent.entry(i).or_insert(*at);
            }
        }
    }

    for (label, range, total) in [
        ("1/s", 0..steady_n, steady_n),
        ("burst", steady_n..steady_n + burst_n, burst_n),
    ] {
        let ps = &probes[range.clone()];
        let lat: Vec<Duration> = ps
            .iter()
            .filter_map(|p| Some(p.acked?.duration_since(p.sent?)))
            .collect();
        let deliv: Vec<Duration> = ps
            .iter()
            .filter_map(|p| Some(p.delivered?.duration_since(p.sent?)))
            .collect();
        let acked = lat.len();
        let l = Spread::of(&lat);
        let d = Spread::of(&deliv);
        if label == "1/s" {
            s.row(
                Row::vs(
                    "1/s: send → ack in buyer's maildir, p50 / p95 / p99 / max",
                    format!(
                        "{} / {} / {} / {}",
                        dur(l.p50),
                        dur(l.p95),
                        dur(l.p99),
                        dur(l.max)
                    ),
                    format!(
                        "{} / {} / {} / {}",
                        dur(d.p50),
                        dur(d.p95),
                        dur(d.p99),
                        dur(d.max)
                    ),
                    Some(l.p99.as_secs_f64() / d.p99.as_secs_f64()),
                )
                .target(
                    "p99 < 1 s",
                    acked == total && l.p99 < Duration::from_secs(1),
                ),
            );
        } else {
            let first = ps.iter().filter_map(|p| p.sent).min();
            let last_ack = ps.iter().filter_map(|p| p.acked).max();
            let last_deliv = ps.iter().filter_map(|p| p.delivered).max();
            let all = match (first, last_ack) {
                (Some(f), Some(l)) => l.duration_since(f),
                _ => Duration::ZERO,
            };
            let all_deliv = match (first, last_deliv) {
                (Some(f), Some(l)) => l.duration_since(f),
                _ => Duration::ZERO,
            };
            s.row(
                Row::vs(
                    format!("burst of {burst_n}: first send → last ack"),
                    dur(all),
                    format!("{} to the last delivery", dur(all_deliv)),
                    Some(all.as_secs_f64() / all_deliv.as_secs_f64()),
                )
                .target("< 10 s", acked == total && all < Duration::from_secs(10)),
            );
            s.row(Row::vs(
                "burst: send → ack per mail, p50 / p95 / p99 / max",
                format!(
                    "{} / {} / {} / {}",
                    dur(l.p50),
                    dur(l.p95),
                    dur(l.p99),
                    dur(l.max)
                ),
                format!(
                    "{} / {} / {} / {}",
                    dur(d.p50),
                    dur(d.p95),
                    dur(d.p99),
                    dur(d.max)
                ),
                Some(l.p99.as_secs_f64() / d.p99.as_secs_f64()),
            ));
            s.note(format!(
                "The burst took {} to submit ({burst_n} SMTP sessions, one after another).",
                dur(burst_sent)
            ));
        }
        if acked < total {
            s.row(
                Row::info(
                    format!("{label}: acknowledged"),
                    format!("{acked} of {total}"),
                )
                .target("all", false),
            );
        }
        // The parts, medians over the mails where every moment is known.
        let parts: Vec<[Duration; 4]> = range
            .clone()
            .filter_map(|i| {
                let p = &probes[i];
                let (sn, dl, ak) = (p.sent?, p.delivered?, p.acked?);
                let (fi, se) = (*filed.get(&i)?, *sent.get(&i)?);
                Some([
                    dl.saturating_duration_since(sn),
                    fi.saturating_duration_since(dl),
                    se.saturating_duration_since(fi),
                    ak.saturating_duration_since(se),
                ])
            })
            .collect();
        if !parts.is_empty() {
            let med = |k: usize| Spread::of(&parts.iter().map(|p| p[k]).collect::<Vec<_>>());
            let (a, b, c, e) = (med(0), med(1), med(2), med(3));
            s.row(Row::info(
                format!("{label}: parts, median (p99)"),
                format!(
                    "Postfix→support maildir {} ({}); maildir→filed (IDLE wake-up, fetch, commit) {} ({}); \
                     filed→ack sent (outbox, SMTP) {} ({}); sent→buyer maildir {} ({})",
                    dur(a.p50), dur(a.p99), dur(b.p50), dur(b.p99), dur(c.p50), dur(c.p99),
                    dur(e.p50), dur(e.p99)
                ),
            ));
        }
    }
    let errors: Vec<&str> = lines
        .iter()
        .map(|(_, l)| l.as_str())
        .filter(|l| l.contains("ERROR"))
        .collect();
    s.row(
        Row::info("errors ticketd logged", errors.len().to_string())
            .target("none", errors.is_empty()),
    );
    if let Some(first) = errors.first() {
        s.note(format!("First error ticketd logged: `{}`", first.trim()));
    }
    let clean = status.is_some_and(|s| s.success());
    s.row(
        Row::info(
            "SIGTERM to exit after the run",
            format!(
                "{} ({})",
                dur(stop_took),
                status.map_or("?".into(), |s| s.to_string())
            ),
        )
        .target("exit 0", clean),
    );
    s.note(format!(
        "ticketd's log of this scenario: {}",
        log_path.display()
    ));
    s.note(
        "Each buyer writes from its own address; times are taken in the bench: `rig.send` returning \
         (Postfix accepted the mail), the mail file appearing in the support maildir (polled every \
         2 ms, matched by Message-ID) as the baseline, ticketd's `filed` and `acknowledgement sent` \
         log lines as they arrive on its stderr, and the ack appearing in the buyer's maildir. The \
         ratio is p99 against the baseline's p99. Dovecot delays IDLE notifications (~0.5 s; the \
         rig sets mailbox_idle_check_interval = 1 s), which is inside \"maildir→filed\".",
    );
    Ok(s)
}

fn wait_acked(probes: &Arc<Mutex<Vec<Probe>>>, range: std::ops::Range<usize>, max: Duration) {
    let t = Instant::now();
    while t.elapsed() < max {
        let done = probes
            .lock()
            .map(|ps| ps[range.clone()].iter().all(|p| p.acked.is_some()))
            .unwrap_or(false);
        if done {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

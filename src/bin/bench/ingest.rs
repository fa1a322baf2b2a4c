//! Scenario 1: ingest throughput against the physical limit. A mailbox is
//! filled with the generated mix (written straight into the maildir), then
//! the raw fetch (baseline) and `ticketd poll --once` read all of it over
//! the same connection type; ticketd's time runs from exec until its
//! "mailbox synced" log line, when every message is committed. The full mix
//! at 1k (plain and TLS) and 10k (plain), the light mix at 1k and 50k
//! (plain), for how the cost per message grows. And a shared mailbox of
//! 1k where one mail in ten is support mail (`shared`): ticketd with
//! `[intake]` against the full and the header-only fetch.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rusqlite::OpenFlags;

use crate::child::{self, PollRun, Tls};
use crate::imapraw::{self, Conn, RawFetch};
use crate::mailgen::{self, Filled, Mix};
use crate::report::{ratio_text, Row, Section};
use crate::util::{cores, cpu_of, dir_size, dur, machine_busy, mib, rate, CpuUse};
use crate::{fresh_dir, mailbox_for, shared, Ctx};

pub const TITLE: &str = "1. Ingest: ticketd poll --once vs the raw IMAP fetch";

/// One mailbox size and mix, and what to run against it.
struct Case {
    mix: Mix,
    count: usize,
    modes: &'static [Tls],
    /// Also ingest onto tmpfs (no disk flushes) and, with --perf, profile.
    diagnose: bool,
}

/// Per-message cost of one case, for the growth table.
struct Cost {
    mix: Mix,
    count: usize,
    ticketd: Duration,
    raw: Duration,
    /// The least a store must do (`least_store`), per message, if run.
    floor: Option<Duration>,
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let mut s = Section::new("ingest", TITLE);
    let both: &'static [Tls] = &[Tls::None, Tls::Implicit];
    let plain: &'static [Tls] = &[Tls::None];
    let custom = !ctx.ingest_cases.is_empty() || !ctx.shared_cases.is_empty();
    let cases: Vec<Case> = if custom {
        // The first case given gets both connection types, the tmpfs
        // comparison and (with --perf) the profile.
        ctx.ingest_cases
            .iter()
            .enumerate()
            .map(|(i, &(mix, count))| Case {
                mix,
                count,
                modes: if i == 0 { both } else { plain },
                diagnose: i == 0,
            })
            .collect()
    } else if ctx.quick {
        vec![Case {
            mix: Mix::Full,
            count: 1000,
            modes: both,
            diagnose: true,
        }]
    } else {
        vec![
            Case {
                mix: Mix::Full,
                count: 1000,
                modes: both,
                diagnose: true,
            },
            Case {
                mix: Mix::Full,
                count: 10_000,
                modes: plain,
                diagnose: false,
            },
            Case {
                mix: Mix::Light,
                count: 1000,
                modes: plain,
                diagnose: false,
            },
            Case {
                mix: Mix::Light,
                count: 50_000,
                modes: plain,
                diagnose: false,
            },
        ]
    };
    append_rate(ctx, &mut s)?;
    let mut costs = Vec::new();
    for case in &cases {
        run_case(ctx, case, &mut s, &mut costs)
            .with_context(|| format!("{} messages, {}", case.count, case.mix.name()))?;
    }
    growth(&costs, &mut s);
    let shared_sizes = if custom {
        ctx.shared_cases.clone()
    } else {
        vec![1000]
    };
    for count in shared_sizes {
        shared::run_case(ctx, &mut s, count)
            .with_context(|| format!("shared mailbox of {count} messages"))?;
    }
    for e in std::fs::read_dir(&ctx.work)?.flatten() {
        if e.file_name().to_string_lossy().starts_with("ingest-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    s.note(
        "ticketd's time is from exec of `ticketd poll --once` to its `mailbox synced` log line \
         (every message committed, acks queued in the outbox); sending the acks afterwards (to an \
         SMTP sink in the bench, so Postfix is not flooded) is in \"wall incl. acks\". The baseline \
         is one `UID FETCH 1:* BODY.PEEK[]` with async-imap over the same kind of connection (tokio, \
         rustls with the rig CA), connect and login included, bytes dropped. Both are run the \
         same number of times (3; 2 from 50k messages on), ticketd each time on a fresh store, \
         and the best run of each is compared; the detail row lists all of ticketd's runs (the \
         memory section takes the highest peak of them).",
    );
    s.note(
        "\"The least a store must do\" is a second baseline, written in the bench: the same \
         fetch, each message hashed once with sha256 (the content address the design asks of \
         attachments, most of the bytes) and appended to one file on the same disk, writeback \
         started as it is written and one fdatasync at the end, on two threads while the fetch \
         goes on (best of two, one run above 1k). No parsing, no database, no per-mail file: what \
         any store that keeps every mail durably and hashes it pays on top of the raw fetch on \
         this machine. ticketd against it shows how much of the gap to the raw fetch is its own.",
    );
    s.note(
        "Stages: from ticketd's `mailbox synced` line, how long each stage of its pipeline was \
         busy during the sync (the part of the run after start-up, login and the size listing): \
         fetch (waiting for Dovecot's answers to UID FETCH), parse (parsing, hashing, writing \
         large raw mails), file (SQLite rows, full-text index, acks, commits and their syncs). \
         They run at once on their own threads; the one close to the sync's time holds it up.",
    );
    s.note(
        "CPU rows: ticketd's own CPU (/proc/PID/stat) from exec to its `mailbox synced` line, and \
         the machine's busy time over all cores (/proc/stat) in the same window; \"rest\" is the \
         machine's less ticketd's: the IMAP server above all, the kernel's writeback threads, the \
         bench's sampling. For the raw fetch and the floor: the bench process's CPU and the \
         machine's over their best run, connect to logout.",
    );
    s.note(
        "The mailboxes are written straight into the rig's maildir (`new/`, names with `,S=,W=` \
         sizes, owned by `mail`, mode 0600, LF line endings: the same as a mail delivered through \
         Postfix and LMTP), then Dovecot indexes them once before anything is timed.",
    );
    Ok(s)
}

/// Peak RSS of ticketd ingesting the 1k full mix over plain IMAP, and the
/// largest message, for the memory scenario when ingest did not run.
pub fn peak_of_1k(ctx: &mut Ctx) -> Result<(u64, u64)> {
    let user = "memory-1k@example.test";
    ctx.progress("memory: writing a 1k full-mix mailbox");
    let maildir = mailbox_for(ctx, user)?;
    let filled = mailgen::fill_maildir(&maildir, Mix::Full, 1000, 2000, ctx.mail_owner, &|_| {})?;
    ctx.rt
        .block_on(imapraw::sync_index(ctx.rig.imap_port(), user))?;
    let data = fresh_dir(&ctx.work, "memory-ingest")?;
    let run = ticketd_poll(ctx, user, Tls::None, &data, None, true);
    let _ = std::fs::remove_dir_all(&data);
    let peak = run?.peak_rss.context("could not read the RSS of ticketd")?;
    ctx.progress(&format!("memory: ingest peak RSS {}", mib(peak)));
    Ok((peak, filled.largest))
}

/// How fast the mailbox could be filled with IMAP APPEND instead, for the
/// record (100 light-mix messages).
fn append_rate(ctx: &mut Ctx, s: &mut Section) -> Result<()> {
    let user = "append-probe@example.test";
    mailbox_for(ctx, user)?;
    let mut g = mailgen::MailboxGen::new(Mix::Light, 77);
    let msgs: Vec<Vec<u8>> = (0..100)
        .map(|_| {
            let raw = g.next_message().0;
            // APPEND wants CRLF.
            String::from_utf8_lossy(&raw)
                .replace('\n', "\r\n")
                .into_bytes()
        })
        .collect();
    let port = ctx.rig.imap_port();
    let elapsed = ctx.rt.block_on(async {
        let mut sess = imapraw::login(Conn::Plain(port), user).await?;
        let t = Instant::now();
        for m in &msgs {
            sess.append("INBOX", None, None, m).await?;
        }
        let e = t.elapsed();
        let _ = sess.logout().await;
        anyhow::Ok(e)
    })?;
    let per_s = msgs.len() as f64 / elapsed.as_secs_f64();
    s.note(format!(
        "Filling by IMAP APPEND would run at {} msg/s here (100 light-mix messages); the bench \
         writes maildir files instead (rate in the fill rows).",
        rate(per_s)
    ));
    Ok(())
}

fn run_case(ctx: &mut Ctx, case: &Case, s: &mut Section, costs: &mut Vec<Cost>) -> Result<()> {
    let label = format!(
        "{}{} {}",
        if case.count >= 1000 {
            case.count / 1000
        } else {
            case.count
        },
        if case.count >= 1000 { "k" } else { "" },
        case.mix.name()
    );
    let user = format!(
        "ingest-{}-{}@example.test",
        if case.mix == Mix::Full {
            "full"
        } else {
            "light"
        },
        case.count
    );
    ctx.progress(&format!("{label}: writing the mailbox of {user}"));
    let maildir = mailbox_for(ctx, &user)?;
    let seed = 1000 + case.count as u64 + if case.mix == Mix::Full { 0 } else { 7 };
    let filled =
        mailgen::fill_maildir(&maildir, case.mix, case.count, seed, ctx.mail_owner, &|n| {
            if n % 10_000 == 0 {
                eprintln!("            {n} written");
            }
        })?;
    ctx.progress(&format!(
        "{label}: {} in {}",
        filled.describe(),
        dur(filled.elapsed)
    ));
    s.row(Row::info(
        format!("{label}: fill the maildir (direct writes)"),
        format!(
            "{} msg/s, {} MB/s",
            rate(filled.count as f64 / filled.elapsed.as_secs_f64()),
            rate(filled.disk_bytes as f64 / 1e6 / filled.elapsed.as_secs_f64())
        ),
    ));
    let t = Instant::now();
    let (n, bytes) = ctx
        .rt
        .block_on(imapraw::sync_index(ctx.rig.imap_port(), &user))?;
    if n != case.count {
        bail!("Dovecot sees {n} of the {} messages written", case.count);
    }
    ctx.progress(&format!(
        "{label}: Dovecot indexed {n} messages ({:.0} MB) in {}",
        bytes as f64 / 1e6,
        dur(t.elapsed())
    ));
    s.row(Row::info(
        format!("{label}: mailbox"),
        format!(
            "{} msgs, {:.0} MB, largest {:.1} MB",
            filled.count,
            filled.imap_bytes as f64 / 1e6,
            filled.largest as f64 / 1e6
        ),
    ));

    for &tls in case.modes {
        let raw = best_raw_fetch(ctx, &user, tls, case.count)?;
        let tag = format!("{label}, {}", tls.name());
        ctx.progress(&format!(
            "{tag}: raw fetch {} ({} msg/s, {} MB/s)",
            dur(raw.total),
            rate(raw.messages as f64 / raw.total.as_secs_f64()),
            rate(raw.bytes as f64 / 1e6 / raw.total.as_secs_f64())
        ));
        if case.count <= 10_000 {
            wire_row(ctx, s, &tag, &user, tls, &raw)?;
        }
        let floor = if case.count <= 10_000 {
            let floor = least_store(ctx, &user, tls, case.count)?;
            ctx.progress(&format!(
                "{tag}: fetch + sha256 + one durable file {} ({} msg/s)",
                dur(floor.total),
                rate(floor.messages as f64 / floor.total.as_secs_f64()),
            ));
            Some(floor)
        } else {
            None
        };
        // Only the first case waits for the acks to go out (to the sink),
        // to show what sending costs; the others stop once all is filed.
        let with_acks = case.diagnose && tls == Tls::None;
        let acks_before = ctx.sink.count();
        // As many runs as the raw fetch had, the best one compared with
        // its best: the same statistic on both sides of the ratio.
        let runs = ticketd_runs(ctx, &tag, &user, tls, case, with_acks)?;
        let runs = best_run(runs);
        let (run, data, times) = (&runs.best, &runs.data, &runs.times);
        let acks = (ctx.sink.count() - acks_before) / times.len().max(1);
        // ticketd_runs checked that every run's store holds them all.
        let stored = case.count;
        let used = dir_size(data);
        let filed = filed_time(run);
        throughput_rows(s, &tag, &filled, &raw, &runs, stored, used);
        cpu_rows(s, &tag, &raw, floor.as_ref(), run);
        if let Some(floor) = &floor {
            floor_rows(s, &tag, &raw, floor, filed_time(run), stored);
        }
        if let (true, Some(wall)) = (with_acks, run.wall) {
            let sending = wall.saturating_sub(filed);
            s.row(Row::info(
                format!("{tag}: sending the queued acks after filing"),
                format!(
                    "{acks} acks in {} ({} each, to a local SMTP sink)",
                    dur(sending),
                    dur(sending / acks.max(1) as u32)
                ),
            ));
        }
        if tls == Tls::None {
            if case.mix == Mix::Full && case.count == 1000 && ctx.ingest_memory.is_none() {
                ctx.ingest_memory = times
                    .iter()
                    .filter_map(|t| t.peak_rss)
                    .max()
                    .map(|p| (p, filled.largest));
            }
            costs.push(Cost {
                mix: case.mix,
                count: case.count,
                ticketd: filed / case.count as u32,
                raw: raw.total / case.count as u32,
                floor: floor.as_ref().map(|f| f.total / case.count as u32),
            });
            if case.diagnose {
                diagnose(ctx, s, &label, &user, run, case.count)?;
            }
        }
    }
    Ok(())
}

/// How one of ticketd's runs went, for the detail row.
struct RunTime {
    filed: Duration,
    peak_rss: Option<u64>,
}

/// `ticketd poll --once` as many times as the raw fetch runs (the same
/// count: 3, or 2 from 50k messages on), each on a store of its own, kept
/// until the scenario ends: deleting thousands of files makes ext4 slower
/// at creating the next ones for a while, which would be charged to the
/// next run. Every store is checked to hold every message.
fn ticketd_runs(
    ctx: &Ctx,
    tag: &str,
    user: &str,
    tls: Tls,
    case: &Case,
    with_acks: bool,
) -> Result<Vec<(PollRun, std::path::PathBuf)>> {
    let mut runs = Vec::new();
    for i in 0..raw_runs(case.count) {
        let data = fresh_dir(
            &ctx.work,
            &format!(
                "ingest-{}-{}-{}-{i}",
                case.count,
                case.mix.name().replace(' ', "-"),
                tls.name()
            ),
        )?;
        let run = ticketd_poll(ctx, user, tls, &data, None, !with_acks)?;
        let stored = check_store(&data, case.count)?;
        ctx.progress(&format!(
            "{tag}: ticketd run {}: filed {stored} in {} (wall incl. acks {}, CPU {}, peak RSS {})",
            i + 1,
            dur(filed_time(&run)),
            run.wall.map(dur).unwrap_or_else(|| "not waited for".into()),
            run.cpu.map(dur).unwrap_or_default(),
            run.peak_rss.map(mib).unwrap_or_default()
        ));
        runs.push((run, data));
    }
    Ok(runs)
}

/// ticketd's runs of one case.
struct Runs {
    /// The fastest to all committed, and its store.
    best: PollRun,
    data: std::path::PathBuf,
    /// Every run's time and peak, in the order they ran.
    times: Vec<RunTime>,
}

fn best_run(runs: Vec<(PollRun, std::path::PathBuf)>) -> Runs {
    let times: Vec<RunTime> = runs
        .iter()
        .map(|(r, _)| RunTime {
            filed: filed_time(r),
            peak_rss: r.peak_rss,
        })
        .collect();
    let (run, data) = runs
        .into_iter()
        .min_by_key(|(r, _)| filed_time(r))
        .expect("at least one ticketd run");
    Runs {
        best: run,
        data,
        times,
    }
}

/// Runs of the raw fetch (and of ticketd) for a mailbox of `count`.
fn raw_runs(count: usize) -> usize {
    if count >= 50_000 {
        2
    } else {
        3
    }
}

pub fn best_raw_fetch(ctx: &Ctx, user: &str, tls: Tls, expect: usize) -> Result<RawFetch> {
    let runs = raw_runs(expect);
    let mut best: Option<RawFetch> = None;
    for _ in 0..runs {
        let conn = match tls {
            Tls::None => Conn::Plain(ctx.rig.imap_port()),
            Tls::Implicit => Conn::Tls(ctx.rig.imaps_port(), ctx.rig.ca_file()),
        };
        let r = with_cpu(|| ctx.rt.block_on(imapraw::fetch_all(conn, user)))?;
        if r.messages != expect {
            bail!("the raw fetch got {} of {expect} messages", r.messages);
        }
        if best.is_none_or(|b| r.total < b.total) {
            best = Some(r);
        }
    }
    best.context("no raw fetch ran")
}

/// Runs a fetch in the bench and notes the CPU the bench and the whole
/// machine spent on it.
fn with_cpu(fetch: impl FnOnce() -> Result<RawFetch>) -> Result<RawFetch> {
    let (own, busy, started) = (cpu_of(std::process::id()), machine_busy(), Instant::now());
    let mut r = fetch()?;
    r.cpu = match (own, busy, cpu_of(std::process::id()), machine_busy()) {
        (Some(own0), Some(busy0), Some(own1), Some(busy1)) => Some(CpuUse {
            own: own1.saturating_sub(own0),
            machine: busy1.saturating_sub(busy0),
            window: started.elapsed(),
        }),
        _ => None,
    };
    Ok(r)
}

/// The raw fetch plus the least any store must do with each message
/// (`imapraw::fetch_and_keep`), best of two runs (one above 1k messages).
fn least_store(ctx: &Ctx, user: &str, tls: Tls, expect: usize) -> Result<RawFetch> {
    let runs = if expect > 1000 { 1 } else { 2 };
    let dir = fresh_dir(&ctx.work, "ingest-floor")?;
    let file = dir.join("all-mail");
    let mut best: Option<RawFetch> = None;
    for _ in 0..runs {
        let conn = match tls {
            Tls::None => Conn::Plain(ctx.rig.imap_port()),
            Tls::Implicit => Conn::Tls(ctx.rig.imaps_port(), ctx.rig.ca_file()),
        };
        let r = with_cpu(|| ctx.rt.block_on(imapraw::fetch_and_keep(conn, user, &file)));
        let _ = std::fs::remove_file(&file);
        let r = r?;
        if r.messages != expect {
            bail!(
                "the fetch that keeps got {} of {expect} messages",
                r.messages
            );
        }
        if best.is_none_or(|b| r.total < b.total) {
            best = Some(r);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    best.context("no fetch that keeps ran")
}

/// The floor against the raw fetch, and ticketd against the floor: how
/// much of the gap to the raw fetch any store would have, and how much is
/// ticketd's own.
fn floor_rows(
    s: &mut Section,
    tag: &str,
    raw: &RawFetch,
    floor: &RawFetch,
    filed: Duration,
    stored: usize,
) {
    let per_s = |f: &RawFetch| f.messages as f64 / f.total.as_secs_f64();
    s.row(Row::vs(
        format!("{tag}: the least a store must do (fetch, sha256 of each mail, one durable file), msg/s"),
        rate(per_s(floor)),
        rate(per_s(raw)),
        Some(per_s(floor) / per_s(raw)),
    ));
    let t = stored as f64 / filed.as_secs_f64();
    s.row(Row::vs(
        format!("{tag}: msg/s against that least"),
        rate(t),
        rate(per_s(floor)),
        Some(t / per_s(floor)),
    ));
}

/// Where the machine's CPU went until everything was committed, against
/// the raw fetch's, and what 0.5x of the raw fetch leaves ticketd of it:
/// on a machine with few cores the IMAP server and ticketd share them.
fn cpu_rows(s: &mut Section, tag: &str, raw: &RawFetch, floor: Option<&RawFetch>, run: &PollRun) {
    let (Some(t), Some(r)) = (run.cpu_use, raw.cpu) else {
        return;
    };
    let cores = cores();
    let split = |who: &str, c: &CpuUse| {
        format!(
            "{who} {} + rest {} = {:.0}% of {cores} cores",
            dur(c.own),
            dur(c.rest()),
            c.busy() * 100.0
        )
    };
    s.row(Row::vs(
        format!("{tag}: CPU until all committed, ticketd + the rest of the machine"),
        split("ticketd", &t),
        split("fetch", &r),
        Some(t.machine.as_secs_f64() / r.machine.as_secs_f64().max(1e-9)),
    ));
    if let Some(f) = floor.and_then(|f| f.cpu) {
        s.row(Row::vs(
            format!("{tag}: CPU of the least a store must do"),
            split("fetch + sha256 + file", &f),
            split("fetch", &r),
            Some(f.machine.as_secs_f64() / r.machine.as_secs_f64().max(1e-9)),
        ));
    }
    let half = raw.total * 2;
    let budget = (half * cores as u32).saturating_sub(t.rest());
    s.note(format!(
        "{tag}: 0.5x of the raw fetch is everything committed within {}: {} of CPU on {cores} \
         cores. The rest of the machine took {} of it while ticketd ran ({} in the raw fetch), \
         which leaves ticketd at most {} even with every core busy all the time; it used {} ({} \
         of that).",
        dur(half),
        dur(half * cores as u32),
        dur(t.rest()),
        dur(r.rest()),
        dur(budget),
        dur(t.own),
        ratio_text(t.own.as_secs_f64() / budget.as_secs_f64().max(1e-9)),
    ));
}

/// The fetch without an IMAP library, to see whether async-imap limits the
/// baseline.
fn wire_row(
    ctx: &Ctx,
    s: &mut Section,
    tag: &str,
    user: &str,
    tls: Tls,
    raw: &RawFetch,
) -> Result<()> {
    let mut best: Option<RawFetch> = None;
    for _ in 0..2 {
        let conn = match tls {
            Tls::None => Conn::Plain(ctx.rig.imap_port()),
            Tls::Implicit => Conn::Tls(ctx.rig.imaps_port(), ctx.rig.ca_file()),
        };
        let r = ctx.rt.block_on(imapraw::fetch_wire(conn, user))?;
        if r.messages != raw.messages {
            bail!(
                "the wire-level fetch got {} of {} messages",
                r.messages,
                raw.messages
            );
        }
        if best.is_none_or(|b| r.total < b.total) {
            best = Some(r);
        }
    }
    let w = best.context("no wire fetch ran")?;
    let per_s = |f: &RawFetch| f.messages as f64 / f.total.as_secs_f64();
    s.row(Row::vs(
        format!("{tag}: raw fetch without an IMAP library, msg/s"),
        rate(per_s(&w)),
        format!("{} async-imap", rate(per_s(raw))),
        Some(per_s(&w) / per_s(raw)),
    ));
    Ok(())
}

pub fn filed_time(run: &PollRun) -> Duration {
    run.filed.or(run.wall).unwrap_or_default()
}

fn ticketd_poll(
    ctx: &Ctx,
    user: &str,
    tls: Tls,
    data: &Path,
    perf: Option<&Path>,
    until_synced: bool,
) -> Result<PollRun> {
    let conf_dir = fresh_dir(&ctx.work, "ingest-conf")?;
    let config = child::write_config(
        &conf_dir,
        &ctx.rig,
        tls,
        user,
        ctx.sink.port,
        data,
        &ctx.templates,
    )?;
    child::poll_once(&ctx.ticketd, &config, perf, until_synced)
}

/// Messages ticketd stored (inbound), checked against what was written.
fn check_store(data: &Path, expect: usize) -> Result<usize> {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("ticketd.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM messages WHERE direction = 'in'",
        [],
        |r| r.get(0),
    )?;
    let last: i64 = conn.query_row(
        "SELECT coalesce(max(last_uid), 0) FROM mailbox_positions",
        [],
        |r| r.get(0),
    )?;
    if n as usize != expect || last as usize != expect {
        bail!("ticketd stored {n} of {expect} messages (position: last UID {last})");
    }
    Ok(n as usize)
}

fn throughput_rows(
    s: &mut Section,
    tag: &str,
    filled: &Filled,
    raw: &RawFetch,
    runs: &Runs,
    stored: usize,
    used: u64,
) {
    let (run, times) = (&runs.best, &runs.times);
    let filed = filed_time(run).as_secs_f64();
    let t_msgs = stored as f64 / filed;
    let r_msgs = raw.messages as f64 / raw.total.as_secs_f64();
    let ratio = t_msgs / r_msgs;
    s.row(
        Row::vs(
            format!("{tag}: msg/s"),
            rate(t_msgs),
            rate(r_msgs),
            Some(ratio),
        )
        .target(">= 0.5x raw", ratio >= 0.5),
    );
    let t_mb = filled.imap_bytes as f64 / 1e6 / filed;
    let r_mb = raw.bytes as f64 / 1e6 / raw.total.as_secs_f64();
    s.row(Row::vs(
        format!("{tag}: MB/s"),
        rate(t_mb),
        rate(r_mb),
        Some(t_mb / r_mb),
    ));
    s.row(Row::vs(
        format!("{tag}: time to all committed"),
        dur(Duration::from_secs_f64(filed)),
        dur(raw.total),
        Some(filed / raw.total.as_secs_f64()),
    ));
    let mut detail = match run.wall {
        Some(w) => format!(
            "wall incl. sending acks {}; CPU {}",
            dur(w),
            run.cpu.map(dur).unwrap_or_default()
        ),
        None => format!("CPU {}", run.cpu.map(dur).unwrap_or_default()),
    };
    if let (Some(cpu), None) = (run.cpu, run.wall) {
        detail.push_str(&format!(
            " ({:.0}% of the time to committed)",
            cpu.as_secs_f64() / filed * 100.0
        ));
    }
    if let Some(p) = run.peak_rss {
        detail.push_str(&format!("; peak RSS {}", mib(p)));
        if let Some((anon, file)) = run.peak_anon_file {
            detail.push_str(&format!(" (heap {}, files {})", mib(anon), mib(file)));
        }
    }
    detail.push_str(&format!("; store {}", mib(used)));
    if times.len() > 1 {
        let each: Vec<String> = times
            .iter()
            .map(|t| match t.peak_rss {
                Some(p) => format!("{} ({})", dur(t.filed), mib(p)),
                None => dur(t.filed),
            })
            .collect();
        detail.push_str(&format!(
            "; runs to all committed (peak RSS): {}",
            each.join(", ")
        ));
    }
    s.row(Row::info(format!("{tag}: ticketd detail"), detail));
    if let Some(st) = run.stages {
        s.row(Row::info(
            format!("{tag}: ticketd's stages busy, of the sync's time"),
            format!(
                "fetch {} ms, parse {} ms, file {} ms, of {} ms",
                st.fetch_ms, st.parse_ms, st.file_ms, st.took_ms
            ),
        ));
    }
    if !run.problems.is_empty() {
        s.note(format!(
            "{tag}: ticketd logged: {}",
            run.problems.join(" | ")
        ));
    }
}

/// Where ingest time goes: the same 1k poll with the store on tmpfs (no
/// disk flushes), and with --perf a CPU profile.
fn diagnose(
    ctx: &mut Ctx,
    s: &mut Section,
    label: &str,
    user: &str,
    disk: &PollRun,
    count: usize,
) -> Result<()> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        // As many runs as on disk, the best compared with the best there.
        let mut best: Option<PollRun> = None;
        for _ in 0..raw_runs(count) {
            let data = fresh_dir(shm, &format!("tdbench-{}", std::process::id()))?;
            let run = ticketd_poll(ctx, user, Tls::None, &data, None, true);
            let _ = std::fs::remove_dir_all(&data);
            let run = run?;
            if best
                .as_ref()
                .is_none_or(|b| filed_time(&run) < filed_time(b))
            {
                best = Some(run);
            }
        }
        let run = best.context("no run on tmpfs")?;
        let on_disk = filed_time(disk);
        let on_tmpfs = filed_time(&run);
        ctx.progress(&format!(
            "{label}, plain, store on tmpfs: filed in {} (CPU {})",
            dur(on_tmpfs),
            run.cpu.map(dur).unwrap_or_default()
        ));
        s.row(Row::vs(
            format!("{label}, plain: store on tmpfs (no disk flushes) msg/s"),
            rate(count as f64 / on_tmpfs.as_secs_f64()),
            rate(count as f64 / on_disk.as_secs_f64()),
            Some(on_disk.as_secs_f64() / on_tmpfs.as_secs_f64()),
        ));
        s.note(format!(
            "Diagnosis: with the data_dir on tmpfs (syncs cost nothing) the same poll takes {} instead of {} \
             ({} faster; best runs of each); CPU time {} vs {}. The difference is time spent waiting for the disk to \
             make blobs and commits durable; the rest is CPU and the IMAP round trips.",
            dur(on_tmpfs),
            dur(on_disk),
            ratio_text(on_disk.as_secs_f64() / on_tmpfs.as_secs_f64()),
            run.cpu.map(dur).unwrap_or_default(),
            disk.cpu.map(dur).unwrap_or_default()
        ));
    }
    if ctx.perf {
        let out = ctx.cache.join("perf-ingest.data");
        let data = fresh_dir(&ctx.work, "ingest-perf-run")?;
        ctx.progress(&format!(
            "{label}, plain: recording a CPU profile into {}",
            out.display()
        ));
        let run = ticketd_poll(ctx, user, Tls::None, &data, Some(&out), true);
        match run {
            Ok(_) => match perf_summary(&out) {
                Ok(top) => s.note(format!("CPU profile (perf, self time, top symbols): {top}")),
                Err(e) => s.note(format!("perf report failed: {e:#}")),
            },
            Err(e) => s.note(format!("perf record failed: {e:#}")),
        }
    }
    Ok(())
}

/// The top entries of `perf report` by self time, and the split between
/// ticketd's code, the kernel and libc, as one line.
fn perf_summary(data: &Path) -> Result<String> {
    let report = |sort: &str, limit: &str| -> Result<Vec<String>> {
        let out = std::process::Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--percent-limit",
                limit,
            ])
            .args(["--sort", sort, "-g", "none", "-i"])
            .arg(data)
            .output()?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('%'))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect())
    };
    let dsos = report("dso", "1")?;
    let symbols: Vec<String> = report("dso,symbol", "1.5")?
        .into_iter()
        .take(10)
        .map(|l| l.trim_end_matches(" - -").to_string())
        .collect();
    Ok(format!(
        "by binary: {}; top symbols: {}",
        dsos.join(", "),
        symbols.join("; ")
    ))
}

/// Cost per message as the mailbox grows, against the 1k case of the same mix.
fn growth(costs: &[Cost], s: &mut Section) {
    for mix in [Mix::Full, Mix::Light] {
        let Some(base) = costs.iter().find(|c| c.mix == mix && c.count == 1000) else {
            continue;
        };
        for c in costs.iter().filter(|c| c.mix == mix && c.count > 1000) {
            let grow = c.ticketd.as_secs_f64() / base.ticketd.as_secs_f64();
            let raw_grow = c.raw.as_secs_f64() / base.raw.as_secs_f64();
            s.row(
                Row::vs(
                    format!(
                        "{}k {}, plain: cost per message",
                        c.count / 1000,
                        mix.name()
                    ),
                    dur(c.ticketd),
                    format!("{} at 1k", dur(base.ticketd)),
                    Some(grow),
                )
                .target("<= 1.2x of 1k (linear, 20% noise)", grow <= 1.2),
            );
            let floor = match (c.floor, base.floor) {
                (Some(f), Some(b)) => format!(
                    "; the least a store must do {} ({} of its 1k figure)",
                    dur(f),
                    ratio_text(f.as_secs_f64() / b.as_secs_f64())
                ),
                _ => String::new(),
            };
            s.note(format!(
                "{}k {}: the raw fetch's cost per message is {} ({} of its 1k figure){floor}.",
                c.count / 1000,
                mix.name(),
                dur(c.raw),
                ratio_text(raw_grow)
            ));
        }
    }
}

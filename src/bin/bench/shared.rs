//! The ingest case of a shared mailbox: 1,000 messages of which one in ten
//! is support mail (`sharedgen`). ticketd runs `poll --once` with
//! `[intake] addresses = ["support@example.test"]`, so it fetches the
//! selection headers of everything and the bodies of the support mail only.
//! Its time is set beside two raw fetches of the same mailbox: the full
//! fetch (what reading every body costs) and the headers alone (the least
//! any client reads to pick its mail), and beside ticketd filing the same
//! support mail from a mailbox that holds nothing else. What ticketd filed
//! is checked against the support mail's Message-IDs, and what it read is
//! taken from Dovecot's own per-session byte counts in its log.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rusqlite::OpenFlags;

use crate::child::{self, PollRun, Tls, SUPPORT};
use crate::imapraw::{self, Conn, RawFetch};
use crate::ingest::{best_raw_fetch, filed_time};
use crate::report::{ratio_text, Row, Section};
use crate::sharedgen::{self, SharedFilled};
use crate::util::{dur, rate};
use crate::{fresh_dir, mailbox_for, Ctx};

/// ticketd runs of each kind; the median is reported.
const RUNS: usize = 5;

pub fn run_case(ctx: &mut Ctx, s: &mut Section, count: usize) -> Result<()> {
    let label = format!(
        "{} shared mailbox ({}% support)",
        if count >= 1000 && count % 1000 == 0 {
            format!("{}k", count / 1000)
        } else {
            count.to_string()
        },
        10
    );
    let user = format!("ingest-shared-{count}@example.test");
    let alone_user = format!("ingest-shared-{count}-alone@example.test");
    ctx.progress(&format!(
        "{label}: writing the mailboxes of {user} and {alone_user}"
    ));
    let maildir = mailbox_for(ctx, &user)?;
    let alone_dir = mailbox_for(ctx, &alone_user)?;
    let filled = sharedgen::fill_shared(
        &maildir,
        &alone_dir,
        count,
        5000 + count as u64,
        ctx.mail_owner,
    )?;
    ctx.progress(&format!(
        "{label}: {} in {}",
        filled.describe(),
        dur(filled.elapsed)
    ));
    let n_support = filled.support.count;
    for (u, expect) in [(&user, count), (&alone_user, n_support)] {
        let (n, _) = ctx
            .rt
            .block_on(imapraw::sync_index(ctx.rig.imap_port(), u))?;
        if n != expect {
            bail!("Dovecot sees {n} of the {expect} messages written for {u}");
        }
    }
    s.row(Row::info(
        format!("{label}: mailbox"),
        format!(
            "{} msgs, {:.0} MB, largest {:.1} MB; support {} msgs, {:.0} MB",
            filled.count,
            filled.imap_bytes as f64 / 1e6,
            filled.largest as f64 / 1e6,
            n_support,
            filled.support.imap_bytes as f64 / 1e6
        ),
    ));

    let tag = format!("{label}, plain");
    let raw = best_raw_fetch(ctx, &user, Tls::None, count)?;
    let headers = best_header_fetch(ctx, &user, count)?;
    ctx.progress(&format!(
        "{tag}: raw full fetch {} ({:.0} MB), headers only {} ({:.1} MB)",
        dur(raw.total),
        raw.bytes as f64 / 1e6,
        dur(headers.total),
        headers.bytes as f64 / 1e6
    ));

    // ticketd on the shared mailbox and on the support mail alone, runs
    // alternating so that drift on the machine touches both alike.
    let log = ctx.rig.dovecot_log();
    let mut shared_runs: Vec<PollRun> = Vec::new();
    let mut alone_runs: Vec<PollRun> = Vec::new();
    let mut filing: Option<Filing> = None;
    let mut traffic: Option<Traffic> = None;
    for k in 0..RUNS {
        let data = fresh_dir(&ctx.work, &format!("ingest-shared-{count}-run{k}"))?;
        let offset = (k == 0).then(|| quiet_log(&log));
        let run = poll(ctx, &user, &data, true)?;
        let f = check_filed(&data, &filled)?;
        if let Some(offset) = offset {
            traffic = traffic_since(&log, offset, &user);
            filing = Some(f);
        } else if Some(&f) != filing.as_ref() {
            bail!("run {k} filed other mail than the first run: {f:?} vs {filing:?}");
        }
        ctx.progress(&format!(
            "{tag}: ticketd filed {} in {} (CPU {})",
            filing.as_ref().map_or(0, |f| f.filed),
            dur(filed_time(&run)),
            run.cpu.map(dur).unwrap_or_default()
        ));
        shared_runs.push(run);

        let data = fresh_dir(&ctx.work, &format!("ingest-shared-{count}-alone{k}"))?;
        let run = poll(ctx, &alone_user, &data, false)?;
        let alone = check_filed(&data, &filled)?;
        if alone.filed != n_support || alone.missing != 0 {
            bail!("ticketd filed {alone:?} from the support-only mailbox");
        }
        ctx.progress(&format!(
            "{label}, support mail alone: ticketd filed {} in {}",
            alone.filed,
            dur(filed_time(&run))
        ));
        alone_runs.push(run);
    }
    let filing = filing.context("no ticketd run")?;
    let t = median(shared_runs.iter().map(filed_time).collect());
    let a = median(alone_runs.iter().map(filed_time).collect());
    let ts = t.as_secs_f64();

    s.row(
        Row::vs(
            format!("{tag}: filed exactly the support mail"),
            format!(
                "{} of {} support, {} of {} others",
                filing.filed - filing.extra,
                n_support,
                filing.extra,
                filled.others()
            ),
            format!("{n_support} support mails written"),
            None,
        )
        .target(
            "all support, nothing else",
            filing.missing == 0 && filing.extra == 0 && filing.position == count as i64,
        ),
    );
    s.row(Row::vs(
        format!("{tag}: time to all committed vs raw full fetch"),
        dur(t),
        dur(raw.total),
        Some(ts / raw.total.as_secs_f64()),
    ));
    s.row(Row::vs(
        format!("{tag}: time to all committed vs raw header-only fetch"),
        dur(t),
        dur(headers.total),
        Some(ts / headers.total.as_secs_f64()),
    ));
    let t_msgs = count as f64 / ts;
    let r_msgs = count as f64 / raw.total.as_secs_f64();
    s.row(Row::vs(
        format!("{tag}: msg/s over the whole mailbox"),
        rate(t_msgs),
        rate(r_msgs),
        Some(t_msgs / r_msgs),
    ));
    s.row(Row::vs(
        format!("{tag}: the {n_support} support mails alone in a mailbox, time to all committed"),
        dur(a),
        format!("{} shared", dur(t)),
        Some(a.as_secs_f64() / ts),
    ));
    let bound = headers.total * 2 + a;
    s.row(
        Row::vs(
            format!("{tag}: time to all committed vs 2x header-only fetch + support mail alone"),
            dur(t),
            dur(bound),
            Some(ts / bound.as_secs_f64()),
        )
        .target("<= 2x header-only + alone", t <= bound),
    );
    match &traffic {
        Some(tr) => s.row(Row::vs(
            format!("{tag}: bytes Dovecot sent to ticketd"),
            format!(
                "{:.1} MB ({} bodies, {} headers{})",
                tr.out as f64 / 1e6,
                tr.body_count,
                tr.hdr_count,
                if tr.sessions == 1 {
                    String::new()
                } else {
                    format!("; {} sessions", tr.sessions)
                }
            ),
            format!("{:.0} MB mailbox", filled.imap_bytes as f64 / 1e6),
            Some(tr.out as f64 / filled.imap_bytes as f64),
        )),
        None => s.note(format!(
            "{tag}: no `Logged out`/`Disconnected` line with byte counts for ticketd's session \
             was found in {}; the bytes ticketd read are not reported.",
            log.display()
        )),
    }
    let cpu = median(shared_runs.iter().filter_map(|r| r.cpu).collect());
    let peak = shared_runs.iter().filter_map(|r| r.peak_rss).max();
    s.row(Row::info(
        format!("{tag}: ticketd detail"),
        format!(
            "runs {}; CPU {} (median); peak RSS {}; alone runs {}",
            shared_runs
                .iter()
                .map(|r| dur(filed_time(r)))
                .collect::<Vec<_>>()
                .join(", "),
            dur(cpu),
            peak.map(crate::util::mib).unwrap_or_default(),
            alone_runs
                .iter()
                .map(|r| dur(filed_time(r)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    for r in shared_runs.iter().chain(&alone_runs) {
        if !r.problems.is_empty() {
            s.note(format!("{tag}: ticketd logged: {}", r.problems.join(" | ")));
            break;
        }
    }
    s.note(format!(
        "{label}: {}. The support mail is the full mix of the cases above (To and Delivered-To \
         the support address); the others go to info@, team@, sales@, inkoop@, marketing@ or \
         finance@ of the same mailbox. ticketd runs `poll --once` with `[intake] addresses = \
         [\"{SUPPORT}\"]` (subject rule and thread replies at their defaults), over plain IMAP, \
         until its `mailbox synced` line; median of {RUNS} runs, each on a fresh store, \
         alternating with the support-only runs. Baselines: `UID FETCH 1:* BODY.PEEK[]` and \
         `UID FETCH 1:* BODY.PEEK[HEADER]` with async-imap, connect and login included, best of \
         3 ({:.0} MB and {:.1} MB received).",
        filled.describe(),
        raw.bytes as f64 / 1e6,
        headers.bytes as f64 / 1e6
    ));
    s.note(format!(
        "{label}: the target is what selecting from headers may cost at most: reading the \
         headers of all {count} messages (counted twice, for the fetch and for parsing and \
         deciding) plus filing the {n_support} support mails from a mailbox that holds only \
         them (`poll --once` without `[intake]`, median of {RUNS}; its own start-up and login \
         are in it, so the bound is loose by one start-up). Fetching the other bodies would \
         add about the full fetch ({}) and miss it by {}.",
        dur(raw.total),
        ratio_text((ts + raw.total.as_secs_f64()) / bound.as_secs_f64())
    ));
    if let Some(tr) = &traffic {
        s.note(format!(
            "{label}: bytes from Dovecot's own count for ticketd's IMAP session{} in the first \
             run (`out=` in its logout line; `body_count` {} mails with {:.1} MB of body, \
             `hdr_count` {} with {:.1} MB of header), against {:.0} MB for the whole mailbox \
             ({:.0} MB of it the support mail).",
            if tr.sessions == 1 {
                String::new()
            } else {
                format!("s ({} of them)", tr.sessions)
            },
            tr.body_count,
            tr.body_bytes as f64 / 1e6,
            tr.hdr_count,
            tr.hdr_bytes as f64 / 1e6,
            filled.imap_bytes as f64 / 1e6,
            filled.support.imap_bytes as f64 / 1e6
        ));
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn best_header_fetch(ctx: &Ctx, user: &str, expect: usize) -> Result<RawFetch> {
    let mut best: Option<RawFetch> = None;
    for _ in 0..3 {
        let r = ctx.rt.block_on(imapraw::fetch_headers(
            Conn::Plain(ctx.rig.imap_port()),
            user,
        ))?;
        if r.messages != expect {
            bail!("the header fetch got {} of {expect} messages", r.messages);
        }
        if best.is_none_or(|b| r.total < b.total) {
            best = Some(r);
        }
    }
    best.context("no header fetch ran")
}

/// `ticketd poll --once` on `user`'s mailbox, with or without the
/// `[intake]` rules, stopped once all is committed (acks go to the sink).
fn poll(ctx: &Ctx, user: &str, data: &Path, intake: bool) -> Result<PollRun> {
    let conf_dir = fresh_dir(&ctx.work, "ingest-shared-conf")?;
    let config = child::write_config(
        &conf_dir,
        &ctx.rig,
        Tls::None,
        user,
        ctx.sink.port,
        data,
        &ctx.templates,
    )?;
    if intake {
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(&format!("\n[intake]\naddresses = [\"{SUPPORT}\"]\n"));
        std::fs::write(&config, text)?;
    }
    child::poll_once(&ctx.ticketd, &config, None, true)
}

/// What one run filed, against the support mail written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filing {
    /// Inbound messages in the store.
    filed: usize,
    /// Support mails not in the store.
    missing: usize,
    /// Stored messages that are not support mail.
    extra: usize,
    /// The mailbox position (last UID) ticketd recorded.
    position: i64,
}

fn check_filed(data: &Path, filled: &SharedFilled) -> Result<Filing> {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("ticketd.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = conn.prepare("SELECT message_id FROM messages WHERE direction = 'in'")?;
    let stored: BTreeSet<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let support: BTreeSet<String> = filled.support_ids.iter().cloned().collect();
    if support.len() != filled.support.count {
        bail!(
            "the generated support mail has {} distinct Message-IDs for {} messages",
            support.len(),
            filled.support.count
        );
    }
    let position: i64 = conn.query_row(
        "SELECT coalesce(max(last_uid), 0) FROM mailbox_positions",
        [],
        |r| r.get(0),
    )?;
    Ok(Filing {
        filed: stored.len(),
        missing: support.difference(&stored).count(),
        extra: stored.difference(&support).count(),
        position,
    })
}

/// Dovecot's count of one user's IMAP sessions, from the logout line it
/// writes when a session ends (`imap_logout_format`: in=, out=, hdr_count,
/// hdr_bytes, body_count, body_bytes).
#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    sessions: usize,
    out: u64,
    hdr_count: u64,
    hdr_bytes: u64,
    body_count: u64,
    body_bytes: u64,
}

/// Waits until Dovecot's log has not grown for 300 ms (at most 5 s), so
/// the logout lines of the bench's own fetches are written before ticketd
/// connects; returns the log's length then.
fn quiet_log(log: &Path) -> u64 {
    let len = || std::fs::metadata(log).map_or(0, |m| m.len());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = len();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = len();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_millis(300) {
            break;
        }
    }
    last
}

/// The sessions of `user` that ended after `offset` in Dovecot's log,
/// waiting a few seconds for the line (the log is written by Dovecot's
/// log process, a little after the disconnect).
fn traffic_since(log: &Path, offset: u64, user: &str) -> Option<Traffic> {
    let needle = format!("imap({user})");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut text = String::new();
        let mut f = std::fs::File::open(log).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        f.read_to_string(&mut text).ok()?;
        let mut t = Traffic::default();
        let mut found = false;
        for line in text.lines().filter(|l| l.contains(&needle)) {
            if !line.contains(" out=") {
                continue;
            }
            found = true;
            t.sessions += 1;
            for field in line.split_whitespace() {
                let Some((k, v)) = field.split_once('=') else {
                    continue;
                };
                let Ok(v) = v.trim_end_matches(',').parse::<u64>() else {
                    continue;
                };
                match k {
                    "out" => t.out += v,
                    "hdr_count" => t.hdr_count += v,
                    "hdr_bytes" => t.hdr_bytes += v,
                    "body_count" => t.body_count += v,
                    "body_bytes" => t.body_bytes += v,
                    _ => {}
                }
            }
        }
        if found {
            return Some(t);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

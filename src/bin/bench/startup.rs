//! Scenario 4: start-up and size. Time from exec of `ticketd run` until
//! READY=1 arrives on the sd_notify socket the bench hands it, with an
//! empty store (baseline) and with the 1M-message store; what the bench's
//! own IMAP login + EXAMINE takes (the floor READY waits for); and the size
//! of the release binary.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::child::{self, Launch, NotifySocket, Ticketd, Tls};
use crate::imapraw::{self, Conn};
use crate::report::{Row, Section};
use crate::storegen;
use crate::util::{dur, mib, Spread};
use crate::{fresh_dir, mailbox_for, Ctx};

pub const TITLE: &str = "4. Start-up and size";

/// The mailbox `run` watches in the start-up and idle scenarios: empty, so
/// READY comes right after the first (trivial) sync.
pub const IDLE_USER: &str = "idle@example.test";

/// Starts `ticketd run` and waits for READY; returns the daemon and how
/// long READY took from exec.
pub fn start_run(
    ctx: &Ctx,
    config: &std::path::Path,
    notify: &NotifySocket,
    keep: fn(&str) -> bool,
) -> Result<(Ticketd, Duration)> {
    notify.drain();
    let mut t = Ticketd::start(&Launch {
        binary: &ctx.ticketd,
        config,
        args: &["run"],
        notify: Some(&notify.path),
        keep,
        perf: None,
    })?;
    match notify.wait_ready(Duration::from_secs(60)) {
        Some(at) => {
            let took = at.duration_since(t.started);
            Ok((t, took))
        }
        None => {
            let status = t.stop(Duration::from_secs(5));
            bail!(
                "ticketd run sent no READY=1 within 60 s (exit: {status:?}):\n{}",
                t.log_dump()
            )
        }
    }
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let mut s = Section::new("startup", TITLE);
    let store = storegen::ensure(ctx)?;
    mailbox_for(ctx, IDLE_USER)?;
    let notify = NotifySocket::bind(ctx.work.join("notify.sock"))?;
    let reps = if ctx.quick { 3 } else { 7 };

    let empty_data = fresh_dir(&ctx.work, "startup-empty")?;
    let configs = [
        ("empty store", empty_data.clone()),
        ("1M-message store", store.data_dir.clone()),
    ];
    let mut results = Vec::new();
    for (label, data) in &configs {
        let conf = child::write_config(
            &ctx.work.join(format!("startup-conf-{}", results.len())),
            &ctx.rig,
            Tls::None,
            IDLE_USER,
            ctx.sink.port,
            data,
            &ctx.templates,
        )?;
        let mut ready = Vec::new();
        let mut stops = Vec::new();
        for i in 0..reps {
            let (mut t, took) = start_run(ctx, &conf, &notify, |_| false)
                .with_context(|| format!("start {} with the {label}", i + 1))?;
            ready.push(took);
            let stop = Instant::now();
            let status = t.stop(Duration::from_secs(20));
            stops.push(stop.elapsed());
            if !status.is_some_and(|s| s.success()) {
                bail!("ticketd run did not exit 0 on SIGTERM ({status:?})");
            }
        }
        ctx.progress(&format!(
            "startup with the {label}: READY after {} (median of {reps})",
            dur(Spread::of(&ready).p50)
        ));
        results.push((label, Spread::of(&ready), Spread::of(&stops), ready));
    }

    // The floor: connect, log in and EXAMINE from the bench itself.
    let port = ctx.rig.imap_port();
    let mut logins = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        ctx.rt.block_on(async {
            let mut sess = imapraw::login(Conn::Plain(port), IDLE_USER).await?;
            sess.examine("INBOX").await?;
            let _ = sess.logout().await;
            anyhow::Ok(())
        })?;
        logins.push(t.elapsed());
    }
    let login = Spread::of(&logins);

    let (empty, big) = (&results[0], &results[1]);
    s.row(Row::vs(
        "exec to READY, empty store (median)",
        dur(empty.1.p50),
        format!("{} IMAP login+EXAMINE", dur(login.p50)),
        Some(empty.1.p50.as_secs_f64() / login.p50.as_secs_f64()),
    ));
    s.row(Row::vs(
        "exec to READY, 1M-message store (median)",
        dur(big.1.p50),
        format!("{} empty store", dur(empty.1.p50)),
        Some(big.1.p50.as_secs_f64() / empty.1.p50.as_secs_f64()),
    ));
    s.row(Row::info(
        "exec to READY, 1M-message store (max)",
        dur(big.1.max),
    ));
    s.row(Row::info(
        "SIGTERM to exit (median, empty / 1M)",
        format!("{} / {}", dur(empty.2.p50), dur(big.2.p50)),
    ));
    let size = std::fs::metadata(&ctx.ticketd)?.len();
    s.row(Row::info(
        "release binary size (target/release/ticketd, stripped, thin LTO)",
        format!("{} ({} bytes)", mib(size), size),
    ));
    s.row(Row::info(
        "1M-message store on disk",
        format!("{:.2} GB", store.db_bytes as f64 / 1e9),
    ));
    s.note(format!(
        "READY is ticketd's sd_notify READY=1 on a socket the bench passes in NOTIFY_SOCKET; it is \
         sent after the store is open and the (empty) mailbox has been EXAMINEd and synced once. \
         {reps} starts each, page cache warm; all samples empty: {}; 1M: {}.",
        results[0].3.iter().map(|d| dur(*d)).collect::<Vec<_>>().join(", "),
        results[1].3.iter().map(|d| dur(*d)).collect::<Vec<_>>().join(", ")
    ));
    Ok(s)
}

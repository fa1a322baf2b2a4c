//! Wiring for `run` and `poll`: the IMAP watcher in the foreground, the
//! outbox sender beside it, and shutdown as a value handed to both, so
//! SIGTERM lets the message in hand commit before the process exits.

use std::sync::Arc;
use std::time::Duration;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::ack::{AckError, AckTemplates};
use crate::config::{Config, ImapConfig, SmtpConfig};
use crate::imap::{self, Hooks, ImapError};
use crate::ingest::Ingestor;
use crate::metrics;
use crate::service;
use crate::smtp::{self, SmtpError};
use crate::store::{Store, StoreError};

/// Tells long-running work to stop at the next safe point.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// Keeps the channel open for a `never` shutdown: with its sender
    /// gone, `wait` would resolve at once.
    _keep: Option<Arc<watch::Sender<bool>>>,
}

pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx, _keep: None })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// One that is never asked for: for one-shot commands.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            _keep: Some(Arc::new(tx)),
        }
    }

    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is requested.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("no [imap] section in the config: `run` and `poll` need one")]
    NoImap,
    #[error(transparent)]
    Imap(#[from] ImapError),
    #[error(transparent)]
    Smtp(#[from] SmtpError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Templates(#[from] AckError),
    #[error("cannot listen on {addr} for metrics: {error}; another process has the port, or set metrics.listen to a free one")]
    Metrics {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    /// A mailbox watcher's task ended without finishing (cancelled).
    #[error("a mailbox watcher stopped: {0}")]
    Watcher(String),
}

/// Reconnect delay after the n-th consecutive failure: 1 s doubling to 60 s.
fn reconnect_delay(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(6)).min(60))
}

/// After a refused login: 5 minutes, doubling up to an hour. A wrong
/// password retried every minute is what gets a mailbox locked (Google and
/// Microsoft lock accounts after a run of failed logins).
fn login_retry_delay(failures: u32) -> Duration {
    Duration::from_secs((300u64 << failures.min(4)).min(3600))
}

/// Up to half as much again, so many daemons don't reconnect in step.
fn with_jitter(delay: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let noise = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = delay.as_millis() as u64 / 2 + 1;
    delay + Duration::from_millis(noise % half)
}

async fn outbox_worker(
    mut store: Store,
    smtp_cfg: SmtpConfig,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    // Secrets from a command (OAuth2 tokens) are fetched at each connect.
    let transport = match smtp::transport(&smtp_cfg) {
        Ok(t) => t,
        Err(e) => {
            error!(error = %e, "outbox: cannot set up SMTP; acknowledgements stay queued");
            return;
        }
    };
    let mut refusals = 0u32;
    loop {
        // While another process (a `reply --send`) holds the outbox, look
        // again every second or so rather than at once; while the store
        // refuses, every few seconds.
        let mut least = Duration::from_millis(200);
        match smtp::deliver_due(&mut store, &transport, &shutdown).await {
            Ok(stats) if stats.login_refused => {
                // Not at every new ack either: minutes, as for IMAP.
                let wait = with_jitter(login_retry_delay(refusals));
                refusals = refusals.saturating_add(1);
                error!(
                    retry_in = ?wait,
                    "outbox: SMTP login refused; tried again only after a long wait, so the \
                     account is not locked for too many failed logins (a restart tries at once)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = shutdown.wait() => return,
                }
            }
            Ok(stats) if stats.elsewhere => least = Duration::from_secs(1),
            Ok(stats) => {
                if stats.sent > 0 {
                    refusals = 0;
                }
            }
            Err(e) => {
                error!(error = %e, "outbox: cannot read or update the queue");
                least = Duration::from_secs(5);
            }
        }
        let now = chrono::Utc::now().timestamp();
        let sleep = match store.outbox_next_due() {
            Ok(Some(due)) => Duration::from_secs(due.saturating_sub(now).clamp(0, 60) as u64),
            _ => Duration::from_secs(60),
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep.max(least)) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// How often the IMAP side must show signs of life: a third of the systemd
/// watchdog period, else two minutes. Renewing IDLE that often finds a
/// connection that died silently (a NAT or firewall dropping it) within
/// minutes, and keeps such middleboxes from dropping it in the first place.
fn keepalive() -> Duration {
    service::watchdog_interval()
        .map(|w| (w / 3).max(Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(120))
}

/// What the mailbox watchers of `run` share: READY once, the outbox's
/// wake-up, the live figures.
struct Watchers {
    ready: AtomicBool,
    wake: Arc<Notify>,
    live: Arc<metrics::Live>,
}

impl Watchers {
    /// READY once, and only with what reading a mail needs built (the
    /// warm-up thread main started has usually done so by then): the
    /// daemon's memory at READY is what it idles with.
    fn become_ready(&self, what: &str) -> bool {
        let first = !self.ready.swap(true, Ordering::SeqCst);
        if first {
            crate::core::warm_up();
            service::ready(what);
        }
        first
    }

    fn on_filed(&self, stats: &imap::SyncStats) {
        self.live.filed(stats);
        self.wake.notify_one();
    }

    /// Through a backlog, batch by batch: READY does not wait for the
    /// whole of it (TimeoutStartSec), the watchdog hears of progress, and
    /// the acks of what is filed go out meanwhile.
    fn on_committed(&self, filed: usize) {
        self.wake.notify_one();
        let what = format!("filing mail: {filed} filed in this pass so far");
        self.become_ready(&what);
        service::alive(&what);
    }

    fn on_alive(&self, mailbox: &str, what: &str) {
        self.live.synced(mailbox);
        if !self.become_ready(what) {
            service::status(what);
        }
        service::watchdog();
    }

    /// The mail server down or refusing the login at start: the service is
    /// up all the same (its web page, metrics and outbox run, and it keeps
    /// trying); systemd hears why, and does not restart it in a loop.
    fn on_down(&self, what: &str) {
        if !self.become_ready(what) {
            service::status(what);
        }
        service::watchdog();
    }
}

/// Watches one mailbox until `stop`, reconnecting after any failure.
#[allow(clippy::too_many_arguments)]
async fn mailbox_loop(
    config: &Config,
    imap_cfg: &ImapConfig,
    mailbox: &str,
    templates: &AckTemplates,
    stop: &Shutdown,
    hooks: &Hooks<'_>,
    on_down: &(dyn Fn(&str) + Sync),
    live: &metrics::Live,
) -> Result<(), DaemonError> {
    let mut store = Store::open(&config.data_dir)?;
    store.checkpoint_in_background()?;
    let ingestor = Ingestor { config, templates };
    let (mut failures, mut refusals) = (0u32, 0u32);
    while !stop.is_requested() {
        let started = std::time::Instant::now();
        match imap::watch(imap_cfg, mailbox, &mut store, &ingestor, stop, false, hooks).await {
            Ok(()) => (failures, refusals) = (0, 0),
            Err(e) => {
                // A connection that worked for a while was healthy: start
                // the backoff afresh instead of where the last outage left it.
                if started.elapsed() > Duration::from_secs(60) {
                    (failures, refusals) = (0, 0);
                }
                live.reconnect();
                let refused = matches!(e, ImapError::Login { .. });
                let delay = with_jitter(if refused {
                    refusals = refusals.saturating_add(1);
                    login_retry_delay(refusals - 1)
                } else {
                    reconnect_delay(failures)
                });
                failures = failures.saturating_add(1);
                match &e {
                    ImapError::Store(_) => {
                        error!(mailbox, error = %e, retry_in = ?delay, "cannot write to the store; the message is retried")
                    }
                    ImapError::Login { .. } => error!(
                        mailbox, error = %e, retry_in = ?delay,
                        "IMAP login refused; tried again only after a long wait, so the account \
                         is not locked for too many failed logins (`systemctl reload ticketd` \
                         tries at once)"
                    ),
                    _ => error!(mailbox, error = %e, retry_in = ?delay, "IMAP connection failed"),
                }
                // Up, and waiting for the server: READY (if not yet) with
                // the reason, and still alive for the watchdog, as the wait
                // is bounded and the loop goes on.
                on_down(&format!("{mailbox}: {e}; retrying in {}s", delay.as_secs()));
                // Minutes after a refused login: the watchdog (WatchdogSec)
                // hears from the wait as it does from IDLE.
                let until = tokio::time::Instant::now() + delay;
                while tokio::time::Instant::now() < until {
                    let step = keepalive().min(until - tokio::time::Instant::now());
                    tokio::select! {
                        _ = tokio::time::sleep(step) => service::watchdog(),
                        _ = stop.wait() => break,
                    }
                }
            }
        }
    }
    Ok(())
}

/// `ticketd poll --once`: every mailbox once, then the due outbox.
/// With `report`, a dry run: each new message's intake decision is passed
/// to it and nothing is filed or sent.
pub async fn poll_once(
    config: &Config,
    templates: &AckTemplates,
    report: Option<&(dyn Fn(String) + Sync)>,
) -> Result<(), DaemonError> {
    let imap_cfg = config.imap.as_ref().ok_or(DaemonError::NoImap)?;
    let mut store = Store::open(&config.data_dir)?;
    store.checkpoint_in_background()?;
    let ingestor = Ingestor { config, templates };
    let (_never, shutdown) = shutdown_channel();
    let hooks = Hooks {
        on_filed: &|_| {},
        on_alive: &|_, _| {},
        on_committed: &|_| {},
        keepalive: keepalive(),
        report,
    };
    for mailbox in &imap_cfg.mailboxes {
        imap::watch(
            imap_cfg, mailbox, &mut store, &ingestor, &shutdown, true, &hooks,
        )
        .await?;
    }
    if report.is_some() {
        return Ok(());
    }
    if let Some(smtp_cfg) = &config.smtp {
        let t = smtp::transport(smtp_cfg)?;
        let stats = smtp::deliver_due(&mut store, &t, &shutdown).await?;
        if stats.elsewhere {
            info!("outbox: another ticketd is sending it; the due items go out from there");
        } else if stats.sent + stats.failed > 0 {
            info!(sent = stats.sent, failed = stats.failed, "outbox delivered");
        }
    }
    Ok(())
}

/// `ticketd run`: watches every mailbox and sends the outbox until
/// `shutdown`. Each `reload` (SIGHUP) re-reads the config file and the
/// templates and restarts the watchers with them; a broken new config or
/// template is logged and the running one kept.
pub async fn run(
    config_path: &Path,
    mut config: Config,
    shutdown: Shutdown,
    mut reload: watch::Receiver<u64>,
) -> Result<(), DaemonError> {
    let mut templates = Arc::new(AckTemplates::load(&config.tickets.templates_dir)?);
    config.imap.as_ref().ok_or(DaemonError::NoImap)?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .map_err(|error| DaemonError::Metrics { addr, error })?,
        ),
        None => None,
    };
    let wake = Arc::new(Notify::new());
    let worker = match &config.smtp {
        Some(smtp_cfg) => {
            smtp::transport(smtp_cfg)?;
            let s = Store::open(&config.data_dir)?;
            Some(tokio::spawn(outbox_worker(
                s,
                smtp_cfg.clone(),
                wake.clone(),
                shutdown.clone(),
            )))
        }
        None => {
            warn!("no [smtp] section: acknowledgements are not sent");
            None
        }
    };

    let live = Arc::new(metrics::Live::default());
    if let Some(imap) = &config.imap {
        live.watching(&imap.mailboxes);
    }
    let metrics_task = metrics_listener.map(|listener| {
        let (live, data_dir, stop) = (live.clone(), config.data_dir.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, &data_dir, live, stop).await {
                error!(error = %e, "metrics endpoint stopped");
            }
        })
    });
    let shared = Arc::new(Watchers {
        ready: AtomicBool::new(false),
        wake: wake.clone(),
        live: live.clone(),
    });
    loop {
        let Some(imap_cfg) = config.imap.clone() else {
            return Err(DaemonError::NoImap);
        };
        info!(mailboxes = ?imap_cfg.mailboxes, host = %imap_cfg.host, "watching");
        let (round_trigger, round) = shutdown_channel();
        let forward = async {
            tokio::select! {
                _ = shutdown.wait() => {}
                _ = reload.changed() => {}
            }
            round_trigger.trigger();
        };
        // A task of its own for each mailbox: filing blocks its task's
        // thread (block_in_place), and a second mailbox in the same task
        // was seen to sit on its server's answer until the first one's
        // server sent something (11 s, and longer).
        let mut watchers = tokio::task::JoinSet::new();
        for mailbox in &imap_cfg.mailboxes {
            let (shared, config, imap_cfg, templates, round, mailbox) = (
                shared.clone(),
                config.clone(),
                imap_cfg.clone(),
                templates.clone(),
                round.clone(),
                mailbox.clone(),
            );
            watchers.spawn(async move {
                let on_filed = |stats: &imap::SyncStats| shared.on_filed(stats);
                let on_alive = |mailbox: &str, what: &str| shared.on_alive(mailbox, what);
                let on_committed = |filed: usize| shared.on_committed(filed);
                let on_down = |what: &str| shared.on_down(what);
                let hooks = Hooks {
                    on_filed: &on_filed,
                    on_alive: &on_alive,
                    on_committed: &on_committed,
                    keepalive: keepalive(),
                    report: None,
                };
                mailbox_loop(
                    &config,
                    &imap_cfg,
                    &mailbox,
                    &templates,
                    &round,
                    &hooks,
                    &on_down,
                    &shared.live,
                )
                .await
            });
        }
        let watchers = async {
            let mut results = Vec::new();
            while let Some(r) = watchers.join_next().await {
                results.push(r.unwrap_or_else(|e| match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => Err(DaemonError::Watcher(e.to_string())),
                }));
            }
            results
        };
        let (_, results) = tokio::join!(forward, watchers);
        for r in results {
            if let Err(e) = r {
                error!(error = %e, "mailbox watcher stopped");
            }
        }
        if shutdown.is_requested() {
            break;
        }
        service::reloading();
        match reload_config(config_path, &config) {
            Ok((c, t)) => {
                config = c;
                templates = Arc::new(t);
                info!("configuration and templates reloaded");
            }
            Err(e) => error!(error = %e, "reload failed; keeping the running configuration"),
        }
        service::ready("reloaded");
    }
    service::stopping();
    if let Some(w) = worker {
        let _ = w.await;
    }
    if let Some(m) = metrics_task {
        let _ = m.await;
    }
    info!("stopped");
    Ok(())
}

/// Reads the config and templates again. Only what can change safely is
/// taken: ticket settings and templates. Connection and store settings
/// need a restart, and a change to them is logged as such.
fn reload_config(path: &Path, running: &Config) -> Result<(Config, AckTemplates), String> {
    let new = Config::load(path).map_err(|e| e.to_string())?;
    let templates = AckTemplates::load(&new.tickets.templates_dir).map_err(|e| e.to_string())?;
    if new.data_dir != running.data_dir {
        warn!("store.data_dir changed: restart ticketd to use it");
    }
    if format!("{:?}", new.imap) != format!("{:?}", running.imap)
        || format!("{:?}", new.smtp) != format!("{:?}", running.smtp)
    {
        warn!("[imap] or [smtp] changed: restart ticketd to use the new connection settings");
    }
    let mut config = running.clone();
    config.tickets = new.tickets;
    config.max_message_bytes = new.max_message_bytes;
    Ok((config, templates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_login_waits_minutes_not_seconds() {
        assert_eq!(login_retry_delay(0), Duration::from_secs(300));
        assert_eq!(login_retry_delay(1), Duration::from_secs(600));
        assert_eq!(login_retry_delay(3), Duration::from_secs(2400));
        assert_eq!(login_retry_delay(30), Duration::from_secs(3600));
    }

    #[test]
    fn reconnect_backs_off_to_a_minute() {
        assert_eq!(reconnect_delay(0), Duration::from_secs(1));
        assert_eq!(reconnect_delay(3), Duration::from_secs(8));
        assert_eq!(reconnect_delay(30), Duration::from_secs(60));
    }
}

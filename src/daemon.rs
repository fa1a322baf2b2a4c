//! Wiring for `run` and `poll`: the IMAP watcher in the foreground, the
//! outbox sender beside it, and shutdown as a value handed to both, so
//! SIGTERM lets the message in hand commit before the process exits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::ack::AckTemplates;
use crate::config::Config;
use crate::imap::{self, ImapError};
use crate::ingest::Ingestor;
use crate::smtp::{self, SmtpError, Transport};
use crate::store::{Store, StoreError};

/// Tells long-running work to stop at the next safe point.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
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
}

/// Reconnect delay after the n-th consecutive failure: 1 s doubling to 60 s.
fn reconnect_delay(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(6)).min(60))
}

async fn outbox_worker(
    mut store: Store,
    transport: Transport,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    loop {
        if let Err(e) = smtp::deliver_due(&mut store, &transport).await {
            error!(error = %e, "outbox: cannot read or update the queue");
        }
        let now = chrono::Utc::now().timestamp();
        let sleep = match store.outbox_next_due() {
            Ok(Some(due)) => Duration::from_secs(due.saturating_sub(now).clamp(0, 60) as u64),
            _ => Duration::from_secs(60),
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep.max(Duration::from_millis(200))) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// `ticketd run` (once = false) and `ticketd poll --once` (once = true).
pub async fn run(
    config: &Config,
    templates: &AckTemplates,
    once: bool,
    shutdown: Shutdown,
) -> Result<(), DaemonError> {
    let imap_cfg = config.imap.as_ref().ok_or(DaemonError::NoImap)?;
    let mut store = Store::open(&config.data_dir)?;
    let transport = config.smtp.as_ref().map(smtp::transport).transpose()?;
    let ingestor = Ingestor { config, templates };
    let wake = Arc::new(Notify::new());

    if once {
        imap::watch(imap_cfg, &mut store, &ingestor, &shutdown, true, &|| {}).await?;
        if let Some(t) = &transport {
            let stats = smtp::deliver_due(&mut store, t).await?;
            if stats.sent + stats.failed > 0 {
                info!(sent = stats.sent, failed = stats.failed, "outbox delivered");
            }
        }
        return Ok(());
    }

    let worker = transport.map(|t| {
        let outbox_store = Store::open(&config.data_dir);
        (outbox_store, t)
    });
    let worker = match worker {
        Some((Ok(s), t)) => Some(tokio::spawn(outbox_worker(
            s,
            t,
            wake.clone(),
            shutdown.clone(),
        ))),
        Some((Err(e), _)) => return Err(e.into()),
        None => {
            warn!("no [smtp] section: acknowledgements are not sent");
            None
        }
    };

    info!(mailbox = %imap_cfg.mailbox, host = %imap_cfg.host, "watching");
    let notify = wake.clone();
    let on_filed = move || notify.notify_one();
    let mut failures = 0u32;
    while !shutdown.is_requested() {
        match imap::watch(imap_cfg, &mut store, &ingestor, &shutdown, false, &on_filed).await {
            Ok(()) => failures = 0,
            Err(e) => {
                let delay = reconnect_delay(failures);
                failures = failures.saturating_add(1);
                error!(error = %e, retry_in = ?delay, "IMAP connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
    if let Some(w) = worker {
        let _ = w.await;
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backs_off_to_a_minute() {
        assert_eq!(reconnect_delay(0), Duration::from_secs(1));
        assert_eq!(reconnect_delay(3), Duration::from_secs(8));
        assert_eq!(reconnect_delay(30), Duration::from_secs(60));
    }
}

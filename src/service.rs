//! Talking to systemd: READY once the first pass over the mailbox is done
//! or the first batch of a backlog filed, STATUS lines saying what the
//! daemon does, and watchdog pings from the main loop and the filing.
//! Every call is a no-op outside systemd.

use std::time::Duration;

use sd_notify::NotifyState;

pub fn ready(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Status(status)]);
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

pub fn reloading() {
    let _ = sd_notify::notify(false, &[NotifyState::Reloading]);
}

/// Proves the main loop is alive. Called only from places that just
/// finished a bounded IMAP round trip, so a hung read stops the pings.
pub fn watchdog() {
    let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
}

/// A watchdog ping with what the daemon is doing, in one message: for
/// progress through long work (a backlog filed batch by batch).
pub fn alive(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Watchdog, NotifyState::Status(status)]);
}

/// The watchdog period systemd expects pings within, if it set one.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

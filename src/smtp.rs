//! Sends what the outbox holds. Each row is a complete message built at
//! enqueue time (its Message-ID fixed then), so a resend after a crash is
//! recognisably the same mail. A failed send stays queued and is retried
//! with capped exponential backoff.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tracing::{debug, error, info, warn};

use crate::config::{AuthMethod, SecretSource, SmtpConfig, TlsMode};
use crate::daemon::Shutdown;
use crate::net::{self, MailStream};
use crate::store::{AttemptFailure, OutboxItem, OutboxLock, Store, StoreError};

/// After the server has refused a message this many times (about half a
/// day with the backoff below) the item is marked failed and waits for an
/// operator. Rounds in which the server could not be reached, did not
/// answer in time before the message went out, or answered 421 (service
/// not available), only delay it. No answer after the message went out
/// counts as a refusal: the server may have delivered it.
pub const MAX_ATTEMPTS: i64 = 20;
/// Sends with no answer after the message: each may have reached the buyer,
/// so an item is given up after this many (see `SendFailure::uncertain`).
pub const MAX_UNCERTAIN: i64 = 3;
const BACKOFF_FIRST_SECS: i64 = 5;
const BACKOFF_CAP_SECS: i64 = 3600;
/// Marking a sent item sent is tried this often, the waits between tries
/// doubling from MARK_RETRY_FIRST (about 8 s in all, plus whatever the
/// store's busy timeout waits each time), before the item is only
/// remembered (see `SENT_UNMARKED`).
const MARK_TRIES: u32 = 6;
const MARK_RETRY_FIRST: Duration = Duration::from_millis(250);
/// On shutdown, how long a send in hand may still take before it is
/// abandoned (it stays queued). With the store's 10 s busy timeout for the
/// mark after it, `run` still stops within systemd's TimeoutStopSec (30 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the QUIT after a timed-out send may wait for its answer.
const ABORT_WAIT: Duration = Duration::from_secs(2);

/// In the data directory: the Message-ID of each mail the SMTP server
/// took, one per line, written before the store marks it sent. A process
/// that stops before the mark (the store refused it until then, a crash
/// between the two) leaves it there, and the next sender marks it sent
/// instead of sending it again; then the file is emptied.
pub const SENT_LOG: &str = "outbox-sent.log";

/// Writes down that the server took `message_id` (see [`SENT_LOG`]).
fn write_down_sent(data_dir: &Path, message_id: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(SENT_LOG);
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            // Written by root (`reply --send` under sudo): the service's
            // user must still write and empty it.
            if let Some((uid, gid)) = crate::store::service_owner(data_dir)? {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
            f.write_all(format!("{message_id}\n").as_bytes())
        });
    if let Err(e) = written {
        warn!(path = %path.display(), %message_id, error = %e,
            "outbox: cannot write down a sent mail; a stop before it is marked sent would send it again");
    }
}

/// Marks sent what an earlier process wrote down as sent but did not
/// mark, then empties the file. Run holding the outbox lock, so no other
/// sender writes to it meanwhile.
fn settle_sent_log(store: &Store) -> Result<(), StoreError> {
    let path = store.data_dir().join(SENT_LOG);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) if text.is_empty() => return Ok(()),
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "outbox: cannot read the log of sent mail");
            return Ok(());
        }
    };
    let now = Utc::now().timestamp();
    for message_id in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if store.outbox_sent_by_message_id(message_id, now)? {
            info!(%message_id,
                "outbox: the SMTP server took this before the last stop, but it was not marked sent; marked sent now, not sent again");
        }
    }
    if let Err(e) = std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(0))
    {
        warn!(path = %path.display(), error = %e, "outbox: cannot empty the log of sent mail");
    }
    Ok(())
}

/// Items this process handed to the SMTP server (250) but could not mark
/// sent, by data directory: never sent again by this process, and marked
/// sent as soon as the store takes writes again.
static SENT_UNMARKED: Mutex<Vec<Unmarked>> = Mutex::new(Vec::new());

/// The outbox locks this process keeps while it holds items sent but
/// unmarked, by data directory: the list above is this process's memory
/// only, so no other process (`poll`, `ingest --send`) may send the
/// outbox meanwhile. Taken up again by the next `deliver_due` here.
static KEPT_LOCKS: Mutex<Vec<(PathBuf, OutboxLock)>> = Mutex::new(Vec::new());

struct Unmarked {
    data_dir: PathBuf,
    id: i64,
    message_id: String,
    sent_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot read smtp.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("SMTP setup: {0}")]
    Setup(String),
    #[error("SMTP {addr}: {message}")]
    Connect { addr: String, message: String },
    /// The server refused the login: trying again at once cannot help,
    /// and a run of failed logins gets the account locked.
    #[error("SMTP {addr}: {message}")]
    LoginRefused { addr: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How to reach the SMTP server. Connections are made per delivery round
/// and carry every message due in it, one after another.
///
/// The TCP connection is ours (not lettre's own connector) so that Nagle's
/// algorithm is off: lettre writes a message and its terminating dot in two
/// writes and then waits for the answer, which with Nagle on meets the
/// server's delayed ACK and costs 40 ms per message.
pub struct Transport {
    host: String,
    port: u16,
    tls: TlsMode,
    implicit: Option<Arc<rustls::ClientConfig>>,
    starttls: Option<TlsParameters>,
    credentials: Option<(String, SecretSource)>,
    mechanisms: Vec<Mechanism>,
    hello: ClientId,
    timeout: Duration,
    data_timeout: Duration,
}

/// One logged-in SMTP connection.
pub struct Session {
    conn: AsyncSmtpConnection,
    timeout: Duration,
    data_timeout: Duration,
}

/// How long the answer to a message's final dot may take: RFC 5321
/// 4.5.3.2.6 asks for 10 minutes, as a content filter under load can take
/// long, and a client that gives up sooner sends the message again while
/// the server delivers the first copy.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Why one message was not sent, and whether retrying can help.
#[derive(Debug)]
pub struct SendFailure {
    pub message: String,
    /// A 5xx answer to this message: it will not change on retry.
    pub permanent: bool,
    /// The server was not there for it (no answer in time before the
    /// message went out, the connection lost before then, or 421: service
    /// not available): says nothing about the message, so it counts like
    /// a server that could not be reached, not like a refusal. No answer
    /// after the message went out is a refusal: it may have been
    /// delivered, so its resends are bounded.
    pub unreachable: bool,
    /// No answer after the message went out: the server may have
    /// delivered it. Bounded apart ([`MAX_UNCERTAIN`]), so a relay that
    /// always drops the answer does not reach the buyer 20 times.
    pub uncertain: bool,
}

pub fn transport(cfg: &SmtpConfig) -> Result<Transport, SmtpError> {
    let ca_err = |path: &std::path::Path, message: String| SmtpError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let (implicit, starttls) = match cfg.tls {
        TlsMode::None => (None, None),
        TlsMode::Implicit => {
            let config =
                net::tls_config(cfg.ca_file.as_deref()).map_err(|e| match &cfg.ca_file {
                    Some(p) => ca_err(p, e.to_string()),
                    None => SmtpError::Setup(e.to_string()),
                })?;
            (Some(config), None)
        }
        TlsMode::Starttls => {
            let mut b = TlsParameters::builder(cfg.host.clone());
            if let Some(path) = &cfg.ca_file {
                let pem = std::fs::read(path).map_err(|e| ca_err(path, e.to_string()))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| ca_err(path, e.to_string()))?;
                // Same rule as IMAP: a configured CA is the only one trusted.
                b = b
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert);
            }
            let params = b
                .build_rustls()
                .map_err(|e| SmtpError::Setup(e.to_string()))?;
            (None, Some(params))
        }
    };
    let mechanisms = match cfg.auth {
        AuthMethod::Xoauth2 => vec![Mechanism::Xoauth2],
        AuthMethod::Password => vec![Mechanism::Plain, Mechanism::Login],
    };
    Ok(Transport {
        host: cfg.host.clone(),
        port: cfg.port,
        tls: cfg.tls,
        implicit,
        starttls,
        credentials: cfg.credentials.clone(),
        mechanisms,
        hello: ClientId::default(),
        timeout: Duration::from_secs(60),
        data_timeout: DATA_TIMEOUT,
    })
}

impl Transport {
    /// How long one SMTP step may take (60 s unless set here), but the
    /// answer to a message's final dot (see [`DATA_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Transport {
        self.timeout = timeout;
        self
    }

    /// How long the answer to a message's final dot may take.
    pub fn with_data_timeout(mut self, timeout: Duration) -> Transport {
        self.data_timeout = timeout;
        self
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Connects, says EHLO, upgrades with STARTTLS when configured, and
    /// logs in when credentials are set.
    pub async fn connect(&self) -> Result<Session, SmtpError> {
        let fail = |message: String| SmtpError::Connect {
            addr: self.addr(),
            message,
        };
        let steps = async {
            let tcp = net::connect_tcp(&self.host, self.port, self.timeout)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let stream = match &self.implicit {
                Some(config) => MailStream::Tls(Box::new(
                    net::tls_wrap(tcp, &self.host, self.port, config.clone())
                        .await
                        .map_err(|e| fail(e.to_string()))?,
                )),
                None => MailStream::Plain(tcp),
            };
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
            if self.tls == TlsMode::Starttls {
                let params = self.starttls.clone().expect("built for starttls");
                conn.starttls(params, &self.hello).await.map_err(|e| {
                    let mut m = format!("STARTTLS: {e}");
                    if m.contains("certificate") {
                        m.push_str(
                            "; the server's certificate is not trusted: set ca_file to the CA that \
                             signed it (ticketd never falls back to an unverified connection)",
                        );
                    }
                    fail(m)
                })?;
            }
            if let Some((user, source)) = &self.credentials {
                // Fetched per connection: a command-sourced token is fresh.
                let secret = source.get().map_err(|e| fail(e.to_string()))?;
                let creds = Credentials::new(user.clone(), secret.expose().to_string());
                conn.auth(&self.mechanisms, &creds).await.map_err(|e| {
                    let message = format!("login as {user} refused: {e}");
                    // 5xx: refused. A 454 (temporary failure) or a lost
                    // connection says nothing of the password.
                    if e.is_permanent() {
                        SmtpError::LoginRefused {
                            addr: self.addr(),
                            message,
                        }
                    } else {
                        fail(message)
                    }
                })?;
            }
            Ok(conn)
        };
        match tokio::time::timeout(self.timeout, steps).await {
            Ok(Ok(conn)) => Ok(Session {
                conn,
                timeout: self.timeout,
                data_timeout: self.data_timeout.max(self.timeout),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(fail("timed out".to_string())),
        }
    }

    /// `ticketd check`: connect, log in, NOOP, QUIT.
    pub async fn test_connection(&self) -> Result<(), SmtpError> {
        let mut session = self.connect().await?;
        let ok = tokio::time::timeout(self.timeout, session.conn.test_connected())
            .await
            .unwrap_or(false);
        session.quit().await;
        if ok {
            Ok(())
        } else {
            Err(SmtpError::Connect {
                addr: self.addr(),
                message: "no answer to NOOP".to_string(),
            })
        }
    }
}

impl Session {
    /// MAIL, RCPT and DATA, each within the step timeout; then the message
    /// and its final dot, whose answer may take [`DATA_TIMEOUT`]. (lettre's
    /// own `send` has one bound for all of it.)
    pub async fn send_raw(&mut self, envelope: &Envelope, raw: &[u8]) -> Result<(), SendFailure> {
        let unreachable = |message: String| SendFailure {
            message,
            permanent: false,
            unreachable: true,
            uncertain: false,
        };
        match tokio::time::timeout(self.timeout, self.envelope(envelope, raw)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.abort().await;
                return Err(match e {
                    Step::Smtp(e) => answered(&e).unwrap_or_else(|| unreachable(e.to_string())),
                    Step::Unsupported(what) => SendFailure {
                        message: what.to_string(),
                        permanent: false,
                        unreachable: false,
                        uncertain: false,
                    },
                });
            }
            Err(_) => {
                self.abort().await;
                return Err(unreachable("timed out".to_string()));
            }
        }
        let failed = match tokio::time::timeout(self.data_timeout, self.conn.message(raw)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => match answered(&e) {
                Some(refused) => refused,
                None => SendFailure {
                    message: format!(
                        "no answer to the message ({e}); the server may have delivered it"
                    ),
                    permanent: false,
                    unreachable: false,
                    uncertain: true,
                },
            },
            Err(_) => SendFailure {
                message: format!(
                    "no answer to the message within {} s; the server may have delivered it",
                    self.data_timeout.as_secs()
                ),
                permanent: false,
                unreachable: false,
                uncertain: true,
            },
        };
        self.abort().await;
        Err(failed)
    }

    async fn envelope(&mut self, envelope: &Envelope, raw: &[u8]) -> Result<(), Step> {
        let info = self.conn.server_info();
        let mut options = Vec::new();
        let non_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(Step::Unsupported(
                    "the address is not ASCII and the SMTP server does not offer SMTPUTF8",
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !raw.is_ascii() {
            if !info.supports_feature(Extension::EightBitMime) {
                return Err(Step::Unsupported(
                    "the message is not ASCII and the SMTP server does not offer 8BITMIME",
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.conn
            .command(Mail::new(envelope.from().cloned(), options))
            .await
            .map_err(Step::Smtp)?;
        for to in envelope.to() {
            self.conn
                .command(Rcpt::new(to.clone(), Vec::new()))
                .await
                .map_err(Step::Smtp)?;
        }
        self.conn.command(Data).await.map_err(Step::Smtp)?;
        Ok(())
    }

    /// Ends a dialogue an error left in an unknown state. The QUIT that
    /// abort sends waits for an answer a server that stopped answering
    /// never gives: bounded, and the session counts as broken either way.
    async fn abort(&mut self) {
        let _ = tokio::time::timeout(ABORT_WAIT, self.conn.abort()).await;
    }

    /// False once an error has left the dialogue in an unknown state.
    pub fn usable(&self) -> bool {
        !self.conn.has_broken()
    }

    pub async fn quit(mut self) {
        if self.usable() {
            let _ = tokio::time::timeout(self.timeout, self.conn.quit()).await;
        }
    }
}

enum Step {
    Smtp(lettre::transport::smtp::Error),
    Unsupported(&'static str),
}

/// What the server's answer says of a message it did not take: 5xx for
/// good, 421 (service not available) nothing about the message, any
/// other 4xx a refusal for now. `None` when there was no answer.
fn answered(e: &lettre::transport::smtp::Error) -> Option<SendFailure> {
    let code = e.status()?;
    Some(SendFailure {
        message: e.to_string(),
        permanent: e.is_permanent(),
        unreachable: code.to_string() == "421",
        uncertain: false,
    })
}

/// Delay before attempt `attempts + 1`: 5 s, 10 s, 20 s, ... capped at 1 h.
pub fn backoff(attempts: i64) -> i64 {
    let shift = attempts.clamp(0, 20) as u32;
    (BACKOFF_FIRST_SECS.saturating_mul(1i64 << shift)).min(BACKOFF_CAP_SECS)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStats {
    pub sent: usize,
    pub failed: usize,
    /// Another ticketd process was sending this store's outbox, so this
    /// call sent nothing: that process sends what is due.
    pub elsewhere: bool,
    /// The SMTP server refused the login.
    pub login_refused: bool,
}

fn unmarked_ids(store: &Store) -> HashSet<i64> {
    let list = SENT_UNMARKED.lock().unwrap_or_else(|e| e.into_inner());
    list.iter()
        .filter(|u| u.data_dir == store.data_dir())
        .map(|u| u.id)
        .collect()
}

/// Marks sent what this process sent earlier but could not mark then.
/// Fails (and sends nothing new) while the store still refuses.
fn mark_unmarked(store: &Store) -> Result<(), StoreError> {
    let mut list = SENT_UNMARKED.lock().unwrap_or_else(|e| e.into_inner());
    let mut result = Ok(());
    list.retain(|u| {
        if u.data_dir != store.data_dir() || result.is_err() {
            return true;
        }
        match store.outbox_sent(u.id, u.sent_at) {
            Ok(()) => {
                info!(message_id = %u.message_id, "outbox: sent earlier, now marked sent");
                false
            }
            Err(e) => {
                result = Err(e);
                true
            }
        }
    });
    result
}

/// Marks an item the server has taken as sent, trying again for a few
/// seconds when the store refuses (busy past its timeout, disk full):
/// sending it again is what must not happen. When it still cannot (or
/// shutdown is asked for meanwhile), the item is remembered so this
/// process never sends it again (see `mark_unmarked`) and the error is
/// returned.
async fn mark_sent(
    store: &mut Store,
    item: &OutboxItem,
    now: i64,
    stop: &Shutdown,
) -> Result<(), StoreError> {
    let mut wait = MARK_RETRY_FIRST;
    let mut tries = 0;
    loop {
        tries += 1;
        let e = match store.outbox_sent(item.id, now) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if tries >= MARK_TRIES || stop.is_requested() {
            error!(
                message_id = %item.message_id,
                to = %item.envelope_to,
                error = %e,
                "outbox: sent, but cannot mark it sent in the store; this process will not send it \
                 again and marks it once the store takes writes, but a restart before that sends it again"
            );
            let mut list = SENT_UNMARKED.lock().unwrap_or_else(|e| e.into_inner());
            list.push(Unmarked {
                data_dir: store.data_dir().to_path_buf(),
                id: item.id,
                message_id: item.message_id.clone(),
                sent_at: now,
            });
            return Err(e);
        }
        warn!(
            message_id = %item.message_id,
            error = %e,
            retry_in = ?wait,
            "outbox: sent, but cannot mark it sent yet; trying again (it is not sent again)"
        );
        // Shutdown cuts the wait short for one last try.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait() => {}
        }
        wait *= 2;
    }
}

/// Sends every due outbox item once, over one connection while it lasts.
/// Returns what happened; SMTP errors are recorded on the rows, not
/// returned. When the server cannot be reached (or refuses the login) the
/// round ends there: each due item records the failed attempt and waits
/// for its backoff, but none is given up for it, since it says nothing
/// about the message.
///
/// Only one process sends a store's outbox at a time: whoever holds its
/// outbox lock (see [`Store::try_lock_outbox`]) for the whole call. When
/// another process holds it this returns at once with `elsewhere` set.
///
/// An item the server took but the store would not mark sent is never
/// sent again by this process, which keeps the outbox lock until the
/// store marks it, so no other process sends it either; until then,
/// nothing new is sent (see `mark_sent`).
///
/// Once `stop` is asked for, no further item is started and a send in
/// hand gets at most [`SHUTDOWN_GRACE`] to finish.
pub async fn deliver_due(
    store: &mut Store,
    transport: &Transport,
    stop: &Shutdown,
) -> Result<DeliveryStats, SmtpError> {
    let kept = {
        let mut locks = KEPT_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        let at = locks.iter().position(|(dir, _)| dir == store.data_dir());
        at.map(|i| locks.swap_remove(i).1)
    };
    let lock = match kept {
        Some(lock) => lock,
        None => match store.try_lock_outbox()? {
            Some(lock) => lock,
            None => {
                debug!("outbox: another ticketd is sending it; leaving the queue to that one");
                return Ok(DeliveryStats {
                    elsewhere: true,
                    ..DeliveryStats::default()
                });
            }
        },
    };
    let result = deliver_locked(store, transport, stop).await;
    if !unmarked_ids(store).is_empty() {
        let mut locks = KEPT_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        locks.push((store.data_dir().to_path_buf(), lock));
    }
    result
}

/// `deliver_due` with the outbox lock in hand.
async fn deliver_locked(
    store: &mut Store,
    transport: &Transport,
    stop: &Shutdown,
) -> Result<DeliveryStats, SmtpError> {
    let mut stats = DeliveryStats::default();
    mark_unmarked(store)?;
    settle_sent_log(store)?;
    let unmarked = unmarked_ids(store);
    let mut session: Option<Session> = None;
    let now = Utc::now().timestamp();
    // Batches of 100 in id order until nothing due is left; each item is
    // looked at once.
    let mut after = 0;
    'rounds: loop {
        let batch = store.outbox_due(now, after)?;
        let Some(last) = batch.last() else {
            break;
        };
        after = last.id;
        let mut items = batch.into_iter().filter(|i| !unmarked.contains(&i.id));
        while let Some(item) = items.next() {
            if stop.is_requested() {
                info!("outbox: stopping; the items left wait for the next start");
                break 'rounds;
            }
            let envelope = match (item.envelope_from.parse(), item.envelope_to.parse()) {
                (Ok(from), Ok(to)) => Envelope::new(Some(from), vec![to]).ok(),
                _ => None,
            };
            let result = match envelope {
                None => Err(SendFailure {
                    message: "invalid envelope address".to_string(),
                    permanent: true,
                    unreachable: false,
                    uncertain: false,
                }),
                Some(env) => {
                    if session.as_ref().is_none_or(|s| !s.usable()) {
                        session = None;
                        let connected = tokio::select! {
                            c = transport.connect() => c,
                            _ = stop.wait() => break 'rounds,
                        };
                        match connected {
                            Ok(s) => session = Some(s),
                            Err(e) => {
                                stats.login_refused = matches!(e, SmtpError::LoginRefused { .. });
                                let message = e.to_string();
                                warn!(error = %message, "outbox: cannot reach the SMTP server");
                                let now = Utc::now().timestamp();
                                for item in std::iter::once(item).chain(items) {
                                    let next = now + backoff(item.attempts);
                                    store.outbox_failed_attempt(
                                        item.id,
                                        &message,
                                        next,
                                        AttemptFailure::Unreachable,
                                        false,
                                    )?;
                                    stats.failed += 1;
                                }
                                continue 'rounds;
                            }
                        }
                    }
                    let done = {
                        let s = session.as_mut().expect("connected above");
                        let send = s.send_raw(&env, &item.raw);
                        tokio::pin!(send);
                        tokio::select! {
                            r = &mut send => Some(r),
                            _ = stop.wait() => tokio::time::timeout(SHUTDOWN_GRACE, &mut send).await.ok(),
                        }
                    };
                    match done {
                        Some(r) => r,
                        None => {
                            warn!(
                                message_id = %item.message_id,
                                "outbox: stopping; the SMTP server did not answer the send in hand \
                                 in time, so it stays queued (sent again at the next start)"
                            );
                            // Closed without QUIT: the dialogue is unknown.
                            session = None;
                            break 'rounds;
                        }
                    }
                }
            };
            let now = Utc::now().timestamp();
            match result {
                Ok(()) => {
                    write_down_sent(store.data_dir(), &item.message_id);
                    mark_sent(store, &item, now, stop).await?;
                    info!(message_id = %item.message_id, to = %item.envelope_to, "acknowledgement sent");
                    stats.sent += 1;
                }
                Err(SendFailure {
                    mut message,
                    permanent,
                    unreachable,
                    uncertain,
                }) => {
                    let refused = item.failures + i64::from(!unreachable);
                    let unsure = item.uncertain + i64::from(uncertain);
                    let give_up = !unreachable
                        && (permanent || refused >= MAX_ATTEMPTS || unsure >= MAX_UNCERTAIN);
                    if give_up && unsure >= MAX_UNCERTAIN {
                        message.push_str(&format!(
                            "; given up after {unsure} sends without an answer, each of which \
                             may have reached the buyer (`ticketd outbox retry` sends it again)"
                        ));
                    }
                    let next = now + backoff(item.attempts);
                    let failure = if unreachable {
                        AttemptFailure::Unreachable
                    } else if uncertain {
                        AttemptFailure::Uncertain
                    } else {
                        AttemptFailure::Refused
                    };
                    store.outbox_failed_attempt(item.id, &message, next, failure, give_up)?;
                    warn!(message_id = %item.message_id, attempt = item.attempts + 1, refused, give_up, error = %message, "send failed");
                    stats.failed += 1;
                }
            }
        }
    }
    if let Some(s) = session {
        if stop.is_requested() {
            // Stopping: the QUIT is a courtesy, not worth the stop timeout.
            let _ = tokio::time::timeout(ABORT_WAIT, s.quit()).await;
        } else {
            s.quit().await;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), 5);
        assert_eq!(backoff(1), 10);
        assert_eq!(backoff(3), 40);
        assert_eq!(backoff(10), 3600);
        assert_eq!(backoff(1000), 3600);
    }
}

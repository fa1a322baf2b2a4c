//! The IMAP side: connect (implicit TLS, STARTTLS or loopback plain), log
//! in, EXAMINE the mailbox (read-only: flags are never changed, nothing is
//! deleted), fetch everything past the stored UID watermark with BODY.PEEK,
//! and wait for more with IDLE, or by polling when the server lacks IDLE.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_imap::extensions::idle::IdleResponse;
use async_imap::types::UnsolicitedResponse;
use futures::TryStreamExt;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{AuthMethod, ImapConfig, TlsMode};
use crate::core::{intake, parse};
use crate::daemon::Shutdown;
use crate::ingest::{Incoming, Ingestor};
use crate::net::{self, MailStream, NetError};
use crate::store::{self, MailboxPosition, Store, StoreError};

pub type ImapSession = async_imap::Session<MailStream>;

/// Servers end IDLE after 30 minutes; re-issue it well before.
/// The slowest link a body FETCH is given time for, on top of
/// `imap.timeout` (1 Mbit/s).
const SLOW_LINK_BYTES_PER_SEC: u64 = 128 * 1024;
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// Fetch bodies in batches of at most this many bytes (by RFC822.SIZE) or
/// messages, so memory stays bounded and round trips few.
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
const BATCH_MESSAGES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("IMAP server at {addr} {message}")]
    Protocol { addr: String, message: String },
    #[error("IMAP login as {user} was refused ({message}); check imap.username and the password")]
    Login { user: String, message: String },
    #[error("no IMAP password for {user}: {message}")]
    Secret { user: String, message: String },
    #[error("cannot open mailbox `{mailbox}` ({message}); check imap.mailbox")]
    Mailbox { mailbox: String, message: String },
    #[error("IMAP {0} timed out")]
    Timeout(&'static str),
    #[error("IMAP {op} failed: {message}")]
    Command { op: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs one IMAP step with a deadline: async-imap has none of its own, and
/// a silent server must not hang the daemon.
async fn timed<T, E: std::fmt::Display>(
    limit: Duration,
    op: &'static str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(ImapError::Timeout(op)),
        Ok(Err(e)) => Err(ImapError::Command {
            op,
            message: e.to_string(),
        }),
        Ok(Ok(v)) => Ok(v),
    }
}

async fn greeting(
    limit: Duration,
    client: &mut async_imap::Client<MailStream>,
    addr: &str,
) -> Result<(), ImapError> {
    match tokio::time::timeout(limit, client.read_response()).await {
        Err(_) => Err(ImapError::Timeout("greeting")),
        Ok(Some(Ok(_))) => Ok(()),
        Ok(Some(Err(e))) => Err(ImapError::Protocol {
            addr: addr.to_string(),
            message: format!("sent no valid greeting: {e}"),
        }),
        Ok(None) => Err(ImapError::Protocol {
            addr: addr.to_string(),
            message: "closed the connection before its greeting".into(),
        }),
    }
}

/// Connects and logs in.
pub async fn connect(cfg: &ImapConfig) -> Result<ImapSession, ImapError> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let tcp = net::connect_tcp(&cfg.host, cfg.port, cfg.timeout).await?;
    let client = match cfg.tls {
        TlsMode::Implicit => {
            let tls = net::tls_config(cfg.ca_file.as_deref())?;
            let stream = net::tls_wrap(tcp, &cfg.host, cfg.port, tls).await?;
            let mut client = async_imap::Client::new(MailStream::Tls(Box::new(stream)));
            greeting(cfg.timeout, &mut client, &addr).await?;
            client
        }
        TlsMode::Starttls => {
            let tls = net::tls_config(cfg.ca_file.as_deref())?;
            let mut client = async_imap::Client::new(MailStream::Plain(tcp));
            greeting(cfg.timeout, &mut client, &addr).await?;
            timed(
                cfg.timeout,
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(|e| ImapError::Protocol {
                addr: addr.clone(),
                message: format!(
                    "refused STARTTLS ({e}); ticketd does not fall back to plain text"
                ),
            })?;
            let MailStream::Plain(tcp) = client.into_inner() else {
                unreachable!("STARTTLS starts from a plain stream")
            };
            let stream = net::tls_wrap(tcp, &cfg.host, cfg.port, tls).await?;
            async_imap::Client::new(MailStream::Tls(Box::new(stream)))
        }
        TlsMode::None => {
            let mut client = async_imap::Client::new(MailStream::Plain(tcp));
            greeting(cfg.timeout, &mut client, &addr).await?;
            client
        }
    };
    let secret = cfg.password.get().map_err(|message| ImapError::Secret {
        user: cfg.username.clone(),
        message,
    })?;
    let login = async {
        match cfg.auth {
            AuthMethod::Password => client.login(&cfg.username, secret.expose()).await,
            AuthMethod::Xoauth2 => {
                let auth = XOAuth2 {
                    user: cfg.username.clone(),
                    token: secret.expose().to_string(),
                };
                client.authenticate("XOAUTH2", auth).await
            }
        }
    };
    match tokio::time::timeout(cfg.timeout, login).await {
        Err(_) => Err(ImapError::Timeout("LOGIN")),
        Ok(Err((e, _))) => Err(login_error(&cfg.username, e)),
        Ok(Ok(session)) => Ok(session),
    }
}

/// A failed LOGIN or AUTHENTICATE: refused when the server answered so (NO,
/// or BAD for a login it will not take). Its own trouble ([UNAVAILABLE],
/// RFC 5530), a lost connection or a garbled answer say nothing of the
/// password, and are retried as any connection failure is.
fn login_error(user: &str, e: async_imap::error::Error) -> ImapError {
    use async_imap::error::Error;
    let message = e.to_string();
    match e {
        Error::No(_) | Error::Bad(_) if !message.contains("[UNAVAILABLE]") => ImapError::Login {
            user: user.to_string(),
            message,
        },
        _ => ImapError::Command {
            op: "LOGIN",
            message,
        },
    }
}

/// SASL XOAUTH2 (Google, Microsoft): the user and a bearer token.
struct XOAuth2 {
    user: String,
    token: String,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token)
    }
}

/// What one pass over the mailbox did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncStats {
    pub fetched: usize,
    pub filed: usize,
    pub duplicates: usize,
    /// How long each stage of the pipeline was busy: waiting for the
    /// server's answers to UID FETCH, parsing (and writing the large raw
    /// mails' files), and filing (rows, acks, the commit and its syncs).
    /// The stages overlap, so the one close to the whole sync's time is
    /// what holds it up.
    pub fetching: Duration,
    pub parsing: Duration,
    pub filing: Duration,
}

/// Opens the mailbox read-only and files every message past the watermark.
/// Stops between messages when shutdown is requested; what was committed
/// stays committed.
pub async fn sync(
    limit: Duration,
    session: &mut ImapSession,
    mailbox: &str,
    store: &mut Store,
    ingestor: &Ingestor<'_>,
    shutdown: &Shutdown,
    hooks: &Hooks<'_>,
) -> Result<SyncStats, ImapError> {
    while session.unsolicited_responses.try_recv().is_ok() {}
    // Read-only (EXAMINE) unless filed mail is to be flagged or moved.
    let changes = hooks.report.is_none()
        && ingestor
            .config
            .imap
            .as_ref()
            .is_some_and(ImapConfig::changes_mailbox);
    let open = async {
        if changes {
            session.select(mailbox).await
        } else {
            session.examine(mailbox).await
        }
    };
    let mbox = match tokio::time::timeout(limit, open).await {
        Err(_) => return Err(ImapError::Timeout("EXAMINE")),
        Ok(Err(e)) => {
            return Err(ImapError::Mailbox {
                mailbox: mailbox.to_string(),
                message: e.to_string(),
            })
        }
        Ok(Ok(m)) => m,
    };
    let uidvalidity = mbox.uid_validity.ok_or_else(|| ImapError::Mailbox {
        mailbox: mailbox.to_string(),
        message: "the server reports no UIDVALIDITY".into(),
    })?;
    let stored = store.position(mailbox)?;
    let last_uid = match &stored {
        Some(p) if p.uidvalidity == uidvalidity => p.last_uid,
        Some(p) => {
            warn!(mailbox, old = p.uidvalidity, new = uidvalidity,
                "UIDVALIDITY changed: rescanning the whole mailbox; Message-IDs keep anything from being filed twice");
            store::forget_left_out(store.conn(), mailbox, uidvalidity, None)?;
            0
        }
        None => 0,
    };
    let mut stats = SyncStats::default();
    // Messages the server left out of an earlier answer, asked for again.
    let retry: Vec<u32> = store::left_out(store.conn(), Some((mailbox, uidvalidity)))?
        .into_iter()
        .map(|l| l.uid)
        .collect();
    let nothing_new = mbox.uid_next.is_some_and(|next| next <= last_uid + 1);
    if mbox.exists == 0 || (nothing_new && retry.is_empty()) {
        if !retry.is_empty() && hooks.report.is_none() {
            info!(mailbox, uids = ?retry, "messages left out earlier are no longer in the mailbox");
            store::forget_left_out(store.conn(), mailbox, uidvalidity, Some(&retry))?;
        }
        return Ok(stats);
    }
    let wanted = |uid: u32| uid > last_uid || retry.binary_search(&uid).is_ok();
    let set = uid_set(&retry, Some(last_uid + 1));
    // What is there, to tell a message the listing below leaves out (a
    // tagged NO, which async-imap does not report) from one that is gone.
    let present: HashSet<u32> = timed(
        limit,
        "UID SEARCH",
        session.uid_search(format!("UID {set}")),
    )
    .await?
    .into_iter()
    .filter(|u| wanted(*u))
    .collect();

    // Sizes first (and, in a shared mailbox, the few headers that decide
    // what is support mail), so bodies are fetched only for selected mail,
    // in bounded batches.
    let rules = ingestor.config.intake.as_ref();
    let query = match rules {
        Some(_) => format!(
            "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({})])",
            intake::HEADER_FIELDS
        ),
        None => "(UID RFC822.SIZE)".to_string(),
    };
    let mut listed: Vec<(u32, u64, Option<Vec<u8>>)> = {
        let stream = timed(limit, "UID FETCH", session.uid_fetch(&set, query)).await?;
        // One response at a time: each holds a buffer of its own, and
        // collecting 50k of them first cost 300 MiB.
        let mut stream = std::pin::pin!(stream);
        let read = async {
            let mut out = Vec::new();
            while let Some(f) = stream.try_next().await? {
                if let Some(uid) = f.uid.filter(|u| wanted(*u)) {
                    out.push((
                        uid,
                        u64::from(f.size.unwrap_or(0)),
                        f.header().map(<[u8]>::to_vec),
                    ));
                }
            }
            Ok::<_, async_imap::error::Error>(out)
        };
        timed(limit, "UID FETCH", read).await?
    };
    listed.sort_unstable_by_key(|(uid, _, _)| *uid);
    listed.dedup_by_key(|(uid, _, _)| *uid);
    let newest = listed
        .iter()
        .map(|(uid, _, _)| *uid)
        .rfind(|u| *u > last_uid);
    let is_listed = |uid: &u32| {
        listed
            .binary_search_by_key(uid, |(listed, _, _)| *listed)
            .is_ok()
    };
    let mut absent: Vec<u32> = present.iter().copied().filter(|u| !is_listed(u)).collect();
    absent.sort_unstable();
    let gone: Vec<u32> = retry
        .iter()
        .copied()
        .filter(|u| !present.contains(u) && !is_listed(u))
        .collect();
    let sizes: Vec<(u32, u64)> = match rules {
        None => listed.iter().map(|(u, s, _)| (*u, *s)).collect(),
        Some(rules) => {
            let mut seen = HashSet::new();
            let mut keep = Vec::new();
            for (uid, size, headers) in &listed {
                let headers = headers.as_deref().unwrap_or(b"");
                let msg = parse::parse(headers);
                let decision = intake::select(
                    headers,
                    &msg,
                    rules,
                    &ingestor.config.tickets.prefix,
                    &store::Lookup(store.conn()),
                    &seen,
                );
                debug!(mailbox, uid, message_id = %msg.dedupe_key, selected = decision.is_selected(), reason = %decision.reason(), "intake");
                if let Some(report) = hooks.report {
                    report(format!(
                        "{mailbox} UID {uid}: {} ({}) from {} \"{}\"",
                        if decision.is_selected() {
                            "take"
                        } else {
                            "skip"
                        },
                        decision.reason(),
                        msg.from_address.as_deref().unwrap_or("?"),
                        msg.subject
                    ));
                }
                if decision.is_selected() {
                    seen.insert(msg.dedupe_key.clone());
                    keep.push((*uid, *size));
                }
            }
            keep
        }
    };
    debug!(
        mailbox,
        new = listed.len(),
        selected = sizes.len(),
        "messages past the watermark"
    );
    if hooks.report.is_some() {
        // Dry run: decisions only; nothing filed, the position unchanged.
        if let Some(report) = hooks.report {
            for uid in &absent {
                report(format!(
                    "{mailbox} UID {uid}: left out of the server's answer (asked for again on each pass)"
                ));
            }
        }
        if rules.is_none() {
            for (uid, _) in &sizes {
                if let Some(report) = hooks.report {
                    report(format!(
                        "{mailbox} UID {uid}: take (no [intake] rules: all mail is support mail)"
                    ));
                }
            }
        }
        return Ok(stats);
    }
    if !gone.is_empty() {
        info!(mailbox, uids = ?gone, "messages left out earlier are no longer in the mailbox");
        store::forget_left_out(store.conn(), mailbox, uidvalidity, Some(&gone))?;
    }
    // Listed again but not support mail after all (a shared mailbox).
    let passed: Vec<u32> = retry
        .iter()
        .copied()
        .filter(|u| is_listed(u) && sizes.binary_search_by_key(u, |(uid, _)| *uid).is_err())
        .collect();
    if !passed.is_empty() {
        store::forget_left_out(store.conn(), mailbox, uidvalidity, Some(&passed))?;
    }
    // Recorded before the position moves past them.
    if !absent.is_empty() {
        let tries = store::note_left_out(
            store.conn(),
            mailbox,
            uidvalidity,
            &absent,
            chrono::Utc::now().timestamp(),
        )?;
        log_left_out(mailbox, "listing", &absent, &tries);
    }

    // Three stages, each on a thread of its own: the next batch is fetched
    // while this one is parsed (its large mails written to files) and the
    // one before it is made durable and committed. Dovecot, the socket,
    // the CPU and the disk all work at once. The fetched batches go over a
    // rendezvous channel: at most two are held at once. Parsed batches
    // (which no longer hold their large raw mails) wait for the filer in a
    // `Handoff`, where those parsed while it was busy join into one
    // transaction: one sync and one commit for them all (group commit).
    let work = batches(&sizes);
    let filer = Filer {
        ingestor,
        committed: hooks.on_committed,
        mailbox,
        uidvalidity,
        retry: &retry,
    };
    let max = ingestor.config.max_message_bytes;
    let handle = tokio::runtime::Handle::current();
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        // No thread to spare (block_in_place needs the multi-thread
        // runtime): one batch after the other.
        for batch in work {
            if shutdown.is_requested() {
                break;
            }
            let t = Instant::now();
            let fetched = fetch_batch(limit, session, batch, max).await?;
            stats.fetching += t.elapsed();
            let t = Instant::now();
            let ready = filer.prepare(store.data_dir(), batch, max, &fetched)?;
            stats.parsing += t.elapsed();
            let t = Instant::now();
            filer.commit(store, ready, &mut stats)?;
            stats.filing += t.elapsed();
        }
    } else {
        let handoff = Handoff::new();
        let handoff = &handoff;
        let (fetching, parsing) = tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<(&[(u32, u64)], Vec<Fetched>)>(0);
                let stats = &mut stats;
                let data_dir = store.data_dir().to_path_buf();
                let store = &mut *store;
                let filer = &filer;
                let preparing = scope.spawn(move || -> Result<Duration, ImapError> {
                    let _done = handoff.giver();
                    let mut busy = Duration::ZERO;
                    for (batch, fetched) in rx {
                        let t = Instant::now();
                        let ready = filer.prepare(&data_dir, batch, max, &fetched)?;
                        busy += t.elapsed();
                        drop(fetched);
                        // While the filer is busy, the batch joins the one
                        // waiting for it. Refused when the filer stopped
                        // early: its result says why.
                        if !handoff.give(ready, |waiting, later| waiting.absorb(later, mailbox)) {
                            break;
                        }
                    }
                    Ok(busy)
                });
                let filing = scope.spawn(move || -> Result<(), ImapError> {
                    let _done = handoff.taker();
                    while let Some(ready) = handoff.take() {
                        let t = Instant::now();
                        filer.commit(store, ready, stats)?;
                        stats.filing += t.elapsed();
                    }
                    Ok(())
                });
                let mut fetch_error = None;
                let mut fetching = Duration::ZERO;
                for batch in work {
                    if shutdown.is_requested() {
                        break;
                    }
                    let t = Instant::now();
                    let fetched = handle.block_on(fetch_batch(limit, session, batch, max));
                    fetching += t.elapsed();
                    match fetched {
                        Ok(fetched) => {
                            // Refused when a later stage stopped early: its
                            // result says why.
                            if tx.send((batch, fetched)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            fetch_error = Some(e);
                            break;
                        }
                    }
                }
                drop(tx);
                let prepared = preparing
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                filing
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                let parsing = prepared?;
                match fetch_error {
                    Some(e) => Err(e),
                    None => Ok((fetching, parsing)),
                }
            })
        })?;
        stats.fetching += fetching;
        stats.parsing += parsing;
    }
    // Mail that was not selected (or a rescan that found nothing new, or
    // mail the server left out, now recorded) still moves the watermark.
    if let Some(newest) = newest {
        if !shutdown.is_requested() {
            let current = store.position(mailbox)?;
            let behind = current
                .as_ref()
                .is_none_or(|p| p.uidvalidity != uidvalidity || p.last_uid < newest);
            if behind {
                store::set_position(
                    store.conn(),
                    &MailboxPosition {
                        mailbox: mailbox.to_string(),
                        uidvalidity,
                        last_uid: newest,
                    },
                )?;
            }
        }
    }
    Ok(stats)
}

type Fetched = async_imap::types::Fetch;

/// A batch of one message larger than max_message_bytes: only its headers
/// are fetched and kept.
fn headers_only(batch: &[(u32, u64)], max: u64) -> bool {
    batch.len() == 1 && batch[0].1 > max
}

/// Fetches one batch: whole messages, or the headers alone of one message
/// larger than max_message_bytes (batches() keeps any message above
/// BATCH_BYTES alone, so it is a batch of its own).
async fn fetch_batch(
    limit: Duration,
    session: &mut ImapSession,
    batch: &[(u32, u64)],
    max: u64,
) -> Result<Vec<Fetched>, ImapError> {
    let headers_only = headers_only(batch, max);
    let set = batch
        .iter()
        .map(|(u, _)| u.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let query = if headers_only {
        "(UID INTERNALDATE BODY.PEEK[HEADER])"
    } else {
        "(UID INTERNALDATE BODY.PEEK[])"
    };
    let stream = timed(limit, "UID FETCH", session.uid_fetch(set, query)).await?;
    // The bodies take as long as the link needs: `limit` plus their size at
    // a slow link's rate, so a large mail on a slow line is not cut off (and
    // fetched again, and cut off again, on every pass) while a stalled one
    // still is.
    let bytes: u64 = if headers_only {
        0
    } else {
        batch.iter().map(|(_, size)| size).sum()
    };
    let transfer = limit + Duration::from_secs(bytes / SLOW_LINK_BYTES_PER_SEC);
    let mut fetched: Vec<_> = timed(transfer, "UID FETCH", stream.try_collect::<Vec<_>>()).await?;
    fetched.sort_by_key(|f| f.uid);
    Ok(fetched)
}

/// The body (or, for a headers-only batch, the header) the server sent
/// for `uid`, with its INTERNALDATE; `fetched` is sorted by UID and may
/// hold a UID twice.
fn fetched_body(
    fetched: &[Fetched],
    uid: u32,
    headers_only: bool,
) -> Option<(&[u8], Option<chrono::DateTime<chrono::Utc>>)> {
    let at = fetched.partition_point(|f| f.uid < Some(uid));
    fetched[at..]
        .iter()
        .take_while(|f| f.uid == Some(uid))
        .find_map(|f| {
            let bytes = if headers_only { f.header() } else { f.body() }?;
            Some((
                bytes,
                f.internal_date().map(|d| d.with_timezone(&chrono::Utc)),
            ))
        })
}

/// Files fetched batches into the store, each in one transaction.
struct Filer<'a> {
    ingestor: &'a Ingestor<'a>,
    committed: &'a (dyn Fn(usize) + Sync),
    mailbox: &'a str,
    uidvalidity: u32,
    /// UIDs left out of earlier answers, asked for again (sorted).
    retry: &'a [u32],
}

/// One batch parsed and its large mails written, for the filing thread.
struct Ready {
    prepared: crate::ingest::Prepared,
    span: tracing::Span,
    /// UIDs whose bodies the server did not send (to be recorded before the
    /// position moves past them).
    left_out: Vec<u32>,
    /// UIDs left out earlier that came this time (to be forgotten).
    retried: Vec<u32>,
    first_uid: Option<u32>,
    last_uid: Option<u32>,
    /// `prepared.held_bytes()`.
    held: usize,
}

/// Batches that wait for the filer are joined while the result holds at
/// most this many messages and this much memory: a backlog is committed
/// with fewer syncs, but a transaction still ends well within a second
/// and holds no more than a batch of mid-sized mail would on its own.
const GROUP_MESSAGES: usize = 1000;
const GROUP_BYTES: usize = 8 * 1024 * 1024;

impl Ready {
    /// Takes `later` into this batch, to be committed with it; gives it
    /// back when the two together would be too large.
    fn absorb(&mut self, later: Ready, mailbox: &str) -> Option<Ready> {
        if self.prepared.len() + later.prepared.len() > GROUP_MESSAGES
            || self.held + later.held > GROUP_BYTES
        {
            return Some(later);
        }
        self.prepared.append(later.prepared);
        self.held += later.held;
        self.left_out.extend(later.left_out);
        self.retried.extend(later.retried);
        self.first_uid = self.first_uid.or(later.first_uid);
        self.last_uid = later.last_uid.or(self.last_uid);
        self.span =
            info_span!("batch", mailbox, first_uid = ?self.first_uid, last_uid = ?self.last_uid);
        None
    }
}

/// Passes items from one thread to another, one at a time; what is given
/// while the taker is busy can be merged into the item still waiting.
struct Handoff<T> {
    slot: std::sync::Mutex<Slot<T>>,
    changed: std::sync::Condvar,
}

struct Slot<T> {
    item: Option<T>,
    giver_done: bool,
    taker_gone: bool,
}

impl<T> Handoff<T> {
    fn new() -> Self {
        Handoff {
            slot: std::sync::Mutex::new(Slot {
                item: None,
                giver_done: false,
                taker_gone: false,
            }),
            changed: std::sync::Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot<T>> {
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives `item` to the taker: into the empty slot, or merged into the
    /// item waiting there when `merge` takes it (returns `None`); else
    /// waits until the taker has taken that one. `false` once the taker
    /// is gone.
    fn give(&self, item: T, mut merge: impl FnMut(&mut T, T) -> Option<T>) -> bool {
        let mut item = item;
        let mut slot = self.lock();
        loop {
            if slot.taker_gone {
                return false;
            }
            match slot.item.as_mut() {
                None => {
                    slot.item = Some(item);
                    self.changed.notify_all();
                    return true;
                }
                Some(waiting) => match merge(waiting, item) {
                    None => return true,
                    Some(back) => {
                        item = back;
                        slot = self
                            .changed
                            .wait(slot)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                },
            }
        }
    }

    /// The next item, waiting for one; `None` once the giver is done and
    /// everything it gave was taken.
    fn take(&self) -> Option<T> {
        let mut slot = self.lock();
        loop {
            if let Some(item) = slot.item.take() {
                self.changed.notify_all();
                return Some(item);
            }
            if slot.giver_done {
                return None;
            }
            slot = self
                .changed
                .wait(slot)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Held by the giving thread: when dropped (the thread returned, failed
    /// or panicked), `take` stops waiting for more.
    fn giver(&self) -> HandoffEnd<'_, T> {
        HandoffEnd {
            handoff: self,
            giver: true,
        }
    }

    /// Held by the taking thread: when dropped, `give` refuses.
    fn taker(&self) -> HandoffEnd<'_, T> {
        HandoffEnd {
            handoff: self,
            giver: false,
        }
    }
}

struct HandoffEnd<'a, T> {
    handoff: &'a Handoff<T>,
    giver: bool,
}

impl<T> Drop for HandoffEnd<'_, T> {
    fn drop(&mut self) {
        let mut slot = self.handoff.lock();
        if self.giver {
            slot.giver_done = true;
        } else {
            slot.taker_gone = true;
            slot.item = None;
        }
        self.handoff.changed.notify_all();
    }
}

impl Filer<'_> {
    /// Parses one fetched batch and writes its large raw mails (see
    /// `Ingestor::prepare`). A body the server left out is noted in
    /// `left_out`: the rest of the batch is filed, and that one asked for
    /// again on the next passes.
    fn prepare(
        &self,
        data_dir: &std::path::Path,
        batch: &[(u32, u64)],
        max: u64,
        fetched: &[Fetched],
    ) -> Result<Ready, ImapError> {
        let mailbox = self.mailbox;
        let headers_only = headers_only(batch, max);
        let mut items = Vec::with_capacity(batch.len());
        let (mut left_out, mut retried) = (Vec::new(), Vec::new());
        // The batch's own UIDs, in order: a message the server left out
        // (a response without its UID or body, or a tagged NO, which
        // async-imap does not report) is noted, not skipped in silence.
        for &(uid, _) in batch {
            let found = fetched_body(fetched, uid, headers_only);
            let Some((bytes, received)) = found else {
                left_out.push(uid);
                continue;
            };
            if self.retry.binary_search(&uid).is_ok() {
                retried.push(uid);
            }
            if headers_only {
                warn!(
                    uid,
                    size = batch[0].1,
                    max,
                    "message larger than max_message_bytes: keeping its headers only"
                );
            }
            items.push(Incoming {
                raw: bytes,
                position: Some(MailboxPosition {
                    mailbox: mailbox.to_string(),
                    uidvalidity: self.uidvalidity,
                    last_uid: uid,
                }),
                too_large: headers_only.then_some(batch[0].1),
                received,
            });
        }
        let uid =
            |i: Option<&Incoming<'_>>| i.and_then(|i| i.position.as_ref()).map(|p| p.last_uid);
        let (first_uid, last_uid) = (uid(items.first()), uid(items.last()));
        let span = info_span!("batch", mailbox, first_uid = ?first_uid, last_uid = ?last_uid);
        let prepared =
            span.in_scope(|| self.ingestor.prepare(data_dir, &items, chrono::Utc::now()))?;
        Ok(Ready {
            held: prepared.held_bytes(),
            prepared,
            span,
            first_uid,
            last_uid,
            left_out,
            retried,
        })
    }

    /// Files a prepared batch in one transaction, after noting what the
    /// server left out of it.
    fn commit(
        &self,
        store: &mut Store,
        ready: Ready,
        stats: &mut SyncStats,
    ) -> Result<(), ImapError> {
        let Ready {
            prepared,
            span,
            left_out,
            retried,
            ..
        } = ready;
        let (mailbox, uidvalidity) = (self.mailbox, self.uidvalidity);
        if !left_out.is_empty() {
            let now = chrono::Utc::now().timestamp();
            let tries = store::note_left_out(store.conn(), mailbox, uidvalidity, &left_out, now)?;
            log_left_out(mailbox, "body", &left_out, &tries);
        }
        if !prepared.is_empty() {
            let outcomes =
                span.in_scope(|| self.ingestor.commit(store, prepared, chrono::Utc::now()))?;
            stats.fetched += outcomes.len();
            for outcome in outcomes {
                match outcome {
                    crate::ingest::Outcome::Duplicate | crate::ingest::Outcome::Deleted => {
                        stats.duplicates += 1
                    }
                    _ => stats.filed += 1,
                }
            }
            (self.committed)(stats.fetched);
        }
        if !retried.is_empty() {
            store::forget_left_out(store.conn(), mailbox, uidvalidity, Some(&retried))?;
        }
        Ok(())
    }
}

/// Logs messages the server left out of its answer (`what`: of the size
/// listing or of a body FETCH): a warning on the 1st, 2nd, 4th, 8th, ...
/// pass, so a message a server can never send does not flood the log.
fn log_left_out(mailbox: &str, what: &str, uids: &[u32], tries: &[i64]) {
    for (uid, tries) in uids.iter().zip(tries) {
        if (*tries as u64).is_power_of_two() {
            warn!(mailbox, uid, tries, answer = what,
                "server left the message out of its answer; the next passes ask for it again (`ticketd stats` lists it)");
        } else {
            debug!(
                mailbox,
                uid,
                tries,
                answer = what,
                "server left the message out again"
            );
        }
    }
}

/// An IMAP UID set: `uids` (sorted, runs written as ranges) and everything
/// from `from` on.
fn uid_set(uids: &[u32], from: Option<u32>) -> String {
    let below: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| from.is_none_or(|from| *u < from))
        .collect();
    let mut parts: Vec<String> = below
        .chunk_by(|a, b| *b == a + 1)
        .map(|run| match run {
            [first, .., last] => format!("{first}:{last}"),
            _ => run[0].to_string(),
        })
        .collect();
    parts.extend(from.map(|from| format!("{from}:*")));
    parts.join(",")
}

/// How filed mail is moved to `imap.move_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mover {
    /// `UID MOVE` (RFC 6851).
    Move,
    /// `UID COPY`, `\Deleted`, `UID EXPUNGE` of just those (UIDPLUS).
    CopyExpunge,
}

async fn add_flag(
    session: &mut ImapSession,
    set: &str,
    flag: &str,
) -> Result<(), async_imap::error::Error> {
    session
        .uid_store(set, format!("+FLAGS.SILENT ({flag})"))
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// How `imap.move_to` will be done on this server (None without it), its
/// mailbox made if it is not there yet.
async fn prepare_move(
    cfg: &ImapConfig,
    session: &mut ImapSession,
    caps: &async_imap::types::Capabilities,
) -> Result<Option<Mover>, ImapError> {
    let Some(to) = &cfg.move_to else {
        return Ok(None);
    };
    let mover = if caps.has_str("MOVE") {
        Mover::Move
    } else if caps.has_str("UIDPLUS") {
        Mover::CopyExpunge
    } else {
        return Err(ImapError::Command {
            op: "UID MOVE",
            message: "imap.move_to needs the server's MOVE or UIDPLUS extension, and it has \
                      neither; leave move_to out (mark_seen works on any server)"
                .into(),
        });
    };
    // Made the first time; "already exists" is the usual answer.
    if let Err(e) = timed(cfg.timeout, "CREATE", session.create(to)).await {
        debug!(mailbox = to, error = %e, "CREATE of imap.move_to");
    }
    Ok(Some(mover))
}

/// For `ticketd check`: what happens to filed mail on this server.
pub async fn check_after_filing(
    cfg: &ImapConfig,
    session: &mut ImapSession,
) -> Result<String, ImapError> {
    let caps = timed(cfg.timeout, "CAPABILITY", session.capabilities()).await?;
    let moved = match (prepare_move(cfg, session, &caps).await?, &cfg.move_to) {
        (Some(Mover::Move), Some(to)) => format!("moved to {to} (UID MOVE)"),
        (Some(Mover::CopyExpunge), Some(to)) => {
            format!("moved to {to} (UID COPY and UID EXPUNGE)")
        }
        _ => String::new(),
    };
    Ok(match (cfg.mark_seen, moved.is_empty()) {
        (false, true) => "left as it is (read-only)".into(),
        (true, true) => "flagged \\Seen".into(),
        (false, false) => moved,
        (true, false) => format!("flagged \\Seen and {moved}"),
    })
}

/// Filed mail flagged or moved per command, at most.
const AFTER_FILING_CHUNK: usize = 500;

/// Flags filed mail \Seen and moves it, as `imap.mark_seen` and
/// `imap.move_to` ask, once its commit is durable (the queue is written in
/// that commit). What the server refuses stays queued for the next pass;
/// doing it twice is harmless.
async fn after_filing(
    cfg: &ImapConfig,
    session: &mut ImapSession,
    mailbox: &str,
    // `&mut`: a shared reference held across the awaits below would need
    // the store to be Sync for the watcher's task to be sent to a thread.
    store: &mut Store,
    mover: Option<Mover>,
) -> Result<(), ImapError> {
    let Some(pos) = store.position(mailbox)? else {
        return Ok(());
    };
    loop {
        let uids = store::after_filing(store.conn(), mailbox, pos.uidvalidity, AFTER_FILING_CHUNK)?;
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(&uids, None);
        let done = async {
            if cfg.mark_seen {
                add_flag(session, &set, "\\Seen").await?;
            }
            match (cfg.move_to.as_deref(), mover) {
                (Some(to), Some(Mover::Move)) => session.uid_mv(&set, to).await?,
                (Some(to), Some(Mover::CopyExpunge)) => {
                    session.uid_copy(&set, to).await?;
                    add_flag(session, &set, "\\Deleted").await?;
                    session
                        .uid_expunge(&set)
                        .await?
                        .try_collect::<Vec<_>>()
                        .await?;
                }
                _ => {}
            }
            Ok::<_, async_imap::error::Error>(())
        };
        match tokio::time::timeout(cfg.timeout, done).await {
            Err(_) => return Err(ImapError::Timeout("UID STORE/MOVE")),
            Ok(Err(
                async_imap::error::Error::No(message) | async_imap::error::Error::Bad(message),
            )) => {
                warn!(mailbox, uids = %set, move_to = cfg.move_to.as_deref(), %message,
                    "the server refused to flag or move filed mail; trying again on the next pass");
                return Ok(());
            }
            Ok(Err(e)) => {
                return Err(ImapError::Command {
                    op: "UID STORE/MOVE",
                    message: e.to_string(),
                })
            }
            Ok(Ok(())) => {
                debug!(mailbox, uids = %set, "filed mail flagged or moved");
                store::done_after_filing(store.conn(), mailbox, pos.uidvalidity, &uids)?;
            }
        }
    }
}

/// For `ticketd check`: the messages of an EXAMINEd mailbox past the
/// store's position (all of them before the first pass), and how many of
/// those the server received before `old_before` (day precision, as IMAP
/// SEARCH BEFORE has it): filed without an acknowledgement.
pub async fn unread_preview(
    session: &mut ImapSession,
    limit: Duration,
    mailbox: &str,
    mbox: &async_imap::types::Mailbox,
    store: &Store,
    old_before: Option<chrono::NaiveDate>,
) -> Result<(usize, usize), ImapError> {
    if mbox.exists == 0 {
        return Ok((0, 0));
    }
    let last_uid = match store.position(mailbox)? {
        Some(p) if Some(p.uidvalidity) == mbox.uid_validity => p.last_uid,
        _ => 0,
    };
    let after = |uids: HashSet<u32>| uids.into_iter().filter(|&u| u > last_uid).count();
    let range = format!("UID {}:*", last_uid + 1);
    let unread = after(timed(limit, "UID SEARCH", session.uid_search(&range)).await?);
    let old = match old_before {
        Some(day) if unread > 0 => {
            let query = format!("{range} BEFORE {}", day.format("%-d-%b-%Y"));
            after(timed(limit, "UID SEARCH", session.uid_search(query)).await?)
        }
        _ => 0,
    };
    Ok((unread, old))
}

/// For `ticketd check`: how the intake rules would treat the last `n`
/// messages of a mailbox, as (reason, count), most common first. Headers
/// only; nothing is filed or flagged.
pub async fn intake_preview(
    session: &mut ImapSession,
    limit: Duration,
    mailbox: &str,
    rules: &intake::IntakeRules,
    prefix: &str,
    store: &Store,
    n: u32,
) -> Result<Vec<(String, usize)>, ImapError> {
    let mbox = timed(limit, "EXAMINE", session.examine(mailbox)).await?;
    if mbox.exists == 0 {
        return Ok(vec![]);
    }
    let first = mbox.exists.saturating_sub(n.saturating_sub(1)).max(1);
    let query = format!("(UID BODY.PEEK[HEADER.FIELDS ({})])", intake::HEADER_FIELDS);
    let stream = timed(limit, "FETCH", session.fetch(format!("{first}:*"), query)).await?;
    let fetches: Vec<_> = timed(limit, "FETCH", stream.try_collect::<Vec<_>>()).await?;
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut seen = HashSet::new();
    for f in &fetches {
        let headers = f.header().unwrap_or(b"");
        let msg = parse::parse(headers);
        let decision = intake::select(
            headers,
            &msg,
            rules,
            prefix,
            &store::Lookup(store.conn()),
            &seen,
        );
        if decision.is_selected() {
            seen.insert(msg.dedupe_key.clone());
        }
        let reason = decision.reason();
        match counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += 1,
            None => counts.push((reason, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(counts)
}

fn batches(sizes: &[(u32, u64)]) -> Vec<&[(u32, u64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, (_, size)) in sizes.iter().enumerate() {
        if i > start && (bytes + size > BATCH_BYTES || i - start >= BATCH_MESSAGES) {
            out.push(&sizes[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(&sizes[start..]);
    }
    out
}

/// Why `wait` returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Something may have changed in the mailbox: sync again.
    Changed,
    Shutdown,
}

pub fn has_idle(caps: &async_imap::types::Capabilities) -> bool {
    caps.has_str("IDLE")
}

/// Waits until the mailbox may have changed, at most `pause`: IDLE when
/// the server has it, else a sleep. Hands the session back for the next sync.
pub async fn wait(
    limit: Duration,
    session: ImapSession,
    use_idle: bool,
    pause: Duration,
    shutdown: &Shutdown,
) -> Result<(ImapSession, Wake), ImapError> {
    if !use_idle {
        let mut session = session;
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return Ok((session, Wake::Shutdown)),
        }
        timed(limit, "NOOP", session.noop()).await?;
        return Ok((session, Wake::Changed));
    }
    let unsolicited = session.unsolicited_responses.clone();
    let news = || {
        let mut news = false;
        while let Ok(r) = unsolicited.try_recv() {
            news |= matches!(
                r,
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
            );
        }
        news
    };
    // Mail that arrived while the last sync fetched was announced in that
    // FETCH's answer (after its listing was taken); the server does not
    // announce it again, so it is fetched now, not at the next IDLE renewal.
    if news() {
        return Ok((session, Wake::Changed));
    }
    let mut idle = session.idle();
    timed(limit, "IDLE", idle.init()).await?;
    // Mail that arrived between the last FETCH and IDLE is announced before
    // the server's continuation, and async-imap routes it to the channel.
    let pending = news();
    let wake = if pending {
        Wake::Changed
    } else {
        // `_stop` must live until the wait ends: dropping it interrupts IDLE.
        let (fut, _stop) = idle.wait_with_timeout(pause);
        let result = tokio::select! {
            r = fut => Some(r),
            _ = shutdown.wait() => None,
        };
        match result {
            None => Wake::Shutdown,
            Some(Ok(IdleResponse::NewData(_))) => Wake::Changed,
            Some(Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt)) => Wake::Changed,
            Some(Err(e)) => {
                return Err(ImapError::Command {
                    op: "IDLE",
                    message: e.to_string(),
                })
            }
        }
    };
    let session = timed(limit, "DONE", idle.done()).await?;
    Ok((session, wake))
}

/// Logs out politely; errors here no longer matter.
pub async fn logout(mut session: ImapSession) {
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
}

/// One connection's life: sync, wait, sync, ... until shutdown or `once`.
/// What the watcher tells the daemon as it goes.
pub struct Hooks<'a> {
    /// Something was filed (what the sync did): the outbox may have work.
    pub on_filed: &'a (dyn Fn(&SyncStats) + Sync),
    /// A bounded round trip with the server just succeeded (watchdog).
    pub on_alive: &'a (dyn Fn(&str, &str) + Sync),
    /// A batch was committed in the middle of a sync, with the number of
    /// messages the sync has filed so far: progress through a backlog
    /// (watchdog, READY), and the outbox may have work. Called from the
    /// filing thread.
    pub on_committed: &'a (dyn Fn(usize) + Sync),
    /// The longest the watcher may stay silent: IDLE is renewed (and a
    /// polling server NOOPed) at least this often.
    pub keepalive: Duration,
    /// Dry run: decisions are reported here, nothing is filed.
    pub report: Option<&'a (dyn Fn(String) + Sync)>,
}

/// One connection's life for one mailbox: sync, wait, sync, ... until
/// shutdown or `once`.
pub async fn watch(
    cfg: &ImapConfig,
    mailbox: &str,
    store: &mut Store,
    ingestor: &Ingestor<'_>,
    shutdown: &Shutdown,
    once: bool,
    hooks: &Hooks<'_>,
) -> Result<(), ImapError> {
    let mut session = connect(cfg).await?;
    let caps = timed(cfg.timeout, "CAPABILITY", session.capabilities()).await?;
    let use_idle = has_idle(&caps);
    let mover = prepare_move(cfg, &mut session, &caps).await?;
    if !use_idle {
        info!(mailbox, interval = ?cfg.poll_interval, "server has no IDLE; polling");
    }
    let pause = if use_idle {
        hooks.keepalive.min(IDLE_RENEW)
    } else {
        hooks.keepalive.min(cfg.poll_interval)
    };
    loop {
        let started = Instant::now();
        let stats = sync(
            cfg.timeout,
            &mut session,
            mailbox,
            store,
            ingestor,
            shutdown,
            hooks,
        )
        .instrument(info_span!("sync", mailbox))
        .await?;
        if stats.fetched > 0 {
            // Where the time went: the stage whose busy time is close to
            // took_ms is what holds a backlog up (the server and the link,
            // parsing, or the store and its disk).
            let ms = |d: Duration| d.as_millis() as u64;
            info!(
                mailbox,
                fetched = stats.fetched,
                filed = stats.filed,
                duplicates = stats.duplicates,
                took_ms = ms(started.elapsed()),
                fetch_ms = ms(stats.fetching),
                parse_ms = ms(stats.parsing),
                file_ms = ms(stats.filing),
                "mailbox synced"
            );
            (hooks.on_filed)(&stats);
        }
        if cfg.changes_mailbox() && hooks.report.is_none() {
            after_filing(cfg, &mut session, mailbox, store, mover).await?;
        }
        (hooks.on_alive)(
            mailbox,
            if use_idle {
                "waiting for mail (IDLE)"
            } else {
                "waiting for mail (polling)"
            },
        );
        if once || shutdown.is_requested() {
            break;
        }
        let (s, wake) = wait(cfg.timeout, session, use_idle, pause, shutdown).await?;
        session = s;
        if wake == Wake::Shutdown {
            break;
        }
    }
    logout(session).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_no_is_a_refused_login() {
        use async_imap::error::Error;
        let refused = |e| matches!(login_error("u", e), ImapError::Login { .. });
        assert!(refused(Error::No(
            "[AUTHENTICATIONFAILED] Authentication failed.".into()
        )));
        assert!(refused(Error::Bad(
            "[PRIVACYREQUIRED] Plaintext denied".into()
        )));
        assert!(!refused(Error::No(
            "[UNAVAILABLE] Temporary authentication failure".into()
        )));
        assert!(!refused(Error::ConnectionLost));
        assert!(!refused(Error::Io(std::io::Error::other("reset"))));
    }

    #[test]
    fn batches_respect_size_and_count() {
        let sizes: Vec<(u32, u64)> = (1..=5).map(|u| (u, 10 * 1024 * 1024)).collect();
        let b = batches(&sizes);
        assert_eq!(
            b.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![1, 1, 1, 1, 1]
        );
        let small: Vec<(u32, u64)> = (1..=450).map(|u| (u, 1000)).collect();
        assert_eq!(
            batches(&small).iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![200, 200, 50]
        );
        assert!(batches(&[]).is_empty());
    }

    /// Joins two vectors while they hold at most `max` items together.
    fn join_up_to(max: usize) -> impl FnMut(&mut Vec<u32>, Vec<u32>) -> Option<Vec<u32>> {
        move |waiting, later| {
            if waiting.len() + later.len() > max {
                return Some(later);
            }
            waiting.extend(later);
            None
        }
    }

    #[test]
    fn what_is_given_while_the_taker_is_busy_joins_the_waiting_item() {
        let handoff = Handoff::new();
        let giver = handoff.giver();
        assert!(handoff.give(vec![1], join_up_to(3)));
        assert!(handoff.give(vec![2], join_up_to(3)));
        assert!(handoff.give(vec![3], join_up_to(3)));
        assert_eq!(handoff.take(), Some(vec![1, 2, 3]));
        assert!(handoff.give(vec![4], join_up_to(3)));
        drop(giver);
        assert_eq!(handoff.take(), Some(vec![4]));
        assert_eq!(handoff.take(), None);
    }

    #[test]
    fn an_item_too_large_to_join_waits_for_the_taker_and_keeps_its_place() {
        let handoff = Handoff::new();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _giver = handoff.giver();
                for i in 0..50 {
                    assert!(handoff.give(vec![i, i], join_up_to(3)));
                }
            });
            let mut taken = Vec::new();
            while let Some(item) = handoff.take() {
                assert_eq!(item.len(), 2, "{item:?}");
                taken.extend(item);
            }
            let want: Vec<u32> = (0..50).flat_map(|i| [i, i]).collect();
            assert_eq!(taken, want);
        });
    }

    #[test]
    fn giving_stops_once_the_taker_is_gone() {
        let handoff = Handoff::new();
        let taker = handoff.taker();
        std::thread::scope(|scope| {
            let giving = scope.spawn(|| {
                assert!(handoff.give(vec![1, 2], join_up_to(2)));
                // Cannot join and waits, until the taker goes.
                handoff.give(vec![3], join_up_to(2))
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(taker);
            assert!(!giving.join().unwrap());
        });
        assert!(!handoff.give(vec![4], join_up_to(2)));
    }

    #[test]
    fn taking_stops_when_the_giver_fails() {
        let handoff: Handoff<Vec<u32>> = Handoff::new();
        std::thread::scope(|scope| {
            let giving = scope.spawn(|| {
                let _giver = handoff.giver();
                assert!(handoff.give(vec![1], join_up_to(2)));
                panic!("the giving thread failed");
            });
            assert!(giving.join().is_err());
            assert_eq!(handoff.take(), Some(vec![1]));
            assert_eq!(handoff.take(), None);
        });
    }

    fn ready(
        ingestor: &Ingestor<'_>,
        dir: &std::path::Path,
        uids: std::ops::RangeInclusive<u32>,
    ) -> Ready {
        let raws: Vec<Vec<u8>> = uids
            .clone()
            .map(|u| {
                format!(
                    "From: buyer{u}@example.test\r\nTo: support@example.test\r\n\
                     Message-ID: <{u}@example.test>\r\nSubject: order {u}\r\n\r\nhello {u}\r\n"
                )
                .into_bytes()
            })
            .collect();
        let items: Vec<Incoming<'_>> = uids
            .clone()
            .zip(&raws)
            .map(|(u, raw)| Incoming {
                raw,
                position: Some(MailboxPosition {
                    mailbox: "INBOX".into(),
                    uidvalidity: 7,
                    last_uid: u,
                }),
                too_large: None,
                received: None,
            })
            .collect();
        let prepared = ingestor.prepare(dir, &items, chrono::Utc::now()).unwrap();
        Ready {
            held: prepared.held_bytes(),
            prepared,
            span: tracing::Span::none(),
            left_out: Vec::new(),
            retried: Vec::new(),
            first_uid: Some(*uids.start()),
            last_uid: Some(*uids.end()),
        }
    }

    #[test]
    fn batches_join_while_small_enough_with_what_was_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::parse(
            &format!(
                "[store]\ndata_dir = \"{}\"\n",
                dir.path().join("data").display()
            ),
            &dir.path().join("ticketd.toml"),
        )
        .unwrap();
        let templates = crate::ack::AckTemplates::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
        )
        .unwrap();
        let ingestor = Ingestor {
            config: &config,
            templates: &templates,
        };
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();

        let mut first = ready(&ingestor, &data, 1..=3);
        let held = first.held;
        assert!(held > 0);
        assert!(first
            .absorb(ready(&ingestor, &data, 4..=5), "INBOX")
            .is_none());
        assert_eq!(first.prepared.len(), 5);
        assert_eq!((first.first_uid, first.last_uid), (Some(1), Some(5)));
        assert!(first.held > held);

        // Not past GROUP_MESSAGES.
        let big = ready(&ingestor, &data, 6..=(GROUP_MESSAGES as u32 + 1));
        assert_eq!(big.prepared.len(), GROUP_MESSAGES - 4);
        let big = first.absorb(big, "INBOX").expect("too many to join");
        assert_eq!(big.first_uid, Some(6));
        assert_eq!(first.prepared.len(), 5);

        // Up to GROUP_BYTES, not past it.
        let later = ready(&ingestor, &data, 6..=8);
        first.held = GROUP_BYTES - later.held + 1;
        let later = first.absorb(later, "INBOX").expect("too large to join");
        assert_eq!(first.prepared.len(), 5);
        first.held = GROUP_BYTES - later.held;
        assert!(first.absorb(later, "INBOX").is_none());
        assert_eq!((first.prepared.len(), first.held), (8, GROUP_BYTES));

        // What the server left out, and what came after all, go along.
        let mut group = ready(&ingestor, &data, 1..=2);
        group.left_out = vec![3];
        let mut later = ready(&ingestor, &data, 5..=5);
        (later.left_out, later.retried) = (vec![4], vec![1]);
        assert!(group.absorb(later, "INBOX").is_none());
        assert_eq!((group.left_out, group.retried), (vec![3, 4], vec![1]));
        assert_eq!(group.last_uid, Some(5));
    }

    #[test]
    fn uid_sets_name_the_left_out_uids_in_runs_and_then_the_new_ones() {
        assert_eq!(uid_set(&[], Some(1)), "1:*");
        assert_eq!(uid_set(&[3], Some(10)), "3,10:*");
        assert_eq!(uid_set(&[2, 3, 4, 7, 9, 10], Some(42)), "2:4,7,9:10,42:*");
        // Those at or above `from` are in `from:*` already.
        assert_eq!(uid_set(&[5, 6, 7, 8], Some(7)), "5:6,7:*");
        assert_eq!(uid_set(&[1, 2, 5], None), "1:2,5");
    }
}

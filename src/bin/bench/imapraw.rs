//! The physical limit for ingest: the fastest fetch of a whole mailbox a
//! client can do over the same connection type ticketd uses (tokio, rustls
//! with the rig's CA, async-imap): log in, EXAMINE, one
//! `UID FETCH 1:* BODY.PEEK[]`, bytes counted and dropped; and the same
//! for the headers alone (`BODY.PEEK[HEADER]`), the least a client reads
//! to pick its mail out of a shared mailbox.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::TryStreamExt;
use ticketd::net::MailStream;
use ticketd::rig::RIG_PASSWORD;

use crate::util::CpuUse;
use tokio::net::TcpStream;

/// How to reach the rig's IMAP server.
#[derive(Debug, Clone, Copy)]
pub enum Conn<'a> {
    /// Port 143 style, no TLS (what `tls = "none"` does on loopback).
    Plain(u16),
    /// Implicit TLS, verified against the rig's CA.
    Tls(u16, &'a Path),
}

pub type Session = async_imap::Session<MailStream>;

pub async fn login(conn: Conn<'_>, user: &str) -> Result<Session> {
    let port = match conn {
        Conn::Plain(p) | Conn::Tls(p, _) => p,
    };
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to IMAP on port {port}"))?;
    tcp.set_nodelay(true)?;
    let stream = match conn {
        Conn::Plain(_) => MailStream::Plain(tcp),
        Conn::Tls(_, ca) => {
            let config = ticketd::net::tls_config(Some(ca))?;
            let name = rustls::pki_types::ServerName::try_from("localhost".to_string())?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .context("TLS handshake with the rig's Dovecot")?;
            MailStream::Tls(Box::new(tls))
        }
    };
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await
        .ok_or_else(|| anyhow!("no IMAP greeting"))??;
    client
        .login(user, RIG_PASSWORD)
        .await
        .map_err(|(e, _)| anyhow!("IMAP login as {user}: {e}"))
}

/// Logs in and selects INBOX once, so Dovecot creates the user's maildir.
pub async fn create_mailbox(port: u16, user: &str) -> Result<()> {
    let mut s = login(Conn::Plain(port), user).await?;
    s.select("INBOX").await?;
    s.logout().await?;
    Ok(())
}

/// Lets Dovecot notice files written straight into the maildir (UIDs,
/// index) so neither the baseline nor ticketd pays for that first scan.
/// Returns the number of messages and their RFC822.SIZE total.
pub async fn sync_index(port: u16, user: &str) -> Result<(usize, u64)> {
    let mut s = login(Conn::Plain(port), user).await?;
    let mbox = s.examine("INBOX").await?;
    let mut n = 0;
    let mut bytes = 0u64;
    if mbox.exists > 0 {
        let stream = s.uid_fetch("1:*", "(UID RFC822.SIZE)").await?;
        let all: Vec<_> = stream.try_collect().await?;
        n = all.len();
        bytes = all.iter().map(|f| u64::from(f.size.unwrap_or(0))).sum();
    }
    s.logout().await?;
    Ok((n, bytes))
}

/// One raw fetch of the whole mailbox.
#[derive(Debug, Clone, Copy)]
pub struct RawFetch {
    pub messages: usize,
    pub bytes: u64,
    /// From connect to the last byte, login included (as ticketd's wall time).
    pub total: Duration,
    /// The bench's and the machine's CPU over the fetch, logout included
    /// (where the caller measured it).
    pub cpu: Option<CpuUse>,
}

pub async fn fetch_all(conn: Conn<'_>, user: &str) -> Result<RawFetch> {
    fetch_items(conn, user, "BODY.PEEK[]").await
}

/// The headers of every message (`UID FETCH 1:* BODY.PEEK[HEADER]`): what
/// a client must read at least to decide which mail is its own.
pub async fn fetch_headers(conn: Conn<'_>, user: &str) -> Result<RawFetch> {
    fetch_items(conn, user, "BODY.PEEK[HEADER]").await
}

/// `UID FETCH 1:* items`, each message's response (with a body or a
/// header) handed to `each` as it comes, until `each` says stop; returns
/// the messages and their bytes.
async fn fetch_each(
    s: &mut Session,
    items: &str,
    mut each: impl FnMut(async_imap::types::Fetch) -> bool,
) -> Result<(usize, u64)> {
    let mut messages = 0;
    let mut bytes = 0u64;
    let mut stream = s.uid_fetch("1:*", items).await?;
    while let Some(f) = stream.try_next().await? {
        let Some(len) = f.body().or_else(|| f.header()).map(|b| b.len()) else {
            continue;
        };
        messages += 1;
        bytes += len as u64;
        if !each(f) {
            break;
        }
    }
    Ok((messages, bytes))
}

async fn fetch_items(conn: Conn<'_>, user: &str, items: &str) -> Result<RawFetch> {
    let started = Instant::now();
    let mut s = login(conn, user).await?;
    s.examine("INBOX").await?;
    let (messages, bytes) = fetch_each(&mut s, items, |_| true).await?;
    let total = started.elapsed();
    let _ = s.logout().await;
    Ok(RawFetch {
        messages,
        bytes,
        total,
        cpu: None,
    })
}

/// The same fetch without an IMAP library: the command written by hand and
/// the response skimmed (literals skipped by their announced length), so
/// only the server, TLS and the socket remain. Tells whether the
/// async-imap baseline is limited by the client.
pub async fn fetch_wire(conn: Conn<'_>, user: &str) -> Result<RawFetch> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let started = Instant::now();
    let port = match conn {
        Conn::Plain(p) | Conn::Tls(p, _) => p,
    };
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let stream = match conn {
        Conn::Plain(_) => MailStream::Plain(tcp),
        Conn::Tls(_, ca) => {
            let config = ticketd::net::tls_config(Some(ca))?;
            let name = rustls::pki_types::ServerName::try_from("localhost".to_string())?;
            MailStream::Tls(Box::new(
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?,
            ))
        }
    };
    let mut r = BufReader::with_capacity(256 * 1024, stream);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).await?;
    let mut messages = 0;
    let mut bytes = 0u64;
    let commands = [
        format!("a1 LOGIN \"{user}\" \"{RIG_PASSWORD}\"\r\n"),
        "a2 EXAMINE INBOX\r\n".to_string(),
        "a3 UID FETCH 1:* BODY.PEEK[]\r\n".to_string(),
    ];
    for (i, cmd) in commands.iter().enumerate() {
        r.get_mut().write_all(cmd.as_bytes()).await?;
        r.get_mut().flush().await?;
        let tag = format!("a{} ", i + 1);
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).await? == 0 {
                bail!("connection closed during {}", cmd.trim());
            }
            if line.starts_with(tag.as_bytes()) {
                if !line[tag.len()..].starts_with(b"OK") {
                    bail!("{}: {}", cmd.trim(), String::from_utf8_lossy(&line).trim());
                }
                break;
            }
            // "* 12 FETCH (UID 12 BODY[] {4567}\r\n" announces a literal.
            let text = &line[..line.len().saturating_sub(2)];
            if let Some(open) = text.iter().rposition(|&b| b == b'{') {
                if text.last() == Some(&b'}') {
                    let n: usize = std::str::from_utf8(&text[open + 1..text.len() - 1])?.parse()?;
                    let mut left = n;
                    while left > 0 {
                        let buf = r.fill_buf().await?;
                        if buf.is_empty() {
                            bail!("connection closed inside a literal");
                        }
                        let k = buf.len().min(left);
                        r.consume(k);
                        left -= k;
                    }
                    messages += 1;
                    bytes += n as u64;
                }
            }
        }
    }
    let total = started.elapsed();
    let _ = r.get_mut().write_all(b"a4 LOGOUT\r\n").await;
    Ok(RawFetch {
        messages,
        bytes,
        total,
        cpu: None,
    })
}

/// The least any store of this mail must do on top of the raw fetch: the
/// same `UID FETCH 1:* BODY.PEEK[]`, each message hashed once with sha256
/// (the content address the design asks of attachments, which are most of
/// the bytes) and appended to one file, made durable at the end. Two
/// threads hash and write while the fetch goes on (writeback started as
/// each message is written, as ticketd does), so the fetch, the hashing
/// and the disk overlap. No parsing, no database, one file: a floor, not
/// a design.
pub async fn fetch_and_keep(conn: Conn<'_>, user: &str, file: &Path) -> Result<RawFetch> {
    use sha2::{Digest, Sha256};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let out =
        std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let out = Arc::new(out);
    let end = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut s = login(conn, user).await?;
    s.examine("INBOX").await?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<async_imap::types::Fetch>(8);
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (rx, out, end) = (rx.clone(), out.clone(), end.clone());
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let next = rx.lock().map_err(|_| anyhow!("a worker panicked"))?.recv();
                    let Ok(f) = next else { break };
                    let Some(body) = f.body() else { continue };
                    std::hint::black_box(Sha256::digest(body));
                    let at = end.fetch_add(body.len() as u64, Ordering::Relaxed);
                    out.write_all_at(body, at)?;
                    // SAFETY: sync_file_range only reads the descriptor,
                    // which `out` keeps open.
                    unsafe {
                        libc::sync_file_range(
                            out.as_raw_fd(),
                            at as i64,
                            body.len() as i64,
                            libc::SYNC_FILE_RANGE_WRITE,
                        );
                    }
                }
                Ok(())
            })
        })
        .collect();
    // A send blocks this (bench) runtime thread while both workers are
    // busy and eight messages wait: the fetch waits too.
    let (messages, bytes) = fetch_each(&mut s, "BODY.PEEK[]", |f| tx.send(f).is_ok()).await?;
    drop(tx);
    for w in workers {
        w.join().map_err(|_| anyhow!("a worker panicked"))??;
    }
    out.sync_data()?;
    let total = started.elapsed();
    let _ = s.logout().await;
    Ok(RawFetch {
        messages,
        bytes,
        total,
        cpu: None,
    })
}

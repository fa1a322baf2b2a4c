//! A small fault-injecting TCP proxy for the fault tests.
//!
//! [`Proxy::start`] listens on `127.0.0.1:0` and forwards every connection
//! to a real server port on loopback. The test then breaks the link on
//! purpose: [`Proxy::cut`] closes every current connection, [`Proxy::stall`]
//! stops forwarding bytes in both directions while the sockets stay open
//! (a hung server or a dead NAT entry), [`Proxy::refuse`] accepts new
//! connections and closes them at once (a server that is down), and
//! [`Proxy::delay`] sleeps before forwarding each chunk (a slow link), and
//! [`Proxy::omit_body`] drops the server's `FETCH` response carrying one
//! UID's body (a server that leaves a message out of its answer, as Gmail
//! and Exchange do with "Some messages could not be FETCHed"), and
//! [`Proxy::omit_size`] the one carrying its size; [`Proxy::hide_capability`]
//! takes an extension out of the server's CAPABILITY lists, and
//! [`Proxy::hold`] holds back the server's bytes on the one connection
//! where a marker passes (a server slow to send one mailbox's mail).
//!
//! Plain std threads: one accept thread plus two per connection, at most
//! [`MAX_CONNECTIONS`] connections at a time (more are closed on accept).
//! Every thread polls a stop flag at least every [`TICK`], and dropping the
//! proxy closes all sockets and joins all threads.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Connections forwarded at the same time; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 32;
/// How often idle threads look at the stop, stall and cut flags.
const TICK: Duration = Duration::from_millis(20);
/// Bytes read (and forwarded, after the delay) at a time.
const CHUNK: usize = 16 * 1024;
/// A peer that takes no bytes for this long ends its connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A running proxy; stops its threads and closes its sockets on drop.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    refuse: AtomicBool,
    stall: AtomicBool,
    delay_us: AtomicU64,
    /// The UID whose body responses are dropped, and how many more times.
    /// (UID, responses left to drop, the FETCH item that marks them).
    omit: Mutex<Option<(u32, usize, &'static str)>>,
    /// Capabilities taken out of the server's CAPABILITY lists.
    hidden: Mutex<Vec<String>>,
    /// The marker whose first passage downstream is held back, and for how
    /// long; taken by the connection that carries it.
    hold: Mutex<Option<(Vec<u8>, Duration)>>,
    held: AtomicUsize,
    omitted: AtomicUsize,
    next_id: AtomicU64,
    conns: Mutex<Vec<Conn>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// One forwarded connection: clones of both sockets, so `cut` can close
/// them from outside the pump threads.
struct Conn {
    id: u64,
    client: TcpStream,
    server: TcpStream,
    dead: Arc<AtomicBool>,
}

impl Conn {
    fn close(&self) {
        self.dead.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<new port>` to `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("proxy: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("proxy: non-blocking listener");
        let port = listener.local_addr().expect("proxy: local address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            stop: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            stall: AtomicBool::new(false),
            delay_us: AtomicU64::new(0),
            omit: Mutex::new(None),
            hidden: Mutex::new(Vec::new()),
            hold: Mutex::new(None),
            held: AtomicUsize::new(0),
            omitted: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            pumps: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name(format!("proxy-{port}-accept"))
            .spawn(move || accept_loop(listener, s))
            .expect("proxy: spawn accept thread");
        Proxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port clients connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every current connection (both sides). New connections are
    /// still forwarded unless `refuse(true)`.
    pub fn cut(&self) {
        let conns = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        for c in &conns {
            c.close();
        }
    }

    /// While on, no byte moves in either direction, on current and new
    /// connections; sockets stay open and nothing is lost.
    pub fn stall(&self, on: bool) {
        self.shared.stall.store(on, Ordering::SeqCst);
    }

    /// While on, new connections are accepted and closed at once, as by a
    /// server that is down. Current connections are left alone (see `cut`).
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Sleeps this long before forwarding each chunk (of up to 16 KiB), in
    /// both directions. `Duration::ZERO` turns it off.
    pub fn delay(&self, per_chunk: Duration) {
        let us = u64::try_from(per_chunk.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(us, Ordering::SeqCst);
    }

    /// Connections forwarded so far (refused ones not counted).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed on accept because of `refuse(true)` or the limit.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn active(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }

    /// Bytes forwarded (or being written) from the server to clients so far.
    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }

    /// Drops the next `times` untagged FETCH responses that carry the body
    /// (`BODY[]`) of `uid`; everything else, the tagged OK included, goes
    /// through unchanged.
    pub fn omit_body(&self, uid: u32, times: usize) {
        *self.shared.omit.lock().unwrap() = Some((uid, times, "BODY[]"));
    }

    /// Drops the next `times` untagged FETCH responses that carry the size
    /// (`RFC822.SIZE`) of `uid`, as `omit_body` does the body.
    pub fn omit_size(&self, uid: u32, times: usize) {
        *self.shared.omit.lock().unwrap() = Some((uid, times, "RFC822.SIZE"));
    }

    /// Takes `capability` (e.g. `MOVE`) out of every CAPABILITY list the
    /// server sends from now on: a server without that extension.
    pub fn hide_capability(&self, capability: &str) {
        self.shared
            .hidden
            .lock()
            .unwrap()
            .push(capability.to_string());
    }

    /// The first time the server sends `marker` (on any connection), that
    /// connection's bytes from the server stop for `duration`, from the
    /// chunk that carries it on; every other connection goes on as before.
    pub fn hold(&self, marker: &str, duration: Duration) {
        *self.shared.hold.lock().unwrap() = Some((marker.as_bytes().to_vec(), duration));
    }

    /// How many times `hold` has held a connection back (0 or 1).
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// How many FETCH responses `omit_body` and `omit_size` have dropped.
    pub fn omitted(&self) -> usize {
        self.shared.omitted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded (or being written) from clients to the server so far.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        self.cut();
        let pumps = std::mem::take(&mut *self.shared.pumps.lock().unwrap());
        for p in pumps {
            let _ = p.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(TICK);
                continue;
            }
            Err(_) => {
                thread::sleep(TICK);
                continue;
            }
        };
        // Finished pump threads are joined here, so their number stays bounded.
        reap_pumps(&shared);
        let full = shared.conns.lock().unwrap().len() >= MAX_CONNECTIONS;
        if shared.refuse.load(Ordering::SeqCst) || full {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) else {
            // The real server is down: the client sees a closed connection.
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        if let Err(e) = start_conn(&shared, client, server) {
            eprintln!("proxy: cannot forward a connection: {e}");
        }
    }
}

fn reap_pumps(shared: &Shared) {
    let mut pumps = shared.pumps.lock().unwrap();
    let (done, running): (Vec<_>, Vec<_>) = pumps.drain(..).partition(|p| p.is_finished());
    *pumps = running;
    drop(pumps);
    for p in done {
        let _ = p.join();
    }
}

fn start_conn(shared: &Arc<Shared>, client: TcpStream, server: TcpStream) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(TICK))?;
        s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    }
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let dead = Arc::new(AtomicBool::new(false));
    shared.conns.lock().unwrap().push(Conn {
        id,
        client: client.try_clone()?,
        server: server.try_clone()?,
        dead: dead.clone(),
    });
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    let mut handles = Vec::with_capacity(2);
    for upward in [true, false] {
        let (src, dst) = if upward {
            (client.try_clone()?, server.try_clone()?)
        } else {
            (server.try_clone()?, client.try_clone()?)
        };
        let s = shared.clone();
        let dead = dead.clone();
        handles.push(
            thread::Builder::new()
                .name(format!(
                    "proxy-conn-{id}-{}",
                    if upward { "up" } else { "down" }
                ))
                .spawn(move || {
                    pump(&s, src, dst, upward, &dead);
                    // One side ended: end the whole connection.
                    let conns = {
                        let mut all = s.conns.lock().unwrap();
                        let (gone, keep): (Vec<Conn>, Vec<Conn>) =
                            all.drain(..).partition(|c| c.id == id);
                        *all = keep;
                        gone
                    };
                    for c in &conns {
                        c.close();
                    }
                    dead.store(true, Ordering::SeqCst);
                })?,
        );
    }
    shared.pumps.lock().unwrap().extend(handles);
    Ok(())
}

/// Copies `src` to `dst` until either side closes, the connection is cut
/// or the proxy stops. While stalled it does not read at all, so the
/// sender's bytes wait in the kernel buffers, as with a hung peer.
fn pump(shared: &Shared, mut src: TcpStream, mut dst: TcpStream, upward: bool, dead: &AtomicBool) {
    let gone = || shared.stop.load(Ordering::SeqCst) || dead.load(Ordering::SeqCst);
    let stalled = || shared.stall.load(Ordering::SeqCst);
    let mut buf = vec![0u8; CHUNK];
    // Downstream bytes not yet known to be a whole response, while a body
    // is to be omitted.
    let mut pending: Vec<u8> = Vec::new();
    // The end of the last chunk, for a `hold` marker cut in two.
    let mut tail: Vec<u8> = Vec::new();
    while !gone() {
        if stalled() {
            thread::sleep(TICK);
            continue;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let delay = Duration::from_micros(shared.delay_us.load(Ordering::SeqCst));
        if !delay.is_zero() {
            sleep_unless(delay, &gone);
        }
        if !upward {
            hold_if_marked(shared, &mut tail, &buf[..n], &gone);
        }
        // Bytes read just before a stall are held back too.
        while stalled() && !gone() {
            thread::sleep(TICK);
        }
        if gone() {
            return;
        }
        // Counted before the write, so a peer that has read the bytes
        // always sees them counted.
        let counter = if upward {
            &shared.bytes_up
        } else {
            &shared.bytes_down
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
        let omitting = !upward
            && (shared.omit.lock().unwrap().is_some()
                || !shared.hidden.lock().unwrap().is_empty()
                || !pending.is_empty());
        let out: Vec<u8> = if omitting {
            pending.extend_from_slice(&buf[..n]);
            let mut out = Vec::new();
            while let Some(len) = response_len(&pending) {
                let unit: Vec<u8> = pending.drain(..len).collect();
                if !omit_this(shared, &unit) {
                    out.extend_from_slice(&hide_capabilities(shared, unit));
                }
            }
            out
        } else {
            buf[..n].to_vec()
        };
        if dst.write_all(&out).is_err() {
            return;
        }
    }
}

/// Sleeps `hold`'s time when `chunk` (after `tail`, the end of the chunk
/// before it) carries its marker and no connection was held yet.
fn hold_if_marked(shared: &Shared, tail: &mut Vec<u8>, chunk: &[u8], gone: &dyn Fn() -> bool) {
    let wait = {
        let mut rule = shared.hold.lock().unwrap();
        let Some((marker, duration)) = rule.as_ref() else {
            return;
        };
        tail.extend_from_slice(chunk);
        let found = tail.windows(marker.len()).any(|w| w == marker.as_slice());
        let keep = marker.len().saturating_sub(1).min(tail.len());
        tail.drain(..tail.len() - keep);
        if !found {
            return;
        }
        let duration = *duration;
        *rule = None;
        duration
    };
    shared.held.fetch_add(1, Ordering::SeqCst);
    sleep_unless(wait, gone);
}

/// The length of the first whole IMAP response in `buf` (its line, and
/// each `{n}` literal with the rest of the line after it), if complete.
fn response_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let eol = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = &buf[at..eol];
        let literal = line
            .strip_suffix(b"}")
            .and_then(|l| {
                l.iter()
                    .rposition(|&b| b == b'{')
                    .map(|open| &l[open + 1..])
            })
            .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<usize>().ok());
        match literal {
            Some(n) => {
                at = eol + 2 + n;
                if at > buf.len() {
                    return None;
                }
            }
            None => return Some(eol + 2),
        }
    }
}

/// Whether `unit` is an untagged FETCH with the body (or size) of the UID to omit
/// (and there are omissions left, which it then uses up).
fn omit_this(shared: &Shared, unit: &[u8]) -> bool {
    let mut rule = shared.omit.lock().unwrap();
    let Some((uid, left, item)) = rule.as_mut() else {
        return false;
    };
    let head_end = unit.iter().position(|&b| b == b'{').unwrap_or(unit.len());
    let head = String::from_utf8_lossy(&unit[..head_end]);
    let matches = head.starts_with("* ")
        && head.contains(" FETCH (")
        && head.contains(*item)
        && head
            .split([' ', '(', ')'])
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == "UID" && w[1] == uid.to_string());
    if !matches {
        return false;
    }
    *left -= 1;
    if *left == 0 {
        *rule = None;
    }
    shared.omitted.fetch_add(1, Ordering::SeqCst);
    true
}

/// `unit` without the hidden capabilities, if it is a CAPABILITY list.
fn hide_capabilities(shared: &Shared, unit: Vec<u8>) -> Vec<u8> {
    let hidden = shared.hidden.lock().unwrap();
    if hidden.is_empty() || !unit.windows(10).any(|w| w == b"CAPABILITY") {
        return unit;
    }
    let Ok(line) = String::from_utf8(unit.clone()) else {
        return unit;
    };
    let mut line = line;
    for cap in hidden.iter() {
        for end in [" ", "]", "\r\n"] {
            line = line.replace(&format!(" {cap}{end}"), end);
        }
    }
    line.into_bytes()
}

fn sleep_unless(total: Duration, gone: &dyn Fn() -> bool) {
    let mut left = total;
    while !left.is_zero() && !gone() {
        let step = left.min(TICK);
        thread::sleep(step);
        left -= step;
    }
}

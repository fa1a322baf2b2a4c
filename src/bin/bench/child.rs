//! ticketd as the bench runs it: a config written for the rig, the release
//! binary as a child process (stopped by its PID), its log lines stamped as
//! they arrive, its memory and CPU time read from /proc, sd_notify READY
//! caught on our own socket, and an SMTP sink that swallows acks when a
//! scenario is about filing, not sending.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ticketd::rig::{MailRig, RIG_PASSWORD};

use crate::util::{cpu_of, machine_busy, mem_of, rss_split, settle_disk, signal, CpuUse};

/// The support address every scenario's config uses as its own address.
pub const SUPPORT: &str = "support@example.test";

/// Where ticketd's IMAP side connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `tls = "none"` to 127.0.0.1.
    None,
    /// `tls = "implicit"` to localhost with the rig's CA.
    Implicit,
}

impl Tls {
    pub fn name(self) -> &'static str {
        match self {
            Tls::None => "plain",
            Tls::Implicit => "TLS",
        }
    }
}

/// Writes a ticketd config for `user`'s mailbox on the rig; acks go to
/// `smtp_port` (the rig's Postfix, or a sink).
pub fn write_config(
    dir: &Path,
    rig: &MailRig,
    tls: Tls,
    user: &str,
    smtp_port: u16,
    data_dir: &Path,
    templates: &Path,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{RIG_PASSWORD}\n"))?;
    let (host, port, mode) = match tls {
        Tls::None => ("127.0.0.1", rig.imap_port(), "none"),
        Tls::Implicit => ("localhost", rig.imaps_port(), "implicit"),
    };
    let text = format!(
        r#"# Written by the ticketd benchmark.
[imap]
host = "{host}"
port = {port}
tls = "{mode}"
username = "{user}"
password_file = "{pw}"
ca_file = "{ca}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from_name = "Whatnot Support"
from_address = "{SUPPORT}"

[store]
data_dir = "{data}"

[tickets]
templates_dir = "{templates}"
"#,
        pw = pw.display(),
        ca = rig.ca_file().display(),
        data = data_dir.display(),
        templates = templates.display(),
    );
    let path = dir.join("ticketd.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Log lines kept, each with the moment the bench read it.
pub type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A running ticketd child.
pub struct Ticketd {
    child: Option<Child>,
    pub pid: u32,
    pub started: Instant,
    pub lines: Lines,
    reader: Option<thread::JoinHandle<()>>,
}

/// How to start one ticketd.
pub struct Launch<'a> {
    pub binary: &'a Path,
    pub config: &'a Path,
    pub args: &'a [&'a str],
    /// sd_notify socket to hand over in NOTIFY_SOCKET.
    pub notify: Option<&'a Path>,
    /// Which stderr lines to keep (all are read, so the pipe never fills).
    pub keep: fn(&str) -> bool,
    /// Run under `perf record` writing this file (memory figures then
    /// describe perf, not ticketd).
    pub perf: Option<&'a Path>,
}

impl Ticketd {
    pub fn start(l: &Launch<'_>) -> Result<Ticketd> {
        let mut cmd = match l.perf {
            Some(out) => {
                let mut c = Command::new("perf");
                // BENCH_PERF_CALL_GRAPH=dwarf for deeper stacks than frame pointers give.
                let graph = std::env::var("BENCH_PERF_CALL_GRAPH").unwrap_or_else(|_| "fp".into());
                c.args(["record", "-F", "997", "--call-graph", &graph, "-q", "-o"])
                    .arg(out)
                    .arg("--")
                    .arg(l.binary);
                c
            }
            None => Command::new(l.binary),
        };
        cmd.arg("--config")
            .arg(l.config)
            .args(["--log-format", "text"])
            .args(l.args)
            // BENCH_TICKETD_LOG (e.g. "debug,async_imap=trace") to look closer.
            .env(
                "TICKETD_LOG",
                std::env::var("BENCH_TICKETD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .env_remove("JOURNAL_STREAM")
            .env_remove("WATCHDOG_USEC")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(sock) = l.notify {
            cmd.env("NOTIFY_SOCKET", sock);
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", l.binary.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let lines: Lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let keep = l.keep;
        // BENCH_TICKETD_STDERR=FILE appends every line ticketd logs there.
        let mut tee = std::env::var_os("BENCH_TICKETD_STDERR").and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        let reader = thread::spawn(move || {
            let mut tail: Vec<String> = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                if let Some(f) = tee.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if keep(&line) || line.contains("ERROR") || line.contains("WARN") {
                    if let Ok(mut v) = sink.lock() {
                        v.push((now, line));
                    }
                } else {
                    tail.push(line);
                    if tail.len() > 40 {
                        tail.drain(..20);
                    }
                }
            }
            if let Ok(mut v) = sink.lock() {
                for t in tail {
                    v.push((Instant::now(), format!("(tail) {t}")));
                }
            }
        });
        Ok(Ticketd {
            child: Some(child),
            pid,
            started,
            lines,
            reader: Some(reader),
        })
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// First kept line containing `needle`, with when it arrived.
    pub fn line_with(&self, needle: &str) -> Option<(Instant, String)> {
        self.lines
            .lock()
            .ok()?
            .iter()
            .find(|(_, l)| l.contains(needle))
            .cloned()
    }

    /// Errors and warnings ticketd logged (the first few).
    pub fn problems(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(_, l)| l.contains("ERROR") || l.contains("WARN"))
                    .take(5)
                    .map(|(_, l)| l.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn log_dump(&self) -> String {
        self.lines
            .lock()
            .map(|v| {
                let n = v.len();
                v[n.saturating_sub(15)..]
                    .iter()
                    .map(|(_, l)| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// SIGTERM, then waits (SIGKILL after `grace`). Returns the status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(s)) = child.try_wait() {
            self.join_reader();
            return Some(s);
        }
        signal(self.pid, "TERM");
        let t = Instant::now();
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if t.elapsed() > grace {
                let _ = child.kill();
                break child.wait().ok();
            }
            thread::sleep(Duration::from_millis(5));
        };
        self.join_reader();
        status
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Ticketd {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// What one `ticketd poll --once` cost.
#[derive(Debug, Clone)]
pub struct PollRun {
    /// Exec to exit; None when the run was stopped after filing.
    pub wall: Option<Duration>,
    /// Exec to "mailbox synced": every message committed, acks not yet sent.
    pub filed: Option<Duration>,
    pub peak_rss: Option<u64>,
    /// Largest RssAnon and RssFile seen (heap vs mapped files).
    pub peak_anon_file: Option<(u64, u64)>,
    pub cpu: Option<Duration>,
    /// ticketd's and the machine's CPU from exec to "mailbox synced" (not
    /// taken under perf).
    pub cpu_use: Option<CpuUse>,
    /// From the `mailbox synced` line: milliseconds of the sync, and how
    /// long its fetch, parse and file stages were busy.
    pub stages: Option<Stages>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Stages {
    pub took_ms: u64,
    pub fetch_ms: u64,
    pub parse_ms: u64,
    pub file_ms: u64,
}

impl Stages {
    /// The fields of a `mailbox synced` log line (text format).
    pub fn from_line(line: &str) -> Option<Stages> {
        let field = |name: &str| -> Option<u64> {
            let at = line.find(&format!(" {name}="))? + name.len() + 2;
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        Some(Stages {
            took_ms: field("took_ms")?,
            fetch_ms: field("fetch_ms")?,
            parse_ms: field("parse_ms")?,
            file_ms: field("file_ms")?,
        })
    }
}

/// Runs `ticketd poll --once`, sampling memory and CPU every few ms. With
/// `until_synced` it is sent SIGTERM once it logs "mailbox synced" (all
/// filed and committed), instead of waiting while it sends the acks.
pub fn poll_once(
    binary: &Path,
    config: &Path,
    perf: Option<&Path>,
    until_synced: bool,
) -> Result<PollRun> {
    settle_disk();
    let busy_before = machine_busy();
    let mut t = Ticketd::start(&Launch {
        binary,
        config,
        args: &["poll", "--once"],
        notify: None,
        keep: |l| l.contains("mailbox synced"),
        perf,
    })?;
    let mut peak = None;
    let mut cpu = None;
    let mut cut_short = false;
    let mut split: Option<(u64, u64)> = None;
    let mut synced = false;
    let mut cpu_use = None;
    let status = loop {
        if let Some(s) = t.try_wait() {
            break s;
        }
        if !synced && t.line_with("mailbox synced").is_some() {
            synced = true;
            if perf.is_none() {
                cpu_use = cpu_of(t.pid).zip(machine_busy().zip(busy_before)).map(
                    |(own, (now, before))| CpuUse {
                        own,
                        machine: now.saturating_sub(before),
                        window: t.started.elapsed(),
                    },
                );
            }
            if until_synced {
                signal(t.pid, "TERM");
                cut_short = true;
            }
        }
        if perf.is_none() {
            if let Some((hwm, _)) = mem_of(t.pid) {
                peak = Some(peak.unwrap_or(0).max(hwm));
            }
            cpu = cpu_of(t.pid).or(cpu);
            if let Some((a, f)) = rss_split(t.pid) {
                let (pa, pf) = split.unwrap_or((0, 0));
                split = Some((pa.max(a), pf.max(f)));
            }
        }
        if t.started.elapsed() > Duration::from_secs(3600) {
            bail!("ticketd poll ran for an hour; giving up");
        }
        thread::sleep(Duration::from_millis(4));
    };
    let wall = t.started.elapsed();
    t.stop(Duration::from_secs(1));
    let synced_line = t.line_with("mailbox synced");
    let filed = synced_line
        .as_ref()
        .map(|(at, _)| at.duration_since(t.started));
    let stages = synced_line.and_then(|(_, l)| Stages::from_line(&l));
    if !status.success() && !cut_short {
        bail!("ticketd poll --once failed ({status}):\n{}", t.log_dump());
    }
    Ok(PollRun {
        wall: (!cut_short).then_some(wall),
        filed,
        peak_rss: peak,
        peak_anon_file: split,
        cpu,
        cpu_use,
        stages,
        problems: t.problems(),
    })
}

/// Our end of the sd_notify protocol. A thread reads every datagram as it
/// comes, as systemd does: ticketd sends STATUS and WATCHDOG after every
/// sync, and a receiver that stops reading fills the socket's queue (10
/// datagrams) and blocks the daemon in its next send.
pub struct NotifySocket {
    pub path: PathBuf,
    got: Arc<Received>,
}

/// Datagrams received so far, and a signal for each new one.
type Received = (Mutex<Vec<(Instant, String)>>, std::sync::Condvar);

impl NotifySocket {
    pub fn bind(path: PathBuf) -> Result<NotifySocket> {
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).context("binding the notify socket")?;
        let got: Arc<Received> = Arc::default();
        let sink = got.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let (lock, cv) = &*sink;
                if let Ok(mut v) = lock.lock() {
                    v.push((at, text));
                    cv.notify_all();
                }
            }
        });
        Ok(NotifySocket { path, got })
    }

    /// Forgets what an earlier child sent.
    pub fn drain(&self) {
        if let Ok(mut v) = self.got.0.lock() {
            v.clear();
        }
    }

    /// Waits for a datagram with READY=1; returns when it arrived.
    pub fn wait_ready(&self, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.got;
        let mut v = lock.lock().ok()?;
        loop {
            if let Some((at, _)) = v.iter().find(|(_, t)| t.lines().any(|l| l == "READY=1")) {
                return Some(*at);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            v = cv.wait_timeout(v, left).ok()?.0;
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A minimal SMTP server on loopback that accepts every mail and drops it:
/// where acks go when a scenario measures filing, so thousands of acks do
/// not queue up in the rig's Postfix and disturb the next scenario.
pub struct SmtpSink {
    pub port: u16,
    pub received: Arc<AtomicUsize>,
}

impl SmtpSink {
    pub fn start() -> Result<SmtpSink> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let count = count.clone();
                thread::spawn(move || {
                    let _ = serve_smtp(conn, &count);
                });
            }
        });
        Ok(SmtpSink { port, received })
    }

    pub fn count(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

fn serve_smtp(conn: TcpStream, count: &AtomicUsize) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 sink.localhost ESMTP bench sink\r\n")?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let cmd = String::from_utf8_lossy(&line).to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            w.write_all(b"250-sink.localhost\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")?;
        } else if cmd.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n")?;
            // Lines until the lone ".": the content is dropped.
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" || line == b".\n" {
                    break;
                }
            }
            count.fetch_add(1, Ordering::Relaxed);
            w.write_all(b"250 2.0.0 dropped\r\n")?;
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 ok\r\n")?;
        }
    }
}

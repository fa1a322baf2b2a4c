//! Shared pieces of the integration tests: a config for a rig, the daemon as
//! a child process (stopped by its PID), and the buyer's view of a mailbox.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ticketd::rig::{MailRig, RIG_PASSWORD};

pub const SUPPORT: &str = "support@example.test";

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// How the daemon reaches the rig's IMAP server.
#[derive(Clone, Copy)]
pub enum Imap {
    Plain,
    Starttls,
    Implicit,
}

pub fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// A config for tests that file mail without the mail servers: the store
/// in `dir/data`, the repository's templates.
pub fn store_config(dir: &Path) -> ticketd::config::Config {
    let text = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = 25\ntls = \"none\"\nfrom_address = \"{SUPPORT}\"\n\n\
         [store]\ndata_dir = \"{}\"\n\n[tickets]\ntemplates_dir = \"{}\"\n",
        dir.join("data").display(),
        templates_dir().display()
    );
    ticketd::config::Config::parse(&text, &dir.join("ticketd.toml")).unwrap()
}

/// Writes a config for the rig; `mailbox_user` is the support mailbox.
pub fn setup(rig: &MailRig, imap: Imap, ca_file: Option<&Path>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("password");
    std::fs::write(&pw, format!("{RIG_PASSWORD}\n")).unwrap();
    let ca = ca_file.unwrap_or(rig.ca_file());
    let (host, port, tls) = match imap {
        Imap::Plain => ("127.0.0.1", rig.imap_port(), "none"),
        Imap::Starttls => ("localhost", rig.imap_port(), "starttls"),
        Imap::Implicit => ("localhost", rig.imaps_port(), "implicit"),
    };
    let text = format!(
        r#"
[imap]
host = "{host}"
port = {port}
tls = "{tls}"
username = "{SUPPORT}"
password_file = "{pw}"
ca_file = "{ca}"
poll_interval = 1

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
from_name = "Whatnot Support"
from_address = "{SUPPORT}"

[store]
data_dir = "{data}"

[tickets]
templates_dir = "{templates}"
"#,
        pw = pw.display(),
        ca = ca.display(),
        smtp = rig.smtp_port(),
        data = dir.path().join("data").display(),
        templates = templates_dir().display(),
    );
    let config = dir.path().join("ticketd.toml");
    std::fs::write(&config, text).unwrap();
    Setup { dir, config }
}

pub fn ticketd(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TICKETD_LOG", "info")
        .output()
        .unwrap()
}

/// `ticketd export --jsonl`, parsed.
pub fn export(config: &Path) -> Vec<serde_json::Value> {
    let out = ticketd(config, &["export", "--jsonl"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `f` until it returns Some, or fails the test after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the mailboxes' message counts have not changed for `quiet`,
/// so a wrongly repeated mail has had every chance to arrive; returns them.
pub fn settled_counts(rig: &MailRig, users: &[impl AsRef<str>], quiet: Duration) -> Vec<usize> {
    let counts = || {
        users
            .iter()
            .map(|u| rig.maildir_count(u.as_ref()))
            .collect()
    };
    let mut last: Vec<usize> = counts();
    let mut since = Instant::now();
    wait_until("the mailboxes to settle", Duration::from_secs(60), || {
        let now: Vec<usize> = counts();
        if now != last {
            last = now;
            since = Instant::now();
        }
        (since.elapsed() >= quiet).then(|| last.clone())
    })
}

/// `ticketd run` as a child process; SIGTERM on drop.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        let log = config.with_file_name(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("TICKETD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon already stopped");
        unsafe_kill(child.id(), "TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("daemon ignored SIGTERM for 20 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_kill(child.id(), "TERM");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every message in `user`'s INBOX, read over IMAP as a buyer's client would.
pub fn imap_messages(rig: &MailRig, user: &str) -> Vec<Vec<u8>> {
    let cfg = buyer_imap(rig, user);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures::TryStreamExt;
        let mut s = ticketd::imap::connect(&cfg).await.unwrap();
        let mbox = s.examine("INBOX").await.unwrap();
        if mbox.exists == 0 {
            return vec![];
        }
        let stream = s.uid_fetch("1:*", "(UID BODY.PEEK[])").await.unwrap();
        let mut fetches: Vec<_> = stream.try_collect().await.unwrap();
        fetches.sort_by_key(|f| f.uid);
        let out = fetches
            .iter()
            .filter_map(|f| f.body().map(|b| b.to_vec()))
            .collect();
        let _ = s.logout().await;
        out
    })
}

/// A buyer's mail as a client would send it.
pub fn buyer_mail(
    from: &str,
    name: &str,
    subject: &str,
    message_id: &str,
    body: &str,
    extra: &str,
) -> Vec<u8> {
    format!(
        "From: {name} <{from}>\r\nTo: Whatnot Support <{SUPPORT}>\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n{extra}\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Unseen messages in `user`'s INBOX (IMAP STATUS), to show nothing we do
/// marks mail as read.
pub fn unseen_count(rig: &MailRig, user: &str) -> u32 {
    let cfg = buyer_imap(rig, user);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s = ticketd::imap::connect(&cfg).await.unwrap();
        let status = s.status("INBOX", "(UNSEEN)").await.unwrap();
        let _ = s.logout().await;
        status.unseen.unwrap_or(0)
    })
}

fn buyer_imap(rig: &MailRig, user: &str) -> ticketd::config::ImapConfig {
    ticketd::config::ImapConfig {
        host: "127.0.0.1".into(),
        port: rig.imap_port(),
        tls: ticketd::config::TlsMode::None,
        username: user.into(),
        password: ticketd::config::SecretSource::Fixed(ticketd::config::Secret::new(RIG_PASSWORD)),
        auth: ticketd::config::AuthMethod::Password,
        mailbox: "INBOX".into(),
        mailboxes: vec!["INBOX".into()],
        ca_file: None,
        poll_interval: Duration::from_secs(60),
        timeout: Duration::from_secs(30),
        mark_seen: false,
        move_to: None,
    }
}

/// Puts a mail into the support mailbox with IMAP APPEND, as received by
/// the server `ago` before now (its INTERNALDATE).
pub fn append_received_ago(rig: &MailRig, mail: &[u8], ago: chrono::Duration) {
    use std::io::{BufRead, BufReader, Write};
    let at = (chrono::Utc::now() - ago).format("%d-%b-%Y %H:%M:%S +0000");
    let conn = std::net::TcpStream::connect(("127.0.0.1", rig.imap_port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut out = conn.try_clone().unwrap();
    let mut lines = BufReader::new(conn);
    let mut line = String::new();
    let mut until = |prefix: &str, line: &mut String| loop {
        line.clear();
        assert!(lines.read_line(line).unwrap() > 0, "IMAP closed");
        assert!(
            !line.starts_with("a NO") && !line.starts_with("a BAD"),
            "{line}"
        );
        if line.starts_with(prefix) {
            return;
        }
    };
    until("* OK", &mut line);
    write!(out, "a LOGIN \"{SUPPORT}\" \"{RIG_PASSWORD}\"\r\n").unwrap();
    until("a OK", &mut line);
    write!(out, "a APPEND INBOX \"{at}\" {{{}}}\r\n", mail.len()).unwrap();
    until("+", &mut line);
    out.write_all(mail).unwrap();
    out.write_all(b"\r\n").unwrap();
    until("a OK", &mut line);
    write!(out, "a LOGOUT\r\n").unwrap();
}

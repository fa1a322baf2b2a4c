//! MailRig: a private Dovecot (IMAP + LMTP) and Postfix (SMTP) pair for the
//! integration tests and the demo.
//!
//! Each rig lives in its own `/tmp/tdrig-XXXXXXXX` directory and listens on
//! free loopback ports, so several rigs can run side by side (cargo runs tests
//! in parallel threads). Nothing under `/etc` is touched and the system
//! services are never started: Dovecot reads `DIR/dovecot.conf`, Postfix reads
//! `DIR/etc/main.cf` and keeps its queue in `DIR/spool`. Both masters are
//! children of the rig and are stopped by their PIDs only.
//!
//! Mail for `example.test`, `buyer.test` and `shop.test` (any local part) goes
//! Postfix -> LMTP -> Dovecot and lands in the maildir that an IMAP login with
//! the same address (password [`RIG_PASSWORD`]) sees. Every other domain is
//! refused at `RCPT TO`, so nothing can leave the machine. One address,
//! [`TEMPFAIL_ADDRESS`], is always answered `450` at `RCPT TO`: a mailbox
//! whose server says "try again later".
//!
//! Postfix listens twice: [`MailRig::smtp_port`] takes plain SMTP from
//! loopback without a login (and offers STARTTLS), [`MailRig::smtps_port`]
//! speaks implicit TLS. On both, SMTP AUTH (PLAIN, LOGIN; any user name with
//! [`RIG_PASSWORD`], checked by the rig's Dovecot over its SASL socket) is
//! offered only once the connection is encrypted. Both use the same server
//! certificate as Dovecot. After a refused login Dovecot delays the next
//! logins (IMAP and SMTP) from 127.0.0.1 by a few seconds (its auth penalty).
//!
//! Layout of a rig directory:
//!
//! ```text
//! dovecot.conf   r/ (Dovecot base_dir: sockets incl. auth-postfix, master.pid)   state/
//! etc/main.cf etc/master.cf   spool/ (Postfix queue)   pfdata/
//! certs/ca.pem certs/server.pem   mail/<user>/Maildir   log/*.log
//! ```
//!
//! Requires root (both daemons switch users) and the Debian packages
//! `dovecot-imapd dovecot-lmtpd postfix openssl`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// Password that logs in any user name on a rig's Dovecot.
pub const RIG_PASSWORD: &str = "test-password";
/// The support side's domain (e.g. `support@example.test`).
pub const SUPPORT_DOMAIN: &str = "example.test";
/// Every domain the rig delivers locally; any local part is accepted.
pub const RIG_DOMAINS: [&str; 3] = ["example.test", "buyer.test", "shop.test"];
/// Postfix answers every `RCPT TO` for this address with a temporary
/// failure (450).
pub const TEMPFAIL_ADDRESS: &str = "tempfail@buyer.test";
/// Address all rig services listen on.
pub const RIG_HOST: &str = "127.0.0.1";
/// Set this (to anything) to keep the rig directory after the rig is dropped.
pub const KEEP_ENV: &str = "TICKETD_KEEP_RIG";

const DIR_PREFIX: &str = "tdrig-";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A port picked from the kernel can be grabbed by someone else before the
/// daemon binds it; a fresh set of ports on the next attempt fixes that.
const START_ATTEMPTS: usize = 3;
const POLL: Duration = Duration::from_millis(5);
const LOG_TAIL_LINES: usize = 15;

/// Ports handed to live rigs of this process, so two rigs started at the same
/// moment in different threads never get the same port from the kernel.
static RESERVED_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Why a rig could not be started or used; messages include log tails or
/// the server's reply where there is one.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error(
        "{program} is not installed: run `bash scripts/setup.sh` (Debian packages: {packages})"
    )]
    NotInstalled {
        program: String,
        packages: &'static str,
    },
    #[error("the mail rig must run as root so Dovecot and Postfix can switch users (effective uid is {0})")]
    NotRoot(u32),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    /// `logs` holds the tails of the daemon's log and stderr; the rig
    /// directory itself is removed unless TICKETD_KEEP_RIG is set.
    #[error("{daemon} did not start: {reason}{logs}")]
    Startup {
        daemon: &'static str,
        reason: String,
        logs: String,
        /// A port was taken between picking and binding it; worth a retry.
        port_clash: bool,
    },
    #[error("Postfix is stopped (call start_postfix first)")]
    PostfixStopped,
    #[error("invalid SMTP address {0:?}")]
    BadAddress(String),
    #[error("Postfix refused `{command}`: {reply}")]
    Smtp { command: String, reply: String },
    #[error("timed out after {waited:?} waiting for {want} message(s) for {user}: {got} delivered\n--- tail of postfix.log ---\n{postfix_tail}\n--- tail of dovecot.log ---\n{dovecot_tail}")]
    MailTimeout {
        user: String,
        want: usize,
        got: usize,
        waited: Duration,
        postfix_tail: String,
        dovecot_tail: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RigError {
    let what = what.into();
    move |source| RigError::Io { what, source }
}

/// A running Dovecot + Postfix pair; stopped and cleaned up on drop.
#[derive(Debug)]
pub struct MailRig {
    dir: PathBuf,
    ca_file: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    lmtp_port: u16,
    smtp_port: u16,
    smtps_port: u16,
    tokeninfo_port: u16,
    dovecot: Option<Daemon>,
    postfix: Option<Daemon>,
}

#[derive(Debug)]
struct Daemon {
    name: &'static str,
    child: Child,
    /// Dovecot 2.3.19 always sleeps a fixed second on shutdown after its
    /// children are gone (it SIGQUITs its own log process, then waits); with
    /// nothing left to do it can be killed at that point to make stop() fast.
    kill_when_only_log_left: bool,
}

impl MailRig {
    /// Starts a fresh rig and returns once IMAP, IMAPS, LMTP, SMTP and SMTPS
    /// listen.
    pub fn start() -> Result<MailRig, RigError> {
        let tools = tools()?;
        check_root()?;
        reap_orphans();
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(tools) {
                Ok(rig) => return Ok(rig),
                // Picked ports are free only until we let go of them;
                // another start with fresh ports fixes a clash.
                Err(
                    e @ RigError::Startup {
                        port_clash: true, ..
                    },
                ) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| RigError::Io {
            what: "starting the mail rig".into(),
            source: io::Error::other("no start attempt was made"),
        }))
    }

    fn start_once(tools: &Tools) -> Result<MailRig, RigError> {
        let dir = create_rig_dir()?;
        let ports = match reserve_ports(6) {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(io_err("picking free loopback ports")(e));
            }
        };
        // From here on Drop cleans up whatever was started if a step fails.
        let mut rig = MailRig {
            ca_file: dir.join("certs/ca.pem"),
            dir,
            imap_port: ports[0],
            imaps_port: ports[1],
            lmtp_port: ports[2],
            smtp_port: ports[3],
            smtps_port: ports[4],
            tokeninfo_port: ports[5],
            dovecot: None,
            postfix: None,
        };
        rig.write_owner_file()?;
        rig.make_certs(tools)?;
        rig.write_dovecot_config(tools)?;
        rig.write_postfix_config(tools)?;

        // Postfix needs Dovecot only when it delivers, and nothing can be
        // delivered before start() returns, so both start concurrently.
        rig.dovecot = Some(rig.spawn_dovecot(tools)?);
        rig.postfix = Some(rig.spawn_postfix(tools)?);
        rig.write_pids_file();
        rig.wait_ready()?;
        Ok(rig)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Plain IMAP (STARTTLS offered, plaintext LOGIN allowed).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// Where Dovecot checks an OAuth2 token (SASL XOAUTH2 or OAUTHBEARER,
    /// for IMAP and, through Dovecot's SASL, Postfix's SMTP AUTH): it asks
    /// `http://127.0.0.1:PORT/tokeninfo?access_token=TOKEN`, as it would
    /// Google's tokeninfo endpoint, and takes the answer's `email` as the
    /// user the token is for. Nothing listens there unless a test serves it.
    pub fn tokeninfo_port(&self) -> u16 {
        self.tokeninfo_port
    }

    /// IMAP over implicit TLS.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// Dovecot's LMTP port (Postfix delivers here; tests rarely need it).
    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// Postfix smtpd: no auth needed from loopback, rig domains only.
    /// STARTTLS is offered (not required), and after it SMTP AUTH.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// Postfix smtpd over implicit TLS (like port 465), SMTP AUTH offered
    /// (any user name, password [`RIG_PASSWORD`]).
    pub fn smtps_port(&self) -> u16 {
        self.smtps_port
    }

    /// PEM CA that signed the server certificate (SAN: DNS localhost, IP 127.0.0.1).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn dovecot_log(&self) -> PathBuf {
        self.dir.join("log/dovecot.log")
    }

    pub fn postfix_log(&self) -> PathBuf {
        self.dir.join("log/postfix.log")
    }

    pub fn postfix_running(&self) -> bool {
        self.postfix.is_some()
    }

    /// Stops Postfix (queued mail stays in the queue for start_postfix).
    pub fn stop_postfix(&mut self) {
        if let Some(d) = self.postfix.take() {
            stop_daemons(vec![d]);
        }
    }

    /// Starts Postfix again on the same SMTP ports; no-op if it is running.
    /// Mail still queued from before stop_postfix is delivered right away.
    pub fn start_postfix(&mut self) -> Result<(), RigError> {
        if self.postfix.is_some() {
            return Ok(());
        }
        let tools = tools()?;
        // Without this, the old pid file would count as "ready".
        let _ = fs::remove_file(self.postfix_pid_file());
        self.postfix = Some(self.spawn_postfix(tools)?);
        self.write_pids_file();
        let ready = self.wait_ready();
        if ready.is_err() {
            self.stop_postfix();
        }
        ready
    }

    /// Sends `raw` (a complete RFC 5322 message) to Postfix over SMTP.
    ///
    /// Line endings are normalised to CRLF and leading dots are stuffed. An
    /// empty `from` sends the null reverse path `<>`. If any recipient is
    /// refused nothing is sent and the error carries Postfix's reply.
    pub fn send(&self, from: &str, to: &[&str], raw: &[u8]) -> Result<(), RigError> {
        if self.postfix.is_none() {
            return Err(RigError::PostfixStopped);
        }
        smtp_send(self.smtp_port, from, to, raw)
    }

    /// Maildir of `user`'s INBOX (Dovecot lower-cases user names).
    pub fn maildir_path(&self, user: &str) -> PathBuf {
        self.dir
            .join("mail")
            .join(user.to_lowercase())
            .join("Maildir")
    }

    /// Number of messages delivered to `user`'s INBOX (new + cur).
    pub fn maildir_count(&self, user: &str) -> usize {
        maildir_entries(&self.maildir_path(user)).len()
    }

    /// Waits until at least `n` messages are in `user`'s INBOX.
    pub fn wait_for_mail(&self, user: &str, n: usize, timeout: Duration) -> Result<(), RigError> {
        let started = Instant::now();
        loop {
            let got = self.maildir_count(user);
            if got >= n {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(RigError::MailTimeout {
                    user: user.to_string(),
                    want: n,
                    got,
                    waited: started.elapsed(),
                    postfix_tail: log_tail(&self.postfix_log()),
                    dovecot_tail: log_tail(&self.dovecot_log()),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Raw bytes of the messages in `user`'s INBOX, oldest delivery first.
    ///
    /// These are the stored bytes: LF line endings, and above the original
    /// header `Return-Path:`, `Delivered-To:` and two `Received:` lines
    /// (Dovecot LMTP's and Postfix's).
    pub fn maildir_messages(&self, user: &str) -> Vec<Vec<u8>> {
        let maildir = self.maildir_path(user);
        let mut last = Vec::new();
        // An IMAP session may rename new/X to cur/X:2, between listing and
        // reading; listing again picks up the new name.
        for _ in 0..10 {
            let mut out = Vec::new();
            let mut complete = true;
            for path in maildir_entries(&maildir) {
                match fs::read(&path) {
                    Ok(bytes) => out.push(bytes),
                    Err(_) => complete = false,
                }
            }
            if complete {
                return out;
            }
            last = out;
            thread::sleep(Duration::from_millis(2));
        }
        last
    }

    /// Stops Postfix and Dovecot and waits until they and their children exit.
    pub fn stop(&mut self) {
        let daemons: Vec<Daemon> = [self.postfix.take(), self.dovecot.take()]
            .into_iter()
            .flatten()
            .collect();
        if !daemons.is_empty() {
            stop_daemons(daemons);
        }
    }

    fn postfix_pid_file(&self) -> PathBuf {
        self.dir.join("spool/pid/master.pid")
    }

    fn write_owner_file(&self) -> Result<(), RigError> {
        let me = std::process::id();
        let start = proc_stat(me).map(|p| p.starttime).unwrap_or(0);
        fs::write(self.dir.join("rig.owner"), format!("{me} {start}\n"))
            .map_err(io_err("writing rig.owner"))
    }

    /// Records the masters so reap_orphans() can stop them if this process
    /// dies without running Drop (e.g. Ctrl-C during `cargo test`).
    fn write_pids_file(&self) {
        let mut text = String::new();
        for d in [&self.dovecot, &self.postfix].into_iter().flatten() {
            let pid = d.child.id();
            let start = proc_stat(pid).map(|p| p.starttime).unwrap_or(0);
            text.push_str(&format!("{pid} {start}\n"));
        }
        let _ = fs::write(self.dir.join("rig.pids"), text);
    }

    fn make_certs(&self, tools: &Tools) -> Result<(), RigError> {
        let certs = self.dir.join("certs");
        mkdir(&certs, 0o755)?;
        // An explicit config keeps the distro's openssl.cnf defaults (which
        // would mark the server cert CA:TRUE, rejected by webpki) out of it.
        let cnf = certs.join("openssl.cnf");
        fs::write(
            &cnf,
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = rig\n\
             [ca_ext]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n\
             [srv_ext]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n\
             subjectAltName = DNS:localhost,IP:127.0.0.1\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        )
        .map_err(io_err("writing openssl.cnf"))?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        run(Command::new(&tools.openssl)
            .current_dir(&certs)
            .args(["req", "-x509", "-config", "openssl.cnf", "-extensions"])
            .args(["ca_ext", "-noenc", "-days", "3650"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.pem"])
            .args(["-subj", "/CN=ticketd mail rig CA"]))?;
        run(Command::new(&tools.openssl)
            .current_dir(&certs)
            .args(["req", "-x509", "-config", "openssl.cnf", "-extensions"])
            .args(["srv_ext", "-noenc", "-days", "3650"])
            .args(["-CA", "ca.pem", "-CAkey", "ca.key"])
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.pem"])
            .args(["-subj", "/CN=localhost"]))?;
        // Both masters read the key as root before their daemons drop
        // privileges (Dovecot via `ssl_key = <file`, Postfix smtpd in its
        // pre-jail init), so root-only is enough; say so rather than rely on
        // openssl's default mode.
        for key in ["ca.key", "server.key"] {
            let path = certs.join(key);
            chown(&path, Some(0), Some(0))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("chmod {}", path.display())))?;
        }
        Ok(())
    }

    fn write_dovecot_config(&self, tools: &Tools) -> Result<(), RigError> {
        let d = self.dir.display();
        for sub in ["state", "log"] {
            mkdir(&self.dir.join(sub), 0o755)?;
        }
        let mail = self.dir.join("mail");
        mkdir(&mail, 0o755)?;
        chown(&mail, Some(tools.mail_uid), Some(tools.mail_gid))?;
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tdrig".into());
        let conf = format!(
            r#"# Private Dovecot of a ticketd MailRig; see src/rig.rs.
protocols = imap lmtp
listen = {RIG_HOST}
base_dir = {d}/r
state_dir = {d}/state
instance_name = {name}
log_path = {d}/log/dovecot.log
auth_verbose = yes

ssl = yes
ssl_cert = <{d}/certs/server.pem
ssl_key = <{d}/certs/server.key
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
passdb {{
  driver = static
  mechanisms = plain login
  args = password={RIG_PASSWORD}
}}
# Tokens are checked at the rig's tokeninfo port (see tokeninfo_port).
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/dovecot-oauth2.conf.ext
}}
userdb {{
  driver = static
  args = home={d}/mail/%u allow_all_users=yes
}}
mail_uid = {mail_uid}
mail_gid = {mail_gid}
# The default (500) would refuse the system `mail` user.
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_idle_check_interval = 1 secs
mail_max_userip_connections = 200

service imap-login {{
  inet_listener imap {{
    address = {RIG_HOST}
    port = {imap}
  }}
  inet_listener imaps {{
    address = {RIG_HOST}
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {RIG_HOST}
    port = {lmtp}
  }}
}}
# SMTP AUTH for the rig's Postfix (smtpd_sasl_type = dovecot); smtpd runs
# as the postfix user.
service auth {{
  unix_listener auth-postfix {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
"#,
            mail_uid = tools.mail_uid,
            mail_gid = tools.mail_gid,
            imap = self.imap_port,
            imaps = self.imaps_port,
            lmtp = self.lmtp_port,
        );
        let oauth2 = format!(
            "tokeninfo_url = http://{RIG_HOST}:{}/tokeninfo?access_token=\nusername_attribute = email\n",
            self.tokeninfo_port
        );
        fs::write(self.dir.join("dovecot-oauth2.conf.ext"), oauth2)
            .map_err(io_err("writing dovecot-oauth2.conf.ext"))?;
        fs::write(self.dir.join("dovecot.conf"), conf).map_err(io_err("writing dovecot.conf"))
    }

    fn write_postfix_config(&self, tools: &Tools) -> Result<(), RigError> {
        let d = self.dir.display();
        let etc = self.dir.join("etc");
        mkdir(&etc, 0o755)?;
        // Pre-creating the queue with the owners from postfix-files lets the
        // master start at once instead of running postfix-script's checks.
        let spool = self.dir.join("spool");
        mkdir(&spool, 0o755)?;
        for q in [
            "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
            "private", "saved", "trace",
        ] {
            let p = spool.join(q);
            mkdir(&p, 0o700)?;
            chown(&p, Some(tools.postfix_uid), None)?;
        }
        mkdir(&spool.join("pid"), 0o755)?;
        for (q, mode) in [("maildrop", 0o730), ("public", 0o710)] {
            let p = spool.join(q);
            mkdir(&p, mode)?;
            chown(&p, Some(tools.postfix_uid), Some(tools.postdrop_gid))?;
        }
        let data = self.dir.join("pfdata");
        mkdir(&data, 0o700)?;
        chown(&data, Some(tools.postfix_uid), None)?;

        let domains = RIG_DOMAINS.join(" ");
        let main_cf = format!(
            r#"# Private Postfix of a ticketd MailRig; see src/rig.rs.
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/pfdata
meta_directory = {meta}
mail_owner = postfix
setgid_group = postdrop
# Without syslog the master exits 1 silently unless it logs to a file.
maillog_file = {d}/log/postfix.log
maillog_file_prefixes = {d}/log

myhostname = mx.{SUPPORT_DOMAIN}
mydomain = {SUPPORT_DOMAIN}
myorigin = {SUPPORT_DOMAIN}
mydestination =
inet_interfaces = {RIG_HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
smtputf8_enable = no
# Below the default mailbox_size_limit, which Postfix insists on.
message_size_limit = 50000000

# Every local part of the rig domains goes to Dovecot; everything else is
# refused at RCPT (and could not be routed anyway).
virtual_mailbox_domains = {domains}
virtual_mailbox_maps =
virtual_alias_maps =
virtual_transport = lmtp:inet:{RIG_HOST}:{lmtp}
default_transport = error:the ticketd mail rig delivers only to {domains}
relay_transport = error:the ticketd mail rig delivers only to {domains}
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access inline:{{ {{ {TEMPFAIL_ADDRESS} = 450 4.2.0 Mailbox busy, try again later }} }}

# TLS with the rig's certificate: offered on the plain port (STARTTLS, never
# required) and always on in wrapper mode on the SMTPS port (master.cf).
smtpd_tls_security_level = may
smtpd_tls_cert_file = {d}/certs/server.pem
smtpd_tls_key_file = {d}/certs/server.key
smtpd_tls_loglevel = 1
smtpd_tls_received_header = no

# SMTP AUTH, checked by the rig's Dovecot, offered only over TLS. Logging in
# stays optional: any client may still send to the rig domains without it.
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {d}/r/auth-postfix
smtpd_tls_auth_only = yes
smtpd_sasl_security_options = noanonymous
smtpd_sasl_authenticated_header = no

# Keep messages as the test sent them, like a real MX would for a remote
# client (no added Message-ID/Date/To).
local_header_rewrite_clients =

# Tests must not wait: no tarpit after refused commands, no flow delay, no
# reverse DNS, and quick retries after an LMTP hiccup.
smtpd_error_sleep_time = 0
smtpd_peername_lookup = no
in_flow_delay = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"#,
            meta = tools.postfix_meta.display(),
            lmtp = self.lmtp_port,
        );
        let master_cf = format!(
            "# Private Postfix of a ticketd MailRig: no chroot, smtpd on loopback only.\n\
             {RIG_HOST}:{smtp} inet n - n - - smtpd\n\
             {RIG_HOST}:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n\
             pickup     unix  n - n 60   1 pickup\n\
             cleanup    unix  n - n -    0 cleanup\n\
             qmgr       unix  n - n 300  1 qmgr\n\
             rewrite    unix  - - n -    - trivial-rewrite\n\
             bounce     unix  - - n -    0 bounce\n\
             defer      unix  - - n -    0 bounce\n\
             trace      unix  - - n -    0 bounce\n\
             verify     unix  - - n -    1 verify\n\
             flush      unix  n - n 1000? 0 flush\n\
             proxymap   unix  - - n -    - proxymap\n\
             proxywrite unix  - - n -    1 proxymap\n\
             smtp       unix  - - n -    - smtp\n\
             relay      unix  - - n -    - smtp\n\
             showq      unix  n - n -    - showq\n\
             error      unix  - - n -    - error\n\
             retry      unix  - - n -    - error\n\
             discard    unix  - - n -    - discard\n\
             lmtp       unix  - - n -    - lmtp\n\
             anvil      unix  - - n -    1 anvil\n\
             scache     unix  - - n -    1 scache\n\
             postlog    unix-dgram n - n - 1 postlogd\n\
             tlsmgr     unix  - - n 1000? 1 tlsmgr\n",
            smtp = self.smtp_port,
            smtps = self.smtps_port,
        );
        // Postfix start-up waits while main.cf/master.cf are less than a
        // second old (its change detection has one-second granularity).
        let past = SystemTime::now() - Duration::from_secs(60);
        for (file, text) in [("main.cf", main_cf), ("master.cf", master_cf)] {
            let path = etc.join(file);
            fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
            fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(past))
                .map_err(io_err(format!("backdating {}", path.display())))?;
        }
        Ok(())
    }

    fn spawn_dovecot(&self, tools: &Tools) -> Result<Daemon, RigError> {
        // -F keeps the master our child: exact PID, early-exit detection, and
        // we reap it ourselves.
        let mut cmd = Command::new(&tools.dovecot);
        cmd.arg("-F").arg("-c").arg(self.dir.join("dovecot.conf"));
        let child = spawn_logged(&mut cmd, &self.dir.join("log/dovecot.stderr"), "dovecot")?;
        Ok(Daemon {
            name: "dovecot",
            child,
            kill_when_only_log_left: true,
        })
    }

    fn spawn_postfix(&self, tools: &Tools) -> Result<Daemon, RigError> {
        // The master itself rather than `postfix start`: postfix-script's
        // checks cost 1-2 s, and without -w the master stays our child.
        let mut cmd = Command::new(&tools.postfix_master);
        cmd.arg("-c").arg(self.dir.join("etc"));
        let child = spawn_logged(&mut cmd, &self.dir.join("log/postfix.stderr"), "postfix")?;
        Ok(Daemon {
            name: "postfix",
            child,
            kill_when_only_log_left: false,
        })
    }

    fn wait_ready(&mut self) -> Result<(), RigError> {
        let started = Instant::now();
        loop {
            let mut exited = None;
            for daemon in [&mut self.dovecot, &mut self.postfix].into_iter().flatten() {
                match daemon.child.try_wait() {
                    Ok(None) => {}
                    Ok(Some(status)) => exited = Some((daemon.name, status)),
                    Err(e) => return Err(io_err(format!("watching {}", daemon.name))(e)),
                }
            }
            if let Some((name, status)) = exited {
                let reason = format!("the master exited early ({status})");
                return Err(self.startup_error(name, reason, true));
            }
            let listening = listening_sockets();
            let mut missing = Vec::new();
            if let Some(dc) = &self.dovecot {
                let owned = socket_inodes(dc.child.id());
                for (what, port) in [
                    ("IMAP", self.imap_port),
                    ("IMAPS", self.imaps_port),
                    ("LMTP", self.lmtp_port),
                ] {
                    if !listens_on(&listening, &owned, port) {
                        missing.push(("dovecot", format!("{what} port {port}")));
                    }
                }
            }
            if let Some(pf) = &self.postfix {
                let owned = socket_inodes(pf.child.id());
                for (what, port) in [("SMTP", self.smtp_port), ("SMTPS", self.smtps_port)] {
                    if !listens_on(&listening, &owned, port) {
                        missing.push(("postfix", format!("{what} port {port}")));
                    }
                }
                let pid_ok = fs::read_to_string(self.postfix_pid_file())
                    .is_ok_and(|s| s.trim().parse::<u32>() == Ok(pf.child.id()));
                if !pid_ok {
                    missing.push(("postfix", "master.pid".to_string()));
                }
            }
            let Some((daemon, what)) = missing.first() else {
                return Ok(());
            };
            if started.elapsed() > START_TIMEOUT {
                let reason = format!("{what} not ready after {START_TIMEOUT:?}");
                return Err(self.startup_error(daemon, reason, false));
            }
            thread::sleep(POLL);
        }
    }

    fn startup_error(&self, daemon: &'static str, reason: String, exited: bool) -> RigError {
        let mut logs = String::new();
        for file in [format!("{daemon}.log"), format!("{daemon}.stderr")] {
            let path = self.dir.join("log").join(file);
            let tail = log_tail(&path);
            if !tail.trim().is_empty() {
                logs.push_str(&format!("\n--- tail of {} ---\n{tail}", path.display()));
            }
        }
        // The Postfix master logs a failed bind nowhere (postlogd is not up
        // yet) and just exits 1, so probe the port ourselves.
        let taken = [self.smtp_port, self.smtps_port].into_iter().find(|&port| {
            daemon == "postfix"
                && exited
                && TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                    .is_err_and(|e| e.kind() == io::ErrorKind::AddrInUse)
        });
        let port_clash = taken.is_some() || logs.contains("Address already in use");
        let reason = match taken {
            Some(port) => format!("{reason}: SMTP port {port} is taken by another process"),
            None => reason,
        };
        if std::env::var_os(KEEP_ENV).is_none() {
            logs.push_str(&format!(
                "\n(set {KEEP_ENV}=1 to keep the rig directory for inspection)"
            ));
        }
        RigError::Startup {
            daemon,
            reason,
            logs,
            port_clash,
        }
    }
}

impl Drop for MailRig {
    fn drop(&mut self) {
        self.stop();
        release_ports(&[
            self.imap_port,
            self.imaps_port,
            self.lmtp_port,
            self.smtp_port,
            self.smtps_port,
        ]);
        if std::env::var_os(KEEP_ENV).is_some() {
            // Without an owner file reap_orphans() leaves the directory alone.
            let _ = fs::remove_file(self.dir.join("rig.owner"));
            eprintln!(
                "{KEEP_ENV} is set: keeping mail rig directory {}",
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "warning: could not remove mail rig directory {}: {e}",
                self.dir.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Installed programs and system users

#[derive(Debug)]
struct Tools {
    dovecot: PathBuf,
    postfix_master: PathBuf,
    postfix_meta: PathBuf,
    openssl: PathBuf,
    kill: Option<PathBuf>,
    mail_uid: u32,
    mail_gid: u32,
    postfix_uid: u32,
    postdrop_gid: u32,
}

static TOOLS: OnceLock<Tools> = OnceLock::new();

fn tools() -> Result<&'static Tools, RigError> {
    if let Some(t) = TOOLS.get() {
        return Ok(t);
    }
    let found = find_tools()?;
    Ok(TOOLS.get_or_init(|| found))
}

fn not_installed(program: impl Into<String>, packages: &'static str) -> RigError {
    RigError::NotInstalled {
        program: program.into(),
        packages,
    }
}

fn find_tools() -> Result<Tools, RigError> {
    let dovecot = find_program("dovecot")
        .ok_or_else(|| not_installed("dovecot", "dovecot-imapd dovecot-lmtpd"))?;
    let libexec = [
        "/usr/lib/dovecot",
        "/usr/libexec/dovecot",
        "/usr/local/libexec/dovecot",
    ]
    .into_iter()
    .map(Path::new)
    .find(|d| d.join("anvil").exists())
    .ok_or_else(|| not_installed("dovecot (core helpers)", "dovecot-core"))?;
    if !libexec.join("imap").exists() {
        return Err(not_installed("dovecot IMAP server", "dovecot-imapd"));
    }
    if !libexec.join("lmtp").exists() {
        return Err(not_installed("dovecot LMTP server", "dovecot-lmtpd"));
    }
    let postconf = find_program("postconf").ok_or_else(|| not_installed("postfix", "postfix"))?;
    let out = Command::new(&postconf)
        .args(["-dh", "daemon_directory", "meta_directory"])
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("running postconf"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(str::trim);
    let (Some(daemon_dir), Some(meta)) = (lines.next(), lines.next()) else {
        return Err(RigError::Command {
            command: "postconf -dh daemon_directory meta_directory".into(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    };
    let postfix_master = Path::new(daemon_dir).join("master");
    if !postfix_master.exists() {
        return Err(not_installed(
            postfix_master.display().to_string(),
            "postfix",
        ));
    }
    let openssl = find_program("openssl").ok_or_else(|| not_installed("openssl", "openssl"))?;
    let users = read_ids("/etc/passwd")?;
    let groups = read_ids("/etc/group")?;
    let user = |name: &str, pkg| {
        users
            .get(name)
            .copied()
            .ok_or_else(|| not_installed(format!("system user `{name}`"), pkg))
    };
    let group = |name: &str, pkg| {
        groups
            .get(name)
            .copied()
            .ok_or_else(|| not_installed(format!("system group `{name}`"), pkg))
    };
    Ok(Tools {
        dovecot,
        postfix_master,
        postfix_meta: PathBuf::from(meta),
        openssl,
        kill: find_program("kill"),
        mail_uid: user("mail", "base-passwd")?.0,
        mail_gid: group("mail", "base-passwd")?.0,
        postfix_uid: user("postfix", "postfix")?.0,
        postdrop_gid: group("postdrop", "postfix")?.0,
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// name -> (id, primary gid) from /etc/passwd or /etc/group; files are all
/// Debian uses for system accounts, and std has no getpwnam.
fn read_ids(file: &str) -> Result<HashMap<String, (u32, u32)>, RigError> {
    let text = fs::read_to_string(file).map_err(io_err(format!("reading {file}")))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            let gid = f.next().and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((name.to_string(), (id, gid)))
        })
        .collect())
}

fn check_root() -> Result<(), RigError> {
    let status =
        fs::read_to_string("/proc/self/status").map_err(io_err("reading /proc/self/status"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    if euid == 0 {
        Ok(())
    } else {
        Err(RigError::NotRoot(euid))
    }
}

// ---------------------------------------------------------------------------
// Files, ports, processes

fn mkdir(path: &Path, mode: u32) -> Result<(), RigError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .map_err(io_err(format!("creating {}", path.display())))
}

fn chown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<(), RigError> {
    std::os::unix::fs::chown(path, uid, gid).map_err(io_err(format!("chown {}", path.display())))
}

/// Always under /tmp: Unix socket paths must stay short (~107 bytes) and
/// every parent must be searchable by the `mail` and `postfix` users.
fn create_rig_dir() -> Result<PathBuf, RigError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last = None;
    for _ in 0..50 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = (
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed),
        );
        let mut n = RandomState::new().hash_one(seed);
        let suffix: String = (0..8)
            .map(|_| {
                let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[(n % 36) as usize];
                n /= 36;
                c as char
            })
            .collect();
        let dir = PathBuf::from(format!("/tmp/{DIR_PREFIX}{suffix}"));
        match fs::DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(format!("chmod {}", dir.display())))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
        }
    }
    Err(io_err("creating a rig directory under /tmp")(
        last.unwrap_or_else(|| io::Error::other("no free name")),
    ))
}

fn reserve_ports(n: usize) -> io::Result<Vec<u16>> {
    let mut reserved = RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    // All listeners stay open until every port is chosen, so the kernel gives
    // distinct ports; the ones a live rig already uses are skipped.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        if held.len() > n + 64 {
            return Err(io::Error::other("no free loopback ports"));
        }
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = l.local_addr()?.port();
        if !reserved.contains(&port) {
            ports.push(port);
        }
        held.push(l);
    }
    reserved.extend_from_slice(&ports);
    Ok(ports)
}

fn release_ports(ports: &[u16]) {
    let mut reserved = RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    reserved.retain(|p| !ports.contains(p));
}

/// Socket inodes of loopback TCP listeners, by port; None if /proc/net/tcp
/// is unreadable. Reading the table instead of connecting keeps readiness
/// checks from spawning login/smtpd processes.
fn listening_sockets() -> Option<HashMap<u16, Vec<u64>>> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let mut map: HashMap<u16, Vec<u64>> = HashMap::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(&state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
            continue;
        };
        let Some((addr, port)) = local.split_once(':') else {
            continue;
        };
        let loopback = addr == "0100007F" || addr == "00000000";
        if let (true, "0A", Ok(port), Ok(inode)) = (
            loopback,
            state,
            u16::from_str_radix(port, 16),
            inode.parse::<u64>(),
        ) {
            map.entry(port).or_default().push(inode);
        }
    }
    Some(map)
}

/// Socket inodes among the open files of `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Whether `port` is listening, and (when /proc tells) listening in `pid`:
/// someone else's listener on a port we picked must not count as ready.
fn listens_on(table: &Option<HashMap<u16, Vec<u64>>>, owned: &HashSet<u64>, port: u16) -> bool {
    match table {
        Some(map) => map
            .get(&port)
            .is_some_and(|inodes| inodes.iter().any(|i| owned.contains(i))),
        None => TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_millis(200),
        )
        .is_ok(),
    }
}

fn spawn_logged(cmd: &mut Command, stderr_file: &Path, name: &str) -> Result<Child, RigError> {
    let out = fs::File::create(stderr_file)
        .map_err(io_err(format!("creating {}", stderr_file.display())))?;
    let err = out
        .try_clone()
        .map_err(io_err("duplicating a log file handle"))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io_err(format!("starting {name}")))
}

fn run(cmd: &mut Command) -> Result<(), RigError> {
    let describe = |cmd: &Command| {
        let mut s = cmd.get_program().to_string_lossy().into_owned();
        for a in cmd.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running {}", describe(cmd))))?;
    if out.status.success() {
        return Ok(());
    }
    Err(RigError::Command {
        command: describe(cmd),
        status: out.status.to_string(),
        output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn log_tail(path: &Path) -> String {
    let Ok(text) = fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[derive(Debug, Clone)]
struct ProcStat {
    pid: u32,
    comm: String,
    state: char,
    ppid: u32,
    starttime: u64,
}

fn parse_proc_stat(pid: u32, text: &str) -> Option<ProcStat> {
    // comm may contain spaces and parentheses; it ends at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let starttime = rest.nth(17)?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
        starttime,
    })
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_proc_stat(pid, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn all_procs() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Zombies count as gone: PID 1 in some containers never reaps the orphans.
fn alive(procs: &[ProcStat], pid: u32, starttime: u64) -> Option<&ProcStat> {
    procs
        .iter()
        .find(|p| p.pid == pid && p.starttime == starttime && p.state != 'Z' && p.state != 'X')
}

fn signal(kill: Option<&Path>, pid: u32, sig: &str) -> bool {
    let Some(kill) = kill else {
        return false;
    };
    Command::new(kill)
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SIGTERMs every master, then waits until the masters and all their
/// descendants are gone (SIGKILL after STOP_TIMEOUT). Only the given masters
/// and processes descending from them are ever signalled.
fn stop_daemons(mut daemons: Vec<Daemon>) {
    let kill = TOOLS.get().and_then(|t| t.kill.as_deref());
    // pid -> starttime, so a recycled PID is never mistaken for ours.
    let mut tracked: Vec<HashMap<u32, u64>> = vec![HashMap::new(); daemons.len()];
    let mut done = vec![false; daemons.len()];
    let procs = all_procs();
    for (i, d) in daemons.iter_mut().enumerate() {
        add_descendants(&procs, d.child.id(), &mut tracked[i]);
        if !signal(kill, d.child.id(), "TERM") {
            let _ = d.child.kill();
        }
    }
    let started = Instant::now();
    while started.elapsed() < STOP_TIMEOUT {
        let procs = all_procs();
        for (i, d) in daemons.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            let master_running = matches!(d.child.try_wait(), Ok(None));
            if master_running {
                add_descendants(&procs, d.child.id(), &mut tracked[i]);
            }
            let left: Vec<&ProcStat> = tracked[i]
                .iter()
                .filter_map(|(&pid, &start)| alive(&procs, pid, start))
                .collect();
            if master_running && d.kill_when_only_log_left && left.iter().all(|p| p.comm == "log") {
                let _ = d.child.kill();
            }
            done[i] = !master_running && left.is_empty();
        }
        if done.iter().all(|&d| d) {
            break;
        }
        thread::sleep(POLL);
    }
    let procs = all_procs();
    for (i, d) in daemons.iter_mut().enumerate() {
        if !done[i] {
            eprintln!(
                "warning: {} did not stop within {STOP_TIMEOUT:?}; killing it",
                d.name
            );
            let _ = d.child.kill();
            for (&pid, &start) in &tracked[i] {
                if alive(&procs, pid, start).is_some() {
                    signal(kill, pid, "KILL");
                }
            }
        }
        let _ = d.child.wait();
    }
}

fn add_descendants(procs: &[ProcStat], root: u32, into: &mut HashMap<u32, u64>) {
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            if into.insert(p.pid, p.starttime).is_none() {
                frontier.push(p.pid);
            }
        }
    }
}

/// Stops the daemons of rigs whose owning process died without running Drop
/// (Ctrl-C during `cargo test` skips destructors; the Postfix master runs in
/// its own session and would live on) and removes their directories.
///
/// A rig is only touched when its owner process is gone, and a PID is only
/// signalled when its start time and command line still match the rig.
/// Returns how many rig directories were cleaned up. `start()` calls this.
pub fn reap_orphans() -> usize {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return 0;
    };
    let kill = TOOLS.get().and_then(|t| t.kill.as_deref());
    let mut reaped = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_rig = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        if !is_rig || !dir.is_dir() {
            continue;
        }
        // No owner file: a rig being created right now, or one kept on purpose.
        let Ok(owner) = fs::read_to_string(dir.join("rig.owner")) else {
            continue;
        };
        let Some((pid, start)) = parse_pid_line(&owner) else {
            continue;
        };
        if proc_stat(pid).is_some_and(|p| p.starttime == start && p.state != 'Z') {
            continue;
        }
        let dir_text = dir.to_string_lossy().into_owned();
        let mut stopped = Vec::new();
        for line in fs::read_to_string(dir.join("rig.pids"))
            .unwrap_or_default()
            .lines()
        {
            let Some((pid, start)) = parse_pid_line(line) else {
                continue;
            };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let matches = proc_stat(pid).is_some_and(|p| p.starttime == start && p.state != 'Z')
                && String::from_utf8_lossy(&cmdline).contains(&dir_text);
            if matches && signal(kill, pid, "TERM") {
                stopped.push((pid, start));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let procs = all_procs();
            if stopped
                .iter()
                .all(|&(pid, start)| alive(&procs, pid, start).is_none())
            {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if fs::remove_dir_all(&dir).is_ok() {
            reaped += 1;
        }
    }
    reaped
}

fn parse_pid_line(line: &str) -> Option<(u32, u64)> {
    let mut f = line.split_whitespace();
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

// ---------------------------------------------------------------------------
// Maildir

/// Message files of a maildir INBOX, oldest delivery first.
fn maildir_entries(maildir: &Path) -> Vec<PathBuf> {
    // Keyed by the unique part of the name (before ":2,flags") so a message
    // renamed from new/ to cur/ while listing is counted once.
    let mut by_name: HashMap<String, (u64, u64, PathBuf)> = HashMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let base = name.split(':').next().unwrap_or(&name).to_string();
            let (secs, usecs) = maildir_time(&base).unwrap_or_else(|| {
                let secs = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                (secs, 0)
            });
            by_name.insert(base, (secs, usecs, e.path()));
        }
    }
    let mut list: Vec<(u64, u64, String, PathBuf)> = by_name
        .into_iter()
        .map(|(base, (s, u, p))| (s, u, base, p))
        .collect();
    list.sort();
    list.into_iter().map(|(_, _, _, p)| p).collect()
}

/// Delivery time from a Dovecot maildir name `SECS.M<usecs>P<pid>...`; the
/// microseconds are not zero-padded, so plain name order is wrong.
fn maildir_time(name: &str) -> Option<(u64, u64)> {
    let (secs, rest) = name.split_once('.')?;
    let usecs: String = rest
        .strip_prefix('M')?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((secs.parse().ok()?, usecs.parse().unwrap_or(0)))
}

// ---------------------------------------------------------------------------
// SMTP client

fn smtp_send(port: u16, from: &str, to: &[&str], raw: &[u8]) -> Result<(), RigError> {
    for addr in std::iter::once(&from).chain(to) {
        if addr
            .chars()
            .any(|c| c.is_control() || c == '<' || c == '>' || c == ' ')
        {
            return Err(RigError::BadAddress(addr.to_string()));
        }
    }
    if to.is_empty() {
        return Err(RigError::BadAddress("(no recipients)".into()));
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let what = format!("talking SMTP to the rig's Postfix on {addr}");
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io_err(what.clone()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(30))))
        .map_err(io_err(what.clone()))?;
    let reader = stream.try_clone().map_err(io_err(what.clone()))?;
    let mut smtp = Smtp {
        reader: BufReader::new(reader),
        writer: stream,
        what,
    };
    smtp.expect("(greeting)", 220)?;
    let result = smtp.transaction(from, to, raw);
    if result.is_err() {
        let _ = smtp.writer.write_all(b"RSET\r\n");
    }
    let _ = smtp.writer.write_all(b"QUIT\r\n");
    result
}

struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    what: String,
}

impl Smtp {
    fn transaction(&mut self, from: &str, to: &[&str], raw: &[u8]) -> Result<(), RigError> {
        self.command("EHLO rig-client.localhost", 250)?;
        self.command(&format!("MAIL FROM:<{from}>"), 250)?;
        for rcpt in to {
            self.command(&format!("RCPT TO:<{rcpt}>"), 250)?;
        }
        self.command("DATA", 354)?;
        self.writer
            .write_all(&smtp_data(raw))
            .map_err(io_err(self.what.clone()))?;
        self.expect("(end of DATA)", 250)
    }

    fn command(&mut self, line: &str, want: u16) -> Result<(), RigError> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(io_err(self.what.clone()))?;
        self.expect(line, want)
    }

    /// Reads a (possibly multi-line) reply and checks its code.
    fn expect(&mut self, command: &str, want: u16) -> Result<(), RigError> {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(io_err(self.what.clone()))?;
            if n == 0 {
                return Err(RigError::Smtp {
                    command: command.to_string(),
                    reply: format!("connection closed after {:?}", reply.trim_end()),
                });
            }
            reply.push_str(&line);
            // "250-" continues a reply, "250 " (or a bare "250") ends it.
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        let code = reply.get(..3).and_then(|c| c.parse::<u16>().ok());
        if code == Some(want) || (want == 250 && code == Some(251)) {
            Ok(())
        } else {
            Err(RigError::Smtp {
                command: command.to_string(),
                reply: reply.trim_end().replace("\r\n", " / "),
            })
        }
    }
}

/// DATA payload: any of CRLF, lone LF or lone CR ends a line (sent as CRLF),
/// leading dots are doubled, and the terminating ".\r\n" is appended.
fn smtp_data(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 5);
    let mut at_line_start = true;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'\r' || b == b'\n' {
            if b == b'\r' && raw.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            out.extend_from_slice(b"\r\n");
            at_line_start = true;
        } else {
            if at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            at_line_start = false;
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_crlf_normalised_and_dot_stuffed() {
        assert_eq!(smtp_data(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd\r\n.\r\n");
        assert_eq!(smtp_data(b".x\n.\n..y\r\n"), b"..x\r\n..\r\n...y\r\n.\r\n");
        assert_eq!(smtp_data(b""), b".\r\n");
        assert_eq!(smtp_data(b"x\r\n\r\n"), b"x\r\n\r\n.\r\n");
    }

    #[test]
    fn maildir_names_sort_by_time_not_text() {
        assert_eq!(
            maildir_time("1700000000.M9P1.host,S=5"),
            Some((1_700_000_000, 9))
        );
        assert_eq!(
            maildir_time("1700000000.M10P1.host"),
            Some((1_700_000_000, 10))
        );
        assert_eq!(maildir_time("junk"), None);
    }

    #[test]
    fn proc_stat_parses_comm_with_spaces() {
        // Field 22 (starttime) is 12345; everything after comm is space-separated.
        let line = "42 (a b) c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let p = parse_proc_stat(42, line);
        assert!(p.as_ref().is_some_and(|p| p.comm == "a b) c"
            && p.ppid == 7
            && p.starttime == 12345
            && p.state == 'S'));
    }
}

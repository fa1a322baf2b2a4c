//! The configuration file: TOML parsed into a raw form that mirrors the file,
//! then validated into `Config`, whose values are ready to use. Every error
//! names the key that is wrong and says what would be right.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ticketd/ticketd.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    /// `password_command` failed when tried at start-up: the command's
    /// own trouble (a token endpoint down), or a wrong command, which the
    /// message shows; not counted a config error (exit status 1, so
    /// systemd tries again).
    #[error("config key `{key}`: {message}")]
    SecretCommand { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    imap: Option<RawImap>,
    smtp: Option<RawSmtp>,
    store: RawStore,
    #[serde(default)]
    tickets: RawTickets,
    web: Option<RawWeb>,
    intake: Option<RawIntake>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntake {
    #[serde(default)]
    addresses: Vec<String>,
    subject_contains: Option<Vec<String>>,
    thread_replies: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen: Option<String>,
    #[serde(default)]
    agents: Vec<RawAgent>,
    proxy_user_header: Option<String>,
    with_daemon: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    password_hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    password_credential: Option<String>,
    password_command: Option<String>,
    auth: Option<String>,
    mailbox: Option<String>,
    mailboxes: Option<Vec<RawMailbox>>,
    ca_file: Option<PathBuf>,
    poll_interval: Option<u64>,
    timeout: Option<u64>,
    mark_seen: Option<bool>,
    move_to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    password_credential: Option<String>,
    password_command: Option<String>,
    auth: Option<String>,
    ca_file: Option<PathBuf>,
    from_name: Option<String>,
    from_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    data_dir: PathBuf,
    max_message_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTickets {
    prefix: Option<String>,
    response_hours: Option<u32>,
    time_zone: Option<String>,
    default_language: Option<String>,
    templates_dir: Option<PathBuf>,
    max_acks_per_sender_per_hour: Option<u32>,
    ack_followups: Option<bool>,
    ack_max_age_days: Option<u32>,
}

/// How a connection is protected. There is no silent fallback from one to
/// another: `Starttls` fails when the server does not offer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Implicit,
    Starttls,
    None,
}

/// How a login proves itself: a password, or an OAuth2 bearer token
/// (XOAUTH2, for Google Workspace and Microsoft 365 mailboxes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Password,
    Xoauth2,
}

/// Where a secret comes from. A command is run again at every login, so
/// short-lived OAuth2 tokens are fresh; the others are read at start-up.
#[derive(Clone)]
pub enum SecretSource {
    Fixed(Secret),
    Command(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Fixed(_) => f.write_str("Fixed(***)"),
            SecretSource::Command(c) => write!(f, "Command({c:?})"),
        }
    }
}

impl SecretSource {
    /// The secret now. For a command: its standard output, trimmed.
    pub fn get(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Fixed(s) => Ok(s.clone()),
            SecretSource::Command(cmd) => run_secret_command(cmd),
        }
    }
}

fn run_secret_command(cmd: &str) -> Result<Secret, String> {
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if !out.status.success() {
        // stderr may help; stdout may hold a secret and is never shown.
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{cmd}` failed ({}): {}", out.status, err.trim()));
    }
    let secret = String::from_utf8(out.stdout)
        .map_err(|_| format!("`{cmd}` printed something that is not UTF-8"))?
        .trim()
        .to_string();
    if secret.is_empty() {
        return Err(format!("`{cmd}` printed nothing"));
    }
    Ok(Secret(secret))
}

/// A password, kept out of `Debug` output so it never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub password: SecretSource,
    pub auth: AuthMethod,
    /// The first (or only) mailbox watched.
    pub mailbox: String,
    /// Every mailbox watched, `mailbox` first.
    pub mailboxes: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub poll_interval: Duration,
    /// How long one IMAP step may take before the connection is deemed dead.
    pub timeout: Duration,
    /// After filing: flag the mail \Seen (opt-in; read-only otherwise).
    pub mark_seen: bool,
    /// After filing: move the mail to this mailbox (opt-in).
    pub move_to: Option<String>,
}

impl ImapConfig {
    /// Whether filed mail is changed on the server (flagged or moved), so
    /// the mailbox is opened with SELECT instead of EXAMINE.
    pub fn changes_mailbox(&self) -> bool {
        self.mark_seen || self.move_to.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub credentials: Option<(String, SecretSource)>,
    pub auth: AuthMethod,
    pub ca_file: Option<PathBuf>,
    pub from_name: String,
    pub from_address: String,
}

#[derive(Debug, Clone)]
pub struct TicketsConfig {
    pub prefix: String,
    pub response_hours: u32,
    pub time_zone: chrono_tz::Tz,
    pub default_language: Language,
    pub templates_dir: PathBuf,
    /// Acks one address may get per hour; more would look like a loop.
    pub max_acks_per_sender_per_hour: u32,
    /// Answer a buyer's follow-up with a short "added to your ticket" note.
    pub ack_followups: bool,
    /// Mail the server received longer ago than this before it is filed
    /// (a mailbox watched for the first time, a long outage) gets no ack;
    /// `None` answers mail of any age.
    pub ack_max_age_days: Option<u32>,
    /// Mail the server received before this was answered already (`poll
    /// --acked-before`, after a restore or a move from another desk): it
    /// is filed without an ack. Not in the config file.
    pub acked_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// The languages acknowledgements are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Nl,
    En,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Nl => "nl",
            Language::En => "en",
        }
    }
    pub fn from_code(code: &str) -> Option<Language> {
        match code {
            "nl" => Some(Language::Nl),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

/// An agent who may log in to the web page.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    /// PHC string, e.g. `$argon2id$v=19$...`.
    pub password_hash: String,
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: std::net::SocketAddr,
    pub agents: Vec<Agent>,
    /// Trust this request header (set by a reverse proxy) as the agent's
    /// name instead of asking for a password.
    pub proxy_user_header: Option<String>,
    /// Serve the page from `ticketd run` too, instead of a separate
    /// `ticketd web`.
    pub with_daemon: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub imap: Option<ImapConfig>,
    pub smtp: Option<SmtpConfig>,
    pub data_dir: PathBuf,
    /// Larger mail is recorded with its headers only.
    pub max_message_bytes: u64,
    pub tickets: TicketsConfig,
    pub web: Option<WebConfig>,
    /// Which mail in a shared mailbox is support mail; `None`: all of it.
    pub intake: Option<crate::core::intake::IntakeRules>,
    /// Where `ticketd run` serves Prometheus metrics, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The address our own mail comes from; mail from it is never answered.
    pub own_address: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates; `path` is used for messages and to resolve
    /// relative paths against the config file's directory.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate(raw, base, &|name| std::env::var(name).ok())
    }
}

fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn parse_tls(key: &str, value: Option<&str>) -> Result<TlsMode, ConfigError> {
    match value.unwrap_or("implicit") {
        "implicit" => Ok(TlsMode::Implicit),
        "starttls" => Ok(TlsMode::Starttls),
        "none" => Ok(TlsMode::None),
        other => Err(invalid(
            key,
            format!("`{other}` is not a TLS mode; use \"implicit\", \"starttls\" or \"none\""),
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn check_tls_none(section: &str, tls: TlsMode, host: &str) -> Result<(), ConfigError> {
    if tls == TlsMode::None && !is_loopback(host) {
        return Err(invalid(
            &format!("{section}.tls"),
            format!(
                "tls = \"none\" would send the password in clear text to {host}; \
                 it is only allowed for a loopback host (127.0.0.1, ::1, localhost)"
            ),
        ));
    }
    Ok(())
}

/// Every way a config can name a secret; at most one may be set.
struct SecretKeys {
    file: Option<PathBuf>,
    env: Option<String>,
    credential: Option<String>,
    command: Option<String>,
}

fn read_password(
    section: &str,
    keys: SecretKeys,
    base: &Path,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SecretSource>, ConfigError> {
    let set = [
        keys.file.is_some(),
        keys.env.is_some(),
        keys.credential.is_some(),
        keys.command.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set > 1 {
        return Err(invalid(
            &format!("{section}.password_file"),
            "set only one of password_file, password_env, password_credential, password_command",
        ));
    }
    let from_file = |key: &str, file: PathBuf| -> Result<SecretSource, ConfigError> {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            invalid(
                &format!("{section}.{key}"),
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        let password = text.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            return Err(invalid(
                &format!("{section}.{key}"),
                format!("{} is empty", file.display()),
            ));
        }
        Ok(SecretSource::Fixed(Secret(password)))
    };
    if let Some(file) = keys.file {
        return from_file("password_file", resolve(base, file)).map(Some);
    }
    if let Some(name) = keys.credential {
        // systemd's LoadCredential= puts it in $CREDENTIALS_DIRECTORY.
        let dir = getenv("CREDENTIALS_DIRECTORY").ok_or_else(|| {
            invalid(
                &format!("{section}.password_credential"),
                "CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential=, or use password_file",
            )
        })?;
        return from_file("password_credential", Path::new(&dir).join(name)).map(Some);
    }
    if let Some(name) = keys.env {
        return match getenv(&name) {
            Some(v) if !v.is_empty() => Ok(Some(SecretSource::Fixed(Secret(v)))),
            _ => Err(invalid(
                &format!("{section}.password_env"),
                format!("environment variable {name} is not set or empty"),
            )),
        };
    }
    if let Some(cmd) = keys.command {
        // Run once now so a broken command stops start-up, not the first login.
        run_secret_command(&cmd).map_err(|message| ConfigError::SecretCommand {
            key: format!("{section}.password_command"),
            message,
        })?;
        return Ok(Some(SecretSource::Command(cmd)));
    }
    Ok(None)
}

fn parse_auth(key: &str, value: Option<&str>) -> Result<AuthMethod, ConfigError> {
    match value.unwrap_or("password") {
        "password" => Ok(AuthMethod::Password),
        "xoauth2" => Ok(AuthMethod::Xoauth2),
        other => Err(invalid(
            key,
            format!("`{other}` is not an auth method; use \"password\" or \"xoauth2\" (the secret is then the OAuth2 access token)"),
        )),
    }
}

fn check_address(key: &str, address: &str) -> Result<(), ConfigError> {
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !address.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(invalid(
            key,
            format!("`{address}` is not an e-mail address like support@example.com"),
        )),
    }
}

fn validate(
    raw: RawConfig,
    base: &Path,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let imap = match raw.imap {
        None => None,
        Some(r) => {
            let tls = parse_tls("imap.tls", r.tls.as_deref())?;
            check_tls_none("imap", tls, &r.host)?;
            if r.host.trim().is_empty() {
                return Err(invalid("imap.host", "must not be empty"));
            }
            let auth = parse_auth("imap.auth", r.auth.as_deref())?;
            let keys = SecretKeys {
                file: r.password_file,
                env: r.password_env,
                credential: r.password_credential,
                command: r.password_command,
            };
            let password = read_password("imap", keys, base, getenv)?.ok_or_else(|| {
                invalid(
                    "imap.password_file",
                    "set password_file, password_env, password_credential or password_command",
                )
            })?;
            let poll = r.poll_interval.unwrap_or(60);
            if poll == 0 {
                return Err(invalid(
                    "imap.poll_interval",
                    "must be at least 1 (seconds)",
                ));
            }
            let mailboxes: Vec<String> = match (r.mailbox, r.mailboxes) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "imap.mailboxes",
                        "set either imap.mailbox or [[imap.mailboxes]], not both",
                    ))
                }
                (Some(m), None) => vec![m],
                (None, Some(list)) => list.into_iter().map(|m| m.name).collect(),
                (None, None) => vec!["INBOX".to_string()],
            };
            if mailboxes.is_empty() || mailboxes.iter().any(|m| m.trim().is_empty()) {
                return Err(invalid("imap.mailboxes", "mailbox names must not be empty"));
            }
            for (i, m) in mailboxes.iter().enumerate() {
                if mailboxes[..i].contains(m) {
                    return Err(invalid("imap.mailboxes", format!("`{m}` is listed twice")));
                }
            }
            if let Some(to) = &r.move_to {
                if to.trim().is_empty() {
                    return Err(invalid("imap.move_to", "must not be empty"));
                }
                if mailboxes.contains(to) {
                    return Err(invalid(
                        "imap.move_to",
                        format!("`{to}` is watched; filed mail would come back to be filed again"),
                    ));
                }
            }
            Some(ImapConfig {
                mailbox: mailboxes[0].clone(),
                mailboxes,
                port: r.port.unwrap_or(match tls {
                    TlsMode::Implicit => 993,
                    _ => 143,
                }),
                host: r.host,
                tls,
                username: r.username,
                password,
                auth,
                ca_file: r.ca_file.map(|p| resolve(base, p)),
                poll_interval: Duration::from_secs(poll),
                timeout: Duration::from_secs(match r.timeout {
                    Some(0) => return Err(invalid("imap.timeout", "must be at least 1 (seconds)")),
                    Some(t) => t,
                    None => 60,
                }),
                mark_seen: r.mark_seen.unwrap_or(false),
                move_to: r.move_to,
            })
        }
    };
    let smtp = match raw.smtp {
        None => None,
        Some(r) => {
            let tls = parse_tls("smtp.tls", r.tls.as_deref())?;
            check_tls_none("smtp", tls, &r.host)?;
            check_address("smtp.from_address", &r.from_address)?;
            let auth = parse_auth("smtp.auth", r.auth.as_deref())?;
            let keys = SecretKeys {
                file: r.password_file,
                env: r.password_env,
                credential: r.password_credential,
                command: r.password_command,
            };
            let password = read_password("smtp", keys, base, getenv)?;
            let credentials = match (r.username, password) {
                (Some(u), Some(p)) => Some((u, p)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(invalid(
                        "smtp.password_file",
                        "smtp.username is set: also set password_file or password_env",
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "smtp.username",
                        "a password is set but no username",
                    ))
                }
            };
            let from_name = r.from_name.unwrap_or_else(|| "Whatnot Support".to_string());
            if !from_name.contains("Whatnot Support") {
                return Err(invalid(
                    "smtp.from_name",
                    "must contain \"Whatnot Support\": buyers find their tickets by searching for it",
                ));
            }
            Some(SmtpConfig {
                port: r.port.unwrap_or(match tls {
                    TlsMode::Implicit => 465,
                    _ => 587,
                }),
                host: r.host,
                tls,
                credentials,
                auth,
                ca_file: r.ca_file.map(|p| resolve(base, p)),
                from_name,
                from_address: r.from_address,
            })
        }
    };

    let t = raw.tickets;
    let prefix = t.prefix.unwrap_or_else(|| "WN".to_string());
    if prefix.is_empty() || prefix.len() > 8 || !prefix.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(invalid(
            "tickets.prefix",
            format!("`{prefix}` must be 1 to 8 upper-case letters A-Z, like \"WN\""),
        ));
    }
    let response_hours = t.response_hours.unwrap_or(48);
    if response_hours == 0 || response_hours > 24 * 60 {
        return Err(invalid(
            "tickets.response_hours",
            "must be between 1 and 1440 hours",
        ));
    }
    let ack_max_age_days = match t.ack_max_age_days.unwrap_or(7) {
        0 => None,
        days if days > 3650 => {
            return Err(invalid(
                "tickets.ack_max_age_days",
                "must be between 0 (no limit) and 3650 days",
            ))
        }
        days => Some(days),
    };
    let tz_name = t
        .time_zone
        .unwrap_or_else(|| "Europe/Amsterdam".to_string());
    let time_zone: chrono_tz::Tz = tz_name.parse().map_err(|_| {
        invalid(
            "tickets.time_zone",
            format!("`{tz_name}` is not an IANA time zone such as \"Europe/Amsterdam\""),
        )
    })?;
    let lang = t.default_language.unwrap_or_else(|| "nl".to_string());
    let default_language = Language::from_code(&lang).ok_or_else(|| {
        invalid(
            "tickets.default_language",
            format!("`{lang}` is not supported; use \"nl\" or \"en\""),
        )
    })?;
    let templates_dir = resolve(
        base,
        t.templates_dir
            .unwrap_or_else(|| PathBuf::from("/usr/share/ticketd/templates")),
    );

    let max_message_bytes = raw.store.max_message_bytes.unwrap_or(50 * 1024 * 1024);
    if max_message_bytes < 64 * 1024 {
        return Err(invalid(
            "store.max_message_bytes",
            "must be at least 65536 (64 KiB); the default is 52428800 (50 MiB)",
        ));
    }
    let web = match raw.web {
        None => None,
        Some(w) => {
            let listen_text = w.listen.unwrap_or_else(|| "127.0.0.1:8025".to_string());
            let listen: std::net::SocketAddr = listen_text.parse().map_err(|_| {
                invalid(
                    "web.listen",
                    format!("`{listen_text}` is not an address:port like \"127.0.0.1:8025\""),
                )
            })?;
            for a in &w.agents {
                if !a.password_hash.starts_with("$argon2") {
                    return Err(invalid(
                        "web.agents.password_hash",
                        format!(
                            "the hash for agent `{}` is not an argon2 PHC string ($argon2id$...); \
                             make one with `ticketd hash-password`",
                            a.name
                        ),
                    ));
                }
            }
            if w.agents.is_empty() && w.proxy_user_header.is_none() {
                return Err(invalid(
                    "web.agents",
                    "configure at least one agent, or proxy_user_header behind a reverse proxy that logs agents in",
                ));
            }
            Some(WebConfig {
                listen,
                agents: w
                    .agents
                    .into_iter()
                    .map(|a| Agent {
                        name: a.name,
                        password_hash: a.password_hash,
                    })
                    .collect(),
                proxy_user_header: w.proxy_user_header,
                with_daemon: w.with_daemon.unwrap_or(false),
            })
        }
    };
    let intake = match raw.intake {
        None => None,
        Some(i) => {
            for a in &i.addresses {
                check_address("intake.addresses", a)?;
            }
            let subject_contains: Vec<String> = i
                .subject_contains
                .unwrap_or_else(|| vec!["Whatnot Support".to_string()])
                .into_iter()
                .map(|s| s.to_lowercase())
                .collect();
            if subject_contains.iter().any(|s| s.trim().is_empty()) {
                return Err(invalid(
                    "intake.subject_contains",
                    "an empty fragment would match every subject",
                ));
            }
            if i.addresses.is_empty() && subject_contains.is_empty() {
                return Err(invalid(
                    "intake.addresses",
                    "with no addresses and no subject_contains nothing new would ever be selected",
                ));
            }
            Some(crate::core::intake::IntakeRules {
                addresses: i.addresses.iter().map(|a| a.to_ascii_lowercase()).collect(),
                subject_contains,
                thread_replies: i.thread_replies.unwrap_or(true),
            })
        }
    };
    let metrics_listen = match raw.metrics {
        None => None,
        Some(m) => Some(m.listen.parse().map_err(|_| {
            invalid(
                "metrics.listen",
                format!(
                    "`{}` is not an address:port like \"127.0.0.1:9425\"",
                    m.listen
                ),
            )
        })?),
    };
    Ok(Config {
        metrics_listen,
        intake,
        web,
        max_message_bytes,
        own_address: smtp.as_ref().map(|s| s.from_address.to_ascii_lowercase()),
        imap,
        smtp,
        data_dir: resolve(base, raw.store.data_dir),
        tickets: TicketsConfig {
            prefix,
            response_hours,
            time_zone,
            default_language,
            templates_dir,
            max_acks_per_sender_per_hour: t.max_acks_per_sender_per_hour.unwrap_or(3),
            ack_followups: t.ack_followups.unwrap_or(false),
            ack_max_age_days,
            acked_before: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with_env(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::from("t.toml"),
            message: e.to_string(),
        })?;
        validate(raw, Path::new("/etc/ticketd"), &|name| {
            (name == "PW").then(|| "secret".to_string())
        })
    }

    const GOOD: &str = r#"
[imap]
host = "127.0.0.1"
port = 1143
tls = "none"
username = "support@example.test"
password_env = "PW"

[smtp]
host = "mail.example.com"
tls = "starttls"
from_address = "support@example.test"

[store]
data_dir = "/var/lib/ticketd"
"#;

    #[test]
    fn defaults_fill_in() {
        let c = parse_with_env(GOOD).unwrap();
        let imap = c.imap.unwrap();
        assert_eq!(imap.mailbox, "INBOX");
        assert_eq!(imap.password.get().unwrap().expose(), "secret");
        assert_eq!(imap.auth, AuthMethod::Password);
        assert_eq!(imap.poll_interval, Duration::from_secs(60));
        assert_eq!(c.smtp.unwrap().port, 587);
        assert_eq!(c.tickets.prefix, "WN");
        assert_eq!(c.tickets.response_hours, 48);
        assert_eq!(c.tickets.ack_max_age_days, Some(7));
        assert_eq!(c.tickets.default_language, Language::Nl);
        assert_eq!(c.tickets.time_zone, chrono_tz::Europe::Amsterdam);
        assert_eq!(c.own_address.as_deref(), Some("support@example.test"));
    }

    #[test]
    fn filed_mail_is_left_alone_unless_asked() {
        let imap = parse_with_env(GOOD).unwrap().imap.unwrap();
        assert!(!imap.mark_seen && imap.move_to.is_none() && !imap.changes_mailbox());
        let with = |extra: &str| {
            parse_with_env(&GOOD.replace(
                "password_env = \"PW\"",
                &format!("password_env = \"PW\"\n{extra}"),
            ))
        };
        assert!(with("mark_seen = true")
            .unwrap()
            .imap
            .unwrap()
            .changes_mailbox());
        let imap = with("move_to = \"Verwerkt\"").unwrap().imap.unwrap();
        assert_eq!(imap.move_to.as_deref(), Some("Verwerkt"));
        assert!(imap.changes_mailbox());
        let err = with("move_to = \"INBOX\"").unwrap_err().to_string();
        assert!(
            err.contains("imap.move_to") && err.contains("watched"),
            "{err}"
        );
        let err = with("move_to = \" \"").unwrap_err().to_string();
        assert!(err.contains("imap.move_to"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse_with_env(&GOOD.replace("mailbox", "x").replace(
            "password_env = \"PW\"",
            "password_env = \"PW\"\nmailbx = \"INBOX\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("mailbx"), "{err}");
    }

    #[test]
    fn secrets_from_a_command_are_fetched_at_each_login() {
        let c = parse_with_env(&GOOD.replace(
            "password_env = \"PW\"",
            "password_command = \"echo token-$((1+1))\"\nauth = \"xoauth2\"",
        ))
        .unwrap();
        let imap = c.imap.unwrap();
        assert_eq!(imap.auth, AuthMethod::Xoauth2);
        assert_eq!(imap.password.get().unwrap().expose(), "token-2");
        assert!(!format!("{:?}", imap.password).contains("token-2"));
        let err =
            parse_with_env(&GOOD.replace("password_env = \"PW\"", "password_command = \"false\""))
                .unwrap_err()
                .to_string();
        assert!(err.contains("imap.password_command"), "{err}");
        let err = parse_with_env(
            &GOOD.replace("password_env = \"PW\"", "password_credential = \"imap\""),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CREDENTIALS_DIRECTORY"), "{err}");
    }

    #[test]
    fn plaintext_only_on_loopback() {
        let err = parse_with_env(&GOOD.replace("127.0.0.1", "imap.example.com"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("imap.tls"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (from, to, key) in [
            ("tls = \"none\"", "tls = \"ssl\"", "imap.tls"),
            (
                "[store]",
                "[tickets]\ntime_zone = \"Mars/Base\"\n[store]",
                "tickets.time_zone",
            ),
            (
                "[store]",
                "[tickets]\ndefault_language = \"de\"\n[store]",
                "tickets.default_language",
            ),
            (
                "[store]",
                "[tickets]\nprefix = \"wn\"\n[store]",
                "tickets.prefix",
            ),
            (
                "[store]",
                "[tickets]\nack_max_age_days = 4000\n[store]",
                "tickets.ack_max_age_days",
            ),
            (
                "password_env = \"PW\"",
                "password_env = \"NOPE\"",
                "imap.password_env",
            ),
            (
                "from_address = \"support@example.test\"",
                "from_address = \"support\"",
                "smtp.from_address",
            ),
        ] {
            let err = parse_with_env(&GOOD.replacen(from, to, 1))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "expected {key} in: {err}");
        }
    }
}

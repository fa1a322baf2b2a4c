//! The `ticketd` command line. The only place that uses anyhow: library
//! errors get their context here and reach the operator as one clear line.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ticketd::ack::AckTemplates;
use ticketd::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use ticketd::daemon;
use ticketd::ingest::{Ingestor, Outcome};
use ticketd::store::{views, Store};

#[derive(Parser)]
#[command(
    name = "ticketd",
    version,
    about = "Turns the Whatnot Support mailbox into tickets"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG_PATH, env = "TICKETD_CONFIG")]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch the mailbox: file new mail as it arrives and send acknowledgements.
    Run,
    /// One pass over the mailbox, send due acknowledgements, then exit.
    Poll {
        /// Accepted for clarity: `poll` always makes exactly one pass.
        #[arg(long)]
        once: bool,
        /// Print what would be taken from the mailbox, and why; file nothing.
        #[arg(long)]
        dry_run: bool,
        /// Mail the server received before this time was answered already
        /// (after a restore from a backup, or a move from another desk): file
        /// it without an acknowledgement. "2026-11-27 14:05" in
        /// tickets.time_zone, or RFC 3339.
        #[arg(long)]
        acked_before: Option<String>,
    },
    /// File raw messages from files (`-` for standard input), without IMAP.
    Ingest {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also send the queued acknowledgements now (needs [smtp]).
        #[arg(long)]
        send: bool,
    },
    /// Show one ticket with its whole thread.
    Show {
        ticket: String,
        #[arg(long)]
        json: bool,
        /// Show each message whole, quoted history included.
        #[arg(long)]
        full: bool,
    },
    /// List tickets, the ones due first.
    List {
        /// Only open tickets (the default).
        #[arg(long, conflicts_with_all = ["closed", "all", "unfiled"])]
        open: bool,
        #[arg(long, conflicts_with_all = ["all", "unfiled"])]
        closed: bool,
        #[arg(long, conflicts_with = "unfiled")]
        all: bool,
        /// Machine mail (auto-replies, bounces, lists) that belongs to no ticket.
        #[arg(long)]
        unfiled: bool,
        /// Open, unanswered tickets past their promised response time.
        #[arg(long, conflicts_with_all = ["closed", "all", "unfiled", "due_within"])]
        overdue: bool,
        /// Open, unanswered tickets due within this long (e.g. 6h, 90m, 2d).
        #[arg(long, value_parser = parse_duration, conflicts_with_all = ["closed", "all", "unfiled"])]
        due_within: Option<chrono::Duration>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show the outbox of acknowledgements, or requeue a failed one.
    Outbox {
        #[command(subcommand)]
        action: Option<OutboxAction>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Answer a ticket as Whatnot Support; the text comes from a file or stdin.
    Reply {
        ticket: String,
        /// File with the reply text (`-` or absent: standard input).
        #[arg(long)]
        body_file: Option<PathBuf>,
        /// Who answers, for the thread (default: $USER).
        #[arg(long)]
        agent: Option<String>,
        /// Send it now instead of at the next `run`/`poll`.
        #[arg(long)]
        send: bool,
    },
    /// Write an attachment (by its sha256, as `show` lists it) to a file or stdout.
    Attachment {
        sha256: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete tickets with all their mail, for good (a buyer's request to
    /// erase their data, or a retention period). Without --yes, only says
    /// what would go.
    Delete {
        /// Tickets by ID (WN-000123).
        #[arg(required_unless_present_any = ["requester", "closed_before"])]
        tickets: Vec<String>,
        /// Every ticket this address opened, and its mail on no ticket.
        #[arg(long, conflicts_with_all = ["tickets", "closed_before"])]
        requester: Option<String>,
        /// Closed tickets closed before a date (2025-06-01) or longer ago
        /// than a while (365d).
        #[arg(long, conflicts_with = "tickets")]
        closed_before: Option<String>,
        /// Delete; without it nothing is changed.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Close a ticket; a reply from the buyer reopens it.
    Close { ticket: String },
    /// Reopen a closed ticket.
    Reopen { ticket: String },
    /// Find tickets by ticket ID, order number, e-mail address or text.
    Search {
        query: String,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only open or only closed tickets.
        #[arg(long, value_parser = ["open", "closed"])]
        status: Option<String>,
        /// Only tickets active since a date (2026-11-01) or for a while (7d, 12h).
        #[arg(long)]
        since: Option<String>,
    },
    /// Every stored inbound message as one JSON object per line.
    Export {
        /// JSON Lines (the only format so far).
        #[arg(long)]
        jsonl: bool,
    },
    /// Check config, templates, store, IMAP login and SMTP, one line each.
    Check,
    /// Serve the agents' web page.
    Web,
    /// Read a password from standard input, print its argon2id hash for [[web.agents]].
    HashPassword,
    /// Write a consistent copy of the database to PATH while ticketd runs.
    Backup { path: PathBuf },
    /// Counts: tickets, messages, outbox, mailbox positions.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Send a failed item again (at the next `run`/`poll`).
    Retry { id: i64 },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// journald under systemd, else text.
    Auto,
    Text,
    Json,
    Journald,
}

/// Logs to stderr as text or JSON, or to the journal with structured
/// fields. The journal is used only when its socket answers; without one
/// (tests, containers, CI) the logs go to stderr instead of failing.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("TICKETD_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let journald = match format {
        LogFormat::Journald => true,
        LogFormat::Auto => under_systemd,
        _ => false,
    };
    if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .init();
                return;
            }
            Err(e) => eprintln!("ticketd: no journal ({e}); logging to stderr"),
        }
    }
    // Colours only for a person at a terminal: a log file, cron's mail or
    // the journal (`--log-format text` under systemd) would get escape
    // codes in every line. NO_COLOR turns them off at a terminal too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(cli: &Cli) -> Result<Config> {
    Config::load(&cli.config).map_err(|e| match e {
        // These name the file already.
        ConfigError::Read { .. } | ConfigError::Syntax { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e)
            .context(format!("invalid configuration in {}", cli.config.display())),
    })
}

fn load_templates(config: &Config) -> Result<AckTemplates> {
    AckTemplates::load(&config.tickets.templates_dir).context("acknowledgement templates")
}

fn fmt_time(config: &Config, unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|d| {
            d.with_timezone(&config.tickets.time_zone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        })
        .unwrap_or_default()
}

/// A moment: RFC 3339, or "2026-11-27 14:05[:30]" or "2026-11-27" in `tz`.
fn parse_moment(text: &str, tz: chrono_tz::Tz) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&chrono::Utc));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
    .or_else(|| {
        chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .context("not a date and time")?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.with_timezone(&chrono::Utc))
        .context("that local time does not exist (a clock change)")
}

/// "6h", "90m", "2d", "45s".
fn parse_duration(text: &str) -> Result<chrono::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 6h, 90m or 2d"))?;
    match unit {
        "s" => Ok(chrono::Duration::seconds(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        "h" | "" => Ok(chrono::Duration::hours(n)),
        "d" => Ok(chrono::Duration::days(n)),
        _ => Err(format!("`{text}`: use s, m, h or d, like 6h")),
    }
}

/// A date (2026-11-01, midnight UTC) or a duration back from now (7d).
fn parse_since(text: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64> {
    parse_time_back("--since", text, now)
}

fn parse_time_back(flag: &str, text: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .unwrap_or(0));
    }
    let back = parse_duration(text)
        .map_err(|e| anyhow::anyhow!("{flag} {e} or a date like 2026-11-01"))?;
    Ok((now - back).timestamp())
}

/// "due in 5h 12m" / "overdue by 3h 2m".
fn clock_text(seconds_left: i64) -> String {
    let s = seconds_left.abs();
    let (h, m) = (s / 3600, (s % 3600) / 60);
    let span = if h >= 48 {
        format!("{}d {}h", h / 24, h % 24)
    } else {
        format!("{h}h {m:02}m")
    };
    if seconds_left >= 0 {
        format!("due in {span}")
    } else {
        format!("overdue by {span}")
    }
}

fn ticket_ref(config: &Config, text: &str) -> Result<i64> {
    let prefix = &config.tickets.prefix;
    views::parse_ticket_ref(prefix, text)
        .with_context(|| format!("`{text}` is not a ticket ID like {prefix}-000123"))
}

/// What `--send` says when another ticketd holds the outbox.
const ELSEWHERE: &str =
    "not sent from here: another ticketd (the running service?) is sending the outbox and sends these too";

/// `--send`: sends what is due now; the line to print about it.
fn send_now(config: &Config, store: &mut Store) -> Result<String> {
    let Some(smtp_cfg) = &config.smtp else {
        bail!("--send needs an [smtp] section in the config");
    };
    let transport = ticketd::smtp::transport(smtp_cfg)?;
    let stats = runtime()?.block_on(ticketd::smtp::deliver_due(
        store,
        &transport,
        &daemon::Shutdown::never(),
    ))?;
    Ok(if stats.elsewhere {
        ELSEWHERE.to_string()
    } else {
        format!(
            "sent {} mail(s) from the outbox, {} failed",
            stats.sent, stats.failed
        )
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// SIGTERM and SIGINT ask for a clean stop; SIGHUP for a reload (each
/// SIGHUP bumps the returned counter).
fn spawn_signal_handler(
    rt: &tokio::runtime::Runtime,
    trigger: daemon::ShutdownTrigger,
) -> Result<tokio::sync::watch::Receiver<u64>> {
    use tokio::signal::unix::{signal, SignalKind};
    let _guard = rt.enter();
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    let (reload_tx, reload_rx) = tokio::sync::watch::channel(0u64);
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: finishing the message in hand"); break }
                _ = int.recv() => { tracing::info!("SIGINT: finishing the message in hand"); break }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading configuration and templates");
                    reload_tx.send_modify(|n| *n += 1);
                }
            }
        }
        trigger.trigger();
    });
    Ok(reload_rx)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `ticketd list | head` is not an error.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("ticketd: error: {}", one_line(&e));
            std::process::ExitCode::from(exit_status(&e))
        }
    }
}

/// The error and its causes on one line (one journal entry), each cause
/// once: most of our errors already name their cause in their own text,
/// which `{:#}` would repeat ("Permission denied: Permission denied").
/// Multi-line causes (a TOML syntax error's excerpt) are joined too.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "|")
            .collect::<Vec<_>>()
            .join(" ");
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// sysexits.h EX_CONFIG: the configuration (file or templates) is wrong.
/// The unit's `RestartPreventExitStatus=78` keeps systemd from restarting
/// the service every few seconds, and logging in each time, until someone
/// fixes the file.
const EX_CONFIG: u8 = 78;

/// The exit status for an error: EX_CONFIG when an edit of the config
/// file or the templates is what it takes, 1 otherwise.
fn exit_status(e: &anyhow::Error) -> u8 {
    let is_config = e.chain().any(|c| {
        c.downcast_ref::<ConfigError>()
            .is_some_and(|e| !matches!(e, ConfigError::SecretCommand { .. }))
            || matches!(
                c.downcast_ref::<ticketd::ack::AckError>(),
                Some(
                    ticketd::ack::AckError::NoTemplates(_)
                        | ticketd::ack::AckError::Template { .. }
                )
            )
            || matches!(
                c.downcast_ref::<daemon::DaemonError>(),
                Some(
                    daemon::DaemonError::NoImap
                        | daemon::DaemonError::Templates(
                            ticketd::ack::AckError::NoTemplates(_)
                                | ticketd::ack::AckError::Template { .. }
                        )
                )
            )
    });
    if is_config {
        EX_CONFIG
    } else {
        1
    }
}

fn real_main(cli: Cli) -> Result<()> {
    if let Command::HashPassword = cli.command {
        let mut pw = String::new();
        std::io::stdin()
            .read_to_string(&mut pw)
            .context("reading the password from standard input")?;
        println!(
            "{}",
            ticketd::web::hash_password(pw.trim_end_matches(['\r', '\n']))?
        );
        return Ok(());
    }
    let config = load(&cli)?;
    if matches!(
        cli.command,
        Command::Poll { .. } | Command::Run | Command::Ingest { .. }
    ) {
        // The regexes that read a mail compile while the store opens and
        // the daemon logs in; a failed spawn only leaves that to the first
        // mail.
        let _ = std::thread::Builder::new()
            .name("warm-up".into())
            .spawn(ticketd::core::warm_up);
    }
    match &cli.command {
        Command::Poll {
            dry_run,
            acked_before,
            ..
        } => {
            let mut config = config;
            if let Some(text) = acked_before {
                config.tickets.acked_before = Some(
                    parse_moment(text, config.tickets.time_zone).with_context(|| {
                        format!(
                            "--acked-before `{text}`: use a time like \"2026-11-27 14:05\" \
                             (in {}) or RFC 3339",
                            config.tickets.time_zone
                        )
                    })?,
                );
            }
            let config = config;
            let templates = load_templates(&config)?;
            let print = |line: String| println!("{line}");
            let report: Option<&(dyn Fn(String) + Sync)> =
                if *dry_run { Some(&print) } else { None };
            runtime()?.block_on(daemon::poll_once(&config, &templates, report))?;
        }
        Command::Web => {
            let rt = runtime()?;
            let (trigger, shutdown) = daemon::shutdown_channel();
            let reload = spawn_signal_handler(&rt, trigger)?;
            rt.block_on(ticketd::web::serve(&config, &cli.config, shutdown, reload))?;
        }
        // Answered above: it needs no config.
        Command::HashPassword => {}
        Command::Run => {
            let rt = runtime()?;
            let (trigger, shutdown) = daemon::shutdown_channel();
            let reload = spawn_signal_handler(&rt, trigger)?;
            if config.web.as_ref().is_some_and(|w| w.with_daemon) {
                let web_config = config.clone();
                let web_shutdown = shutdown.clone();
                let web_reload = reload.clone();
                rt.block_on(async move {
                    let (daemon, web) = tokio::join!(
                        daemon::run(&cli.config, config, shutdown, reload),
                        async {
                            let r = ticketd::web::serve(
                                &web_config,
                                &cli.config,
                                web_shutdown,
                                web_reload,
                            )
                            .await;
                            if let Err(e) = &r {
                                tracing::error!(error = %e, "the agents' web page stopped; mail is still filed");
                            }
                            r
                        }
                    );
                    daemon?;
                    web.context("the agents' web page")
                })?;
            } else {
                rt.block_on(daemon::run(&cli.config, config, shutdown, reload))?;
            }
        }
        Command::Ingest { files, send } => {
            let templates = load_templates(&config)?;
            let mut store = Store::open(&config.data_dir).context("opening the store")?;
            let ingestor = Ingestor {
                config: &config,
                templates: &templates,
            };
            let mut out = std::io::stdout().lock();
            for file in files {
                let mut raw = Vec::new();
                if file.as_os_str() == "-" {
                    std::io::stdin()
                        .read_to_end(&mut raw)
                        .context("reading standard input")?;
                } else {
                    raw = std::fs::read(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                }
                let outcome = ingestor
                    .ingest(&mut store, &raw, None, chrono::Utc::now())
                    .with_context(|| format!("filing {}", file.display()))?;
                let line = match outcome {
                    Outcome::Filed {
                        ticket,
                        new,
                        ack_queued,
                    } => format!(
                        "{}: {} {}{}",
                        file.display(),
                        if new { "new ticket" } else { "added to" },
                        ticketd::core::thread::ticket_token(&config.tickets.prefix, ticket),
                        if ack_queued {
                            " (acknowledgement queued)"
                        } else {
                            ""
                        }
                    ),
                    Outcome::Unfiled { kind } => {
                        format!("{}: kept unfiled ({kind} mail)", file.display())
                    }
                    Outcome::Duplicate => format!("{}: already filed", file.display()),
                    Outcome::Deleted => format!(
                        "{}: deleted on request earlier (ticketd delete); not filed again",
                        file.display()
                    ),
                };
                writeln!(out, "{line}")?;
            }
            if *send {
                writeln!(out, "{}", send_now(&config, &mut store)?)?;
            }
        }
        Command::Outbox {
            action,
            json,
            limit,
        } => {
            let store = Store::open(&config.data_dir)?;
            if let Some(OutboxAction::Retry { id }) = action {
                store.outbox_requeue(*id, chrono::Utc::now().timestamp())?;
                println!("outbox item {id} queued again");
                return Ok(());
            }
            let rows = views::outbox(store.conn(), &config.tickets.prefix, *limit)?;
            let mut out = std::io::stdout().lock();
            if *json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else if rows.is_empty() {
                writeln!(out, "the outbox is empty")?;
            } else {
                for r in rows {
                    let refused = if r.refused > 0 {
                        format!(" (refused {}/{})", r.refused, ticketd::smtp::MAX_ATTEMPTS)
                    } else {
                        String::new()
                    };
                    let next = if r.status == "queued" && r.attempts > 0 {
                        format!("  next try {}", fmt_time(&config, r.next_attempt_at))
                    } else {
                        String::new()
                    };
                    writeln!(
                        out,
                        "{:>5}  {}  {:<7}  attempts {}{refused}  {}  {}{next}{}",
                        r.id,
                        r.ticket,
                        r.status,
                        r.attempts,
                        fmt_time(&config, r.sent_at.unwrap_or(r.created_at)),
                        r.to,
                        r.last_error.map(|e| format!("  ({e})")).unwrap_or_default()
                    )?;
                }
            }
        }
        Command::Reply {
            ticket,
            body_file,
            agent,
            send,
        } => {
            let id = ticket_ref(&config, ticket)?;
            let mut body = String::new();
            match body_file {
                Some(f) if f.as_os_str() != "-" => {
                    body = std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?
                }
                _ => {
                    std::io::stdin()
                        .read_to_string(&mut body)
                        .context("reading the reply from standard input")?;
                }
            }
            let agent = agent
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "agent".to_string());
            let mut store = Store::open(&config.data_dir)?;
            let message_id = ticketd::reply::queue_reply(
                &mut store,
                &config,
                id,
                &agent,
                &body,
                chrono::Utc::now(),
            )?;
            println!("reply queued <{message_id}>");
            if *send {
                println!("{}", send_now(&config, &mut store)?);
            }
        }
        Command::Attachment { sha256, output } => {
            let store = Store::open(&config.data_dir)?;
            let known: bool = store
                .conn()
                .query_row(
                    "SELECT 1 FROM attachments WHERE sha256 = ?1 LIMIT 1",
                    [sha256],
                    |_| Ok(()),
                )
                .is_ok();
            if !known || sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("no attachment with sha256 {sha256} (see `ticketd show` for the list)");
            }
            let bytes = store.read_blob(sha256)?;
            match output {
                Some(path) if path.as_os_str() != "-" => {
                    std::fs::write(path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
                }
                _ => std::io::stdout().lock().write_all(&bytes)?,
            }
        }
        Command::Delete {
            tickets,
            requester,
            closed_before,
            yes,
            json,
        } => {
            use ticketd::store::delete::{self, Selection};
            let now = chrono::Utc::now();
            let selection = if let Some(address) = requester {
                Selection::Requester(address.clone())
            } else if let Some(when) = closed_before {
                Selection::ClosedBefore(parse_time_back("--closed-before", when, now)?)
            } else {
                Selection::Tickets(
                    tickets
                        .iter()
                        .map(|t| ticket_ref(&config, t))
                        .collect::<Result<_>>()?,
                )
            };
            let mut store = Store::open(&config.data_dir)?;
            let done = if *yes {
                let done = store.delete(&selection, now.timestamp())?;
                // For the record of what was erased and when: counts and
                // ticket numbers, nothing of the mail.
                tracing::info!(
                    tickets = done.tickets.len(),
                    messages = done.messages,
                    attachments = done.attachments,
                    files = done.blobs,
                    "deleted on request"
                );
                done
            } else {
                delete::plan(store.conn(), &selection)?
            };
            let prefix = &config.tickets.prefix;
            let token = |t: &i64| ticketd::core::thread::ticket_token(prefix, *t);
            if *json {
                let mut v = serde_json::to_value(&done)?;
                v["tickets"] = done.tickets.iter().map(token).collect();
                v["not_found"] = done.not_found.iter().map(token).collect();
                v["deleted"] = (*yes).into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let list = |ts: &[i64]| ts.iter().map(token).collect::<Vec<_>>().join(" ");
                let verb = if *yes { "deleted" } else { "would delete" };
                println!(
                    "{verb}: {} ticket(s) {}; {} message(s), {} attachment(s), {} outbox item(s){}",
                    done.tickets.len(),
                    list(&done.tickets),
                    done.messages,
                    done.attachments,
                    done.outbox,
                    if *yes {
                        format!(", {} stored file(s) no other message names", done.blobs)
                    } else {
                        String::new()
                    }
                );
                if !done.not_found.is_empty() {
                    println!("not found: {}", list(&done.not_found));
                }
                if done.kept_on_other_tickets > 0 {
                    println!(
                        "kept: {} message(s) from this address on tickets others opened (delete those tickets by ID if they must go too)",
                        done.kept_on_other_tickets
                    );
                }
                if *yes {
                    println!(
                        "the mailbox still holds the mail (ticketd never deletes there; it will not file it again), and so do backups taken before now"
                    );
                } else {
                    println!("nothing deleted: run again with --yes");
                }
            }
            if !done.not_found.is_empty() && done.tickets.is_empty() {
                anyhow::bail!("no such ticket");
            }
        }
        Command::Close { ticket } | Command::Reopen { ticket } => {
            let open = matches!(cli.command, Command::Reopen { .. });
            let store = Store::open(&config.data_dir)?;
            let id = ticket_ref(&config, ticket)?;
            store.set_ticket_status(id, open, chrono::Utc::now().timestamp())?;
            println!(
                "{} {}",
                ticketd::core::thread::ticket_token(&config.tickets.prefix, id),
                if open { "reopened" } else { "closed" }
            );
        }
        Command::List {
            closed,
            all,
            unfiled,
            overdue,
            due_within,
            json,
            limit,
            ..
        } => {
            let store = Store::open(&config.data_dir)?;
            let mut out = std::io::stdout().lock();
            if *unfiled {
                let rows = views::unfiled(store.conn(), *limit)?;
                if *json {
                    serde_json::to_writer_pretty(&mut out, &rows)?;
                    writeln!(out)?;
                } else {
                    for m in rows {
                        writeln!(
                            out,
                            "{}  {:<9}  {}  {}  <{}>",
                            fmt_time(&config, m.received_at),
                            m.kind,
                            m.from.as_deref().unwrap_or("(no sender)"),
                            m.subject,
                            m.message_id
                        )?;
                    }
                }
                return Ok(());
            }
            let now = chrono::Utc::now();
            let filter = match (closed, all, overdue, due_within) {
                (true, ..) => views::ListFilter::Closed,
                (_, true, ..) => views::ListFilter::All,
                (_, _, true, _) => views::ListFilter::Overdue {
                    now: now.timestamp(),
                },
                (.., Some(d)) => views::ListFilter::DueBefore {
                    until: (now + *d).timestamp(),
                },
                _ => views::ListFilter::Open,
            };
            let rows = views::list(store.conn(), &config.tickets.prefix, filter, *limit)?;
            if *json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else {
                for t in rows {
                    let clock = match (t.responded_at, t.due_at) {
                        (Some(_), _) => "answered".to_string(),
                        (None, Some(due)) if t.status == "open" => {
                            clock_text(due - now.timestamp())
                        }
                        _ => String::new(),
                    };
                    writeln!(
                        out,
                        "{}  {:<6}  {:<22}  {:<8}  {}  {}",
                        t.ticket, t.status, clock, t.issue_type, t.requester, t.subject
                    )?;
                }
            }
        }
        Command::Show { ticket, json, full } => {
            let store = Store::open(&config.data_dir)?;
            let prefix = &config.tickets.prefix;
            let id = ticket_ref(&config, ticket)?;
            let view = views::ticket(store.conn(), prefix, id, *full)?;
            let mut out = std::io::stdout().lock();
            if *json {
                serde_json::to_writer_pretty(&mut out, &view)?;
                writeln!(out)?;
                return Ok(());
            }
            writeln!(out, "{}  [{}]  {}", view.ticket, view.status, view.subject)?;
            writeln!(
                out,
                "requester: {}{}",
                view.requester_name
                    .as_deref()
                    .map(|n| format!("{n} "))
                    .unwrap_or_default(),
                format_args!("<{}>", view.requester)
            )?;
            writeln!(out, "language:  {}", view.language)?;
            writeln!(out, "opened:    {}", fmt_time(&config, view.created_at))?;
            if let Some(due) = view.due_at {
                let clock = match (view.status.as_str(), view.responded_at) {
                    (_, Some(at)) => format!("answered {}", fmt_time(&config, at)),
                    ("closed", None) => "closed".to_string(),
                    _ => clock_text(due - chrono::Utc::now().timestamp()),
                };
                writeln!(out, "respond by: {} ({clock})", fmt_time(&config, due))?;
            }
            writeln!(
                out,
                "issue:     {}{}",
                view.issue_type,
                view.category
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            )?;
            for (label, values) in [
                ("orders:   ", &view.order_numbers),
                ("shipments:", &view.shipment_numbers),
                ("username: ", &view.usernames),
                ("account:  ", &view.account_emails),
                ("purchased:", &view.purchase_dates),
                ("delivered:", &view.delivery_dates),
            ] {
                if !values.is_empty() {
                    writeln!(out, "{label} {}", values.join(", "))?;
                }
            }
            for m in &view.messages {
                writeln!(out)?;
                let arrow = if m.direction == "in" { "<-" } else { "->" };
                writeln!(
                    out,
                    "{arrow} {}  {}  ({})",
                    fmt_time(&config, m.received_at),
                    m.from.as_deref().unwrap_or("(no sender)"),
                    m.kind
                )?;
                writeln!(out, "   Subject: {}", m.subject)?;
                for line in m.text.lines() {
                    writeln!(out, "   | {line}")?;
                }
                if let Some(attached) = &m.attached_text {
                    writeln!(out, "   attached mail:")?;
                    for line in attached.trim_end().lines() {
                        writeln!(out, "   > {line}")?;
                    }
                }
                for a in &m.attachments {
                    let location = match store.blob_location(&a.sha256)? {
                        ticketd::store::BlobLocation::Database => {
                            "in the database (small files are)".to_string()
                        }
                        ticketd::store::BlobLocation::File(p) => format!("at {}", p.display()),
                        ticketd::store::BlobLocation::InMail(raw) => {
                            match store.blob_location(&raw)? {
                                ticketd::store::BlobLocation::File(p) => {
                                    format!("inside the raw mail {}", p.display())
                                }
                                _ => "inside its raw mail, in the database".to_string(),
                            }
                        }
                    };
                    writeln!(
                        out,
                        "   attachment: {} ({}, {} bytes)\n      ticketd attachment {} -o FILE   # stored {location}",
                        a.filename.as_deref().unwrap_or("(unnamed)"),
                        a.content_type,
                        a.size,
                        a.sha256,
                    )?;
                }
                match &m.ack {
                    Some(views::AckView::Queued { message_id, status }) => {
                        writeln!(out, "   ack: {status} <{message_id}>")?
                    }
                    Some(views::AckView::Skipped { skipped }) => {
                        writeln!(out, "   ack: none ({skipped})")?
                    }
                    None => {}
                }
            }
        }
        Command::Search {
            query,
            json,
            limit,
            status,
            since,
        } => {
            let store = Store::open(&config.data_dir)?;
            let since = since
                .as_deref()
                .map(|s| parse_since(s, chrono::Utc::now()))
                .transpose()?;
            let filter = views::SearchFilter {
                status: status.clone(),
                since,
                limit: *limit,
            };
            let hits =
                views::search_filtered(store.conn(), &config.tickets.prefix, query, &filter)?;
            let mut out = std::io::stdout().lock();
            if *json {
                serde_json::to_writer_pretty(&mut out, &hits)?;
                writeln!(out)?;
            } else if hits.is_empty() {
                writeln!(out, "no tickets match `{query}`")?;
            } else {
                for h in hits {
                    writeln!(
                        out,
                        "{}  {:<6}  {}  {}  {}",
                        h.ticket,
                        h.status,
                        fmt_time(&config, h.last_activity),
                        h.requester,
                        h.subject
                    )?;
                    if let Some(s) = h.snippet {
                        writeln!(out, "           {}", s.replace('\n', " "))?;
                    }
                }
            }
        }
        Command::Export { jsonl } => {
            if !jsonl {
                bail!("say `--jsonl`: JSON Lines is the export format");
            }
            let store = Store::open(&config.data_dir)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            views::export(store.conn(), &config.tickets.prefix, |record| {
                serde_json::to_writer(&mut out, &record)?;
                out.write_all(b"\n")
            })?;
            out.flush()?;
        }
        Command::Check => {
            println!("ok: config {}", cli.config.display());
            load_templates(&config)?;
            println!(
                "ok: templates in {}",
                config.tickets.templates_dir.display()
            );
            let not_writable = || {
                format!(
                    "cannot open the store in {}; if this user cannot write there, fix its owner \
                     or mode (the service runs as `ticketd`)",
                    config.data_dir.display()
                )
            };
            let store = Store::open(&config.data_dir).with_context(not_writable)?;
            store.check_writable().with_context(|| {
                format!(
                    "the data directory {} is not writable by this user; fix its owner or mode",
                    config.data_dir.display()
                )
            })?;
            println!("ok: store in {} (writable)", config.data_dir.display());
            let rt = runtime()?;
            if let Some(imap) = &config.imap {
                rt.block_on(async {
                    let mut session = ticketd::imap::connect(imap).await?;
                    for mailbox in &imap.mailboxes {
                        let mbox = session.examine(mailbox).await.map_err(|e| {
                            ticketd::imap::ImapError::Mailbox {
                                mailbox: mailbox.clone(),
                                message: e.to_string(),
                            }
                        })?;
                        println!(
                            "ok: IMAP {}@{}:{} mailbox {mailbox} ({} messages)",
                            imap.username, imap.host, imap.port, mbox.exists
                        );
                        let max_age = config.tickets.ack_max_age_days;
                        let old_before = max_age.map(|days| {
                            (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
                                .date_naive()
                        });
                        let (unread, old) = ticketd::imap::unread_preview(
                            &mut session,
                            imap.timeout,
                            mailbox,
                            &mbox,
                            &store,
                            old_before,
                        )
                        .await?;
                        if unread > 0 {
                            let mut line = format!("    {unread} message(s) not read yet");
                            if let (Some(day), Some(days)) = (old_before, max_age) {
                                if old > 0 {
                                    line += &format!(
                                        "; {old} of them received before {day}: filed with no \
                                         acknowledgement (tickets.ack_max_age_days = {days})"
                                    );
                                }
                            }
                            println!("{line}");
                        }
                        if let Some(rules) = &config.intake {
                            let counts = ticketd::imap::intake_preview(
                                &mut session,
                                imap.timeout,
                                mailbox,
                                rules,
                                &config.tickets.prefix,
                                &store,
                                100,
                            )
                            .await?;
                            let total: usize = counts.iter().map(|(_, c)| c).sum();
                            println!("    intake on the last {total} message(s) of {mailbox}:");
                            for (reason, count) in counts {
                                println!("    {count:>5}  {reason}");
                            }
                        }
                    }
                    let after = ticketd::imap::check_after_filing(imap, &mut session).await?;
                    println!("ok: filed mail is {after}");
                    ticketd::imap::logout(session).await;
                    Ok::<(), ticketd::imap::ImapError>(())
                })
                .context("IMAP check failed")?;
            } else {
                println!("skip: no [imap] section");
            }
            if let Some(smtp_cfg) = &config.smtp {
                let transport = ticketd::smtp::transport(smtp_cfg)?;
                rt.block_on(transport.test_connection()).with_context(|| {
                    format!(
                        "SMTP check failed for {}:{}; check host, port, tls, ca_file and the login",
                        smtp_cfg.host, smtp_cfg.port
                    )
                })?;
                println!("ok: SMTP {}:{}", smtp_cfg.host, smtp_cfg.port);
            } else {
                println!("skip: no [smtp] section (no acknowledgements)");
            }
        }
        Command::Backup { path } => {
            let store = Store::open(&config.data_dir)?;
            store
                .backup_to(path)
                .with_context(|| format!("backing up to {}", path.display()))?;
            println!("database copied to {}", path.display());
            println!(
                "larger attachments and raw mails (over 64 KiB; smaller ones are in the database): \
                 copy {} as well (immutable, content-addressed files: `rsync -a` is safe while \
                 ticketd runs; copy it after the database)",
                config.data_dir.join("blobs").display()
            );
        }
        Command::Stats { json } => {
            let store = Store::open(&config.data_dir)?;
            let st = views::stats(store.conn(), chrono::Utc::now().timestamp())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!(
                    "tickets:     {} open ({} overdue), {} closed",
                    st.tickets_open, st.tickets_overdue, st.tickets_closed
                );
                println!(
                    "messages:    {} in, {} out, {} unfiled",
                    st.messages_in, st.messages_out, st.unfiled
                );
                println!(
                    "attachments: {} ({} bytes)",
                    st.attachments, st.attachment_bytes
                );
                if st.deleted_messages > 0 {
                    println!(
                        "deleted:     {} message(s) deleted on request, not filed again",
                        st.deleted_messages
                    );
                }
                for (status, n) in &st.outbox {
                    println!("outbox:      {n} {status}");
                }
                for m in &st.mailboxes {
                    println!(
                        "mailbox:     {} at UID {} (UIDVALIDITY {})",
                        m.mailbox, m.last_uid, m.uidvalidity
                    );
                }
                for l in &st.left_out {
                    let since = chrono::DateTime::from_timestamp(l.first_at, 0)
                        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_default();
                    println!(
                        "left out:    {} UID {}: not sent by the server in {} pass(es) since {since}; asked for again on each pass",
                        l.mailbox, l.uid, l.tries
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_moment;

    #[test]
    fn moments_in_the_desks_time_zone_or_rfc3339() {
        let tz = chrono_tz::Europe::Amsterdam;
        let utc = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        assert_eq!(
            parse_moment("2026-11-27 14:05", tz).unwrap(),
            utc("2026-11-27T13:05:00Z")
        );
        assert_eq!(
            parse_moment("2026-07-01 14:05:30", tz).unwrap(),
            utc("2026-07-01T12:05:30Z")
        );
        assert_eq!(
            parse_moment("2026-11-27", tz).unwrap(),
            utc("2026-11-26T23:00:00Z")
        );
        assert_eq!(
            parse_moment("2026-11-27T14:05:00+00:00", tz).unwrap(),
            utc("2026-11-27T14:05:00Z")
        );
        // The hour skipped when the clocks go forward, and no date at all.
        assert!(parse_moment("2026-03-29 02:30", tz).is_err());
        assert!(parse_moment("yesterday", tz).is_err());
    }
}

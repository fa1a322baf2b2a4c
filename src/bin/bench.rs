//! The benchmark suite of issue 8: `cargo run --release --bin bench --
//! [ingest|ack|memory|startup|search ...] [--quick]`.
//!
//! It starts its own Dovecot + Postfix rig on loopback (`ticketd::rig`),
//! generates seeded mail and stores, runs the release binary
//! `target/release/ticketd` as a child process (stopped by its PID), and
//! compares every figure with a baseline measured in the same run: a raw
//! IMAP fetch for ingest, Postfix's own delivery for time to acknowledge,
//! an empty store for start-up, bare index probes for search. Results are
//! printed as tables and written into BENCHMARKS.md.

// Modules live in src/bin/bench/; the crate root resolves them from src/bin.
#[path = "bench/ack.rs"]
mod ack;
#[path = "bench/child.rs"]
mod child;
#[path = "bench/imapraw.rs"]
mod imapraw;
#[path = "bench/ingest.rs"]
mod ingest;
#[path = "bench/mailgen.rs"]
mod mailgen;
#[path = "bench/memory.rs"]
mod memory;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/search.rs"]
mod search;
#[path = "bench/shared.rs"]
mod shared;
#[path = "bench/sharedgen.rs"]
mod sharedgen;
#[path = "bench/startup.rs"]
mod startup;
#[path = "bench/storegen.rs"]
mod storegen;
#[path = "bench/util.rs"]
mod util;
#[path = "bench/webpage.rs"]
mod webpage;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ticketd::rig::MailRig;

use crate::child::SmtpSink;
use crate::report::Section;
use crate::util::Machine;

const USAGE: &str =
    "usage: bench [ingest|ack|memory|startup|search ...] [--quick] [--write|--no-write]
             [--no-build] [--ticketd PATH] [--perf] [--fresh-store] [--ingest-case MIX:N ...]

  (no scenario)   all five, in that order
  --quick         1k ingest (full mix and shared mailbox) only, 30 s of steady ack
                  traffic, shorter idle (~5 min)
  --write         write BENCHMARKS.md after a --quick run too (a full run always does,
                  unless --no-write)
  --no-build      do not run `cargo build --release --bin ticketd` first
  --ticketd PATH  measure this binary instead of target/release/ticketd (e.g. an
                  unstripped build for perf)
  --perf          also record the 1k plain ingest under `perf record -g` into
                  target/bench-data/perf-ingest.data and summarise where CPU time goes
  --fresh-store   regenerate the cached 1M-message store under target/bench-data
  --ingest-case MIX:N
                  instead of the standard ingest sizes, run these (repeatable;
                  MIX is full or light, e.g. --ingest-case full:10000); the first
                  one also runs over TLS, on tmpfs and (with --perf) under perf;
                  MIX shared is the shared mailbox with 10% support mail
                  (shared:1000 is the standard one)";

pub const SCENARIOS: [&str; 5] = ["ingest", "ack", "memory", "startup", "search"];

/// What every scenario gets: the rig, paths, options, and figures one
/// scenario hands to a later one.
pub struct Ctx {
    pub rig: MailRig,
    pub quick: bool,
    pub repo: PathBuf,
    pub ticketd: PathBuf,
    pub templates: PathBuf,
    /// Scratch space for this run (removed at the end).
    pub work: PathBuf,
    /// Kept between runs: the generated 1M-message store, perf data.
    pub cache: PathBuf,
    pub mail_owner: (u32, u32),
    pub rt: tokio::runtime::Runtime,
    pub sink: SmtpSink,
    pub perf: bool,
    pub fresh_store: bool,
    pub started: Instant,
    /// Peak RSS of the 1k full-mix plain ingest and the largest message,
    /// for the memory scenario.
    pub ingest_memory: Option<(u64, u64)>,
    /// Ingest sizes chosen on the command line (empty: the standard ones).
    pub ingest_cases: Vec<(mailgen::Mix, usize)>,
    /// Shared-mailbox sizes chosen on the command line (`shared:N`).
    pub shared_cases: Vec<usize>,
    /// The 1M-message store, once generated or found in the cache.
    pub store: Option<storegen::StoreInfo>,
}

impl Ctx {
    pub fn progress(&self, what: &str) {
        eprintln!("[{:7.1}s] {what}", self.started.elapsed().as_secs_f64());
    }
}

/// Removes the scratch directory however the run ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let mut scenarios: Vec<String> = Vec::new();
    let (mut quick, mut write, mut no_write, mut build, mut perf, mut fresh) =
        (false, false, false, true, false, false);
    let mut ticketd_path: Option<PathBuf> = None;
    let mut ingest_cases: Vec<(mailgen::Mix, usize)> = Vec::new();
    let mut shared_cases: Vec<usize> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--write" => write = true,
            "--no-write" => no_write = true,
            "--no-build" => build = false,
            "--perf" => perf = true,
            "--fresh-store" => fresh = true,
            "--ticketd" => {
                ticketd_path = Some(PathBuf::from(
                    args.next().context("--ticketd needs a path")?,
                ));
                build = false;
            }
            "--ingest-case" => {
                let spec = args.next().context("--ingest-case needs MIX:N")?;
                let (mix, n) = spec
                    .split_once(':')
                    .with_context(|| format!("--ingest-case {spec}: expected MIX:N"))?;
                let n: usize = n
                    .parse()
                    .with_context(|| format!("--ingest-case {spec}: N is not a number"))?;
                match mix {
                    "full" => ingest_cases.push((mailgen::Mix::Full, n)),
                    "light" => ingest_cases.push((mailgen::Mix::Light, n)),
                    "shared" if n >= 10 => shared_cases.push(n),
                    "shared" => bail!("--ingest-case {spec}: a shared mailbox needs N >= 10"),
                    other => {
                        bail!("--ingest-case: unknown mix {other:?} (full, light or shared)")
                    }
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if SCENARIOS.contains(&s) => scenarios.push(s.to_string()),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let ticketd = match ticketd_path {
        Some(p) => p,
        None => repo.join("target/release/ticketd"),
    };
    if build {
        eprintln!("building the release binary (cargo build --release --bin ticketd) ...");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "ticketd"])
            .current_dir(&repo)
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --release --bin ticketd failed");
        }
    }
    if !ticketd.is_file() {
        bail!(
            "{} does not exist: run `cargo build --release` first",
            ticketd.display()
        );
    }
    let machine = Machine::detect(&repo);
    eprintln!(
        "machine: {}; commit {}; load average {}",
        machine.describe(),
        machine.commit,
        machine.load
    );
    let work = PathBuf::from(format!("/tmp/tdbench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _scratch = Scratch(work.clone());
    let cache = repo.join("target/bench-data");
    std::fs::create_dir_all(&cache)?;
    let mail_owner = util::system_user("mail")
        .context("no `mail` user in /etc/passwd (see scripts/setup.sh)")?;
    eprintln!("starting the mail rig ...");
    let rig = MailRig::start().context("starting the Dovecot + Postfix rig (run as root)")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut ctx = Ctx {
        rig,
        quick,
        templates: repo.join("templates"),
        repo: repo.clone(),
        ticketd,
        work,
        cache,
        mail_owner,
        rt,
        sink: SmtpSink::start()?,
        perf,
        fresh_store: fresh,
        started,
        ingest_memory: None,
        ingest_cases,
        shared_cases,
        store: None,
    };
    ctx.progress(&format!(
        "rig up in {} (IMAP {}, IMAPS {}, SMTP {})",
        ctx.rig.dir().display(),
        ctx.rig.imap_port(),
        ctx.rig.imaps_port(),
        ctx.rig.smtp_port()
    ));

    let mut sections: Vec<Section> = Vec::new();
    for name in &scenarios {
        let t = Instant::now();
        ctx.progress(&format!("--- scenario {name} ---"));
        let result = match name.as_str() {
            "ingest" => ingest::run(&mut ctx),
            "ack" => ack::run(&mut ctx),
            "memory" => memory::run(&mut ctx),
            "startup" => startup::run(&mut ctx),
            "search" => search::run(&mut ctx),
            _ => unreachable!("checked above"),
        };
        match result {
            Ok(mut s) => {
                s.elapsed = t.elapsed();
                s.print();
                sections.push(s);
            }
            Err(e) => {
                eprintln!("scenario {name} failed: {e:#}");
                let mut s = Section::new(key_of(name), title_of(name));
                s.elapsed = t.elapsed();
                s.note(format!("The scenario failed: {e:#}"));
                s.print();
                sections.push(s);
            }
        }
    }

    let mode = if quick { "quick" } else { "full" };
    println!(
        "\n{} scenario(s) in {:.0} s; {} target(s) missed",
        sections.len(),
        started.elapsed().as_secs_f64(),
        sections.iter().map(Section::misses).sum::<usize>()
    );
    if (quick && write) || (!quick && !no_write) {
        let path = repo.join("BENCHMARKS.md");
        report::update_file(&path, &machine, mode, &sections)?;
        println!("wrote {}", path.display());
    } else {
        println!("BENCHMARKS.md not written ({mode} run; see --write / --no-write)");
    }
    Ok(())
}

/// `user`'s maildir on the rig, created through a first IMAP login.
pub fn mailbox_for(ctx: &Ctx, user: &str) -> Result<PathBuf> {
    ctx.rt
        .block_on(imapraw::create_mailbox(ctx.rig.imap_port(), user))?;
    let dir = ctx.rig.maildir_path(user);
    if !dir.join("new").is_dir() {
        bail!("Dovecot did not create {}", dir.display());
    }
    Ok(dir)
}

/// A fresh, empty directory under the run's scratch space.
pub fn fresh_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    let d = parent.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn key_of(name: &str) -> &'static str {
    match name {
        "ingest" => "ingest",
        "ack" => "ack",
        "memory" => "memory",
        "startup" => "startup",
        _ => "search",
    }
}

fn title_of(name: &str) -> &'static str {
    match name {
        "ingest" => ingest::TITLE,
        "ack" => ack::TITLE,
        "memory" => memory::TITLE,
        "startup" => startup::TITLE,
        _ => search::TITLE,
    }
}

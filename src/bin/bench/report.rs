//! Results as rows (figure, its baseline from the same run, the ratio, the
//! target and whether it was met), printed as a table and written into
//! BENCHMARKS.md between markers, so a run replaces only the sections it
//! measured and hand-written text around them stays.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::util::Machine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// No target: a figure for context.
    Info,
}

impl Verdict {
    fn mark(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**MISSED**",
            Verdict::Info => "",
        }
    }
    fn plain(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Info => "",
        }
    }
    pub fn from(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn info(metric: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            value: value.into(),
            baseline: String::new(),
            ratio: String::new(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    pub fn vs(
        metric: impl Into<String>,
        value: impl Into<String>,
        baseline: impl Into<String>,
        ratio: Option<f64>,
    ) -> Row {
        Row {
            metric: metric.into(),
            value: value.into(),
            baseline: baseline.into(),
            ratio: ratio.map(ratio_text).unwrap_or_default(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    pub fn target(mut self, target: impl Into<String>, ok: bool) -> Row {
        self.target = target.into();
        self.verdict = Verdict::from(ok);
        self
    }
}

pub fn ratio_text(r: f64) -> String {
    if !r.is_finite() {
        "n/a".into()
    } else if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.3}x")
    }
}

/// One scenario's results.
#[derive(Debug, Clone)]
pub struct Section {
    pub key: &'static str,
    pub title: &'static str,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub elapsed: Duration,
    pub load_before: String,
}

impl Section {
    pub fn new(key: &'static str, title: &'static str) -> Section {
        Section {
            key,
            title,
            rows: Vec::new(),
            notes: Vec::new(),
            elapsed: Duration::ZERO,
            load_before: Machine::load_now(),
        }
    }

    pub fn row(&mut self, r: Row) {
        self.rows.push(r);
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn misses(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Missed)
            .count()
    }

    /// The table for a terminal.
    pub fn print(&self) {
        let header = ["metric", "ticketd", "baseline", "ratio", "target", ""];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.metric.clone(),
                    r.value.clone(),
                    r.baseline.clone(),
                    r.ratio.clone(),
                    r.target.clone(),
                    r.verdict.plain().to_string(),
                ]
            })
            .collect();
        let mut width = header.map(|h| h.chars().count());
        for c in &cells {
            for (w, v) in width.iter_mut().zip(c) {
                *w = (*w).max(v.chars().count());
            }
        }
        println!(
            "\n== {} ({:.0} s) ==",
            self.title,
            self.elapsed.as_secs_f64()
        );
        let line = |c: &[String]| {
            let mut s = String::new();
            for (i, v) in c.iter().enumerate() {
                let pad = width[i].saturating_sub(v.chars().count());
                let _ = write!(s, "{v}{}  ", " ".repeat(pad));
            }
            println!("{}", s.trim_end());
        };
        line(&header.map(String::from));
        line(&width.map(|w| "-".repeat(w)));
        for c in &cells {
            line(c);
        }
        for n in &self.notes {
            println!("  * {n}");
        }
    }

    fn markdown(&self, machine: &Machine, mode: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {}\n", self.title);
        let _ = writeln!(
            s,
            "_{mode} run of {}, commit `{}`, load average before: {}; took {:.0} s._\n",
            machine.date,
            machine.commit,
            self.load_before,
            self.elapsed.as_secs_f64()
        );
        s.push_str("| metric | ticketd | baseline (same run) | ratio | target | |\n");
        s.push_str("|---|---:|---:|---:|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.metric,
                r.value,
                r.baseline,
                r.ratio,
                r.target,
                r.verdict.mark()
            );
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

const ORDER: [&str; 6] = ["machine", "ingest", "ack", "memory", "startup", "search"];

fn markers(key: &str) -> (String, String) {
    (
        format!("<!-- bench:{key} -->"),
        format!("<!-- /bench:{key} -->"),
    )
}

const PREAMBLE: &str = "# Benchmarks\n\n\
Measured with `cargo build --release && cargo run --release --bin bench -- [ingest|ack|memory|startup|search ...] [--quick]`,\n\
which starts its own Dovecot + Postfix rig on loopback (as root), generates the mail and the\n\
stores it needs (seeded, deterministic), and runs the release binary `target/release/ticketd`.\n\
Every figure is compared with a baseline measured in the same run on the same machine, because\n\
these machines are shared and noisy; misses are listed as they are.\n\
\n\
The sections between `<!-- bench:... -->` markers are rewritten by the bench (a full run writes\n\
them; `--quick` only with `--write`); everything outside the markers is kept.\n";

/// Writes `sections` (and the machine block) into the file at `path`.
pub fn update_file(
    path: &Path,
    machine: &Machine,
    mode: &str,
    sections: &[Section],
) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| {
        let mut t = PREAMBLE.to_string();
        for key in ORDER {
            let (a, b) = markers(key);
            let _ = write!(t, "\n{a}\n_Not measured yet._\n{b}\n");
        }
        t
    });
    let machine_block = format!(
        "## Machine\n\n- {}\n- last written by a {mode} run of {}, commit `{}`\n",
        machine.describe(),
        machine.date,
        machine.commit
    );
    let mut blocks: Vec<(&str, String)> = vec![("machine", machine_block)];
    for s in sections {
        blocks.push((s.key, s.markdown(machine, mode)));
    }
    for (key, body) in blocks {
        let (a, b) = markers(key);
        let replacement = format!("{a}\n{body}{b}");
        match (text.find(&a), text.find(&b)) {
            (Some(i), Some(j)) if j > i => {
                text.replace_range(i..j + b.len(), &replacement);
            }
            _ => {
                let _ = write!(text, "\n{replacement}\n");
            }
        }
    }
    std::fs::write(path, text)
}

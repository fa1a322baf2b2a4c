//! The golden .eml corpus: every file under `tests/fixtures/` goes through
//! `ticketd ingest` and what `ticketd export --jsonl` then says about it is
//! compared with the expected outcome stored beside it. A new corner case is
//! a new file pair, never new test code.
//!
//! Layout (see `tests/fixtures/README.md` for the keys):
//!
//! - `single/NAME.eml` + `single/NAME.json`: ingested into a fresh store.
//! - `threads/SCENARIO/NN-NAME.eml` + `NN-NAME.json`: ingested in file-name
//!   order into one store per scenario; `NN-NAME.cmd` is one line of
//!   `ticketd` arguments run against that store instead. In a thread `.eml`,
//!   `__ACK_N__` becomes the Message-ID of the acknowledgement that step N
//!   caused.
//!
//! Every mismatch is printed (file, key, expected, actual) and the test fails
//! once at the end with all of them, so one run shows the whole picture.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::{Datelike, NaiveDate};
use serde_json::{Map, Value};

/// Keys of an expected-outcome file that the harness computes itself; any
/// other key must be a field of the export record and is compared exactly.
const DERIVED_KEYS: &[&str] = &[
    "about",
    "message_id",
    "attachments",
    "attachment_names",
    "attachment_types",
    "attachment_sha256",
    "ack",
    "duplicate",
    "text_contains",
    "text_excludes",
    "attached_text_contains",
    "ticket_status",
    "problems_contains",
];

/// Date keys, which may be written `*-MM-DD`: the most recent such day up
/// to the day the test runs (for "gekocht op 12 november" without a year).
const DATE_KEYS: &[&str] = &["purchase_date", "delivery_date"];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Debug)]
struct Failure {
    file: PathBuf,
    key: String,
    expected: String,
    actual: String,
}

impl Failure {
    fn new(file: &Path, key: &str, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Failure {
            file: file.to_path_buf(),
            key: key.to_string(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self
            .file
            .strip_prefix(fixtures_dir())
            .unwrap_or(&self.file)
            .display();
        write!(
            f,
            "{file}: `{}`: expected {}, actual {}",
            self.key, self.expected, self.actual
        )
    }
}

/// One fresh store with its config, in a temporary directory.
struct Store {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Store {
    fn new() -> Store {
        // The store fsyncs every blob and commit; on tmpfs that costs nothing,
        // which keeps a hundred fresh stores quick. TMPDIR still wins.
        let shm = Path::new("/dev/shm");
        let dir = if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
            tempfile::tempdir_in(shm).or_else(|_| tempfile::tempdir())
        } else {
            tempfile::tempdir()
        }
        .expect("temporary directory");
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let text = format!(
            r#"[smtp]
host = "127.0.0.1"
port = 25
tls = "none"
from_address = "support@example.test"
from_name = "Whatnot Support"

[store]
data_dir = "{data}"

[tickets]
templates_dir = "{templates}"
time_zone = "Europe/Amsterdam"
"#,
            data = dir.path().join("data").display(),
            templates = templates.display(),
        );
        let config = dir.path().join("ticketd.toml");
        std::fs::write(&config, text).expect("write config");
        Store { dir, config }
    }

    /// Runs `ticketd` with these arguments; stdout on success.
    fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String, String> {
        let out = Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("TICKETD_LOG", "warn")
            .output()
            .map_err(|e| format!("cannot run ticketd: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}; stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn export(&self) -> Result<Vec<Value>, String> {
        let out = self.run(&["export", "--jsonl"])?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("export line `{l}`: {e}")))
            .collect()
    }

    fn show(&self, ticket: &str) -> Result<Value, String> {
        let out = self.run(&["show", ticket, "--json"])?;
        serde_json::from_str(&out).map_err(|e| format!("show {ticket} --json: {e}"))
    }
}

/// One step of a scenario: a mail with its expectation, or a command.
#[derive(Debug)]
enum Step {
    Mail { eml: PathBuf, json: PathBuf },
    Cmd(PathBuf),
}

#[derive(Debug)]
enum Job {
    Single { eml: PathBuf, json: PathBuf },
    Thread { steps: Vec<(u32, Step)> },
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    v.sort();
    v
}

fn ext(p: &Path) -> &str {
    p.extension().and_then(|e| e.to_str()).unwrap_or("")
}

/// Files that may sit in a fixture directory without being fixtures.
fn is_notes(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ext(p) == "md" || name.starts_with('.')
}

/// Finds every fixture, and every file that would otherwise be skipped.
fn collect() -> (Vec<Job>, Vec<Failure>) {
    let mut jobs = Vec::new();
    let mut bad = Vec::new();
    let layout = |p: &Path, what: &str| Failure::new(p, "layout", what, "missing or stray file");

    let single = fixtures_dir().join("single");
    for p in sorted_entries(&single) {
        match ext(&p) {
            "eml" => {
                let json = p.with_extension("json");
                if json.is_file() {
                    jobs.push(Job::Single { eml: p, json });
                } else {
                    bad.push(layout(&p, "an .eml with a .json beside it"));
                }
            }
            "json" if p.with_extension("eml").is_file() => {}
            _ if is_notes(&p) => {}
            _ => bad.push(layout(&p, "only NAME.eml + NAME.json in single/")),
        }
    }

    let threads = fixtures_dir().join("threads");
    for dir in sorted_entries(&threads) {
        if !dir.is_dir() {
            if !is_notes(&dir) {
                bad.push(layout(&dir, "only scenario directories in threads/"));
            }
            continue;
        }
        let mut steps: Vec<(u32, Step)> = Vec::new();
        for p in sorted_entries(&dir) {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let number = name
                .split(['-', '.'])
                .next()
                .and_then(|n| n.parse::<u32>().ok());
            let step = match ext(&p) {
                "eml" if p.with_extension("json").is_file() => Step::Mail {
                    json: p.with_extension("json"),
                    eml: p.clone(),
                },
                "eml" => {
                    bad.push(layout(&p, "an .eml with a .json beside it"));
                    continue;
                }
                "cmd" if p.with_extension("json").is_file() => {
                    bad.push(layout(&p, "a .cmd step without a .json"));
                    continue;
                }
                "cmd" => Step::Cmd(p.clone()),
                "json" if p.with_extension("eml").is_file() => continue,
                "json" if p.with_extension("cmd").is_file() => continue,
                _ if is_notes(&p) => continue,
                _ => {
                    bad.push(layout(&p, "only NN-NAME.eml + .json or NN-NAME.cmd"));
                    continue;
                }
            };
            match number {
                Some(n) if !steps.iter().any(|(m, _)| *m == n) => steps.push((n, step)),
                Some(_) => bad.push(layout(&p, "a step number used once per scenario")),
                None => bad.push(layout(&p, "a step name starting with its number, NN-")),
            }
        }
        if steps.is_empty() {
            bad.push(layout(&dir, "at least one step"));
        } else {
            jobs.push(Job::Thread { steps });
        }
    }
    (jobs, bad)
}

fn show_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}"))
}

/// `*-MM-DD`: the most recent such day up to today, in the configured zone.
fn resolve_date(expected: &str) -> Option<String> {
    let md = expected.strip_prefix("*-")?;
    let (m, d) = md.split_once('-')?;
    let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Amsterdam)
        .date_naive();
    let this = NaiveDate::from_ymd_opt(today.year(), m, d)?;
    let day = if this <= today {
        this
    } else {
        NaiveDate::from_ymd_opt(today.year() - 1, m, d)?
    };
    Some(day.to_string())
}

/// Strings from a string-or-array value.
fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

fn read_expected(json: &Path) -> Result<Map<String, Value>, Failure> {
    let text = std::fs::read_to_string(json)
        .map_err(|e| Failure::new(json, "json", "a readable file", e.to_string()))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Failure::new(json, "json", "an object", show_json(&other))),
        Err(e) => Err(Failure::new(json, "json", "valid JSON", e.to_string())),
    }
}

/// What a step needs to know about the store around it.
struct Checked<'a> {
    json: &'a Path,
    expected: &'a Map<String, Value>,
    before: &'a [Value],
    after: &'a [Value],
    store: &'a Store,
}

/// Finds the export record of the message an expectation is about.
fn find_record<'a>(c: &Checked<'a>) -> Result<&'a Value, Failure> {
    let Some(id) = c.expected.get("message_id").and_then(Value::as_str) else {
        return Err(Failure::new(
            c.json,
            "message_id",
            "a \"message_id\" string (or \"sha256\")",
            "none",
        ));
    };
    let ids = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .filter_map(|r| r["message_id"].as_str().map(str::to_string))
            .collect()
    };
    let found = if id == "sha256" {
        let old: HashSet<String> = ids(c.before).into_iter().collect();
        let hashed = |r: &&Value| {
            r["message_id"]
                .as_str()
                .is_some_and(|m| m.starts_with("sha256:"))
        };
        c.after
            .iter()
            .filter(hashed)
            .find(|r| !old.contains(r["message_id"].as_str().unwrap_or("")))
            .or_else(|| c.after.iter().rev().find(hashed))
    } else {
        c.after.iter().find(|r| r["message_id"] == id)
    };
    found.ok_or_else(|| {
        Failure::new(
            c.json,
            "message_id",
            format!("a record for `{id}`"),
            format!("records {:?}", ids(c.after)),
        )
    })
}

/// Compares one expectation with the export; returns the record it matched.
fn check(c: &Checked<'_>, failures: &mut Vec<Failure>) -> Option<Value> {
    let record = match find_record(c) {
        Ok(r) => r,
        Err(f) => {
            failures.push(f);
            return None;
        }
    };
    let fail =
        |key: &str, expected: String, actual: String| Failure::new(c.json, key, expected, actual);
    let mut shown: Option<Result<Value, String>> = None;
    let mut message_view = |key: &str| -> Result<Value, Failure> {
        let Some(ticket) = record["ticket"].as_str() else {
            return Err(fail(key, "a filed message".into(), "ticket null".into()));
        };
        let view = shown
            .get_or_insert_with(|| c.store.show(ticket))
            .clone()
            .map_err(|e| fail(key, format!("`show {ticket} --json`"), e))?;
        if key == "ticket_status" {
            return Ok(view);
        }
        view["messages"]
            .as_array()
            .and_then(|ms| {
                ms.iter()
                    .find(|m| m["message_id"] == record["message_id"])
                    .cloned()
            })
            .ok_or_else(|| {
                fail(
                    key,
                    format!("message {} in `show {ticket}`", record["message_id"]),
                    "not there".into(),
                )
            })
    };

    for (key, want) in c.expected {
        match key.as_str() {
            "about" | "message_id" => {}
            "duplicate" => {
                let want = want.as_bool() == Some(true);
                let grew = c.after.len() != c.before.len();
                if want == grew {
                    failures.push(fail(
                        key,
                        if want {
                            format!("no new record ({} before)", c.before.len())
                        } else {
                            "a new record".into()
                        },
                        format!("{} records after", c.after.len()),
                    ));
                }
            }
            "attachments" => {
                let n = record["attachments"].as_array().map_or(0, Vec::len);
                if want.as_u64() != Some(n as u64) {
                    failures.push(fail(key, show_json(want), n.to_string()));
                }
            }
            "attachment_names" | "attachment_types" | "attachment_sha256" => {
                let field = match key.as_str() {
                    "attachment_names" => "filename",
                    "attachment_types" => "content_type",
                    _ => "sha256",
                };
                let values: Vec<Value> = record["attachments"]
                    .as_array()
                    .map(|a| a.iter().map(|x| x[field].clone()).collect())
                    .unwrap_or_default();
                if want.as_array() != Some(&values) {
                    failures.push(fail(key, show_json(want), show_json(&Value::Array(values))));
                }
            }
            "ack" => {
                let ack = &record["ack"];
                let queued = ack["message_id"].is_string();
                let ok = match want {
                    Value::Bool(true) => queued,
                    Value::Bool(false) => !queued,
                    Value::String(s) => ack["skipped"].as_str().is_some_and(|r| r.contains(s)),
                    _ => false,
                };
                if !ok {
                    let expected = match want {
                        Value::Bool(true) => "an acknowledgement queued".to_string(),
                        Value::Bool(false) => "no acknowledgement".to_string(),
                        other => format!("skipped containing {}", show_json(other)),
                    };
                    failures.push(fail(key, expected, show_json(ack)));
                }
            }
            "problems_contains" => {
                let problems = record["problems"].as_str().unwrap_or("");
                for s in strings(want).unwrap_or_default() {
                    if !problems.contains(&s) {
                        failures.push(fail(
                            key,
                            show_json(&Value::String(s)),
                            show_json(&record["problems"]),
                        ));
                    }
                }
            }
            "text_contains" | "text_excludes" | "attached_text_contains" => match message_view(key)
            {
                Ok(m) => {
                    let field = if key == "attached_text_contains" {
                        "attached_text"
                    } else {
                        "text"
                    };
                    let text = m[field].as_str().unwrap_or("");
                    let contains = key != "text_excludes";
                    for s in strings(want).unwrap_or_default() {
                        if text.contains(&s) != contains {
                            let verb = if contains {
                                "text with"
                            } else {
                                "text without"
                            };
                            failures.push(fail(key, format!("{verb} {s:?}"), format!("{text:?}")));
                        }
                    }
                }
                Err(f) => failures.push(f),
            },
            "ticket_status" => match message_view(key) {
                Ok(view) => {
                    if view["status"] != *want {
                        failures.push(fail(key, show_json(want), show_json(&view["status"])));
                    }
                }
                Err(f) => failures.push(f),
            },
            _ => {
                let Some(actual) = record.get(key) else {
                    failures.push(fail(
                        key,
                        "a key of the export record".into(),
                        "no such key".into(),
                    ));
                    continue;
                };
                let resolved = match want.as_str() {
                    Some(s) if DATE_KEYS.contains(&key.as_str()) && s.starts_with("*-") => {
                        resolve_date(s).map(Value::String)
                    }
                    _ => None,
                };
                let want = resolved.as_ref().unwrap_or(want);
                if actual != want {
                    failures.push(fail(key, show_json(want), show_json(actual)));
                }
            }
        }
    }
    Some(record.clone())
}

fn ingest(store: &Store, eml: &Path, file: &Path, failures: &mut Vec<Failure>) -> bool {
    match store.run(&[std::ffi::OsStr::new("ingest"), eml.as_os_str()]) {
        Ok(_) => true,
        Err(e) => {
            failures.push(Failure::new(file, "ingest", "exit 0", e));
            false
        }
    }
}

fn export_or_fail(store: &Store, file: &Path, failures: &mut Vec<Failure>) -> Option<Vec<Value>> {
    store
        .export()
        .map_err(|e| failures.push(Failure::new(file, "export", "exit 0", e)))
        .ok()
}

fn run_single(eml: &Path, json: &Path) -> Vec<Failure> {
    let mut failures = Vec::new();
    let expected = match read_expected(json) {
        Ok(e) => e,
        Err(f) => return vec![f],
    };
    let store = Store::new();
    if !ingest(&store, eml, eml, &mut failures) {
        return failures;
    }
    let Some(after) = export_or_fail(&store, eml, &mut failures) else {
        return failures;
    };
    check(
        &Checked {
            json,
            expected: &expected,
            before: &[],
            after: &after,
            store: &store,
        },
        &mut failures,
    );
    failures
}

/// Replaces `__ACK_N__` with the Message-ID of step N's acknowledgement.
fn fill_placeholders(
    raw: &[u8],
    acks: &BTreeMap<u32, String>,
    file: &Path,
) -> Result<Vec<u8>, Failure> {
    const OPEN: &[u8] = b"__ACK_";
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(OPEN) {
            let digits = raw[i + OPEN.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let end = i + OPEN.len() + digits;
            if digits > 0 && raw[end..].starts_with(b"__") {
                let n: u32 = std::str::from_utf8(&raw[i + OPEN.len()..end])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let Some(id) = acks.get(&n) else {
                    return Err(Failure::new(
                        file,
                        &format!("__ACK_{n}__"),
                        format!("an acknowledgement caused by step {n}"),
                        format!("acks known for steps {:?}", acks.keys().collect::<Vec<_>>()),
                    ));
                };
                out.extend_from_slice(id.as_bytes());
                i = end + 2;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    Ok(out)
}

fn run_thread(steps: &[(u32, Step)]) -> Vec<Failure> {
    let mut failures = Vec::new();
    let store = Store::new();
    let mut acks: BTreeMap<u32, String> = BTreeMap::new();
    let mut before: Vec<Value> = Vec::new();
    for (number, step) in steps {
        match step {
            Step::Cmd(cmd) => {
                let line = std::fs::read_to_string(cmd).unwrap_or_default();
                let args: Vec<&str> = line
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .unwrap_or("")
                    .split_whitespace()
                    .collect();
                if args.is_empty() {
                    failures.push(Failure::new(cmd, "cmd", "one line of arguments", "empty"));
                } else if let Err(e) = store.run(&args) {
                    failures.push(Failure::new(
                        cmd,
                        "cmd",
                        format!("`ticketd {}` to succeed", args.join(" ")),
                        e,
                    ));
                }
            }
            Step::Mail { eml, json } => {
                let expected = match read_expected(json) {
                    Ok(e) => e,
                    Err(f) => {
                        failures.push(f);
                        continue;
                    }
                };
                let raw = std::fs::read(eml).expect("read fixture");
                let filled = match fill_placeholders(&raw, &acks, eml) {
                    Ok(r) => r,
                    Err(f) => {
                        failures.push(f);
                        continue;
                    }
                };
                let file = store.dir.path().join(format!("step-{number}.eml"));
                std::fs::write(&file, filled).expect("write step");
                if !ingest(&store, &file, eml, &mut failures) {
                    continue;
                }
                let Some(after) = export_or_fail(&store, eml, &mut failures) else {
                    continue;
                };
                let record = check(
                    &Checked {
                        json,
                        expected: &expected,
                        before: &before,
                        after: &after,
                        store: &store,
                    },
                    &mut failures,
                );
                if let Some(id) = record
                    .as_ref()
                    .and_then(|r| r["ack"]["message_id"].as_str())
                {
                    acks.insert(*number, id.to_string());
                }
                before = after;
            }
        }
    }
    failures
}

#[test]
fn every_fixture_matches_its_expected_outcome() {
    let started = std::time::Instant::now();
    let (jobs, mut failures) = collect();
    let mails = jobs
        .iter()
        .map(|j| match j {
            Job::Single { .. } => 1,
            Job::Thread { steps, .. } => steps
                .iter()
                .filter(|(_, s)| matches!(s, Step::Mail { .. }))
                .count(),
        })
        .sum::<usize>();

    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::new());
    // Mostly waiting on child processes: more workers than cores pays off.
    let workers = std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).clamp(4, 16));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let f = match job {
                    Job::Single { eml, json } => run_single(eml, json),
                    Job::Thread { steps } => run_thread(steps),
                };
                found.lock().unwrap().extend(f);
            });
        }
    });
    failures.extend(found.into_inner().unwrap());
    failures.sort_by(|a, b| a.file.cmp(&b.file).then(a.key.cmp(&b.key)));

    for f in &failures {
        println!("FAIL {f}");
    }
    println!(
        "{} fixture mails in {} jobs, {} failure(s), {:.1?}",
        mails,
        jobs.len(),
        failures.len(),
        started.elapsed()
    );
    if !failures.is_empty() {
        let mut summary = String::new();
        for f in &failures {
            let _ = writeln!(summary, "  {f}");
        }
        panic!("{} fixture mismatch(es):\n{summary}", failures.len());
    }
}

#[test]
fn expected_outcome_files_use_known_keys() {
    // Keys the export does not have are caught at run time; this catches
    // derived keys with a wrong value type before anything runs.
    let (jobs, _) = collect();
    let mut bad = Vec::new();
    let jsons = jobs.iter().flat_map(|j| match j {
        Job::Single { json, .. } => vec![json.clone()],
        Job::Thread { steps, .. } => steps
            .iter()
            .filter_map(|(_, s)| match s {
                Step::Mail { json, .. } => Some(json.clone()),
                Step::Cmd(_) => None,
            })
            .collect(),
    });
    for json in jsons {
        let Ok(map) = read_expected(&json) else {
            bad.push(format!("{}: not a JSON object", json.display()));
            continue;
        };
        for (key, v) in &map {
            let ok = match key.as_str() {
                "about" | "message_id" => v.is_string(),
                "duplicate" => v.is_boolean(),
                "attachments" => v.is_u64(),
                "attachment_names" | "attachment_types" | "attachment_sha256" => v.is_array(),
                "ack" => v.is_boolean() || v.is_string(),
                "ticket_status" => v.is_string(),
                k if DERIVED_KEYS.contains(&k) => strings(v).is_some(),
                _ => true,
            };
            if !ok {
                bad.push(format!("{}: `{key}` has the wrong type", json.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

//! Small tools the scenarios share: a seeded random generator, base64,
//! percentiles, number formatting, /proc readings (RSS, CPU time) and the
//! description of the machine the figures were taken on.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// SplitMix64: fast, seedable and good enough for test data; the same seed
/// always gives the same mailbox and the same store.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// A generator for item `n` of stream `seed`, independent of any other n.
    pub fn for_item(seed: u64, n: u64) -> Rng {
        let mut r = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ n);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Log-uniform in [lo, hi]: small values common, large ones rare, as
    /// with photo sizes.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        (l + (h - l) * self.f64()).exp().round() as u64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }

    /// `len` letters and digits with both cases present, like a Whatnot
    /// order number.
    pub fn alnum(&mut self, len: usize) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        loop {
            let s: String = (0..len)
                .map(|_| ALNUM[self.below(ALNUM.len() as u64) as usize] as char)
                .collect();
            let upper = s.bytes().any(|b| b.is_ascii_uppercase());
            let lower = s.bytes().any(|b| b.is_ascii_lowercase());
            if upper && lower {
                return s;
            }
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 with 76-character lines ending in LF, as a mail client writes an
/// attachment (LF because that is how Dovecot stores delivered mail).
pub fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() / 57 * 78 + 80);
    for line in data.chunks(57) {
        for c in line.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            out.push(B64[(n >> 18) as usize & 63]);
            out.push(B64[(n >> 12) as usize & 63]);
            out.push(if c.len() > 1 {
                B64[(n >> 6) as usize & 63]
            } else {
                b'='
            });
            out.push(if c.len() > 2 {
                B64[n as usize & 63]
            } else {
                b'='
            });
        }
        out.push(b'\n');
    }
}

/// The q-th percentile (0..=100) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p95, p99 and max of some latencies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    pub n: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Spread {
    pub fn of(samples: &[Duration]) -> Spread {
        let mut s = samples.to_vec();
        s.sort_unstable();
        Spread {
            n: s.len(),
            p50: percentile(&s, 50.0),
            p95: percentile(&s, 95.0),
            p99: percentile(&s, 99.0),
            max: s.last().copied().unwrap_or_default(),
        }
    }
}

/// A duration in the unit that reads best.
pub fn dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 100.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

pub fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m >= 100.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

/// A rate with at most 3 significant digits.
pub fn rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Reads `VmHWM` and `VmRSS` (bytes) of a live process.
pub fn mem_of(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// `RssAnon` and `RssFile` (bytes) of a live process: heap versus mapped
/// files, to tell where a large RSS comes from.
pub fn rss_split(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("RssAnon:")?, field("RssFile:")?))
}

/// Flushes every filesystem (sync(1)), so a measured run does not pay for
/// writeback left over from the one before.
pub fn settle_disk() {
    let _ = Command::new("sync").status();
}

/// User + system CPU time of a live process so far.
pub fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of the full line, utime 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks(),
    ))
}

/// CPU time spent in one window of wall time: by the process measured
/// and by the whole machine (every core and process, the IMAP server and
/// the kernel's writeback included).
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub own: Duration,
    pub machine: Duration,
    pub window: Duration,
}

impl CpuUse {
    /// What the rest of the machine spent in the window.
    pub fn rest(&self) -> Duration {
        self.machine.saturating_sub(self.own)
    }

    /// How busy the machine's cores were on average, 0 to 1.
    pub fn busy(&self) -> f64 {
        self.machine.as_secs_f64() / (self.window.as_secs_f64() * cores() as f64).max(1e-9)
    }
}

/// The busy CPU time of the whole machine since boot, all cores together
/// (user, nice, system, irq, softirq and steal of /proc/stat's first line;
/// guest time is counted in user already).
pub fn machine_busy() -> Option<Duration> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(&stat)
}

fn parse_machine_busy(stat: &str) -> Option<Duration> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(Duration::from_secs_f64(busy as f64 / clock_ticks()))
}

/// The cores /proc/stat counts (its `cpuN` lines): what `machine_busy`
/// adds up.
pub fn cores() -> usize {
    fs::read_to_string("/proc/stat")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux configuration this runs on.
    100.0
}

/// Sends a signal by PID with kill(1): std can only SIGKILL its children.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// What the figures were measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total: u64,
    pub kernel: String,
    pub load: String,
    pub date: String,
    pub commit: String,
}

impl Machine {
    pub fn detect(repo: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mem_total = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let load = fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(repo)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let mut commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
        // The report itself, rewritten by the last run, is no change.
        let mut changed = changed_paths(
            &git(&["status", "--porcelain", "--untracked-files=no"]).unwrap_or_default(),
        );
        changed.retain(|p| p != "BENCHMARKS.md");
        // Changes to the bench do not change what is measured.
        let bench_only = changed.iter().all(|p| p.starts_with("src/bin/bench"));
        if !changed.is_empty() {
            commit.push_str(if bench_only {
                " (uncommitted changes to the bench only)"
            } else {
                " + uncommitted changes"
            });
        }
        let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
        Machine {
            cpus,
            cpu_model,
            mem_total,
            kernel,
            load,
            date,
            commit,
        }
    }

    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{} × {}, {:.1} GiB RAM, Linux {}",
            self.cpus,
            self.cpu_model,
            self.mem_total as f64 / (1u64 << 30) as f64,
            self.kernel
        );
        s
    }

    /// Loadavg right now (other work on the machine skews figures).
    pub fn load_now() -> String {
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// uid and gid of a system user, from /etc/passwd.
pub fn system_user(name: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

/// Bytes used by the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The paths `git status --porcelain` names ("XY path" lines; trimmed
/// output may have lost the leading space of " M path").
fn changed_paths(status: &str) -> Vec<String> {
    status
        .lines()
        .filter_map(|l| l.trim_start().split_once(' '))
        .map(|(_, path)| path.trim_start().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_paths_survive_a_trimmed_first_line() {
        assert_eq!(
            changed_paths("M BENCHMARKS.md\n M src/ingest.rs\nMM src/bin/bench/util.rs"),
            ["BENCHMARKS.md", "src/ingest.rs", "src/bin/bench/util.rs"]
        );
    }

    #[test]
    fn machine_busy_leaves_idle_and_iowait_out() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat = "cpu  100 20 30 5000 400 5 6 7 50 0\ncpu0 50 10 15 2500 200 2 3 3 25 0\n";
        assert_eq!(parse_machine_busy(stat), Some(Duration::from_millis(1680)));
        assert_eq!(parse_machine_busy("cpu0 1 2 3\n"), None);
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        let mut out = Vec::new();
        base64_lines(b"Man", &mut out);
        assert_eq!(out, b"TWFu\n");
        out.clear();
        base64_lines(b"Ma", &mut out);
        assert_eq!(out, b"TWE=\n");
        out.clear();
        base64_lines(b"M", &mut out);
        assert_eq!(out, b"TQ==\n");
        out.clear();
        base64_lines(&[0u8; 58], &mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
        assert_eq!(out.iter().position(|&b| b == b'\n'), Some(76));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn order_numbers_have_both_cases() {
        let mut r = Rng::new(7);
        for _ in 0..100 {
            let s = r.alnum(22);
            assert_eq!(s.len(), 22);
            assert!(s.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(s.bytes().any(|b| b.is_ascii_lowercase()));
        }
    }
}

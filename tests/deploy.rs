//! The shipped systemd unit: systemd itself must accept it, and its
//! hardening must rate "OK" or better in `systemd-analyze security`.

use std::path::Path;
use std::process::Command;

fn unit_with_binary(dir: &Path) -> std::path::PathBuf {
    // verify checks that ExecStart's binary exists: point it at this build.
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ticketd.service"),
    )
    .unwrap();
    let unit = unit.replace("/usr/bin/ticketd", env!("CARGO_BIN_EXE_ticketd"));
    let path = dir.join("ticketd.service");
    std::fs::write(&path, unit).unwrap();
    path
}

fn have_systemd_analyze() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("systemd-analyze is not installed; the unit is not checked");
    }
    found
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_binary(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("ticketd.service:"),
        "warnings about the unit: {stderr}"
    );
}

#[test]
fn unit_hardening_rates_ok_or_better() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_binary(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating in: {text}"));
    let score: f64 = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no score in: {line}"));
    assert!(line.contains(" OK") || line.contains("SAFE"), "{line}");
    assert!(score <= 2.0, "exposure {score} (README says 1.2): {line}");
}

//! `ticketd check` against a real Dovecot and Postfix: one `ok:` line per
//! check and exit 0 when all is well (plain on loopback, and implicit TLS
//! with the rig's CA); otherwise a non-zero exit at the first failure, with
//! a message that says what to fix: a wrong password, a certificate from
//! another CA, a mailbox that does not exist, a data directory the service
//! user cannot write, a template with a syntax error (file and line), an
//! SMTP server that does not answer.
//!
//! The data-directory test runs `ticketd check` as `nobody` (via
//! `setpriv`): as root every directory is writable.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{setup, templates_dir, Imap};
use ticketd::rig::MailRig;

/// `ticketd check` with `config`; (exit ok, stdout, stderr).
fn check(config: &Path) -> (bool, String, String) {
    let out = common::ticketd(config, &["check"]);
    split(out)
}

fn split(out: Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a failed check: the `ok:` lines before it were printed, the
/// failing one was not, and the error names every one of `fix`.
fn assert_fails(
    (ok, stdout, stderr): &(bool, String, String),
    passed: &[&str],
    not: &str,
    fix: &[&str],
) {
    assert!(
        !ok,
        "check should fail; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for p in passed {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("ok: {p}"))),
            "no `ok: {p}` line before the failure:\n{stdout}"
        );
    }
    assert!(
        !stdout.lines().any(|l| l.starts_with(&format!("ok: {not}"))),
        "`{not}` should not pass:\n{stdout}"
    );
    for f in fix {
        assert!(stderr.contains(f), "the error should say {f:?}:\n{stderr}");
    }
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn check_passes_against_the_rig_plain_and_with_implicit_tls() {
    let rig = MailRig::start().unwrap();
    for mode in [Imap::Plain, Imap::Implicit] {
        let s = setup(&rig, mode, None);
        let (ok, stdout, stderr) = check(&s.config);
        assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        for want in ["config", "templates", "store", "IMAP", "SMTP"] {
            assert_eq!(
                lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("ok: {want}")))
                    .count(),
                1,
                "one `ok: {want}` line expected:\n{stdout}"
            );
        }
        assert!(
            lines.iter().all(|l| l.starts_with("ok: ")),
            "only ok lines expected:\n{stdout}"
        );
        assert!(stdout.contains("mailbox INBOX"), "{stdout}");
        assert!(
            stdout.contains(&format!("SMTP 127.0.0.1:{}", rig.smtp_port())),
            "{stdout}"
        );
    }
}

#[test]
fn wrong_password_fails_the_imap_check() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    fs::write(s.dir.path().join("password"), "not-the-password\n").unwrap();
    let result = check(&s.config);
    assert_fails(
        &result,
        &["config", "templates", "store"],
        "IMAP",
        &[
            "support@example.test",
            "check imap.username and the password",
        ],
    );
    assert!(!result.2.contains("not-the-password"), "{}", result.2);
}

#[test]
fn a_certificate_from_another_ca_fails_the_imap_check() {
    let rig = MailRig::start().unwrap();
    let other = MailRig::start().unwrap();
    for mode in [Imap::Implicit, Imap::Starttls] {
        let s = setup(&rig, mode, Some(other.ca_file()));
        assert_fails(
            &check(&s.config),
            &["config", "templates", "store"],
            "IMAP",
            &["not trusted", "set ca_file"],
        );
    }
}

#[test]
fn a_missing_mailbox_fails_the_imap_check() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    replace_in(
        &s.config,
        "poll_interval = 1\n",
        "poll_interval = 1\nmailbox = \"Nope\"\n",
    );
    assert_fails(
        &check(&s.config),
        &["config", "templates", "store"],
        "IMAP",
        &["`Nope`", "check imap.mailbox"],
    );
}

#[test]
fn smtp_not_answering_fails_the_smtp_check() {
    let mut rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    rig.stop_postfix();
    assert_fails(
        &check(&s.config),
        &["config", "templates", "store", "IMAP"],
        "SMTP",
        &[
            &format!("127.0.0.1:{}", rig.smtp_port()),
            "check host, port",
        ],
    );
}

/// A config with only a store and the templates: enough for the checks
/// that come before IMAP.
fn store_only_config(dir: &Path, data_dir: &Path, templates: &Path) -> PathBuf {
    let config = dir.join("ticketd.toml");
    fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{}\"\n\n[tickets]\ntemplates_dir = \"{}\"\n",
            data_dir.display(),
            templates.display()
        ),
    )
    .unwrap();
    config
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `ticketd check` as the unprivileged user `nobody`.
fn check_as_nobody(config: &Path) -> (bool, String, String) {
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .env("TICKETD_LOG", "info")
        .output()
        .expect("setpriv (util-linux) is needed to run a check as nobody");
    split(out)
}

/// The usual ways a service user cannot write its data directory: it
/// cannot be created (parent not writable), it exists but belongs to
/// someone else, or root made the database in it first (e.g. by running
/// `ticketd check` as root). Each must say which directory and how to fix it.
#[test]
fn a_data_dir_the_user_cannot_write_fails_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let parent = dir.path().join("readonly");
    fs::create_dir(&parent).unwrap();
    let data = parent.join("data");
    let config = store_only_config(dir.path(), &data, &templates_dir());
    chmod(&config, 0o644);

    // Runs as nobody at all? Otherwise the cases below prove nothing.
    let probe = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "id",
            "-u",
        ])
        .output()
        .expect("setpriv (util-linux) is needed to run a check as nobody");
    assert!(
        probe.status.success() && String::from_utf8_lossy(&probe.stdout).trim() != "0",
        "cannot switch to the user nobody: {}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let cases: [(&str, &dyn Fn()); 3] = [
        ("cannot be created", &|| chmod(&parent, 0o555)),
        ("belongs to root", &|| {
            chmod(&parent, 0o755);
            fs::create_dir(&data).unwrap();
        }),
        ("holds root's database", &|| {
            // As root, check creates the store, and it passes.
            let (ok, stdout, stderr) = check(&config);
            assert!(ok, "as root:\n{stdout}\n{stderr}");
        }),
    ];
    let mut problems = Vec::new();
    for (case, prepare) in cases {
        prepare();
        let (ok, stdout, stderr) = check_as_nobody(&config);
        let named = stderr.contains(&data.display().to_string());
        let fix = stderr.contains("owner or mode");
        if ok || !named || !fix || stdout.contains("ok: store") {
            problems.push(format!(
                "data dir {case}: exit ok={ok}, names the dir={named}, says `owner or mode`={fix}\n\
                 stdout: {stdout}stderr: {stderr}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_template_syntax_error_fails_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    for lang in ["nl", "en"] {
        fs::create_dir_all(templates.join(lang)).unwrap();
        for e in fs::read_dir(templates_dir().join(lang)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), templates.join(lang).join(e.file_name())).unwrap();
        }
    }
    let ack = templates.join("nl/ack.txt");
    let text = fs::read_to_string(&ack).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(3, "Bedankt {% for %}");
    fs::write(&ack, lines.join("\n")).unwrap();
    let config = store_only_config(dir.path(), &dir.path().join("data"), &templates);
    assert_fails(
        &check(&config),
        &["config"],
        "templates",
        &["nl/ack.txt", "line 4"],
    );
}

/// Before the first start on a mailbox that already holds mail, check says
/// how much will be filed and how much of it is old enough to get no
/// acknowledgement (`tickets.ack_max_age_days`); once filed, how much
/// waits.
#[test]
fn check_tells_what_the_first_pass_will_file_and_leave_unanswered() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let mail = |id: &str| {
        format!(
            "From: b@buyer.test\r\nTo: {}\r\nSubject: Vraag\r\nMessage-ID: <{id}@buyer.test>\r\n\r\nHallo.\r\n",
            common::SUPPORT
        )
        .into_bytes()
    };
    common::append_received_ago(&rig, &mail("old1"), chrono::Duration::days(40));
    common::append_received_ago(&rig, &mail("old2"), chrono::Duration::days(12));
    common::append_received_ago(&rig, &mail("new"), chrono::Duration::hours(2));
    let (ok, stdout, stderr) = check(&s.config);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("3 message(s) not read yet")
            && stdout.contains("2 of them received before")
            && stdout.contains("no acknowledgement"),
        "{stdout}"
    );
    let out = common::ticketd(&s.config, &["poll", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, stdout, _) = check(&s.config);
    assert!(ok);
    assert!(!stdout.contains("not read yet"), "{stdout}");
}

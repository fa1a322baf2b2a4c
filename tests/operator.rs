//! Operator commands that need no mail server: backup, stats, and config
//! errors that name their key.

use std::path::Path;
use std::process::{Command, Output};

fn ticketd(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// Runs ticketd, which must succeed; its standard output.
fn succeeds(config: &Path, args: &[&str]) -> String {
    let out = ticketd(config, args);
    assert!(
        out.status.success(),
        "ticketd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup(dir: &Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("ticketd.toml");
    std::fs::write(
        &config,
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = 25\ntls = \"none\"\nfrom_address = \"support@example.test\"\n\
             [store]\ndata_dir = \"data\"\n[tickets]\ntemplates_dir = \"{}\"\n{extra}",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("templates").display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn backup_is_a_consistent_copy_and_stats_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    for i in 0..3 {
        let eml = dir.path().join(format!("{i}.eml"));
        std::fs::write(
            &eml,
            format!("From: b{i}@buyer.test\r\nSubject: Vraag {i}\r\nMessage-ID: <q{i}@buyer.test>\r\n\r\nWaar is mijn pakket?\r\n"),
        )
        .unwrap();
        assert!(ticketd(&config, &["ingest", eml.to_str().unwrap()])
            .status
            .success());
    }
    let backup = dir.path().join("copy.sqlite3");
    let out = ticketd(&config, &["backup", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("blobs"),
        "tells what else to copy"
    );
    // Every buyer's mail is in it: only its owner may read it, even from
    // a shell whose umask would make new files world-readable.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "backup mode {mode:o}");
    }
    let again = ticketd(&config, &["backup", backup.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("will not overwrite"));
    // The copy is a store of its own with the same tickets.
    let copy_dir = dir.path().join("restored");
    std::fs::create_dir(&copy_dir).unwrap();
    std::fs::copy(&backup, copy_dir.join("ticketd.sqlite3")).unwrap();
    let restored = ticketd::store::Store::open(&copy_dir).unwrap();
    let n: i64 = restored
        .conn()
        .query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    // Never over an existing file.
    let again = ticketd(&config, &["backup", backup.to_str().unwrap()]);
    assert!(!again.status.success());

    let stats = ticketd(&config, &["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["tickets_open"], 3);
    assert_eq!(v["messages_in"], 3);
    assert_eq!(v["outbox"][0], serde_json::json!(["queued", 3]));
}

/// The daemon commits now and then while an operator backs up: the
/// backup still finishes (an online backup in steps starts over after
/// every commit of another connection, and never got to the end), and
/// a failed backup leaves no partial file behind.
#[test]
fn backup_finishes_while_the_store_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let data = dir.path().join("data");
    {
        let store = ticketd::store::Store::open(&data).unwrap();
        // About 100 MB of pages, so the copy takes many steps.
        store
            .conn()
            .execute_batch(
                "CREATE TABLE ballast (b BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25000)
                 INSERT INTO ballast SELECT randomblob(4000) FROM n;",
            )
            .unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (data, stop) = (data.clone(), stop.clone());
        std::thread::spawn(move || {
            let store = ticketd::store::Store::open(&data).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store
                    .conn()
                    .execute("INSERT INTO ballast VALUES (randomblob(100))", [])
                    .unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let backup = dir.path().join("copy.sqlite3");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(&config)
        .args(["backup", backup.to_str().unwrap()])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the backup did not finish in 60 s while the store was written"
    );
    let copy = rusqlite::Connection::open(&backup).unwrap();
    let n: i64 = copy
        .query_row("SELECT count(*) FROM ballast", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 25000, "{n}");
    let ok: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");

    // A backup that fails (no room for it: a directory that is a file)
    // leaves nothing to stop the next one.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "x").unwrap();
    let failed = ticketd(
        &config,
        &["backup", blocked.join("copy.sqlite3").to_str().unwrap()],
    );
    assert!(!failed.status.success());
}

/// The error an operator reads names each cause once, on one line (one
/// journal entry): no "Permission denied: Permission denied".
#[test]
fn an_error_is_one_line_with_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let once = |err: &str, needle: &str| {
        assert_eq!(err.matches(needle).count(), 1, "{needle} in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    };
    let out = ticketd(&dir.path().join("missing.toml"), &["check"]);
    once(
        &String::from_utf8_lossy(&out.stderr),
        "No such file or directory",
    );

    let config = setup(dir.path(), "[tickets\nresponse_hours = 24\n");
    let out = ticketd(&config, &["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    once(&err, "ticketd.toml");

    // A database the user may not write (root may write anything, so root
    // runs it as nobody).
    let config = setup(dir.path(), "");
    assert!(ticketd(&config, &["stats"]).status.success());
    let db = dir.path().join("data/ticketd.sqlite3");
    let mode = |p: &Path, m: u32| {
        let mut perms = std::fs::metadata(p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, m);
        std::fs::set_permissions(p, perms).unwrap();
    };
    for d in [dir.path(), &dir.path().join("data")] {
        mode(d, 0o755);
    }
    mode(&db, 0o444);
    let mut cmd = if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_ticketd"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_ticketd"))
    };
    let out = cmd
        .arg("--config")
        .arg(&config)
        .args(["close", "WN-000001"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    once(&err, "readonly database");
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[test]
fn config_errors_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, key) in [
        ("[tickets.extra]\n", "extra"),
        ("[metrics]\nlisten = \"nowhere\"\n", "metrics.listen"),
        (
            "[intake]\nsubject_contains = [\"\"]\n",
            "intake.subject_contains",
        ),
    ] {
        let config = setup(dir.path(), extra);
        let out = ticketd(&config, &["check"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
    }
    // A broken template stops `check` with its file and line.
    let templates = dir.path().join("templates");
    for lang in ["nl", "en"] {
        std::fs::create_dir_all(templates.join(lang)).unwrap();
        for f in std::fs::read_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("templates")
                .join(lang),
        )
        .unwrap()
        {
            let f = f.unwrap().path();
            std::fs::copy(&f, templates.join(lang).join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(templates.join("en/ack.txt"), "Hello\n{% if %}\n").unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"data\"\n[tickets]\ntemplates_dir = \"{}\"\n",
            templates.display()
        ),
    )
    .unwrap();
    let out = ticketd(&config, &["check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("en/ack.txt") && err.contains("line 2"),
        "{err}"
    );
}

/// A wrong config file or template exits with EX_CONFIG (78), which the
/// unit names in `RestartPreventExitStatus=`: systemd then leaves the
/// service failed instead of starting it (and logging in) every few
/// seconds until someone fixes the file. Other failures exit 1, so a
/// mail server that is down at boot is still retried.
#[test]
fn config_errors_exit_with_ex_config_and_other_errors_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let status = |config: &Path, args: &[&str]| ticketd(config, args).status.code();
    let typo = setup(
        dir.path(),
        "[tickets]
respons_hours = 24
",
    );
    for command in ["check", "run", "stats"] {
        assert_eq!(status(&typo, &[command]), Some(78), "{command}");
    }
    assert_eq!(
        status(&dir.path().join("missing.toml"), &["check"]),
        Some(78)
    );
    let no_templates = dir.path().join("no-templates.toml");
    std::fs::write(
        &no_templates,
        "[store]\ndata_dir = \"data\"\n[tickets]\ntemplates_dir = \"nowhere\"\n",
    )
    .unwrap();
    assert_eq!(status(&no_templates, &["check"]), Some(78));
    // `run` without [imap] cannot work until the file says where to look.
    let good = setup(dir.path(), "");
    assert_eq!(status(&good, &["run"]), Some(78));
    // Not the config's fault: exit 1.
    assert_eq!(status(&good, &["show", "WN-000042"]), Some(1));
    // A token command that fails at start (its endpoint down at boot) is
    // tried again by systemd: exit 1, not EX_CONFIG.
    let token = setup(
        dir.path(),
        "[imap]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nusername = \"support@example.test\"\n\
         auth = \"xoauth2\"\npassword_command = \"echo token endpoint down >&2; exit 1\"\n",
    );
    assert_eq!(status(&token, &["run"]), Some(1));

    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ticketd.service"),
    )
    .unwrap();
    assert!(
        unit.lines()
            .any(|l| l.starts_with("RestartPreventExitStatus=")
                && l.split(['=', ' ']).any(|w| w == "78")),
        "the unit must not restart on EX_CONFIG"
    );
}

#[test]
fn a_failed_send_stays_queued_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 on loopback: nothing listens, the send fails at once.
    let config = dir.path().join("ticketd.toml");
    std::fs::write(
        &config,
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\nfrom_address = \"support@example.test\"\n\
             [store]\ndata_dir = \"data\"\n[tickets]\ntemplates_dir = \"{}\"\n",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("templates").display()
        ),
    )
    .unwrap();
    let eml = dir.path().join("1.eml");
    std::fs::write(&eml, "From: b@buyer.test\r\nSubject: Vraag\r\nMessage-ID: <r1@buyer.test>\r\n\r\nWaar is mijn pakket?\r\n").unwrap();
    let out = ticketd(&config, &["ingest", "--send", eml.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "filing never depends on sending: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sent 0 mail(s) from the outbox, 1 failed")
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&ticketd(&config, &["outbox", "--json"]).stdout).unwrap();
    assert_eq!(rows[0]["status"], "queued");
    assert_eq!(rows[0]["attempts"], 1);
    assert!(rows[0]["last_error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    let retry = ticketd(&config, &["outbox", "retry", "1"]);
    assert!(retry.status.success());
    let missing = ticketd(&config, &["outbox", "retry", "99"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no unsent outbox item 99"));
}

/// An attachment, large or small, is stored once: inside its raw mail (a
/// file when the mail is large, a database row when small), and comes out
/// byte for byte.
#[test]
fn attachments_come_out_byte_for_byte_small_and_large() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    // Not compressible and not repetitive: a stand-in for a photo.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let large = bytes(300_000);
    let small = bytes(3_000);
    let b64 = |d: &[u8]| {
        let s = base64::engine::general_purpose::STANDARD.encode(d);
        s.as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    // A mail with a text part and these photos, written to `file`.
    let write_mail = |file: &str, from: &str, id: &str, photos: &[(&str, &str, &[u8])]| {
        let mut mail = format!(
            "From: {from}\r\nSubject: Kapot\r\nMessage-ID: <{id}>\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nFoto's erbij.\r\n"
        );
        for (ctype, name, data) in photos {
            mail += &format!(
                "--b\r\nContent-Type: {ctype}; name=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64(data)
            );
        }
        mail += "--b--\r\n";
        let path = dir.path().join(file);
        std::fs::write(&path, mail).unwrap();
        path
    };
    let eml = write_mail(
        "photo.eml",
        "lotte@buyer.test",
        "p1@buyer.test",
        &[
            ("image/jpeg", "big.jpg", &large),
            ("image/png", "small.png", &small),
        ],
    );
    // A small mail with a small photo of its own.
    let tiny = bytes(2_000);
    let eml2 = write_mail(
        "tiny.eml",
        "joost@buyer.test",
        "p2@buyer.test",
        &[("image/png", "tiny.png", &tiny)],
    );
    for f in [&eml, &eml2] {
        assert!(ticketd(&config, &["ingest", f.to_str().unwrap()])
            .status
            .success());
    }
    let show = ticketd(&config, &["show", "WN-000001"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert_eq!(text.matches("inside the raw mail").count(), 2, "{text}");
    let show = ticketd(&config, &["show", "WN-000002"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("inside its raw mail, in the database"),
        "{text}"
    );
    for (name, want) in [
        ("big.jpg", &large),
        ("small.png", &small),
        ("tiny.png", &tiny),
    ] {
        let sha = ticketd::core::parse::sha256_hex(want);
        let out = dir.path().join(name);
        let r = ticketd(&config, &["attachment", &sha, "-o", out.to_str().unwrap()]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_eq!(&std::fs::read(&out).unwrap(), want, "{name}");
        // None is a file or a row of its own.
        let store = ticketd::store::Store::open(&dir.path().join("data")).unwrap();
        assert!(!store.blob_path(&sha).exists(), "{name}");
        let rows: i64 = store
            .conn()
            .query_row(
                "SELECT count(*) FROM blobs WHERE sha256 = ?1",
                [&sha],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0, "{name}");
    }
}

/// The photos inside Outlook's winmail.dat are decoded out of the raw mail
/// when asked for, like any other attachment.
#[test]
fn photos_inside_winmail_dat_come_out_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let eml = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/single/outlook_winmail_dat_photos_nl.eml");
    assert!(ticketd(&config, &["ingest", eml.to_str().unwrap()])
        .status
        .success());
    let show = ticketd(&config, &["show", "WN-000001"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("IMG_20261118_142233.jpg"), "{text}");
    assert!(!text.contains("winmail.dat"), "{text}");
    for (sha, size) in [
        (
            "9c73d08d3bb7ba9918b847459dc1d929683b02c090ed6b9d1d67971d046caa76",
            90_022,
        ),
        (
            "e84260596869d669ddfe7934c98e3ae04b329f3095058762189a7b37c5fe3d8f",
            420,
        ),
    ] {
        let out = dir.path().join(sha);
        let r = ticketd(&config, &["attachment", sha, "-o", out.to_str().unwrap()]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len(), size);
        assert_eq!(ticketd::core::parse::sha256_hex(&bytes), sha);
    }
}

/// An operator who files a mail by hand as root (`sudo ticketd ingest`)
/// must not leave blob directories only root can write: the service,
/// running as the data directory's owner, could then no longer file any
/// large mail whose hash falls in them, and would retry it forever.
#[test]
fn large_mail_filed_as_root_leaves_blobs_the_service_user_can_write() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the ownership of root's files is not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = setup(dir.path(), "");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("setpriv (util-linux) is needed to run ticketd as nobody")
    };
    let chown = Command::new("chown")
        .args(["nobody:nogroup"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(chown.success());
    let service_uid = std::fs::metadata(&data).unwrap().uid();
    // The service has run: the database is its own.
    let out = as_nobody(&["stats"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let big_mail = |name: &str| {
        let path = dir.path().join(format!("{name}.eml"));
        let body: String = (0..2_000)
            .map(|i| format!("{name} regel {i}: mijn pakket is niet aangekomen\r\n"))
            .collect();
        std::fs::write(
            &path,
            format!(
                "From: {name}@buyer.test\r\nSubject: Pakket {name}\r\n\
                 Message-ID: <{name}@buyer.test>\r\n\r\n{body}"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    };

    let first = big_mail("root");
    let out = ticketd(&config, &["ingest", first.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blobs = data.join("blobs");
    let mut owned_by_root = Vec::new();
    let mut stack = vec![blobs.clone()];
    while let Some(d) = stack.pop() {
        if std::fs::metadata(&d).unwrap().uid() != service_uid {
            owned_by_root.push(d.clone());
        }
        if d.is_dir() {
            stack.extend(std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(
        owned_by_root.is_empty(),
        "not the service user's: {owned_by_root:?}"
    );

    let second = big_mail("service");
    let out = as_nobody(&["ingest", second.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the service user cannot file a large mail after root did: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Logs written to a file or a pipe (cron's mail, `2>>ticketd.log`, the
/// journal with `--log-format text`) are plain text: no terminal colour
/// codes around every field.
#[test]
fn text_logs_to_a_pipe_carry_no_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let eml = dir.path().join("m.eml");
    std::fs::write(
        &eml,
        "From: a@buyer.test\r\nSubject: Vraag\r\nMessage-ID: <c1@buyer.test>\r\n\r\nWaar is mijn pakket?\r\n",
    )
    .unwrap();
    for format in ["text", "auto"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(&config)
            .args(["--log-format", format, "ingest"])
            .arg(&eml)
            .env_remove("NO_COLOR")
            .env_remove("JOURNAL_STREAM")
            .env("TICKETD_LOG", "info")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("filed"), "{format}: {log}");
        assert!(!log.contains('\x1b'), "{format}: escape codes in {log:?}");
    }
}

/// An agent searching a tracking number finds the ticket whose buyer
/// forwarded the shipping mail holding it (below the text or attached
/// whole), though the ticket's new text
/// stops where the forwarded mail starts; a reply's quoted history (our
/// own ack, an earlier mail) stays out of search.
#[test]
fn a_forwarded_mail_is_searched() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/single");
    for name in [
        "outlook_forward_doorst_nl.eml",
        "outlook_oorspronkelijk_bericht_nl.eml",
        "forward_as_attachment_rfc822.eml",
    ] {
        let eml = fixtures.join(name);
        assert!(ticketd(&config, &["ingest", eml.to_str().unwrap()])
            .status
            .success());
    }
    let search = |q: &str| {
        let out = ticketd(&config, &["search", q]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(search("3SMUNT7766554433").contains("WN-000001"));
    assert!(search("kaartenkoning").contains("WN-000001"));
    // The reply's quoted history: an old ticket's numbers.
    assert!(search("isAjIhKtJ0RlgLKOmxgJTe").contains("WN-000002"));
    let quoted = search("3SKLMN9876543210");
    assert!(!quoted.contains("WN-000002"), "{quoted}");
    // A mail attached whole ("forward as attachment").
    assert!(search("3SKAHU0011223344").contains("WN-000003"));
    // A bounce returning one of our mails whole is no forward: what that
    // mail says is not the bounce's to be found by.
    let bounce = dir.path().join("bounce.eml");
    std::fs::write(
        &bounce,
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.test (Mail Delivery System)\r\n\
         To: support@example.test\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <bounce-77@mx.example.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n\
         --R\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n\
         --R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n\
         Final-Recipient: rfc822; gone@buyer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         --R\r\nContent-Type: message/rfc822\r\n\r\nFrom: support@example.test\r\n\
         To: gone@buyer.test\r\nSubject: [WN-000009] Ontvangen\r\n\
         Message-ID: <wn-000009.x@example.test>\r\n\r\nZendingsnummer 3SBNCE4455667788\r\n\
         --R--\r\n",
    )
    .unwrap();
    assert!(ticketd(&config, &["ingest", bounce.to_str().unwrap()])
        .status
        .success());
    let store = ticketd::store::Store::open(&dir.path().join("data")).unwrap();
    let indexed: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '3SBNCE4455667788'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexed, 0);
}

/// A metrics port another process holds fails the start with the address
/// named (systemd then retries it), instead of a service running on
/// without the metrics it was configured for.
#[test]
fn a_metrics_port_in_use_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pw = dir.path().join("password");
    std::fs::write(&pw, "x\n").unwrap();
    let config = setup(
        dir.path(),
        &format!(
            "[imap]\nhost = \"127.0.0.1\"\nport = {nobody}\ntls = \"none\"\n\
             username = \"support@example.test\"\npassword_file = \"{}\"\n\
             [metrics]\nlisten = \"{addr}\"\n",
            pw.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let status = status.unwrap_or_else(|| panic!("still running with the port taken: {err}"));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr} for metrics")),
        "{err}"
    );
    drop(taken);
}

/// A buyer asks for their data to be erased: `ticketd delete` takes the
/// ticket with every message (theirs, the ack, the agent's reply), its
/// text in the search index, its facts and outbox rows and the raw mail's
/// file, and leaves no trace of the text in the database file; the mail
/// still in the mailbox is not filed again. Without --yes nothing changes.
#[test]
fn delete_erases_a_ticket_for_good_and_it_is_not_filed_again() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let photo: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&photo);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let erased = dir.path().join("erased.eml");
    std::fs::write(
        &erased,
        format!(
            "From: Lotte <lotte@buyer.test>\r\nSubject: Zeppelinkwartel kapot\r\n\
             Message-ID: <erase-me@buyer.test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nMijn zeppelinkwartel is kapot, \
             bestelling Tb6yNq1RzKv8Wx3PmLc0Hs.\r\n\
             --b\r\nContent-Type: image/jpeg; name=\"IMG_1.jpg\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            lines.join("\r\n")
        ),
    )
    .unwrap();
    let kept = dir.path().join("kept.eml");
    std::fs::write(
        &kept,
        "From: joost@buyer.test\r\nSubject: IJsvogelbrief\r\nMessage-ID: <keep-me@buyer.test>\r\n\r\n\
         Waar blijft mijn ijsvogelbrief? Bestelling Kq7Zt2VbN9xLm4Pw8RcYd1.\r\n",
    )
    .unwrap();
    for f in [&erased, &kept] {
        succeeds(&config, &["ingest", f.to_str().unwrap()]);
    }
    let reply = dir.path().join("reply.txt");
    std::fs::write(&reply, "Beste Lotte, we zoeken de zeppelinkwartel uit.").unwrap();
    let out = ticketd(
        &config,
        &[
            "reply",
            "WN-000001",
            "--body-file",
            reply.to_str().unwrap(),
            "--agent",
            "sanne",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = dir.path().join("data");
    let raw_file = {
        let store = ticketd::store::Store::open(&data).unwrap();
        let name: String = store
            .conn()
            .query_row(
                "SELECT raw_sha256 FROM messages WHERE message_id = 'erase-me@buyer.test'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        store.blob_path(&name)
    };
    assert!(raw_file.exists());
    let hits = |q: &str| -> usize {
        let v: serde_json::Value =
            serde_json::from_str(&succeeds(&config, &["search", q, "--json"])).unwrap();
        v.as_array().map(|a| a.len()).unwrap_or(0)
    };
    assert_eq!(hits("zeppelinkwartel"), 1);

    // Without --yes: only what would go.
    let text = succeeds(&config, &["delete", "WN-000001"]);
    assert!(
        text.contains("would delete: 1 ticket(s) WN-000001; 3 message(s)"),
        "{text}"
    );
    assert!(text.contains("nothing deleted"), "{text}");
    assert!(ticketd(&config, &["show", "WN-000001"]).status.success());

    let text = succeeds(&config, &["delete", "WN-000001", "--yes"]);
    assert!(
        text.contains("deleted: 1 ticket(s) WN-000001; 3 message(s), 1 attachment(s)"),
        "{text}"
    );
    assert!(!ticketd(&config, &["show", "WN-000001"]).status.success());
    assert_eq!(hits("zeppelinkwartel"), 0);
    assert_eq!(hits("Tb6yNq1RzKv8Wx3PmLc0Hs"), 0);
    assert!(!raw_file.exists(), "the raw mail's file is gone");
    // The other buyer's ticket is whole.
    assert_eq!(hits("ijsvogelbrief"), 1);
    assert!(ticketd(&config, &["show", "WN-000002"]).status.success());
    // No trace in the database file or its log.
    for file in ["ticketd.sqlite3", "ticketd.sqlite3-wal"] {
        let Ok(bytes) = std::fs::read(data.join(file)) else {
            continue;
        };
        for word in [
            &b"eppelinkwartel"[..],
            b"Tb6yNq1RzKv8Wx3PmLc0Hs",
            b"lotte@buyer",
        ] {
            assert!(
                !bytes.windows(word.len()).any(|w| w == word),
                "{file} still holds {}",
                String::from_utf8_lossy(word)
            );
        }
    }

    // The same mail again (a rescan of the mailbox): not filed.
    let text = succeeds(&config, &["ingest", erased.to_str().unwrap()]);
    assert!(text.contains("not filed again"), "{text}");
    let export = succeeds(&config, &["export", "--jsonl"]);
    assert_eq!(export.lines().count(), 1, "{export}");
    let stats = succeeds(&config, &["stats"]);
    assert!(stats.contains("deleted:     1 message(s)"), "{stats}");
    assert!(!raw_file.exists(), "its file was not written again");
    assert!(!ticketd(&config, &["delete", "WN-000009"]).status.success());
    // The highest number deleted is not given out again.
    succeeds(&config, &["delete", "WN-000002", "--yes"]);
    let next = dir.path().join("next.eml");
    std::fs::write(
        &next,
        "From: mila@buyer.test\r\nSubject: Vraag\r\nMessage-ID: <next@buyer.test>\r\n\r\nHallo.\r\n",
    )
    .unwrap();
    let text = succeeds(&config, &["ingest", next.to_str().unwrap()]);
    assert!(text.contains("new ticket WN-000003"), "{text}");
}

/// By the buyer's address: every ticket they opened and their mail on no
/// ticket; their messages on tickets others opened are kept and counted.
/// By age: closed tickets closed before a date.
#[test]
fn delete_by_requester_and_by_closing_date() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let ingest = |id: &str, from: &str, subject: &str, extra: &str| {
        let eml = dir.path().join(format!("{id}.eml"));
        std::fs::write(
            &eml,
            format!("From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}@buyer.test>\r\n{extra}\r\nHallo.\r\n"),
        )
        .unwrap();
        succeeds(&config, &["ingest", eml.to_str().unwrap()]);
    };
    ingest("a1", "anna@buyer.test", "Vraag een", "");
    ingest("b1", "bram@buyer.test", "Vraag twee", "");
    ingest("a2", "anna@buyer.test", "Vraag drie", "");
    // Bram forwarded our ack to Anna, who answers it: on Bram's ticket.
    let show = ticketd(&config, &["show", "WN-000002", "--json"]);
    let view: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let ack = view["messages"][1]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    ingest(
        "a3",
        "anna@buyer.test",
        "Re: Vraag twee",
        &format!("In-Reply-To: <{ack}>\r\n"),
    );
    // An auto-reply from Anna: on no ticket.
    ingest(
        "a4",
        "anna@buyer.test",
        "Afwezig",
        "Auto-Submitted: auto-replied\r\n",
    );
    let out = ticketd(&config, &["show", "WN-000002", "--json"]);
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["messages"].as_array().unwrap().len(), 3, "{view}");
    let out = ticketd(
        &config,
        &[
            "delete",
            "--requester",
            "Anna@Buyer.test",
            "--yes",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["tickets"],
        serde_json::json!(["WN-000001", "WN-000003"]),
        "{v}"
    );
    assert_eq!(
        v["messages"], 5,
        "two tickets' mail, their acks and the auto-reply: {v}"
    );
    assert_eq!(v["kept_on_other_tickets"], 1, "{v}");
    assert!(ticketd(&config, &["show", "WN-000002"]).status.success());

    // Retention: WN-000002 closed now is not closed before yesterday; it
    // is closed before tomorrow.
    assert!(ticketd(&config, &["close", "WN-000002"]).status.success());
    let day = chrono::Duration::days(1);
    let yesterday = (chrono::Utc::now() - day).format("%Y-%m-%d").to_string();
    let tomorrow = (chrono::Utc::now() + day).format("%Y-%m-%d").to_string();
    let out = ticketd(
        &config,
        &["delete", "--closed-before", &yesterday, "--yes", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tickets"], serde_json::json!([]), "{v}");
    let out = ticketd(
        &config,
        &["delete", "--closed-before", &tomorrow, "--yes", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tickets"], serde_json::json!(["WN-000002"]), "{v}");
    let out = ticketd(&config, &["export", "--jsonl"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 0);
}

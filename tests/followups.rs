//! `ack_followups = true`: a buyer's follow-up gets one short "added to
//! your ticket" note, not one per mail; off by default.

use std::path::Path;
use std::process::Command;

fn run(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn setup(followups: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ticketd.toml");
    std::fs::write(
        &config,
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = 25\ntls = \"none\"\nfrom_address = \"support@example.test\"\n\
             [store]\ndata_dir = \"data\"\n[tickets]\ntemplates_dir = \"{}\"\nack_followups = {followups}\n",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("templates").display()
        ),
    )
    .unwrap();
    (dir, config)
}

fn mail(dir: &Path, name: &str, id: &str, headers: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("From: Anna <anna@buyer.test>\r\nTo: support@example.test\r\nSubject: Re: kaart\r\nMessage-ID: <{id}>\r\n{headers}\r\nNog een foto erbij.\r\n"),
    )
    .unwrap();
    p
}

fn exported(config: &Path) -> Vec<serde_json::Value> {
    run(config, &["export", "--jsonl"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Files the buyer's first mail (opening WN-000001); the header with which
/// a reply to its ack names it.
fn open_ticket(dir: &Path, config: &Path, id: &str) -> String {
    let first = mail(dir, "first.eml", id, "");
    run(config, &["ingest", first.to_str().unwrap()]);
    let ack = exported(config)[0]["ack"]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    format!("In-Reply-To: <{ack}>\r\n")
}

#[test]
fn one_note_per_hour_when_enabled_none_by_default() {
    for enabled in [true, false] {
        let (dir, config) = setup(enabled);
        let refs = open_ticket(dir.path(), &config, "f1@buyer.test");
        let second = mail(dir.path(), "2.eml", "f2@buyer.test", &refs);
        let third = mail(dir.path(), "3.eml", "f3@buyer.test", &refs);
        run(
            &config,
            &["ingest", second.to_str().unwrap(), third.to_str().unwrap()],
        );
        let e = exported(&config);
        assert_eq!(e.len(), 3);
        assert!(e.iter().all(|m| m["ticket"] == "WN-000001"));
        if enabled {
            assert!(e[1]["ack"]["message_id"].is_string(), "{}", e[1]);
            assert!(
                e[2]["ack"]["skipped"]
                    .as_str()
                    .unwrap()
                    .contains("last hour"),
                "{}",
                e[2]
            );
            let outbox: Vec<serde_json::Value> =
                serde_json::from_str(&run(&config, &["outbox", "--json"])).unwrap();
            assert_eq!(outbox.len(), 2);
        } else {
            assert_eq!(e[1]["ack"]["skipped"], "follow-up on an existing ticket");
            assert_eq!(e[2]["ack"]["skipped"], "follow-up on an existing ticket");
        }
    }
}

/// A responder that sets no machine header and answers every note would
/// get one an hour for ever: a ticket gets at most three notes until an
/// agent answers it, then it may get notes again.
#[test]
fn at_most_three_notes_until_an_agent_answers() {
    let (dir, config) = setup(true);
    let db = dir.path().join("data").join("ticketd.sqlite3");
    // An hour and more passes between the mails.
    let later = || {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "UPDATE messages SET received_at = received_at - 7200;
             UPDATE outbox SET created_at = created_at - 7200;",
        )
        .unwrap();
    };
    let refs = open_ticket(dir.path(), &config, "n0@buyer.test");
    let follow_up = |n: usize| {
        later();
        let m = mail(
            dir.path(),
            &format!("{n}.eml"),
            &format!("n{n}@buyer.test"),
            &refs,
        );
        run(&config, &["ingest", m.to_str().unwrap()]);
        let e = exported(&config);
        let this = e
            .iter()
            .find(|r| r["message_id"] == format!("n{n}@buyer.test").as_str())
            .unwrap()
            .clone();
        assert_eq!(this["ticket"], "WN-000001");
        this["ack"].clone()
    };
    for n in 1..=3 {
        let ack = follow_up(n);
        assert!(ack["message_id"].is_string(), "note {n}: {ack}");
    }
    let fourth = follow_up(4);
    assert!(
        fourth["skipped"]
            .as_str()
            .is_some_and(|s| s.contains("since an agent last answered")),
        "{fourth}"
    );

    later();
    let body = dir.path().join("reply.txt");
    std::fs::write(&body, "We are looking into it.\n").unwrap();
    run(
        &config,
        &["reply", "WN-000001", "--body-file", body.to_str().unwrap()],
    );
    let after_answer = follow_up(5);
    assert!(after_answer["message_id"].is_string(), "{after_answer}");
}

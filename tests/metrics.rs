//! `[metrics] listen`: a running daemon serves Prometheus metrics that
//! follow what it files and sends.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use ticketd::rig::MailRig;

fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

#[test]
fn metrics_follow_filing_and_sending() {
    let rig = MailRig::start().unwrap();
    let s = setup(&rig, Imap::Plain, None);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&s.config, text).unwrap();
    let daemon = Daemon::start(&s.config);

    let anna = "anna@buyer.test";
    rig.send(
        anna,
        &[SUPPORT],
        &buyer_mail(
            anna,
            "Anna",
            "Kaart kapot",
            "m1@buyer.test",
            "Mijn kaart is kapot.",
            "",
        ),
    )
    .unwrap();
    rig.send(
        "ooo@buyer.test",
        &[SUPPORT],
        &buyer_mail(
            "ooo@buyer.test",
            "Piet",
            "Afwezig",
            "m2@buyer.test",
            "Ik ben afwezig.",
            "Auto-Submitted: auto-replied\r\n",
        ),
    )
    .unwrap();
    rig.wait_for_mail(anna, 1, Duration::from_secs(20)).unwrap();
    // The two mails may be filed in separate passes: wait for both.
    let expected = [
        "ticketd_acks_sent_total 1",
        "ticketd_outbox_items{status=\"sent\"} 1",
        "ticketd_messages_ingested_total{kind=\"human\"} 1",
        "ticketd_messages_ingested_total{kind=\"autoreply\"} 1",
        "ticketd_acks_skipped_total{reason=\"machine mail\"} 1",
    ];
    let body = wait_until(
        "metrics to show both mails filed and the ack sent",
        Duration::from_secs(20),
        || scrape(port).filter(|b| expected.iter().all(|e| b.contains(e))),
    );
    assert!(body.contains("ticketd_outbox_depth 0"), "{body}");
    assert!(body.contains("ticketd_imap_reconnects_total 0"), "{body}");
    let last_sync: i64 = body
        .lines()
        .find_map(|l| l.strip_prefix("ticketd_last_sync_timestamp_seconds{mailbox=\"INBOX\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - last_sync).abs() < 120,
        "{body}"
    );
    assert!(body.contains("# TYPE ticketd_oldest_unanswered_ticket_age_seconds gauge"));
    assert!(
        body.contains("# TYPE ticketd_imap_left_out_messages gauge"),
        "{body}"
    );
    // Filing took time in each stage, and the log says how much.
    for stage in ["fetch", "parse", "file"] {
        let prefix = format!("ticketd_ingest_busy_seconds_total{{stage=\"{stage}\"}} ");
        let secs: f64 = body
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{body}"));
        assert!(secs > 0.0 && secs < 20.0, "{stage}: {secs} s\n{body}");
    }
    let log = daemon.log();
    let synced = log
        .lines()
        .find(|l| l.contains("mailbox synced"))
        .unwrap_or_else(|| panic!("no `mailbox synced` in\n{log}"));
    for field in ["took_ms=", "fetch_ms=", "parse_ms=", "file_ms="] {
        assert!(synced.contains(field), "{field} not in {synced:?}");
    }
}

//! How long reading an attachment back from its raw mail takes: what the
//! ticket page's photos and `ticketd attachment` wait for. A mail of five
//! 2 MB photos is filed into a temporary store; each photo is then read
//! with `Store::read_blob` (the raw mail read from its file, the photo
//! found and decoded), against the whole mail parsed as before.
//!
//! cargo run --release --example attachment_speed

use std::time::{Duration, Instant};

use base64::Engine;
use ticketd::ack::AckTemplates;
use ticketd::ingest::Ingestor;
use ticketd::store::Store;

fn photo(seed: u32) -> Vec<u8> {
    (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)).to_le_bytes()[2])
        .collect()
}

fn median(mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..9)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let photos: Vec<Vec<u8>> = (1..=5).map(photo).collect();
    let mut raw = String::from(
        "From: Anna <anna@buyer.test>\r\nTo: support@example.test\r\nSubject: Kapot\r\n\
         Message-ID: <speed@buyer.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nZie de foto's.\r\n",
    );
    for (i, p) in photos.iter().enumerate() {
        raw.push_str(&format!(
            "--b\r\nContent-Type: image/jpeg; name=\"foto{i}.jpg\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        ));
        let b64 = base64::engine::general_purpose::STANDARD.encode(p);
        for line in b64.as_bytes().chunks(76) {
            raw.push_str(std::str::from_utf8(line).unwrap());
            raw.push_str("\r\n");
        }
    }
    raw.push_str("--b--\r\n");

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\ndata_dir = {:?}\n[tickets]\ntemplates_dir = {:?}\n",
        dir.path().join("data"),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
    );
    let config = ticketd::config::Config::parse(&text, &dir.path().join("ticketd.toml")).unwrap();
    let templates = AckTemplates::load(&config.tickets.templates_dir).unwrap();
    let mut store = Store::open(&config.data_dir).unwrap();
    let ingestor = Ingestor {
        config: &config,
        templates: &templates,
    };
    ingestor
        .ingest(&mut store, raw.as_bytes(), None, chrono::Utc::now())
        .unwrap();
    println!(
        "mail of {:.1} MB, five photos of 2 MB",
        raw.len() as f64 / 1e6
    );
    for (i, p) in photos.iter().enumerate() {
        let sha = ticketd::core::parse::sha256_hex(p);
        let read = median(|| assert!(store.read_blob(&sha).unwrap() == *p));
        let parsed = median(|| {
            let raw =
                std::fs::read(store.blob_path(&ticketd::core::parse::raw_name(raw.as_bytes())))
                    .unwrap();
            let m = ticketd::core::parse::parse(&raw);
            assert!(m
                .attachments
                .iter()
                .any(|a| ticketd::core::parse::sha256_hex(&a.data) == sha));
        });
        println!(
            "photo {}: read_blob {read:.1?}, whole mail parsed {parsed:.1?}",
            i + 1
        );
    }
}

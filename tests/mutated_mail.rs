//! Property test: mutated and truncated versions of real-looking buyer mail
//! go through the whole pipeline (parse, classify, thread, extract, store,
//! ack) without a panic, and every message is either stored once or
//! recognised as a duplicate. Nothing from outside may crash the daemon.

mod common;

use proptest::prelude::*;
use ticketd::ack::AckTemplates;
use ticketd::ingest::{Ingestor, Outcome};
use ticketd::store::Store;

const SEEDS: &[&[u8]] = &[
    b"From: Anna de Vries <anna@buyer.test>\r\nTo: support@example.test\r\nSubject: =?UTF-8?Q?Pakket_besch?=\r\n =?UTF-8?Q?adigd?=\r\nMessage-ID: <s1@buyer.test>\r\nDate: Tue, 24 Nov 2026 10:12:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nMijn kaart is geknakt. Bestelnummer dQzGdHsKxwaEyrQfCdcCs8 =E9\r\n--b1\r\nContent-Type: image/jpeg; name=\"foto.jpg\"\r\nContent-Disposition: attachment; filename*=UTF-8''f%C3%B6to.jpg\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////\r\n--b1--\r\n",
    b"From: bob@shop.test\r\nTo: support@example.test\r\nSubject: Re: [WN-000001] Where is my order?\r\nIn-Reply-To: <wn-000001.x@example.test>\r\nReferences: <s1@buyer.test> <wn-000001.x@example.test>\r\nMessage-ID: <s2@shop.test>\r\nContent-Type: multipart/alternative; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/html; charset=windows-1252\r\n\r\n<html><body><p class=MsoNormal>Still not arrived \x93soon\x94<o:p></o:p></p></body></html>\r\n--zz--\r\n",
    b"From: MAILER-DAEMON@mx.buyer.test\r\nTo: support@example.test\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <s3@mx.buyer.test>\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; x@buyer.test\r\nAction: failed\r\n--r\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <wn-000001.x@example.test>\r\nSubject: hi\r\n\r\nbody\r\n--r--\r\n",
];

/// The seeds above, then every mail of the fixtures (real clients' mail,
/// threads, bounces), in a fixed order.
static ALL_SEEDS: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
    let mut files = Vec::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() > 100, "fixtures not found");
    SEEDS
        .iter()
        .map(|s| s.to_vec())
        .chain(files.iter().map(|f| std::fs::read(f).unwrap()))
        .collect()
});

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b'='),
                    Just(b'-'),
                    Just(b':'),
                    Just(b'<'),
                    Just(b'"'),
                    Just(0u8),
                    Just(0xffu8),
                    any::<u8>()
                ],
                1..12
            )
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut raw: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = raw.len().max(1);
    match m {
        Mutation::Flip(i, b) => {
            if !raw.is_empty() {
                let i = i % raw.len();
                raw[i] ^= b;
            }
        }
        Mutation::Insert(i, v) => {
            let i = i % (raw.len() + 1);
            raw.splice(i..i, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = i % len;
            let end = (i + n).min(raw.len());
            if i < end {
                raw.drain(i..end);
            }
        }
        Mutation::Truncate(i) => raw.truncate(i % len),
    }
    raw
}

fn stored_messages(store: &Store) -> i64 {
    store
        .conn()
        .query_row(
            "SELECT count(*) FROM messages WHERE direction = 'in'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Files the mutated mail on a store holding the clean seeds: stored once
/// (or a duplicate), raw bytes kept, a duplicate the second time.
fn file_mutated(seed: usize, mutations: &[Mutation]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = common::store_config(dir.path());
    let templates = AckTemplates::load(&config.tickets.templates_dir).unwrap();
    let ingestor = Ingestor {
        config: &config,
        templates: &templates,
    };
    let mut store = Store::open(&config.data_dir).unwrap();
    let now = chrono::Utc::now();
    // A clean copy of every seed first, so threading paths are taken.
    for s in SEEDS {
        ingestor.ingest(&mut store, s, None, now).unwrap();
    }
    let raw = mutations.iter().fold(ALL_SEEDS[seed].clone(), apply);
    let before = stored_messages(&store);
    let outcome = ingestor.ingest(&mut store, &raw, None, now).unwrap();
    let after = stored_messages(&store);
    match outcome {
        Outcome::Duplicate => prop_assert_eq!(after, before),
        _ => prop_assert_eq!(after, before + 1),
    }
    // The raw bytes are kept, whatever could be parsed.
    let sha = ticketd::core::parse::raw_name(&raw);
    if outcome != Outcome::Duplicate {
        prop_assert_eq!(store.read_blob(&sha).unwrap(), raw.clone());
    }
    // Filing the same bytes again is always a duplicate.
    prop_assert_eq!(
        ingestor.ingest(&mut store, &raw, None, now).unwrap(),
        Outcome::Duplicate
    );
    Ok(())
}

proptest! {
    // PROPTEST_CASES=20000 for a longer search than the suite's 120 cases.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(120),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_mail_is_stored_once_and_never_panics(
        seed in 0..ALL_SEEDS.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        file_mutated(seed, &mutations)?;
    }
}

/// Cases the property test found, kept so they run every time: a NUL and
/// a CR in the buyer's display name made building the ack panic.
#[test]
fn mutations_found_before_stay_fixed() {
    let cases = [(
        0,
        vec![
            Mutation::Truncate(2992794926577174592),
            Mutation::Delete(11950888035211117445, 20),
            Mutation::Insert(15698286992542056080, vec![0, 13]),
        ],
    )];
    for (seed, mutations) in cases {
        file_mutated(seed, &mutations).unwrap();
    }
}

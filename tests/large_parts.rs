//! Large base64 parts are decoded outside mail-parser (core::large_parts).
//! Property: for any mail, clean or damaged, `parse` gives exactly what
//! mail-parser's own decoding gives (`parse_unmasked`), and a clean photo
//! mail really is taken out of mail-parser's hands.

use base64::Engine;
use proptest::prelude::*;
use ticketd::core::large_parts;
use ticketd::core::parse::{parse, parse_taking_out_large_parts, parse_unmasked, sha256_hex};

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Html(String),
    /// A binary part of `len` bytes (seeded), with its content type.
    Binary {
        content_type: &'static str,
        len: usize,
        seed: u8,
        inline: bool,
    },
    /// Large base64 text: must stay text, decoded by mail-parser.
    Base64Text(usize),
    /// An attached message that itself carries a large photo.
    Forwarded(usize),
}

#[derive(Debug, Clone)]
enum Damage {
    None,
    /// A byte put somewhere in the mail.
    Insert(usize, u8),
    /// The mail cut short.
    Truncate(usize),
    /// The padding of every base64 body taken off.
    NoPadding,
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

fn wrap(data: &[u8], width: usize, eol: &str, padding: bool) -> String {
    let mut b64 = base64::engine::general_purpose::STANDARD.encode(data);
    if !padding {
        b64 = b64.trim_end_matches('=').to_string();
    }
    b64.as_bytes()
        .chunks(width)
        .map(|c| format!("{}{eol}", std::str::from_utf8(c).unwrap()))
        .collect()
}

fn build(parts: &[Part], related: bool, width: usize, eol: &str, padding: bool) -> Vec<u8> {
    let mut m = format!(
        "From: Anna <anna@buyer.test>{eol}To: support@example.test{eol}Subject: Foto's van de schade{eol}\
         Message-ID: <big@buyer.test>{eol}MIME-Version: 1.0{eol}\
         Content-Type: multipart/{};{eol}\tboundary=\"=_outer\"{eol}{eol}This is a MIME message.{eol}",
        if related { "related" } else { "mixed" }
    );
    for (i, p) in parts.iter().enumerate() {
        m.push_str(&format!("--=_outer{eol}"));
        match p {
            Part::Text(t) => m.push_str(&format!(
                "Content-Type: text/plain; charset=utf-8{eol}{eol}{t}{eol}"
            )),
            Part::Html(t) => m.push_str(&format!(
                "Content-Type: text/html; charset=utf-8{eol}Content-Transfer-Encoding: base64{eol}{eol}{}",
                wrap(format!("<p>{t}</p>").as_bytes(), width, eol, padding)
            )),
            Part::Binary {
                content_type,
                len,
                seed,
                inline,
            } => m.push_str(&format!(
                "Content-Type: {content_type};{eol} name=\"file{i}\"{eol}\
                 Content-Disposition: {}; filename=\"file{i}\"{eol}Content-ID: <part{i}@buyer.test>{eol}\
                 Content-Transfer-Encoding: BASE64 {eol}{eol}{}",
                if *inline { "inline" } else { "attachment" },
                wrap(&data(*len, *seed), width, eol, padding)
            )),
            Part::Base64Text(len) => m.push_str(&format!(
                "Content-Type: text/plain; charset=utf-8{eol}Content-Transfer-Encoding: base64{eol}{eol}{}",
                wrap("Mijn pakket is nooit aangekomen. ".repeat(*len / 33 + 1).as_bytes(), width, eol, padding)
            )),
            Part::Forwarded(len) => m.push_str(&format!(
                "Content-Type: message/rfc822{eol}{eol}From: b@buyer.test{eol}Subject: fwd{eol}\
                 Message-ID: <inner@buyer.test>{eol}Content-Type: multipart/mixed; boundary=inner{eol}{eol}\
                 --inner{eol}Content-Type: text/plain{eol}{eol}see photo{eol}--inner{eol}\
                 Content-Type: image/png{eol}Content-Transfer-Encoding: base64{eol}{eol}{}--inner--{eol}",
                wrap(&data(*len, 7), width, eol, padding)
            )),
        }
    }
    m.push_str(&format!("--=_outer--{eol}"));
    m.into_bytes()
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        "[a-zA-Z ]{0,40}".prop_map(Part::Text),
        "[a-zA-Z ]{0,40}".prop_map(Part::Html),
        (
            prop::sample::select(vec![
                "image/jpeg",
                "image/png",
                "application/pdf",
                "video/mp4",
                "application/octet-stream",
            ]),
            prop_oneof![0usize..2000, 12_000usize..400_000],
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(content_type, len, seed, inline)| Part::Binary {
                content_type,
                len,
                seed,
                inline
            }),
        (20_000usize..100_000).prop_map(Part::Base64Text),
        (20_000usize..100_000).prop_map(Part::Forwarded),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => Just(Damage::None),
        1 => (any::<usize>(), prop::sample::select(vec![b'*', b'=', b'-', b' ', b'\n', b'\r', 0u8])).prop_map(|(i, b)| Damage::Insert(i, b)),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => Just(Damage::NoPadding),
    ]
}

proptest! {
    // PROPTEST_CASES=20000 for a longer search than the suite's 200 cases.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200),
        ..ProptestConfig::default()
    })]

    #[test]
    fn same_result_as_mail_parser_alone(
        parts in prop::collection::vec(part(), 1..5),
        related in any::<bool>(),
        width in prop_oneof![Just(76usize), Just(72), Just(64), 40usize..100],
        crlf in any::<bool>(),
        damage in damage(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut raw = build(&parts, related, width, eol, !matches!(damage, Damage::NoPadding));
        match damage {
            Damage::Insert(i, b) => {
                let i = i % raw.len();
                raw.insert(i, b);
            }
            Damage::Truncate(i) => raw.truncate(i % raw.len()),
            Damage::None | Damage::NoPadding => {}
        }
        prop_assert_eq!(parse(&raw), parse_unmasked(&raw));
    }
}

#[test]
fn a_clean_photo_mail_is_decoded_outside_mail_parser() {
    let parts = [
        Part::Text("Zie de foto's".into()),
        Part::Binary {
            content_type: "image/jpeg",
            len: 300_000,
            seed: 1,
            inline: false,
        },
        Part::Binary {
            content_type: "image/png",
            len: 90_000,
            seed: 2,
            inline: true,
        },
    ];
    for related in [false, true] {
        for eol in ["\r\n", "\n"] {
            let raw = build(&parts, related, 76, eol, true);
            let masked = large_parts::mask(&raw, &sha256_hex(&raw)).expect("photos taken out");
            assert_eq!(masked.parts.len(), 2);
            assert!(masked.raw.len() < 2_000);
            let msg = parse_taking_out_large_parts(&raw).expect("every placeholder came back");
            assert_eq!(msg, parse(&raw));
            assert_eq!(msg, parse_unmasked(&raw));
            assert_eq!(msg.attachments.len(), 2);
            assert_eq!(msg.attachments[0].data, data(300_000, 1));
            assert_eq!(msg.attachments[1].data, data(90_000, 2));
            assert_eq!(msg.text.trim(), "Zie de foto's");
            // Read back alone, as a download asks for them.
            for (seed, len) in [(1, 300_000), (2, 90_000)] {
                let want = data(len, seed);
                assert!(large_parts::find(&raw, &sha256_hex(&want)) == Some(want));
            }
            assert_eq!(large_parts::find(&raw, &sha256_hex(b"not in it")), None);
        }
    }
}

#[test]
fn a_part_left_to_mail_parser_is_not_found_alone() {
    // A small photo, and large base64 text: both are mail-parser's to
    // decode (the text is no attachment at all), so reading them back
    // needs the parse.
    let parts = [
        Part::Binary {
            content_type: "image/png",
            len: 9_000,
            seed: 3,
            inline: false,
        },
        Part::Base64Text(120_000),
        Part::Binary {
            content_type: "image/jpeg",
            len: 200_000,
            seed: 4,
            inline: false,
        },
    ];
    let raw = build(&parts, false, 76, "\r\n", true);
    let msg = parse(&raw);
    assert_eq!(msg.attachments.len(), 2);
    let small = &msg.attachments[0].data;
    assert!(small == &data(9_000, 3));
    assert_eq!(large_parts::find(&raw, &sha256_hex(small)), None);
    let text = msg.text.as_bytes();
    assert!(text.len() > 60_000);
    assert_eq!(large_parts::find(&raw, &sha256_hex(text)), None);
    let photo = data(200_000, 4);
    assert!(large_parts::find(&raw, &sha256_hex(&photo)) == Some(photo));
}

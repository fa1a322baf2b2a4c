//! How long building one acknowledgement takes: rendering its three
//! templates, and writing the MIME mail (headers, quoted-printable parts).
//!
//! cargo run --release --example ack_speed

use std::time::{Duration, Instant};

use ticketd::ack::{self, AckContext, AckEnvelope, AckKind, AckTemplates};
use ticketd::config::Language;
use ticketd::core::policy::Missing;

fn median(mut f: impl FnMut()) -> Duration {
    let rounds = 2000u32;
    let mut samples: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..rounds {
                f();
            }
            t.elapsed() / rounds
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let templates = AckTemplates::load(&dir).expect("templates");
    let ctx = AckContext {
        ticket: "WN-004711".into(),
        language: "nl",
        response_hours: 48,
        due: "zaterdag 28 november 2026 om 14:03 CET".into(),
        buyer_name: Some("Anna de Vries".into()),
        original_subject: "Pakket beschadigd aangekomen".into(),
        issue_type: "damaged",
        missing: vec![
            Missing::PhotosBox,
            Missing::PhotosPacking,
            Missing::Username,
        ],
        order_numbers: vec!["Lm7XqP2vRt9KdW4sYb6NcA".into()],
        claim_deadline: None,
        claim_deadline_passed: false,
        claim_window: Some(ack::claim_window(
            ticketd::core::extract::Category::Tcg,
            Language::Nl,
        )),
        claim_latest: Some("3 december 2026".into()),
    };
    let rendered = templates
        .render_kind(AckKind::New, Language::Nl, &ctx)
        .expect("render");
    let refs = vec!["a@b.example".to_string()];
    let envelope = AckEnvelope {
        from_name: "Whatnot Support",
        from_address: "support@example.test",
        to_name: Some("Anna de Vries"),
        to_address: "anna@example.net",
        in_reply_to: Some("CAF00@mail.gmail.com"),
        references: &refs,
        message_id: "wn-004711.abc@example.test",
        automatic: true,
    };
    let render = median(|| {
        std::hint::black_box(
            templates
                .render_kind(AckKind::New, Language::Nl, &ctx)
                .unwrap(),
        );
    });
    let build = median(|| {
        std::hint::black_box(ack::build_mail(&rendered, &envelope).unwrap());
    });
    let id = median(|| {
        std::hint::black_box(ack::new_message_id("WN-004711", "support@example.test"));
    });
    println!("render {render:?}  build_mail {build:?}  message id {id:?}");
}

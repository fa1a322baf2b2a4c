//! How long `extract` (order numbers, dates, issue type, category,
//! language) takes on real-looking buyer mail, and on the same mail with
//! every non-ASCII character replaced by an ASCII one, as the baseline:
//! iPhones' curly apostrophes, accents and emoji must not make it slower.
//!
//! cargo run --release --example extract_speed

use std::time::{Duration, Instant};

const MAILS: [(&str, &str); 3] = [
    (
        "Pakket beschadigd",
        "Hallo,\n\nMijn pakket met Pokémon kaarten is beschadigd aangekomen. De doos was \
         ingedeukt en één kaart is geknakt. Bestelnummer: Lm7XqP2vRt9KdW4sYb6NcA. Ik heb het op \
         3 november besteld en op 20 november ontvangen.\n\nMet vriendelijke groet,\nAnna — \
         verzonden vanaf mijn iPhone\n\n> Op 20 nov. 2026 schreef Whatnot Support:\n> We hebben \
         je verzoek ontvangen",
    ),
    (
        "Where is my order?",
        "Hi, my order of sneakers hasn’t arrived yet. Tracking 1Z999AA10123456784. It’s been \
         two weeks — can you help? Thanks, Bob",
    ),
    (
        "Re: kaart",
        "Dank je! Hier de foto’s van de verpakking. Groetjes 😊",
    ),
];

fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'é' | 'ë' => 'e',
            '’' => '\'',
            c if c.is_ascii() => c,
            _ => '-',
        })
        .collect()
}

/// Median time of one `extract` over the mails, in 7 rounds.
fn time(mails: &[(String, String)]) -> Duration {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
    let rounds = 2000;
    let mut samples: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..rounds {
                for (subject, body) in mails {
                    std::hint::black_box(ticketd::core::extract::extract(subject, body, today));
                }
            }
            t.elapsed() / (rounds * mails.len() as u32)
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let real: Vec<(String, String)> = MAILS
        .iter()
        .map(|(s, b)| (s.to_string(), b.to_string()))
        .collect();
    let plain: Vec<(String, String)> = MAILS.iter().map(|(s, b)| (ascii(s), ascii(b))).collect();
    let (t_real, t_plain) = (time(&real), time(&plain));
    println!(
        "extract, buyer mail with non-ASCII text: {:.1} µs; the same in ASCII: {:.1} µs; ratio {:.2}x",
        t_real.as_secs_f64() * 1e6,
        t_plain.as_secs_f64() * 1e6,
        t_real.as_secs_f64() / t_plain.as_secs_f64()
    );
}

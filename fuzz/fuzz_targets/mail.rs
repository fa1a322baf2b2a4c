//! Any bytes as a mail: parsed whole and lean, read for the buyer's new
//! text and facts, classified, and searched for the Message-IDs a bounce
//! names. None of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticketd::core::{classify, extract, parse, quote};

fuzz_target!(|raw: &[u8]| {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
    for msg in [parse::parse(raw), parse::parse_lean(raw)] {
        let new_text = quote::new_text(&msg.text);
        let _ = extract::extract(&msg.subject, &new_text, today);
        let _ = extract::order_numbers(&msg.attached_text);
        let _ = classify::classify(&msg, Some("support@example.test"));
        let _ = quote::is_forward(&msg.subject);
    }
    let _ = parse::embedded_message_ids(raw);
});

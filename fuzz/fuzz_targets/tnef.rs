//! Any bytes as Outlook's winmail.dat, and as the compressed rich text
//! inside one: files, text or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticketd::core::{rtf, tnef};

fuzz_target!(|data: &[u8]| {
    let _ = tnef::files(data);
    if let Some(text) = tnef::decompress_rtf(data) {
        let _ = rtf::to_text(&text);
    }
    let _ = rtf::to_text(data);
});

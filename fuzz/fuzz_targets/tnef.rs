//! Any bytes as Outlook's winmail.dat: files or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ticketd::core::tnef::files(data);
});

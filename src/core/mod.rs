//! Pure decisions about mail: no I/O, no clock, no database. Each function
//! takes data and returns data, so each can be tested with an .eml file.

pub mod classify;
pub mod extract;
pub mod html;
pub mod intake;
pub mod large_parts;
pub mod parse;
pub mod policy;
pub mod quote;
pub mod thread;

/// Builds what reading a mail needs (the regexes of `extract` and `quote`)
/// ahead of the first mail, so it is not paid by the first one filed.
pub fn warm_up() {
    extract::warm_up();
    quote::warm_up();
}

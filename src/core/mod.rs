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

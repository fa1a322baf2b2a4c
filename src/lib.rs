//! ticketd turns the "Whatnot Support" mailbox into tickets.
//!
//! The crate is split the way the data flows: `core` holds the pure
//! decisions (parse, classify, thread, extract, policy) that take data and
//! return data; `store` is the SQLite file and the attachment directory;
//! `imap`, `smtp` and `daemon` move bytes between the servers and the
//! pipeline in `ingest`, which is the only place that ties a parsed message to
//! one store transaction.

pub mod ack;
pub mod config;
pub mod core;
pub mod daemon;
pub mod imap;
pub mod ingest;
pub mod metrics;
pub mod net;
pub mod reply;
pub mod rig;
pub mod service;
pub mod smtp;
pub mod store;
pub mod web;

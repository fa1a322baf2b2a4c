//! Sends what the outbox holds. Each row is a complete message built at
//! enqueue time (its Message-ID fixed then), so a resend after a crash is
//! recognisably the same mail. A failed send stays queued and is retried
//! with capped exponential backoff.

use std::time::Duration;

use chrono::Utc;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tracing::{info, warn};

use crate::config::{AuthMethod, SmtpConfig, TlsMode};
use crate::store::{Store, StoreError};

/// After this many failed attempts an item is marked failed (about two
/// days with the backoff below) and waits for an operator.
pub const MAX_ATTEMPTS: i64 = 20;
const BACKOFF_FIRST_SECS: i64 = 5;
const BACKOFF_CAP_SECS: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot read smtp.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("SMTP setup: {0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

pub fn transport(cfg: &SmtpConfig) -> Result<Transport, SmtpError> {
    let setup = |e: &dyn std::fmt::Display| SmtpError::Setup(e.to_string());
    let tls_params = || -> Result<TlsParameters, SmtpError> {
        let mut b = TlsParameters::builder(cfg.host.clone());
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| SmtpError::CaFile {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| SmtpError::CaFile {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            // Same rule as IMAP: a configured CA is the only one trusted.
            b = b
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| setup(&e))
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
        .port(cfg.port)
        .timeout(Some(Duration::from_secs(60)));
    builder = match cfg.tls {
        TlsMode::Implicit => builder.tls(Tls::Wrapper(tls_params()?)),
        TlsMode::Starttls => builder.tls(Tls::Required(tls_params()?)),
        TlsMode::None => builder.tls(Tls::None),
    };
    if let Some((user, source)) = &cfg.credentials {
        // Fetched now: a command-sourced token is fresh for this transport.
        let secret = source.get().map_err(SmtpError::Setup)?;
        builder = builder.credentials(Credentials::new(user.clone(), secret.expose().to_string()));
        if cfg.auth == AuthMethod::Xoauth2 {
            builder = builder.authentication(vec![Mechanism::Xoauth2]);
        }
    }
    Ok(builder.build())
}

/// Delay before attempt `attempts + 1`: 5 s, 10 s, 20 s, ... capped at 1 h.
pub fn backoff(attempts: i64) -> i64 {
    let shift = attempts.clamp(0, 20) as u32;
    (BACKOFF_FIRST_SECS.saturating_mul(1i64 << shift)).min(BACKOFF_CAP_SECS)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStats {
    pub sent: usize,
    pub failed: usize,
}

/// Sends every due outbox item once. Returns what happened; SMTP errors are
/// recorded on the rows, not returned.
pub async fn deliver_due(
    store: &mut Store,
    transport: &Transport,
) -> Result<DeliveryStats, SmtpError> {
    let mut stats = DeliveryStats::default();
    let now = Utc::now().timestamp();
    // Batches of 100 until nothing due is left: every item either becomes
    // sent or failed, or moves its next attempt past `now`, so this ends.
    loop {
        let batch = store.outbox_due(now)?;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            let envelope = match (item.envelope_from.parse(), item.envelope_to.parse()) {
                (Ok(from), Ok(to)) => {
                    Envelope::new(Some(from), vec![to]).map_err(|e| e.to_string())
                }
                _ => Err("invalid envelope address".to_string()),
            };
            // Err((message, permanent)): a 5xx answer will not change on retry.
            let result = match envelope {
                Ok(env) => transport
                    .send_raw(&env, &item.raw)
                    .await
                    .map_err(|e| (e.to_string(), e.is_permanent())),
                Err(e) => Err((e, true)),
            };
            let now = Utc::now().timestamp();
            match result {
                Ok(_) => {
                    store.outbox_sent(item.id, now)?;
                    info!(message_id = %item.message_id, to = %item.envelope_to, "acknowledgement sent");
                    stats.sent += 1;
                }
                Err((e, permanent)) => {
                    let give_up = permanent || item.attempts + 1 >= MAX_ATTEMPTS;
                    let next = now + backoff(item.attempts);
                    store.outbox_failed_attempt(item.id, &e, next, give_up)?;
                    warn!(message_id = %item.message_id, attempt = item.attempts + 1, give_up, error = %e, "send failed");
                    stats.failed += 1;
                }
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), 5);
        assert_eq!(backoff(1), 10);
        assert_eq!(backoff(3), 40);
        assert_eq!(backoff(10), 3600);
        assert_eq!(backoff(1000), 3600);
    }
}

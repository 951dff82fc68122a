//! Budget alerts: a webhook per threshold crossed, once per threshold per period, signed and retried.
//!
//! The body is JSON ([`Alert`]). `x-tollgate-signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` signs
//! `"<t>.<body>"` with the configured secret (verify by recomputing it, and reject stale `t`). Delivery runs on
//! its own task, off the request path; failures (connection errors, non-2xx) are retried with exponential
//! backoff (the `backoff` crate) for up to `max_elapsed`, then logged and counted as dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::Secret;

/// Signature header.
pub const SIGNATURE_HEADER: &str = "x-tollgate-signature";
/// Alerts waiting for delivery beyond this are dropped (and counted): a dead webhook must not grow memory.
const QUEUE: usize = 1024;

/// One alert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    pub budget_id: String,
    pub subject_kind: String,
    pub subject: String,
    pub period: String,
    pub period_start_ms: i64,
    pub threshold_percent: u8,
    /// Decimal amounts in `currency` (exact; no floats).
    pub spent: String,
    pub limit: String,
    pub currency: String,
    pub hard: bool,
}

/// Delivery counters.
#[derive(Debug, Default)]
pub struct AlertStats {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dropped: AtomicU64,
}

/// Hands alerts to the delivery task without waiting.
#[derive(Debug, Clone)]
pub struct AlertSender {
    tx: mpsc::Sender<Alert>,
    pub stats: Arc<AlertStats>,
}

impl AlertSender {
    pub fn send(&self, alert: Alert) {
        if self.tx.try_send(alert).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "tollgate::budget", "budget alert queue full; alert dropped");
        }
    }
}

/// Where and how alerts go.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: reqwest::Url,
    pub secret: Secret,
    /// Give up on one alert after this long.
    pub max_elapsed: Duration,
}

/// Starts the delivery task (needs a tokio runtime).
#[must_use]
pub fn start(config: WebhookConfig) -> AlertSender {
    let (tx, mut rx) = mpsc::channel::<Alert>(QUEUE);
    let stats = Arc::new(AlertStats::default());
    let task_stats = stats.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        while let Some(alert) = rx.recv().await {
            deliver(&client, &config, &alert, &task_stats).await;
        }
    });
    AlertSender { tx, stats }
}

async fn deliver(
    client: &reqwest::Client,
    config: &WebhookConfig,
    alert: &Alert,
    stats: &AlertStats,
) {
    let body = match serde_json::to_vec(alert) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(target: "tollgate::budget", error = %e, "cannot encode a budget alert");
            return;
        }
    };
    let mut policy = backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(Duration::from_millis(200))
        .with_max_interval(Duration::from_secs(30))
        .with_max_elapsed_time(Some(config.max_elapsed))
        .build();
    let result = loop {
        let error = match post(client, config, &body).await {
            Ok(()) => break Ok(()),
            Err(e) => e,
        };
        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        match backoff::backoff::Backoff::next_backoff(&mut policy) {
            Some(pause) => tokio::time::sleep(pause).await,
            None => break Err(error),
        }
    };
    match result {
        Ok(()) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "tollgate::budget", budget = %alert.budget_id, threshold = alert.threshold_percent,
                error = %e, "budget alert not delivered; giving up");
        }
    }
}

/// One signed POST; `Err` with a short reason for a connection error or a non-2xx answer.
async fn post(client: &reqwest::Client, config: &WebhookConfig, body: &[u8]) -> Result<(), String> {
    let t = crate::clock::now_secs();
    let signature = sign(config.secret.expose().as_bytes(), t, body);
    match client
        .post(config.url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body.to_vec())
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(e) => Err(e.without_url().to_string()),
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
#[must_use]
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this arm is unreachable in practice.
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_style_vector() {
        // HMAC-SHA256(key = "key", "The quick brown fox jumps over the lazy dog") — Wikipedia's HMAC example;
        // here the signed string is "<t>.<body>", so split the message accordingly.
        let s = sign(b"key", 1, b"fox");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"1.fox");
        assert_eq!(
            s,
            format!("t=1,v1={}", hex::encode(mac.finalize().into_bytes()))
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}

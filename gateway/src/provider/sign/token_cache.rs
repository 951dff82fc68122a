//! A cache of OAuth-style access tokens, and the two token exchanges that feed it.
//!
//! [`TokenCache`] asks its [`TokenSource`] for a token only when it has none or the one it has is within the
//! refresh margin of expiry ([`refresh_margin`]: 10% of the lifetime, at most five minutes). Refreshes are
//! single-flight: concurrent callers wait for the one fetch in progress and share its outcome, success or
//! failure. A failure is never cached: it is handed to the callers that were waiting for that fetch, and the
//! next caller fetches again.
//!
//! Sources:
//! - [`JwtBearerSource`] (Vertex AI): a service-account JWT assertion POSTed form-encoded
//!   (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…`) to the token endpoint.
//! - [`ClientCredentialsSource`] (Baidu Qianfan v1):
//!   `POST {token_url}?grant_type=client_credentials&client_id=…&client_secret=…`.
//!
//! Both answer `{"access_token","expires_in"}`. Token-endpoint failures map to the upstream errors the router
//! understands: unreachable / 429 / 5xx are retryable, 400 / 401 / 403 (or an `error` field) mean the
//! credentials were refused. Timeouts are the `reqwest::Client`'s. No message carries the URL (Qianfan's has
//! the secret in its query) or a token.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::time::Instant;

use super::jwt::ServiceAccountSigner;
use crate::config::Secret;
use crate::error::GatewayError;

/// The OAuth2 grant type of a JWT assertion (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Baidu's OAuth endpoint for Qianfan v1 (`wenxinworkshop`) access tokens.
pub const BAIDU_TOKEN_URL: &str = "https://aip.baidubce.com/oauth/2.0/token";
/// Refresh at most this long before expiry.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Lifetime assumed when a token endpoint omits `expires_in` (it is only RECOMMENDED by RFC 6749).
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(300);
/// No token is kept longer than this, whatever `expires_in` says.
const MAX_CACHED_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A token response larger than this is not a token response.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// A bearer token and how long it lives from when it was received.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub value: Secret,
    pub expires_in: Duration,
}

/// Where a [`TokenCache`] gets fresh tokens.
pub trait TokenSource: Send + Sync {
    /// One token exchange.
    fn fetch(&self) -> impl Future<Output = Result<AccessToken, GatewayError>> + Send;
}

/// How long before expiry a token is refreshed: 10% of its lifetime, at most five minutes.
#[must_use]
pub fn refresh_margin(expires_in: Duration) -> Duration {
    (expires_in / 10).min(MAX_REFRESH_MARGIN)
}

/// Caches one source's token; see the module docs.
#[derive(Debug)]
pub struct TokenCache<S> {
    source: S,
    current: RwLock<Option<CachedToken>>,
    /// Held for the whole of a fetch (single flight); holds the last fetch's error while it is the latest.
    refresh: tokio::sync::Mutex<Option<GatewayError>>,
    /// Fetches finished so far, success or not: tells a waiter whether a fetch ended while it waited.
    fetches_done: AtomicU64,
}

#[derive(Debug)]
struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

impl<S: TokenSource> TokenCache<S> {
    #[must_use]
    pub fn new(source: S) -> Self {
        Self {
            source,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            fetches_done: AtomicU64::new(0),
        }
    }

    /// A token valid for at least the refresh margin, fetched if needed.
    ///
    /// # Errors
    /// The source's error, from this caller's fetch or from the fetch it waited for.
    pub async fn token(&self) -> Result<Secret, GatewayError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let seen = self.fetches_done.load(Ordering::Acquire);
        let mut last_error = self.refresh.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if self.fetches_done.load(Ordering::Acquire) != seen {
            if let Some(error) = last_error.as_ref() {
                return Err(copy_of(error));
            }
        }
        let outcome = self.source.fetch().await;
        let received_at = Instant::now();
        self.fetches_done.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(token) => {
                *last_error = None;
                let lifetime = token.expires_in.min(MAX_CACHED_LIFETIME);
                let refresh_at = received_at + (lifetime - refresh_margin(lifetime));
                let value = token.value.clone();
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(CachedToken {
                    value: token.value,
                    refresh_at,
                });
                Ok(value)
            }
            Err(error) => {
                *last_error = Some(copy_of(&error));
                Err(error)
            }
        }
    }

    /// Forgets `rejected` (a token the upstream refused before its time, e.g. Qianfan error 110/111), unless a
    /// newer one already replaced it.
    pub fn invalidate(&self, rejected: &Secret) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| &c.value == rejected) {
            *current = None;
        }
    }

    fn fresh(&self) -> Option<Secret> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.value.clone())
    }
}

/// The same error again, for each caller that waited on the fetch that produced it.
fn copy_of(error: &GatewayError) -> GatewayError {
    match error {
        GatewayError::UpstreamUnreachable { provider, message } => {
            GatewayError::UpstreamUnreachable {
                provider: provider.clone(),
                message: message.clone(),
            }
        }
        GatewayError::UpstreamFailed {
            provider,
            status,
            message,
        } => GatewayError::UpstreamFailed {
            provider: provider.clone(),
            status: *status,
            message: message.clone(),
        },
        GatewayError::UpstreamAuthFailed { provider } => GatewayError::UpstreamAuthFailed {
            provider: provider.clone(),
        },
        GatewayError::UpstreamTimeout { provider, timeout } => GatewayError::UpstreamTimeout {
            provider: provider.clone(),
            timeout: *timeout,
        },
        other => GatewayError::Internal(other.to_string()),
    }
}

/// Vertex AI tokens: a fresh service-account assertion exchanged at the token endpoint.
#[derive(Debug)]
pub struct JwtBearerSource {
    provider: String,
    client: reqwest::Client,
    signer: ServiceAccountSigner,
    token_url: String,
}

impl JwtBearerSource {
    /// Exchanges at the key file's `token_uri` (also the assertion's audience).
    #[must_use]
    pub fn new(
        provider: impl Into<String>,
        client: reqwest::Client,
        signer: ServiceAccountSigner,
    ) -> Self {
        let token_url = signer.token_uri().to_owned();
        Self {
            provider: provider.into(),
            client,
            signer,
            token_url,
        }
    }

    /// POSTs to `token_url` instead (a proxy, a test server); the audience stays the key file's `token_uri`.
    #[must_use]
    pub fn with_token_url(mut self, token_url: impl Into<String>) -> Self {
        self.token_url = token_url.into();
        self
    }
}

impl TokenSource for JwtBearerSource {
    async fn fetch(&self) -> Result<AccessToken, GatewayError> {
        let assertion = self.signer.assertion(SystemTime::now())?;
        exchange_jwt_bearer(&self.client, &self.provider, &self.token_url, &assertion).await
    }
}

/// Baidu Qianfan v1 tokens: the API key / secret key pair exchanged with the client-credentials grant.
#[derive(Debug)]
pub struct ClientCredentialsSource {
    provider: String,
    client: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
}

impl ClientCredentialsSource {
    /// Exchanges at [`BAIDU_TOKEN_URL`].
    #[must_use]
    pub fn new(
        provider: impl Into<String>,
        client: reqwest::Client,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        Self {
            provider: provider.into(),
            client,
            token_url: BAIDU_TOKEN_URL.to_owned(),
            client_id: client_id.into(),
            client_secret,
        }
    }

    #[must_use]
    pub fn with_token_url(mut self, token_url: impl Into<String>) -> Self {
        self.token_url = token_url.into();
        self
    }
}

impl TokenSource for ClientCredentialsSource {
    async fn fetch(&self) -> Result<AccessToken, GatewayError> {
        exchange_client_credentials(
            &self.client,
            &self.provider,
            &self.token_url,
            &self.client_id,
            &self.client_secret,
        )
        .await
    }
}

/// `POST token_url` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…` (form-encoded).
///
/// # Errors
/// [`GatewayError::UpstreamUnreachable`] when it cannot be sent or read, [`GatewayError::UpstreamAuthFailed`]
/// for 400 / 401 / 403 or an `error` field, [`GatewayError::UpstreamFailed`] for other statuses or an answer
/// without a usable `access_token`.
pub async fn exchange_jwt_bearer(
    client: &reqwest::Client,
    provider: &str,
    token_url: &str,
    assertion: &str,
) -> Result<AccessToken, GatewayError> {
    let request = client
        .post(token_url)
        .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)]);
    read_token_response(provider, request.send().await).await
}

/// `POST token_url?grant_type=client_credentials&client_id=…&client_secret=…` (Baidu's v1 token flow).
///
/// # Errors
/// [`GatewayError::UpstreamUnreachable`] when it cannot be sent or read, [`GatewayError::UpstreamAuthFailed`]
/// for 400 / 401 / 403 or an `error` field, [`GatewayError::UpstreamFailed`] for other statuses or an answer
/// without a usable `access_token`.
pub async fn exchange_client_credentials(
    client: &reqwest::Client,
    provider: &str,
    token_url: &str,
    client_id: &str,
    client_secret: &Secret,
) -> Result<AccessToken, GatewayError> {
    let request = client.post(token_url).query(&[
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
    ]);
    read_token_response(provider, request.send().await).await
}

/// The fields of a token response (no `Debug`: it holds the token).
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<ExpiresIn>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// `expires_in` as a number or, from some servers, a numeric string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Seconds(u64),
    Text(String),
}

/// Turns a token endpoint's answer into a token or the matching upstream error.
///
/// # Errors
/// [`GatewayError::UpstreamUnreachable`] (not sent / body not read), [`GatewayError::UpstreamAuthFailed`]
/// (400 / 401 / 403, or an `error` field), [`GatewayError::UpstreamFailed`] (any other status, or no usable
/// `access_token`).
async fn read_token_response(
    provider: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<AccessToken, GatewayError> {
    // `without_url`: Qianfan's URL carries the client secret.
    let unreachable = |e: reqwest::Error| GatewayError::UpstreamUnreachable {
        provider: provider.to_owned(),
        message: format!("token endpoint: {}", e.without_url()),
    };
    let failed = |status: Option<u16>, message: &str| GatewayError::UpstreamFailed {
        provider: provider.to_owned(),
        status,
        message: format!("token endpoint: {message}"),
    };
    let response = sent.map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?;
    let parsed = serde_json::from_slice::<TokenResponse>(&body).ok();
    let refused = parsed.as_ref().is_some_and(|r| r.error.is_some());
    if matches!(status.as_u16(), 400 | 401 | 403) || (status.is_success() && refused) {
        let code = parsed.as_ref().and_then(|r| r.error.as_ref());
        tracing::warn!(provider, status = status.as_u16(), error = ?code, "token endpoint refused the credentials");
        return Err(GatewayError::UpstreamAuthFailed {
            provider: provider.to_owned(),
        });
    }
    if !status.is_success() {
        return Err(failed(Some(status.as_u16()), &format!("answered {status}")));
    }
    if body.len() > MAX_TOKEN_RESPONSE_BYTES {
        return Err(failed(Some(status.as_u16()), "the answer is too large"));
    }
    let parsed = parsed
        .ok_or_else(|| failed(Some(status.as_u16()), "the answer is not a token response"))?;
    let value = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| failed(Some(status.as_u16()), "the answer has no access_token"))?;
    let expires_in = match parsed.expires_in {
        Some(ExpiresIn::Seconds(secs)) => Duration::from_secs(secs),
        Some(ExpiresIn::Text(text)) => text
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| failed(Some(status.as_u16()), "expires_in is not a number"))?,
        None => DEFAULT_EXPIRES_IN,
    };
    Ok(AccessToken {
        value: Secret::new(value),
        expires_in,
    })
}

#[cfg(test)]
mod tests;

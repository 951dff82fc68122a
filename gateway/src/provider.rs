//! Upstream providers: translate and sign, nothing else.
//!
//! Limits, retries, failover and event emission live in the orchestrator ([`crate::proxy`]); a provider only
//! knows its URL, its keys, its quirks ([`kind`]), how to shape a request ([`request`]), where its usage is
//! ([`usage`]) and what its errors mean ([`upstream_error`]). Kinds whose wire is not OpenAI's translate
//! through an [`adapter::Adapter`] ([`anthropic`], [`gemini`], [`vertex`]). Native providers' request signing
//! and credentials are in [`sign`] (Vertex's service-account tokens are wired in), Bedrock's binary stream
//! framing in [`eventstream`] (not wired in yet).

pub mod adapter;
pub mod anthropic;
pub mod eventstream;
pub mod gemini;
pub mod kind;
pub mod request;
pub mod sign;
pub mod upstream_error;
pub mod usage;
pub mod vertex;

use http::{HeaderName, HeaderValue};
use tollgate_schemas::Endpoint;

pub use kind::ProviderKind;

use crate::config::{ProviderConfig, Secret, Timeouts};
use crate::error::GatewayError;
use crate::rate_limit::UpstreamKeyLimiter;

/// One configured upstream account set: a kind, a base URL and one or more API keys.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Endpoint URLs, parsed once (adapter kinds: built per request from `base`).
    chat_url: reqwest::Url,
    /// The base URL without a trailing `/` (Vertex: down to `…/locations/{region}`).
    base: String,
    /// Vertex AI: the service account's cached access token and the publisher setting.
    vertex: Option<vertex::VertexAuth>,
    embeddings_url: reqwest::Url,
    /// The header carrying the key: `Authorization` (`Bearer <key>`), or the adapter's (`x-api-key`).
    auth_header: HeaderName,
    /// Auth header value per key slot, marked sensitive so it never prints; one `None` slot for servers
    /// that need no key.
    keys: Vec<Option<HeaderValue>>,
    /// The provider's own quota per key, when configured (same indexes as `keys`).
    key_limits: Vec<Option<UpstreamKeyLimiter>>,
    pub timeouts: Timeouts,
    client: reqwest::Client,
}

impl Provider {
    /// Builds the provider's HTTP client (pooled keep-alive, TCP_NODELAY, its connect timeout).
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when a key cannot be a header value or the TLS stack cannot start.
    pub fn try_new(config: &ProviderConfig) -> Result<Self, GatewayError> {
        let adapter = config.kind.adapter();
        let auth_header = adapter.map_or(http::header::AUTHORIZATION, |a| a.auth_header("").0);
        let auth = config
            .api_keys
            .iter()
            .map(|key| {
                let value = match adapter {
                    Some(a) => a.auth_header(key.expose()).1,
                    None => format!("Bearer {}", key.expose()),
                };
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    GatewayError::Internal(format!(
                        "an API key of provider {} has invalid characters",
                        config.name
                    ))
                })?;
                value.set_sensitive(true);
                Ok(value)
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(config.timeouts.connect)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| GatewayError::Internal(format!("cannot build the HTTP client: {e}")))?;
        let vertex = config
            .vertex
            .as_ref()
            .map(|v| vertex::VertexAuth::try_new(&config.name, v, client.clone()))
            .transpose()?;
        let base = match &config.vertex {
            Some(v) => vertex::location_base(config.base_url.as_str(), v),
            None => config.base_url.as_str().trim_end_matches('/').to_string(),
        };
        let base = base.as_str();
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| {
                GatewayError::Internal(format!("provider {} has a bad base URL: {e}", config.name))
            })
        };
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            chat_url: url("/chat/completions")?,
            auth_header,
            embeddings_url: url("/embeddings")?,
            key_limits: (0..auth.len().max(1))
                .map(|_| {
                    let l = config.key_limits;
                    (l.rpm.is_some() || l.tpm.is_some()).then(|| UpstreamKeyLimiter::new(l))
                })
                .collect(),
            keys: if auth.is_empty() {
                vec![None]
            } else {
                auth.into_iter().map(Some).collect()
            },
            timeouts: config.timeouts,
            client,
            base: base.to_string(),
            vertex,
        })
    }

    /// The translator for `upstream_model` on this provider; `None` for the OpenAI-wire kinds. The one
    /// dispatch point (request shaping, attempts): a Vertex provider picks its publisher's per model.
    #[must_use]
    pub fn adapter(&self, upstream_model: &str) -> Option<&'static dyn adapter::Adapter> {
        match &self.vertex {
            Some(v) => Some(v.adapter(upstream_model)),
            None => self.kind.adapter(),
        }
    }

    /// The access token to send, for providers that authenticate with one (Vertex AI: fetched with the
    /// service account and cached until shortly before it expires); `None` for key-signed providers.
    ///
    /// # Errors
    /// The token exchange's failure (unreachable / refused credentials / a bad answer).
    pub async fn access_token(&self) -> Result<Option<Secret>, GatewayError> {
        match &self.vertex {
            Some(v) => v.token().await.map(Some),
            None => Ok(None),
        }
    }

    /// Forgets `token` after the upstream refused it (401), so the next request fetches a fresh one.
    pub fn invalidate_token(&self, token: &Secret) {
        if let Some(v) = &self.vertex {
            v.invalidate(token);
        }
    }

    /// Number of key slots (1 for a server that needs no key).
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Takes one request of about `estimated_tokens` from key slot `key`'s quota, or says how long until it
    /// has room.
    ///
    /// # Errors
    /// The wait, when the key's configured quota is spent.
    pub fn try_acquire(
        &self,
        key: usize,
        estimated_tokens: u32,
    ) -> Result<(), std::time::Duration> {
        match self.key_limits.get(key) {
            Some(Some(limiter)) => limiter.try_acquire(estimated_tokens),
            _ => Ok(()),
        }
    }

    /// A POST to `endpoint` for `upstream_model`, signed with key slot `key` (or with `token`, from
    /// [`Provider::access_token`]).
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when an adapter's URL for this model does not parse.
    pub fn post(
        &self,
        endpoint: Endpoint,
        body: bytes::Bytes,
        key: usize,
        upstream_model: &str,
        stream: bool,
        token: Option<&Secret>,
    ) -> Result<reqwest::RequestBuilder, GatewayError> {
        let adapter = self.adapter(upstream_model);
        let url = match (endpoint, adapter) {
            (Endpoint::Embeddings, _) => self.embeddings_url.clone(),
            (_, None) => self.chat_url.clone(),
            (_, Some(a)) => reqwest::Url::parse(&a.chat_url(&self.base, upstream_model, stream))
                .map_err(|e| {
                    GatewayError::Internal(format!(
                        "provider {} has no valid URL for model {upstream_model:?}: {e}",
                        self.name
                    ))
                })?,
        };
        let mut request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(adapter) = adapter {
            for (name, value) in adapter.fixed_headers() {
                request = request.header(*name, *value);
            }
            if let Some(token) = token {
                let (name, value) = adapter.auth_header(token.expose());
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    GatewayError::Internal(format!(
                        "provider {}: the access token has invalid characters",
                        self.name
                    ))
                })?;
                value.set_sensitive(true);
                return Ok(request.header(name, value));
            }
        }
        Ok(match self.keys.get(key).cloned().flatten() {
            Some(auth) => request.header(self.auth_header.clone(), auth),
            None => request,
        })
    }
}

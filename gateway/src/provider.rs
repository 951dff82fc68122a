//! Upstream providers: translate and sign, nothing else.
//!
//! Limits, retries, failover and event emission live in the orchestrator ([`crate::proxy`]); a provider only
//! knows its URL, its keys, its quirks ([`kind`]), how to shape a request ([`request`]), where its usage is
//! ([`usage`]) and what its errors mean ([`upstream_error`]). Kinds whose wire is not OpenAI's translate
//! through an [`adapter::Adapter`] ([`anthropic`], [`hunyuan_native`], [`qianfan_v1`], [`dashscope_native`]).
//! Native providers' request signing and credentials are in [`sign`] (wired per key slot by [`credentials`]
//! for TC3 and Qianfan v1 tokens), Bedrock's binary stream framing in [`eventstream`] (not wired in yet).

pub mod adapter;
pub mod anthropic;
pub mod credentials;
pub mod dashscope_native;
pub mod eventstream;
pub mod hunyuan_native;
pub mod kind;
pub mod qianfan_v1;
pub mod request;
pub mod sign;
pub mod translate;
pub mod upstream_error;
pub mod usage;

use http::{HeaderName, HeaderValue};
use tollgate_schemas::Endpoint;

pub use kind::ProviderKind;

use crate::config::{ProviderConfig, Timeouts};
use crate::error::GatewayError;
use crate::rate_limit::UpstreamKeyLimiter;

/// One configured upstream account set: a kind, a base URL and one or more API keys.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Endpoint URLs, parsed once.
    chat_url: reqwest::Url,
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
    /// Per-request credentials per key slot (TC3 signing, query tokens); empty for header-auth kinds.
    signing: Vec<credentials::KeyCredential>,
}

/// A request ready to send, and the access token it carries (to invalidate if the upstream refuses it).
pub struct Prepared {
    pub request: reqwest::RequestBuilder,
    pub token: Option<crate::config::Secret>,
}

impl Provider {
    /// Builds the provider's HTTP client (pooled keep-alive, TCP_NODELAY, its connect timeout).
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when a key cannot be a header value or the TLS stack cannot start.
    pub fn try_new(config: &ProviderConfig) -> Result<Self, GatewayError> {
        let adapter = config.kind.adapter();
        let scheme = adapter.map_or(adapter::AuthScheme::Header, |a| a.auth_scheme());
        let auth_header = adapter.map_or(http::header::AUTHORIZATION, |a| a.auth_header("").0);
        let header_keys: &[crate::config::Secret] = if scheme == adapter::AuthScheme::Header {
            &config.api_keys
        } else {
            &[]
        };
        let auth = header_keys
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
        let signing = config
            .api_keys
            .iter()
            .filter_map(|key| {
                credentials::KeyCredential::of(
                    scheme,
                    &config.name,
                    key,
                    &config.base_url,
                    config.region.as_deref(),
                    &client,
                )
                .transpose()
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let base = config.base_url.as_str().trim_end_matches('/');
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| {
                GatewayError::Internal(format!("provider {} has a bad base URL: {e}", config.name))
            })
        };
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            chat_url: match adapter {
                Some(a) => reqwest::Url::parse(&a.chat_url(base)).map_err(|e| {
                    GatewayError::Internal(format!(
                        "provider {} has a bad base URL: {e}",
                        config.name
                    ))
                })?,
                None => url("/chat/completions")?,
            },
            auth_header,
            embeddings_url: url("/embeddings")?,
            key_limits: (0..auth.len().max(signing.len()).max(1))
                .map(|_| {
                    let l = config.key_limits;
                    (l.rpm.is_some() || l.tpm.is_some()).then(|| UpstreamKeyLimiter::new(l))
                })
                .collect(),
            keys: if !signing.is_empty() {
                vec![None; signing.len()]
            } else if auth.is_empty() {
                vec![None]
            } else {
                auth.into_iter().map(Some).collect()
            },
            timeouts: config.timeouts,
            client,
            signing,
        })
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

    /// A POST to `endpoint`, signed with key slot `key`.
    pub fn post(
        &self,
        endpoint: Endpoint,
        body: bytes::Bytes,
        key: usize,
    ) -> reqwest::RequestBuilder {
        let url = match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => self.chat_url.clone(),
            Endpoint::Embeddings => self.embeddings_url.clone(),
        };
        let mut request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(adapter) = self.kind.adapter() {
            for (name, value) in adapter.fixed_headers() {
                request = request.header(*name, *value);
            }
        }
        match self.keys.get(key).cloned().flatten() {
            Some(auth) => request.header(self.auth_header.clone(), auth),
            None => request,
        }
    }

    /// A POST to `endpoint` for `upstream_model`, with key slot `key`'s credentials: [`Provider::post`] for
    /// OpenAI-wire and static-header kinds; for the others the model's URL, the stream headers, and a TC3
    /// signature or an access token (fetched if none is cached).
    ///
    /// # Errors
    /// The token endpoint's failure, or a signing failure.
    pub async fn prepare(
        &self,
        endpoint: Endpoint,
        body: bytes::Bytes,
        key: usize,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Prepared, GatewayError> {
        let Some(adapter) = self.kind.adapter() else {
            return Ok(Prepared {
                request: self.post(endpoint, body, key),
                token: None,
            });
        };
        let url = adapter
            .model_url(&self.chat_url, upstream_model)
            .unwrap_or_else(|| self.chat_url.clone());
        let (mut request, token) = match self.signing.get(key) {
            Some(credential) => credential.apply(&self.client, url, body).await?,
            None => {
                let request = self
                    .client
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body);
                match self.keys.get(key).cloned().flatten() {
                    Some(auth) => (request.header(self.auth_header.clone(), auth), None),
                    None => (request, None),
                }
            }
        };
        for (name, value) in adapter.fixed_headers() {
            request = request.header(*name, *value);
        }
        if stream {
            for (name, value) in adapter.stream_headers() {
                request = request.header(*name, *value);
            }
        }
        Ok(Prepared { request, token })
    }

    /// Forgets an access token of key slot `key` that the upstream refused (Qianfan 110 / 111).
    pub fn invalidate_token(&self, key: usize, token: &crate::config::Secret) {
        if let Some(credential) = self.signing.get(key) {
            credential.invalidate(token);
        }
    }
}

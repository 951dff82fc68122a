//! Upstream providers: translate and sign, nothing else.
//!
//! Limits, retries, failover and event emission live in the orchestrator ([`crate::proxy`]); a provider only
//! knows its URL, its keys, its quirks ([`kind`]), how to shape a request ([`request`]), where its usage is
//! ([`usage`]) and what its errors mean ([`upstream_error`]). Kinds whose wire is not OpenAI's translate
//! through an [`adapter::Adapter`] ([`anthropic`], [`bedrock`], [`gemini`], [`vertex`], [`hunyuan_native`],
//! [`qianfan_v1`], [`dashscope_native`]; shared pieces in [`translate`]), picked per model by
//! [`Provider::adapter`]; [`azure`] is OpenAI wire with its own URLs and key header. Every request is built
//! and authorized in one place, [`Provider::prepare`], with its key slot's [`credentials`]: a static header,
//! SigV4 (Bedrock) or TC3 (Hunyuan native) over the final URL and body, or a cached OAuth access token
//! (Vertex's service account in a header, Qianfan v1's client credentials in the query; [`sign::token_cache`]).
//! Bedrock's binary stream framing is in [`eventstream`].

pub mod adapter;
pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod credentials;
pub mod dashscope_native;
pub mod embeddings;
pub mod eventstream;
pub mod gemini;
pub mod hunyuan_native;
pub mod kind;
pub mod qianfan_v1;
pub mod request;
pub mod sign;
pub mod translate;
pub mod upstream_error;
pub mod usage;
pub mod vertex;

use tollgate_schemas::Endpoint;

pub use kind::ProviderKind;

use crate::config::{ProviderConfig, Secret, Timeouts};
use crate::error::GatewayError;
use crate::rate_limit::UpstreamKeyLimiter;
use credentials::{KeyCredential, TokenPlacement, Tokens};

/// Where requests go.
#[derive(Debug)]
enum Urls {
    /// One URL per endpoint, parsed once (OpenAI-wire kinds, Azure v1).
    Fixed {
        chat: reqwest::Url,
        embeddings: reqwest::Url,
    },
    /// Azure with a dated API version: the deployment is in the path.
    AzureDeployments { base: String, api_version: String },
    /// An adapter kind: [`adapter::Adapter::chat_url`] per model and streaming, and
    /// [`adapter::Adapter::embeddings_url`], under `base` (Vertex: down to `…/locations/{region}`).
    Adapter { base: String },
}

/// A request ready to send, and the access token it carries (to invalidate if the upstream refuses it).
pub struct Prepared {
    pub request: reqwest::RequestBuilder,
    pub token: Option<Secret>,
}

/// One configured upstream account set: a kind, a base URL and one or more API keys.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    urls: Urls,
    /// Credentials per key slot (header values marked sensitive, so they never print); one `None` slot for
    /// servers that need no key.
    keys: Vec<Option<KeyCredential>>,
    /// Vertex AI: a fixed publisher (else it follows each model id).
    publisher: Option<vertex::Publisher>,
    /// The provider's own quota per key, when configured (same indexes as `keys`).
    key_limits: Vec<Option<UpstreamKeyLimiter>>,
    pub timeouts: Timeouts,
    client: reqwest::Client,
}

fn bad_url(name: &str, e: &dyn std::fmt::Display) -> GatewayError {
    GatewayError::Internal(format!("provider {name} has a bad base URL: {e}"))
}

impl Provider {
    /// Builds the provider's HTTP client (pooled keep-alive, TCP_NODELAY, its connect timeout).
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when a key cannot be a header value or the TLS stack cannot start.
    pub fn try_new(config: &ProviderConfig) -> Result<Self, GatewayError> {
        let adapter = config.kind.adapter();
        let header_of = |key: &str| match (adapter, &config.azure) {
            (Some(a), _) => a.auth_header(key),
            (None, Some(azure)) => azure::auth_header(azure, key),
            (None, None) => (http::header::AUTHORIZATION, format!("Bearer {key}")),
        };
        let scheme = adapter.map_or(adapter::AuthScheme::Header, |a| a.auth_scheme());
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(config.timeouts.connect)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| GatewayError::Internal(format!("cannot build the HTTP client: {e}")))?;
        let mut auth = config
            .api_keys
            .iter()
            .map(|key| {
                KeyCredential::of(
                    scheme,
                    &config.name,
                    key,
                    &config.base_url,
                    config.region.as_deref(),
                    &client,
                    header_of,
                )
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        if let Some(aws) = &config.aws {
            if let Some(credentials) = aws.credentials.clone() {
                auth.push(KeyCredential::SigV4 {
                    credentials: Box::new(credentials),
                    region: aws.region.clone(),
                });
            }
        }
        if let Some(v) = &config.vertex {
            auth.push(KeyCredential::Token {
                tokens: Tokens::ServiceAccount(Box::new(vertex::token_cache(
                    &config.name,
                    v,
                    client.clone(),
                )?)),
                placement: TokenPlacement::Header,
            });
        }
        let base = match &config.vertex {
            Some(v) => vertex::location_base(config.base_url.as_str(), v),
            None => config.base_url.as_str().trim_end_matches('/').to_string(),
        };
        let base = base.as_str();
        let parse = |url: &str| reqwest::Url::parse(url).map_err(|e| bad_url(&config.name, &e));
        let url = |path: &str| parse(&format!("{base}{path}"));
        let urls = match (adapter, &config.azure) {
            (Some(a), _) => {
                // Checked once here, so per-request URLs cannot fail on the base.
                parse(&a.chat_url(base, "m", false))?;
                Urls::Adapter {
                    base: base.to_string(),
                }
            }
            (None, Some(az)) => match azure::dated_version(az) {
                Some(v) => {
                    parse(&azure::deployment_url(base, "d", "chat/completions", v))?;
                    Urls::AzureDeployments {
                        base: base.to_string(),
                        api_version: v.to_string(),
                    }
                }
                None => Urls::Fixed {
                    chat: parse(&azure::v1_url(base, "chat/completions"))?,
                    embeddings: parse(&azure::v1_url(base, "embeddings"))?,
                },
            },
            (None, None) => Urls::Fixed {
                chat: url("/chat/completions")?,
                embeddings: url("/embeddings")?,
            },
        };
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            urls,
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
            publisher: config.vertex.as_ref().and_then(|v| v.publisher),
            timeouts: config.timeouts,
            client,
        })
    }

    /// The translator for `upstream_model` on this provider; `None` for the OpenAI-wire kinds. The one
    /// dispatch point (request shaping, attempts): a Vertex provider picks its publisher's per model.
    #[must_use]
    pub fn adapter(&self, upstream_model: &str) -> Option<&'static dyn adapter::Adapter> {
        match self.kind {
            ProviderKind::Vertex => Some(vertex::adapter(self.publisher, upstream_model)),
            kind => kind.adapter(),
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

    /// The URL of one request to `upstream_model` (the OpenAI-wire kinds: a clone of a URL parsed once).
    fn url(
        &self,
        endpoint: Endpoint,
        adapter: Option<&'static dyn adapter::Adapter>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<reqwest::Url, GatewayError> {
        let built = match (&self.urls, endpoint) {
            (Urls::Fixed { embeddings, .. }, Endpoint::Embeddings) => return Ok(embeddings.clone()),
            (Urls::Fixed { chat, .. }, _) => return Ok(chat.clone()),
            (Urls::AzureDeployments { base, api_version }, _) => {
                let path = match endpoint {
                    Endpoint::Embeddings => "embeddings",
                    _ => "chat/completions",
                };
                azure::deployment_url(base, upstream_model, path, api_version)
            }
            (Urls::Adapter { base }, Endpoint::Embeddings) => {
                match adapter.and_then(|a| a.embeddings_url(base, upstream_model)) {
                    Some(url) => url,
                    None => {
                        return Err(GatewayError::InvalidRequest {
                            message: format!(
                            "provider kind {} has no embeddings API for model {upstream_model:?}",
                            self.kind.name()
                        ),
                            param: Some("model"),
                        })
                    }
                }
            }
            (Urls::Adapter { base }, _) => match adapter {
                Some(a) => a.chat_url(base, upstream_model, stream),
                None => format!("{base}/chat/completions"),
            },
        };
        reqwest::Url::parse(&built).map_err(|e| {
            GatewayError::Internal(format!(
                "provider {} has no valid URL for model {upstream_model:?}: {e}",
                self.name
            ))
        })
    }

    /// A POST to `endpoint` for `upstream_model`, authorized with key slot `key`: the one place requests are
    /// built. The slot's [`KeyCredential`] adds a static header (the OpenAI-wire kinds: nothing allocated
    /// beyond the URL clone), SigV4 or TC3 headers over the final URL and body, or a cached access token
    /// (fetched now if none is valid), returned in [`Prepared::token`] so a refusal can invalidate exactly
    /// that one. Adapter kinds add their fixed headers, and for streams their stream headers.
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when the URL cannot be built or the request cannot be signed; the token
    /// endpoint's failure.
    pub async fn prepare(
        &self,
        endpoint: Endpoint,
        body: bytes::Bytes,
        key: usize,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Prepared, GatewayError> {
        let adapter = self.adapter(upstream_model);
        let url = self.url(endpoint, adapter, upstream_model, stream)?;
        let (mut request, token) = match self.keys.get(key).and_then(Option::as_ref) {
            Some(credential) => {
                credential
                    .apply(&self.client, url, body, adapter, &self.name)
                    .await?
            }
            None => (
                self.client
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body),
                None,
            ),
        };
        if let Some(adapter) = adapter {
            for (name, value) in adapter.fixed_headers() {
                request = request.header(*name, *value);
            }
            if stream {
                for (name, value) in adapter.stream_headers() {
                    request = request.header(*name, *value);
                }
            }
        }
        Ok(Prepared { request, token })
    }

    /// Forgets key slot `key`'s access `token` after the upstream refused it before its time (Vertex 401,
    /// Qianfan 110 / 111), so the next request fetches a fresh one.
    pub fn invalidate_token(&self, key: usize, token: &Secret) {
        if let Some(Some(credential)) = self.keys.get(key) {
            credential.invalidate(token);
        }
    }
}

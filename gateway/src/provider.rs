//! Upstream providers: translate and sign, nothing else.
//!
//! Limits, retries, failover and event emission live in the orchestrator ([`crate::proxy`]); a provider only
//! knows its URL, its keys, its quirks ([`kind`]), how to shape a request ([`request`]), where its usage is
//! ([`usage`]) and what its errors mean ([`upstream_error`]). Kinds whose wire is not OpenAI's translate
//! through an [`adapter::Adapter`] ([`anthropic`], [`bedrock`]); [`azure`] is OpenAI wire with its own URLs and
//! key header. Native providers' request signing and credentials are in [`sign`] (SigV4 wired for Bedrock),
//! Bedrock's binary stream framing in [`eventstream`].

pub mod adapter;
pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod eventstream;
pub mod kind;
pub mod request;
pub mod sign;
pub mod upstream_error;
pub mod usage;

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tollgate_schemas::Endpoint;

pub use kind::ProviderKind;

use crate::config::{ProviderConfig, Timeouts};
use crate::error::GatewayError;
use crate::provider::sign::sigv4;
use crate::rate_limit::UpstreamKeyLimiter;

/// How one key slot authenticates a request.
enum KeyAuth {
    /// A fixed header value (marked sensitive).
    Header(HeaderValue),
    /// AWS SigV4 over the final URL and body (Bedrock).
    SigV4(Box<sigv4::Credentials>),
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(_) => f.write_str("Header(***)"),
            Self::SigV4(c) => write!(f, "SigV4({})", c.access_key_id),
        }
    }
}

/// Where requests go.
#[derive(Debug)]
enum Urls {
    /// One URL per endpoint, parsed once (OpenAI-wire kinds, Anthropic, Azure v1).
    Fixed {
        chat: reqwest::Url,
        embeddings: reqwest::Url,
    },
    /// Azure with a dated API version: the deployment is in the path.
    AzureDeployments { base: String, api_version: String },
    /// An adapter that names the model (and streaming) in the path: Bedrock.
    PerModel { base: String },
}

/// One configured upstream account set: a kind, a base URL and one or more API keys.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    urls: Urls,
    /// The header carrying a key: `Authorization` (`Bearer <key>`), or the kind's (`x-api-key`, `api-key`).
    auth_header: HeaderName,
    /// Auth per key slot (header values marked sensitive, so they never print); one `None` slot for servers
    /// that need no key.
    keys: Vec<Option<KeyAuth>>,
    /// SigV4 signing region (Bedrock).
    region: Option<String>,
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
        let auth_header = header_of("").0;
        let mut auth = config
            .api_keys
            .iter()
            .map(|key| {
                let mut value =
                    HeaderValue::from_str(&header_of(key.expose()).1).map_err(|_| {
                        GatewayError::Internal(format!(
                            "an API key of provider {} has invalid characters",
                            config.name
                        ))
                    })?;
                value.set_sensitive(true);
                Ok(KeyAuth::Header(value))
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        if let Some(credentials) = config.aws.as_ref().and_then(|a| a.credentials.clone()) {
            auth.push(KeyAuth::SigV4(Box::new(credentials)));
        }
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(config.timeouts.connect)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| GatewayError::Internal(format!("cannot build the HTTP client: {e}")))?;
        let base = config.base_url.as_str().trim_end_matches('/');
        let parse = |url: &str| reqwest::Url::parse(url).map_err(|e| bad_url(&config.name, &e));
        let url = |path: &str| parse(&format!("{base}{path}"));
        let urls = match (config.kind, adapter, &config.azure) {
            (ProviderKind::Bedrock, _, _) => Urls::PerModel {
                base: base.to_string(),
            },
            (_, Some(a), _) => Urls::Fixed {
                chat: parse(&a.chat_url(base))?,
                embeddings: url("/embeddings")?,
            },
            (_, None, Some(az)) => match azure::dated_version(az) {
                Some(v) => {
                    // Checked once here, so per-request URLs cannot fail on the base.
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
            (_, None, None) => Urls::Fixed {
                chat: url("/chat/completions")?,
                embeddings: url("/embeddings")?,
            },
        };
        if let Urls::PerModel { base } = &urls {
            parse(&bedrock::model_url(base, "m", false))?;
        }
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            urls,
            auth_header,
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
            region: config.aws.as_ref().map(|a| a.region.clone()),
            timeouts: config.timeouts,
            client,
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

    /// The URL of one request to `upstream_model`.
    fn url(
        &self,
        endpoint: Endpoint,
        upstream_model: &str,
        stream: bool,
    ) -> Result<reqwest::Url, GatewayError> {
        let path = match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => "chat/completions",
            Endpoint::Embeddings => "embeddings",
        };
        let built = match &self.urls {
            Urls::Fixed { chat, embeddings } => {
                return Ok(match endpoint {
                    Endpoint::ChatCompletions | Endpoint::Messages => chat.clone(),
                    Endpoint::Embeddings => embeddings.clone(),
                })
            }
            Urls::AzureDeployments { base, api_version } => {
                azure::deployment_url(base, upstream_model, path, api_version)
            }
            Urls::PerModel { base } => bedrock::model_url(base, upstream_model, stream),
        };
        reqwest::Url::parse(&built).map_err(|e| bad_url(&self.name, &e))
    }

    /// A POST to `endpoint` for `upstream_model`, authenticated with key slot `key` (a SigV4 slot signs the
    /// final URL and body here).
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when the URL cannot be built or the request cannot be signed.
    pub fn post(
        &self,
        endpoint: Endpoint,
        body: bytes::Bytes,
        key: usize,
        upstream_model: &str,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, GatewayError> {
        let url = self.url(endpoint, upstream_model, stream)?;
        let auth = self.keys.get(key).and_then(Option::as_ref);
        let signed = match (auth, &self.region) {
            (Some(KeyAuth::SigV4(credentials)), Some(region)) => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                sigv4::sign(
                    credentials,
                    &sigv4::Scope::bedrock(region),
                    &sigv4::Request {
                        method: &Method::POST,
                        url: url.as_str(),
                        headers: &headers,
                        body: &body,
                    },
                    SystemTime::now(),
                    &sigv4::Options::default(),
                )?
            }
            _ => Vec::new(),
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
        for (name, value) in signed {
            request = request.header(name, value);
        }
        Ok(match auth {
            Some(KeyAuth::Header(value)) => request.header(self.auth_header.clone(), value.clone()),
            _ => request,
        })
    }
}

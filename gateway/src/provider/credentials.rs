//! Per key slot credentials, applied to each request in one place ([`KeyCredential::apply`], called by
//! [`super::Provider::prepare`]):
//!
//! | credential | kinds | what a request carries |
//! |---|---|---|
//! | [`KeyCredential::Header`] | the OpenAI-wire kinds, Azure, Anthropic, Gemini, DashScope native, Bedrock API keys | one static header (`Authorization: Bearer`, `api-key`, `x-api-key`, `x-goog-api-key`), cloned — nothing allocated |
//! | [`KeyCredential::SigV4`] | Bedrock (`aws = { … }`) | AWS SigV4 over the final URL and body |
//! | [`KeyCredential::Tc3`] | Tencent Hunyuan native | TC3-HMAC-SHA256 over the final URL and body |
//! | [`KeyCredential::Token`] | Vertex AI (service account), Baidu Qianfan v1 (client credentials) | an OAuth access token, fetched once and cached ([`TokenCache`]): in the adapter's auth header (Vertex) or the `access_token` query parameter (Qianfan v1) |
//!
//! Keys of the signed schemes are configured as `ID:SECRET` pairs in `api_keys` (`SecretId:SecretKey`,
//! `ApiKey:SecretKey`), so `${ENV}` interpolation, several keys per provider and per-key failover work as for
//! every other kind. Nothing here logs or formats a secret or a token; a query token travels only in the URL
//! of the request that uses it, and reqwest error messages are never built from that URL. A token the
//! upstream refuses before its time ([`super::adapter::Adapter::token_rejected`]) is dropped with
//! [`KeyCredential::invalidate`] and fetched again.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use reqwest::Url;

use super::adapter::{Adapter, AuthScheme};
use super::sign::sigv4;
use super::sign::tc3;
use super::sign::token_cache::{ClientCredentialsSource, JwtBearerSource, TokenCache};
use crate::config::Secret;
use crate::error::GatewayError;

/// The path of the OAuth token endpoint on a Qianfan v1 host.
pub const TOKEN_PATH: &str = "/oauth/2.0/token";

/// A cache of one key slot's access tokens.
pub enum Tokens {
    /// A Google service account's RS256 assertion exchanged for a token (Vertex AI).
    ServiceAccount(Box<TokenCache<JwtBearerSource>>),
    /// OAuth client credentials (`ApiKey:SecretKey`, Baidu Qianfan v1).
    ClientCredentials(Box<TokenCache<ClientCredentialsSource>>),
}

impl Tokens {
    async fn token(&self) -> Result<Secret, GatewayError> {
        match self {
            Self::ServiceAccount(c) => c.token().await,
            Self::ClientCredentials(c) => c.token().await,
        }
    }

    fn invalidate(&self, token: &Secret) {
        match self {
            Self::ServiceAccount(c) => c.invalidate(token),
            Self::ClientCredentials(c) => c.invalidate(token),
        }
    }
}

/// Where an access token goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPlacement {
    /// The adapter's [`Adapter::auth_header`] (`Authorization: Bearer <token>`).
    Header,
    /// The `access_token` query parameter.
    Query,
}

/// One key slot's credentials.
pub enum KeyCredential {
    /// A static header, its value marked sensitive.
    Header {
        name: HeaderName,
        value: HeaderValue,
    },
    /// AWS SigV4 (Bedrock) in `region`.
    SigV4 {
        credentials: Box<sigv4::Credentials>,
        region: String,
    },
    /// Tencent Cloud TC3-HMAC-SHA256.
    Tc3 {
        credentials: tc3::Credentials,
        service: &'static str,
        action: &'static str,
        version: &'static str,
        region: Option<String>,
    },
    /// A cached OAuth access token.
    Token {
        tokens: Tokens,
        placement: TokenPlacement,
    },
}

impl std::fmt::Debug for KeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header { name, .. } => write!(f, "Header({name}: ***)"),
            Self::SigV4 { credentials, .. } => write!(f, "SigV4({})", credentials.access_key_id),
            Self::Tc3 { credentials, .. } => write!(f, "Tc3({})", credentials.secret_id),
            Self::Token { placement, .. } => write!(f, "Token({placement:?}, …)"),
        }
    }
}

/// Splits an `ID:SECRET` key; `None` when either half is missing.
#[must_use]
pub fn split_pair(key: &str) -> Option<(&str, &str)> {
    key.split_once(':')
        .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
}

/// The token endpoint on the base URL's scheme, host and port.
#[must_use]
pub fn token_url(base: &Url) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.set_path(TOKEN_PATH);
    url
}

/// A header value marked sensitive, so it never prints.
///
/// # Errors
/// [`GatewayError::Internal`] when `value` cannot be a header value (the message never quotes it).
pub fn sensitive(provider: &str, value: &str) -> Result<HeaderValue, GatewayError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        GatewayError::Internal(format!(
            "an API key of provider {provider} has invalid characters"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl KeyCredential {
    /// The credentials of one configured key under `scheme`: a static header (`header` names it and formats
    /// the value), or a signing / token credential built from an `ID:SECRET` pair.
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when the key is not an `ID:SECRET` pair (the config validator says so
    /// first, with the path) or not a valid header value.
    pub fn of(
        scheme: AuthScheme,
        provider: &str,
        key: &Secret,
        base: &Url,
        region: Option<&str>,
        client: &reqwest::Client,
        header: impl Fn(&str) -> (HeaderName, String),
    ) -> Result<Self, GatewayError> {
        if scheme == AuthScheme::Header {
            let (name, value) = header(key.expose());
            return Ok(Self::Header {
                name,
                value: sensitive(provider, &value)?,
            });
        }
        let (id, secret) = split_pair(key.expose()).ok_or_else(|| {
            GatewayError::Internal(format!(
                "an API key of provider {provider} is not an ID:SECRET pair"
            ))
        })?;
        Ok(match scheme {
            AuthScheme::Header => unreachable!("handled above"),
            AuthScheme::Tc3 {
                service,
                action,
                version,
            } => Self::Tc3 {
                credentials: tc3::Credentials {
                    secret_id: id.to_owned(),
                    secret_key: Secret::new(secret.to_owned()),
                    token: None,
                },
                service,
                action,
                version,
                region: region.map(str::to_owned),
            },
            AuthScheme::QueryToken => {
                let source = ClientCredentialsSource::new(
                    provider,
                    client.clone(),
                    id,
                    Secret::new(secret.to_owned()),
                )
                .with_token_url(token_url(base).to_string());
                Self::Token {
                    tokens: Tokens::ClientCredentials(Box::new(TokenCache::new(source))),
                    placement: TokenPlacement::Query,
                }
            }
        })
    }

    /// A POST of `body` to `url` carrying this key's credentials: the static header, the SigV4 or TC3
    /// headers over the final URL and body, or the access token (cached, or fetched now) in the adapter's
    /// auth header or the query. Returns the token used, so a refusal can invalidate exactly that one.
    ///
    /// # Errors
    /// The token endpoint's failure (unreachable, refused → `upstream_auth_failed`), or a signing failure.
    pub async fn apply(
        &self,
        client: &reqwest::Client,
        mut url: Url,
        body: bytes::Bytes,
        adapter: Option<&'static dyn Adapter>,
        provider: &str,
    ) -> Result<(reqwest::RequestBuilder, Option<Secret>), GatewayError> {
        let json = |url: Url, body: bytes::Bytes| {
            client
                .post(url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body)
        };
        match self {
            Self::Header { name, value } => Ok((json(url, body).header(name, value.clone()), None)),
            Self::SigV4 {
                credentials,
                region,
            } => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                let signed = sigv4::sign(
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
                )?;
                let mut builder = json(url, body);
                for (name, value) in signed {
                    builder = builder.header(name, value);
                }
                Ok((builder, None))
            }
            Self::Tc3 {
                credentials,
                service,
                action,
                version,
                region,
            } => {
                let host = match (url.host_str(), url.port()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_owned(),
                    (None, _) => {
                        return Err(GatewayError::Internal(
                            "the upstream URL has no host".into(),
                        ))
                    }
                };
                let query = url.query().unwrap_or_default().to_owned();
                let request = tc3::Request {
                    service,
                    host: &host,
                    action,
                    version,
                    region: region.as_deref(),
                    method: &Method::POST,
                    query: &query,
                    content_type: "application/json",
                    payload: &body,
                    signed_headers: tc3::SignedHeaders::ContentTypeHostAction,
                };
                let headers: Vec<(HeaderName, HeaderValue)> =
                    tc3::sign(credentials, &request, SystemTime::now())?;
                // The signed headers include `content-type`.
                let mut builder = client.post(url).body(body);
                for (name, value) in headers {
                    builder = builder.header(name, value);
                }
                Ok((builder, None))
            }
            Self::Token { tokens, placement } => {
                let token = tokens.token().await?;
                let builder = match placement {
                    TokenPlacement::Query => {
                        url.query_pairs_mut()
                            .append_pair("access_token", token.expose());
                        json(url, body)
                    }
                    TokenPlacement::Header => {
                        let (name, value) = match adapter {
                            Some(a) => a.auth_header(token.expose()),
                            None => (
                                http::header::AUTHORIZATION,
                                format!("Bearer {}", token.expose()),
                            ),
                        };
                        json(url, body).header(name, sensitive(provider, &value)?)
                    }
                };
                Ok((builder, Some(token)))
            }
        }
    }

    /// Drops `token` if it is still the cached one (the upstream refused it before its time).
    pub fn invalidate(&self, token: &Secret) {
        if let Self::Token { tokens, .. } = self {
            tokens.invalidate(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_token_url() {
        assert_eq!(split_pair("AKID:sec:ret"), Some(("AKID", "sec:ret")));
        assert_eq!(split_pair("AKID:"), None);
        assert_eq!(split_pair(":x"), None);
        assert_eq!(split_pair("nocolon"), None);
        let base =
            Url::parse("https://aip.baidubce.com/rpc/2.0/ai_custom/v1/wenxinworkshop").unwrap();
        assert_eq!(
            token_url(&base).as_str(),
            "https://aip.baidubce.com/oauth/2.0/token"
        );
        let base = Url::parse("http://127.0.0.1:8080/qianfan/rpc").unwrap();
        assert_eq!(
            token_url(&base).as_str(),
            "http://127.0.0.1:8080/oauth/2.0/token"
        );
    }

    fn bearer(key: &str) -> (HeaderName, String) {
        (http::header::AUTHORIZATION, format!("Bearer {key}"))
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let client = reqwest::Client::new();
        let base = Url::parse("https://hunyuan.tencentcloudapi.com").unwrap();
        let scheme = AuthScheme::Tc3 {
            service: "hunyuan",
            action: "ChatCompletions",
            version: "2023-09-01",
        };
        let c = KeyCredential::of(
            scheme,
            "p",
            &Secret::new("AKIDx:topsecret".into()),
            &base,
            None,
            &client,
            bearer,
        )
        .unwrap();
        let printed = format!("{c:?}");
        assert!(printed.contains("AKIDx") && !printed.contains("topsecret"));
        assert!(KeyCredential::of(
            AuthScheme::QueryToken,
            "p",
            &Secret::new("nocolon".into()),
            &base,
            None,
            &client,
            bearer,
        )
        .is_err());
        let header = KeyCredential::of(
            AuthScheme::Header,
            "p",
            &Secret::new("sk-visible-nowhere".into()),
            &base,
            None,
            &client,
            bearer,
        )
        .unwrap();
        assert!(!format!("{header:?}").contains("sk-visible-nowhere"));
    }
}

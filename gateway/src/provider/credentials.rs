//! Per-request credentials of the adapter kinds that do not send one static header: a TC3 signature computed
//! over each body (Tencent Hunyuan native) and an OAuth access token put in the URL query (Baidu Qianfan v1),
//! fetched once per key and cached ([`TokenCache`]).
//!
//! Keys of these kinds are configured as `ID:SECRET` pairs in `api_keys` (`SecretId:SecretKey`,
//! `ApiKey:SecretKey`), so `${ENV}` interpolation, several keys per provider and per-key failover work as for
//! every other kind. Nothing here logs or formats a secret or a token; the token travels only in the URL of
//! the request that uses it, and reqwest error messages are never built from that URL.

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Method};
use reqwest::Url;

use super::adapter::AuthScheme;
use super::sign::tc3;
use super::sign::token_cache::{ClientCredentialsSource, TokenCache};
use crate::config::Secret;
use crate::error::GatewayError;

/// The path of the OAuth token endpoint on a Qianfan v1 host.
pub const TOKEN_PATH: &str = "/oauth/2.0/token";

/// One key slot's credentials.
pub enum KeyCredential {
    Tc3 {
        credentials: tc3::Credentials,
        service: &'static str,
        action: &'static str,
        version: &'static str,
        region: Option<String>,
    },
    Token(Arc<TokenCache<ClientCredentialsSource>>),
}

impl std::fmt::Debug for KeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tc3 { credentials, .. } => write!(f, "Tc3({})", credentials.secret_id),
            Self::Token(_) => f.write_str("Token(…)"),
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

impl KeyCredential {
    /// The credentials of one `ID:SECRET` key under `scheme` (`None` for [`AuthScheme::Header`]).
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when the key is not an `ID:SECRET` pair (the config validator says so
    /// first, with the path).
    pub fn of(
        scheme: AuthScheme,
        provider: &str,
        key: &Secret,
        base: &Url,
        region: Option<&str>,
        client: &reqwest::Client,
    ) -> Result<Option<Self>, GatewayError> {
        if scheme == AuthScheme::Header {
            return Ok(None);
        }
        let (id, secret) = split_pair(key.expose()).ok_or_else(|| {
            GatewayError::Internal(format!(
                "an API key of provider {provider} is not an ID:SECRET pair"
            ))
        })?;
        Ok(Some(match scheme {
            AuthScheme::Header => return Ok(None),
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
                Self::Token(Arc::new(TokenCache::new(source)))
            }
        }))
    }

    /// Adds this key's credentials to a request for `url` with `body`: the TC3 headers, or the access token
    /// in the query. Returns the token used, so a refusal can invalidate exactly that one.
    ///
    /// # Errors
    /// The token endpoint's failure (unreachable, refused → `upstream_auth_failed`), or a signing failure.
    pub async fn apply(
        &self,
        client: &reqwest::Client,
        mut url: Url,
        body: bytes::Bytes,
    ) -> Result<(reqwest::RequestBuilder, Option<Secret>), GatewayError> {
        match self {
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
                let mut builder = client.post(url).body(body);
                for (name, value) in headers {
                    builder = builder.header(name, value);
                }
                Ok((builder, None))
            }
            Self::Token(cache) => {
                let token = cache.token().await?;
                url.query_pairs_mut()
                    .append_pair("access_token", token.expose());
                let builder = client
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body);
                Ok((builder, Some(token)))
            }
        }
    }

    /// Drops `token` if it is still the cached one (the upstream refused it before its time).
    pub fn invalidate(&self, token: &Secret) {
        if let Self::Token(cache) = self {
            cache.invalidate(token);
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
        )
        .unwrap()
        .unwrap();
        let printed = format!("{c:?}");
        assert!(printed.contains("AKIDx") && !printed.contains("topsecret"));
        assert!(KeyCredential::of(
            AuthScheme::QueryToken,
            "p",
            &Secret::new("nocolon".into()),
            &base,
            None,
            &client
        )
        .is_err());
    }
}

//! Azure OpenAI (`kind = "azure"`): the OpenAI wire with Azure's addressing and key header.
//!
//! Not an [`Adapter`](super::adapter::Adapter): requests and answers take the OpenAI-wire path (client bytes
//! forwarded, the relay meters the SSE as it passes). What differs is only:
//!
//! - **URL.** `azure = { api_version = "v1" }` (the default): `{endpoint}/openai/v1/chat/completions` and
//!   `…/embeddings`, with the deployment name as `model` in the body. A dated version (`2024-10-21`):
//!   `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={v}` — the deployment (the
//!   deployment's `model` in the gateway config) picks the model, the body's `model` is ignored by Azure.
//! - **Auth.** `api-key: <key>`, or with `azure = { auth = "bearer" }` `Authorization: Bearer <token>` for a
//!   Microsoft Entra ID token (they expire after about an hour: the config must be refreshed).
//!
//! Azure's stream and error quirks need nothing special, and the tests pin that down: a first chunk with
//! `choices: []` and `prompt_filter_results` (and chunks carrying only filter annotations) is passed through
//! untouched; `content_filter_results` on choices too; `finish_reason: "content_filter"` is OpenAI's own;
//! a filtered prompt's 400 (`code: content_filter`) is a client error, not retried; a 429's
//! `retry-after-ms` cools the key ([`crate::retry::retry_hint`]).

use super::sign::sigv4::encode_path_segment;
use crate::config::{AzureApi, AzureAuth, AzureSettings};

/// The resource endpoint without a trailing `/openai` or `/openai/v1` (either is accepted in `base_url`).
#[must_use]
pub fn endpoint(base: &str) -> &str {
    let base = base.trim_end_matches('/');
    base.strip_suffix("/openai/v1")
        .or_else(|| base.strip_suffix("/openai"))
        .unwrap_or(base)
}

/// The URL of `path` (`chat/completions`, `embeddings`) for v1 (any deployment).
#[must_use]
pub fn v1_url(base: &str, path: &str) -> String {
    format!("{}/openai/v1/{path}", endpoint(base))
}

/// The URL of `path` on one deployment under a dated API version.
#[must_use]
pub fn deployment_url(base: &str, deployment: &str, path: &str, api_version: &str) -> String {
    format!(
        "{}/openai/deployments/{}/{path}?api-version={}",
        endpoint(base),
        encode_path_segment(deployment),
        encode_path_segment(api_version)
    )
}

/// The header a key goes in, and its value.
#[must_use]
pub fn auth_header(settings: &AzureSettings, key: &str) -> (http::HeaderName, String) {
    match settings.auth {
        AzureAuth::ApiKey => (http::HeaderName::from_static("api-key"), key.to_string()),
        AzureAuth::Bearer => (http::header::AUTHORIZATION, format!("Bearer {key}")),
    }
}

/// The dated API version, when the provider uses deployment URLs.
#[must_use]
pub fn dated_version(settings: &AzureSettings) -> Option<&str> {
    match &settings.api {
        AzureApi::V1 => None,
        AzureApi::Deployments { api_version } => Some(api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_both_apis() {
        for base in [
            "https://res.openai.azure.com",
            "https://res.openai.azure.com/",
            "https://res.openai.azure.com/openai",
            "https://res.openai.azure.com/openai/v1",
        ] {
            assert_eq!(
                v1_url(base, "chat/completions"),
                "https://res.openai.azure.com/openai/v1/chat/completions"
            );
            assert_eq!(
                deployment_url(base, "gpt-4o prod", "embeddings", "2024-10-21"),
                "https://res.openai.azure.com/openai/deployments/gpt-4o%20prod/embeddings?api-version=2024-10-21"
            );
        }
        let s = AzureSettings {
            api: AzureApi::V1,
            auth: AzureAuth::ApiKey,
        };
        assert_eq!(auth_header(&s, "k").0.as_str(), "api-key");
        assert_eq!(dated_version(&s), None);
        let s = AzureSettings {
            api: AzureApi::Deployments {
                api_version: "2024-10-21".into(),
            },
            auth: AzureAuth::Bearer,
        };
        assert_eq!(auth_header(&s, "tok").1, "Bearer tok");
        assert_eq!(dated_version(&s), Some("2024-10-21"));
    }
}

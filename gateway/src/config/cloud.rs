//! Validating the cloud-specific provider tables: `azure = { … }` (Azure OpenAI) and `aws = { … }` (Bedrock).
//!
//! ```toml
//! [providers.azure]
//! kind = "azure"
//! base_url = "https://my-resource.openai.azure.com"   # the resource endpoint
//! api_keys = ["${AZURE_OPENAI_API_KEY}"]
//! azure = { api_version = "2024-10-21" }              # dated: deployment URLs; "v1" (default): the v1 API
//!
//! [providers.bedrock]
//! kind = "bedrock"                                     # base_url defaults to bedrock-runtime.{region}.amazonaws.com
//! aws = { region = "us-east-1", access_key_id = "${AWS_ACCESS_KEY_ID}",
//!         secret_access_key = "${AWS_SECRET_ACCESS_KEY}", session_token = "${AWS_SESSION_TOKEN:-}" }
//! # or, instead of the keys: api_keys = ["${AWS_BEARER_TOKEN_BEDROCK}"] (Bedrock API keys, sent as Bearer)
//! ```
//!
//! The secret access key and the session token become [`Secret`]s at once; no issue message names them.

use serde::Deserialize;

use super::validator::Validator;
use super::Secret;
use crate::provider::sign::sigv4::Credentials;
use crate::provider::ProviderKind;

/// `azure = { api_version, auth }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAzure {
    /// `v1` (default) or a dated version (`2024-10-21`, `2025-04-01-preview`).
    pub api_version: Option<String>,
    /// `api-key` (default) or `bearer` (an Entra ID access token given as the key).
    pub auth: Option<String>,
}

/// `aws = { region, access_key_id, secret_access_key, session_token }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Temporary (STS) credentials; an empty value (`${AWS_SESSION_TOKEN:-}` unset) means none.
    pub session_token: Option<String>,
}

/// Which Azure OpenAI API a provider calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureApi {
    /// `{endpoint}/openai/v1/chat/completions`, the deployment name as `model` in the body.
    V1,
    /// `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={version}`.
    Deployments { api_version: String },
}

/// How an Azure key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureAuth {
    /// `api-key: <key>`.
    ApiKey,
    /// `Authorization: Bearer <token>` (Microsoft Entra ID; tokens expire, so the config must be refreshed).
    Bearer,
}

/// Validated `azure = { … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    pub api: AzureApi,
    pub auth: AzureAuth,
}

/// Validated `aws = { … }`.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub region: String,
    /// SigV4 credentials; `None` when the provider uses Bedrock API keys (`api_keys`).
    pub credentials: Option<Credentials>,
}

impl AwsSettings {
    /// Bedrock Runtime's endpoint in this region.
    #[must_use]
    pub fn default_base_url(&self) -> String {
        format!("https://bedrock-runtime.{}.amazonaws.com", self.region)
    }
}

fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_api_version(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Validator<'_> {
    /// `azure = { … }`: only on kind `azure`, defaulted there.
    pub(super) fn azure(
        &mut self,
        path: &str,
        kind: ProviderKind,
        raw: Option<RawAzure>,
    ) -> Option<AzureSettings> {
        if kind != ProviderKind::Azure {
            if raw.is_some() {
                self.issue(&format!("{path}.azure"), "only for kind \"azure\"");
            }
            return None;
        }
        let raw = raw.unwrap_or_default();
        let api = match raw.api_version.as_deref().map(str::trim) {
            None | Some("v1") => AzureApi::V1,
            Some(v) if valid_api_version(v) => AzureApi::Deployments {
                api_version: v.to_string(),
            },
            Some(v) => {
                self.issue(
                    &format!("{path}.azure.api_version"),
                    format!("{v:?} is not an API version (\"v1\" or a date like \"2024-10-21\")"),
                );
                return None;
            }
        };
        let auth = match raw.auth.as_deref() {
            None | Some("api-key") => AzureAuth::ApiKey,
            Some("bearer") => AzureAuth::Bearer,
            Some(other) => {
                self.issue(
                    &format!("{path}.azure.auth"),
                    format!("{other:?} is not an auth mode (\"api-key\" or \"bearer\")"),
                );
                return None;
            }
        };
        Some(AzureSettings { api, auth })
    }

    /// `aws = { … }`: required on kind `bedrock`; exactly one of SigV4 credentials and `api_keys`.
    pub(super) fn aws(
        &mut self,
        path: &str,
        kind: ProviderKind,
        raw: Option<RawAws>,
        has_api_keys: bool,
    ) -> Option<AwsSettings> {
        if kind != ProviderKind::Bedrock {
            if raw.is_some() {
                self.issue(&format!("{path}.aws"), "only for kind \"bedrock\"");
            }
            return None;
        }
        let Some(raw) = raw else {
            self.issue(
                &format!("{path}.aws"),
                "kind bedrock needs aws = { region = \"…\", … }",
            );
            return None;
        };
        let region = raw.region.trim().to_string();
        if !valid_region(&region) {
            self.issue(
                &format!("{path}.aws.region"),
                format!("{region:?} is not an AWS region (like \"us-east-1\")"),
            );
            return None;
        }
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let credentials = match (nonempty(raw.access_key_id), nonempty(raw.secret_access_key)) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id.trim().to_string(),
                secret_access_key: Secret::new(secret),
                session_token: nonempty(raw.session_token).map(Secret::new),
            }),
            (None, None) => None,
            _ => {
                self.issue(
                    &format!("{path}.aws"),
                    "access_key_id and secret_access_key go together (one is missing or empty)",
                );
                return None;
            }
        };
        match (credentials.is_some(), has_api_keys) {
            (true, true) => self.issue(
                &format!("{path}.aws"),
                "use either AWS credentials (SigV4) or api_keys (Bedrock API keys), not both",
            ),
            (false, false) => self.issue(
                &format!("{path}.aws"),
                "kind bedrock needs access_key_id + secret_access_key, or api_keys (Bedrock API keys)",
            ),
            _ => {}
        }
        Some(AwsSettings {
            region,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load_with;
    use super::*;

    fn doc(providers: &str) -> String {
        format!(
            "{providers}\n[keys.k]\nsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\nmodels = [\"*\"]\n"
        )
    }

    #[test]
    fn azure_defaults_and_dated_versions() {
        let c = load_with(&doc(
            "[providers.a]\nkind = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\napi_key = \"k\"\n\
             [providers.b]\nkind = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\napi_key = \"k\"\n\
             azure = { api_version = \"2024-10-21\", auth = \"bearer\" }\n",
        ))
        .unwrap();
        let a = c.providers.iter().find(|p| p.name == "a").unwrap();
        assert_eq!(
            a.azure,
            Some(AzureSettings {
                api: AzureApi::V1,
                auth: AzureAuth::ApiKey
            })
        );
        let b = c.providers.iter().find(|p| p.name == "b").unwrap();
        assert_eq!(
            b.azure.as_ref().map(|s| (&s.api, s.auth)),
            Some((
                &AzureApi::Deployments {
                    api_version: "2024-10-21".into()
                },
                AzureAuth::Bearer
            ))
        );
        let e = load_with(&doc(
            "[providers.a]\nkind = \"azure\"\napi_key = \"k\"\nazure = { api_version = \"a/b\", auth = \"x\" }\n\
             [providers.o]\nkind = \"openai\"\napi_key = \"k\"\nazure = {}\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("providers.a.azure.api_version"), "{e}");
        assert!(
            e.contains("providers.o.azure: only for kind \"azure\""),
            "{e}"
        );
        let e = load_with(&doc("[providers.a]\nkind = \"azure\"\napi_key = \"k\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers.a.base_url: required"), "{e}");
    }

    #[test]
    fn bedrock_credentials_one_way_or_the_other() {
        let c = load_with(&doc(
            "[providers.s]\nkind = \"bedrock\"\naws = { region = \"eu-west-3\", access_key_id = \"AKIDX\", \
             secret_access_key = \"very-secret\", session_token = \"\" }\n\
             [providers.k]\nkind = \"bedrock\"\napi_keys = [\"ABSKk\"]\nbase_url = \"http://127.0.0.1:9/bedrock\"\n\
             aws = { region = \"us-east-1\" }\n",
        ))
        .unwrap();
        let s = c.providers.iter().find(|p| p.name == "s").unwrap();
        assert_eq!(
            s.base_url.as_str(),
            "https://bedrock-runtime.eu-west-3.amazonaws.com/"
        );
        let aws = s.aws.as_ref().unwrap();
        let creds = aws.credentials.as_ref().unwrap();
        assert_eq!(creds.access_key_id, "AKIDX");
        assert!(creds.session_token.is_none(), "an empty token is none");
        assert!(!format!("{c:?}").contains("very-secret"));
        let k = c.providers.iter().find(|p| p.name == "k").unwrap();
        assert!(k.aws.as_ref().unwrap().credentials.is_none());
        assert_eq!(k.api_keys.len(), 1);

        for (bad, expect) in [
            ("kind = \"bedrock\"\napi_key = \"k\"\n", "needs aws"),
            (
                "kind = \"bedrock\"\naws = { region = \"us-east-1\" }\n",
                "needs access_key_id",
            ),
            (
                "kind = \"bedrock\"\napi_key = \"k\"\naws = { region = \"us-east-1\", access_key_id = \"A\", secret_access_key = \"s3cr3t-value\" }\n",
                "not both",
            ),
            (
                "kind = \"bedrock\"\naws = { region = \"us-east-1\", secret_access_key = \"s3cr3t-value\" }\n",
                "go together",
            ),
            (
                "kind = \"bedrock\"\napi_key = \"k\"\naws = { region = \"US East\" }\n",
                "not an AWS region",
            ),
            (
                "kind = \"openai\"\napi_key = \"k\"\naws = { region = \"us-east-1\" }\n",
                "only for kind \"bedrock\"",
            ),
        ] {
            let e = load_with(&doc(&format!("[providers.p]\n{bad}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(expect), "{bad}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }
}

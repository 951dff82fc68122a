//! Validating `[providers.<name>]`.

use super::raw::RawProvider;
use super::validator::Validator;
use super::{ProviderConfig, Secret, Timeouts, VertexConfig};
use crate::provider::adapter::AuthScheme;
use crate::provider::credentials::split_pair;
use crate::provider::sign::jwt::ServiceAccountSigner;
use crate::provider::vertex::{self, Publisher};
use crate::provider::ProviderKind;

/// A Google project id or region: lowercase letters, digits, `-` (they become URL path segments).
fn google_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Validator<'_> {
    pub(super) fn provider(
        &mut self,
        path: &str,
        name: String,
        raw: RawProvider,
    ) -> Option<ProviderConfig> {
        let Some(kind) = ProviderKind::from_name(&raw.kind) else {
            let known: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.name()).collect();
            self.issue(
                &format!("{path}.kind"),
                format!("unknown kind {:?} (known: {})", raw.kind, known.join(", ")),
            );
            return None;
        };
        let vertex = self.vertex(path, kind, &raw);
        let mut keys: Vec<String> = raw.api_keys.unwrap_or_default();
        keys.extend(raw.api_key);
        let azure = self.azure(path, kind, raw.azure);
        let aws = self.aws(path, kind, raw.aws, !keys.is_empty());
        let cloud_failed = (kind == ProviderKind::Azure && azure.is_none())
            || (kind == ProviderKind::Bedrock && aws.is_none());
        let derived = match (&aws, &vertex) {
            (Some(a), _) => Some(a.default_base_url()),
            (None, Some(v)) => Some(vertex::default_host(&v.region)),
            (None, None) => None,
        };
        let default_url = derived.as_deref().or(kind.default_base_url());
        let base_url = match raw.base_url.as_deref().or(default_url) {
            None if cloud_failed => None,
            None => {
                self.issue(
                    &format!("{path}.base_url"),
                    format!("required for kind {}", kind.name()),
                );
                None
            }
            Some(url) => match reqwest::Url::parse(url.trim_end_matches('/')) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
                _ => {
                    self.issue(
                        &format!("{path}.base_url"),
                        format!("{url:?} is not an http(s) URL"),
                    );
                    None
                }
            },
        };
        if keys.iter().any(String::is_empty) {
            self.issue(&format!("{path}.api_keys"), "an API key is empty");
        }
        if kind == ProviderKind::Vertex && !keys.is_empty() {
            self.issue(
                &format!("{path}.api_keys"),
                "kind vertex authenticates with a service account (service_account_file or service_account_env), not API keys",
            );
        }
        let scheme = kind
            .adapter()
            .map_or(AuthScheme::Header, |a| a.auth_scheme());
        if scheme != AuthScheme::Header && keys.iter().any(|k| split_pair(k).is_none()) {
            self.issue(
                &format!("{path}.api_keys"),
                format!(
                    "kind {} takes each key as an ID:SECRET pair (e.g. \"${{SECRET_ID}}:${{SECRET_KEY}}\")",
                    kind.name()
                ),
            );
        }
        if keys.is_empty() && kind.requires_api_key() {
            self.issue(
                &format!("{path}.api_keys"),
                format!("kind {} needs at least one API key", kind.name()),
            );
        }
        let defaults = Timeouts::default();
        let timeouts = Timeouts {
            connect: self
                .millis(
                    &format!("{path}.connect_timeout_ms"),
                    raw.connect_timeout_ms,
                )
                .unwrap_or(defaults.connect),
            first_byte: self
                .millis(
                    &format!("{path}.first_byte_timeout_ms"),
                    raw.first_byte_timeout_ms,
                )
                .unwrap_or(defaults.first_byte),
            stream_idle: self
                .millis(
                    &format!("{path}.stream_idle_timeout_ms"),
                    raw.stream_idle_timeout_ms,
                )
                .unwrap_or(defaults.stream_idle),
        };
        if cloud_failed {
            return None;
        }
        Some(ProviderConfig {
            name,
            kind,
            base_url: base_url?,
            api_keys: keys
                .into_iter()
                .filter(|k| !k.is_empty())
                .map(Secret::new)
                .collect(),
            timeouts,
            tags: raw.tags.unwrap_or_default(),
            key_limits: self.limits(&format!("{path}.key_limits"), raw.key_limits),
            azure,
            aws,
            vertex,
            region: raw.region.filter(|r| !r.is_empty()),
        })
    }

    /// `project`, `region`, the service account, `token_url` and `publisher`: required (the first three) for
    /// kind vertex, refused for the others.
    fn vertex(
        &mut self,
        path: &str,
        kind: ProviderKind,
        raw: &RawProvider,
    ) -> Option<VertexConfig> {
        // `region` is also the TC3 region of kind hunyuan-native.
        let region_elsewhere = kind == ProviderKind::HunyuanNative;
        let fields = [
            ("project", raw.project.is_some()),
            ("region", raw.region.is_some() && !region_elsewhere),
            ("service_account_file", raw.service_account_file.is_some()),
            ("service_account_env", raw.service_account_env.is_some()),
            ("token_url", raw.token_url.is_some()),
            ("publisher", raw.publisher.is_some()),
        ];
        if kind != ProviderKind::Vertex {
            for (field, set) in fields {
                if set {
                    let only = if field == "region" {
                        "only kinds vertex and hunyuan-native take this field"
                    } else {
                        "only kind vertex takes this field"
                    };
                    self.issue(&format!("{path}.{field}"), only);
                }
            }
            return None;
        }
        let mut named = |field: &str, value: Option<&String>| match value {
            Some(v) if google_name(v) => Some(v.clone()),
            Some(v) => {
                self.issue(
                    &format!("{path}.{field}"),
                    format!("{v:?} is not a Google Cloud {field} (lowercase letters, digits, -)"),
                );
                None
            }
            None => {
                self.issue(&format!("{path}.{field}"), "required for kind vertex");
                None
            }
        };
        let project = named("project", raw.project.as_ref());
        let region = named("region", raw.region.as_ref());
        let json = match (&raw.service_account_file, &raw.service_account_env) {
            (Some(file), None) => match std::fs::read_to_string(file) {
                Ok(text) => Some(text),
                Err(e) => {
                    self.issue(
                        &format!("{path}.service_account_file"),
                        format!("cannot read {file:?}: {}", e.kind()),
                    );
                    None
                }
            },
            (None, Some(var)) => match self.env.var(var).filter(|v| !v.trim().is_empty()) {
                Some(text) => Some(text),
                None => {
                    self.issue(
                        &format!("{path}.service_account_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            },
            _ => {
                self.issue(
                    path,
                    "kind vertex needs exactly one of `service_account_file` or `service_account_env`",
                );
                None
            }
        };
        // Checked now, so a bad key file stops the start; messages never quote the file.
        let service_account = json.and_then(|text| match ServiceAccountSigner::from_json(&text) {
            Ok(_) => Some(Secret::new(text)),
            Err(e) => {
                self.issue(path, e.to_string());
                None
            }
        });
        let token_url = match raw.token_url.as_deref() {
            Some(url) => match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                    Some(url.to_string())
                }
                _ => {
                    self.issue(
                        &format!("{path}.token_url"),
                        format!("{url:?} is not an http(s) URL"),
                    );
                    return None;
                }
            },
            None => None,
        };
        let publisher = match raw.publisher.as_deref() {
            Some(name) => match Publisher::from_name(name) {
                Some(p) => Some(p),
                None => {
                    self.issue(
                        &format!("{path}.publisher"),
                        format!("unknown publisher {name:?} (known: google, anthropic)"),
                    );
                    return None;
                }
            },
            None => None,
        };
        Some(VertexConfig {
            project: project?,
            region: region?,
            service_account: service_account?,
            token_url,
            publisher,
        })
    }
}

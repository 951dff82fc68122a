//! Validating `[providers.<name>]`.

use super::raw::RawProvider;
use super::validator::Validator;
use super::{ProviderConfig, Secret, Timeouts};
use crate::provider::adapter::AuthScheme;
use crate::provider::credentials::split_pair;
use crate::provider::ProviderKind;

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
        let base_url = match raw.base_url.as_deref().or(kind.default_base_url()) {
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
        let mut keys: Vec<String> = raw.api_keys.unwrap_or_default();
        keys.extend(raw.api_key);
        if keys.iter().any(String::is_empty) {
            self.issue(&format!("{path}.api_keys"), "an API key is empty");
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
            region: raw.region.filter(|r| !r.is_empty()),
        })
    }
}

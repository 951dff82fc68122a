//! Validating `[providers.<name>]`.

use super::raw::RawProvider;
use super::validator::Validator;
use super::{ProviderConfig, Secret, Timeouts};
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
        let mut keys: Vec<String> = raw.api_keys.unwrap_or_default();
        keys.extend(raw.api_key);
        let azure = self.azure(path, kind, raw.azure);
        let aws = self.aws(path, kind, raw.aws, !keys.is_empty());
        let cloud_failed = (kind == ProviderKind::Azure && azure.is_none())
            || (kind == ProviderKind::Bedrock && aws.is_none());
        let derived = aws.as_ref().map(super::AwsSettings::default_base_url);
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
        })
    }
}

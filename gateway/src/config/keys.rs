//! Validating `[keys.<name>]`: virtual keys.

use std::collections::HashSet;

use super::raw::RawKey;
use super::validator::Validator;
use super::{AllowedModels, KeyConfig};
use crate::auth::KeyHash;

impl Validator<'_> {
    pub(super) fn key(
        &mut self,
        path: &str,
        name: String,
        raw: RawKey,
        models: &HashSet<&str>,
    ) -> Option<KeyConfig> {
        let hash = match (raw.sha256.as_deref(), raw.key_env.as_deref()) {
            (Some(hex), None) => KeyHash::from_hex(hex).or_else(|| {
                self.issue(
                    &format!("{path}.sha256"),
                    "must be 64 hex characters (see `tollgate keys new`)",
                );
                None
            }),
            (None, Some(var)) => match self.env.var(var).filter(|v| !v.is_empty()) {
                Some(raw_key) => Some(KeyHash::of(&raw_key)),
                None => {
                    self.issue(
                        &format!("{path}.key_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            },
            _ => {
                self.issue(path, "set exactly one of `sha256` or `key_env`");
                None
            }
        };
        let allowed = match raw.models {
            None => {
                self.issue(
                    &format!("{path}.models"),
                    "list the models this key may use ([\"*\"] for all)",
                );
                None
            }
            Some(list) if list.iter().any(|m| m == "*") => Some(AllowedModels::All),
            Some(list) => {
                for (i, m) in list.iter().enumerate() {
                    if !models.contains(m.as_str()) {
                        self.issue(
                            &format!("{path}.models[{i}]"),
                            format!("no model named {m:?}"),
                        );
                    }
                }
                Some(AllowedModels::Only(list.into_iter().collect()))
            }
        };
        Some(KeyConfig {
            tenant: raw.tenant.unwrap_or_else(|| "default".into()),
            team: raw.team.unwrap_or_else(|| "default".into()),
            name,
            hash: hash?,
            models: allowed?,
            require_tags: raw.require_tags.unwrap_or_default(),
            limits: self.limits(&format!("{path}.limits"), raw.limits),
        })
    }
}

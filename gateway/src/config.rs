//! Configuration: one TOML file → [`Config`], validated as a whole.
//!
//! Two phases: serde reads raw sections (unknown fields refused), then validation turns them into types that
//! cannot hold a bad state (`SocketAddr`, `Url`, `Duration`, [`Secret`], [`KeyHash`]). Every problem is
//! collected with its path and reported at once; secret values never appear in a message.

mod interpolate;
mod raw;
mod secret;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use interpolate::{interpolate, Env, ProcessEnv};
pub use secret::Secret;

use crate::auth::KeyHash;
use crate::provider::ProviderKind;
use raw::{RawDeployment, RawKafka, RawKey, RawModel, RawProvider, RawServer, RawStore};

/// Default cap on a request body: large enough for a few base64 images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    /// Present: usage events go to Kafka (spooled to disk while it is away). Absent: the embedded store.
    pub kafka: Option<KafkaConfig>,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
}

/// Where the embedded usage store (SQLite) lives.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
}

/// The Kafka event sink.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    /// Where events wait while Kafka is unreachable.
    pub spool_dir: PathBuf,
    /// Spool size cap; beyond it events are dropped (counted, alarmed).
    pub spool_max_bytes: u64,
    /// How long the producer keeps trying one event before it goes to the spool.
    pub message_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL up to and including the API version segment (`…/v1`), without a trailing slash.
    pub base_url: reqwest::Url,
    pub api_keys: Vec<Secret>,
    pub timeouts: Timeouts,
}

/// Upstream timeouts of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Plain requests: the whole exchange. Streams: until the response headers.
    pub request: Duration,
    /// Streams: the longest gap allowed between two upstream reads.
    pub stream_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(600),
            stream_idle: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub deployments: Vec<DeploymentConfig>,
}

#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub provider: String,
    /// Model name the upstream knows.
    pub model: String,
}

/// A virtual key: who the caller is and what it may use.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    pub tenant: String,
    pub team: String,
    pub hash: KeyHash,
    pub models: AllowedModels,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedModels {
    All,
    Only(BTreeSet<String>),
}

impl AllowedModels {
    #[must_use]
    pub fn allows(&self, model: &str) -> bool {
        match self {
            AllowedModels::All => true,
            AllowedModels::Only(set) => set.contains(model),
        }
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path.into()
            },
            message: message.into(),
        }
    }
}

/// Every problem of a configuration, listed together.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.issues.len()
        )?;
        for issue in &self.issues {
            writeln!(f, "  - {}: {}", issue.path, issue.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    /// Every problem found, each with its path in the file.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            issues: vec![ConfigIssue::new(
                "(file)",
                format!("cannot read {}: {e}", path.display()),
            )],
        })?;
        Self::from_toml(&text, env)
    }

    /// Parses and validates a TOML document.
    ///
    /// # Errors
    /// Every problem found, each with its path in the document.
    pub fn from_toml(text: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        let mut doc: toml::Value = toml::from_str(text).map_err(|e| ConfigError {
            issues: vec![ConfigIssue::new("(syntax)", e.message().to_string())],
        })?;
        let mut issues = Vec::new();
        interpolate::interpolate_tree(&mut doc, "", env, &mut issues);
        let config = Validator {
            env,
            issues: &mut issues,
        }
        .validate(doc);
        match config {
            Some(config) if issues.is_empty() => Ok(config),
            _ => Err(ConfigError { issues }),
        }
    }
}

struct Validator<'a> {
    env: &'a dyn Env,
    issues: &'a mut Vec<ConfigIssue>,
}

impl Validator<'_> {
    fn issue(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue::new(path, message));
    }

    /// Deserializes one section, recording its error instead of stopping.
    fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        value: toml::Value,
    ) -> Option<T> {
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.issue(path, redact_string_values(e.message()));
                None
            }
        }
    }

    fn tables(&mut self, path: &str, value: Option<toml::Value>) -> BTreeMap<String, toml::Value> {
        match value {
            None => BTreeMap::new(),
            Some(toml::Value::Table(t)) => t.into_iter().collect(),
            Some(_) => {
                self.issue(path, "expected a table");
                BTreeMap::new()
            }
        }
    }

    fn validate(mut self, doc: toml::Value) -> Option<Config> {
        let toml::Value::Table(mut root) = doc else {
            self.issue("", "expected a table");
            return None;
        };
        for key in root.keys() {
            if !["server", "store", "kafka", "providers", "models", "keys"].contains(&key.as_str())
            {
                self.issue(
                    key,
                    "unknown section (expected server, store, kafka, providers, models, keys)",
                );
            }
        }
        let server = root
            .remove("server")
            .and_then(|v| self.section::<RawServer>("server", v));
        let store = root
            .remove("store")
            .and_then(|v| self.section::<RawStore>("store", v));
        let kafka = root
            .remove("kafka")
            .and_then(|v| self.section::<RawKafka>("kafka", v))
            .map(|k| self.kafka(k));
        let raw_providers = self.tables("providers", root.remove("providers"));
        let raw_models = self.tables("models", root.remove("models"));
        let raw_keys = self.tables("keys", root.remove("keys"));

        let server = self.server(server.unwrap_or_default());
        let store = StoreConfig {
            path: PathBuf::from(
                store
                    .and_then(|s| s.path)
                    .unwrap_or_else(|| "tollgate.db".into()),
            ),
        };
        let providers: Vec<ProviderConfig> = raw_providers
            .into_iter()
            .filter_map(|(name, v)| {
                let path = format!("providers.{name}");
                let raw = self.section::<RawProvider>(&path, v)?;
                self.provider(&path, name, raw)
            })
            .collect();
        let provider_names: HashSet<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        let models: Vec<ModelConfig> = raw_models
            .into_iter()
            .filter_map(|(name, v)| {
                let path = format!("models.{name}");
                let raw = self.section::<RawModel>(&path, v)?;
                self.model(&path, name, raw, &provider_names)
            })
            .collect();
        let model_names: HashSet<&str> = models.iter().map(|m| m.name.as_str()).collect();
        let mut seen_hashes = HashSet::new();
        let keys: Vec<KeyConfig> = raw_keys
            .into_iter()
            .filter_map(|(name, v)| {
                let path = format!("keys.{name}");
                let raw = self.section::<RawKey>(&path, v)?;
                let key = self.key(&path, name, raw, &model_names)?;
                if !seen_hashes.insert(key.hash) {
                    self.issue(&path, "the same key is configured twice");
                }
                Some(key)
            })
            .collect();
        Some(Config {
            server: server?,
            store,
            kafka,
            providers,
            models,
            keys,
        })
    }

    fn server(&mut self, raw: RawServer) -> Option<ServerConfig> {
        let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = match listen.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.issue(
                    "server.listen",
                    format!("{listen:?} is not an address like 127.0.0.1:8080"),
                );
                None
            }
        };
        let max_body_bytes = match raw.max_body_bytes {
            None => Some(DEFAULT_MAX_BODY_BYTES),
            Some(0) => {
                self.issue("server.max_body_bytes", "must be greater than 0");
                None
            }
            Some(n) => usize::try_from(n).ok(),
        };
        Some(ServerConfig {
            listen: listen?,
            max_body_bytes: max_body_bytes?,
        })
    }

    fn kafka(&mut self, raw: RawKafka) -> KafkaConfig {
        if raw.brokers.trim().is_empty() {
            self.issue("kafka.brokers", "must list at least one broker (host:port)");
        }
        if raw.spool_max_bytes == Some(0) {
            self.issue("kafka.spool_max_bytes", "must be greater than 0");
        }
        if raw.message_timeout_ms == Some(0) {
            self.issue("kafka.message_timeout_ms", "must be greater than 0");
        }
        KafkaConfig {
            brokers: raw.brokers,
            topic: raw
                .topic
                .unwrap_or_else(|| tollgate_schemas::topics::USAGE.into()),
            spool_dir: PathBuf::from(raw.spool_dir.unwrap_or_else(|| "tollgate-spool".into())),
            spool_max_bytes: raw.spool_max_bytes.unwrap_or(1 << 30),
            message_timeout: Duration::from_millis(raw.message_timeout_ms.unwrap_or(5_000)),
        }
    }

    fn provider(&mut self, path: &str, name: String, raw: RawProvider) -> Option<ProviderConfig> {
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
        if keys.is_empty() && kind.requires_api_key() {
            self.issue(
                &format!("{path}.api_keys"),
                format!("kind {} needs at least one API key", kind.name()),
            );
        }
        let mut timeouts = Timeouts::default();
        for (field, value, slot) in [
            (
                "connect_timeout_ms",
                raw.connect_timeout_ms,
                &mut timeouts.connect,
            ),
            (
                "request_timeout_ms",
                raw.request_timeout_ms,
                &mut timeouts.request,
            ),
            (
                "stream_idle_timeout_ms",
                raw.stream_idle_timeout_ms,
                &mut timeouts.stream_idle,
            ),
        ] {
            match value {
                Some(0) => self.issues.push(ConfigIssue::new(
                    &format!("{path}.{field}"),
                    "must be greater than 0",
                )),
                Some(ms) => *slot = Duration::from_millis(ms),
                None => {}
            }
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
        })
    }

    fn model(
        &mut self,
        path: &str,
        name: String,
        raw: RawModel,
        providers: &HashSet<&str>,
    ) -> Option<ModelConfig> {
        if raw.deployments.is_empty() {
            self.issue(
                &format!("{path}.deployments"),
                "a model needs at least one deployment",
            );
        }
        let mut ok = true;
        for (i, RawDeployment { provider, model }) in raw.deployments.iter().enumerate() {
            if !providers.contains(provider.as_str()) {
                self.issue(
                    &format!("{path}.deployments[{i}].provider"),
                    format!("no provider named {provider:?}"),
                );
                ok = false;
            }
            if model.is_empty() {
                self.issue(
                    &format!("{path}.deployments[{i}].model"),
                    "must not be empty",
                );
                ok = false;
            }
        }
        let deployments = raw
            .deployments
            .into_iter()
            .map(|d| DeploymentConfig {
                provider: d.provider,
                model: d.model,
            })
            .collect();
        ok.then_some(ModelConfig { name, deployments })
    }

    fn key(
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
        })
    }
}

/// serde quotes the offending value (`invalid type: string "sk-…"`); that value may be an interpolated
/// secret, so it is cut from the message.
fn redact_string_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(pos) = rest.find("string \"") {
        out.push_str(&rest[..pos]);
        out.push_str("a string");
        let after = &rest[pos + "string \"".len()..];
        rest = after.find('"').map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;

//! Phase two of loading: raw sections → validated types, every problem recorded with its path.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::budgets::RawBudgetSettings;
use super::pricing::{RawPriceRow, RawPricing};
use super::raw::{
    RawAdmin, RawKafka, RawKey, RawModel, RawProvider, RawServer, RawStore, RawTelemetry, RawTenant,
};
use super::reports::RawReports;
use super::{
    Config, ConfigIssue, Env, KafkaConfig, KeyConfig, Limits, ModelConfig, ProviderConfig,
    ServerConfig, StoreConfig, TelemetryConfig, TenantConfig, DEFAULT_MAX_BODY_BYTES,
};
use crate::auth::KeyHash;

const SECTIONS: [&str; 15] = [
    "budget_settings",
    "budgets",
    "admin",
    "reports",
    "pricing",
    "prices",
    "server",
    "store",
    "kafka",
    "providers",
    "models",
    "keys",
    "teams",
    "tenants",
    "telemetry",
];

pub(super) struct Validator<'a> {
    pub(super) env: &'a dyn Env,
    issues: &'a mut Vec<ConfigIssue>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(env: &'a dyn Env, issues: &'a mut Vec<ConfigIssue>) -> Self {
        Self { env, issues }
    }

    pub(super) fn issue(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue::new(path, message));
    }

    /// Deserializes one section, recording its error instead of stopping.
    pub(super) fn section<T: serde::de::DeserializeOwned>(
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

    /// A millisecond setting that must be positive, when present.
    pub(super) fn millis(&mut self, path: &str, value: Option<u64>) -> Option<Duration> {
        match value {
            Some(0) => {
                self.issue(path, "must be greater than 0");
                None
            }
            other => other.map(Duration::from_millis),
        }
    }

    /// Rate limits, when given: every given limit must be at least 1 (0 would refuse everything).
    pub(super) fn limits(&mut self, path: &str, raw: Option<Limits>) -> Limits {
        let limits = raw.unwrap_or_default();
        for (name, value) in [
            ("rpm", limits.rpm),
            ("tpm", limits.tpm),
            ("max_in_flight", limits.max_in_flight),
        ] {
            if value == Some(0) {
                self.issue(
                    &format!("{path}.{name}"),
                    "must be at least 1 (leave it out for no limit)",
                );
            }
        }
        limits
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

    pub(super) fn validate(mut self, doc: toml::Value) -> Option<Config> {
        let toml::Value::Table(mut root) = doc else {
            self.issue("", "expected a table");
            return None;
        };
        for key in root.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                self.issue(
                    key,
                    format!("unknown section (expected {})", SECTIONS.join(", ")),
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
        let admin = root
            .remove("admin")
            .and_then(|v| self.section::<RawAdmin>("admin", v))
            .and_then(|a| self.admin(a));
        let reports = root
            .remove("reports")
            .and_then(|v| self.section::<RawReports>("reports", v))
            .map(|r| self.reports(r))
            .unwrap_or_default();
        let raw_pricing = root
            .remove("pricing")
            .and_then(|v| self.section::<RawPricing>("pricing", v))
            .unwrap_or_default();
        let raw_prices = root
            .remove("prices")
            .and_then(|v| self.section::<Vec<RawPriceRow>>("prices", v))
            .unwrap_or_default();
        let pricing = self.pricing(raw_pricing, raw_prices);
        let raw_budget_settings = root
            .remove("budget_settings")
            .and_then(|v| self.section::<RawBudgetSettings>("budget_settings", v))
            .unwrap_or_default();
        let raw_budgets = self.tables("budgets", root.remove("budgets"));
        let cluster = kafka.is_some();
        let budgets = pricing.as_ref().and_then(|p| {
            let currency = p.rates.reporting.clone();
            self.budgets(raw_budget_settings, raw_budgets, &currency, cluster)
        });
        let telemetry = match root.remove("telemetry") {
            Some(v) => self
                .section::<RawTelemetry>("telemetry", v)
                .and_then(|t| self.telemetry(t)),
            None => self.telemetry(RawTelemetry::default()),
        };
        let raw_providers = self.tables("providers", root.remove("providers"));
        let raw_models = self.tables("models", root.remove("models"));
        let raw_keys = self.tables("keys", root.remove("keys"));
        let raw_teams = self.tables("teams", root.remove("teams"));
        let raw_tenants = self.tables("tenants", root.remove("tenants"));

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
        let models: Vec<ModelConfig> = raw_models
            .into_iter()
            .filter_map(|(name, v)| {
                let path = format!("models.{name}");
                let raw = self.section::<RawModel>(&path, v)?;
                self.model(&path, name, raw, &providers, pricing.as_ref()?)
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
        let teams = raw_teams
            .into_iter()
            .filter_map(|(name, v)| {
                let path = format!("teams.{name}");
                let limits = self.section::<Limits>(&path, v)?;
                Some((name, self.limits(&path, Some(limits))))
            })
            .collect();
        let tenants = raw_tenants
            .into_iter()
            .filter_map(|(name, v)| {
                let raw = self.section::<RawTenant>(&format!("tenants.{name}"), v)?;
                Some((
                    name,
                    TenantConfig {
                        require_tags: raw.require_tags.unwrap_or_default(),
                    },
                ))
            })
            .collect();
        Some(Config {
            teams,
            tenants,
            server: server?,
            store,
            kafka,
            providers,
            models,
            keys,
            pricing: pricing?,
            budgets: budgets?,
            admin,
            telemetry,
            reports,
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

    /// The admin key's hash: `sha256` (from `tollgate keys new`) or the key itself in `key_env`.
    fn admin(&mut self, raw: RawAdmin) -> Option<KeyHash> {
        match (raw.sha256.as_deref(), raw.key_env.as_deref()) {
            (Some(hex), None) => KeyHash::from_hex(hex).or_else(|| {
                self.issue(
                    "admin.sha256",
                    "must be 64 hex characters (see `tollgate keys new`)",
                );
                None
            }),
            (None, Some(var)) => match self.env.var(var).filter(|v| !v.is_empty()) {
                Some(raw_key) => Some(KeyHash::of(&raw_key)),
                None => {
                    self.issue(
                        "admin.key_env",
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            },
            _ => {
                self.issue("admin", "set exactly one of `sha256` or `key_env`");
                None
            }
        }
    }

    /// `[telemetry]`, falling back to the standard OpenTelemetry environment: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// (used as is), `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces`), `OTEL_SERVICE_NAME`; `OTEL_SDK_DISABLED=true`
    /// turns export off. An empty `otlp_endpoint` (e.g. `"${OTLP_URL:-}"`) also means off.
    fn telemetry(&mut self, raw: RawTelemetry) -> Option<TelemetryConfig> {
        let ratio = raw.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&ratio) {
            self.issue("telemetry.sample_ratio", "must be between 0.0 and 1.0");
        }
        let service_name = raw
            .service_name
            .or_else(|| self.env.var("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "tollgate".into());
        if service_name.trim().is_empty() {
            self.issue("telemetry.service_name", "must not be empty");
        }
        if self
            .env
            .var("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return None;
        }
        let (path, url) = match raw.otlp_endpoint {
            Some(base) => ("telemetry.otlp_endpoint", traces_url(&base)),
            None => match self.env.var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(full) if !full.is_empty() => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full),
                _ => (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    traces_url(
                        &self
                            .env
                            .var("OTEL_EXPORTER_OTLP_ENDPOINT")
                            .unwrap_or_default(),
                    ),
                ),
            },
        };
        if url.is_empty() {
            return None;
        }
        match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(TelemetryConfig {
                traces_endpoint: u,
                service_name,
                sample_ratio: ratio.clamp(0.0, 1.0),
            }),
            _ => {
                self.issue(path, "must be an http(s) URL like http://127.0.0.1:4318");
                None
            }
        }
    }

    fn kafka(&mut self, raw: RawKafka) -> KafkaConfig {
        if raw.brokers.trim().is_empty() {
            self.issue("kafka.brokers", "must list at least one broker (host:port)");
        }
        if raw.spool_max_bytes == Some(0) {
            self.issue("kafka.spool_max_bytes", "must be greater than 0");
        }
        let message_timeout = self.millis("kafka.message_timeout_ms", raw.message_timeout_ms);
        KafkaConfig {
            brokers: raw.brokers,
            topic: raw
                .topic
                .unwrap_or_else(|| tollgate_schemas::topics::USAGE.into()),
            control_topic: raw
                .control_topic
                .unwrap_or_else(|| tollgate_schemas::topics::CONTROL.into()),
            budget_requests_topic: raw
                .budget_requests_topic
                .unwrap_or_else(|| tollgate_schemas::topics::BUDGET_REQUESTS.into()),
            budget_decisions_topic: raw
                .budget_decisions_topic
                .unwrap_or_else(|| tollgate_schemas::topics::BUDGET_DECISIONS.into()),
            spool_dir: PathBuf::from(raw.spool_dir.unwrap_or_else(|| "tollgate-spool".into())),
            spool_max_bytes: raw.spool_max_bytes.unwrap_or(1 << 30),
            message_timeout: message_timeout.unwrap_or(Duration::from_secs(5)),
        }
    }
}

/// An OTLP base URL → its traces URL: `/v1/traces` appended unless already there; empty stays empty.
fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.is_empty() || base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
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

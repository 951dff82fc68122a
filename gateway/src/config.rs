//! Configuration: one TOML file → [`Config`], validated as a whole.
//!
//! Two phases: serde reads raw sections (unknown fields refused), then validation turns them into types that
//! cannot hold a bad state (`SocketAddr`, `Url`, `Duration`, [`Secret`], [`KeyHash`]). Every problem is
//! collected with its path and reported at once; secret values never appear in a message.

mod budgets;
mod cloud;
mod interpolate;
mod keys;
mod models;
mod pricing;
mod providers;
mod raw;
mod reports;
mod secret;
mod validator;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::rate_limit::Limits;
pub use cloud::{AwsSettings, AzureApi, AzureAuth, AzureSettings};
pub use interpolate::{interpolate, Env, ProcessEnv};
pub use secret::Secret;

use tollgate_schemas::price::{ExchangeRates, Price, PriceTable};

use crate::auth::KeyHash;
use crate::provider::ProviderKind;
use validator::Validator;

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
    pub pricing: PricingConfig,
    /// `[budget_settings]` and `[budgets.<id>]`.
    pub budgets: BudgetConfig,
    /// Hash of the admin key (`[admin]`); `None` turns the admin API, usage API and usage page off.
    pub admin: Option<KeyHash>,
    /// `[reports]`: where usage reports read from.
    pub reports: ReportsConfig,
    /// `[teams.<name>]`: limits shared by every key of a team.
    pub teams: BTreeMap<String, Limits>,
    /// `[tenants.<name>]`: constraints on every key of a tenant.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Present: spans are exported over OTLP (`[telemetry]`, or the standard `OTEL_EXPORTER_OTLP_*`
    /// environment). Absent: no tracing beyond logs.
    pub telemetry: Option<TelemetryConfig>,
}

/// OpenTelemetry trace export (see [`crate::telemetry`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The full OTLP/HTTP traces URL (`…/v1/traces`).
    pub traces_endpoint: reqwest::Url,
    pub service_name: String,
    /// Share of requests traced, 0.0 to 1.0.
    pub sample_ratio: f64,
}

/// What applies to every key of a tenant.
#[derive(Debug, Clone, Default)]
pub struct TenantConfig {
    /// Tags every deployment the tenant's keys are routed to must carry; a key cannot loosen them.
    pub require_tags: Tags,
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

/// Where usage reports read from: ClickHouse when configured, else the embedded store.
#[derive(Debug, Clone, Default)]
pub struct ReportsConfig {
    pub clickhouse: Option<ReportsClickHouse>,
}

/// The ClickHouse that reports query (over HTTP).
#[derive(Debug, Clone)]
pub struct ReportsClickHouse {
    pub url: reqwest::Url,
    /// Letters, digits and underscores only (checked at load).
    pub database: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// The Kafka event sink.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    /// The control log's topic.
    pub control_topic: String,
    /// Budget lease requests and decisions.
    pub budget_requests_topic: String,
    pub budget_decisions_topic: String,
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
    /// Labels for routing constraints (`region = "cn"`, `residency = "eu"`, `on_prem = "true"`), inherited by
    /// every deployment on this provider.
    pub tags: Tags,
    /// Limits of each API key of this provider.
    pub key_limits: Limits,
    /// Kind `azure`: which API and how the key is sent.
    pub azure: Option<AzureSettings>,
    /// Kind `bedrock`: region and SigV4 credentials.
    pub aws: Option<AwsSettings>,
    /// Vertex AI's project, region and service account (`kind = "vertex"` only).
    pub vertex: Option<VertexConfig>,
    /// The cloud region a TC3-signed request names (`hunyuan-native`: `X-TC-Region`, optional).
    pub region: Option<String>,
}

/// Where a Vertex AI provider runs and as whom.
#[derive(Debug, Clone)]
pub struct VertexConfig {
    /// Google Cloud project id.
    pub project: String,
    /// Region (`us-central1`, `europe-west4`, `global`, …).
    pub region: String,
    /// The service-account key file (JSON), from `service_account_file` or `service_account_env`.
    pub service_account: Secret,
    /// The OAuth token endpoint; the key file's `token_uri` when unset.
    pub token_url: Option<String>,
    /// Fixed publisher; by default it follows each model id.
    pub publisher: Option<crate::provider::vertex::Publisher>,
}

/// Routing labels: name → value.
pub type Tags = BTreeMap<String, String>;

/// Upstream timeouts of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until the upstream's first byte: response headers, and for streams also the first chunk. A plain
    /// (non-streamed) answer's headers come only once generation is done, so this bounds the whole call.
    pub first_byte: Duration,
    /// Streams: the longest gap allowed between two upstream reads.
    pub stream_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(600),
            stream_idle: Duration::from_secs(120),
        }
    }
}

/// How a deployment group picks among the deployments of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Strict rotation over every healthy (deployment, key) slot.
    RoundRobin,
    /// Smooth weighted rotation by deployment `weight`.
    Weighted,
    /// The deployment with the lowest moving average of time to first byte first.
    LowestLatency,
    /// The cheapest deployment (by `price`) first.
    LowestCost,
}

/// A public model: ordered tiers of deployments, tried in order when one fails.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub strategy: Strategy,
    pub tiers: Vec<Vec<DeploymentConfig>>,
    /// Upstream attempts per request, across keys and tiers.
    pub max_attempts: u32,
    /// Deadline of a request, all attempts and waits included.
    pub total_timeout: Duration,
    /// Overrides the providers' first-byte timeout for this model.
    pub first_byte_timeout: Option<Duration>,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub provider: String,
    /// Model name the upstream knows.
    pub model: String,
    /// Share under the `weighted` strategy.
    pub weight: u32,
    /// The provider's tags with this deployment's on top.
    pub tags: Tags,
    pub price: Option<DeploymentPrice>,
    /// The model id prices are looked up by, when not `model` (`price_as` in the config).
    pub price_as: Option<String>,
}

/// What a deployment costs, for the `lowest-cost` strategy: nano-units of its currency per million tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentPrice {
    pub price: Price,
    /// `config`, or the shipped table's version.
    pub version: String,
    /// Input + output price per million tokens in the reporting currency (the `lowest-cost` key).
    pub rank: u64,
}

/// Budgets and their shared settings.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    pub specs: Vec<crate::budget::BudgetSpec>,
    pub settings: crate::budget::BudgetSettings,
    /// Where threshold alerts go (always signed).
    pub webhook: Option<crate::budget::alerts::WebhookConfig>,
}

/// `[pricing]` with the price tables it resolves against.
#[derive(Debug, Clone)]
pub struct PricingConfig {
    /// Reporting currency and conversion rates.
    pub rates: ExchangeRates,
    pub missing: MissingPrice,
    /// `[[prices]]` rows from the config file.
    pub overrides: PriceTable,
    /// The shipped table.
    pub table: PriceTable,
}

/// What a deployment with no known price does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingPrice {
    /// Serve it; its events cost zero with `price_missing` set (counted in /metrics, warned at start).
    Record,
    /// Refuse to load the config.
    Reject,
}

/// A virtual key: who the caller is and what it may use.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    pub tenant: String,
    pub team: String,
    pub hash: KeyHash,
    pub models: AllowedModels,
    /// Deployments this key may be routed to must carry every one of these tags (data residency, region).
    pub require_tags: Tags,
    pub limits: Limits,
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
        let config = Validator::new(env, &mut issues).validate(doc);
        match config {
            Some(config) if issues.is_empty() => Ok(config),
            _ => Err(ConfigError { issues }),
        }
    }
}

#[cfg(test)]
mod tests;

//! The file's shape, as serde reads it. Validation lives in the parent module.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::rate_limit::Limits;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub require_tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: String,
    pub base_url: Option<String>,
    pub api_keys: Option<Vec<String>>,
    pub api_key: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub stream_idle_timeout_ms: Option<u64>,
    pub tags: Option<BTreeMap<String, String>>,
    /// Limits of each of this provider's API keys (the provider's own quota).
    pub key_limits: Option<Limits>,
    /// Azure OpenAI addressing (kind `azure`).
    pub azure: Option<super::cloud::RawAzure>,
    /// AWS region and credentials (kind `bedrock`).
    pub aws: Option<super::cloud::RawAws>,
    /// Vertex AI: Google Cloud project id.
    pub project: Option<String>,
    /// The cloud region: Vertex AI's (`us-central1`, `global`, …, required), or the one a TC3-signed request
    /// names (`hunyuan-native`: `X-TC-Region`, optional).
    pub region: Option<String>,
    /// Vertex AI: path of the service-account key file.
    pub service_account_file: Option<String>,
    /// Vertex AI: name of an environment variable holding the key file's JSON.
    pub service_account_env: Option<String>,
    /// Vertex AI: OAuth token endpoint (default: the key file's `token_uri`).
    pub token_url: Option<String>,
    /// Vertex AI: `google` or `anthropic` for every model (default: from the model id).
    pub publisher: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub deployments: Option<Vec<RawDeployment>>,
    pub tiers: Option<Vec<Vec<RawDeployment>>>,
    pub strategy: Option<String>,
    pub max_attempts: Option<u32>,
    pub total_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub limits: Option<Limits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub provider: String,
    pub model: String,
    pub weight: Option<u32>,
    pub tags: Option<BTreeMap<String, String>>,
    pub price: Option<RawPrice>,
    /// Price this deployment as that model id of its provider kind (`[[prices]]` rows, then the shipped
    /// table): for upstream names that are not model ids, such as Azure deployment names.
    pub price_as: Option<String>,
}

/// Decimal strings, so no amount of money is ever a float.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// Default: the reporting currency (`[pricing] currency`).
    pub currency: Option<String>,
    pub input_per_mtok: String,
    pub output_per_mtok: String,
    /// Default: `input_per_mtok`.
    pub cached_read_per_mtok: Option<String>,
    /// Default: `input_per_mtok`.
    pub cache_write_per_mtok: Option<String>,
    /// Default: `output_per_mtok`.
    pub reasoning_per_mtok: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub sha256: Option<String>,
    pub key_env: Option<String>,
    pub models: Option<Vec<String>>,
    pub require_tags: Option<BTreeMap<String, String>>,
    pub limits: Option<Limits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    pub brokers: String,
    pub topic: Option<String>,
    /// Control topic (admin changes to keys and budgets). Default `tollgate.control.v1`.
    pub control_topic: Option<String>,
    /// Budget lease requests (replicas → owner). Default `tollgate.budget.requests.v1`.
    pub budget_requests_topic: Option<String>,
    /// Budget lease decisions (owner → replicas). Default `tollgate.budget.decisions.v1`.
    pub budget_decisions_topic: Option<String>,
    pub spool_dir: Option<String>,
    pub spool_max_bytes: Option<u64>,
    pub message_timeout_ms: Option<u64>,
}

/// `[admin]`: the master key of the admin API, usage API and usage page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub sha256: Option<String>,
    pub key_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
}

//! The usage event: one per request that passed authentication, success or failure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version written by this build. See the crate docs for the versioning rules.
pub const USAGE_SCHEMA_VERSION: u16 = 1;

/// What one request did and used. Carries principal ids, never secrets or prompt text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub schema_version: u16,
    /// UUIDv7, also returned to the client as `x-request-id`; the idempotency key downstream.
    pub event_id: Uuid,
    /// Unix epoch milliseconds when the gateway accepted the request.
    pub started_at_ms: i64,
    /// Unix epoch milliseconds when the last byte went to the client (or the request failed).
    pub finished_at_ms: i64,
    pub tenant: String,
    pub team: String,
    /// The virtual key's configured name (never the key itself).
    pub key_id: String,
    /// The OpenAI `user` field, when the client sent one.
    #[serde(default)]
    pub end_user: Option<String>,
    pub endpoint: Endpoint,
    /// Public model name the client asked for.
    pub model: String,
    /// Configured provider name (e.g. `openai-eu`) and its kind (e.g. `openai`).
    pub provider: String,
    pub provider_kind: String,
    /// Deployment id: `<provider>/<upstream model>`.
    pub deployment: String,
    pub upstream_model: String,
    pub stream: bool,
    pub outcome: Outcome,
    /// Status the client saw (200 for a stream whose failure came after the headers).
    pub http_status: u16,
    /// Machine-readable error code when the request failed (`upstream_timeout`, `stream_truncated`, …).
    #[serde(default)]
    pub error_code: Option<String>,
    /// Upstream attempts made (1 without retries).
    pub attempts: u32,
    pub latency_ms: u64,
    /// Time to the first upstream body byte (streams and plain requests alike).
    #[serde(default)]
    pub ttft_ms: Option<u64>,
    pub usage: UsageVector,
    pub usage_source: UsageSource,
    /// What the request cost. Events written before pricing existed decode with a zero, unpriced cost.
    #[serde(default)]
    pub cost: Cost,
    /// Business labels (`x-tollgate-tags: feature=summarize,env=prod`, or the request's `metadata`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The budget leases the request's reservations came from (one per cluster budget that applied), so the
    /// budget owner can tell what each lease has spent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget_leases: Vec<Uuid>,
}

/// A request's cost: exact nano-units in the price's own currency, and the same converted into the
/// reporting currency (what budgets and cross-provider totals use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Nano-units of `currency`.
    pub nanos: u64,
    /// ISO 4217 code of the price that applied; empty when no price applied.
    pub currency: String,
    /// Nano-units of `reporting_currency`.
    pub reporting_nanos: u64,
    pub reporting_currency: String,
    /// Version of the price table (or `config`) that produced the cost.
    pub price_version: String,
    /// No price was known for the deployment: the cost is zero and flagged, never silently zero.
    pub price_missing: bool,
}

/// Token counts in OpenAI's meaning: `cached_read_tokens` and `cache_write_tokens` are part of
/// `prompt_tokens`; `reasoning_tokens` is part of `completion_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageVector {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

impl UsageVector {
    /// Prompt plus completion tokens.
    #[must_use]
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Where the usage numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The upstream reported them.
    Provider,
    /// The upstream sent none (cut stream, client gone before the final chunk); the gateway estimated them.
    Estimated,
    /// Nothing was used: the request failed before the upstream produced output.
    None,
}

/// How the request ended, and whose fault a failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// The client's request was refused (bad body, model not allowed, …).
    ClientError,
    /// The upstream answered with an error, failed, or timed out.
    UpstreamError,
    /// Tollgate itself failed.
    GatewayError,
    /// The client went away before the response was complete.
    ClientDisconnected,
}

/// The API surface the request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    /// `POST /v1/messages`, the Anthropic-format API (added in schema version 1: readers must accept it).
    Messages,
    /// `POST /v1beta/models/{model}:generateContent` / `:streamGenerateContent`, the Gemini-format API (added in
    /// schema version 1: readers must accept it).
    GenerateContent,
}

impl Endpoint {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::GenerateContent => "generate_content",
        }
    }
}

impl Outcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::GatewayError => "gateway_error",
            Outcome::ClientDisconnected => "client_disconnected",
        }
    }
}

impl UsageSource {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Provider => "provider",
            UsageSource::Estimated => "estimated",
            UsageSource::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_through_json_and_old_readers_default_optional_fields() {
        let json = serde_json::json!({
            "schema_version": 1, "event_id": "01890a5d-ac96-774b-bcce-b302099a8057",
            "started_at_ms": 1, "finished_at_ms": 2, "tenant": "t", "team": "tm", "key_id": "k",
            "endpoint": "chat_completions", "model": "m", "provider": "p", "provider_kind": "openai",
            "deployment": "p/m", "upstream_model": "m", "stream": true, "outcome": "success",
            "http_status": 200, "attempts": 1, "latency_ms": 5,
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "cached_read_tokens": 1,
                      "cache_write_tokens": 0, "reasoning_tokens": 2},
            "usage_source": "provider"
        });
        let event: UsageEvent = serde_json::from_value(json).expect("decodes");
        assert_eq!(event.end_user, None);
        assert_eq!(event.usage.total_tokens(), 7);
        let again: UsageEvent =
            serde_json::from_str(&serde_json::to_string(&event).expect("encodes"))
                .expect("decodes");
        assert_eq!(again, event);
    }

    #[test]
    fn endpoint_names_match_their_serde_names() {
        for e in [
            Endpoint::ChatCompletions,
            Endpoint::Embeddings,
            Endpoint::Messages,
            Endpoint::GenerateContent,
        ] {
            assert_eq!(serde_json::to_value(e).expect("encodes"), e.as_str());
        }
    }
}

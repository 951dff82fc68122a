//! A usage event as a row of `usage_events` (see `schemas/migrations/clickhouse/0001_usage_events.sql` and
//! `0004_usage_cost.sql`).

use clickhouse::Row;
use serde::Serialize;
use tollgate_schemas::UsageEvent;
use uuid::Uuid;

/// Column order and types follow the DDL; `insert` names the columns from these fields.
#[derive(Debug, Clone, Row, Serialize)]
pub struct UsageRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub schema_version: u16,
    /// `DateTime`: seconds since the epoch.
    pub started_at: u32,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub tenant: String,
    pub team: String,
    pub key_id: String,
    pub end_user: String,
    pub endpoint: String,
    pub model: String,
    pub provider: String,
    pub provider_kind: String,
    pub deployment: String,
    pub upstream_model: String,
    pub stream: u8,
    pub outcome: String,
    pub http_status: u16,
    pub error_code: String,
    pub attempts: u32,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub usage_source: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub inserted_at_ms: u64,
    pub cost_nanos: i64,
    pub currency: String,
    pub reporting_cost_nanos: i64,
    pub reporting_currency: String,
    pub price_version: String,
    pub price_missing: u8,
    pub tag_keys: Vec<String>,
    pub tag_values: Vec<String>,
    pub budget_leases: Vec<String>,
}

impl UsageRow {
    #[must_use]
    pub fn new(e: UsageEvent, partition: i32, offset: i64, inserted_at_ms: u64) -> Self {
        let started_ms = u64::try_from(e.started_at_ms).unwrap_or(0);
        let (tag_keys, tag_values) = e.tags.into_iter().unzip();
        Self {
            event_id: e.event_id,
            schema_version: e.schema_version,
            started_at: u32::try_from(started_ms / 1000).unwrap_or(u32::MAX),
            started_at_ms: started_ms,
            finished_at_ms: u64::try_from(e.finished_at_ms).unwrap_or(0),
            tenant: e.tenant,
            team: e.team,
            key_id: e.key_id,
            end_user: e.end_user.unwrap_or_default(),
            endpoint: e.endpoint.as_str().into(),
            model: e.model,
            provider: e.provider,
            provider_kind: e.provider_kind,
            deployment: e.deployment,
            upstream_model: e.upstream_model,
            stream: u8::from(e.stream),
            outcome: e.outcome.as_str().into(),
            http_status: e.http_status,
            error_code: e.error_code.unwrap_or_default(),
            attempts: e.attempts,
            latency_ms: e.latency_ms,
            ttft_ms: e.ttft_ms,
            prompt_tokens: e.usage.prompt_tokens,
            completion_tokens: e.usage.completion_tokens,
            cached_read_tokens: e.usage.cached_read_tokens,
            cache_write_tokens: e.usage.cache_write_tokens,
            reasoning_tokens: e.usage.reasoning_tokens,
            usage_source: e.usage_source.as_str().into(),
            kafka_partition: partition,
            kafka_offset: offset,
            inserted_at_ms,
            cost_nanos: i64::try_from(e.cost.nanos).unwrap_or(i64::MAX),
            currency: e.cost.currency,
            reporting_cost_nanos: i64::try_from(e.cost.reporting_nanos).unwrap_or(i64::MAX),
            reporting_currency: e.cost.reporting_currency,
            price_version: e.cost.price_version,
            price_missing: u8::from(e.cost.price_missing),
            tag_keys,
            tag_values,
            budget_leases: e.budget_leases.iter().map(uuid::Uuid::to_string).collect(),
        }
    }
}

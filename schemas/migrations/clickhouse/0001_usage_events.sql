-- Raw usage: one row per UsageEvent, never edited. `event_id` (UUIDv7) is the sort key, so the consumer's
-- dedupe lookup (`WHERE event_id IN (...)`) reads only the granules that can hold those ids.
-- Runs on ClickHouse 18.16 and current ClickHouse: no DateTime64, Map, LowCardinality or TTL.
CREATE TABLE IF NOT EXISTS {db}.usage_events
(
    event_id UUID,
    schema_version UInt16,
    started_at DateTime,
    started_at_ms UInt64,
    finished_at_ms UInt64,
    tenant String,
    team String,
    key_id String,
    end_user String,
    endpoint String,
    model String,
    provider String,
    provider_kind String,
    deployment String,
    upstream_model String,
    stream UInt8,
    outcome String,
    http_status UInt16,
    error_code String,
    attempts UInt32,
    latency_ms UInt64,
    ttft_ms Nullable(UInt64),
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cached_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    usage_source String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at_ms UInt64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(started_at)
ORDER BY event_id

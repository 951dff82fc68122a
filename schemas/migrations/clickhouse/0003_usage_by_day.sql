-- Per-day totals by tenant / team / key / model / provider (UTC days).
CREATE TABLE IF NOT EXISTS {db}.usage_by_day
(
    day Date,
    tenant String,
    team String,
    key_id String,
    model String,
    provider String,
    requests UInt64,
    errors UInt64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cached_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    latency_ms_sum UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, tenant, team, key_id, model, provider);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_by_day_mv TO {db}.usage_by_day AS
SELECT
    toDate(started_at) AS day,
    tenant,
    team,
    key_id,
    model,
    provider,
    count() AS requests,
    countIf(outcome != 'success') AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cached_read_tokens) AS cached_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(latency_ms) AS latency_ms_sum
FROM {db}.usage_events
GROUP BY day, tenant, team, key_id, model, provider

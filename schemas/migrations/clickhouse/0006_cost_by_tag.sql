-- Spend per day by business tag (`x-tollgate-tags` / `metadata`): one row per (tag key, tag value), so a
-- request with two tags counts under both — sum within one tag_key, never across keys.
CREATE TABLE IF NOT EXISTS {db}.cost_by_tag_day
(
    day Date,
    tenant String,
    tag_key String,
    tag_value String,
    model String,
    provider String,
    reporting_currency String,
    requests UInt64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    reporting_cost_nanos Int64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, tenant, tag_key, tag_value, model, provider, reporting_currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.cost_by_tag_day_mv TO {db}.cost_by_tag_day AS
SELECT
    toDate(started_at) AS day,
    tenant,
    tag_key,
    tag_value,
    model,
    provider,
    reporting_currency,
    count() AS requests,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(reporting_cost_nanos) AS reporting_cost_nanos
FROM {db}.usage_events
ARRAY JOIN tag_keys AS tag_key, tag_values AS tag_value
GROUP BY day, tenant, tag_key, tag_value, model, provider, reporting_currency

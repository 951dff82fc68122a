-- Re-pricing: one row per (event, correction) with the cost *difference* under a corrected price table. Raw
-- rows are never edited; the correction feeds the same spend aggregate with zero requests, so
-- sum(reporting_cost_nanos) over cost_by_minute is the corrected spend. `correction_id` groups one run of
-- `tollgate reprice`; `event_id` + `correction_id` is unique.
CREATE TABLE IF NOT EXISTS {db}.cost_corrections
(
    correction_id String,
    event_id UUID,
    started_at DateTime,
    tenant String,
    team String,
    key_id String,
    end_user String,
    model String,
    provider String,
    currency String,
    reporting_currency String,
    old_price_version String,
    new_price_version String,
    delta_cost_nanos Int64,
    delta_reporting_cost_nanos Int64,
    created_at_ms UInt64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(started_at)
ORDER BY (correction_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.cost_corrections_mv TO {db}.cost_by_minute AS
SELECT
    toStartOfMinute(started_at) AS minute,
    tenant,
    team,
    key_id,
    end_user,
    model,
    provider,
    currency,
    reporting_currency,
    toUInt64(0) AS requests,
    toUInt64(0) AS errors,
    toUInt64(0) AS price_missing,
    toUInt64(0) AS prompt_tokens,
    toUInt64(0) AS completion_tokens,
    toUInt64(0) AS cached_read_tokens,
    toUInt64(0) AS cache_write_tokens,
    toUInt64(0) AS reasoning_tokens,
    sum(delta_cost_nanos) AS cost_nanos,
    sum(delta_reporting_cost_nanos) AS reporting_cost_nanos
FROM {db}.cost_corrections
GROUP BY minute, tenant, team, key_id, end_user, model, provider, currency, reporting_currency

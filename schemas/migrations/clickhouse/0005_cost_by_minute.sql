-- Spend per minute by tenant / team / key / end user / model / provider, in the price's currency and in the
-- reporting currency. Cost corrections from re-pricing (`cost_corrections`) feed the same table with
-- `requests = 0`, so sum(reporting_cost_nanos) here is always the corrected spend.
-- SummingMergeTree folds rows during merges: always read with sum(...) GROUP BY.
CREATE TABLE IF NOT EXISTS {db}.cost_by_minute
(
    minute DateTime,
    tenant String,
    team String,
    key_id String,
    end_user String,
    model String,
    provider String,
    currency String,
    reporting_currency String,
    requests UInt64,
    errors UInt64,
    price_missing UInt64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cached_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    cost_nanos Int64,
    reporting_cost_nanos Int64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, tenant, team, key_id, end_user, model, provider, currency, reporting_currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.cost_by_minute_mv TO {db}.cost_by_minute AS
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
    count() AS requests,
    countIf(outcome != 'success') AS errors,
    sum(price_missing) AS price_missing,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cached_read_tokens) AS cached_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_nanos) AS cost_nanos,
    sum(reporting_cost_nanos) AS reporting_cost_nanos
FROM {db}.usage_events
GROUP BY minute, tenant, team, key_id, end_user, model, provider, currency, reporting_currency

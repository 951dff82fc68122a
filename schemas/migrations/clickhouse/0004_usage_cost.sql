-- Cost and attribution on raw usage. Older rows read the defaults: zero cost with `price_missing = 0` and an
-- empty `price_version` (priced before pricing existed; `tollgate reprice` can price them).
-- Tags are two parallel arrays (18.16 has no Map): `tag_keys[i]` = `tag_values[i]`.
ALTER TABLE {db}.usage_events
    ADD COLUMN cost_nanos Int64 DEFAULT 0,
    ADD COLUMN currency String DEFAULT '',
    ADD COLUMN reporting_cost_nanos Int64 DEFAULT 0,
    ADD COLUMN reporting_currency String DEFAULT '',
    ADD COLUMN price_version String DEFAULT '',
    ADD COLUMN price_missing UInt8 DEFAULT 0,
    ADD COLUMN tag_keys Array(String),
    ADD COLUMN tag_values Array(String),
    ADD COLUMN budget_lease String DEFAULT ''

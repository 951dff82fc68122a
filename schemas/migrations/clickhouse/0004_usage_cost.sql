-- Cost and attribution on raw usage. Older rows read the defaults: zero cost with `price_missing = 0` and an
-- empty `price_version` (priced before pricing existed; `tollgate reprice` can price them).
-- Tags are two parallel arrays (18.16 has no Map): `tag_keys[i]` = `tag_values[i]`.
-- One column per statement: 18.16 has no `ADD COLUMN IF NOT EXISTS`, so the migrator skips a column that
-- already exists (see `tollgate_schemas::clickhouse::added_column`), which keeps a re-run harmless.
ALTER TABLE {db}.usage_events ADD COLUMN cost_nanos Int64 DEFAULT 0;
ALTER TABLE {db}.usage_events ADD COLUMN currency String DEFAULT '';
ALTER TABLE {db}.usage_events ADD COLUMN reporting_cost_nanos Int64 DEFAULT 0;
ALTER TABLE {db}.usage_events ADD COLUMN reporting_currency String DEFAULT '';
ALTER TABLE {db}.usage_events ADD COLUMN price_version String DEFAULT '';
ALTER TABLE {db}.usage_events ADD COLUMN price_missing UInt8 DEFAULT 0;
ALTER TABLE {db}.usage_events ADD COLUMN tag_keys Array(String);
ALTER TABLE {db}.usage_events ADD COLUMN tag_values Array(String);
ALTER TABLE {db}.usage_events ADD COLUMN budget_leases Array(String);

-- Virtual keys as the control log last stated them (written by metering-consumer from `KeyIssued` — issue or
-- rotation — and `KeyRevoked` control events), so usage can be read with each key's tenant, team, models and
-- status. Never the key or its hash. Keys declared in a gateway's config file are not in the control log and
-- not here. ReplacingMergeTree keeps the latest version per key after merges; read with `FINAL` or
-- argMax(..., version). issued_at_ms: the latest issue or rotation; version: the event's time (epoch ms).
CREATE TABLE IF NOT EXISTS {db}.virtual_keys
(
    key_id String,
    tenant String,
    team String,
    models Array(String),
    revoked UInt8,
    issued_at_ms UInt64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_id

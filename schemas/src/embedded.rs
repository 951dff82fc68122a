//! DDL of the embedded usage store (SQLite), as ordered migrations.
//!
//! The embedded store plays the part Kafka + ClickHouse play in a cluster: it keeps every [`crate::UsageEvent`]
//! so a single machine can meter without external services. `event_id` is the primary key, so replaying a
//! batch never doubles a row. There are no secondary indexes: each would cost every insert another b-tree update
//! on the writer thread, while reports over the embedded store are scans a single machine affords.

/// Ordered migrations; index + 1 is the version recorded in `PRAGMA user_version`.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS usage_events (
    event_id            TEXT PRIMARY KEY,
    schema_version      INTEGER NOT NULL,
    started_at_ms       INTEGER NOT NULL,
    finished_at_ms      INTEGER NOT NULL,
    tenant              TEXT NOT NULL,
    team                TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    end_user            TEXT,
    endpoint            TEXT NOT NULL,
    model               TEXT NOT NULL,
    provider            TEXT NOT NULL,
    provider_kind       TEXT NOT NULL,
    deployment          TEXT NOT NULL,
    upstream_model      TEXT NOT NULL,
    stream              INTEGER NOT NULL,
    outcome             TEXT NOT NULL,
    http_status         INTEGER NOT NULL,
    error_code          TEXT,
    attempts            INTEGER NOT NULL,
    latency_ms          INTEGER NOT NULL,
    ttft_ms             INTEGER,
    prompt_tokens       INTEGER NOT NULL,
    completion_tokens   INTEGER NOT NULL,
    cached_read_tokens  INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    usage_source        TEXT NOT NULL
);
"#,
    // 2: cost and attribution. Tags are a JSON object (`{"feature":"summarize"}`), NULL when none.
    r#"
ALTER TABLE usage_events ADD COLUMN cost_nanos INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_events ADD COLUMN currency TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN reporting_cost_nanos INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_events ADD COLUMN reporting_currency TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN price_version TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN price_missing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_events ADD COLUMN tags TEXT;
ALTER TABLE usage_events ADD COLUMN budget_lease TEXT;
"#,
    // 3: the control log of the embedded default (admin API changes), replayed in `seq` order at start.
    r#"
CREATE TABLE IF NOT EXISTS control_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    entity  TEXT NOT NULL,
    event   TEXT NOT NULL
);
"#,
];

//! DDL of the embedded usage store (SQLite), as ordered migrations.
//!
//! The embedded store plays the part Kafka + ClickHouse play in a cluster: it keeps every [`crate::UsageEvent`]
//! so a single machine can meter without external services. `event_id` is the primary key, so replaying a
//! batch never doubles a row. `usage_events` has no secondary indexes: each would cost every insert another
//! b-tree update on the writer thread, while reports over the embedded store are scans a single machine
//! affords. Re-pricing appends to `cost_corrections` (migration 3); no row of `usage_events` is ever edited.

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
ALTER TABLE usage_events ADD COLUMN budget_leases TEXT;
"#,
    // 3: re-pricing corrections (`tollgate reprice`), the same columns as ClickHouse's `cost_corrections`
    // (`started_at_ms` for its `started_at`). Rows are only ever appended: an event's corrected cost is its
    // own cost plus the sum of its corrections per currency. Written by the reprice command, never by the
    // event writer thread, so the lookup index by `event_id` costs the hot path nothing.
    r#"
CREATE TABLE IF NOT EXISTS cost_corrections (
    correction_id               TEXT NOT NULL,
    event_id                    TEXT NOT NULL,
    started_at_ms               INTEGER NOT NULL,
    tenant                      TEXT NOT NULL,
    team                        TEXT NOT NULL,
    key_id                      TEXT NOT NULL,
    end_user                    TEXT NOT NULL,
    model                       TEXT NOT NULL,
    provider                    TEXT NOT NULL,
    currency                    TEXT NOT NULL,
    reporting_currency          TEXT NOT NULL,
    old_price_version           TEXT NOT NULL,
    new_price_version           TEXT NOT NULL,
    delta_cost_nanos            INTEGER NOT NULL,
    delta_reporting_cost_nanos  INTEGER NOT NULL,
    created_at_ms               INTEGER NOT NULL,
    PRIMARY KEY (correction_id, event_id, currency, reporting_currency)
);
CREATE INDEX IF NOT EXISTS cost_corrections_by_event ON cost_corrections (event_id);
"#,
    // 4: the control log of the embedded default (admin API changes), replayed in `seq` order at start.
    r#"
CREATE TABLE IF NOT EXISTS control_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    entity  TEXT NOT NULL,
    event   TEXT NOT NULL
);
"#,
];

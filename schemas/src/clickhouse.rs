//! ClickHouse DDL as ordered migrations, and the names of what they create.
//!
//! Every statement runs on ClickHouse 18.16 (Debian's server) and on current ClickHouse (checked through
//! `chdb-core` in `tests/python/test_clickhouse_ddl.py`). `{db}` stands for the database, so tests can use one
//! database each. The consumer records applied versions in [`MIGRATIONS_TABLE`] and applies the rest at start.

/// Raw usage rows, one per event.
pub const USAGE_EVENTS: &str = "usage_events";
/// Per-minute aggregate table (fed by a materialized view).
pub const USAGE_BY_MINUTE: &str = "usage_by_minute";
/// Per-day aggregate table (fed by a materialized view).
pub const USAGE_BY_DAY: &str = "usage_by_day";
/// Per-minute spend by tenant / team / key / end user / model / provider and currency (fed by a view).
pub const COST_BY_MINUTE: &str = "cost_by_minute";
/// Per-day spend by business tag (fed by a view).
pub const COST_BY_TAG_DAY: &str = "cost_by_tag_day";
/// Budgets as last set through the control log (ReplacingMergeTree by `version`).
pub const BUDGETS: &str = "budgets";
/// Virtual keys as last issued, rotated or revoked through the control log (ReplacingMergeTree by `version`).
pub const VIRTUAL_KEYS: &str = "virtual_keys";
/// Re-pricing differences, one row per (correction run, event).
pub const COST_CORRECTIONS: &str = "cost_corrections";
/// Applied migration versions.
pub const MIGRATIONS_TABLE: &str = "schema_migrations";

/// DDL of [`MIGRATIONS_TABLE`].
pub const MIGRATIONS_TABLE_DDL: &str = "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
    (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version";

/// One migration: a version, a name, and its statements.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    sql: &'static str,
}

/// All migrations, in the order they apply.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "usage_events",
        sql: include_str!("../migrations/clickhouse/0001_usage_events.sql"),
    },
    Migration {
        version: 2,
        name: "usage_by_minute",
        sql: include_str!("../migrations/clickhouse/0002_usage_by_minute.sql"),
    },
    Migration {
        version: 3,
        name: "usage_by_day",
        sql: include_str!("../migrations/clickhouse/0003_usage_by_day.sql"),
    },
    Migration {
        version: 4,
        name: "usage_cost",
        sql: include_str!("../migrations/clickhouse/0004_usage_cost.sql"),
    },
    Migration {
        version: 5,
        name: "cost_by_minute",
        sql: include_str!("../migrations/clickhouse/0005_cost_by_minute.sql"),
    },
    Migration {
        version: 6,
        name: "cost_by_tag_day",
        sql: include_str!("../migrations/clickhouse/0006_cost_by_tag.sql"),
    },
    Migration {
        version: 7,
        name: "budgets",
        sql: include_str!("../migrations/clickhouse/0007_budgets.sql"),
    },
    Migration {
        version: 8,
        name: "cost_corrections",
        sql: include_str!("../migrations/clickhouse/0008_cost_corrections.sql"),
    },
    Migration {
        version: 9,
        name: "virtual_keys",
        sql: include_str!("../migrations/clickhouse/0009_virtual_keys.sql"),
    },
];

impl Migration {
    /// The migration's statements for database `db`, comments removed, one statement per item (ClickHouse's
    /// HTTP interface takes one statement per request).
    #[must_use]
    pub fn statements(&self, db: &str) -> Vec<String> {
        statements(self.sql, db)
    }
}

/// Splits SQL text on `;` at line ends, dropping `--` comment lines, with `{db}` replaced.
#[must_use]
pub fn statements(sql: &str, db: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.split(";\n")
        .map(|s| s.trim().trim_end_matches(';').trim().replace("{db}", db))
        .filter(|s| !s.is_empty())
        .collect()
}

/// `(table, column)` when `statement` is `ALTER TABLE <db>.<table> ADD COLUMN <column> …` (one column): the
/// migrator skips it when the column exists, since 18.16 has no `ADD COLUMN IF NOT EXISTS`.
#[must_use]
pub fn added_column(statement: &str) -> Option<(&str, &str)> {
    let mut words = statement.split_whitespace();
    let head: Vec<&str> = words.by_ref().take(2).collect();
    if !head
        .iter()
        .map(|w| w.to_ascii_uppercase())
        .eq(["ALTER", "TABLE"])
    {
        return None;
    }
    let table = words.next()?;
    let table = table.split_once('.').map_or(table, |(_, t)| t);
    let verb: Vec<&str> = words.by_ref().take(2).collect();
    if !verb
        .iter()
        .map(|w| w.to_ascii_uppercase())
        .eq(["ADD", "COLUMN"])
    {
        return None;
    }
    Some((table, words.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_split_into_statements() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let s = MIGRATIONS[1].statements("tg_test");
        assert_eq!(s.len(), 2);
        assert!(s[0].starts_with("CREATE TABLE IF NOT EXISTS tg_test.usage_by_minute"));
        assert!(s[1].starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS tg_test.usage_by_minute_mv TO tg_test.usage_by_minute"));
        assert!(s
            .iter()
            .all(|st| !st.contains("{db}") && !st.contains("--")));
        let alters = MIGRATIONS[3].statements("tg_test");
        assert_eq!(
            added_column(&alters[0]),
            Some(("usage_events", "cost_nanos"))
        );
        assert_eq!(added_column(&s[0]), None);
    }
}

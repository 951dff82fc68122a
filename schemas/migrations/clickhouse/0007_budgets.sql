-- Budgets as the control log last stated them (written by metering-consumer from `BudgetSet` / `BudgetDeleted`
-- control events). ReplacingMergeTree keeps the latest version per budget after merges; read with
-- `FINAL` or argMax(..., version) so an unmerged older row never shows.
-- subject_kind: tenant | team | key | end_user | tag; subject: the name (`acme`, `feature=summarize`).
-- period: daily | weekly | monthly | total; limit_nanos in nano-units of `currency` (the reporting currency).
CREATE TABLE IF NOT EXISTS {db}.budgets
(
    budget_id String,
    tenant String,
    subject_kind String,
    subject String,
    period String,
    timezone String,
    limit_nanos Int64,
    currency String,
    hard UInt8,
    deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY budget_id

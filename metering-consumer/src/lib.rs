//! # tollgate-metering — usage events from Kafka into ClickHouse, exactly once
//!
//! ## Layout
//! - [`settings`] — flags / environment → [`settings::Settings`].
//! - [`migrate`] — applies `tollgate_schemas::clickhouse::MIGRATIONS` at start (idempotent, recorded).
//! - [`row`] — `UsageEvent` → the ClickHouse row.
//! - [`warehouse`] — ClickHouse: dedupe lookup, insert, retry of transient failures.
//! - [`consumer`] — the loop: consume → decode (dead-letter what cannot be decoded) → batch by rows, bytes
//!   and age → dedupe → insert → commit offsets.
//! - [`control_projection`] — replays and tails the control topic into ClickHouse: [`budgets`] (budget events →
//!   `budgets`, latest per budget, for dashboards) and [`keys`] (key events → `virtual_keys`: tenant, team,
//!   models, revoked; never the key or its hash).
//! - [`lease_owner`] — the budget owner's books: grants leases so replicas together never reserve past a
//!   limit; [`budget_service`] runs it (`--budget-owner`) on the control, requests and decisions topics.
//! - [`metrics`] — the Prometheus series and the readiness facts; [`http`] serves them (`/metrics`, `/healthz`,
//!   `/readyz`) and probes them (`tollgate-metering healthcheck`); [`monitor`] refreshes consumer lag and
//!   pings ClickHouse off the hot loop.
//! - [`error`] — [`error::MeteringError`].
//!
//! ## Exactly-once effect
//! Kafka commits alone are not enough: the materialized views sum whatever is inserted, and a crash between
//! insert and commit redelivers the batch. So offsets are committed only after ClickHouse accepted the rows,
//! and every batch is deduplicated by `event_id` before insert — against the ids already in ClickHouse (the
//! raw table is ordered by `event_id`, so the lookup reads only matching granules) and against a bounded
//! in-memory set of recent ids. Redelivery after a crash and gateway spool replays therefore never insert a
//! row twice, and the aggregates, fed only by inserted rows, never count one twice.

pub mod budget_service;
pub mod budgets;
pub mod consumer;
pub mod control_projection;
pub mod error;
pub mod http;
pub mod keys;
pub mod lease_owner;
pub mod metrics;
pub mod migrate;
pub mod monitor;
pub mod row;
pub mod settings;
pub mod warehouse;

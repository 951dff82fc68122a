//! # tollgate-schemas — the contract between Tollgate's processes
//!
//! Everything that crosses a process boundary is defined here and nowhere else. This crate does no I/O.
//!
//! ## Layout
//! - [`usage`] — [`UsageEvent`], the one record every request produces, and its parts ([`UsageVector`],
//!   [`Outcome`], [`UsageSource`], [`Endpoint`]).
//! - [`topics`] — names of the Kafka topics the pipeline uses.
//! - [`embedded`] — DDL of the embedded (SQLite) usage store.
//! - [`clickhouse`] — ClickHouse DDL as ordered migrations (raw usage + per-minute / per-day aggregates).
//!
//! ## Versioning rules
//! - Every event carries `schema_version`. Adding an optional field (`#[serde(default)]`) keeps the version;
//!   renaming, removing or changing the meaning of a field bumps it, and readers keep decoding every version
//!   they have ever been sent.
//! - `event_id` is a UUIDv7: time-ordered, unique per request, and the idempotency key of every store.

pub mod clickhouse;
pub mod embedded;
pub mod topics;
pub mod usage;

pub use usage::{Endpoint, Outcome, UsageEvent, UsageSource, UsageVector};

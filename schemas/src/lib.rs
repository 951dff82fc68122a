//! # tollgate-schemas — the contract between Tollgate's processes
//!
//! Everything that crosses a process boundary is defined here and nowhere else. This crate does no I/O.
//!
//! ## Layout
//! - [`usage`] — [`UsageEvent`], the one record every request produces, and its parts ([`UsageVector`],
//!   [`Outcome`], [`UsageSource`], [`Endpoint`]).
//! - [`control`] — [`control::ControlEvent`]: keys and budgets created through the admin API, replayed by every
//!   replica.
//! - [`lease`] — budget leases between gateway replicas and the budget owner (requests, decisions, returns).
//! - [`topics`] — names of the Kafka topics the pipeline uses.
//! - [`embedded`] — DDL of the embedded (SQLite) usage store.
//! - [`clickhouse`] — ClickHouse DDL as ordered migrations (raw usage + per-minute / per-day aggregates).
//! - [`price`] — the shipped, versioned price table (`prices/seed.toml`), exact cost in nano-units, currency
//!   normalisation.
//!
//! ## Versioning rules
//! - Every event carries `schema_version`. Adding an optional field (`#[serde(default)]`) keeps the version;
//!   renaming, removing or changing the meaning of a field bumps it, and readers keep decoding every version
//!   they have ever been sent.
//! - Adding a value to an enum (`Endpoint::Messages` = `"messages"`, added for the Anthropic-format API;
//!   `Endpoint::GenerateContent` = `"generate_content"`, for the Gemini-format API) keeps
//!   the version too, but it is a change readers must be ready for: a reader that matches enum values must
//!   accept the new one (the ClickHouse and SQLite columns are plain strings, so stores need no migration).
//! - `event_id` is a UUIDv7: time-ordered, unique per request, and the idempotency key of every store.

pub mod clickhouse;
pub mod control;
pub mod embedded;
pub mod lease;
pub mod price;
pub mod topics;
pub mod usage;

pub use usage::{Cost, Endpoint, Outcome, UsageEvent, UsageSource, UsageVector};

/// The one error type of this crate: contract data that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A price table, price or exchange rate is malformed.
    #[error("{0}")]
    Price(String),
}

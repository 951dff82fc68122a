//! Tollgate's end-to-end tests, one test binary (one link, one copy of the gateway on disk) with a module per
//! area. `common` runs a gateway in-process against the mock upstream; `pipeline_support` drives real Kafka and
//! ClickHouse (the `#[ignore]`d modules `pipeline`, `reprice_clickhouse`, `control_cluster`, `budget_cluster` and
//! the ClickHouse half of `reports`, which `scripts/test.sh` runs after starting the services). `telemetry`
//! is its own binary: it installs the process's global subscriber, as this one does for `common::log_capture`.

mod common;
mod pipeline_support;

mod admin;
mod anthropic;
mod azure;
mod bedrock;
mod budget_cluster;
mod budgets;
mod chat;
mod conformance;
mod control_cluster;
mod cost;
mod embeddings;
mod errors;
mod gemini;
mod metering;
mod metrics;
mod native_cn;
mod pipeline;
mod rate_limits;
mod reports;
mod reprice;
mod reprice_clickhouse;
mod routing;

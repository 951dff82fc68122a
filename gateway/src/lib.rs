//! # Tollgate gateway
//!
//! An OpenAI-compatible AI gateway: clients point their SDK's `base_url` here; Tollgate authenticates a
//! virtual key, routes the model to an upstream deployment, relays the answer (streamed chunk by chunk) and
//! meters every request into one usage event.
//!
//! ## Layout
//! - [`config`] — TOML file → validated [`config::Config`] (`${VAR}` interpolation, every error at once,
//!   secrets redacted).
//! - [`auth`] — virtual keys (SHA-256 hashes) → [`auth::Principal`].
//! - [`routes`] — the HTTP surface: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`, `/healthz`,
//!   `/readyz`, `/metrics`, `/admin/usage` (+ `/admin/usage/page`).
//! - [`proxy`] — the orchestrator: read → route → call → relay → meter. [`relay`] streams SSE through,
//!   decoding with [`sse`].
//! - [`exchange`] — one request's accounting, ending in exactly one usage event; [`cost`] prices it.
//! - [`routing`] — public model → ordered candidates (tiers, strategies, tags); key health and cooldown.
//! - [`retry`] — pacing between attempts (the `backoff` crate) and providers' retry hints.
//! - [`control`] — the control log (embedded table or compacted Kafka topic): admin changes to keys and
//!   budgets as events, replayed at start and applied by every replica.
//! - [`budget`] — budgets per tenant / team / key / end user / tag: worst-case reservations, settlement,
//!   periods, signed threshold alerts.
//! - [`rate_limit`] — RPM / TPM / in-flight limits per key, team, model and upstream key (`governor`).
//! - [`provider`] — the OpenAI-wire provider family: kinds and quirks, request shaping, usage, errors.
//! - [`events`] — non-blocking event emission: [`events::embedded`] (SQLite) or [`events::kafka`] (with the
//!   disk [`events::spool`]).
//! - [`report`] — usage reports (`GET /admin/usage`, the usage page, `tollgate usage`) over the embedded
//!   store or ClickHouse.
//! - [`metrics`] — Prometheus series at `GET /metrics`, recorded from each usage event.
//! - [`telemetry`] — the log subscriber and, when configured, OpenTelemetry spans per request and per upstream
//!   attempt, exported over OTLP/HTTP in batches.
//! - [`reprice`] — `tollgate reprice`: stored events re-priced under corrected prices, differences appended
//!   as cost corrections (embedded store or ClickHouse), never an edited row.
//! - [`clock`] — wall-clock epoch milliseconds and seconds, in one place.
//! - [`error`] — [`error::GatewayError`], mapped to OpenAI-shaped JSON in exactly one place.
//!
//! The binary (`src/main.rs`) only parses flags, loads the config and calls [`Gateway::serve`] (or a
//! subcommand's library function).

pub mod auth;
pub mod budget;
pub mod clock;
pub mod config;
pub mod control;
pub mod cost;
pub mod error;
pub mod events;
pub mod exchange;
pub mod generate_content;
pub mod messages;
pub mod metrics;
pub mod provider;
pub mod proxy;
pub mod rate_limit;
pub mod relay;
pub mod report;
pub mod reprice;
pub mod retry;
pub mod routes;
pub mod routing;
pub mod sse;
pub mod state;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::GatewayError;
use crate::events::{EventSink, SinkWorker};
use crate::state::AppState;

/// How long shutdown waits for the usage writer to store what is queued.
const SINK_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A gateway ready to serve: state built, usage store open.
pub struct Gateway {
    state: Arc<AppState>,
    worker: SinkWorker,
}

impl Gateway {
    /// Starts the usage sink (Kafka when configured, else the embedded store) and builds the routing table.
    ///
    /// # Errors
    /// When the store cannot be opened or a provider's client cannot be built.
    pub fn try_new(config: &Config) -> Result<Self, GatewayError> {
        let (sink, worker) = match &config.kafka {
            Some(kafka) => events::kafka::start(kafka)?,
            None => events::embedded::start(&config.store.path)?,
        };
        let (control, tail) = match &config.kafka {
            Some(kafka) => {
                let (log, tail) = control::kafka::connect(&kafka.brokers, &kafka.control_topic)?;
                (control::ControlLog::Kafka(log), Some(tail))
            }
            None => (
                control::ControlLog::Embedded(control::EmbeddedLog::open(&config.store.path)?),
                None,
            ),
        };
        let leases = match &config.kafka {
            Some(kafka) => Some(budget::lease::LeaseClient::connect(
                &kafka.brokers,
                &kafka.budget_requests_topic,
                &kafka.budget_decisions_topic,
            )?),
            None => None,
        };
        let state = Arc::new(AppState::try_new(
            config,
            sink,
            budget::RecoveredSpend::new(),
            control,
            leases,
        )?);
        state.budgets.start_returning(Duration::from_millis(500));
        // Keys and budgets from the admin API: replay the control log before serving.
        match (tail, &state.control) {
            (Some(tail), _) => {
                let n = tail.replay(&state)?;
                tracing::info!(target: "tollgate::control", events = n, "control log replayed");
                tail.spawn(state.clone())?;
                // The budget owner knows budgets only from the log: publish the config file's.
                if let control::ControlLog::Kafka(log) = &state.control {
                    log.publish_budgets(&config.budgets.specs, &config.budgets.settings.currency);
                }
            }
            (None, control::ControlLog::Embedded(log)) => {
                for event in log.replay()? {
                    control::apply(
                        &event,
                        &state.keys,
                        &state.budgets,
                        &state.limits,
                        Default::default(),
                    );
                }
            }
            (None, control::ControlLog::Kafka(_)) => {}
        }
        let specs: Vec<budget::BudgetSpec> = state
            .budgets
            .specs()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        state
            .budgets
            .set_recovered(recover_budget_spend(config, &specs)?);
        Ok(Self { state, worker })
    }

    /// Shared state (budgets, metrics, …), e.g. for tests.
    #[must_use]
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The event sink, e.g. to flush it in tests.
    #[must_use]
    pub fn sink(&self) -> EventSink {
        self.state.sink.clone()
    }

    /// Serves on `listener` until `shutdown` resolves, lets in-flight requests and streams finish, then
    /// writes every queued usage event before returning.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let Self { state, worker } = self;
        let tasks = state.tasks.clone();
        let app = routes::router(state);
        // Nagle plus delayed ACKs costs ~40 ms per small response (design §3.5).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| GatewayError::Internal(format!("server failed: {e}")));
        // Graceful shutdown waited for every connection; exchanges whose client left may still be finishing
        // upstream (or draining a stream for its usage): wait for them too, bounded, before closing the sink.
        tasks.close();
        if tokio::time::timeout(SINK_CLOSE_TIMEOUT, tasks.wait())
            .await
            .is_err()
        {
            tracing::error!("{} request tasks still running after {SINK_CLOSE_TIMEOUT:?}; their usage may be lost", tasks.len());
        }
        let closed = tokio::task::spawn_blocking(move || worker.close());
        if tokio::time::timeout(SINK_CLOSE_TIMEOUT, closed)
            .await
            .is_err()
        {
            tracing::error!("usage writer did not finish within {SINK_CLOSE_TIMEOUT:?}");
        }
        served
    }
}

/// Budget spend already recorded in the current periods, re-pricing corrections included. The embedded store
/// holds every event. With Kafka the gateway has no local history: hard budgets are then spent out of the
/// budget owner's leases (which start from ClickHouse's totals), and only this replica's local books — soft
/// budgets, `/admin/budgets` — start from zero.
fn recover_budget_spend(
    config: &Config,
    specs: &[budget::BudgetSpec],
) -> Result<budget::RecoveredSpend, GatewayError> {
    if specs.is_empty() {
        return Ok(budget::RecoveredSpend::new());
    }
    if config.kafka.is_some() {
        tracing::warn!(target: "tollgate::budget",
            "with the Kafka sink, hard budgets spend leases from the budget owner; this replica's local books (soft budgets, /admin/budgets) start from zero");
        return Ok(budget::RecoveredSpend::new());
    }
    let tz = config.budgets.settings.timezone;
    let conn = events::embedded::open(&config.store.path)?;
    let rows = events::embedded::spend_since(&conn, budget::earliest_window_start(specs, tz))
        .map_err(|e| {
            GatewayError::Internal(format!("cannot read budget spend from the store: {e}"))
        })?;
    Ok(budget::recover(specs, tz, &rows))
}

//! What every handler shares: keys, routes, the event sink and limits.

use std::sync::Arc;

use crate::auth::{AdminKey, KeyStore};
use crate::config::Config;
use crate::error::GatewayError;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::report::Reports;
use crate::routing::ModelRouter;

pub struct AppState {
    pub keys: KeyStore,
    /// The control log admin changes go through.
    pub control: crate::control::ControlLog,
    /// Budgets' books (empty when none are configured).
    pub budgets: Arc<crate::budget::Budgets>,
    /// The admin API's key.
    pub admin: AdminKey,
    /// The validated config this state was built from (admin and report endpoints read it).
    pub config: Arc<Config>,
    pub router: ModelRouter,
    /// Where usage reports read from (the embedded store or ClickHouse).
    pub reports: Reports,
    pub sink: EventSink,
    pub metrics: Arc<Metrics>,
    pub limits: RateLimiter,
    /// Every request task and stream relay, so shutdown can wait for exchanges whose client already left
    /// (they still finish upstream and emit their usage event).
    pub tasks: tokio_util::task::TaskTracker,
    pub max_body_bytes: usize,
}

impl AppState {
    /// # Errors
    /// When a provider's HTTP client cannot be built.
    pub fn try_new(
        config: &Config,
        sink: EventSink,
        recovered: crate::budget::RecoveredSpend,
        control: crate::control::ControlLog,
        leases: Option<Arc<crate::budget::lease::LeaseClient>>,
    ) -> Result<Self, GatewayError> {
        // With Kafka the budget owner (metering-consumer) sends alerts for the whole cluster.
        let alerts = match &config.kafka {
            Some(_) => None,
            None => config
                .budgets
                .webhook
                .clone()
                .map(crate::budget::alerts::start),
        };
        let metrics = Arc::new(Metrics::new(
            config.models.iter().map(|m| m.name.as_str()),
            sink.stats_handle(),
        ));
        Ok(Self {
            keys: KeyStore::new(&config.keys, &config.tenants),
            budgets: Arc::new({
                let budgets = crate::budget::Budgets::new(
                    config.budgets.specs.clone(),
                    config.budgets.settings.clone(),
                    recovered,
                    alerts,
                );
                match leases {
                    Some(client) => budgets.with_cluster(client),
                    None => budgets,
                }
            }),
            admin: AdminKey::new(config.admin),
            control,
            config: Arc::new(config.clone()),
            router: ModelRouter::try_new(config, &metrics)?,
            reports: Reports::from_config(config)?,
            sink,
            metrics,
            tasks: tokio_util::task::TaskTracker::new(),
            limits: RateLimiter::new(
                config
                    .keys
                    .iter()
                    .map(|k| (k.name.clone(), k.limits))
                    .collect(),
                config.teams.clone().into_iter().collect(),
                config
                    .models
                    .iter()
                    .map(|m| (m.name.clone(), m.limits))
                    .collect(),
            ),
            max_body_bytes: config.server.max_body_bytes,
        })
    }
}

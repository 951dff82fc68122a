//! What every handler shares: keys, routes, the event sink and limits.

use crate::auth::KeyStore;
use crate::config::Config;
use crate::error::GatewayError;
use crate::events::EventSink;
use crate::rate_limit::RateLimiter;
use crate::routing::ModelRouter;

pub struct AppState {
    pub keys: KeyStore,
    pub router: ModelRouter,
    pub sink: EventSink,
    pub limits: RateLimiter,
    pub max_body_bytes: usize,
}

impl AppState {
    /// # Errors
    /// When a provider's HTTP client cannot be built.
    pub fn try_new(config: &Config, sink: EventSink) -> Result<Self, GatewayError> {
        Ok(Self {
            keys: KeyStore::new(&config.keys, &config.tenants),
            router: ModelRouter::try_new(config)?,
            sink,
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

//! Public model names → the deployments that serve them, picked round-robin.
//!
//! This is the seed of routing: one ordered group of deployments per model and strict round-robin across
//! them (keys rotate inside each [`Provider`]). Tiers, weights, health and failover build on this type.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::error::GatewayError;
use crate::provider::Provider;

/// A model served by one provider: the unit routing picks.
#[derive(Debug)]
pub struct Deployment {
    /// `<provider>/<upstream model>`, recorded on usage events.
    pub id: String,
    pub provider: Arc<Provider>,
    pub upstream_model: String,
}

#[derive(Debug)]
struct ModelRoute {
    deployments: Vec<Arc<Deployment>>,
    next: AtomicUsize,
}

/// The routing table.
#[derive(Debug)]
pub struct ModelRouter {
    models: HashMap<String, ModelRoute>,
}

impl ModelRouter {
    /// Builds providers and the model table from a validated config.
    ///
    /// # Errors
    /// When a provider's HTTP client cannot be built.
    pub fn try_new(config: &Config) -> Result<Self, GatewayError> {
        let providers: BTreeMap<&str, Arc<Provider>> = config
            .providers
            .iter()
            .map(|p| Ok((p.name.as_str(), Arc::new(Provider::try_new(p)?))))
            .collect::<Result<_, GatewayError>>()?;
        let mut models = HashMap::new();
        for model in &config.models {
            let deployments = model
                .deployments
                .iter()
                .map(|d| {
                    let provider =
                        providers.get(d.provider.as_str()).cloned().ok_or_else(|| {
                            GatewayError::Internal(format!(
                                "model {} names unknown provider {}",
                                model.name, d.provider
                            ))
                        })?;
                    Ok(Arc::new(Deployment {
                        id: format!("{}/{}", d.provider, d.model),
                        provider,
                        upstream_model: d.model.clone(),
                    }))
                })
                .collect::<Result<Vec<_>, GatewayError>>()?;
            models.insert(
                model.name.clone(),
                ModelRoute {
                    deployments,
                    next: AtomicUsize::new(0),
                },
            );
        }
        Ok(Self { models })
    }

    #[must_use]
    pub fn contains(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// Public model names, sorted.
    #[must_use]
    pub fn model_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.models.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The next deployment for `model`, round-robin.
    ///
    /// # Errors
    /// [`GatewayError::UnknownModel`] when no model has that name.
    pub fn pick(&self, model: &str) -> Result<Arc<Deployment>, GatewayError> {
        let route = self
            .models
            .get(model)
            .ok_or_else(|| GatewayError::UnknownModel(model.into()))?;
        let len = route.deployments.len();
        if len == 0 {
            return Err(GatewayError::Internal(format!(
                "model {model:?} has no deployment"
            )));
        }
        let i = route.next.fetch_add(1, Ordering::Relaxed) % len;
        Ok(route.deployments[i].clone())
    }
}

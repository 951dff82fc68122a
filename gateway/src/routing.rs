//! Routing: a public model → an ordered list of (deployment, key) candidates for one request.
//!
//! A model is a [`DeploymentGroup`]: tiers of deployments, tried tier by tier. Inside a tier the group's
//! [`Strategy`](crate::config::Strategy) orders deployments (round-robin over every key slot, smooth weighted, lowest latency, lowest
//! cost). A key's `require_tags` remove every deployment that lacks them — from every tier, so failover never
//! leaves the allowed region. Whether a candidate's key is healthy ([`health`]) is checked when it is tried.

mod group;
pub mod health;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use group::DeploymentGroup;

use crate::config::{Config, Tags};
use crate::cost::DeploymentCost;
use crate::error::GatewayError;
use crate::metrics::{DeploymentMetrics, Metrics};
use crate::provider::Provider;

/// A model served by one provider: the unit strategies rank.
#[derive(Debug)]
pub struct Deployment {
    /// `<provider>/<upstream model>`, recorded on usage events.
    pub id: String,
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    pub weight: u32,
    pub tags: Tags,
    pub cost: DeploymentCost,
    /// Health of each of the provider's key slots for this deployment: a key rate-limited or failing for one
    /// model keeps serving the others.
    key_health: Vec<health::KeyHealth>,
    pub metrics: DeploymentMetrics,
    /// Moving average of time to first byte in microseconds; 0 until measured.
    ttft_ewma_us: AtomicU64,
    next_key: AtomicUsize,
}

impl Deployment {
    /// Folds one time-to-first-byte sample into the moving average (weight 1/5).
    pub fn observe_ttft(&self, ttft: Duration) {
        let sample = u64::try_from(ttft.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.ttft_ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old.saturating_mul(4).saturating_add(sample)) / 5
        };
        self.ttft_ewma_us.store(new, Ordering::Relaxed);
    }

    /// The moving average, `None` before the first success.
    #[must_use]
    pub fn ttft_ewma(&self) -> Option<Duration> {
        match self.ttft_ewma_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Key indexes in this request's order: rotated one step per call.
    fn key_order(&self) -> impl Iterator<Item = usize> {
        let n = self.provider.key_count();
        let start = self.next_key.fetch_add(1, Ordering::Relaxed);
        (0..n).map(move |i| (start + i) % n)
    }

    /// The health of key slot `key` (indexes come from this module and are always in range; an out-of-range
    /// one falls back to the first slot rather than panicking).
    #[must_use]
    pub fn key_health(&self, key: usize) -> &health::KeyHealth {
        &self.key_health[key.min(self.key_health.len().saturating_sub(1))]
    }

    fn satisfies(&self, required: &Tags) -> bool {
        required.iter().all(|(k, v)| self.tags.get(k) == Some(v))
    }
}

/// One try: a deployment and which of its provider's keys to use.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub deployment: Arc<Deployment>,
    pub key: usize,
}

impl Candidate {
    #[must_use]
    pub fn health(&self) -> &health::KeyHealth {
        self.deployment.key_health(self.key)
    }
}

/// A request's route: its group (attempt limit, timeouts) and candidates in the order to try them.
pub struct Plan {
    pub group: Arc<DeploymentGroup>,
    pub candidates: Vec<Candidate>,
}

/// The routing table.
#[derive(Debug)]
pub struct ModelRouter {
    models: HashMap<String, Arc<DeploymentGroup>>,
}

impl ModelRouter {
    /// Builds providers and deployment groups from a validated config.
    ///
    /// # Errors
    /// When a provider's HTTP client cannot be built.
    pub fn try_new(config: &Config, metrics: &Metrics) -> Result<Self, GatewayError> {
        let providers: HashMap<&str, Arc<Provider>> = config
            .providers
            .iter()
            .map(|p| Ok((p.name.as_str(), Arc::new(Provider::try_new(p)?))))
            .collect::<Result<_, GatewayError>>()?;
        let rates = Arc::new(config.pricing.rates.clone());
        let mut models = HashMap::new();
        for model in &config.models {
            let mut tiers = Vec::new();
            for tier in &model.tiers {
                let mut deployments = Vec::new();
                for d in tier {
                    let provider =
                        providers.get(d.provider.as_str()).cloned().ok_or_else(|| {
                            GatewayError::Internal(format!(
                                "model {} names unknown provider {}",
                                model.name, d.provider
                            ))
                        })?;
                    let key_health = (0..provider.key_count())
                        .map(|_| health::KeyHealth::default())
                        .collect();
                    let id = format!("{}/{}", d.provider, d.model);
                    if d.price.is_none() {
                        tracing::warn!(target: "tollgate::pricing", model = %model.name, deployment = %id,
                            "no price known: its requests are recorded at zero cost with price_missing set \
                             (add a `price` or a [[prices]] row, or set [pricing] missing = \"reject\")");
                    }
                    deployments.push(Arc::new(Deployment {
                        metrics: metrics.deployment(&id),
                        id,
                        key_health,
                        provider,
                        upstream_model: d.model.clone(),
                        weight: d.weight,
                        tags: d.tags.clone(),
                        cost: DeploymentCost::new(d.price.clone(), rates.clone()),
                        ttft_ewma_us: AtomicU64::new(0),
                        next_key: AtomicUsize::new(0),
                    }));
                }
                tiers.push(deployments);
            }
            models.insert(
                model.name.clone(),
                Arc::new(DeploymentGroup::new(model, tiers)),
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

    /// The candidates for one request of `model` by a caller restricted to `required` tags.
    ///
    /// # Errors
    /// [`GatewayError::UnknownModel`], or [`GatewayError::NoEligibleDeployment`] when no deployment carries the
    /// required tags.
    pub fn plan(&self, model: &str, required: &Tags) -> Result<Plan, GatewayError> {
        let group = self
            .models
            .get(model)
            .ok_or_else(|| GatewayError::UnknownModel(model.into()))?;
        let candidates = group.candidates(|d| d.satisfies(required));
        if candidates.is_empty() {
            let constraint: Vec<String> =
                required.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(GatewayError::NoEligibleDeployment {
                model: model.into(),
                constraint: constraint.join(","),
            });
        }
        Ok(Plan {
            group: group.clone(),
            candidates,
        })
    }
}

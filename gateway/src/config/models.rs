//! Validating `[models.<name>]`: deployment groups (tiers, strategy, attempts, timeouts).

use std::time::Duration;

use super::raw::{RawDeployment, RawModel};
use super::validator::Validator;
use super::{DeploymentConfig, ModelConfig, PricingConfig, ProviderConfig, Strategy};

/// Default upstream attempts per request.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default deadline of one request, all attempts included.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(600);

impl Validator<'_> {
    pub(super) fn model(
        &mut self,
        path: &str,
        name: String,
        raw: RawModel,
        providers: &[ProviderConfig],
        pricing: &PricingConfig,
    ) -> Option<ModelConfig> {
        let single_tier = raw.deployments.is_some();
        let raw_tiers: Vec<Vec<RawDeployment>> = match (raw.deployments, raw.tiers) {
            (Some(d), None) => vec![d],
            (None, Some(t)) => t,
            _ => {
                self.issue(
                    path,
                    "set exactly one of `deployments` (one tier) or `tiers` (a list of tiers)",
                );
                return None;
            }
        };
        if raw_tiers.is_empty() || raw_tiers.iter().any(Vec::is_empty) {
            let field = if single_tier { "deployments" } else { "tiers" };
            self.issue(
                &format!("{path}.{field}"),
                "a model needs at least one deployment in every tier",
            );
        }
        let strategy = match raw.strategy.as_deref().unwrap_or("round-robin") {
            "round-robin" => Some(Strategy::RoundRobin),
            "weighted" => Some(Strategy::Weighted),
            "lowest-latency" => Some(Strategy::LowestLatency),
            "lowest-cost" => Some(Strategy::LowestCost),
            other => {
                self.issue(
                    &format!("{path}.strategy"),
                    format!("unknown strategy {other:?} (known: round-robin, weighted, lowest-latency, lowest-cost)"),
                );
                None
            }
        };
        let mut ok = true;
        let mut tiers = Vec::new();
        for (t, tier) in raw_tiers.into_iter().enumerate() {
            let mut deployments = Vec::new();
            for (i, d) in tier.into_iter().enumerate() {
                let at = if single_tier {
                    format!("{path}.deployments[{i}]")
                } else {
                    format!("{path}.tiers[{t}][{i}]")
                };
                match self.deployment(&at, d, providers, pricing) {
                    Some(d) => deployments.push(d),
                    None => ok = false,
                }
            }
            tiers.push(deployments);
        }
        if strategy == Some(Strategy::LowestCost)
            && tiers.iter().flatten().any(|d| d.price.is_none())
        {
            self.issue(
                &format!("{path}.strategy"),
                "lowest-cost needs a `price` on every deployment",
            );
        }
        let max_attempts = match raw.max_attempts {
            Some(0) => {
                self.issue(&format!("{path}.max_attempts"), "must be at least 1");
                None
            }
            n => Some(n.unwrap_or(DEFAULT_MAX_ATTEMPTS)),
        };
        let total_timeout = self.millis(&format!("{path}.total_timeout_ms"), raw.total_timeout_ms);
        let limits = self.limits(&format!("{path}.limits"), raw.limits);
        let first_byte_timeout = self.millis(
            &format!("{path}.first_byte_timeout_ms"),
            raw.first_byte_timeout_ms,
        );
        if !ok {
            return None;
        }
        Some(ModelConfig {
            name,
            strategy: strategy?,
            tiers,
            max_attempts: max_attempts?,
            total_timeout: total_timeout.unwrap_or(DEFAULT_TOTAL_TIMEOUT),
            first_byte_timeout,
            limits,
        })
    }

    fn deployment(
        &mut self,
        path: &str,
        raw: RawDeployment,
        providers: &[ProviderConfig],
        pricing: &PricingConfig,
    ) -> Option<DeploymentConfig> {
        let Some(provider) = providers.iter().find(|p| p.name == raw.provider) else {
            self.issue(
                &format!("{path}.provider"),
                format!("no provider named {:?}", raw.provider),
            );
            return None;
        };
        if raw.model.is_empty() {
            self.issue(&format!("{path}.model"), "must not be empty");
            return None;
        }
        if raw.weight == Some(0) {
            self.issue(&format!("{path}.weight"), "must be at least 1");
        }
        if raw.price.is_some() && raw.price_as.is_some() {
            self.issue(
                &format!("{path}.price_as"),
                "set either `price` or `price_as`, not both",
            );
        }
        if raw.price_as.as_deref() == Some("") {
            self.issue(&format!("{path}.price_as"), "must not be empty");
        }
        let price = self.deployment_price(
            &format!("{path}.price"),
            raw.price.as_ref(),
            provider,
            raw.price_as.as_deref().unwrap_or(&raw.model),
            pricing,
        );
        if raw.price.is_some() && price.is_none() {
            return None;
        }
        let mut tags = provider.tags.clone();
        tags.extend(raw.tags.unwrap_or_default());
        Some(DeploymentConfig {
            provider: raw.provider,
            model: raw.model,
            weight: raw.weight.unwrap_or(1).max(1),
            tags,
            price,
            price_as: raw.price_as,
        })
    }
}

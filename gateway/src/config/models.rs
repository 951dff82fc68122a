//! Validating `[models.<name>]`: deployment groups (tiers, strategy, attempts, timeouts).

use std::time::Duration;

use super::raw::{RawDeployment, RawModel, RawPrice};
use super::validator::Validator;
use super::{DeploymentConfig, DeploymentPrice, ModelConfig, ProviderConfig, Strategy};

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
                match self.deployment(&at, d, providers) {
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
        let price = match raw.price {
            None => None,
            Some(p) => Some(self.price(&format!("{path}.price"), &p)?),
        };
        let mut tags = provider.tags.clone();
        tags.extend(raw.tags.unwrap_or_default());
        Some(DeploymentConfig {
            provider: raw.provider,
            model: raw.model,
            weight: raw.weight.unwrap_or(1).max(1),
            tags,
            price,
        })
    }

    fn price(&mut self, path: &str, raw: &RawPrice) -> Option<DeploymentPrice> {
        let input = parse_decimal_nanos(&raw.input_per_mtok);
        let output = parse_decimal_nanos(&raw.output_per_mtok);
        if input.is_none() {
            self.issue(
                &format!("{path}.input_per_mtok"),
                "must be a decimal amount like \"2.50\"",
            );
        }
        if output.is_none() {
            self.issue(
                &format!("{path}.output_per_mtok"),
                "must be a decimal amount like \"10.00\"",
            );
        }
        Some(DeploymentPrice {
            input_nanos_per_mtok: input?,
            output_nanos_per_mtok: output?,
        })
    }
}

/// `"2.50"` → 2_500_000_000 (nano-units). At most 9 decimals, no sign, no exponent: money never goes
/// through a float.
#[must_use]
pub fn parse_decimal_nanos(text: &str) -> Option<u64> {
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty()
        || frac.len() > 9
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac_nanos: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    whole.checked_mul(1_000_000_000)?.checked_add(frac_nanos)
}

#[cfg(test)]
mod tests {
    use super::parse_decimal_nanos;

    #[test]
    fn decimals_become_exact_nanos() {
        assert_eq!(parse_decimal_nanos("2.50"), Some(2_500_000_000));
        assert_eq!(parse_decimal_nanos("0.000000001"), Some(1));
        assert_eq!(parse_decimal_nanos("10"), Some(10_000_000_000));
        for bad in ["", ".5", "1.0000000001", "-1", "1e3", "1,5", "abc"] {
            assert_eq!(parse_decimal_nanos(bad), None, "{bad}");
        }
    }
}

//! What a request costs: a deployment's price applied to a usage vector, in the price's currency and in the
//! reporting currency — exact nano-units, never a float, the same on every replica.

use std::sync::Arc;

use tollgate_schemas::price::ExchangeRates;
use tollgate_schemas::{Cost, UsageVector};

use crate::config::DeploymentPrice;

/// One deployment's pricing: its price (or none), and the rates into the reporting currency.
#[derive(Debug, Clone)]
pub struct DeploymentCost {
    price: Option<DeploymentPrice>,
    rates: Arc<ExchangeRates>,
}

impl DeploymentCost {
    #[must_use]
    pub fn new(price: Option<DeploymentPrice>, rates: Arc<ExchangeRates>) -> Self {
        Self { price, rates }
    }

    /// The price, when one is known.
    #[must_use]
    pub fn price(&self) -> Option<&DeploymentPrice> {
        self.price.as_ref()
    }

    /// The `lowest-cost` ranking key (unpriced deployments rank last).
    #[must_use]
    pub fn rank(&self) -> u64 {
        self.price.as_ref().map_or(u64::MAX, |p| p.rank)
    }

    /// The cost of `usage`. Without a price: zero, flagged `price_missing` — never a silent zero.
    #[must_use]
    pub fn of(&self, usage: &UsageVector) -> Cost {
        let Some(p) = &self.price else {
            // Nothing used costs nothing, priced or not; only usage without a price is flagged.
            return Cost {
                reporting_currency: self.rates.reporting.clone(),
                price_missing: usage.total_tokens() > 0,
                ..Cost::default()
            };
        };
        let nanos = p.price.cost_nanos(usage);
        Cost {
            nanos,
            currency: p.price.currency.clone(),
            // Validation refused prices in a currency without a rate; MAX is only a guard.
            reporting_nanos: self
                .rates
                .to_reporting(nanos, &p.price.currency)
                .unwrap_or(u64::MAX),
            reporting_currency: self.rates.reporting.clone(),
            price_version: p.version.clone(),
            price_missing: false,
        }
    }

    /// The most a request can cost in reporting nano-units with at most `prompt_tokens` prompt tokens and
    /// `completion_tokens` completion tokens: every token at its class's highest price. `None` when unpriced.
    #[must_use]
    pub fn worst_case(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<u64> {
        let p = self.price.as_ref()?;
        let micro = u128::from(prompt_tokens) * u128::from(p.price.max_prompt_price())
            + u128::from(completion_tokens) * u128::from(p.price.max_completion_price());
        // Round up: a reservation is never below the real cost.
        let nanos = u64::try_from(micro.div_ceil(1_000_000)).unwrap_or(u64::MAX);
        let reporting = self.rates.to_reporting(nanos, &p.price.currency)?;
        // `to_reporting` rounds half up; one more nano keeps the bound an upper bound.
        Some(reporting.saturating_add(u64::from(reporting != nanos)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tollgate_schemas::price::PriceText;

    fn cost(currency: &str) -> DeploymentCost {
        let price = PriceText {
            currency: currency.into(),
            input: "2.50".into(),
            output: "10.00".into(),
            cached_read: Some("1.25".into()),
            cache_write: None,
            reasoning: None,
        }
        .parse()
        .unwrap();
        let rates: BTreeMap<String, String> = [("CNY".to_string(), "0.14".to_string())].into();
        DeploymentCost::new(
            Some(DeploymentPrice {
                price,
                version: "v1".into(),
                rank: 0,
            }),
            Arc::new(ExchangeRates::new("USD", &rates).unwrap()),
        )
    }

    #[test]
    fn cost_is_exact_in_both_currencies_and_worst_case_bounds_it() {
        let usage = UsageVector {
            prompt_tokens: 1000,
            completion_tokens: 200,
            cached_read_tokens: 400,
            ..UsageVector::default()
        };
        let usd = cost("USD").of(&usage);
        assert_eq!(usd.nanos, 600 * 2_500 + 400 * 1_250 + 200 * 10_000);
        assert_eq!(usd.reporting_nanos, usd.nanos);
        assert_eq!(
            (usd.price_version.as_str(), usd.price_missing),
            ("v1", false)
        );
        let cny = cost("CNY").of(&usage);
        assert_eq!(cny.currency, "CNY");
        assert_eq!(cny.reporting_nanos, cny.nanos * 14 / 100);
        for c in [cost("USD"), cost("CNY")] {
            let worst = c.worst_case(1000, 200).unwrap();
            assert!(worst >= c.of(&usage).reporting_nanos);
        }
    }

    #[test]
    fn an_unpriced_deployment_is_flagged_not_free() {
        let c = DeploymentCost::new(
            None,
            Arc::new(ExchangeRates::new("USD", &BTreeMap::new()).unwrap()),
        );
        let cost = c.of(&UsageVector {
            prompt_tokens: 5,
            ..UsageVector::default()
        });
        assert!(cost.price_missing);
        assert_eq!((cost.nanos, cost.reporting_currency.as_str()), (0, "USD"));
        assert!(!c.of(&UsageVector::default()).price_missing);
        assert_eq!(c.worst_case(1, 1), None);
        assert_eq!(c.rank(), u64::MAX);
    }
}

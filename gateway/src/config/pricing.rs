//! Validating `[pricing]`, `[[prices]]` and a deployment's `price`: every deployment ends with a known price
//! (and where it came from) or is flagged as unpriced — never a silent zero.
//!
//! Precedence: the deployment's own `price`, then a `[[prices]]` row for its provider kind and upstream model,
//! then the shipped table (`tollgate_schemas::price::SEED_TABLE`).

use std::collections::BTreeMap;

use serde::Deserialize;
use tollgate_schemas::price::{ExchangeRates, Price, PriceEntry, PriceTable, PriceText};

use super::raw::RawPrice;
use super::validator::Validator;
use super::{DeploymentPrice, MissingPrice, PricingConfig, ProviderConfig};

/// Version recorded on events priced from the config file rather than the shipped table.
pub const CONFIG_PRICE_VERSION: &str = "config";

/// `[pricing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// Reporting currency (budgets and cross-provider totals). Default USD.
    pub currency: Option<String>,
    /// `record` (default: zero cost flagged `price_missing`, counted in /metrics, warned at start) or `reject`
    /// (the config does not load while a deployment has no price).
    pub missing: Option<String>,
    /// Units of the reporting currency one unit of another currency buys: `CNY = "0.14"`.
    pub rates: Option<BTreeMap<String, String>>,
}

/// One `[[prices]]` row: a price for a provider kind and upstream model (the exact id, and that id followed by a
/// version tag: see `PriceTable::lookup`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPriceRow {
    pub provider: String,
    pub model: String,
    #[serde(flatten)]
    pub price: PriceText,
}

impl Validator<'_> {
    pub(super) fn pricing(
        &mut self,
        raw: RawPricing,
        rows: Vec<RawPriceRow>,
    ) -> Option<PricingConfig> {
        let currency = raw.currency.unwrap_or_else(|| "USD".into());
        let rates = match ExchangeRates::new(&currency, &raw.rates.unwrap_or_default()) {
            Ok(r) => Some(r),
            Err(e) => {
                self.issue("pricing", e.to_string());
                None
            }
        };
        let missing = match raw.missing.as_deref() {
            None | Some("record") => Some(MissingPrice::Record),
            Some("reject") => Some(MissingPrice::Reject),
            Some(other) => {
                self.issue(
                    "pricing.missing",
                    format!("{other:?} is not a policy (expected \"record\" or \"reject\")"),
                );
                None
            }
        };
        let mut entries = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            match row.price.parse() {
                Ok(price) => entries.push(PriceEntry {
                    provider: row.provider,
                    model: row.model,
                    price,
                }),
                Err(e) => self.issue(&format!("prices[{i}]"), e.to_string()),
            }
        }
        let overrides = match PriceTable::new(CONFIG_PRICE_VERSION.into(), entries) {
            Ok(t) => Some(t),
            Err(e) => {
                self.issue("prices", e.to_string());
                None
            }
        };
        let table = match PriceTable::seed() {
            Ok(t) => Some(t),
            Err(e) => {
                self.issue("prices", format!("the shipped price table is broken: {e}"));
                None
            }
        };
        Some(PricingConfig {
            rates: rates?,
            missing: missing?,
            overrides: overrides?,
            table: table?,
        })
    }

    /// The price of one deployment: its own `price`, a `[[prices]]` row, the shipped table, or `None`.
    pub(super) fn deployment_price(
        &mut self,
        path: &str,
        raw: Option<&RawPrice>,
        provider: &ProviderConfig,
        upstream_model: &str,
        pricing: &PricingConfig,
    ) -> Option<DeploymentPrice> {
        let kind = provider.kind.name();
        let (price, version) = if let Some(raw) = raw {
            let text = PriceText {
                currency: raw
                    .currency
                    .clone()
                    .unwrap_or_else(|| pricing.rates.reporting.clone()),
                input: raw.input_per_mtok.clone(),
                output: raw.output_per_mtok.clone(),
                cached_read: raw.cached_read_per_mtok.clone(),
                cache_write: raw.cache_write_per_mtok.clone(),
                reasoning: raw.reasoning_per_mtok.clone(),
            };
            match text.parse() {
                Ok(p) => (p, CONFIG_PRICE_VERSION.to_string()),
                Err(e) => {
                    self.issue(path, e.to_string());
                    return None;
                }
            }
        } else if let Some(p) = pricing.overrides.lookup(kind, upstream_model) {
            (p.clone(), CONFIG_PRICE_VERSION.to_string())
        } else if let Some(p) = pricing.table.lookup(kind, upstream_model) {
            (p.clone(), pricing.table.version.clone())
        } else {
            if pricing.missing == MissingPrice::Reject {
                self.issue(
                    path,
                    format!(
                        "no price for {kind} model {upstream_model:?} and [pricing] missing = \"reject\": \
                         add `price = {{ input_per_mtok = \"…\", output_per_mtok = \"…\" }}` here or a \
                         [[prices]] row"
                    ),
                );
            }
            return None;
        };
        let rank = self.reporting_rank(path, &price, pricing)?;
        Some(DeploymentPrice {
            price,
            version,
            rank,
        })
    }

    /// Input + output price in the reporting currency (what `lowest-cost` compares); an issue when the
    /// price's currency has no configured rate.
    fn reporting_rank(
        &mut self,
        path: &str,
        price: &Price,
        pricing: &PricingConfig,
    ) -> Option<u64> {
        let rank = pricing.rates.to_reporting(price.rank(), &price.currency);
        if rank.is_none() {
            self.issue(
                path,
                format!(
                    "priced in {} but [pricing.rates] has no rate for it (reporting currency {}): add \
                     `{} = \"<{} per {}>\"`",
                    price.currency,
                    pricing.rates.reporting,
                    price.currency,
                    pricing.rates.reporting,
                    price.currency
                ),
            );
        }
        rank
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load_with;

    const PROVIDERS: &str = r#"
[providers.oa]
kind = "openai"
api_key = "sk-x"
[providers.ds]
kind = "dashscope"
api_key = "sk-y"
[providers.local]
kind = "vllm"
base_url = "http://127.0.0.1:9/v1"
"#;

    #[test]
    fn deployments_take_their_own_price_then_overrides_then_the_shipped_table() {
        let cfg = load_with(&format!(
            r#"{PROVIDERS}
[pricing.rates]
CNY = "0.14"
[[prices]]
provider = "openai"
model = "gpt-4o"
currency = "USD"
input = "2.00"
output = "8.00"
[models.a]
deployments = [{{ provider = "oa", model = "gpt-4o-2024-08-06" }}]
[models.b]
deployments = [{{ provider = "oa", model = "gpt-4o-mini", price = {{ input_per_mtok = "1", output_per_mtok = "2" }} }}]
[models.c]
deployments = [{{ provider = "ds", model = "qwen-plus" }}]
[models.d]
deployments = [{{ provider = "local", model = "llama" }}]
"#
        ))
        .unwrap();
        let price = |m: &str| {
            cfg.models.iter().find(|x| x.name == m).unwrap().tiers[0][0]
                .price
                .clone()
        };
        let a = price("a").unwrap();
        assert_eq!(
            (a.price.input, a.version.as_str()),
            (2_000_000_000, "config")
        );
        let b = price("b").unwrap();
        assert_eq!(
            (b.price.output, b.price.currency.as_str()),
            (2_000_000_000, "USD")
        );
        let c = price("c").unwrap();
        assert_eq!(c.price.currency, "CNY");
        assert_eq!(
            c.version,
            tollgate_schemas::price::PriceTable::seed().unwrap().version
        );
        // 0.80 + 2.00 CNY at 0.14 = 0.392 USD.
        assert_eq!(c.rank, 392_000_000);
        assert!(price("d").is_none());
    }

    #[test]
    fn price_as_prices_a_deployment_name_by_a_model_id_and_excludes_an_own_price() {
        let cfg = load_with(&format!(
            r#"{PROVIDERS}
[models.named]
deployments = [{{ provider = "oa", model = "team-prod-4o", price_as = "gpt-4o-2024-11-20" }}]
[models.bare]
deployments = [{{ provider = "oa", model = "team-prod-4o" }}]
"#
        ))
        .unwrap();
        let price = |m: &str| {
            cfg.models.iter().find(|x| x.name == m).unwrap().tiers[0][0]
                .price
                .clone()
        };
        let seed = tollgate_schemas::price::PriceTable::seed().unwrap();
        let named = price("named").unwrap();
        assert_eq!(Some(&named.price), seed.lookup("openai", "gpt-4o"));
        assert_eq!(named.version, seed.version);
        assert!(
            price("bare").is_none(),
            "a deployment name alone has no price"
        );
        let both = load_with(&format!(
            r#"{PROVIDERS}
[models.x]
deployments = [{{ provider = "oa", model = "d", price_as = "gpt-4o", price = {{ input_per_mtok = "1", output_per_mtok = "1" }} }}]
"#
        ))
        .unwrap_err()
        .to_string();
        assert!(both.contains("price_as"), "{both}");
    }

    #[test]
    fn overrides_and_the_shipped_table_match_versions_of_a_model_never_other_models() {
        let cfg = load_with(&format!(
            r#"{PROVIDERS}
[[prices]]
provider = "openai"
model = "gpt-4o"
currency = "USD"
input = "2.00"
output = "8.00"
[[prices]]
provider = "openai"
model = "gpt-4o-prod"
currency = "USD"
input = "3.00"
output = "9.00"
[models.snapshot]
deployments = [{{ provider = "oa", model = "gpt-4o-2024-11-20" }}]
[models.named]
deployments = [{{ provider = "oa", model = "gpt-4o-prod" }}]
[models.other]
deployments = [{{ provider = "oa", model = "gpt-4o-audio-preview" }}]
[models.newer]
deployments = [{{ provider = "oa", model = "gpt-5.2-2025-12-11" }}]
[models.unknown]
deployments = [{{ provider = "oa", model = "gpt-5.9" }}]
"#
        ))
        .unwrap();
        let price = |m: &str| {
            cfg.models.iter().find(|x| x.name == m).unwrap().tiers[0][0]
                .price
                .clone()
                .map(|p| (p.price.input, p.version))
        };
        // A `[[prices]]` row prices its model's dated versions, and a name it spells out exactly.
        assert_eq!(price("snapshot"), Some((2_000_000_000, "config".into())));
        assert_eq!(price("named"), Some((3_000_000_000, "config".into())));
        // Another model is not priced by a row that is a prefix of its id: unpriced, not mispriced.
        assert_eq!(price("other"), None);
        // The shipped table's own gpt-5.2 row, not gpt-5's price.
        let seed = tollgate_schemas::price::PriceTable::seed().unwrap().version;
        assert_eq!(price("newer"), Some((1_750_000_000, seed)));
        assert_eq!(price("unknown"), None);
    }

    #[test]
    fn reject_policy_and_missing_rates_fail_the_load_with_paths() {
        let err = load_with(&format!(
            r#"{PROVIDERS}
[pricing]
missing = "reject"
[models.c]
deployments = [{{ provider = "ds", model = "qwen-plus" }}]
[models.d]
deployments = [{{ provider = "local", model = "llama" }}]
"#
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("models.d.deployments[0]") && err.contains("no price"),
            "{err}"
        );
        assert!(err.contains("no rate for it"), "{err}");
        let err = load_with(&format!("{PROVIDERS}\n[pricing]\nmissing = \"maybe\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pricing.missing"), "{err}");
    }
}

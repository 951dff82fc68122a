//! Validating `[budget_settings]` and `[budgets.<id>]`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tollgate_schemas::price::parse_decimal_nanos;

use super::validator::Validator;
use super::{BudgetConfig, Secret};
use crate::budget::alerts::WebhookConfig;
use crate::budget::{BudgetSettings, BudgetSpec, Period, Subject};

/// Default output cap reserved (and sent upstream) for budgeted requests that set none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgetSettings {
    /// IANA time zone periods are aligned to. Default UTC.
    pub timezone: Option<String>,
    pub default_max_tokens: Option<u32>,
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook signing secret.
    pub webhook_secret_env: Option<String>,
    /// How long one alert is retried. Default 10 minutes.
    pub webhook_max_elapsed_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub subject: String,
    pub period: String,
    /// Decimal amount of the reporting currency.
    pub limit: String,
    pub hard: Option<bool>,
    pub alert_at: Option<Vec<u8>>,
}

impl Validator<'_> {
    pub(super) fn budgets(
        &mut self,
        settings: RawBudgetSettings,
        raw: BTreeMap<String, toml::Value>,
        currency: &str,
        cluster: bool,
    ) -> Option<BudgetConfig> {
        let timezone = match settings.timezone.as_deref().unwrap_or("UTC").parse() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.issue(
                    "budget_settings.timezone",
                    "must be an IANA time zone name like \"UTC\" or \"Asia/Shanghai\"",
                );
                None
            }
        };
        let default_max_tokens = settings.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if default_max_tokens == 0 {
            self.issue("budget_settings.default_max_tokens", "must be at least 1");
        }
        let webhook = match (settings.webhook_url, settings.webhook_secret_env) {
            (None, None) => None,
            (Some(url), Some(var)) => {
                let url = reqwest::Url::parse(&url)
                    .map_err(|e| {
                        self.issue("budget_settings.webhook_url", format!("not a URL: {e}"))
                    })
                    .ok();
                let secret = match self.env.var(&var).filter(|v| !v.is_empty()) {
                    Some(s) => Some(Secret::new(s)),
                    None => {
                        self.issue(
                            "budget_settings.webhook_secret_env",
                            format!("environment variable {var} is not set"),
                        );
                        None
                    }
                };
                Some(WebhookConfig {
                    url: url?,
                    secret: secret?,
                    max_elapsed: Duration::from_millis(
                        settings.webhook_max_elapsed_ms.unwrap_or(600_000),
                    ),
                })
            }
            _ => {
                self.issue(
                    "budget_settings",
                    "set both `webhook_url` and `webhook_secret_env` (alerts are always signed), or neither",
                );
                None
            }
        };
        let mut specs = Vec::new();
        let mut any_alerts = false;
        for (id, value) in raw {
            let path = format!("budgets.{id}");
            let Some(b) = self.section::<RawBudget>(&path, value) else {
                continue;
            };
            let subject = Subject::parse(&b.subject);
            if subject.is_none() {
                self.issue(
                    &format!("{path}.subject"),
                    "must be tenant:<name>, team:<name>, key:<name>, end_user:<id> (or end_user:* for each end \
                     user), or tag:<key>=<value>",
                );
            }
            let period = Period::parse(&b.period);
            if period.is_none() {
                self.issue(
                    &format!("{path}.period"),
                    "must be daily, weekly, monthly or total",
                );
            }
            let limit = parse_decimal_nanos(&b.limit);
            if limit.is_none() {
                self.issue(
                    &format!("{path}.limit"),
                    format!("must be a decimal amount of {currency} like \"100.00\""),
                );
            }
            let alert_at = b.alert_at.unwrap_or_default();
            any_alerts |= !alert_at.is_empty();
            if alert_at.iter().any(|p| *p == 0 || *p > 100) {
                self.issue(&format!("{path}.alert_at"), "percentages must be 1 to 100");
            }
            if let (Some(subject), Some(period), Some(limit)) = (subject, period, limit) {
                specs.push(BudgetSpec {
                    id,
                    subject,
                    period,
                    limit,
                    hard: b.hard.unwrap_or(true),
                    alert_at,
                });
            }
        }
        // With Kafka, alerts come from the budget owner (tollgate-metering --alert-webhook-url).
        if any_alerts && webhook.is_none() && !cluster {
            self.issue(
                "budget_settings.webhook_url",
                "budgets set `alert_at` but no webhook is configured to receive the alerts",
            );
        }
        Some(BudgetConfig {
            specs,
            settings: BudgetSettings {
                timezone: timezone?,
                default_max_tokens: default_max_tokens.max(1),
                currency: currency.to_string(),
            },
            webhook,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load_with;

    #[test]
    fn budgets_load_with_their_subjects_and_every_mistake_is_named() {
        let cfg = load_with(
            r#"
[budget_settings]
timezone = "Asia/Shanghai"
[budgets.acme]
subject = "tenant:acme"
period = "monthly"
limit = "100.00"
[budgets.users]
subject = "end_user:*"
period = "daily"
limit = "0.50"
hard = false
"#,
        )
        .unwrap();
        let b = &cfg.budgets;
        assert_eq!(b.specs.len(), 2);
        assert_eq!(b.specs[0].limit, 100_000_000_000);
        assert!(b.specs[0].hard && !b.specs[1].hard);
        assert_eq!(b.settings.timezone, chrono_tz::Asia::Shanghai);
        let err = load_with(
            r#"
[budget_settings]
timezone = "Mars/Olympus"
[budgets.x]
subject = "planet:mars"
period = "hourly"
limit = "1e3"
alert_at = [50]
"#,
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "budget_settings.timezone",
            "budgets.x.subject",
            "budgets.x.period",
            "budgets.x.limit",
            "no webhook",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}

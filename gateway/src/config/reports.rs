//! Validating `[reports]`: where usage reports (`GET /admin/usage`, `tollgate usage`, the usage page) read
//! from. With `clickhouse_url` they query ClickHouse (the cluster pipeline's warehouse); without it, the
//! embedded store at `[store] path`.

use serde::Deserialize;

use super::validator::Validator;
use super::{ReportsClickHouse, ReportsConfig, Secret};

/// `[reports]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReports {
    /// ClickHouse's HTTP interface (`http://127.0.0.1:8123`).
    pub clickhouse_url: Option<String>,
    /// Default `tollgate` (the metering consumer's default).
    pub clickhouse_database: Option<String>,
    pub clickhouse_user: Option<String>,
    /// Environment variable holding the ClickHouse password.
    pub clickhouse_password_env: Option<String>,
}

impl Validator<'_> {
    pub(super) fn reports(&mut self, raw: RawReports) -> ReportsConfig {
        let Some(url) = raw.clickhouse_url else {
            for (field, set) in [
                ("clickhouse_database", raw.clickhouse_database.is_some()),
                ("clickhouse_user", raw.clickhouse_user.is_some()),
                (
                    "clickhouse_password_env",
                    raw.clickhouse_password_env.is_some(),
                ),
            ] {
                if set {
                    self.issue(
                        &format!("reports.{field}"),
                        "only applies with reports.clickhouse_url",
                    );
                }
            }
            return ReportsConfig::default();
        };
        let url = match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                self.issue(
                    "reports.clickhouse_url",
                    format!("{url:?} is not an http(s) URL like http://127.0.0.1:8123"),
                );
                None
            }
        };
        let database = raw.clickhouse_database.unwrap_or_else(|| "tollgate".into());
        if database.is_empty()
            || !database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.issue(
                "reports.clickhouse_database",
                format!("{database:?} must be letters, digits and underscores"),
            );
        }
        let password = raw.clickhouse_password_env.and_then(|var| {
            let value = self.env.var(&var);
            if value.is_none() {
                self.issue(
                    "reports.clickhouse_password_env",
                    format!("environment variable {var} is not set"),
                );
            }
            value.map(Secret::new)
        });
        if password.is_some() && raw.clickhouse_user.is_none() {
            self.issue(
                "reports.clickhouse_user",
                "set the user that clickhouse_password_env belongs to",
            );
        }
        ReportsConfig {
            clickhouse: url.map(|url| ReportsClickHouse {
                url,
                database,
                user: raw.clickhouse_user,
                password,
            }),
        }
    }
}

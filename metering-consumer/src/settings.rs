//! Settings from flags or environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// `tollgate-metering`: Kafka usage topic → ClickHouse.
#[derive(Debug, Clone, Parser)]
#[command(name = "tollgate-metering", version)]
pub struct Settings {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address of the HTTP listener serving /metrics, /healthz and /readyz (and the one `healthcheck` asks).
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_METERING_HTTP_ADDR",
        default_value = "127.0.0.1:9465"
    )]
    pub http_addr: SocketAddr,
    /// How often consumer lag is measured and ClickHouse pinged for readiness (milliseconds).
    #[arg(
        long,
        env = "TOLLGATE_METERING_LAG_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub lag_interval_ms: u64,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "TOLLGATE_KAFKA_BROKERS",
        default_value = "127.0.0.1:19092"
    )]
    pub brokers: String,
    /// Topic of usage events.
    #[arg(long, env = "TOLLGATE_USAGE_TOPIC", default_value = tollgate_schemas::topics::USAGE)]
    pub topic: String,
    /// Topic for records that cannot be decoded.
    #[arg(long, env = "TOLLGATE_DLQ_TOPIC", default_value = tollgate_schemas::topics::USAGE_DEAD_LETTER)]
    pub dead_letter_topic: String,
    /// Control topic (keys, budgets) whose budget events are projected into the `budgets` table.
    #[arg(long, env = "TOLLGATE_CONTROL_TOPIC", default_value = tollgate_schemas::topics::CONTROL)]
    pub control_topic: String,
    /// Be a budget owner candidate (grants budget leases to gateway replicas). Several consumers may: one at a
    /// time is the owner (the one the owners' Kafka group gives the requests partition); another takes over
    /// when it goes away.
    #[arg(long, env = "TOLLGATE_BUDGET_OWNER")]
    pub budget_owner: bool,
    /// The Kafka consumer group of budget owner candidates (one group per cluster).
    #[arg(
        long,
        env = "TOLLGATE_BUDGET_OWNER_GROUP",
        default_value = "tollgate-budget-owner"
    )]
    pub budget_owner_group: String,
    /// Lease requests and returns from replicas.
    #[arg(long, env = "TOLLGATE_BUDGET_REQUESTS_TOPIC", default_value = tollgate_schemas::topics::BUDGET_REQUESTS)]
    pub budget_requests_topic: String,
    /// Lease decisions to replicas.
    #[arg(long, env = "TOLLGATE_BUDGET_DECISIONS_TOPIC", default_value = tollgate_schemas::topics::BUDGET_DECISIONS)]
    pub budget_decisions_topic: String,
    /// How long a granted lease may take new reservations (milliseconds).
    #[arg(long, env = "TOLLGATE_LEASE_TTL_MS", default_value_t = 10_000)]
    pub lease_ttl_ms: u64,
    /// After taking over the role, the owner grants nothing for lease TTL + this (milliseconds): an earlier
    /// owner's leases expire and their usage reaches ClickHouse first. Must cover the pipeline's lag.
    #[arg(long, env = "TOLLGATE_LEASE_GRACE_MS", default_value_t = 10_000)]
    pub lease_grace_ms: u64,
    /// The budget owner's threshold alerts go here (with --budget-owner), signed like the gateway's.
    #[arg(long, env = "TOLLGATE_ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
    /// Environment variable holding the alert signing secret.
    #[arg(long, env = "TOLLGATE_ALERT_WEBHOOK_SECRET_ENV")]
    pub alert_webhook_secret_env: Option<String>,
    /// Time zone budget periods are aligned to: the gateways' `[budget_settings] timezone`.
    #[arg(long, env = "TOLLGATE_BUDGET_TIMEZONE", default_value = "UTC")]
    pub budget_timezone: String,
    /// Consumer group.
    #[arg(
        long,
        env = "TOLLGATE_CONSUMER_GROUP",
        default_value = "tollgate-metering"
    )]
    pub group: String,
    /// ClickHouse HTTP URL.
    #[arg(
        long,
        env = "TOLLGATE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:18123"
    )]
    pub clickhouse_url: String,
    /// ClickHouse database (created if missing).
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_DATABASE", default_value = "tollgate")]
    pub database: String,
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    #[arg(
        long,
        env = "TOLLGATE_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub clickhouse_password: String,
    /// A batch closes at this many rows…
    #[arg(long, env = "TOLLGATE_BATCH_ROWS", default_value_t = 20_000)]
    pub batch_rows: usize,
    /// …or this many bytes of records…
    #[arg(long, env = "TOLLGATE_BATCH_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub batch_bytes: usize,
    /// …or when its oldest record is this old (milliseconds). Bounds the request → row lag.
    #[arg(long, env = "TOLLGATE_BATCH_AGE_MS", default_value_t = 300)]
    pub batch_age_ms: u64,
}

/// What to do instead of consuming.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask a running consumer's /readyz (at --http-addr) and exit 0 if it is ready, 1 if not: for container
    /// health checks without curl.
    Healthcheck {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2_000)]
        timeout_ms: u64,
    },
}

impl Settings {
    #[must_use]
    pub fn batch_age(&self) -> Duration {
        Duration::from_millis(self.batch_age_ms)
    }

    #[must_use]
    pub fn lag_interval(&self) -> Duration {
        Duration::from_millis(self.lag_interval_ms.max(100))
    }
}

impl Settings {
    /// The owner's alert webhook, when configured.
    ///
    /// # Errors
    /// A URL that does not parse, or a secret variable that is unset or missing.
    pub fn alert_webhook(
        &self,
    ) -> Result<Option<tollgate_gateway::budget::alerts::WebhookConfig>, crate::error::MeteringError>
    {
        use crate::error::MeteringError;
        match (&self.alert_webhook_url, &self.alert_webhook_secret_env) {
            (None, None) => Ok(None),
            (Some(url), Some(var)) => {
                let url = reqwest::Url::parse(url)
                    .map_err(|e| MeteringError::Settings(format!("--alert-webhook-url: {e}")))?;
                let secret = std::env::var(var)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        MeteringError::Settings(format!(
                            "environment variable {var} (alert secret) is not set"
                        ))
                    })?;
                Ok(Some(tollgate_gateway::budget::alerts::WebhookConfig {
                    url,
                    secret: tollgate_gateway::config::Secret::new(secret),
                    max_elapsed: Duration::from_secs(600),
                }))
            }
            _ => Err(MeteringError::Settings(
                "set both --alert-webhook-url and --alert-webhook-secret-env, or neither".into(),
            )),
        }
    }
}

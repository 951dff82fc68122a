//! The consumer's one error type.

#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: clickhouse::error::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid setting {name}: {message}")]
    Setting { name: &'static str, message: String },
    #[error("{0}")]
    Settings(String),
}

impl MeteringError {
    /// Whether waiting and trying again can help (ClickHouse down or busy, network), as opposed to a bad
    /// statement or bad data.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::ClickHouse(e) | Self::Migration { source: e, .. } => {
                matches!(
                    e,
                    clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
                ) || e.to_string().contains("connect")
            }
            Self::Kafka(_) => true,
            Self::Setting { .. } | Self::Settings(_) | Self::Listen { .. } => false,
        }
    }
}

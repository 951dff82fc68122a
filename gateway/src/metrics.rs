//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text).
//!
//! Request metrics are recorded in one place — when an exchange emits its usage event — from the event itself,
//! so `/metrics` and the usage store count the same requests. Handles are created once per configured model and
//! deployment, so recording is a map lookup by `&str` plus atomic adds: nothing is allocated per request.
//!
//! Series: `tollgate_requests_total{endpoint,model,outcome}`, `tollgate_request_duration_seconds` and
//! `tollgate_time_to_first_byte_seconds` `{endpoint,model}`, `tollgate_tokens_total{model,class}`,
//! `tollgate_upstream_attempts_total{deployment,result}`, `tollgate_cooldowns_total{deployment}`,
//! `tollgate_retried_requests_total{model}`, `tollgate_rate_limited_total{subject}`, and the usage sink's
//! `tollgate_sink_*` (emitted, written, dropped, spooled, replayed, spool bytes).

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tollgate_schemas::{Endpoint, Outcome, UsageEvent};

use crate::events::SinkStats;
pub use histogram::LatencyHistogram;

mod histogram;

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint::ChatCompletions,
    Endpoint::Embeddings,
    Endpoint::Messages,
    Endpoint::GenerateContent,
];
const OUTCOMES: [Outcome; 5] = [
    Outcome::Success,
    Outcome::ClientError,
    Outcome::UpstreamError,
    Outcome::GatewayError,
    Outcome::ClientDisconnected,
];
const TOKEN_CLASSES: [&str; 5] = [
    "prompt",
    "completion",
    "cached_read",
    "cache_write",
    "reasoning",
];
/// Requests for a model that does not exist are counted under this name (the name itself is client input).
const UNKNOWN_MODEL: &str = "(unknown)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    model: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    endpoint: &'static str,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    deployment: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabel {
    deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubjectLabel {
    subject: &'static str,
}

/// One model's handles.
#[derive(Debug)]
struct ModelHandles {
    requests: [[Counter; OUTCOMES.len()]; ENDPOINTS.len()],
    duration: [LatencyHistogram; ENDPOINTS.len()],
    ttft: [LatencyHistogram; ENDPOINTS.len()],
    tokens: [Counter; TOKEN_CLASSES.len()],
    retried: Counter,
    cost: Counter,
    price_missing: Counter,
}

/// One deployment's handles, held by the deployment itself.
#[derive(Debug, Clone, Default)]
pub struct DeploymentMetrics {
    ok: Counter,
    retryable: Counter,
    fatal: Counter,
    cooldowns: Counter,
}

impl DeploymentMetrics {
    /// One upstream attempt ended: answered, failed in a way worth another try, or failed for good.
    pub fn attempt(&self, answered: bool, retryable: bool) {
        match (answered, retryable) {
            (true, _) => self.ok.inc(),
            (false, true) => self.retryable.inc(),
            (false, false) => self.fatal.inc(),
        };
    }

    pub fn cooled_down(&self) {
        self.cooldowns.inc();
    }
}

pub struct Metrics {
    registry: Registry,
    models: HashMap<String, ModelHandles>,
    unknown: ModelHandles,
    attempts: Family<AttemptLabels, Counter>,
    cooldowns: Family<DeploymentLabel, Counter>,
    rate_limited: Family<SubjectLabel, Counter>,
    budget_refused: Counter,
}

struct Families {
    requests: Family<RequestLabels, Counter>,
    duration: Family<LatencyLabels, LatencyHistogram>,
    ttft: Family<LatencyLabels, LatencyHistogram>,
    tokens: Family<TokenLabels, Counter>,
    retried: Family<ModelLabel, Counter>,
    cost: Family<ModelLabel, Counter>,
    price_missing: Family<ModelLabel, Counter>,
}

impl Families {
    fn handles(&self, model: &str) -> ModelHandles {
        let requests = ENDPOINTS.map(|e| {
            OUTCOMES.map(|o| {
                self.requests
                    .get_or_create(&RequestLabels {
                        endpoint: e.as_str(),
                        model: model.into(),
                        outcome: o.as_str(),
                    })
                    .clone()
            })
        });
        let latency = |family: &Family<LatencyLabels, LatencyHistogram>| {
            ENDPOINTS.map(|e| {
                family
                    .get_or_create(&LatencyLabels {
                        endpoint: e.as_str(),
                        model: model.into(),
                    })
                    .clone()
            })
        };
        ModelHandles {
            requests,
            duration: latency(&self.duration),
            ttft: latency(&self.ttft),
            tokens: TOKEN_CLASSES.map(|class| {
                self.tokens
                    .get_or_create(&TokenLabels {
                        model: model.into(),
                        class,
                    })
                    .clone()
            }),
            retried: self
                .retried
                .get_or_create(&ModelLabel {
                    model: model.into(),
                })
                .clone(),
            cost: self
                .cost
                .get_or_create(&ModelLabel {
                    model: model.into(),
                })
                .clone(),
            price_missing: self
                .price_missing
                .get_or_create(&ModelLabel {
                    model: model.into(),
                })
                .clone(),
        }
    }
}

impl Metrics {
    /// Registers every series; `models` are the configured public model names.
    #[must_use]
    pub fn new<'a>(models: impl IntoIterator<Item = &'a str>, sink: Arc<SinkStats>) -> Self {
        let mut registry = Registry::with_prefix("tollgate");
        let families = Families {
            requests: Family::default(),
            duration: Family::default(),
            ttft: Family::default(),
            tokens: Family::default(),
            retried: Family::default(),
            cost: Family::default(),
            price_missing: Family::default(),
        };
        registry.register(
            "cost_nanos",
            "Spend in nano-units of the reporting currency ([pricing] currency), by model",
            families.cost.clone(),
        );
        registry.register(
            "price_missing",
            "Requests served by a deployment with no known price (recorded at zero cost), by model",
            families.price_missing.clone(),
        );
        registry.register(
            "requests",
            "Requests by endpoint, model and outcome",
            families.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency to the last byte",
            families.duration.clone(),
        );
        registry.register(
            "time_to_first_byte_seconds",
            "Time to the upstream's first byte",
            families.ttft.clone(),
        );
        registry.register(
            "tokens",
            "Tokens by model and class (provider-reported or estimated)",
            families.tokens.clone(),
        );
        registry.register(
            "retried_requests",
            "Requests that needed more than one upstream attempt",
            families.retried.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        let cooldowns = Family::<DeploymentLabel, Counter>::default();
        let rate_limited = Family::<SubjectLabel, Counter>::default();
        registry.register(
            "upstream_attempts",
            "Upstream attempts by deployment and result",
            attempts.clone(),
        );
        registry.register(
            "cooldowns",
            "Keys put in cooldown, by deployment",
            cooldowns.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by subject kind",
            rate_limited.clone(),
        );
        let budget_refused = Counter::default();
        registry.register(
            "budget_refused",
            "Requests refused because a hard budget had no room for their worst-case cost",
            budget_refused.clone(),
        );
        registry.register_collector(Box::new(SinkCollector(sink)));
        let models = models
            .into_iter()
            .map(|m| (m.to_string(), families.handles(m)))
            .collect();
        let unknown = families.handles(UNKNOWN_MODEL);
        Self {
            registry,
            models,
            unknown,
            attempts,
            cooldowns,
            rate_limited,
            budget_refused,
        }
    }

    /// A request was refused for budget.
    pub fn budget_refused(&self) {
        self.budget_refused.inc();
    }

    /// Handles for one deployment (created at start, kept by the deployment).
    #[must_use]
    pub fn deployment(&self, id: &str) -> DeploymentMetrics {
        let attempt = |result| {
            self.attempts
                .get_or_create(&AttemptLabels {
                    deployment: id.into(),
                    result,
                })
                .clone()
        };
        DeploymentMetrics {
            ok: attempt("ok"),
            retryable: attempt("retryable_error"),
            fatal: attempt("error"),
            cooldowns: self
                .cooldowns
                .get_or_create(&DeploymentLabel {
                    deployment: id.into(),
                })
                .clone(),
        }
    }

    /// Records a finished request from its usage event.
    pub fn record(&self, e: &UsageEvent) {
        let m = self.models.get(e.model.as_str()).unwrap_or(&self.unknown);
        let endpoint = ENDPOINTS.iter().position(|x| *x == e.endpoint).unwrap_or(0);
        let outcome = OUTCOMES.iter().position(|x| *x == e.outcome).unwrap_or(0);
        m.requests[endpoint][outcome].inc();
        m.duration[endpoint].observe_ms(e.latency_ms);
        if let Some(ttft) = e.ttft_ms {
            m.ttft[endpoint].observe_ms(ttft);
        }
        let u = e.usage;
        for (counter, n) in m.tokens.iter().zip([
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_read_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
        ]) {
            counter.inc_by(n);
        }
        if e.attempts > 1 {
            m.retried.inc();
        }
        m.cost.inc_by(e.cost.reporting_nanos);
        if e.cost.price_missing {
            m.price_missing.inc();
        }
    }

    /// A request refused by a rate limit of a `key`, `team` or `model`.
    pub fn rate_limited(&self, subject: &'static str) {
        self.rate_limited
            .get_or_create(&SubjectLabel { subject })
            .inc();
    }

    /// The OpenMetrics text of every series.
    ///
    /// # Errors
    /// Only if formatting fails (it writes to a `String`).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The usage sink's counters, read at scrape time.
#[derive(Debug)]
struct SinkCollector(Arc<SinkStats>);

impl Collector for SinkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        for (name, help, value) in [
            ("sink_emitted", "Usage events handed to the sink", s.emitted),
            (
                "sink_written",
                "Usage events stored (embedded) or delivered to Kafka",
                s.written,
            ),
            (
                "sink_dropped",
                "Usage events lost (full queue or spool): must stay 0",
                s.dropped,
            ),
            (
                "sink_spooled",
                "Usage events put in the disk spool while Kafka was away",
                s.spooled,
            ),
            (
                "sink_replayed",
                "Usage events replayed from the spool",
                s.replayed,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let spool = ConstGauge::new(i64::try_from(s.spool_bytes).unwrap_or(i64::MAX));
        spool.encode(encoder.encode_descriptor(
            "sink_spool_bytes",
            "Bytes waiting in the spool",
            None,
            spool.metric_type(),
        )?)?;
        let healthy = ConstGauge::new(i64::from(s.healthy));
        healthy.encode(encoder.encode_descriptor(
            "sink_healthy",
            "1 while the sink stores events",
            None,
            healthy.metric_type(),
        )?)?;
        Ok(())
    }
}

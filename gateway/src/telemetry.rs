//! Logs and traces: the process's `tracing` subscriber and, when configured, OpenTelemetry spans over OTLP.
//!
//! Logs are written as before (`TOLLGATE_LOG` filter, `TOLLGATE_LOG_FORMAT=json`). With a
//! [`TelemetryConfig`] every client request gets a `request` span (kind server) and every upstream attempt an
//! `upstream_attempt` child span (kind client), exported in batches over OTLP/HTTP (protobuf).
//!
//! **Cost.** The spans use their own target, [`SPAN_TARGET`], which only the OpenTelemetry layer enables.
//! Without an exporter no layer wants that target, so `tracing` marks the callsites as never-enabled: the span
//! macros return a disabled span without evaluating a field, and recording on it is a branch. With an
//! exporter, spans are handed to the SDK's batch processor — a bounded queue drained by its own thread — so a
//! request never waits for the collector; a full queue or a dead collector drops spans, nothing else.
//!
//! **What spans carry.** Identifiers and numbers only: request id (= the usage event id), endpoint, model,
//! tenant, team, key name, deployment, provider, key slot index, status, outcome, error code, attempts, tokens,
//! time to first byte. Never prompt or completion text, API keys, `Authorization` values or upstream error
//! messages (providers echo prompts and keys in them).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tollgate_schemas::{Outcome, UsageEvent};
use tracing::field::Empty;
use tracing::level_filters::LevelFilter;
use tracing::Span;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetryConfig;
use crate::error::GatewayError;
use crate::routing::Candidate;

/// The target of the gateway's trace spans; logs never show them, only the OpenTelemetry layer sees them.
pub const SPAN_TARGET: &str = "tollgate::trace";

/// How long the exporter waits for the collector per batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The installed telemetry; [`Telemetry::shutdown`] exports what is still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    #[must_use]
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now (blocks until the collector answered or timed out). Call it off the
    /// async workers (`spawn_blocking`): the export itself runs on the Tokio runtime.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "flushing spans failed");
            }
        }
    }

    /// Exports what is queued and stops the exporter (blocking, like [`Self::flush`]).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "stopping the span exporter failed");
            }
        }
    }
}

/// Installs the global subscriber: logs, plus span export when `config` is given. With `config`, it must be
/// called inside a Tokio runtime (the exporter sends through it).
///
/// # Errors
/// When a subscriber is already installed or the exporter cannot be built.
pub fn init(config: Option<&TelemetryConfig>) -> Result<Telemetry, GatewayError> {
    let provider = config.map(provider).transpose()?;
    subscriber(provider.as_ref())
        .try_init()
        .map_err(|e| GatewayError::Internal(format!("cannot install the log subscriber: {e}")))?;
    if let Some(c) = config {
        tracing::info!(endpoint = %c.traces_endpoint, service = %c.service_name, sample_ratio = c.sample_ratio,
            "exporting traces over OTLP/HTTP");
    }
    Ok(Telemetry { provider })
}

/// Logs (`TOLLGATE_LOG` filter, `TOLLGATE_LOG_FORMAT=json`) and, with a provider, the span layer. (Two
/// shapes rather than an `Option` layer: a `None` layer makes `tracing-subscriber` ask every per-layer filter
/// at each span instead of ruling the span target out once per callsite.)
fn subscriber(provider: Option<&SdkTracerProvider>) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let filter = EnvFilter::try_from_env("TOLLGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // The trace spans never reach the logs, whatever TOLLGATE_LOG says.
    let not_spans = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target(SPAN_TARGET, LevelFilter::OFF);
    let fmt = if std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    let logs = tracing_subscriber::registry().with(fmt.with_filter(filter.and(not_spans)));
    match provider {
        None => Box::new(logs),
        Some(p) => Box::new(
            logs.with(
                tracing_opentelemetry::layer()
                    .with_tracer(p.tracer("tollgate"))
                    .with_location(false)
                    .with_threads(false)
                    .with_target(false)
                    .with_tracked_inactivity(false)
                    .with_filter(Targets::new().with_target(SPAN_TARGET, LevelFilter::INFO)),
            ),
        ),
    }
}

fn provider(config: &TelemetryConfig) -> Result<SdkTracerProvider, GatewayError> {
    let client = RuntimeHttpClient::new()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(config.traces_endpoint.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| GatewayError::Internal(format!("cannot build the OTLP exporter: {e}")))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The OTLP exporter's HTTP client: the workspace's reqwest, driven on the gateway's Tokio runtime. (The SDK's
/// batch processor runs on its own thread without a runtime; each export is spawned onto the runtime and
/// awaited from there.) Failures are logged once when they start and once when they stop.
#[derive(Debug)]
struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    failing: AtomicBool,
}

impl RuntimeHttpClient {
    fn new() -> Result<Self, GatewayError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| GatewayError::Internal("trace export needs a Tokio runtime".into()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| GatewayError::Internal(format!("cannot build the OTLP client: {e}")))?;
        Ok(Self {
            client,
            runtime,
            failing: AtomicBool::new(false),
        })
    }

    fn outcome(&self, failure: Option<String>) {
        match failure {
            Some(why) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %why, "trace export failing; spans are dropped until the collector answers");
            }
            None if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("trace export recovered");
            }
            _ => {}
        }
    }
}

impl HttpClient for RuntimeHttpClient {
    fn send_bytes<'a, 'r>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'r>>
    where
        'a: 'r,
        Self: 'r,
    {
        let (parts, body) = request.into_parts();
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(reqwest::Error::without_url)?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map_err(reqwest::Error::without_url)?;
            let mut out = Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        });
        Box::pin(async move {
            let result: Result<Response<Bytes>, HttpError> = match task.await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(Box::new(e)),
                Err(e) => Err(Box::new(e)),
            };
            let failure = match &result {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("collector answered {}", r.status())),
                Err(e) => Some(chain(e.as_ref())),
            };
            self.outcome(failure);
            result
        })
    }
}

/// An error and its sources, `: `-joined (reqwest's own message is only "error sending request").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// A client request's span, opened when the exchange begins; its facts are recorded from the usage event by
/// [`record_request`], and it ends when the exchange is dropped (after the stream relay, for streams).
#[must_use]
pub fn request_span(request_id: &uuid::Uuid, endpoint: &'static str) -> Span {
    tracing::info_span!(target: SPAN_TARGET, "request",
        otel.kind = "server",
        otel.status_code = Empty,
        request_id = %request_id,
        endpoint,
        model = Empty,
        tenant = Empty,
        team = Empty,
        key_id = Empty,
        stream = Empty,
        "http.response.status_code" = Empty,
        outcome = Empty,
        error_code = Empty,
        attempts = Empty,
        deployment = Empty,
        provider = Empty,
        ttft_ms = Empty,
        usage_source = Empty,
        prompt_tokens = Empty,
        completion_tokens = Empty,
        cached_read_tokens = Empty,
        cache_write_tokens = Empty,
        reasoning_tokens = Empty,
    )
}

/// Records a finished request on its span, from the usage event (the same facts the store gets).
pub fn record_request(span: &Span, e: &UsageEvent) {
    if span.is_disabled() {
        return;
    }
    span.record("model", e.model.as_str());
    span.record("tenant", e.tenant.as_str());
    span.record("team", e.team.as_str());
    span.record("key_id", e.key_id.as_str());
    span.record("stream", e.stream);
    span.record("http.response.status_code", i64::from(e.http_status));
    span.record("outcome", e.outcome.as_str());
    if let Some(code) = &e.error_code {
        span.record("error_code", code.as_str());
    }
    span.record("attempts", i64::from(e.attempts));
    if !e.deployment.is_empty() {
        span.record("deployment", e.deployment.as_str());
        span.record("provider", e.provider.as_str());
    }
    if let Some(ttft) = e.ttft_ms {
        span.record("ttft_ms", int(ttft));
    }
    span.record("usage_source", e.usage_source.as_str());
    span.record("prompt_tokens", int(e.usage.prompt_tokens));
    span.record("completion_tokens", int(e.usage.completion_tokens));
    span.record("cached_read_tokens", int(e.usage.cached_read_tokens));
    span.record("cache_write_tokens", int(e.usage.cache_write_tokens));
    span.record("reasoning_tokens", int(e.usage.reasoning_tokens));
    if e.http_status >= 500 || matches!(e.outcome, Outcome::GatewayError) {
        span.record("otel.status_code", "error");
    }
}

/// Integers go to OpenTelemetry as i64 (`tracing-opentelemetry` would render a u64 as a string).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The span of one upstream attempt, a child of the request's span.
#[must_use]
pub fn attempt_span(request: &Span, candidate: &Candidate, attempt: u32) -> Span {
    if request.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(target: SPAN_TARGET, parent: request, "upstream_attempt",
        otel.kind = "client",
        otel.status_code = Empty,
        deployment = candidate.deployment.id.as_str(),
        provider = candidate.deployment.provider.name.as_str(),
        key_index = i64::try_from(candidate.key).unwrap_or(i64::MAX),
        attempt = i64::from(attempt),
        "http.response.status_code" = Empty,
        result = Empty,
        error_code = Empty,
        ttft_ms = Empty,
    )
}

/// The attempt got its first byte (a stream's first chunk) with a 2xx `status` after `ttft`.
pub fn attempt_answered(span: &Span, status: u16, ttft: Duration) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status));
    span.record("result", "ok");
    span.record(
        "ttft_ms",
        i64::try_from(ttft.as_millis()).unwrap_or(i64::MAX),
    );
}

/// The attempt failed: the upstream's status when it answered, the gateway's error code, and whether the
/// failure let the request move on to another candidate. The error's message is not recorded.
pub fn attempt_failed(span: &Span, error: &GatewayError) {
    if span.is_disabled() {
        return;
    }
    let status = match error {
        GatewayError::UpstreamRejected(e) => Some(e.status.as_u16()),
        GatewayError::UpstreamFailed { status, .. } => *status,
        GatewayError::UpstreamAuthFailed { .. } => Some(401),
        _ => None,
    };
    if let Some(s) = status {
        span.record("http.response.status_code", i64::from(s));
    }
    span.record(
        "result",
        if error.retryable() {
            "retryable_error"
        } else {
            "error"
        },
    );
    span.record("error_code", error.code().as_str());
    span.record("otel.status_code", "error");
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _};

    fn dead_endpoint() -> TelemetryConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        TelemetryConfig {
            traces_endpoint: format!("http://127.0.0.1:{port}/v1/traces")
                .parse()
                .unwrap(),
            service_name: "test".into(),
            sample_ratio: 1.0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_are_disabled_without_an_exporter_and_enabled_with_one() {
        let id = uuid::Uuid::now_v7();
        tracing::subscriber::with_default(subscriber(None), || {
            let span = request_span(&id, "chat_completions");
            assert!(
                span.is_disabled(),
                "no exporter: the request path builds nothing"
            );
        });
        let provider = provider(&dead_endpoint()).unwrap();
        tracing::subscriber::with_default(subscriber(Some(&provider)), || {
            let span = request_span(&id, "chat_completions");
            assert!(!span.is_disabled());
        });
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_collector_never_blocks_ending_spans() {
        let provider = provider(&dead_endpoint()).unwrap();
        let tracer = provider.tracer("test");
        let started = std::time::Instant::now();
        // Far more than the batch queue holds: the rest are dropped, not waited for.
        for _ in 0..20_000 {
            tracer.start("request").end();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "ending spans took {:?}",
            started.elapsed()
        );
        let p = provider.clone();
        let flushed = std::time::Instant::now();
        tokio::task::spawn_blocking(move || p.force_flush())
            .await
            .unwrap()
            .ok();
        assert!(flushed.elapsed() < EXPORT_TIMEOUT + Duration::from_secs(5));
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .ok();
    }
}

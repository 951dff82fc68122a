//! The consumer's HTTP listener: `GET /metrics` (Prometheus / OpenMetrics text), `GET /healthz` (the process
//! answers) and `GET /readyz` (200 only while ClickHouse answered recently and partitions are assigned; the
//! facts as JSON either way). Unauthenticated, like the gateway's: expose it where Prometheus and the
//! orchestrator can reach it.
//!
//! [`probe`] is the client side for `tollgate-metering healthcheck`: a plain HTTP/1.1 GET of `/readyz` over a
//! TCP socket, so the container image needs no curl.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::MeteringError;
use crate::metrics::Metrics;

/// Binds `addr` and serves until `stop`.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<SocketAddr, MeteringError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MeteringError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MeteringError::Listen { addr, source })?;
    let app = router(metrics);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> Response {
    let facts = metrics.readiness();
    let status = if facts.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(facts)).into_response()
}

/// GETs `/readyz` from a consumer listening on `addr` (an unspecified address means this host) and returns
/// the status code and body.
///
/// # Errors
/// When the consumer cannot be reached or answers something that is not HTTP.
pub fn probe(addr: SocketAddr, timeout: Duration) -> std::io::Result<(u16, String)> {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer")
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

//! `tollgate-loadgen`: an open-loop, constant-rate HTTP load generator (used by `bench/run.sh`).
//!
//! Request `i` is due at `start + i / rate`, whether or not earlier requests have finished (open loop), and
//! its latency is measured from that *scheduled* time, not from when it actually left. A server that stalls
//! is therefore charged for the queue it causes (no coordinated omission, as in wrk2). At most
//! `--connections` requests are in flight; a request waiting for a free connection is late, and the wait
//! counts in its latency.
//!
//! The schedule is kept by a plain OS thread sleeping with `nanosleep` (tens of microseconds of slack),
//! because tokio's timer has a 1 ms granularity, which would add up to 1 ms of false latency to every request.
//!
//! Prints one machine-readable line and exits 1 when any request failed (transport error or non-2xx):
//!
//! ```text
//! rate=2000 sent=20000 ok=20000 errors=0 p50_ms=0.412 p99_ms=1.203 max_ms=3.104 achieved_rps=2000.0 lag_p99_ms=0.062 max_lag_ms=0.081 elapsed_s=10.00
//! ```
//!
//! `lag_p99_ms`/`max_lag_ms` say how late the pacer itself dispatched requests (the OS did not run it on
//! time): a lag close to `p99_ms` means the load generator, not the server, made the tail.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(
    name = "tollgate-loadgen",
    about = "Open-loop constant-rate HTTP load generator"
)]
struct Args {
    /// Target URL.
    #[arg(long)]
    url: String,
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to send, in seconds (`rate * duration` requests in all).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Connection pool size: the most requests in flight at once.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// A request header, `'Name: value'` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Request body, read from a file.
    #[arg(long, conflicts_with = "body")]
    body_file: Option<PathBuf>,
    /// Request body, inline.
    #[arg(long)]
    body: Option<String>,
    /// HTTP method (default: POST with a body, GET without).
    #[arg(long)]
    method: Option<String>,
    /// Per-request timeout, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Tokio worker threads running the requests.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What every request shares.
struct Target {
    client: reqwest::Client,
    method: Method,
    url: reqwest::Url,
    headers: HeaderMap,
    body: Option<Bytes>,
    slots: Semaphore,
}

/// One request's result: latency from its scheduled time, or an error message.
type Outcome = Result<Duration, String>;

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("tollgate-loadgen: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    if args.rate == 0 || args.duration_secs == 0 || args.connections == 0 || args.threads == 0 {
        bail!("--rate, --duration-secs, --connections and --threads must be greater than 0");
    }
    let target = Arc::new(build_target(&args)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let total = args.rate * args.duration_secs;
    let rate = args.rate;

    // The pacer: dispatches request i at start + i/rate, never waiting for a response.
    let started = Instant::now();
    let pacer = std::thread::Builder::new()
        .name("loadgen-pacer".into())
        .spawn(move || {
            let capacity = usize::try_from(total).unwrap_or(0);
            let mut tasks = Vec::with_capacity(capacity);
            let mut lags = Vec::with_capacity(capacity);
            for i in 0..total {
                let due = started + Duration::from_nanos(i.saturating_mul(1_000_000_000) / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                lags.push(Instant::now().saturating_duration_since(due));
                tasks.push(handle.spawn(send_one(target.clone(), due)));
            }
            (tasks, lags)
        })?;
    let (tasks, mut lags) = pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    lags.sort_unstable();
    let outcomes: Vec<Outcome> = runtime.block_on(async move {
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(
                task.await
                    .unwrap_or_else(|e| Err(format!("task failed: {e}"))),
            );
        }
        outcomes
    });
    let elapsed = started.elapsed();

    let mut latencies: Vec<Duration> = Vec::with_capacity(outcomes.len());
    let mut errors = 0_u64;
    let mut shown = 0;
    for outcome in outcomes {
        match outcome {
            Ok(latency) => latencies.push(latency),
            Err(message) => {
                errors += 1;
                if shown < 5 {
                    eprintln!("tollgate-loadgen: request failed: {message}");
                    shown += 1;
                }
            }
        }
    }
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let sent_window =
        Duration::from_nanos((total - 1).saturating_mul(1_000_000_000) / rate).as_secs_f64();
    let achieved = if sent_window > 0.0 {
        (total - 1) as f64 / sent_window
    } else {
        0.0
    };
    println!(
        "rate={} sent={} ok={} errors={} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} achieved_rps={:.1} lag_p99_ms={:.3} max_lag_ms={:.3} elapsed_s={:.2}",
        args.rate,
        total,
        latencies.len(),
        errors,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        achieved,
        ms(percentile(&lags, 0.99)),
        ms(lags.last().copied().unwrap_or_default()),
        elapsed.as_secs_f64(),
    );
    Ok(errors == 0)
}

fn build_target(args: &Args) -> anyhow::Result<Target> {
    let url =
        reqwest::Url::parse(&args.url).with_context(|| format!("bad --url {:?}", args.url))?;
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("bad --header {h:?}: expected 'Name: value'"))?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("bad header name in {h:?}"))?,
            HeaderValue::from_str(value.trim())
                .with_context(|| format!("bad header value in {h:?}"))?,
        );
    }
    let body = match (&args.body_file, &args.body) {
        (Some(path), _) => {
            Some(Bytes::from(std::fs::read(path).with_context(|| {
                format!("cannot read {}", path.display())
            })?))
        }
        (None, Some(text)) => Some(Bytes::from(text.clone())),
        (None, None) => None,
    };
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .with_context(|| format!("bad --method {m:?}"))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.connections)
        .pool_idle_timeout(None)
        .timeout(Duration::from_millis(args.timeout_ms))
        .build()?;
    Ok(Target {
        client,
        method,
        url,
        headers,
        body,
        slots: Semaphore::new(args.connections),
    })
}

/// Sends one request due at `due`; its latency runs from `due` until the whole response body is read.
async fn send_one(target: Arc<Target>, due: Instant) -> Outcome {
    let _slot = target.slots.acquire().await.map_err(|e| e.to_string())?;
    let mut request = target
        .client
        .request(target.method.clone(), target.url.clone())
        .headers(target.headers.clone());
    if let Some(body) = &target.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.map_err(|e| format!("{e:#}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {e:#}"))?;
    let latency = due.elapsed();
    if !status.is_success() {
        let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("HTTP {status}: {snippet}"));
    }
    Ok(latency)
}

/// Nearest-rank percentile of sorted `values` (`q` in 0..=1); zero when empty.
fn percentile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

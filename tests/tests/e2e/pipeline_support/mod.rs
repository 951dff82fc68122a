//! Real Kafka + ClickHouse + the gateway and metering-consumer binaries + an in-process mock upstream.
//!
//! Needs the services from `scripts/services.sh` (Kafka on 127.0.0.1:19092, ClickHouse on
//! http://127.0.0.1:18123; `TOLLGATE_KAFKA_BROKERS` / `TOLLGATE_CLICKHOUSE_URL` override) and the workspace
//! binaries built (`cargo build --workspace`). Each test uses its own topic, consumer group and database.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_tests::mock_upstream::{Dialect, MockUpstream};

/// The admin key every pipeline gateway accepts.
pub const ADMIN_KEY: &str = "tg-pipeline-admin-key";

pub const TENANT_KEYS: [(&str, &str); 3] = [
    ("acme", "tg-pipe-acme"),
    ("globex", "tg-pipe-globex"),
    ("initech", "tg-pipe-initech"),
];

pub fn brokers() -> String {
    std::env::var("TOLLGATE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

pub fn clickhouse_url() -> String {
    std::env::var("TOLLGATE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:18123".into())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A workspace binary next to this test executable (target/<profile>/).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Starts or stops one service through the project's scripts (idempotent).
pub fn service(action: &str, which: &str) {
    let script = if action == "start" {
        "scripts/services.sh"
    } else {
        "scripts/services-stop.sh"
    };
    let status = Command::new("bash")
        .arg(repo().join(script))
        .arg(which)
        .status()
        .expect("run services script");
    assert!(status.success(), "{script} {which} failed");
}

/// Runs a ClickHouse query over HTTP and returns the body.
pub async fn ch(query: &str) -> Result<String, String> {
    let r = reqwest::Client::new()
        .post(clickhouse_url())
        .body(query.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = r.status().is_success();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if ok {
        Ok(text)
    } else {
        Err(text)
    }
}

pub async fn ch_u64(query: &str) -> u64 {
    ch(query)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

pub struct Pipeline {
    pub id: String,
    pub topic: String,
    pub database: String,
    pub group: String,
    pub mock: MockUpstream,
    pub dir: tempfile::TempDir,
    pub gateway: Option<Child>,
    pub gateway_port: u16,
    pub consumer: Option<Child>,
    /// The running consumer's HTTP port (`/metrics`, `/healthz`, `/readyz`); a new one per start.
    pub consumer_port: u16,
    pub client: reqwest::Client,
}

impl Pipeline {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, &[]).await
    }

    /// Like [`Self::start`], the consumer started with `consumer_flags`.
    pub async fn start_with(name: &str, consumer_flags: &[&str]) -> Self {
        service("start", "all");
        let unique = uuid::Uuid::now_v7().simple().to_string();
        let id = format!("{name}_{}", &unique[unique.len() - 10..]);
        let mock = MockUpstream::start().await.expect("mock");
        let mut p = Self {
            topic: format!("tollgate.usage.test.{id}"),
            database: format!("tg_{id}"),
            group: format!("tollgate-metering-{id}"),
            id,
            mock,
            dir: tempfile::tempdir().expect("tempdir"),
            gateway: None,
            gateway_port: free_port(),
            consumer: None,
            consumer_port: 0,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
        };
        p.start_gateway();
        p.start_consumer(consumer_flags);
        p.wait_gateway().await;
        p
    }

    fn config(&self) -> String {
        self.config_on(self.gateway_port)
    }

    /// The gateway config listening on `port` (a second replica shares everything else).
    pub fn config_on(&self, port: u16) -> String {
        let keys: String = TENANT_KEYS
            .iter()
            .map(|(tenant, key)| {
                format!(
                    "[keys.{tenant}]\ntenant = \"{tenant}\"\nteam = \"team-{tenant}\"\nsha256 = \"{}\"\nmodels = [\"*\"]\n\n",
                    tollgate_gateway::auth::KeyHash::of(key).to_hex()
                )
            })
            .collect();
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[kafka]
brokers = "{brokers}"
topic = "{topic}"
control_topic = "{topic}.control"
budget_requests_topic = "{topic}.budget.requests"
budget_decisions_topic = "{topic}.budget.decisions"
spool_dir = "{spool}"
message_timeout_ms = 2000

[admin]
sha256 = "{admin}"

[providers.mock]
kind = "openai"
base_url = "{base}"
api_keys = ["sk-mock"]

[models."gpt-4o-mini"]
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

{keys}"#,
            port = port,
            brokers = brokers(),
            topic = self.topic,
            spool = self.dir.path().join("spool").display(),
            admin = tollgate_gateway::auth::KeyHash::of(ADMIN_KEY).to_hex(),
            base = self.mock.base_url(Dialect::OpenAi),
        )
    }

    pub fn start_gateway(&mut self) {
        let path = self.dir.path().join("gateway.toml");
        std::fs::write(&path, self.config()).expect("write config");
        let log = std::fs::File::create(self.dir.path().join("gateway.log")).expect("log");
        let child = Command::new(binary("tollgate"))
            .arg("--config")
            .arg(&path)
            .env("TOLLGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gateway");
        self.gateway = Some(child);
    }

    /// Starts another gateway replica on its own port with the same config (same topics, same spool dir
    /// name under another directory); returns the process and its base URL once it answers.
    pub async fn start_replica(&self) -> (Spawned, String) {
        let port = free_port();
        let dir = self.dir.path().join(format!("replica-{port}"));
        std::fs::create_dir_all(&dir).expect("replica dir");
        let text = self.config_on(port).replace(
            &self.dir.path().join("spool").display().to_string(),
            &dir.join("spool").display().to_string(),
        );
        let path = dir.join("gateway.toml");
        std::fs::write(&path, text).expect("write config");
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log");
        let mut child = Command::new(binary("tollgate"))
            .arg("--config")
            .arg(&path)
            .env("TOLLGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn replica");
        let url = format!("http://127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(r) = self.client.get(format!("{url}/healthz")).send().await {
                if r.status() == 200 {
                    return (Spawned(child), url);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "replica did not start; log: {}",
            std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default()
        );
    }

    pub async fn wait_gateway(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "gateway did not start; log: {}",
            std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
        );
    }

    /// Starts a consumer process; `extra` adds flags (e.g. small batches). Its HTTP listener gets a free port
    /// and refreshes lag every 300 ms.
    pub fn start_consumer(&mut self, extra: &[&str]) {
        self.consumer_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("consumer.log"))
            .expect("log");
        let child = Command::new(binary("tollgate-metering"))
            .args([
                "--brokers",
                &brokers(),
                "--topic",
                &self.topic,
                "--group",
                &self.group,
            ])
            .args(["--dead-letter-topic", &format!("{}.dlq", self.topic)])
            .args(["--control-topic", &format!("{}.control", self.topic)])
            .args([
                "--budget-owner-group",
                &format!("tollgate-budget-owner-{}", self.id),
                "--budget-requests-topic",
                &format!("{}.budget.requests", self.topic),
                "--budget-decisions-topic",
                &format!("{}.budget.decisions", self.topic),
            ])
            .args([
                "--clickhouse-url",
                &clickhouse_url(),
                "--database",
                &self.database,
            ])
            .args([
                "--http-addr",
                &format!("127.0.0.1:{}", self.consumer_port),
                "--lag-interval-ms",
                "300",
            ])
            .args(extra)
            .env("TOLLGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn consumer");
        self.consumer = Some(child);
    }

    pub fn kill_consumer(&mut self) {
        if let Some(mut c) = self.consumer.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(child: &mut Child) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok().and_then(|s| s.code())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway_port)
    }

    /// A URL on the running consumer's HTTP listener.
    pub fn consumer_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.consumer_port)
    }

    /// The consumer's `/metrics` text (empty while it does not answer).
    pub async fn consumer_metrics(&self) -> String {
        match self.client.get(self.consumer_url("/metrics")).send().await {
            Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Polls the consumer's `/metrics` until `done` holds for its text (or `timeout`); returns the last text.
    pub async fn wait_consumer_metrics(
        &self,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let until = Instant::now() + timeout;
        loop {
            let text = self.consumer_metrics().await;
            if done(&text) || Instant::now() >= until {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET /readyz` on the consumer: status and JSON body (`None` while it does not answer).
    pub async fn consumer_readyz(&self) -> Option<(u16, Value)> {
        let r = self
            .client
            .get(self.consumer_url("/readyz"))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.ok()?))
    }

    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.database)
    }

    /// Waits until `usage_events` has at least `n` rows (or the timeout) and returns the count.
    pub async fn wait_rows(&self, n: u64, timeout: Duration) -> u64 {
        let until = Instant::now() + timeout;
        let mut count = 0;
        while Instant::now() < until {
            if let Ok(text) = ch(&format!(
                "SELECT count() FROM {}",
                self.table("usage_events")
            ))
            .await
            {
                count = text.trim().parse().unwrap_or(0);
                if count >= n {
                    // Give a duplicate the chance to show up before the caller counts.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    return ch_u64(&format!(
                        "SELECT count() FROM {}",
                        self.table("usage_events")
                    ))
                    .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        count
    }

    /// Asserts raw rows and both aggregates agree: per tenant, requests and tokens.
    pub async fn assert_aggregates_match_raw(&self) {
        let raw = ch(&format!(
            "SELECT tenant, count(), sum(prompt_tokens), sum(completion_tokens) FROM {} GROUP BY tenant ORDER BY tenant FORMAT TSV",
            self.table("usage_events")
        ))
        .await
        .expect("raw");
        for view in ["usage_by_minute", "usage_by_day"] {
            let agg = ch(&format!(
                "SELECT tenant, sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM {} GROUP BY tenant ORDER BY tenant FORMAT TSV",
                self.table(view)
            ))
            .await
            .expect("aggregate");
            assert_eq!(agg, raw, "{view} disagrees with the raw rows");
        }
    }

    pub async fn gateway_readyz(&self) -> Value {
        self.client
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json")
    }

    pub async fn cleanup(mut self) {
        if let Some(mut g) = self.gateway.take() {
            Self::terminate(&mut g);
        }
        if let Some(mut c) = self.consumer.take() {
            Self::terminate(&mut c);
        }
        let _ = ch(&format!("DROP DATABASE IF EXISTS {}", self.database)).await;
    }
}

/// A child process killed when dropped, so a failing test leaves no replica or consumer running (a plain
/// `Child` is not). Derefs to the `Child` (e.g. for [`Pipeline::terminate`]).
pub struct Spawned(pub Child);

impl std::ops::Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for child in [self.gateway.as_mut(), self.consumer.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of the series whose line starts with `series` (name and labels exactly as exposed).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
    })
}

/// The sum of every series of a family with labels (`name{...} value`), and how many there are.
pub fn metric_sum(text: &str, name: &str) -> (f64, usize) {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold((0.0, 0), |(sum, n), v| (sum + v, n + 1))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

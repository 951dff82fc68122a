//! A gateway in-process on 127.0.0.1:0 in front of a mock upstream, with helpers to call it and to read
//! its usage store.

#![allow(dead_code)]

pub mod log_capture;
pub mod provider;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;
use tokio::sync::oneshot;
use tollgate_gateway::config::Config;
use tollgate_gateway::events::EventSink;
use tollgate_gateway::Gateway;
use tollgate_schemas::UsageEvent;
use tollgate_tests::mock_upstream::{Dialect, MockUpstream, NativeCn};

pub const KEY: &str = "tg-test-key-all-models";
/// The budget-alert signing secret tests can configure with `webhook_secret_env = "TEST_WEBHOOK_SECRET"`.
pub const WEBHOOK_SECRET: &str = "whsec-test-secret";
pub const NARROW_KEY: &str = "tg-test-key-one-model";
/// The admin key of [`admin_config`].
pub const ADMIN_KEY: &str = "tg-test-admin-key";

/// An `[admin]` section (as `extra` for [`Harness::start_with`]) whose key is [`ADMIN_KEY`].
pub fn admin_config() -> String {
    format!(
        "\n[admin]\nsha256 = \"{}\"\n",
        tollgate_gateway::auth::KeyHash::of(ADMIN_KEY).to_hex()
    )
}

pub struct Harness {
    pub mock: MockUpstream,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub sink: EventSink,
    /// The validated config the gateway runs with (its `[store] path` is the store below).
    pub config: Config,
    store: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Models every test can use; `extra` is appended (more `[providers.*]` / `[models.*]` tables).
pub fn base_config(mock: &MockUpstream, extra: &str) -> String {
    let openai = mock.base_url(Dialect::OpenAi);
    format!(
        r#"
[pricing.rates]
CNY = "0.14"

[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536

[providers.mock]
kind = "openai"
base_url = "{openai}"
api_keys = ["sk-upstream-a", "sk-upstream-b", "sk-upstream-c"]
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500

[providers.moonshot]
kind = "moonshot"
base_url = "{moonshot}"
api_keys = ["sk-moon"]

[providers.modelarts]
kind = "modelarts"
base_url = "{modelarts}"
api_keys = ["sk-maas"]

[providers.zhipu]
kind = "zhipu"
base_url = "{zhipu}"
api_keys = ["id.secret"]

[providers.zeroone]
kind = "zeroone"
base_url = "{openai}"
api_keys = ["sk-yi"]

[providers.dashscope]
kind = "dashscope"
base_url = "{openai}"
api_keys = ["sk-ds"]

[providers.dead]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"

[models."gpt-4o-mini"]
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

# The same deployment without retries: error mapping tests see exactly one upstream answer.
[models."once"]
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]
max_attempts = 1

[models."kimi"]
deployments = [{{ provider = "moonshot", model = "kimi-k2" }}]

[models."pangu"]
deployments = [{{ provider = "modelarts", model = "deepseek-v3" }}]

[models."glm"]
deployments = [{{ provider = "zhipu", model = "glm-4" }}]

[models."yi"]
deployments = [{{ provider = "zeroone", model = "yi-large" }}]

[models."qwen"]
deployments = [{{ provider = "dashscope", model = "qwen-plus" }}]

[models."unreachable"]
deployments = [{{ provider = "dead", model = "x" }}]

[models."embed"]
deployments = [{{ provider = "mock", model = "text-embedding-3-small" }}]

[keys.all]
tenant = "acme"
team = "search"
key_env = "TEST_KEY_ALL"
models = ["*"]

[keys.narrow]
tenant = "globex"
team = "ops"
sha256 = "{narrow_hash}"
models = ["gpt-4o-mini"]
{extra}
"#,
        moonshot = mock.base_url(Dialect::Moonshot),
        modelarts = mock.base_url(Dialect::ModelArts),
        zhipu = mock.base_url(Dialect::Zhipu),
        narrow_hash = tollgate_gateway::auth::KeyHash::of(NARROW_KEY).to_hex(),
    )
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    pub async fn start_with(extra: &str) -> Self {
        log_capture::install();
        let mock = MockUpstream::start().await.expect("mock upstream");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("usage.db");
        let extra = extra
            .replace("{mock_openai}", &mock.base_url(Dialect::OpenAi))
            .replace("{mock_anthropic}", &mock.base_url(Dialect::Anthropic))
            .replace("{mock_moonshot}", &mock.base_url(Dialect::Moonshot))
            .replace("{mock_modelarts}", &mock.base_url(Dialect::ModelArts))
            .replace("{mock_zhipu}", &mock.base_url(Dialect::Zhipu))
            .replace("{mock_azure}", &mock.azure_url())
            .replace("{mock_bedrock}", &mock.bedrock_url())
            .replace("{mock_gemini}", &mock.base_url(Dialect::Gemini))
            .replace("{mock_vertex}", &mock.base_url(Dialect::Vertex))
            .replace("{mock_token_url}", &mock.token_url())
            .replace(
                "{fixtures}",
                concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"),
            )
            .replace("{mock_hunyuan}", &mock.native_base_url(NativeCn::Hunyuan))
            .replace("{mock_qianfan}", &mock.native_base_url(NativeCn::Qianfan))
            .replace(
                "{mock_dashscope}",
                &mock.native_base_url(NativeCn::DashScope),
            );
        let text = format!(
            "{}\n",
            base_config(&mock, &extra).replace(
                "[server]",
                &format!(
                    "[store]\npath = {:?}\n\n[server]",
                    store.display().to_string()
                )
            )
        );
        let env = |name: &str| match name {
            "TEST_KEY_ALL" => Some(KEY.to_string()),
            "TEST_WEBHOOK_SECRET" => Some(WEBHOOK_SECRET.to_string()),
            // The mock's Tencent SecretKey of `AKIDmockTollgateA` (native_cn tests: keys from the environment).
            "TEST_TC3_SECRET_A" => Some("tc3-mock-secret-key-a".to_string()),
            _ => None,
        };
        let config = Config::from_toml(&text, &env).unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let gateway = Gateway::try_new(&config).expect("gateway");
        let sink = gateway.sink();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            gateway
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        Self {
            mock,
            addr,
            client: reqwest::Client::new(),
            sink,
            config,
            store,
            _dir: dir,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST JSON with the all-models key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// GET with the admin key ([`ADMIN_KEY`]).
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("request")
    }

    /// The path of the embedded usage store.
    pub fn store_path(&self) -> &std::path::Path {
        &self.store
    }

    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    /// A chat completion whose body is these bytes, sent as they are (JSON content type, all-models key).
    pub async fn chat_raw(&self, raw: &'static str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("request")
    }

    /// Every usage event stored so far, oldest first (flushes the sink first).
    pub async fn events(&self) -> Vec<UsageEvent> {
        self.sink.flush().await;
        let conn = rusqlite::Connection::open(&self.store).expect("open store");
        tollgate_gateway::events::embedded::read_all(&conn).expect("read events")
    }

    /// Waits (bounded) until at least `n` events are stored and returns them.
    pub async fn wait_events(&self, n: usize) -> Vec<UsageEvent> {
        let mut events = Vec::new();
        for _ in 0..100 {
            events = self.events().await;
            if events.len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        events
    }

    /// The one event with this request id.
    pub async fn event(&self, request_id: &str) -> UsageEvent {
        let events = self.events().await;
        let matching: Vec<_> = events
            .into_iter()
            .filter(|e| e.event_id.to_string() == request_id)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "expected exactly one event for {request_id}"
        );
        matching.into_iter().next().expect("one")
    }

    /// Waits (bounded) until an event with this id is stored: streamed requests finish after the response.
    pub async fn wait_event(&self, request_id: &str) -> UsageEvent {
        for _ in 0..100 {
            let events = self.events().await;
            if let Some(e) = events
                .into_iter()
                .find(|e| e.event_id.to_string() == request_id)
            {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no usage event for {request_id}");
    }

    /// Stops the server gracefully, waits for it, and hands back the store (path + its directory guard).
    pub async fn stop(mut self) -> (PathBuf, tempfile::TempDir) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
        let Harness { store, _dir, .. } = self;
        (store, _dir)
    }
}

pub fn request_id(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .expect("ascii")
        .to_string()
}

/// An SSE body → its `data:` payloads.
pub fn sse_payloads(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

pub fn user(text: &str) -> Value {
    serde_json::json!([{"role": "user", "content": text}])
}

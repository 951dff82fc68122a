//! A mock LLM upstream with scripted replies and fault injection.
//!
//! **Dialects** are chosen by path prefix, as real providers differ by host: `/v1/…` or `/openai/v1/…`
//! (OpenAI: stream usage only with `stream_options.include_usage`), `/moonshot/v1/…` (usage inside
//! `choices[0]` of the last chunk, top-level `cached_tokens`), `/modelarts/v1/…` (cumulative usage in every
//! chunk), `/zhipu/v1/…` (usage in the last content chunk, unasked), `/anthropic/v1/messages` (the
//! Anthropic Messages API, see [`anthropic`]), `/azure/openai/…` (Azure OpenAI, see [`azure`]),
//! `/bedrock/model/{id}/converse[-stream]` (Bedrock Converse with SigV4 verification, see [`bedrock`]),
//! `/gemini/v1beta/models/{model}:generateContent` and `:batchEmbedContents` (the Gemini API) and
//! `/vertex/v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{model}:…` (Vertex AI, with its
//! OAuth token endpoint at `/oauth2/token`, embeddings at `publishers/google/models/{model}:predict`; see
//! [`gemini`]); Bedrock's embeddings are `/bedrock/model/{id}/invoke` (Titan, Cohere). The native Chinese APIs (Tencent Hunyuan API 3.0
//! at `/hunyuan/`, Baidu Qianfan v1 under `/qianfan/…` with its token endpoint at `/oauth/2.0/token`,
//! DashScope native under `/dashscope/api/v1/…`) are in [`native_cn`]; their base URLs come from
//! [`MockUpstream::native_base_url`].
//!
//! **Directives** script one request. They are read from the upstream `model` (`gpt?status=429&retry_after=2`)
//! and from a `[mock:k=v&k=v]` tag anywhere in the messages (so a test can script a request through the
//! gateway without new config); the tag wins. Gemini and Vertex take the model from the URL path. See
//! [`Directives`] for the list.
//!
//! Every request is recorded (path, headers, body) for assertions: in-process through
//! [`MockUpstream::requests`], and over HTTP at `GET /__mock/requests` (`DELETE` clears).

pub mod anthropic;
mod azure;
pub mod bedrock;
mod directives;
pub mod gemini;
pub mod native_cn;
mod reply;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;

pub use directives::Directives;
pub use native_cn::NativeCn;
pub use reply::fake_vector;

/// The wire dialect a path prefix selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Moonshot,
    ModelArts,
    Zhipu,
    Anthropic,
    Gemini,
    Vertex,
}

impl Dialect {
    fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "openai" => Self::OpenAi,
            "moonshot" => Self::Moonshot,
            "modelarts" => Self::ModelArts,
            "zhipu" => Self::Zhipu,
            "anthropic" => Self::Anthropic,
            "gemini" => Self::Gemini,
            "vertex" => Self::Vertex,
            _ => return None,
        })
    }

    /// The path prefix (before `/v1`) that selects this dialect.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Moonshot => "moonshot",
            Self::ModelArts => "modelarts",
            Self::Zhipu => "zhipu",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Vertex => "vertex",
        }
    }
}

/// One request as the mock received it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// The body exactly as received.
    pub raw: String,
}

impl RecordedRequest {
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct MockState {
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
    /// Requests seen per `only_key` target, for `every=N`.
    targeted: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    /// The OAuth server of the Vertex dialect.
    tokens: gemini::Tokens,
    /// Access tokens the Qianfan token endpoint issued.
    qianfan_tokens: Arc<native_cn::Tokens>,
}

impl MockState {
    /// Whether this request gets the script's faults (`only_key` / `every`).
    fn faults_apply(&self, d: &Directives, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .or_else(|| headers.get("api-key").and_then(|v| v.to_str().ok()))
            .or_else(|| headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()))
            .or_else(|| bedrock::access_key_id(headers));
        self.faults_apply_to(d, bearer)
    }

    /// The directives of a request (`normal`: model and messages in OpenAI's shape) made with the key
    /// `identity`, without their faults if `only_key` / `every` exempt it.
    fn directives_for(&self, normal: &Value, identity: Option<&str>) -> Directives {
        let d = Directives::of(normal);
        if self.faults_apply_to(&d, identity) {
            d
        } else {
            d.without_faults()
        }
    }

    /// Whether a request made with the key `identity` gets the script's faults.
    fn faults_apply_to(&self, d: &Directives, identity: Option<&str>) -> bool {
        let Some(key) = &d.only_key else { return true };
        if identity != Some(key.as_str()) {
            return false;
        }
        let Some(every) = d.every else { return true };
        let Ok(mut seen) = self.targeted.lock() else {
            return true;
        };
        let n = seen.entry(key.clone()).or_insert(0);
        *n += 1;
        (*n - 1) % every == 0
    }
}

/// A running mock upstream on 127.0.0.1.
pub struct MockUpstream {
    pub addr: SocketAddr,
    state: MockState,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    /// Starts on an ephemeral port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await?).await
    }

    /// Starts on `listener`.
    ///
    /// # Errors
    /// When the listener has no local address.
    pub async fn start_on(listener: TcpListener) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let state = MockState::default();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Base URL for a provider of `dialect`: ending in `/v1`, Gemini's in `/v1beta`, Vertex's the host root
    /// (the gateway appends `/v1/projects/…`).
    #[must_use]
    pub fn base_url(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Gemini => format!("http://{}/gemini/v1beta", self.addr),
            Dialect::Vertex => format!("http://{}/vertex", self.addr),
            _ => format!("http://{}/{}/v1", self.addr, dialect.prefix()),
        }
    }

    /// The OAuth token endpoint (JWT-bearer grant) Vertex providers are pointed at.
    #[must_use]
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }

    /// Access tokens handed out so far.
    #[must_use]
    pub fn token_fetches(&self) -> u64 {
        self.state.tokens.fetches()
    }

    /// Invalidates every access token handed out (their next use answers 401).
    pub fn revoke_tokens(&self) {
        self.state.tokens.revoke_all();
    }

    /// Base URL for an `azure`-kind provider (the resource endpoint).
    #[must_use]
    pub fn azure_url(&self) -> String {
        format!("http://{}/azure", self.addr)
    }

    /// Base URL for a `bedrock`-kind provider.
    #[must_use]
    pub fn bedrock_url(&self) -> String {
        format!("http://{}/bedrock", self.addr)
    }

    /// Base URL of a provider of a native Chinese `kind` (`hunyuan-native`, `qianfan-v1`, `dashscope-native`).
    #[must_use]
    pub fn native_base_url(&self, dialect: NativeCn) -> String {
        format!("http://{}{}", self.addr, dialect.base_path())
    }

    /// Token requests the Qianfan token endpoint has answered (issued or refused).
    #[must_use]
    pub fn qianfan_token_fetches(&self) -> u64 {
        self.state.qianfan_tokens.fetches()
    }

    /// Every access token the Qianfan token endpoint issued.
    #[must_use]
    pub fn qianfan_tokens(&self) -> Vec<String> {
        self.state.qianfan_tokens.all()
    }

    /// Expires every issued Qianfan token: the next chat call with one gets error 111.
    pub fn expire_qianfan_tokens(&self) {
        self.state.qianfan_tokens.expire();
    }

    /// Everything received so far.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .recorded
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(state: MockState) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|s, h, b| chat(s, "openai".into(), h, b)),
        )
        .route(
            "/v1/embeddings",
            post(|s, h, b| embeddings(s, "openai".into(), h, b)),
        )
        .route(
            "/{dialect}/v1/chat/completions",
            post(|s, Path(d): Path<String>, h, b| chat(s, d, h, b)),
        )
        .route(
            "/{dialect}/v1/embeddings",
            post(|s, Path(d): Path<String>, h, b| embeddings(s, d, h, b)),
        )
        .route(
            "/{dialect}/v1/messages",
            post(|s, Path(d): Path<String>, h, b| messages(s, d, h, b)),
        )
        .route("/gemini/v1beta/models/{target}", post(gemini_api))
        .route(
            "/vertex/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}",
            post(vertex_api),
        )
        .route("/oauth2/token", post(oauth_token))
        .route("/__mock/oauth2/revoke", post(revoke_tokens))
        .route("/__mock/oauth2/stats", get(token_stats))
        .route(
            "/azure/openai/deployments/{deployment}/{*operation}",
            post(azure::deployment),
        )
        .route("/azure/openai/v1/{*operation}", post(azure::v1))
        .route("/bedrock/model/{model}/{operation}", post(bedrock::handle))
        .route(
            "/hunyuan/",
            post(
                |State(s): State<MockState>, h: HeaderMap, b: Bytes| async move {
                    native_cn::hunyuan(&s, &h, &b).await
                },
            ),
        )
        .route(
            "/qianfan/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{endpoint}",
            post(
                |State(s): State<MockState>,
                 Path(endpoint): Path<String>,
                 RawQuery(q): RawQuery,
                 h: HeaderMap,
                 b: Bytes| async move {
                    native_cn::qianfan(&s, &endpoint, &q.unwrap_or_default(), &h, &b).await
                },
            ),
        )
        .route(
            "/oauth/2.0/token",
            post(
                |State(s): State<MockState>, RawQuery(q): RawQuery| async move {
                    native_cn::token(&s, &q.unwrap_or_default())
                },
            ),
        )
        .route(
            "/dashscope/api/v1/services/aigc/text-generation/generation",
            post(
                |State(s): State<MockState>, h: HeaderMap, b: Bytes| async move {
                    native_cn::dashscope(&s, &h, &b).await
                },
            ),
        )
        .route(
            "/__mock/qianfan/expire",
            post(|State(s): State<MockState>| async move {
                s.qianfan_tokens.expire();
                axum::http::StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/__mock/requests",
            get(list_requests).delete(clear_requests),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn record(state: &MockState, path: String, headers: &HeaderMap, body: Value, raw: &[u8]) {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    if let Ok(mut r) = state.recorded.lock() {
        r.push(RecordedRequest {
            path,
            headers,
            body,
            raw: String::from_utf8_lossy(raw).into_owned(),
        });
    }
}

async fn messages(
    State(state): State<MockState>,
    dialect: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if dialect != Dialect::Anthropic.prefix() {
        return reply::not_found(&dialect);
    }
    answer(&state, Api::Messages, &dialect, &headers, &body).await
}

#[derive(Clone, Copy)]
enum Api {
    Messages,
    Chat,
    Embeddings,
}

async fn chat(
    State(state): State<MockState>,
    dialect: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&state, Api::Chat, &dialect, &headers, &body).await
}

async fn embeddings(
    State(state): State<MockState>,
    dialect: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&state, Api::Embeddings, &dialect, &headers, &body).await
}

/// Records the request, then answers it as its directives say.
async fn answer(
    state: &MockState,
    api: Api,
    dialect: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(dialect) = Dialect::from_prefix(dialect) else {
        return reply::not_found(dialect);
    };
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return reply::bad_json();
    };
    let path = match api {
        Api::Messages => "messages",
        Api::Chat => "chat/completions",
        Api::Embeddings => "embeddings",
    };
    record(
        state,
        format!("/{}/v1/{path}", dialect.prefix()),
        headers,
        json.clone(),
        body,
    );
    let mut directives = Directives::of(&json);
    if !state.faults_apply(&directives, headers) {
        directives = directives.without_faults();
    }
    match api {
        Api::Messages => anthropic::messages(Some(headers), &json, directives).await,
        Api::Chat
            if matches!(
                dialect,
                Dialect::Anthropic | Dialect::Gemini | Dialect::Vertex
            ) =>
        {
            reply::not_found("chat/completions of a native dialect")
        }
        Api::Chat => reply::chat(dialect, &json, directives).await,
        Api::Embeddings => reply::embeddings(&json, directives).await,
    }
}

/// `model:method` → (model, streaming), for the Gemini methods.
fn gemini_method(target: &str, plain: &str, stream: &str) -> Option<(String, bool)> {
    let (model, method) = target.rsplit_once(':')?;
    (method == plain || method == stream).then(|| (model.to_string(), method == stream))
}

/// Directives of a request whose model is in its URL: the path's model query, then the body's tags.
fn path_directives(
    state: &MockState,
    model: &str,
    json: &Value,
    headers: &HeaderMap,
) -> Directives {
    let mut probe = json.clone();
    if let Some(o) = probe.as_object_mut() {
        o.insert("model".into(), Value::String(model.into()));
    }
    let directives = Directives::of(&probe);
    if state.faults_apply(&directives, headers) {
        directives
    } else {
        directives.without_faults()
    }
}

fn recorded_path(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

async fn gemini_api(
    State(state): State<MockState>,
    Path(target): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let embed = target
        .rsplit_once(':')
        .filter(|(_, method)| *method == "batchEmbedContents")
        .map(|(model, _)| model.to_string());
    let Some((model, stream)) = embed
        .clone()
        .map(|m| (m, false))
        .or_else(|| gemini_method(&target, "generateContent", "streamGenerateContent"))
    else {
        return reply::not_found(&target);
    };
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return gemini::error(400, &Directives::default());
    };
    let path = format!("/gemini/v1beta/models/{target}");
    record(
        &state,
        recorded_path(&path, query.as_deref()),
        &headers,
        json.clone(),
        &body,
    );
    if let Some(refused) = gemini::check_key(&headers) {
        return refused;
    }
    let sse = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
    let directives = path_directives(&state, &model, &json, &headers);
    if embed.is_some() {
        return gemini::batch_embed(&model, &json, directives).await;
    }
    gemini::generate(&model, stream, sse, false, &json, directives).await
}

async fn vertex_api(
    State(state): State<MockState>,
    Path((project, location, publisher, target)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return gemini::error(400, &Directives::default());
    };
    let path = format!(
        "/vertex/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}"
    );
    record(
        &state,
        recorded_path(&path, query.as_deref()),
        &headers,
        json.clone(),
        &body,
    );
    if let Some(refused) = gemini::check_bearer(&headers, &state.tokens) {
        return refused;
    }
    match publisher.as_str() {
        "google" if target.ends_with(":predict") => {
            let model = target.trim_end_matches(":predict");
            let directives = path_directives(&state, model, &json, &headers);
            gemini::predict(model, &json, directives).await
        }
        "google" => {
            let Some((model, stream)) =
                gemini_method(&target, "generateContent", "streamGenerateContent")
            else {
                return reply::not_found(&target);
            };
            let sse = query
                .as_deref()
                .is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
            let directives = path_directives(&state, &model, &json, &headers);
            gemini::generate(&model, stream, sse, true, &json, directives).await
        }
        "anthropic" => {
            let Some((model, stream)) = gemini_method(&target, "rawPredict", "streamRawPredict")
            else {
                return reply::not_found(&target);
            };
            if json.get("anthropic_version").and_then(Value::as_str) != Some("vertex-2023-10-16") {
                return anthropic::error(
                    400,
                    &Directives {
                        message: Some("anthropic_version: vertex-2023-10-16 is required".into()),
                        ..Directives::default()
                    },
                );
            }
            if json.get("model").is_some() {
                return anthropic::error(
                    400,
                    &Directives {
                        message: Some("model: Extra inputs are not permitted".into()),
                        ..Directives::default()
                    },
                );
            }
            if (json.get("stream") == Some(&Value::Bool(true))) != stream {
                return anthropic::error(
                    400,
                    &Directives {
                        message: Some("stream must match the method (streamRawPredict)".into()),
                        ..Directives::default()
                    },
                );
            }
            let directives = path_directives(&state, &model, &json, &headers);
            anthropic::messages(None, &json, directives).await
        }
        other => reply::not_found(other),
    }
}

async fn oauth_token(
    State(state): State<MockState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    gemini::token(&state.tokens, query.as_deref(), &body)
}

async fn revoke_tokens(State(state): State<MockState>) -> Response {
    state.tokens.revoke_all();
    axum::http::StatusCode::NO_CONTENT.into_response()
}

async fn token_stats(State(state): State<MockState>) -> Response {
    axum::Json(serde_json::json!({"fetches": state.tokens.fetches()})).into_response()
}

async fn list_requests(State(state): State<MockState>) -> Response {
    let recorded = state.recorded.lock().map(|r| r.clone()).unwrap_or_default();
    axum::Json(recorded).into_response()
}

async fn clear_requests(State(state): State<MockState>) -> Response {
    if let Ok(mut r) = state.recorded.lock() {
        r.clear();
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

//! The Gemini dialects of the mock: the Gemini API (`POST /gemini/v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`, key in `x-goog-api-key`), Vertex AI
//! (`POST /vertex/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:…` and
//! `…/publishers/anthropic/models/{model}:rawPredict|:streamRawPredict`, `Authorization: Bearer` with a token
//! from the mock's own OAuth endpoint), and that endpoint (`POST /oauth2/token`, JWT-bearer grant).
//! Shapes follow the recorded fixtures in `fixtures/gemini`.
//!
//! Checks, as the real APIs refuse: a missing key (403 `PERMISSION_DENIED`), a key starting with `invalid`
//! (the fixture's 400 `API_KEY_INVALID`), a bearer token this mock did not issue, that expired or was revoked
//! (401 `UNAUTHENTICATED`); unknown top-level fields (400 "Unknown name", e.g. a leaked OpenAI `messages`);
//! `contents` required, roles `user` / `model` only, no empty `parts`; a `functionResponse` only after a
//! model turn calling that function; with thinking on, every `functionCall` sent back must carry its
//! `thoughtSignature` (400, as Gemini 2.5+); streams only with `alt=sse`. Claude on Vertex: the body must
//! have `anthropic_version: vertex-2023-10-16` and no `model`, then it is the Anthropic dialect.
//!
//! Answers: text `tok0 tok1 …` (`chunks`), a `functionCall` of the first declared function
//! (`{"city":"Paris"}`) when the request has tools, `toolConfig` mode is not `NONE` and the last turn is no
//! function response; a thought part (and `thoughtSignature` [`SIGNATURE`] on calls) when thinking is on
//! (`thinkingConfig.includeThoughts`, or `reasoning_tokens`). Usage: `promptTokenCount` (= `prompt_tokens`,
//! cached included), `cachedContentTokenCount` (`cached_tokens`), `candidatesTokenCount`
//! (`completion_tokens`, default `chunks`), `thoughtsTokenCount` (`reasoning_tokens`), cumulative on every
//! stream event. Faults: `status` (+ `retry_after=S` → `RetryInfo.retryDelay` "Ss", no header; `code=PerDay`
//! → a daily `QuotaFailure`), `cut_after`, `reset_after`, `error_after` (Gemini: a `data:` error event;
//! Vertex: a bare JSON error body, as the fixture shows), `fixture=googleai/NAME` / `vertexai/NAME` (a
//! stream replays `NAME.txt`, a plain request answers `NAME.json`; an error body is sent with its code).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Directives;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/gemini/mock-responses"
);
/// The `thoughtSignature` the mock puts on function calls when thinking is on.
pub const SIGNATURE: &str = "c2lnLW1vY2stZ2VtaW5p";
const THOUGHT: &str = "Mock thoughts about the question.";
const TOP_LEVEL: [&str; 13] = [
    "model",
    "contents",
    "systemInstruction",
    "system_instruction",
    "tools",
    "toolConfig",
    "tool_config",
    "generationConfig",
    "generation_config",
    "safetySettings",
    "safety_settings",
    "cachedContent",
    "labels",
];

/// The mock's OAuth server: tokens it issued (value → expiry) and how many were fetched.
#[derive(Default, Clone)]
pub struct Tokens {
    issued: Arc<Mutex<HashMap<String, Instant>>>,
    fetches: Arc<Mutex<u64>>,
}

impl Tokens {
    #[must_use]
    pub fn fetches(&self) -> u64 {
        self.fetches.lock().map(|n| *n).unwrap_or(0)
    }

    /// Makes every issued token invalid (the next use answers 401).
    pub fn revoke_all(&self) {
        if let Ok(mut issued) = self.issued.lock() {
            issued.clear();
        }
    }

    fn valid(&self, token: &str) -> bool {
        self.issued
            .lock()
            .map(|i| i.get(token).is_some_and(|until| Instant::now() < *until))
            .unwrap_or(false)
    }
}

/// Google's status name for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn google_body(status: u16, message: &str, details: Value) -> Value {
    let mut error = json!({"code": status, "message": message, "status": status_name(status)});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    json!({ "error": error })
}

fn respond(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body.clone())).into_response()
}

/// The error a `status=N` directive asks for.
pub fn error(status: u16, d: &Directives) -> Response {
    let message = d
        .message
        .clone()
        .unwrap_or_else(|| format!("mock gemini error {status}"));
    let mut details = Vec::new();
    if status == 429 {
        let quota = if d.code.as_deref() == Some("PerDay") {
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
        } else {
            "GenerateRequestsPerMinutePerProjectPerModel"
        };
        details.push(json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
            {"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests", "quotaId": quota}]}));
        if let Some(delay) = &d.retry_after {
            details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{delay}s")}));
        }
    }
    respond(
        status,
        &google_body(status, &message, Value::Array(details)),
    )
}

fn invalid(message: String) -> Response {
    respond(400, &google_body(400, &message, Value::Null))
}

/// Gemini API key check: `x-goog-api-key` present and not `invalid…`.
pub fn check_key(headers: &HeaderMap) -> Option<Response> {
    match headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
        None => Some(respond(403, &google_body(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", Value::Null))),
        Some(k) if k.starts_with("invalid") => {
            let body = std::fs::read(format!("{FIXTURES}/googleai/unary-failure-api-key.json")).ok()?;
            let body: Value = serde_json::from_slice(&body).ok()?;
            Some(respond(400, &body))
        }
        Some(_) => None,
    }
}

/// Vertex check: a live bearer token from this mock's OAuth endpoint.
pub fn check_bearer(headers: &HeaderMap, tokens: &Tokens) -> Option<Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_some_and(|t| tokens.valid(t)) {
        return None;
    }
    Some(respond(401, &google_body(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", Value::Null)))
}

fn thinking_on(req: &Value, d: &Directives) -> bool {
    let config = req
        .get("generationConfig")
        .or_else(|| req.get("generation_config"));
    let include = config
        .and_then(|c| c.get("thinkingConfig").or_else(|| c.get("thinking_config")))
        .and_then(|t| {
            t.get("includeThoughts")
                .or_else(|| t.get("include_thoughts"))
        })
        .and_then(Value::as_bool);
    include == Some(true) || d.reasoning_tokens.is_some()
}

/// What the real API would refuse, as its 400.
fn check(req: &Value, d: &Directives) -> Option<Response> {
    let Some(obj) = req.as_object() else {
        return Some(invalid("Invalid JSON payload received.".into()));
    };
    if let Some(unknown) = obj.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Some(invalid(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        )));
    }
    let Some(contents) = req.get("contents").and_then(Value::as_array) else {
        return Some(invalid(
            "* GenerateContentRequest.contents: contents is not specified\n".into(),
        ));
    };
    let thinking = thinking_on(req, d);
    let mut previous_calls: Vec<String> = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        if role != "user" && role != "model" {
            return Some(invalid(format!(
                "Please use a valid role: user, model. (contents[{i}].role {role:?})"
            )));
        }
        let parts = c
            .get("parts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if parts.is_empty() {
            return Some(invalid(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )));
        }
        let mut calls = Vec::new();
        for p in &parts {
            if let Some(call) = p.get("functionCall") {
                if thinking && p.get("thoughtSignature").is_none() {
                    return Some(invalid(format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{}` , position {}.", call.get("name").and_then(Value::as_str).unwrap_or(""), i + 1)));
                }
                calls.push(
                    call.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                );
            }
            if let Some(result) = p.get("functionResponse") {
                let name = result.get("name").and_then(Value::as_str).unwrap_or("");
                if role != "user" || !previous_calls.iter().any(|c| c == name) {
                    return Some(invalid(format!("Please ensure that function response turn comes immediately after a function call turn. (contents[{i}] answers {name:?})")));
                }
                if !result.get("response").is_some_and(Value::is_object) {
                    return Some(invalid(format!(
                        "* GenerateContentRequest.contents[{i}].parts.function_response.response: must be an object"
                    )));
                }
            }
        }
        previous_calls = calls;
    }
    None
}

fn words(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(a) => a.iter().map(words).sum(),
        Value::Object(o) => o.get("parts").or_else(|| o.get("text")).map_or(0, words),
        _ => 0,
    }
}

struct Plan {
    model: String,
    chunks: u64,
    prompt: u64,
    cached: u64,
    candidates: u64,
    thoughts: Option<u64>,
    tool: Option<String>,
}

impl Plan {
    fn of(model: &str, req: &Value, d: &Directives) -> Self {
        let chunks = d.chunks.unwrap_or(4);
        let contents = req.get("contents").cloned().unwrap_or(Value::Null);
        let last_is_result = contents
            .as_array()
            .and_then(|c| c.last())
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|p| p.get("functionResponse").is_some()));
        let mode = req
            .pointer("/toolConfig/functionCallingConfig/mode")
            .and_then(Value::as_str);
        let tool = (!last_is_result && mode != Some("NONE"))
            .then(|| {
                req.get("tools")?
                    .as_array()?
                    .iter()
                    .find_map(|t| t.get("functionDeclarations")?.as_array()?.first())?
                    .get("name")?
                    .as_str()
                    .map(str::to_string)
            })
            .flatten();
        Self {
            model: model.split('?').next().unwrap_or(model).to_string(),
            chunks,
            prompt: d.prompt_tokens.unwrap_or_else(|| words(&contents) + 3),
            cached: d.cached_tokens.unwrap_or(0),
            candidates: d.completion_tokens.unwrap_or(chunks),
            thoughts: d.reasoning_tokens.or(thinking_on(req, d).then_some(5)),
            tool,
        }
    }

    fn usage(&self, candidates: Option<u64>) -> Value {
        let mut u = json!({"promptTokenCount": self.prompt});
        let mut total = self.prompt;
        if let Some(c) = candidates {
            u["candidatesTokenCount"] = json!(c);
            total += c;
        }
        if let Some(t) = self.thoughts {
            u["thoughtsTokenCount"] = json!(t);
            total += t;
        }
        if self.cached > 0 {
            u["cachedContentTokenCount"] = json!(self.cached);
        }
        u["totalTokenCount"] = json!(total);
        u
    }

    fn call_part(&self, name: &str) -> Value {
        let mut part = json!({"functionCall": {"name": name, "args": {"city": "Paris"}}});
        if self.thoughts.is_some() {
            part["thoughtSignature"] = json!(SIGNATURE);
        }
        part
    }

    fn event(&self, parts: Value, finish: Option<&str>, usage: Value) -> Value {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model,
            "responseId": "mock-response-1"})
    }
}

/// Answers one `generateContent` / `streamGenerateContent` request (auth already checked).
pub async fn generate(
    model: &str,
    stream: bool,
    sse: bool,
    vertex: bool,
    req: &Value,
    d: Directives,
) -> Response {
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(refused) = check(req, &d) {
        return refused;
    }
    if let Some(status) = d.status {
        return error(status, &d);
    }
    if stream && !sse {
        return invalid("this mock streams only with alt=sse".into());
    }
    let plan = Plan::of(model, req, &d);
    if stream {
        return open_stream(plan, d, vertex);
    }
    if let Some(name) = &d.fixture {
        return match read_fixture(name, "json").await {
            Some(bytes) => fixture_answer(bytes),
            None => invalid(format!("no fixture {name}")),
        };
    }
    let mut parts = Vec::new();
    if plan.thoughts.is_some() {
        parts.push(json!({"text": THOUGHT, "thought": true}));
    }
    match &plan.tool {
        Some(name) => parts.push(plan.call_part(name)),
        None => {
            let text: String = (0..plan.chunks).map(|i| format!("tok{i} ")).collect();
            parts.push(json!({ "text": text }));
        }
    }
    axum::Json(plan.event(
        Value::Array(parts),
        Some("STOP"),
        plan.usage(Some(plan.candidates)),
    ))
    .into_response()
}

async fn read_fixture(name: &str, ext: &str) -> Option<Vec<u8>> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/')
        && !name.contains("..");
    if !ok {
        return None;
    }
    tokio::fs::read(format!("{FIXTURES}/{name}.{ext}"))
        .await
        .ok()
}

/// A fixture body: an error body goes out with its own code.
fn fixture_answer(bytes: Vec<u8>) -> Response {
    let status = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.pointer("/error/code").and_then(Value::as_u64))
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(200);
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .unwrap_or_default()
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn send(tx: &Tx, bytes: Bytes) -> Result<(), ()> {
    tx.send(Ok(bytes)).await.map_err(|_| ())
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\r\n\r\n"))
}

fn open_stream(plan: Plan, d: Directives, vertex: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let _ = match d.fixture.clone() {
            Some(name) => replay(&name, &d, &tx).await,
            None => write(&plan, &d, vertex, &tx).await,
        };
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default()
}

async fn replay(name: &str, d: &Directives, tx: &Tx) -> Result<(), ()> {
    let bytes = read_fixture(name, "txt").await.ok_or(())?;
    for piece in bytes.chunks(97) {
        send(tx, Bytes::copy_from_slice(piece)).await?;
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(())
}

async fn write(plan: &Plan, d: &Directives, vertex: bool, tx: &Tx) -> Result<(), ()> {
    if d.reset_after == Some(0) {
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        return Ok(());
    }
    if plan.thoughts.is_some() {
        let thought = json!([{"text": THOUGHT, "thought": true}]);
        send(tx, sse(&plan.event(thought, None, plan.usage(None)))).await?;
    }
    if let Some(name) = &plan.tool {
        let call = json!([plan.call_part(name)]);
        let usage = plan.usage(Some(plan.candidates));
        return send(tx, sse(&plan.event(call, Some("STOP"), usage))).await;
    }
    for i in 0..plan.chunks {
        if d.cut_after == Some(i) {
            return Ok(());
        }
        if d.reset_after == Some(i) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
            return Ok(());
        }
        if d.error_after == Some(i) {
            let error = google_body(
                503,
                "The model is overloaded. Please try again later.",
                Value::Null,
            );
            let bytes = if vertex {
                // Vertex writes the error body bare into the stream (fixture streaming-failure-error-mid-stream).
                Bytes::from(serde_json::to_string_pretty(&error).unwrap_or_default() + "\n")
            } else {
                sse(&error)
            };
            return send(tx, bytes).await;
        }
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
        let last = i + 1 == plan.chunks;
        let text = json!([{"text": format!("tok{i} ")}]);
        let usage = plan.usage(last.then_some(plan.candidates));
        send(tx, sse(&plan.event(text, last.then_some("STOP"), usage))).await?;
    }
    Ok(())
}

/// `POST /oauth2/token`: the JWT-bearer grant. Query `expires_in=S` sets the lifetime (default 3600),
/// `fail=N` answers `N` with an OAuth error.
pub fn token(tokens: &Tokens, query: Option<&str>, form: &[u8]) -> Response {
    let q: HashMap<String, String> = query
        .map(|q| {
            q.split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(mut n) = tokens.fetches.lock() {
        *n += 1;
    }
    let oauth_error = |status: u16, error: &str, description: &str| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if let Some(status) = q.get("fail").and_then(|s| s.parse::<u16>().ok()) {
        return oauth_error(status, "invalid_grant", "Invalid JWT Signature.");
    }
    let form: HashMap<String, String> = String::from_utf8_lossy(form)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%3a", ":")))
        .collect();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(400, "unsupported_grant_type", "Invalid grant_type");
    }
    // The assertion: RS256 header, Google's claims (the signature itself is cross-checked elsewhere).
    let claims = form.get("assertion").and_then(|a| {
        let parts: Vec<&str> = a.split('.').collect();
        let [header, claims, signature] = parts.as_slice() else {
            return None;
        };
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        (header["alg"] == "RS256" && !signature.is_empty()).then_some(claims)
    });
    let valid = claims.is_some_and(|c| {
        c["iss"].is_string()
            && c["scope"]
                .as_str()
                .is_some_and(|s| s.contains("cloud-platform"))
            && c["aud"].is_string()
            && c["exp"].as_u64() > c["iat"].as_u64()
    });
    if !valid {
        return oauth_error(400, "invalid_grant", "Invalid JWT: bad claims.");
    }
    let expires_in: u64 = q
        .get("expires_in")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    let value = format!("ya29.mock-{}", tokens.fetches());
    if let Ok(mut issued) = tokens.issued.lock() {
        issued.insert(
            value.clone(),
            Instant::now() + Duration::from_secs(expires_in),
        );
    }
    axum::Json(json!({"access_token": value, "expires_in": expires_in, "token_type": "Bearer"}))
        .into_response()
}

// ---- embeddings -------------------------------------------------------------------------------------------

/// Texts the real `batchEmbedContents` takes per call.
const BATCH_LIMIT: usize = 100;
/// Instances a Vertex `:predict` call of the text-embedding models takes.
const PREDICT_LIMIT: usize = 250;
/// The mock's vector size when the request sets none (the real models: 3072 / 768).
const DEFAULT_DIMS: usize = 8;

fn dims_of(v: Option<&Value>) -> Result<usize, String> {
    match v {
        None => Ok(DEFAULT_DIMS),
        Some(d) => d
            .as_u64()
            .filter(|d| (1..=3072).contains(d))
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| format!("Invalid value for outputDimensionality: {d}")),
    }
}

fn values(text: &str, dims: usize) -> Value {
    json!(super::reply::fake_vector(text, dims))
}

/// Answers `POST …/models/{model}:batchEmbedContents` (Gemini API; key already checked): every request must
/// name `models/{model}` and one text; at most 100. `usageMetadata.promptTokenCount` only with
/// `prompt_tokens=N` (the API leaves it out on older surfaces: the gateway then estimates).
pub async fn batch_embed(model: &str, req: &Value, d: Directives) -> Response {
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = d.status {
        return error(status, &d);
    }
    let Some(obj) = req.as_object() else {
        return invalid("Invalid JSON payload received.".into());
    };
    if let Some(unknown) = obj.keys().find(|k| k.as_str() != "requests") {
        return invalid(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        ));
    }
    let Some(requests) = obj.get("requests").and_then(Value::as_array) else {
        return invalid("* BatchEmbedContentsRequest.requests: requests is required".into());
    };
    if requests.is_empty() || requests.len() > BATCH_LIMIT {
        return invalid(format!(
            "* BatchEmbedContentsRequest.requests: at most {BATCH_LIMIT} requests can be in one batch"
        ));
    }
    let name = format!("models/{model}");
    let mut embeddings = Vec::new();
    for r in requests {
        let Some(r) = r.as_object() else {
            return invalid("Invalid JSON payload received.".into());
        };
        if let Some(unknown) = r.keys().find(|k| {
            ![
                "model",
                "content",
                "taskType",
                "title",
                "outputDimensionality",
            ]
            .contains(&k.as_str())
        }) {
            return invalid(format!(
                "Invalid JSON payload received. Unknown name \"{unknown}\" at 'requests[0]': Cannot find field."
            ));
        }
        if r.get("model").and_then(Value::as_str) != Some(name.as_str()) {
            return invalid(format!(
                "* BatchEmbedContentsRequest.model: the model of each request must be {name}"
            ));
        }
        let text = r
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .and_then(|p| p.first())
            .and_then(|p| p.get("text"))
            .and_then(Value::as_str);
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return invalid(
                "* BatchEmbedContentsRequest.requests[0].content.parts: contents must not be empty"
                    .into(),
            );
        };
        let dims = match dims_of(r.get("outputDimensionality")) {
            Ok(d) => d,
            Err(message) => return invalid(message),
        };
        embeddings.push(json!({"values": values(text, dims)}));
    }
    let mut answer = json!({ "embeddings": embeddings });
    if let Some(n) = d.prompt_tokens {
        answer["usageMetadata"] = json!({"promptTokenCount": n, "totalTokenCount": n});
    }
    respond(200, &answer)
}

/// Answers Vertex `POST …/publishers/google/models/{model}:predict` for the text-embedding models (token
/// already checked): `instances` of `{"content": …}` (one for `gemini-embedding-*`, else at most 250),
/// `parameters.outputDimensionality`. Each prediction's `statistics.token_count` is its words (`prompt_tokens=N`:
/// N each).
pub async fn predict(model: &str, req: &Value, d: Directives) -> Response {
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = d.status {
        return error(status, &d);
    }
    let Some(obj) = req.as_object() else {
        return invalid("Invalid JSON payload received.".into());
    };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !["instances", "parameters"].contains(&k.as_str()))
    {
        return invalid(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        ));
    }
    let Some(instances) = obj.get("instances").and_then(Value::as_array) else {
        return invalid("instances is required".into());
    };
    let limit = if model.starts_with("gemini-embedding") {
        1
    } else {
        PREDICT_LIMIT
    };
    if instances.is_empty() || instances.len() > limit {
        return invalid(format!(
            "{} instances in one request; {model} takes at most {limit}",
            instances.len()
        ));
    }
    let dims = match dims_of(req.pointer("/parameters/outputDimensionality")) {
        Ok(d) => d,
        Err(message) => return invalid(message),
    };
    let mut predictions = Vec::new();
    let mut characters = 0;
    for instance in instances {
        let Some(text) = instance
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return invalid("each instance needs a non-empty content".into());
        };
        if let Some(unknown) = instance.as_object().and_then(|i| {
            i.keys()
                .find(|k| !["content", "task_type", "title"].contains(&k.as_str()))
        }) {
            return invalid(format!("Unknown field in instance: {unknown}"));
        }
        characters += text.chars().filter(|c| !c.is_whitespace()).count();
        let tokens = d.prompt_tokens.unwrap_or_else(|| super::reply::words(text));
        predictions.push(json!({"embeddings": {
            "statistics": {"truncated": false, "token_count": tokens},
            "values": values(text, dims)}}));
    }
    respond(
        200,
        &json!({"predictions": predictions, "metadata": {"billableCharacterCount": characters}}),
    )
}

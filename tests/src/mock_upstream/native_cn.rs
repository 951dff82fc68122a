//! The native Chinese-provider dialects of the mock, in their real wire shapes:
//!
//! - **Tencent Hunyuan API 3.0** (`POST /hunyuan/`): PascalCase bodies, answers in a `{"Response": {…}}`
//!   envelope, errors `{"Response":{"Error":{"Code","Message"},"RequestId"}}` **with HTTP 200**, SSE chunks
//!   (the envelope's inside) with cumulative `Usage` on every chunk and no `[DONE]`. Every request's
//!   TC3-HMAC-SHA256 signature is recomputed here (an implementation independent of the gateway's) from the
//!   secret of its `SecretId` in [`TC3_KEYS`]: unknown id → `AuthFailure.SecretIdNotFound`, wrong signature →
//!   `AuthFailure.SignatureFailure`, clock skew over 5 min → `AuthFailure.SignatureExpire`. Unknown top-level
//!   fields → `UnknownParameter`; `Model` / `Messages` required, system only first, user / assistant
//!   alternating and ending with user (or tool), `Tools[].Function.Parameters` a JSON string.
//! - **Baidu Qianfan v1** (`POST /qianfan/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{endpoint}?access_token=`)
//!   and its token endpoint (`POST /oauth/2.0/token?grant_type=client_credentials&client_id&client_secret`,
//!   pairs in [`QIANFAN_KEYS`]). The token must be one the endpoint issued: unknown → error 110, expired
//!   ([`super::MockUpstream::expire_qianfan_tokens`], `POST /__mock/qianfan/expire`) → 111; fetches are
//!   counted. Errors `{error_code, error_msg}` with HTTP 200; messages must alternate user-side (user /
//!   function) and assistant, odd in number; `system` only top-level; `temperature` in (0, 1]. Streams: SSE with
//!   `is_end`, full usage on the last chunk.
//! - **Alibaba DashScope native** (`POST /dashscope/api/v1/services/aigc/text-generation/generation`):
//!   `Authorization: Bearer sk-…` (else 401 `InvalidApiKey`), `input.messages` required (400
//!   `InvalidParameter`), streams only with `X-DashScope-SSE: enable`: `id:` / `event:result` /
//!   `:HTTP_STATUS/200` / `data:` events, cumulative usage, `finish_reason` `"null"` until the end, text
//!   incremental only with `parameters.incremental_output: true` (directive `cumulative=1`: a model that
//!   ignores it). Errors `{code, message, request_id}` with their HTTP status (`Arrearage` as a 400).
//!
//! Directives as elsewhere: `status` (→ the dialect's error: 429 throttling, 401 auth, 402 quota / arrears,
//! 400 parameter, 404 model, 5xx internal; `code=` overrides the code), `latency_ms`, `chunks`,
//! `chunk_delay_ms`, `cut_after`, `reset_after`, `error_after`, `prompt_tokens`, `completion_tokens`,
//! `cached_tokens`, `only_key` (the SecretId, the Qianfan API key, or the DashScope key), `every`.
//! A tool call (`get_weather`-style: the first tool, arguments `{"city":"Paris"}`) answers when the request has
//! tools, does not say `none`, and its last turn is not a tool result.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Directives, MockState};

/// Tencent `SecretId` / `SecretKey` pairs the Hunyuan dialect accepts.
pub const TC3_KEYS: [(&str, &str); 2] = [
    ("AKIDmockTollgateA", "tc3-mock-secret-key-a"),
    ("AKIDmockTollgateB", "tc3-mock-secret-key-b"),
];
/// Baidu API key / secret key pairs the Qianfan token endpoint accepts.
pub const QIANFAN_KEYS: [(&str, &str); 2] = [
    ("qf-mock-ak-a", "qf-mock-sk-a"),
    ("qf-mock-ak-b", "qf-mock-sk-b"),
];
const CREATED: u64 = 1_700_000_000;
const HUNYUAN_FIELDS: [&str; 12] = [
    "Model",
    "Messages",
    "Stream",
    "StreamModeration",
    "TopP",
    "Temperature",
    "Tools",
    "ToolChoice",
    "CustomTool",
    "Seed",
    "Stop",
    "EnableThinking",
];
const QIANFAN_FIELDS: [&str; 12] = [
    "messages",
    "system",
    "stream",
    "temperature",
    "top_p",
    "penalty_score",
    "max_output_tokens",
    "stop",
    "user_id",
    "functions",
    "tool_choice",
    "disable_search",
];

/// The native dialects (their path prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeCn {
    Hunyuan,
    Qianfan,
    DashScope,
}

impl NativeCn {
    /// The base URL path (after the host) a provider of this kind is configured with.
    #[must_use]
    pub fn base_path(self) -> &'static str {
        match self {
            Self::Hunyuan => "/hunyuan",
            Self::Qianfan => "/qianfan/rpc/2.0/ai_custom/v1/wenxinworkshop",
            Self::DashScope => "/dashscope/api/v1",
        }
    }
}

/// Tokens the Qianfan endpoint issued.
#[derive(Default)]
pub struct Tokens {
    issued: Mutex<HashMap<String, (String, bool)>>,
    fetches: AtomicU64,
}

impl Tokens {
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Every token issued so far.
    pub fn all(&self) -> Vec<String> {
        self.issued
            .lock()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Marks every issued token expired.
    pub fn expire(&self) {
        if let Ok(mut t) = self.issued.lock() {
            for (_, expired) in t.values_mut() {
                *expired = true;
            }
        }
    }

    /// The API key a valid token belongs to, or the v1 error code for it.
    fn check(&self, token: Option<&str>) -> Result<String, i64> {
        let issued = self.issued.lock().map_err(|_| 110)?;
        match token.and_then(|t| issued.get(t)) {
            None => Err(110),
            Some((_, true)) => Err(111),
            Some((client, false)) => Ok(client.clone()),
        }
    }
}

/// `POST /oauth/2.0/token?grant_type=client_credentials&client_id=…&client_secret=…`.
pub(super) fn token(state: &MockState, query: &str) -> Response {
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let n = state.qianfan_tokens.fetches.fetch_add(1, Ordering::SeqCst) + 1;
    let get = |k: &str| params.get(k).map(String::as_str);
    if get("grant_type") != Some("client_credentials") {
        let body = json!({"error": "unsupported_grant_type", "error_description": "unsupported grant type"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let known = QIANFAN_KEYS
        .iter()
        .any(|(id, secret)| get("client_id") == Some(*id) && get("client_secret") == Some(*secret));
    if !known {
        let body = json!({"error": "invalid_client", "error_description": "unknown client id"});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let token = format!(
        "24.mocktoken{n:04}.2592000.{}",
        uuid::Uuid::now_v7().simple()
    );
    if let Ok(mut t) = state.qianfan_tokens.issued.lock() {
        t.insert(
            token.clone(),
            (get("client_id").unwrap_or_default().to_string(), false),
        );
    }
    axum::Json(
        json!({"refresh_token": "25.mock", "expires_in": 2_592_000, "session_key": "mock",
        "access_token": token, "scope": "public ai_custom_qianfan", "session_secret": ""}),
    )
    .into_response()
}

// ---- shared ------------------------------------------------------------------------------------------------

struct Plan {
    chunks: u64,
    prompt: u64,
    completion: u64,
    cached: u64,
    tool: Option<String>,
}

impl Plan {
    /// `normal`: `{"model", "messages": [{"role", "content"}], "tools": [names], "tool_choice_none", "last_is_tool"}`.
    fn of(normal: &Value, d: &Directives) -> Self {
        let chunks = d.chunks.unwrap_or(4);
        let tool = (!normal["tool_choice_none"].as_bool().unwrap_or(false)
            && !normal["last_is_tool"].as_bool().unwrap_or(false))
        .then(|| {
            normal
                .pointer("/tools/0")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .flatten();
        Self {
            chunks,
            prompt: d
                .prompt_tokens
                .unwrap_or_else(|| super::reply::prompt_tokens(normal)),
            completion: d.completion_tokens.unwrap_or(chunks),
            cached: d.cached_tokens.unwrap_or(0),
            tool,
        }
    }

    fn text(&self) -> String {
        (0..self.chunks).map(|i| format!("tok{i} ")).collect()
    }
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn send(tx: &Tx, bytes: impl Into<Bytes>) -> Result<(), ()> {
    tx.send(Ok(bytes.into())).await.map_err(|_| ())
}

async fn reset(tx: &Tx) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
}

fn sse_response(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default()
}

/// What the stream loop should do before content chunk `i`.
enum Step {
    Go,
    Cut,
    Reset,
    Error,
}

fn step(d: &Directives, i: u64) -> Step {
    if d.cut_after == Some(i) {
        Step::Cut
    } else if d.reset_after == Some(i) {
        Step::Reset
    } else if d.error_after == Some(i) {
        Step::Error
    } else {
        Step::Go
    }
}

fn tools_of(v: Option<&Value>, name_at: &str) -> Value {
    let names: Vec<Value> = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.pointer(name_at).cloned())
                .collect()
        })
        .unwrap_or_default();
    Value::Array(names)
}

// ---- Tencent Hunyuan ---------------------------------------------------------------------------------------

fn hunyuan_error(code: &str, message: &str) -> Response {
    axum::Json(
        json!({"Response": {"Error": {"Code": code, "Message": message},
        "RequestId": "mock-request-id"}}),
    )
    .into_response()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Recomputes the request's TC3 signature: the `SecretId` it was made with, or the API's error.
fn verify_tc3(headers: &HeaderMap, body: &[u8]) -> Result<String, (&'static str, String)> {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let auth = h("authorization");
    let rest = auth.strip_prefix("TC3-HMAC-SHA256 Credential=").ok_or((
        "AuthFailure.InvalidAuthorization",
        "Authorization is not TC3-HMAC-SHA256".to_string(),
    ))?;
    let (credential, rest) = rest.split_once(", SignedHeaders=").unwrap_or((rest, ""));
    let (signed, signature) = rest.split_once(", Signature=").unwrap_or((rest, ""));
    let mut scope = credential.splitn(2, '/');
    let id = scope.next().unwrap_or_default();
    let scope = scope.next().unwrap_or_default();
    let Some((_, secret)) = TC3_KEYS.iter().find(|(k, _)| *k == id) else {
        return Err((
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found".into(),
        ));
    };
    if h("x-tc-action") != "ChatCompletions" || h("x-tc-version") != "2023-09-01" {
        return Err((
            "InvalidAction",
            "The action or version is not supported".into(),
        ));
    }
    let timestamp: u64 = h("x-tc-timestamp").parse().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(timestamp) > 300 {
        return Err((
            "AuthFailure.SignatureExpire",
            "The signature expired".into(),
        ));
    }
    let date = scope.split('/').next().unwrap_or_default();
    if signed != "content-type;host;x-tc-action" || scope != format!("{date}/hunyuan/tc3_request") {
        return Err((
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated".into(),
        ));
    }
    let canonical = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\nx-tc-action:{}\n\n{signed}\n{}",
        h("content-type").to_ascii_lowercase(),
        h("host").to_ascii_lowercase(),
        h("x-tc-action").to_ascii_lowercase(),
        hex::encode(Sha256::digest(body))
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac_sha256(format!("TC3{secret}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, b"hunyuan");
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    let expected = hex::encode(hmac_sha256(&k_signing, to_sign.as_bytes()));
    // The scope's date must be the timestamp's UTC date.
    let days = timestamp / 86_400;
    if expected != signature || date != civil_date(days) {
        return Err((
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated".into(),
        ));
    }
    Ok(id.to_string())
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (Howard Hinnant's civil-from-days).
fn civil_date(days: u64) -> String {
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn hunyuan_check(req: &Value) -> Option<(&'static str, String)> {
    let Some(body) = req.as_object() else {
        return Some(("InvalidParameter", "the body must be an object".into()));
    };
    if let Some(k) = body.keys().find(|k| !HUNYUAN_FIELDS.contains(&k.as_str())) {
        return Some((
            "UnknownParameter",
            format!("The parameter `{k}` is not recognized"),
        ));
    }
    if !body.get("Model").is_some_and(Value::is_string) {
        return Some((
            "MissingParameter",
            "The parameter `Model` is missing".into(),
        ));
    }
    let Some(messages) = body
        .get("Messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Some((
            "MissingParameter",
            "The parameter `Messages` is missing".into(),
        ));
    };
    let mut expect_user = true;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("Role").and_then(Value::as_str).unwrap_or_default();
        match role {
            "system" if i == 0 => continue,
            "user" | "tool" if expect_user => {
                if role == "tool" && m.get("ToolCallId").and_then(Value::as_str).is_none() {
                    return Some((
                        "InvalidParameter",
                        format!("Messages[{i}].ToolCallId is required"),
                    ));
                }
                // Consecutive tool results answer one assistant turn.
                let next = messages
                    .get(i + 1)
                    .and_then(|n| n.get("Role"))
                    .and_then(Value::as_str);
                expect_user = role == "tool" && next == Some("tool");
            }
            "assistant" if !expect_user => expect_user = true,
            _ => {
                return Some((
                    "InvalidParameter",
                    format!(
                    "Messages[{i}].Role {role:?}: roles must be [system] user assistant user ..."
                ),
                ))
            }
        }
    }
    if expect_user {
        return Some((
            "InvalidParameter",
            "Messages must end with a user or tool turn".into(),
        ));
    }
    if let Some(tools) = body.get("Tools").and_then(Value::as_array) {
        if tools.iter().any(|t| {
            !t.pointer("/Function/Parameters")
                .is_some_and(Value::is_string)
        }) {
            return Some((
                "InvalidParameterValue",
                "Tools.Function.Parameters must be a JSON string".into(),
            ));
        }
    }
    None
}

fn hunyuan_usage(plan: &Plan, completion: u64) -> Value {
    json!({"PromptTokens": plan.prompt, "CompletionTokens": completion, "TotalTokens": plan.prompt + completion,
        "PromptTokensDetails": {"CachedTokens": plan.cached}})
}

fn hunyuan_tool_call(name: &str) -> Value {
    json!({"Id": "call_mock_hy_1", "Type": "function", "Index": 0,
        "Function": {"Name": name, "Arguments": "{\"city\":\"Paris\"}"}})
}

fn hunyuan_status(status: u16) -> &'static str {
    match status {
        429 => "RequestLimitExceeded",
        401 | 403 => "AuthFailure.SignatureFailure",
        402 => "ResourceInsufficient.ChargeResourceInsufficient",
        400 => "InvalidParameter",
        404 => "ResourceNotFound",
        _ => "InternalError",
    }
}

/// `POST /hunyuan/`.
pub(super) async fn hunyuan(state: &MockState, headers: &HeaderMap, raw: &Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(raw) else {
        return hunyuan_error("InvalidParameter", "the body is not JSON");
    };
    super::record(state, "/hunyuan/".into(), headers, req.clone(), raw);
    let identity = match verify_tc3(headers, raw) {
        Ok(id) => id,
        Err((code, message)) => return hunyuan_error(code, &message),
    };
    let messages = req
        .get("Messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let normal = json!({"model": req.get("Model"),
        "messages": messages.iter().map(|m| json!({"content": m.get("Content")})).collect::<Vec<_>>(),
        "tools": tools_of(req.get("Tools"), "/Function/Name"),
        "tool_choice_none": req.get("ToolChoice").and_then(Value::as_str) == Some("none"),
        "last_is_tool": messages.last().and_then(|m| m.get("Role")).and_then(Value::as_str) == Some("tool")});
    let d = state.directives_for(&normal, Some(&identity));
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some((code, message)) = hunyuan_check(&req) {
        return hunyuan_error(code, &message);
    }
    if let Some(status) = d.status {
        let code = d
            .code
            .clone()
            .unwrap_or_else(|| hunyuan_status(status).into());
        let message = d
            .message
            .clone()
            .unwrap_or_else(|| format!("mock hunyuan error {code}"));
        return hunyuan_error(&code, &message);
    }
    let plan = Plan::of(&normal, &d);
    let model = req
        .get("Model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if req.get("Stream").and_then(Value::as_bool) == Some(true) {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _ = hunyuan_stream(&plan, &d, &tx).await;
        });
        return sse_response(rx);
    }
    let (message, finish) = match &plan.tool {
        Some(name) => (
            json!({"Role": "assistant", "Content": "", "ToolCalls": [hunyuan_tool_call(name)]}),
            "tool_calls",
        ),
        None => (json!({"Role": "assistant", "Content": plan.text()}), "stop"),
    };
    let _ = model;
    axum::Json(
        json!({"Response": {"Id": "mock-hy-id", "Created": CREATED, "Note": "以上内容为AI生成",
        "Choices": [{"Index": 0, "Message": message, "FinishReason": finish}],
        "Usage": hunyuan_usage(&plan, plan.completion), "RequestId": "mock-request-id"}}),
    )
    .into_response()
}

async fn hunyuan_stream(plan: &Plan, d: &Directives, tx: &Tx) -> Result<(), ()> {
    let chunk = |delta: Value, finish: &str, completion: u64| {
        let v = json!({"Note": "以上内容为AI生成", "Choices": [{"Index": 0, "Delta": delta, "FinishReason": finish}],
            "Created": CREATED, "Id": "mock-hy-id", "Usage": hunyuan_usage(plan, completion)});
        Bytes::from(format!("data: {v}\r\n\r\n"))
    };
    if d.reset_after == Some(0) {
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        return Ok(());
    }
    if let Some(name) = &plan.tool {
        send(
            tx,
            chunk(
                json!({"Role": "assistant", "Content": "", "ToolCalls": [hunyuan_tool_call(name)]}),
                "",
                0,
            ),
        )
        .await?;
        return send(
            tx,
            chunk(
                json!({"Role": "assistant", "Content": ""}),
                "tool_calls",
                plan.completion,
            ),
        )
        .await;
    }
    for i in 0..plan.chunks {
        match step(d, i) {
            Step::Cut => return Ok(()),
            Step::Reset => {
                reset(tx).await;
                return Ok(());
            }
            Step::Error => {
                let v = json!({"Choices": [], "Id": "mock-hy-id", "ErrorMsg": {"Code": 2001, "Msg": "mock mid-stream failure"}});
                return send(tx, format!("data: {v}\r\n\r\n")).await;
            }
            Step::Go => {}
        }
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
        let last = i + 1 == plan.chunks;
        let completion = if last {
            plan.completion
        } else {
            (i + 1).min(plan.completion)
        };
        send(
            tx,
            chunk(
                json!({"Role": "assistant", "Content": format!("tok{i} ")}),
                if last { "stop" } else { "" },
                completion,
            ),
        )
        .await?;
    }
    Ok(())
}

// ---- Baidu Qianfan v1 --------------------------------------------------------------------------------------

fn qianfan_error(code: i64, message: &str) -> Response {
    axum::Json(json!({"error_code": code, "error_msg": message})).into_response()
}

fn qianfan_check(req: &Value) -> Option<String> {
    let Some(body) = req.as_object() else {
        return Some("the body must be an object".into());
    };
    if let Some(k) = body.keys().find(|k| !QIANFAN_FIELDS.contains(&k.as_str())) {
        return Some(format!("Invalid argument: unknown field {k}"));
    }
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Some("the messages field is required".into());
    };
    if messages.len() % 2 == 0 {
        return Some("the length of messages must be an odd number".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let user_side = i % 2 == 0;
        let ok = if user_side {
            role == "user" || (role == "function" && i > 0)
        } else {
            role == "assistant"
        };
        if !ok {
            return Some(format!("the role of message {i} is invalid: {role:?}"));
        }
        if role == "function"
            && m.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return Some(format!("message {i}: a function message needs its name"));
        }
    }
    if let Some(t) = body.get("temperature").and_then(Value::as_f64) {
        if t <= 0.0 || t > 1.0 {
            return Some("temperature must be in (0, 1]".into());
        }
    }
    None
}

fn qianfan_status(status: u16) -> i64 {
    match status {
        429 => 18,
        401 | 403 => 14,
        402 => 17,
        400 => 336_003,
        404 => 336_008,
        _ => 336_000,
    }
}

/// `POST /qianfan/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{endpoint}?access_token=…`.
pub(super) async fn qianfan(
    state: &MockState,
    endpoint: &str,
    query: &str,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(raw) else {
        return qianfan_error(336_002, "Invalid JSON");
    };
    super::record(
        state,
        format!("/qianfan/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{endpoint}?{query}"),
        headers,
        req.clone(),
        raw,
    );
    let token = query
        .split('&')
        .find_map(|p| p.strip_prefix("access_token="));
    let identity = match state.qianfan_tokens.check(token) {
        Ok(client) => client,
        Err(110) => return qianfan_error(110, "Access token invalid or no longer valid"),
        Err(code) => return qianfan_error(code, "Access token expired"),
    };
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut texts: Vec<Value> = messages
        .iter()
        .map(|m| json!({"content": m.get("content")}))
        .collect();
    if let Some(s) = req.get("system") {
        texts.push(json!({"content": s}));
    }
    let normal = json!({"model": endpoint, "messages": texts,
        "tools": tools_of(req.get("functions"), "/name"),
        "last_is_tool": messages.last().and_then(|m| m.get("role")).and_then(Value::as_str) == Some("function")});
    let d = state.directives_for(&normal, Some(&identity));
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(message) = qianfan_check(&req) {
        return qianfan_error(336_003, &message);
    }
    if let Some(status) = d.status {
        let code = d
            .code
            .as_deref()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| qianfan_status(status));
        let message = d
            .message
            .clone()
            .unwrap_or_else(|| format!("mock qianfan error {code}"));
        return qianfan_error(code, &message);
    }
    let plan = Plan::of(&normal, &d);
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _ = qianfan_stream(&plan, &d, &tx).await;
        });
        return sse_response(rx);
    }
    let mut body = json!({"id": "as-mock1", "object": "chat.completion", "created": CREATED,
        "result": plan.text(), "is_truncated": false, "need_clear_history": false, "finish_reason": "normal",
        "usage": {"prompt_tokens": plan.prompt, "completion_tokens": plan.completion,
            "total_tokens": plan.prompt + plan.completion}});
    if let Some(name) = &plan.tool {
        body["result"] = json!("");
        body["function_call"] =
            json!({"name": name, "arguments": "{\"city\":\"Paris\"}", "thoughts": "mock"});
        body["finish_reason"] = json!("function_call");
    }
    axum::Json(body).into_response()
}

async fn qianfan_stream(plan: &Plan, d: &Directives, tx: &Tx) -> Result<(), ()> {
    let chunk = |i: u64, result: &str, end: bool| {
        let completion = if end { plan.completion } else { 0 };
        let mut v = json!({"id": "as-mock1", "object": "chat.completion", "created": CREATED, "sentence_id": i,
            "is_end": end, "is_truncated": false, "result": result, "need_clear_history": false,
            "usage": {"prompt_tokens": plan.prompt, "completion_tokens": completion, "total_tokens": plan.prompt + completion}});
        if end {
            v["finish_reason"] = json!("normal");
        }
        v
    };
    if d.reset_after == Some(0) {
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        return Ok(());
    }
    if let Some(name) = &plan.tool {
        let mut v = chunk(0, "", true);
        v["function_call"] = json!({"name": name, "arguments": "{\"city\":\"Paris\"}"});
        v["finish_reason"] = json!("function_call");
        return send(tx, format!("data: {v}\n\n")).await;
    }
    for i in 0..plan.chunks {
        match step(d, i) {
            Step::Cut => return Ok(()),
            Step::Reset => {
                reset(tx).await;
                return Ok(());
            }
            Step::Error => {
                let v = json!({"error_code": 336_100, "error_msg": "mock mid-stream failure, try again"});
                return send(tx, format!("data: {v}\n\n")).await;
            }
            Step::Go => {}
        }
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
        let v = chunk(i, &format!("tok{i} "), i + 1 == plan.chunks);
        send(tx, format!("data: {v}\n\n")).await?;
    }
    Ok(())
}

// ---- Alibaba DashScope native ------------------------------------------------------------------------------

fn dashscope_error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"code": code, "message": message, "request_id": "mock-ds-request"})),
    )
        .into_response()
}

fn dashscope_status(status: u16) -> (u16, &'static str) {
    match status {
        429 => (429, "Throttling.RateQuota"),
        401 => (401, "InvalidApiKey"),
        402 => (400, "Arrearage"),
        403 => (403, "AccessDenied"),
        404 => (404, "ModelNotFound"),
        400 => (400, "InvalidParameter"),
        s => (s, "InternalError"),
    }
}

fn dashscope_usage(plan: &Plan, output: u64) -> Value {
    let mut u = json!({"input_tokens": plan.prompt, "output_tokens": output, "total_tokens": plan.prompt + output});
    if plan.cached > 0 {
        u["prompt_tokens_details"] = json!({"cached_tokens": plan.cached});
    }
    u
}

/// `POST /dashscope/api/v1/services/aigc/text-generation/generation`.
pub(super) async fn dashscope(state: &MockState, headers: &HeaderMap, raw: &Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(raw) else {
        return dashscope_error(
            400,
            "InvalidParameter",
            "The request body is not valid JSON",
        );
    };
    super::record(
        state,
        "/dashscope/api/v1/services/aigc/text-generation/generation".into(),
        headers,
        req.clone(),
        raw,
    );
    let Some(key) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|k| k.starts_with("sk-"))
        .map(str::to_string)
    else {
        return dashscope_error(401, "InvalidApiKey", "Invalid API-key provided.");
    };
    let messages = req
        .pointer("/input/messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let normal = json!({"model": req.get("model"), "messages": messages,
        "tools": tools_of(req.pointer("/parameters/tools"), "/function/name"),
        "tool_choice_none": req.pointer("/parameters/tool_choice").and_then(Value::as_str) == Some("none"),
        "last_is_tool": messages.last().and_then(|m| m.get("role")).and_then(Value::as_str) == Some("tool")});
    let d = state.directives_for(&normal, Some(&key));
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if !req.get("model").is_some_and(Value::is_string) {
        return dashscope_error(
            400,
            "BadRequest.EmptyModel",
            "Required parameter \"model\" missing from request.",
        );
    }
    if messages.is_empty() || req.get("messages").is_some() {
        return dashscope_error(
            400,
            "InvalidParameter",
            "Either prompt or messages must exist and cannot both be none",
        );
    }
    if let Some(status) = d.status {
        let (http, code) = dashscope_status(status);
        let code = d.code.clone().unwrap_or_else(|| code.into());
        let message = d
            .message
            .clone()
            .unwrap_or_else(|| format!("mock dashscope error {code}"));
        let mut response = dashscope_error(http, &code, &message);
        if let Some(ra) = d.retry_after.as_deref().and_then(|v| v.parse().ok()) {
            response.headers_mut().insert("retry-after", ra);
        }
        return response;
    }
    let plan = Plan::of(&normal, &d);
    let streamed = headers.get("x-dashscope-sse").and_then(|v| v.to_str().ok()) == Some("enable");
    if streamed {
        let incremental = req
            .pointer("/parameters/incremental_output")
            .and_then(Value::as_bool)
            == Some(true)
            && d.cumulative != Some(true);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _ = dashscope_stream(&plan, &d, incremental, &tx).await;
        });
        return sse_response(rx);
    }
    let message = match &plan.tool {
        Some(name) => {
            json!({"role": "assistant", "content": "", "tool_calls": [{"index": 0, "id": "call_mock_ds_1",
            "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}]})
        }
        None => json!({"role": "assistant", "content": plan.text()}),
    };
    let finish = if plan.tool.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    axum::Json(
        json!({"output": {"choices": [{"message": message, "finish_reason": finish}]},
        "usage": dashscope_usage(&plan, plan.completion), "request_id": "mock-ds-request"}),
    )
    .into_response()
}

async fn dashscope_stream(
    plan: &Plan,
    d: &Directives,
    incremental: bool,
    tx: &Tx,
) -> Result<(), ()> {
    let event = |id: u64, message: Value, finish: &str, output: u64| {
        let v = json!({"output": {"choices": [{"message": message, "finish_reason": finish}]},
            "usage": dashscope_usage(plan, output), "request_id": "mock-ds-request"});
        format!("id:{id}\nevent:result\n:HTTP_STATUS/200\ndata:{v}\n\n")
    };
    if d.reset_after == Some(0) {
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        return Ok(());
    }
    if let Some(name) = &plan.tool {
        let call = json!([{"index": 0, "id": "call_mock_ds_1", "type": "function",
            "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}]);
        send(
            tx,
            event(
                1,
                json!({"role": "assistant", "content": "", "tool_calls": call}),
                "null",
                1,
            ),
        )
        .await?;
        return send(
            tx,
            event(
                2,
                json!({"role": "assistant", "content": ""}),
                "tool_calls",
                plan.completion,
            ),
        )
        .await;
    }
    let mut so_far = String::new();
    for i in 0..plan.chunks {
        match step(d, i) {
            Step::Cut => return Ok(()),
            Step::Reset => {
                reset(tx).await;
                return Ok(());
            }
            Step::Error => {
                let v = json!({"code": "InternalError", "message": "mock mid-stream failure", "request_id": "mock-ds-request"});
                return send(
                    tx,
                    format!("id:{}\nevent:error\n:HTTP_STATUS/500\ndata:{v}\n\n", i + 1),
                )
                .await;
            }
            Step::Go => {}
        }
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
        let piece = format!("tok{i} ");
        so_far.push_str(&piece);
        let text = if incremental { piece } else { so_far.clone() };
        let last = i + 1 == plan.chunks;
        let output = if last {
            plan.completion
        } else {
            (i + 1).min(plan.completion)
        };
        send(
            tx,
            event(
                i + 1,
                json!({"role": "assistant", "content": text}),
                if last { "stop" } else { "null" },
                output,
            ),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(1_551_113_065 / 86_400), "2019-02-25");
        assert_eq!(civil_date(19_675), "2023-11-14");
    }
}

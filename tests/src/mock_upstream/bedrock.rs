//! The Bedrock Converse dialect of the mock: `POST /bedrock/model/{modelId}/converse` and
//! `…/converse-stream`, in the real wire shapes.
//!
//! **Auth, verified.** A SigV4 request is checked by recomputing its signature here, from the request as
//! received (raw path, headers, body) — written from the SigV4 specification, independent of the gateway's
//! signer: unknown access key → 403 `UnrecognizedClientException`; wrong signature, or a date more than
//! 15 minutes off → 403 `InvalidSignatureException`; a session key without its `x-amz-security-token` (signed)
//! → 403. Known credentials: [`ACCESS_KEY_ID`] / [`SECRET_ACCESS_KEY`], and [`SESSION_ACCESS_KEY_ID`] /
//! [`SECRET_ACCESS_KEY`] with [`SESSION_TOKEN`]. `Authorization: Bearer <key>` (Bedrock API keys) is accepted
//! when the key starts with `ABSK`, else 403 `AccessDeniedException` ("Authentication failed"). No auth → 403
//! `MissingAuthenticationTokenException`.
//!
//! **Requests checked as Bedrock does** (400 `ValidationException`): only Converse's top-level fields
//! (an OpenAI field leaking through is refused, as Bedrock refuses extraneous keys); `messages` non-empty,
//! starting with `user`, roles alternating; each content block has exactly one key; `toolUse` /
//! `toolResult` only with a `toolConfig`; a `toolResult` only for a `toolUse` id of the previous assistant
//! turn; image bytes valid base64.
//!
//! **Answers.** Text `tok0 tok1 …` (`chunks`), or a `toolUse` of the first tool (`{"city":"Paris"}`) when
//! the request declares tools, `toolChoice` allows it and the last turn is not a tool result. Usage:
//! `prompt_tokens` is the OpenAI-meaning total; `cached_tokens` → `cacheReadInputTokens`,
//! `cache_write_tokens` → `cacheWriteInputTokens`, `inputTokens` the rest. `finish=REASON` sets `stopReason`.
//! ConverseStream is real `application/vnd.amazon.eventstream` frames with both CRCs, each frame split
//! across two writes: `messageStart`, (`contentBlockStart` for a tool), `contentBlockDelta`s,
//! `contentBlockStop`, `messageStop`, `metadata`. `error_after=N` sends an exception frame
//! (`:exception-type` from `type=`, default `modelStreamErrorException`); `cut_after` / `reset_after` as
//! elsewhere. `status=N` answers with Bedrock's error (`x-amzn-errortype` by status, or `type=`).
//!
//! **Embeddings** (`POST /bedrock/model/{modelId}/invoke`, same auth): Amazon Titan Text Embeddings
//! (`inputText`, v2 also `dimensions` ∈ {256, 512, 1024}, `normalize`, `embeddingTypes`; any other key is
//! refused as Bedrock does) → `embedding`, `inputTextTokenCount`, `embeddingsByType`; Cohere Embed (`texts`,
//! 1–96, `input_type` required, `truncate`, `embedding_types`, `output_dimension`) → `embeddings` (by type
//! when `embedding_types` is set). Both report the input tokens (its words, or `prompt_tokens=N` per call) in
//! `x-amzn-bedrock-input-token-count` too. Vectors have 8 values unless sized by the request. Directives come
//! from the model id and `[mock:…]` tags in the texts, faults included.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{record, Directives, MockState};

/// The mock's long-term test access key (not a real credential).
pub const ACCESS_KEY_ID: &str = "AKIDMOCKBEDROCK";
/// The mock's temporary (STS-style) test access key; needs [`SESSION_TOKEN`].
pub const SESSION_ACCESS_KEY_ID: &str = "ASIAMOCKBEDROCK";
/// The secret of both test access keys.
pub const SECRET_ACCESS_KEY: &str = "mock/bedrock+secret/KEY0123456789abcdefghi";
/// The session token of [`SESSION_ACCESS_KEY_ID`].
pub const SESSION_TOKEN: &str = "mock-session-token//with+base64=chars";

const TOP_LEVEL: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
];

/// The access key id of a SigV4 `Authorization` header (for `only_key`).
pub(super) fn access_key_id(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let credential = rest
        .split(',')
        .find_map(|p| p.trim().strip_prefix("Credential="))?;
    credential.split('/').next()
}

fn error(status: u16, name: &str, message: &str) -> Response {
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(json!({ "message": message }))).into_response();
    if let Ok(v) = format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/").parse() {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    if let Ok(v) = "mock-request-id".parse() {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

fn validation(message: impl Into<String>) -> Response {
    error(400, "ValidationException", &message.into())
}

fn scripted_error(status: u16, d: &Directives) -> Response {
    let name = d.error_type.clone().unwrap_or_else(|| {
        match status {
            400 => "ValidationException",
            401 | 403 => "AccessDeniedException",
            404 => "ResourceNotFoundException",
            408 => "ModelTimeoutException",
            424 => "ModelErrorException",
            429 => "ThrottlingException",
            503 => "ServiceUnavailableException",
            _ => "InternalServerException",
        }
        .to_string()
    });
    let message = d.message.clone().unwrap_or_else(|| match status {
        429 => "Too many requests, please wait before trying again.".into(),
        _ => format!("mock bedrock error {status}"),
    });
    let mut response = error(status, &name, &message);
    if let Some(ra) = d.retry_after.as_deref().and_then(|v| v.parse().ok()) {
        response.headers_mut().insert("retry-after", ra);
    }
    response
}

/// `POST /bedrock/model/{model}/{operation}`.
pub(super) async fn handle(
    State(state): State<MockState>,
    Path((model, operation)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw_path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let recorded_path = uri.path_and_query().map_or("", |p| p.as_str()).to_string();
    let json = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    record(&state, recorded_path, &headers, json.clone(), &body);
    if let Err(response) = authenticate(&raw_path, &query, &headers, &body) {
        return *response;
    }
    if operation == "invoke" {
        return invoke(&state, &model, &headers, json).await;
    }
    let stream = match operation.as_str() {
        "converse" => false,
        "converse-stream" => true,
        other => {
            return error(
                404,
                "UnknownOperationException",
                &format!("no operation {other}"),
            )
        }
    };
    let Value::Object(req) = json else {
        return error(
            400,
            "SerializationException",
            "the body is not a JSON object",
        );
    };
    if let Some(response) = check(&req) {
        return response;
    }
    let mut view = json!({"model": model});
    view["messages"] = req.get("messages").cloned().unwrap_or(Value::Null);
    let mut d = Directives::of(&view);
    if !state.faults_apply(&d, &headers) {
        d = d.without_faults();
    }
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = d.status {
        return scripted_error(status, &d);
    }
    let plan = Plan::of(&req, &view, &d);
    if stream {
        return converse_stream(plan, d);
    }
    let content = match &plan.tool {
        Some(name) => {
            json!([{"toolUse": {"toolUseId": "tooluse_mock_1", "name": name, "input": {"city": "Paris"}}}])
        }
        None => {
            json!([{ "text": (0..plan.chunks).map(|i| format!("tok{i} ")).collect::<String>() }])
        }
    };
    axum::Json(
        json!({"output": {"message": {"role": "assistant", "content": content}},
        "stopReason": plan.stop_reason, "usage": plan.usage(), "metrics": {"latencyMs": 42}}),
    )
    .into_response()
}

// ---- auth ----------------------------------------------------------------------------------------------

fn authenticate(
    raw_path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Box<Response>> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(key) = auth.strip_prefix("Bearer ") {
        return if key.starts_with("ABSK") {
            Ok(())
        } else {
            Err(Box::new(error(
                403,
                "AccessDeniedException",
                "Authentication failed: Please make sure your API Key is valid.",
            )))
        };
    }
    if auth.is_empty() {
        return Err(Box::new(error(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )));
    }
    verify_sigv4(auth, raw_path, query, headers, body)
        .map_err(|(name, message)| Box::new(error(403, name, &message)))
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 unreserved characters stay; every other byte becomes `%XX` (uppercase).
fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn uri_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Seconds since the epoch of a `YYYYMMDDTHHMMSSZ` stamp.
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Recomputes the SigV4 signature of the request as received and compares.
fn verify_sigv4(
    auth: &str,
    raw_path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (&'static str, String)> {
    let invalid = |m: &str| ("IncompleteSignatureException", m.to_string());
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| invalid("Authorization header requires the AWS4-HMAC-SHA256 algorithm"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(invalid(
            "Authorization header requires Credential, SignedHeaders and Signature",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope.as_slice() else {
        return Err(invalid("malformed Credential"));
    };
    if *terminator != "aws4_request" || *service != "bedrock" {
        return Err((
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: 'bedrock', not {service:?}"),
        ));
    }
    if *key_id != ACCESS_KEY_ID && *key_id != SESSION_ACCESS_KEY_ID {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["host", "x-amz-date"] {
        if !names.contains(&required) {
            return Err(invalid(&format!("{required} must be signed")));
        }
    }
    if *key_id == SESSION_ACCESS_KEY_ID {
        let token = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok());
        if token != Some(SESSION_TOKEN) || !names.contains(&"x-amz-security-token") {
            return Err((
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".into(),
            ));
        }
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| invalid("bad X-Amz-Date"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if (now - signed_at).abs() > 15 * 60 || !amz_date.starts_with(date) {
        return Err((
            "InvalidSignatureException",
            "Signature expired or not yet current".into(),
        ));
    }
    // Canonical request, from the request as received.
    let canonical_uri: String = raw_path
        .split('/')
        .map(|segment| uri_encode(segment.as_bytes()))
        .collect::<Vec<_>>()
        .join("/");
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&uri_decode(k)), uri_encode(&uri_decode(v)))
        })
        .collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(invalid(&format!("signed header {name} is missing")));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = hex::encode(Sha256::digest(body));
    if let Some(claimed) = headers.get("x-amz-content-sha256") {
        if claimed.as_bytes() != payload_hash.as_bytes() {
            return Err((
                "InvalidSignatureException",
                "The provided x-amz-content-sha256 header does not match what was computed.".into(),
            ));
        }
    }
    let canonical_request = format!(
        "POST\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/bedrock/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{SECRET_ACCESS_KEY}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, "bedrock");
    let k_signing = hmac(&k_service, "aws4_request");
    let expected = hex::encode(hmac(&k_signing, &string_to_sign));
    if expected != signature {
        return Err((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        ));
    }
    Ok(())
}

// ---- request checks ------------------------------------------------------------------------------------

fn check(req: &Map<String, Value>) -> Option<Response> {
    if let Some(extra) = req.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Some(validation(format!(
            "Malformed input request: extraneous key [{extra}] is not permitted, please reformat your input and try again."
        )));
    }
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Some(validation("A conversation must start with a user message."));
    };
    if messages.is_empty() {
        return Some(validation("A conversation must start with a user message."));
    }
    let has_tool_config = req.get("toolConfig").is_some();
    let mut previous_role = "";
    let mut previous_tool_ids: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if (i == 0 && role != "user") || !matches!(role, "user" | "assistant") {
            return Some(validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        if role == previous_role {
            return Some(validation(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.",
            ));
        }
        let Some(blocks) = m.get("content").and_then(Value::as_array) else {
            return Some(validation(format!("messages.{i}.content: expected a list")));
        };
        if blocks.is_empty() {
            return Some(validation(format!(
                "The content field in the Message object at messages.{i} is empty."
            )));
        }
        let mut tool_ids = Vec::new();
        for (k, b) in blocks.iter().enumerate() {
            let Some(block) = b.as_object().filter(|o| o.len() == 1) else {
                return Some(validation(format!(
                    "messages.{i}.content.{k}: a content block must have exactly one member"
                )));
            };
            let (kind, value) = block.iter().next()?;
            match kind.as_str() {
                "text" if value.as_str().is_some_and(|t| t.trim().is_empty()) => {
                    return Some(validation(format!(
                        "The text field in the ContentBlock object at messages.{i}.content.{k} is blank."
                    )));
                }
                "toolUse" | "toolResult" if !has_tool_config => {
                    return Some(validation(
                        "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
                    ));
                }
                "toolUse" => {
                    if !value.get("input").is_some_and(Value::is_object) {
                        return Some(validation(format!(
                            "messages.{i}.content.{k}.toolUse.input must be an object"
                        )));
                    }
                    tool_ids.push(
                        value
                            .get("toolUseId")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                "toolResult" => {
                    let id = value
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if role != "user" || !previous_tool_ids.iter().any(|t| t == id) {
                        return Some(validation(format!(
                            "The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks of previous turn."
                        )));
                    }
                }
                "image" => {
                    let bytes = value
                        .pointer("/source/bytes")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let format = value.get("format").and_then(Value::as_str);
                    if base64::engine::general_purpose::STANDARD
                        .decode(bytes)
                        .map_or(true, |b| b.is_empty())
                        || !matches!(format, Some("png" | "jpeg" | "gif" | "webp"))
                    {
                        return Some(validation(format!(
                            "messages.{i}.content.{k}.image: invalid image"
                        )));
                    }
                }
                "text" | "document" | "reasoningContent" | "cachePoint" | "video"
                | "guardContent" => {}
                other => {
                    return Some(validation(format!(
                        "messages.{i}.content.{k}: unknown content block {other}"
                    )))
                }
            }
        }
        previous_role = role;
        previous_tool_ids = tool_ids;
    }
    None
}

// ---- answers -------------------------------------------------------------------------------------------

struct Plan {
    chunks: u64,
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
    tool: Option<String>,
    stop_reason: String,
}

impl Plan {
    fn of(req: &Map<String, Value>, view: &Value, d: &Directives) -> Self {
        let chunks = d.chunks.unwrap_or(4);
        let prompt = d
            .prompt_tokens
            .unwrap_or_else(|| super::reply::prompt_tokens(view));
        let cache_read = d.cached_tokens.unwrap_or(0);
        let cache_write = d.cache_write_tokens.unwrap_or(0);
        let answering_tool_result = req
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .is_some_and(|b| b.iter().any(|b| b.get("toolResult").is_some()));
        let tool = (!answering_tool_result)
            .then(|| {
                let config = req.get("toolConfig")?;
                let spec = config.get("tools")?.as_array()?.first()?.get("toolSpec")?;
                spec.get("name")?.as_str().map(str::to_string)
            })
            .flatten();
        let stop_reason = d.finish.clone().unwrap_or_else(|| {
            if tool.is_some() {
                "tool_use"
            } else {
                "end_turn"
            }
            .to_string()
        });
        Self {
            chunks,
            input: prompt.saturating_sub(cache_read + cache_write),
            cache_read,
            cache_write,
            output: d.completion_tokens.unwrap_or(chunks),
            tool,
            stop_reason,
        }
    }

    fn usage(&self) -> Value {
        let mut u = json!({"inputTokens": self.input, "outputTokens": self.output,
            "totalTokens": self.input + self.cache_read + self.cache_write + self.output});
        if self.cache_read > 0 || self.cache_write > 0 {
            u["cacheReadInputTokens"] = json!(self.cache_read);
            u["cacheWriteInputTokens"] = json!(self.cache_write);
        }
        u
    }
}

/// One event-stream frame with string headers and both CRCs.
#[must_use]
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        block.extend_from_slice(name.as_bytes());
        block.push(7);
        block.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        block.extend_from_slice(value.as_bytes());
    }
    let total = u32::try_from(12 + block.len() + payload.len() + 4).unwrap_or(u32::MAX);
    let mut f = Vec::with_capacity(total as usize);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&u32::try_from(block.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32fast::hash(&f);
    f.extend_from_slice(&prelude_crc.to_be_bytes());
    f.extend_from_slice(&block);
    f.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&f);
    f.extend_from_slice(&message_crc.to_be_bytes());
    f
}

fn event(ty: &str, payload: &Value) -> Vec<u8> {
    // Bedrock pads payloads with a `p` field of varying length (seen in recorded streams).
    let mut payload = payload.clone();
    payload["p"] = json!("abcdefghij");
    frame(
        &[
            (":event-type", ty),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

fn exception(ty: &str, message: &str) -> Vec<u8> {
    let mut payload = json!({ "message": message });
    if ty == "modelStreamErrorException" {
        payload["originalStatusCode"] = json!(500);
        payload["originalMessage"] = json!("The model stream failed.");
    }
    frame(
        &[
            (":exception-type", ty),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.to_string().as_bytes(),
    )
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Sends a frame in two writes, cut at a point that moves with `n`, so frames arrive split across reads.
async fn send_split(tx: &Tx, frame: Vec<u8>, n: usize) -> Result<(), ()> {
    let cut = (n * 7 + 5) % frame.len().max(1);
    let (a, b) = frame.split_at(cut);
    for piece in [a, b] {
        if !piece.is_empty() {
            tx.send(Ok(Bytes::copy_from_slice(piece)))
                .await
                .map_err(|_| ())?;
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

fn converse_stream(plan: Plan, d: Directives) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(async move {
        let _ = write_stream(&plan, &d, &tx).await;
    });
    Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", "mock-request-id")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default()
}

async fn write_stream(plan: &Plan, d: &Directives, tx: &Tx) -> Result<(), ()> {
    if d.reset_after == Some(0) {
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        return Ok(());
    }
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    send_split(
        tx,
        event("messageStart", &json!({"role": "assistant"})),
        next(),
    )
    .await?;
    if let Some(name) = &plan.tool {
        send_split(
            tx,
            event(
                "contentBlockStart",
                &json!({"contentBlockIndex": 0,
            "start": {"toolUse": {"toolUseId": "tooluse_mock_1", "name": name}}}),
            ),
            next(),
        )
        .await?;
    }
    let pieces = ["{\"city\":", "\"Paris\"}"];
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
            let ty = d
                .error_type
                .clone()
                .unwrap_or_else(|| "modelStreamErrorException".into());
            let message = d
                .message
                .clone()
                .unwrap_or_else(|| "Model Stream Error".into());
            tx.send(Ok(Bytes::from(exception(&ty, &message))))
                .await
                .map_err(|_| ())?;
            return Ok(());
        }
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
        let delta = match &plan.tool {
            Some(_) => {
                let piece = usize::try_from(i)
                    .ok()
                    .and_then(|i| pieces.get(i))
                    .copied()
                    .unwrap_or("");
                json!({"toolUse": {"input": piece}})
            }
            None => json!({ "text": format!("tok{i} ") }),
        };
        send_split(
            tx,
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": delta}),
            ),
            next(),
        )
        .await?;
    }
    send_split(
        tx,
        event("contentBlockStop", &json!({"contentBlockIndex": 0})),
        next(),
    )
    .await?;
    // messageStop and metadata in one write: several frames in one read.
    let mut tail = event("messageStop", &json!({"stopReason": plan.stop_reason}));
    tail.extend(event(
        "metadata",
        &json!({"usage": plan.usage(), "metrics": {"latencyMs": 42}}),
    ));
    tx.send(Ok(Bytes::from(tail))).await.map_err(|_| ())
}

// ---- embeddings (InvokeModel) --------------------------------------------------------------------------------

const TITAN_V2_KEYS: &[&str] = &["inputText", "dimensions", "normalize", "embeddingTypes"];
const COHERE_KEYS: &[&str] = &[
    "texts",
    "images",
    "input_type",
    "truncate",
    "embedding_types",
    "output_dimension",
];

fn with_token_header(mut response: Response, tokens: u64) -> Response {
    if let Ok(v) = tokens.to_string().parse() {
        response
            .headers_mut()
            .insert("x-amzn-bedrock-input-token-count", v);
    }
    response
}

fn extraneous(req: &Map<String, Value>, allowed: &[&str]) -> Option<Response> {
    req.keys()
        .find(|k| !allowed.contains(&k.as_str()))
        .map(|k| {
            validation(format!(
                "Malformed input request: #: extraneous key [{k}] is not permitted, please reformat your input and try again."
            ))
        })
}

/// `POST /bedrock/model/{model}/invoke` for the embedding models (auth already verified).
async fn invoke(state: &MockState, model: &str, headers: &HeaderMap, json: Value) -> Response {
    let Value::Object(req) = json else {
        return error(
            400,
            "SerializationException",
            "the body is not a JSON object",
        );
    };
    let input = req
        .get("inputText")
        .or_else(|| req.get("texts"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut d = Directives::of(&json!({"model": model, "input": input}));
    if !state.faults_apply(&d, headers) {
        d = d.without_faults();
    }
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = d.status {
        return scripted_error(status, &d);
    }
    let model = model.split('?').next().unwrap_or(model);
    if model.contains("titan-embed-text") {
        let v2 = model.contains("titan-embed-text-v2");
        if let Some(refused) = extraneous(&req, if v2 { TITAN_V2_KEYS } else { &["inputText"] }) {
            return refused;
        }
        let Some(text) = req
            .get("inputText")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return validation("Malformed input request: #: required key [inputText] not found");
        };
        let dims = match req.get("dimensions") {
            None => 8,
            Some(v) => match v.as_u64() {
                Some(n @ (256 | 512 | 1024)) => n as usize,
                _ => {
                    return validation(
                        "Malformed input request: #/dimensions: 1024, 512 or 256 expected",
                    )
                }
            },
        };
        let tokens = d.prompt_tokens.unwrap_or_else(|| super::reply::words(text));
        let vector = super::reply::fake_vector(text, dims);
        let body = json!({"embedding": vector, "inputTextTokenCount": tokens,
            "embeddingsByType": {"float": vector}});
        return with_token_header(axum::Json(body).into_response(), tokens);
    }
    if model.contains("cohere.embed") {
        if let Some(refused) = extraneous(&req, COHERE_KEYS) {
            return refused;
        }
        let Some(texts) = req.get("texts").and_then(Value::as_array) else {
            return validation("Malformed input request: #: required key [texts] not found");
        };
        if texts.is_empty() || texts.len() > 96 {
            return validation("Malformed input request: #/texts: expected 1 to 96 items");
        }
        if req.get("input_type").and_then(Value::as_str).is_none() {
            return validation("Malformed input request: #: required key [input_type] not found");
        }
        let dims = req
            .get("output_dimension")
            .and_then(Value::as_u64)
            .map_or(8, |n| n as usize);
        let texts: Vec<&str> = texts.iter().filter_map(Value::as_str).collect();
        let tokens = d
            .prompt_tokens
            .unwrap_or_else(|| texts.iter().map(|t| super::reply::words(t)).sum());
        let vectors: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| super::reply::fake_vector(t, dims))
            .collect();
        let body = if req.get("embedding_types").is_some() {
            json!({"id": "mock-embed-1", "embeddings": {"float": vectors}, "texts": texts,
                "response_type": "embeddings_by_type"})
        } else {
            json!({"id": "mock-embed-1", "embeddings": vectors, "texts": texts,
                "response_type": "embeddings_floats"})
        };
        return with_token_header(axum::Json(body).into_response(), tokens);
    }
    validation(format!(
        "The provided model identifier is invalid for InvokeModel embeddings: {model}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_and_encoding() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30"), None);
        assert_eq!(uri_encode(b"v1%3A0 x"), "v1%253A0%20x");
        assert_eq!(uri_decode("a%3Ab%2"), b"a:b%2".to_vec());
    }
}

//! The Azure OpenAI dialect of the mock, under `/azure`:
//!
//! - `POST /azure/openai/deployments/{deployment}/{chat/completions|embeddings}?api-version=…` (classic: the
//!   deployment in the path picks the model; without `api-version` Azure answers 404 `Resource not found`);
//! - `POST /azure/openai/v1/{chat/completions|embeddings}` (v1: `model` in the body is the deployment).
//!
//! Auth: `api-key: <key>` or `Authorization: Bearer <token>`, else 401 (Azure's wording). Directives come from
//! the deployment name (`gpt-4o?status=429`), the body's `model` and `[mock:…]` tags, as elsewhere.
//!
//! Azure's quirks, always on: a stream's first chunk is `{"id":"","choices":[],"created":0,"model":"",
//! "object":"","prompt_filter_results":[…]}`; every content chunk's choice has `content_filter_results`;
//! one annotation-only chunk (`choices[0]` with only `content_filter_results` and an empty delta, as Azure
//! sends when it finishes scanning) precedes the finish; plain answers carry `prompt_filter_results` and
//! per-choice `content_filter_results`. `finish=content_filter` ends with `finish_reason: "content_filter"`
//! (output filtered); `status=400&code=content_filter` is Azure's filtered-prompt 400 with `innererror`; a
//! 429 carries `retry-after-ms` (with `retry_after=S`, also `retry-after`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{record, Directives, MockState};

const CREATED: u64 = 1_700_000_000;

fn filters() -> Value {
    json!({"hate": {"filtered": false, "severity": "safe"}, "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"}, "violence": {"filtered": false, "severity": "safe"}})
}

fn prompt_filter_results() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": false, "severity": "safe"},
        "jailbreak": {"filtered": false, "detected": false}, "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"}, "violence": {"filtered": false, "severity": "safe"}}}])
}

fn error(status: u16, d: &Directives) -> Response {
    let message = d
        .message
        .clone()
        .unwrap_or_else(|| format!("mock azure error {status}"));
    let mut body = json!({"error": {"message": message, "type": d.error_type.clone(), "param": null,
        "code": d.code.clone().unwrap_or_else(|| status.to_string())}});
    if d.code.as_deref() == Some("content_filter") {
        body["error"]["message"] = json!("The response was filtered due to the prompt triggering Azure OpenAI's content management policy.");
        body["error"]["param"] = json!("prompt");
        body["error"]["innererror"] = json!({"code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {"hate": {"filtered": false, "severity": "safe"},
                "jailbreak": {"filtered": true, "detected": true}, "self_harm": {"filtered": false, "severity": "safe"},
                "sexual": {"filtered": false, "severity": "safe"}, "violence": {"filtered": false, "severity": "safe"}}});
    }
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    if status == axum::http::StatusCode::TOO_MANY_REQUESTS {
        let secs = d
            .retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if let Ok(v) = (secs * 1000 + 250).to_string().parse() {
            response.headers_mut().insert("retry-after-ms", v);
        }
    }
    if let Some(ra) = d.retry_after.as_deref().and_then(|v| v.parse().ok()) {
        response.headers_mut().insert("retry-after", ra);
    }
    response
}

fn plain_error(status: u16, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    let api_key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.is_empty());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|v| !v.is_empty());
    api_key || bearer
}

/// `/azure/openai/deployments/{deployment}/{operation}?api-version=…`.
pub(super) async fn deployment(
    State(state): State<MockState>,
    Path((deployment, operation)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("", |p| p.as_str()).to_string();
    answer(
        &state,
        path,
        Some(deployment),
        query.get("api-version").cloned(),
        &operation,
        &headers,
        &body,
    )
    .await
}

/// `/azure/openai/v1/{operation}`.
pub(super) async fn v1(
    State(state): State<MockState>,
    Path(operation): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("", |p| p.as_str()).to_string();
    answer(&state, path, None, None, &operation, &headers, &body).await
}

async fn answer(
    state: &MockState,
    path: String,
    deployment: Option<String>,
    api_version: Option<String>,
    operation: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Ok(mut json) = serde_json::from_slice::<Value>(body) else {
        return super::reply::bad_json();
    };
    record(state, path, headers, json.clone(), body);
    if !authorized(headers) {
        return plain_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.");
    }
    if deployment.is_some() && api_version.is_none() {
        return plain_error(404, "404", "Resource not found");
    }
    match &deployment {
        // The deployment picks the model; the body's `model` is ignored by Azure.
        Some(d) => {
            json["model"] = json!(d);
        }
        None if json.get("model").and_then(Value::as_str).is_none() => {
            return plain_error(400, "BadRequest", "model is required");
        }
        None => {}
    }
    let mut directives = Directives::of(&json);
    if !state.faults_apply(&directives, headers) {
        directives = directives.without_faults();
    }
    match operation {
        "chat/completions" | "chat" => chat(&json, directives).await,
        "embeddings" => {
            if let Some(status) = directives.status {
                return error(status, &directives);
            }
            super::reply::embeddings(&json, directives).await
        }
        other => plain_error(404, "404", &format!("no operation {other:?}")),
    }
}

struct Plan {
    model: String,
    chunks: u64,
    prompt: u64,
    completion: u64,
    cached: u64,
    tool: Option<String>,
    finish: String,
}

impl Plan {
    fn of(req: &Value, d: &Directives) -> Self {
        let chunks = d.chunks.unwrap_or(4);
        let model = req.get("model").and_then(Value::as_str).unwrap_or("gpt-4o");
        let answering_tool = req
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("tool");
        let tool = (!answering_tool
            && req.get("tool_choice").and_then(Value::as_str) != Some("none"))
        .then(|| {
            req.get("tools")?
                .as_array()?
                .first()?
                .pointer("/function/name")?
                .as_str()
                .map(str::to_string)
        })
        .flatten();
        let finish = d
            .finish
            .clone()
            .unwrap_or_else(|| if tool.is_some() { "tool_calls" } else { "stop" }.to_string());
        Self {
            model: model.split('?').next().unwrap_or(model).to_string(),
            chunks,
            prompt: d
                .prompt_tokens
                .unwrap_or_else(|| super::reply::prompt_tokens(req)),
            completion: d.completion_tokens.unwrap_or(chunks),
            cached: d.cached_tokens.unwrap_or(0),
            tool,
            finish,
        }
    }

    fn usage(&self) -> Value {
        json!({"prompt_tokens": self.prompt, "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
    }
}

async fn chat(req: &Value, d: Directives) -> Response {
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = d.status {
        return error(status, &d);
    }
    let plan = Plan::of(req, &d);
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        tokio::spawn(async move {
            let _ = stream(&plan, &d, include_usage, &tx).await;
        });
        return Response::builder()
            .header("content-type", "text/event-stream; charset=utf-8")
            .body(Body::from_stream(ReceiverStream::new(rx)))
            .unwrap_or_default();
    }
    let message = match &plan.tool {
        Some(name) => json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
            {"id": "call_azure_1", "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}]}),
        None => {
            let content: String = (0..plan.chunks).map(|i| format!("tok{i} ")).collect();
            json!({"role": "assistant", "content": content, "refusal": null})
        }
    };
    axum::Json(
        json!({"id": "chatcmpl-azure-mock", "object": "chat.completion", "created": CREATED,
        "model": plan.model, "system_fingerprint": "fp_azure",
        "prompt_filter_results": prompt_filter_results(),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": plan.finish,
            "content_filter_results": filters()}],
        "usage": plan.usage()}),
    )
    .into_response()
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn send(tx: &Tx, v: &Value) -> Result<(), ()> {
    tx.send(Ok(Bytes::from(format!("data: {v}\n\n"))))
        .await
        .map_err(|_| ())
}

async fn stream(plan: &Plan, d: &Directives, include_usage: bool, tx: &Tx) -> Result<(), ()> {
    if d.reset_after == Some(0) {
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        return Ok(());
    }
    // Azure's empty first chunk: prompt annotations only.
    send(
        tx,
        &json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
        "prompt_filter_results": prompt_filter_results()}),
    )
    .await?;
    let envelope = |choice: Value| {
        let mut c = json!({"id": "chatcmpl-azure-mock", "object": "chat.completion.chunk", "created": CREATED,
            "model": plan.model, "system_fingerprint": "fp_azure", "choices": [choice]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    send(
        tx,
        &envelope(
            json!({"index": 0, "delta": {"role": "assistant", "content": ""},
        "logprobs": null, "finish_reason": null, "content_filter_results": {}}),
        ),
    )
    .await?;
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
            send(tx, &json!({"error": {"message": "The server had an error while processing your request.",
                "type": "server_error", "param": null, "code": "mock_stream_error"}}))
            .await?;
            return Ok(());
        }
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
        let delta = match (&plan.tool, i) {
            (Some(name), 0) => {
                json!({"tool_calls": [{"index": 0, "id": "call_azure_1", "type": "function",
                "function": {"name": name, "arguments": ""}}]})
            }
            (Some(_), 1) => {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})
            }
            (Some(_), 2) => {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})
            }
            (Some(_), _) => json!({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}),
            (None, _) => json!({ "content": format!("tok{i} ") }),
        };
        send(
            tx,
            &envelope(
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": null,
            "content_filter_results": filters()}),
            ),
        )
        .await?;
    }
    // An annotation-only chunk, then the finish.
    send(
        tx,
        &envelope(json!({"index": 0, "delta": {}, "finish_reason": null,
        "content_filter_results": filters()})),
    )
    .await?;
    send(
        tx,
        &envelope(
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": plan.finish,
        "content_filter_results": {}}),
        ),
    )
    .await?;
    if include_usage {
        let mut u = envelope(json!(null));
        u["choices"] = json!([]);
        u["usage"] = plan.usage();
        send(tx, &u).await?;
    }
    tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n")))
        .await
        .map_err(|_| ())
}

//! The provider conformance suite (issue #4): ONE table of providers × ONE list of cases, every case run against
//! every provider through the OpenAI-compatible `/v1/chat/completions` endpoint, each provider configured
//! against the mock upstream speaking its own wire format. The same requests go to every provider; a (provider,
//! case) that cannot pass because of a real gateway gap is listed in [`KNOWN_GAPS`] with its reason, and the
//! suite then checks that the gap still fails the way it is recorded (so a fix shows up as a failure to
//! update the table, never as a silently weaker assertion).
//!
//! Run: `cargo test -p tollgate-tests --test e2e conformance:: -- --nocapture` (prints the matrix the README cites).

use crate::common;

use std::fmt::Write as _;

use common::provider::{delta_text, error_chunks, weather_tool_turns, weather_tools};
use common::{request_id, sse_payloads, user, Harness};
use serde_json::{json, Value};
use tollgate_schemas::{Outcome, UsageEvent, UsageSource};
use tollgate_tests::mock_upstream::bedrock::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};

// ---- the provider table ----------------------------------------------------------------------------------

/// The wire shape a tool result takes upstream (what the mock must have received in case `tool_results`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ToolResultWire {
    /// OpenAI's `{"role":"tool","tool_call_id"}` (the OpenAI-wire kinds, and DashScope native's `input.messages`).
    OpenAi,
    /// Anthropic `tool_result` block (`tool_use_id`).
    Anthropic,
    /// Gemini `functionResponse` part (by function name).
    Gemini,
    /// Bedrock Converse `toolResult` block (`toolUseId`).
    Bedrock,
    /// Tencent API 3.0 `{"Role":"tool","ToolCallId"}`.
    Hunyuan,
    /// Baidu wenxinworkshop `{"role":"function","name"}`.
    Qianfan,
}

/// How a dialect reports usage in a stream: once at the end, or cumulatively on every chunk (then a cut stream
/// still carries the provider's count of what was sent, and the gateway records it instead of an estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamUsage {
    Final,
    Cumulative,
}

struct Provider {
    /// Row label, public model name and config provider name (`cf-{id}`).
    id: &'static str,
    /// `kind` in the config and `provider_kind` on the event.
    kind: &'static str,
    /// The provider table's lines besides `kind` (with the harness's `{mock_*}` placeholders).
    config: String,
    /// The upstream model of the deployment.
    model: &'static str,
    /// An explicit deployment price (self-hosted kinds: there is no list price).
    price: Option<&'static str>,
    /// Strings that must never reach a client (keys, secrets, key material).
    secrets: Vec<&'static str>,
    tool_result: ToolResultWire,
    /// Whether the wire (as the mock speaks it) carries cached-read / reasoning token counts; `Err` says why not.
    cached: Result<(), &'static str>,
    reasoning: Result<(), &'static str>,
    stream_usage: StreamUsage,
    /// Key slots of one deployment (each is tried before failing over to the next deployment).
    slots: u32,
}

const SELF_HOSTED_PRICE: &str =
    r#"price = { input_per_mtok = "0.10", output_per_mtok = "0.40", currency = "USD" }"#;

/// The price of every provider's `{id}-usage` deployment: each token class at its own rate, so the cost shows
/// whether cached-read and reasoning tokens were priced as such.
const USAGE_PRICE: &str = r#"price = { input_per_mtok = "1", cached_read_per_mtok = "0.25", cache_write_per_mtok = "1.25", output_per_mtok = "2", reasoning_per_mtok = "4", currency = "USD" }"#;

fn openai_wire(
    id: &'static str,
    kind: &'static str,
    base: &str,
    model: &'static str,
    keys: [&'static str; 2],
) -> Provider {
    Provider {
        id,
        kind,
        config: format!(
            "base_url = \"{base}\"\napi_keys = [\"{}\", \"{}\"]",
            keys[0], keys[1]
        ),
        model,
        price: None,
        secrets: keys.to_vec(),
        tool_result: ToolResultWire::OpenAi,
        cached: Ok(()),
        reasoning: Ok(()),
        stream_usage: StreamUsage::Final,
        slots: 2,
    }
}

fn providers() -> Vec<Provider> {
    let vertex = "base_url = \"{mock_vertex}\"\nproject = \"proj-1\"\nregion = \"us-central1\"\n\
        service_account_file = \"{fixtures}/google-service-account/service-account.json\"\n\
        token_url = \"{mock_token_url}\"";
    let no_reasoning = "the mock's dialect reports no reasoning-token count";
    vec![
        openai_wire(
            "openai",
            "openai",
            "{mock_openai}",
            "gpt-4o-mini",
            ["sk-cf-openai-a", "sk-cf-openai-b"],
        ),
        Provider {
            config: "base_url = \"{mock_azure}\"\napi_keys = [\"az-key-a\", \"az-key-b\"]\n\
                azure = { api_version = \"2024-10-21\" }"
                .into(),
            reasoning: Err(no_reasoning),
            ..openai_wire(
                "azure",
                "azure",
                "",
                "gpt-4o-2024-11-20",
                ["az-key-a", "az-key-b"],
            )
        },
        Provider {
            id: "anthropic",
            kind: "anthropic",
            config: "base_url = \"{mock_anthropic}\"\napi_keys = [\"sk-ant-a\", \"sk-ant-b\"]".into(),
            model: "claude-sonnet-4-5",
            price: None,
            secrets: vec!["sk-ant-a", "sk-ant-b"],
            tool_result: ToolResultWire::Anthropic,
            cached: Ok(()),
            reasoning: Ok(()),
            stream_usage: StreamUsage::Final,
            slots: 2,
        },
        Provider {
            id: "gemini",
            kind: "gemini",
            config: "base_url = \"{mock_gemini}\"\napi_keys = [\"AIza-cf-a\", \"AIza-cf-b\"]".into(),
            model: "gemini-2.5-flash",
            price: None,
            secrets: vec!["AIza-cf-a", "AIza-cf-b"],
            tool_result: ToolResultWire::Gemini,
            cached: Ok(()),
            reasoning: Ok(()),
            stream_usage: StreamUsage::Final,
            slots: 2,
        },
        Provider {
            id: "vertex-google",
            kind: "vertex",
            config: vertex.into(),
            model: "gemini-2.5-flash",
            price: None,
            secrets: vec!["PRIVATE KEY"],
            tool_result: ToolResultWire::Gemini,
            cached: Ok(()),
            reasoning: Ok(()),
            stream_usage: StreamUsage::Final,
            slots: 1,
        },
        Provider {
            id: "vertex-anthropic",
            kind: "vertex",
            config: vertex.into(),
            model: "claude-sonnet-4-5@20250929",
            price: None,
            secrets: vec!["PRIVATE KEY"],
            tool_result: ToolResultWire::Anthropic,
            cached: Ok(()),
            reasoning: Ok(()),
            stream_usage: StreamUsage::Final,
            slots: 1,
        },
        Provider {
            id: "bedrock",
            kind: "bedrock",
            config: format!(
                "base_url = \"{{mock_bedrock}}\"\naws = {{ region = \"us-east-1\", \
                 access_key_id = \"{ACCESS_KEY_ID}\", secret_access_key = \"{SECRET_ACCESS_KEY}\" }}"
            ),
            model: "anthropic.claude-sonnet-4-5-20250929-v1:0",
            price: None,
            secrets: vec![SECRET_ACCESS_KEY],
            tool_result: ToolResultWire::Bedrock,
            cached: Ok(()),
            reasoning: Err("Converse usage has no reasoning-token count"),
            stream_usage: StreamUsage::Final,
            // One SigV4 credential.
            slots: 1,
        },
        openai_wire(
            "qianfan",
            "qianfan",
            "{mock_openai}",
            "ernie-4.0-8k",
            ["qf-v2-key-a", "qf-v2-key-b"],
        ),
        Provider {
            id: "qianfan-v1",
            kind: "qianfan-v1",
            config: "base_url = \"{mock_qianfan}\"\n\
                api_keys = [\"qf-mock-ak-a:qf-mock-sk-a\", \"qf-mock-ak-b:qf-mock-sk-b\"]"
                .into(),
            model: "completions_pro",
            price: None,
            secrets: vec!["qf-mock-sk-a", "qf-mock-sk-b"],
            tool_result: ToolResultWire::Qianfan,
            cached: Err("wenxinworkshop usage has no cached-token count"),
            reasoning: Err("wenxinworkshop usage has no reasoning-token count"),
            stream_usage: StreamUsage::Final,
            slots: 2,
        },
        openai_wire(
            "dashscope",
            "dashscope",
            "{mock_openai}",
            "qwen-plus",
            ["sk-ds-cf-a", "sk-ds-cf-b"],
        ),
        Provider {
            id: "dashscope-native",
            kind: "dashscope-native",
            config: "base_url = \"{mock_dashscope}\"\napi_keys = [\"sk-dsn-a\", \"sk-dsn-b\"]".into(),
            model: "qwen-plus",
            price: None,
            secrets: vec!["sk-dsn-a", "sk-dsn-b"],
            tool_result: ToolResultWire::OpenAi,
            cached: Ok(()),
            reasoning: Err(no_reasoning),
            stream_usage: StreamUsage::Cumulative,
            slots: 2,
        },
        Provider {
            stream_usage: StreamUsage::Cumulative,
            ..openai_wire(
                "modelarts",
                "modelarts",
                "{mock_modelarts}",
                "deepseek-v3",
                ["sk-maas-a", "sk-maas-b"],
            )
        },
        openai_wire(
            "hunyuan",
            "hunyuan",
            "{mock_openai}",
            "hunyuan-turbo",
            ["sk-hy-a", "sk-hy-b"],
        ),
        Provider {
            id: "hunyuan-native",
            kind: "hunyuan-native",
            config: "base_url = \"{mock_hunyuan}\"\n\
                api_keys = [\"AKIDmockTollgateA:tc3-mock-secret-key-a\", \"AKIDmockTollgateB:tc3-mock-secret-key-b\"]\n\
                region = \"ap-guangzhou\""
                .into(),
            model: "hunyuan-turbo",
            price: None,
            secrets: vec!["tc3-mock-secret-key-a", "tc3-mock-secret-key-b"],
            tool_result: ToolResultWire::Hunyuan,
            cached: Ok(()),
            reasoning: Err(no_reasoning),
            stream_usage: StreamUsage::Cumulative,
            slots: 2,
        },
        openai_wire(
            "zhipu",
            "zhipu",
            "{mock_zhipu}",
            "glm-4-plus",
            ["zp-a.secret-a", "zp-b.secret-b"],
        ),
        Provider {
            reasoning: Err("Moonshot usage has no reasoning-token count (cached_tokens only)"),
            ..openai_wire(
                "moonshot",
                "moonshot",
                "{mock_moonshot}",
                "kimi-k2",
                ["sk-moon-a", "sk-moon-b"],
            )
        },
        openai_wire(
            "zeroone",
            "zeroone",
            "{mock_openai}",
            "yi-lightning",
            ["sk-yi-a", "sk-yi-b"],
        ),
        openai_wire(
            "sophnet",
            "sophnet",
            "{mock_openai}",
            "DeepSeek-V3",
            ["sk-soph-a", "sk-soph-b"],
        ),
        Provider {
            price: Some(SELF_HOSTED_PRICE),
            ..openai_wire(
                "vllm",
                "vllm",
                "{mock_openai}",
                "meta-llama/Llama-3.1-8B-Instruct",
                ["vllm-key-a", "vllm-key-b"],
            )
        },
        Provider {
            config: "base_url = \"{mock_openai}\"".into(),
            price: Some(SELF_HOSTED_PRICE),
            secrets: vec![],
            // No key: one slot.
            slots: 1,
            ..openai_wire("ollama", "ollama", "", "llama3.2", ["", ""])
        },
        Provider {
            price: Some(SELF_HOSTED_PRICE),
            ..openai_wire(
                "llamacpp",
                "llamacpp",
                "{mock_openai}",
                "qwen2.5-7b-instruct",
                ["llama-key-a", "llama-key-b"],
            )
        },
    ]
}

/// Every provider's tables: `cf-{id}` (and an identical `cf-{id}-alt` to fail over to), and the models
/// `{id}` (default attempts), `{id}-once` (one attempt), `{id}-usage` (priced per token class), and
/// `{id}-429` / `{id}-503` (first tier answers that status, scripted through the upstream model name; the
/// second tier is the alt provider).
fn config(providers: &[Provider]) -> String {
    let mut out = String::new();
    for p in providers {
        let price = p.price.map(|pr| format!(", {pr}")).unwrap_or_default();
        let (id, kind, model) = (p.id, p.kind, p.model);
        for name in [format!("cf-{id}"), format!("cf-{id}-alt")] {
            let _ = write!(
                out,
                "\n[providers.{name}]\nkind = \"{kind}\"\n{}\nfirst_byte_timeout_ms = 2000\nstream_idle_timeout_ms = 1500\n",
                p.config
            );
        }
        let _ = write!(
            out,
            r#"
[models."{id}"]
deployments = [{{ provider = "cf-{id}", model = "{model}"{price} }}]

[models."{id}-once"]
deployments = [{{ provider = "cf-{id}", model = "{model}"{price} }}]
max_attempts = 1

[models."{id}-usage"]
deployments = [{{ provider = "cf-{id}", model = "{model}", {USAGE_PRICE} }}]

[models."{id}-429"]
tiers = [[{{ provider = "cf-{id}", model = "{model}?status=429&retry_after=1"{price} }}], [{{ provider = "cf-{id}-alt", model = "{model}"{price} }}]]

[models."{id}-503"]
tiers = [[{{ provider = "cf-{id}", model = "{model}?status=503"{price} }}], [{{ provider = "cf-{id}-alt", model = "{model}"{price} }}]]
"#
        );
    }
    out
}

// ---- the case list ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Plain,
    Stream,
    Tools,
    ToolsStream,
    ToolResults,
    CachedReasoning,
    BadRequest400,
    Auth401,
    RateLimit429Failover,
    RateLimit429NoAlternative,
    Server5xxFailover,
    StreamError,
    StreamCut,
}

const CASES: &[Case] = &[
    Case::Plain,
    Case::Stream,
    Case::Tools,
    Case::ToolsStream,
    Case::ToolResults,
    Case::CachedReasoning,
    Case::BadRequest400,
    Case::Auth401,
    Case::RateLimit429Failover,
    Case::RateLimit429NoAlternative,
    Case::Server5xxFailover,
    Case::StreamError,
    Case::StreamCut,
];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Stream => "stream",
            Self::Tools => "tools",
            Self::ToolsStream => "tools-stream",
            Self::ToolResults => "tool-results",
            Self::CachedReasoning => "cached+reasoning",
            Self::BadRequest400 => "400",
            Self::Auth401 => "401",
            Self::RateLimit429Failover => "429-failover",
            Self::RateLimit429NoAlternative => "429-alone",
            Self::Server5xxFailover => "5xx-failover",
            Self::StreamError => "stream-error",
            Self::StreamCut => "stream-cut",
        }
    }
}

/// (provider id, case, why it fails, a substring of the failure it produces today). The suite asserts the
/// listed case still fails with that message: fixing the gap means removing its row.
const KNOWN_GAPS: &[(&str, Case, &str, &str)] = &[];

// ---- helpers ---------------------------------------------------------------------------------------------

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

async fn json_of(r: reqwest::Response) -> Result<(u16, Value, String), String> {
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("body: {e}"))?;
    let body =
        serde_json::from_str(&text).map_err(|e| format!("{status} non-JSON body {text:?}: {e}"))?;
    Ok((status, body, text))
}

/// A streamed answer: (status, content type, chunks as JSON, whether `[DONE]` was last, raw text).
struct Streamed {
    chunks: Vec<Value>,
    done_last: bool,
    raw: String,
}

async fn stream_of(r: reqwest::Response) -> Result<Streamed, String> {
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let raw = r.text().await.map_err(|e| format!("body: {e}"))?;
    ensure!(status == 200, "stream status {status}: {raw}");
    ensure!(
        ctype.starts_with("text/event-stream"),
        "content type {ctype:?}"
    );
    let payloads = sse_payloads(&raw);
    let done_last = payloads.last().map(String::as_str) == Some("[DONE]");
    let dones = payloads.iter().filter(|p| *p == "[DONE]").count();
    ensure!(dones <= 1, "{dones} [DONE] events: {raw}");
    let mut chunks = Vec::new();
    for p in payloads.iter().filter(|p| *p != "[DONE]") {
        chunks.push(serde_json::from_str(p).map_err(|e| format!("chunk {p:?}: {e}"))?);
    }
    Ok(Streamed {
        chunks,
        done_last,
        raw,
    })
}

/// An OpenAI-shaped error body.
fn openai_error(body: &Value) -> Check {
    ensure!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
            && body["error"]["type"].is_string(),
        "not an OpenAI-shaped error: {body}"
    );
    Ok(())
}

/// The event is the provider's, and its cost is recorded: priced, non-zero, reporting amount consistent.
fn event_priced(e: &UsageEvent, p: &Provider) -> Check {
    ensure!(
        e.provider_kind == p.kind,
        "provider_kind {:?}, expected {:?}",
        e.provider_kind,
        p.kind
    );
    let c = &e.cost;
    ensure!(!c.price_missing && c.nanos > 0, "cost not recorded: {c:?}");
    ensure!(c.reporting_currency == "USD", "reporting currency {c:?}");
    match c.currency.as_str() {
        "USD" => ensure!(c.reporting_nanos == c.nanos, "USD cost {c:?}"),
        // `[pricing.rates] CNY = "0.14"` in the harness config.
        "CNY" => {
            let expected = u128::from(c.nanos) * 14 / 100;
            ensure!(
                u128::from(c.reporting_nanos).abs_diff(expected) <= 1,
                "CNY cost not converted at 0.14: {c:?}"
            );
        }
        other => return Err(format!("unexpected currency {other:?}: {c:?}")),
    }
    Ok(())
}

fn event_usage_is(e: &UsageEvent, usage: &Value) -> Check {
    let (pt, ct) = (
        usage["prompt_tokens"].as_u64().unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap_or(0),
    );
    ensure!(pt > 0 && ct > 0, "usage not > 0: {usage}");
    ensure!(
        e.usage.prompt_tokens == pt && e.usage.completion_tokens == ct,
        "event usage {:?} differs from the client's {usage}",
        e.usage
    );
    ensure!(
        e.usage_source == UsageSource::Provider,
        "usage_source {:?}",
        e.usage_source
    );
    Ok(())
}

/// Looks for an object anywhere in `v` that `pred` accepts.
fn find(v: &Value, pred: &dyn Fn(&serde_json::Map<String, Value>) -> bool) -> bool {
    match v {
        Value::Object(o) => pred(o) || o.values().any(|x| find(x, pred)),
        Value::Array(a) => a.iter().any(|x| find(x, pred)),
        _ => false,
    }
}

fn has(o: &serde_json::Map<String, Value>, k: &str, v: &str) -> bool {
    o.get(k).and_then(Value::as_str) == Some(v)
}

// ---- the cases -------------------------------------------------------------------------------------------

async fn run(h: &Harness, p: &Provider, case: Case) -> Check {
    let id = p.id;
    match case {
        Case::Plain => {
            let r = h
                .chat(&json!({"model": id, "messages": user("Say hello")}))
                .await;
            let rid = request_id(&r);
            let (status, body, _) = json_of(r).await?;
            ensure!(status == 200, "status {status}: {body}");
            let choices = body["choices"].as_array().map_or(0, Vec::len);
            ensure!(choices == 1, "{choices} choices: {body}");
            ensure!(
                body["choices"][0]["message"]["content"]
                    .as_str()
                    .is_some_and(|c| !c.trim().is_empty()),
                "no content: {body}"
            );
            let e = h.wait_event(&rid).await;
            ensure!(e.outcome == Outcome::Success, "outcome {:?}", e.outcome);
            event_usage_is(&e, &body["usage"])?;
            event_priced(&e, p)
        }
        Case::Stream => {
            let r = h
                .chat(
                    &json!({"model": id, "messages": user("Say hello"), "stream": true,
                    "stream_options": {"include_usage": true}}),
                )
                .await;
            let rid = request_id(&r);
            let s = stream_of(r).await?;
            ensure!(s.done_last, "does not end with [DONE]: {}", s.raw);
            ensure!(error_chunks(&s.chunks).is_empty(), "error chunk: {}", s.raw);
            ensure!(
                !delta_text(&s.chunks, "content").trim().is_empty(),
                "no content deltas: {}",
                s.raw
            );
            let usage: Vec<&Value> = s
                .chunks
                .iter()
                .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
                .collect();
            ensure!(usage.len() == 1, "{} usage chunks: {}", usage.len(), s.raw);
            let e = h.wait_event(&rid).await;
            ensure!(
                e.outcome == Outcome::Success && e.stream,
                "outcome {:?}",
                e.outcome
            );
            event_usage_is(&e, &usage[0]["usage"])?;
            event_priced(&e, p)
        }
        Case::Tools => {
            let r = h
                .chat(
                    &json!({"model": id, "messages": user("Weather in Paris?"), "tools": weather_tools()}),
                )
                .await;
            let rid = request_id(&r);
            let (status, body, _) = json_of(r).await?;
            ensure!(status == 200, "status {status}: {body}");
            let choice = &body["choices"][0];
            ensure!(
                choice["finish_reason"] == "tool_calls",
                "finish_reason {}",
                choice["finish_reason"]
            );
            let call = &choice["message"]["tool_calls"][0];
            ensure!(
                call["id"].as_str().is_some_and(|i| !i.is_empty()),
                "no call id: {body}"
            );
            ensure!(call["function"]["name"] == "get_weather", "name: {body}");
            let args: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or(""))
                    .map_err(|e| format!("arguments not JSON ({e}): {body}"))?;
            ensure!(args["city"] == "Paris", "arguments {args}");
            let e = h.wait_event(&rid).await;
            ensure!(e.outcome == Outcome::Success, "outcome {:?}", e.outcome);
            event_usage_is(&e, &body["usage"])
        }
        Case::ToolsStream => {
            let r = h
                .chat(
                    &json!({"model": id, "messages": user("Weather in Paris?"), "tools": weather_tools(),
                    "stream": true}),
                )
                .await;
            let s = stream_of(r).await?;
            ensure!(s.done_last, "does not end with [DONE]: {}", s.raw);
            ensure!(error_chunks(&s.chunks).is_empty(), "error chunk: {}", s.raw);
            let (mut call_id, mut name, mut args) = (String::new(), String::new(), String::new());
            for c in &s.chunks {
                for call in c["choices"][0]["delta"]["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    ensure!(call["index"] == 0, "more than one call: {}", s.raw);
                    call_id.push_str(call["id"].as_str().unwrap_or_default());
                    name.push_str(call["function"]["name"].as_str().unwrap_or_default());
                    args.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
                }
            }
            ensure!(!call_id.is_empty(), "no call id: {}", s.raw);
            ensure!(name == "get_weather", "name {name:?}: {}", s.raw);
            let args: Value = serde_json::from_str(&args)
                .map_err(|e| format!("arguments {args:?} not JSON ({e})"))?;
            ensure!(args["city"] == "Paris", "arguments {args}");
            ensure!(
                s.chunks
                    .iter()
                    .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"),
                "no finish_reason tool_calls: {}",
                s.raw
            );
            Ok(())
        }
        Case::ToolResults => {
            let before = h.mock.requests().len();
            let r = h
                .chat(&json!({"model": id, "tools": weather_tools(),
                    "messages": weather_tool_turns("sunny, 21C")}))
                .await;
            let (status, body, _) = json_of(r).await?;
            ensure!(status == 200, "status {status}: {body}");
            let sent = h.mock.requests();
            ensure!(
                sent.len() == before + 1,
                "{} upstream requests",
                sent.len() - before
            );
            let sent = &sent[before];
            let shape: &dyn Fn(&serde_json::Map<String, Value>) -> bool = match p.tool_result {
                ToolResultWire::OpenAi => {
                    &|o| has(o, "role", "tool") && has(o, "tool_call_id", "call_1")
                }
                ToolResultWire::Anthropic => {
                    &|o| has(o, "type", "tool_result") && has(o, "tool_use_id", "call_1")
                }
                ToolResultWire::Gemini => &|o| {
                    o.get("functionResponse")
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        == Some("get_weather")
                },
                ToolResultWire::Bedrock => &|o| {
                    o.get("toolResult")
                        .and_then(|f| f.get("toolUseId"))
                        .and_then(Value::as_str)
                        == Some("call_1")
                },
                ToolResultWire::Hunyuan => {
                    &|o| has(o, "Role", "tool") && has(o, "ToolCallId", "call_1")
                }
                ToolResultWire::Qianfan => {
                    &|o| has(o, "role", "function") && has(o, "name", "get_weather")
                }
            };
            ensure!(
                find(&sent.body, shape),
                "no {:?} tool result upstream: {}",
                p.tool_result,
                sent.body
            );
            ensure!(
                sent.raw.contains("sunny, 21C"),
                "tool output not sent: {}",
                sent.raw
            );
            Ok(())
        }
        Case::CachedReasoning => {
            let r = h
                .chat(&json!({"model": format!("{id}-usage"), "messages": user(
                    "Say hello [mock:prompt_tokens=1000&completion_tokens=500&cached_tokens=800&reasoning_tokens=200]")}))
                .await;
            let rid = request_id(&r);
            let (status, body, _) = json_of(r).await?;
            ensure!(status == 200, "status {status}: {body}");
            let u = &body["usage"];
            let client_cached = u["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0);
            let client_reasoning = u["completion_tokens_details"]["reasoning_tokens"]
                .as_u64()
                .unwrap_or(0);
            let e = h.wait_event(&rid).await;
            event_usage_is(&e, u)?;
            let ev = e.usage;
            ensure!(
                ev.cached_read_tokens == client_cached && ev.reasoning_tokens == client_reasoning,
                "event {ev:?} vs client {u}"
            );
            match p.cached {
                Ok(()) => ensure!(ev.cached_read_tokens == 800, "cached_read_tokens {ev:?}"),
                Err(_) => ensure!(ev.cached_read_tokens == 0, "cached tokens made up: {ev:?}"),
            }
            match p.reasoning {
                Ok(()) => ensure!(ev.reasoning_tokens == 200, "reasoning_tokens {ev:?}"),
                Err(_) => ensure!(ev.reasoning_tokens == 0, "reasoning tokens made up: {ev:?}"),
            }
            ensure!(ev.cache_write_tokens == 0, "cache writes made up: {ev:?}");
            // USAGE_PRICE per token, in nano-USD: input 1000, cached read 250, output 2000, reasoning 4000.
            let expected = (ev.prompt_tokens - ev.cached_read_tokens) * 1000
                + ev.cached_read_tokens * 250
                + (ev.completion_tokens - ev.reasoning_tokens) * 2000
                + ev.reasoning_tokens * 4000;
            let uncached = ev.prompt_tokens * 1000 + ev.completion_tokens * 2000;
            ensure!(
                e.cost.nanos == expected && e.cost.currency == "USD" && !e.cost.price_missing,
                "cost {:?}, expected {expected} nano-USD for {ev:?}",
                e.cost
            );
            if p.cached.is_ok() || p.reasoning.is_ok() {
                ensure!(
                    e.cost.nanos != uncached,
                    "cost {} equals the same tokens unclassified",
                    e.cost.nanos
                );
            }
            Ok(())
        }
        Case::BadRequest400 => {
            let before = h.mock.requests().len();
            let r = h
                .chat(&json!({"model": id, "messages": user("hi [mock:status=400]")}))
                .await;
            let rid = request_id(&r);
            let (status, body, _) = json_of(r).await?;
            ensure!(status == 400, "status {status}: {body}");
            openai_error(&body)?;
            let upstream = h.mock.requests().len() - before;
            ensure!(upstream == 1, "{upstream} upstream attempts for a 400");
            let e = h.wait_event(&rid).await;
            ensure!(
                e.attempts == 1 && e.http_status == 400,
                "event attempts {} status {}",
                e.attempts,
                e.http_status
            );
            Ok(())
        }
        Case::Auth401 => {
            let r = h
                .chat(&json!({"model": id, "messages": user("hi [mock:status=401]")}))
                .await;
            let rid = request_id(&r);
            let (status, body, text) = json_of(r).await?;
            ensure!(status == 502, "status {status}: {body}");
            openai_error(&body)?;
            ensure!(
                body["error"]["code"] == "upstream_auth_failed",
                "code {}",
                body["error"]["code"]
            );
            for s in &p.secrets {
                ensure!(!text.contains(s), "secret {s:?} in the error body: {text}");
            }
            let e = h.wait_event(&rid).await;
            ensure!(
                e.outcome == Outcome::UpstreamError && e.http_status == 502,
                "event {:?} {}",
                e.outcome,
                e.http_status
            );
            Ok(())
        }
        Case::RateLimit429Failover | Case::Server5xxFailover => {
            let model = if case == Case::RateLimit429Failover {
                format!("{id}-429")
            } else {
                format!("{id}-503")
            };
            let before = h.mock.requests().len();
            let r = h
                .chat(&json!({"model": model, "messages": user("Say hello")}))
                .await;
            let rid = request_id(&r);
            let (status, body, _) = json_of(r).await?;
            ensure!(status == 200, "status {status}: {body}");
            let upstream = h.mock.requests().len() - before;
            let e = h.wait_event(&rid).await;
            // Every key slot of the first deployment answers the status, then the alt deployment succeeds.
            let expected = p.slots + 1;
            ensure!(
                e.attempts == expected && upstream == expected as usize,
                "attempts {} (upstream saw {upstream}), expected {expected}",
                e.attempts
            );
            ensure!(
                e.outcome == Outcome::Success && e.provider == format!("cf-{id}-alt"),
                "event {:?} from {}",
                e.outcome,
                e.provider
            );
            event_usage_is(&e, &body["usage"])?;
            event_priced(&e, p)
        }
        Case::RateLimit429NoAlternative => {
            let r = h
                .chat(&json!({"model": format!("{id}-once"), "messages": user("hi [mock:status=429&retry_after=7]")}))
                .await;
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let (status, body, _) = json_of(r).await?;
            ensure!(status == 429, "status {status}: {body}");
            openai_error(&body)?;
            let secs: u64 = retry_after
                .as_deref()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("retry-after {retry_after:?}"))?;
            ensure!(secs >= 1, "retry-after {secs}");
            Ok(())
        }
        Case::StreamError | Case::StreamCut => {
            let tag = if case == Case::StreamError {
                "error_after=2"
            } else {
                "cut_after=2"
            };
            let r = h
                .chat(&json!({"model": format!("{id}-once"), "stream": true,
                    "messages": user(&format!("Say hello [mock:{tag}]"))}))
                .await;
            let rid = request_id(&r);
            let s = stream_of(r).await?;
            ensure!(s.done_last, "does not end with [DONE]: {}", s.raw);
            ensure!(
                !delta_text(&s.chunks, "content").is_empty(),
                "no content before the failure: {}",
                s.raw
            );
            let errors = error_chunks(&s.chunks);
            ensure!(
                errors.len() == 1,
                "{} error chunks: {}",
                errors.len(),
                s.raw
            );
            ensure!(
                errors[0]["error"]["message"].is_string(),
                "error chunk not OpenAI-shaped: {}",
                errors[0]
            );
            let last_chunk = s.chunks.last().map(|c| c.get("error").is_some());
            ensure!(
                last_chunk == Some(true),
                "error chunk is not last: {}",
                s.raw
            );
            let e = h.wait_event(&rid).await;
            ensure!(
                e.outcome == Outcome::UpstreamError,
                "outcome {:?}",
                e.outcome
            );
            if case == Case::StreamCut {
                let expected = match p.stream_usage {
                    StreamUsage::Final => UsageSource::Estimated,
                    StreamUsage::Cumulative => UsageSource::Provider,
                };
                ensure!(
                    e.usage_source == expected && e.usage.completion_tokens > 0,
                    "usage {:?} {:?}, expected {expected:?}",
                    e.usage_source,
                    e.usage
                );
            }
            Ok(())
        }
    }
}

// ---- the suite -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_passes_the_conformance_list() {
    let providers = providers();
    let config = config(&providers);
    // One gateway (and mock) per case, all cases at once; providers one after another within a case, so each
    // case can read the mock's recorded requests of its own call.
    let runs = CASES.iter().map(|&case| {
        let (config, providers) = (&config, &providers);
        async move {
            let h = Harness::start_with(config).await;
            let mut results = Vec::new();
            for p in providers {
                results.push(run(&h, p, case).await);
            }
            results
        }
    });
    let results = futures::future::join_all(runs).await;

    let mut failures = Vec::new();
    let mut matrix = String::new();
    let _ = write!(matrix, "| provider |");
    for c in CASES {
        let _ = write!(matrix, " {} |", c.name());
    }
    let _ = write!(matrix, "\n|---|");
    for _ in CASES {
        matrix.push_str("---|");
    }
    matrix.push('\n');
    for (pi, p) in providers.iter().enumerate() {
        let _ = write!(matrix, "| {} |", p.id);
        for (ci, &case) in CASES.iter().enumerate() {
            let result = &results[ci][pi];
            let gap = KNOWN_GAPS
                .iter()
                .find(|(gp, gc, _, _)| *gp == p.id && *gc == case);
            let cell = match (gap, result) {
                (None, Ok(())) => {
                    let na = (case == Case::CachedReasoning
                        && (p.cached.is_err() || p.reasoning.is_err()))
                    .then_some(if p.cached.is_err() && p.reasoning.is_err() {
                        " (neither)"
                    } else if p.cached.is_err() {
                        " (no cached)"
                    } else {
                        " (no reasoning)"
                    });
                    format!("✓{}", na.unwrap_or(""))
                }
                (None, Err(e)) => {
                    failures.push(format!("{} × {}: {e}", p.id, case.name()));
                    "FAIL".into()
                }
                (Some((_, _, _, observed)), Err(e)) if e.contains(observed) => "gap".into(),
                (Some((_, _, reason, observed)), Err(e)) => {
                    failures.push(format!(
                        "{} × {}: known gap ({reason}) fails differently: expected {observed:?} in {e}",
                        p.id,
                        case.name()
                    ));
                    "FAIL".into()
                }
                (Some((_, _, reason, _)), Ok(())) => {
                    failures.push(format!(
                        "{} × {}: listed as a known gap ({reason}) but passes: remove it from KNOWN_GAPS",
                        p.id,
                        case.name()
                    ));
                    "FAIL".into()
                }
            };
            let _ = write!(matrix, " {cell} |");
        }
        matrix.push('\n');
    }
    println!("{matrix}");
    for (p, c, reason, _) in KNOWN_GAPS {
        println!("known gap: {p} × {}: {reason}", c.name());
    }
    for p in &providers {
        for (what, support) in [("cached", p.cached), ("reasoning", p.reasoning)] {
            if let Err(why) = support {
                println!("n/a: {} × {what} tokens: {why}", p.id);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} (provider, case) pairs failed:\n{}\n\n{matrix}",
        failures.len(),
        providers.len() * CASES.len(),
        failures.join("\n")
    );
}

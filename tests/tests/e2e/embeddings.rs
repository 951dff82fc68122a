//! `/v1/embeddings` through the kinds whose wire is not OpenAI's: the Gemini API (`:batchEmbedContents`),
//! Vertex AI (`:predict`, service-account token) and Bedrock (`InvokeModel`, SigV4 verified by the mock; Titan
//! one text per call, Cohere in batches) — single and array inputs, `dimensions`, base64 vectors, usage and its
//! cost on the usage event (provider counts, or the gateway's estimate marked `estimated` when the Gemini API
//! says none), 429 / 5xx failing over, a throttled call among several, and what is refused before any call.

use crate::common;

use base64::Engine;
use common::{request_id, Harness};
use serde_json::{json, Value};
use tollgate_schemas::{Endpoint, Outcome, UsageSource};
use tollgate_tests::mock_upstream::bedrock::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use tollgate_tests::mock_upstream::fake_vector;

const TITAN: &str = "amazon.titan-embed-text-v2:0";
const BEDROCK_KEY: &str = "ABSKbW9jay1iZWRyb2NrLWFwaS1rZXk=";

fn config() -> String {
    format!(
        r#"
[providers.gem]
kind = "gemini"
base_url = "{{mock_gemini}}"
api_keys = ["AIza-a"]

[providers.gem-b]
kind = "gemini"
base_url = "{{mock_gemini}}"
api_keys = ["AIza-b"]

[providers.vtx]
kind = "vertex"
base_url = "{{mock_vertex}}"
project = "proj-1"
region = "us-central1"
service_account_file = "{{fixtures}}/google-service-account/service-account.json"
token_url = "{{mock_token_url}}"

[providers.aws]
kind = "bedrock"
base_url = "{{mock_bedrock}}"
aws = {{ region = "us-east-1", access_key_id = "{ACCESS_KEY_ID}", secret_access_key = "{SECRET_ACCESS_KEY}" }}

[providers.aws-key]
kind = "bedrock"
base_url = "{{mock_bedrock}}"
api_keys = ["{BEDROCK_KEY}"]
aws = {{ region = "us-west-2" }}

[[prices]]
provider = "gemini"
model = "gemini-embedding-001"
currency = "USD"
input = "0.15"
output = "0"

[[prices]]
provider = "vertex"
model = "gemini-embedding-001"
currency = "USD"
input = "0.15"
output = "0"

[[prices]]
provider = "bedrock"
model = "{TITAN}"
currency = "USD"
input = "0.02"
output = "0"

[[prices]]
provider = "bedrock"
model = "cohere.embed-english-v3"
currency = "USD"
input = "0.10"
output = "0"

[models."gemini-embed"]
deployments = [{{ provider = "gem", model = "gemini-embedding-001" }}]

[models."vertex-embed"]
deployments = [{{ provider = "vtx", model = "text-embedding-005" }}]

[models."vertex-gemini-embed"]
deployments = [{{ provider = "vtx", model = "gemini-embedding-001" }}]

[models."vertex-claude"]
deployments = [{{ provider = "vtx", model = "claude-sonnet-4-5@20250929" }}]

[models."titan"]
deployments = [{{ provider = "aws", model = "{TITAN}" }}]

[models."cohere"]
deployments = [{{ provider = "aws-key", model = "cohere.embed-english-v3" }}]

[models."gemini-throttled-then-b"]
tiers = [[{{ provider = "gem", model = "gemini-embedding-001?status=429" }}], [{{ provider = "gem-b", model = "gemini-embedding-001" }}]]

[models."vertex-unavailable-then-gemini"]
tiers = [[{{ provider = "vtx", model = "text-embedding-005?status=503" }}], [{{ provider = "gem", model = "gemini-embedding-001" }}]]

[models."titan-throttled-then-key"]
tiers = [[{{ provider = "aws", model = "{TITAN}?status=429" }}], [{{ provider = "aws-key", model = "{TITAN}" }}]]

[models."titan-sigv4-then-key"]
tiers = [[{{ provider = "aws", model = "{TITAN}" }}], [{{ provider = "aws-key", model = "{TITAN}" }}]]
"#
    )
}

async fn harness() -> Harness {
    Harness::start_with(&config()).await
}

async fn embed(h: &Harness, body: &Value) -> reqwest::Response {
    h.post("/v1/embeddings", body).await
}

/// The vectors of an OpenAI embeddings answer, in `index` order (checked to be 0, 1, …), as `f32` (what
/// the mock's values are; the JSON client's `f64` parse may be off in the last bit).
fn vectors(body: &Value) -> Vec<Vec<f32>> {
    assert_eq!(body["object"], "list");
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            item["embedding"]
                .as_array()
                .expect("a float vector")
                .iter()
                .map(|v| {
                    #[allow(clippy::cast_possible_truncation)]
                    let f = v.as_f64().expect("a number") as f32;
                    f
                })
                .collect()
        })
        .collect()
}

/// What the mock answers for each of `texts` at `dims` dimensions, in order.
fn mock_vectors<T: AsRef<str>>(texts: &[T], dims: usize) -> Vec<Vec<f32>> {
    texts
        .iter()
        .map(|t| fake_vector(t.as_ref(), dims))
        .collect()
}

/// An embeddings call that must succeed: its request id and its JSON body.
async fn embed_ok(h: &Harness, body: &Value) -> (String, Value) {
    let r = embed(h, body).await;
    assert_eq!(r.status(), 200, "{body}");
    let id = request_id(&r);
    (id, r.json().await.unwrap())
}

/// The gateway's prompt estimate for a request body: a third of its bytes, rounded up.
fn estimate(body: &Value) -> u64 {
    let bytes = serde_json::to_vec(body).unwrap().len() as u64;
    bytes.div_ceil(3).max(1)
}

// ---- Gemini API ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_embeds_one_text_and_estimates_usage_the_api_does_not_report() {
    let h = harness().await;
    let request =
        json!({"model": "gemini-embed", "input": "hello embedding world", "user": "alice"});
    let (id, body) = embed_ok(&h, &request).await;
    assert_eq!(vectors(&body), mock_vectors(&["hello embedding world"], 8));
    assert_eq!(body["model"], "gemini-embedding-001");
    let tokens = estimate(&request);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": tokens, "total_tokens": tokens})
    );

    let sent = h.mock.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        "/gemini/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(sent[0].header("x-goog-api-key"), Some("AIza-a"));
    // Nothing of OpenAI's leaked (the mock refuses unknown fields too).
    assert_eq!(
        sent[0].body,
        json!({"requests": [{"model": "models/gemini-embedding-001",
            "content": {"parts": [{"text": "hello embedding world"}]}}]})
    );

    let e = h.event(&id).await;
    assert_eq!(
        (e.endpoint, e.outcome, e.usage_source),
        (
            Endpoint::Embeddings,
            Outcome::Success,
            UsageSource::Estimated
        )
    );
    assert_eq!(
        (e.provider_kind.as_str(), e.upstream_model.as_str()),
        ("gemini", "gemini-embedding-001")
    );
    assert_eq!(
        (e.usage.prompt_tokens, e.usage.completion_tokens),
        (tokens, 0)
    );
    // $0.15 per Mtok: 150 nano-dollars a token.
    assert!(!e.cost.price_missing);
    assert_eq!(e.cost.nanos, tokens * 150);
}

#[tokio::test]
async fn gemini_arrays_keep_their_order_and_take_dimensions_and_reported_usage() {
    let h = harness().await;
    let texts = ["one [mock:prompt_tokens=42]", "two", "three"];
    let (id, body) = embed_ok(&h, &json!({"model": "gemini-embed", "input": texts, "dimensions": 16, "task_type": "RETRIEVAL_DOCUMENT"})).await;
    assert_eq!(vectors(&body), mock_vectors(&texts, 16));
    assert_eq!(body["usage"]["prompt_tokens"], 42);
    let sent = &h.mock.requests()[0];
    let requests = sent.body["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3);
    for (r, text) in requests.iter().zip(texts) {
        assert_eq!(r["outputDimensionality"], 16);
        assert_eq!(r["taskType"], "RETRIEVAL_DOCUMENT");
        assert_eq!(r["content"]["parts"][0]["text"], text);
    }
    let e = h.event(&id).await;
    assert_eq!(
        (e.usage.prompt_tokens, e.usage_source),
        (42, UsageSource::Provider)
    );
    assert_eq!(e.cost.nanos, 42 * 150);
}

#[tokio::test]
async fn base64_vectors_are_little_endian_f32_as_openai_sends_them() {
    let h = harness().await;
    let input = json!(["first text", "second text"]);
    let floats: Value = embed(&h, &json!({"model": "gemini-embed", "input": input}))
        .await
        .json()
        .await
        .unwrap();
    let r = embed(
        &h,
        &json!({"model": "gemini-embed", "input": input, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let encoded: Value = r.json().await.unwrap();
    for (i, item) in encoded["data"].as_array().unwrap().iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(item["embedding"].as_str().expect("a base64 string"))
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(decoded, vectors(&floats)[i]);
        assert_eq!(item["index"], i);
    }
    // The upstream was asked for floats either way (base64 is the gateway's encoding).
    assert!(h
        .mock
        .requests()
        .iter()
        .all(|r| r.body.get("encoding_format").is_none()));
}

#[tokio::test]
async fn inputs_beyond_a_gemini_batch_become_concurrent_calls_joined_in_order() {
    let h = harness().await;
    let texts: Vec<String> = (0..150).map(|i| format!("text number {i}")).collect();
    let (id, body) = embed_ok(&h, &json!({"model": "gemini-embed", "input": texts})).await;
    assert_eq!(vectors(&body), mock_vectors(&texts, 8));
    let mut sizes: Vec<usize> = h
        .mock
        .requests()
        .iter()
        .map(|r| r.body["requests"].as_array().unwrap().len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [50, 100]);
    let e = h.event(&id).await;
    assert_eq!((e.attempts, e.usage_source), (1, UsageSource::Estimated));
}

// ---- Vertex AI -----------------------------------------------------------------------------------------------

#[tokio::test]
async fn vertex_predicts_with_its_token_and_sums_token_counts() {
    let h = harness().await;
    let (id, body) = embed_ok(
        &h,
        &json!({"model": "vertex-embed", "input": ["a b c", "d e"], "dimensions": 32}),
    )
    .await;
    assert_eq!(vectors(&body), mock_vectors(&["a b c", "d e"], 32));
    assert_eq!(body["model"], "text-embedding-005");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    let sent: Vec<_> = h
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/vertex/"))
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        "/vertex/v1/projects/proj-1/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    );
    assert!(sent[0]
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ")));
    assert_eq!(
        sent[0].body,
        json!({"instances": [{"content": "a b c"}, {"content": "d e"}],
            "parameters": {"outputDimensionality": 32}})
    );
    let e = h.event(&id).await;
    assert_eq!(
        (e.endpoint, e.usage.prompt_tokens, e.usage_source),
        (Endpoint::Embeddings, 5, UsageSource::Provider)
    );
    assert_eq!(e.provider_kind, "vertex");
}

#[tokio::test]
async fn vertex_gemini_embedding_takes_one_instance_per_call() {
    let h = harness().await;
    let (id, body) = embed_ok(
        &h,
        &json!({"model": "vertex-gemini-embed", "input": ["x y", "z", "w v u"]}),
    )
    .await;
    assert_eq!(vectors(&body), mock_vectors(&["x y", "z", "w v u"], 8));
    let calls = h
        .mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("gemini-embedding-001:predict"))
        .count();
    assert_eq!(calls, 3);
    let e = h.event(&id).await;
    assert_eq!((e.usage.prompt_tokens, e.cost.nanos), (6, 6 * 150));
}

// ---- Bedrock -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn bedrock_titan_sends_one_signed_call_per_text_and_sums_usage() {
    let h = harness().await;
    let texts = ["alpha beta", "gamma", "delta epsilon zeta"];
    let (id, body) = embed_ok(
        &h,
        &json!({"model": "titan", "input": texts, "dimensions": 256}),
    )
    .await;
    assert_eq!(vectors(&body), mock_vectors(&texts, 256));
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    let sent = h.mock.requests();
    assert_eq!(sent.len(), 3);
    let mut sent_texts: Vec<&str> = sent
        .iter()
        .map(|r| {
            assert_eq!(
                r.path,
                "/bedrock/model/amazon.titan-embed-text-v2%3A0/invoke"
            );
            // Signed (the mock verified the signature, or it would have answered 403).
            assert!(r
                .header("authorization")
                .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCKBEDROCK/")));
            assert_eq!(r.body["dimensions"], 256);
            assert_eq!(r.body["normalize"], true);
            r.body["inputText"].as_str().unwrap()
        })
        .collect();
    sent_texts.sort_unstable();
    assert_eq!(sent_texts, ["alpha beta", "delta epsilon zeta", "gamma"]);
    let e = h.event(&id).await;
    assert_eq!(
        (
            e.endpoint,
            e.attempts,
            e.usage.prompt_tokens,
            e.usage_source
        ),
        (Endpoint::Embeddings, 1, 6, UsageSource::Provider)
    );
    // $0.02 per Mtok.
    assert_eq!(e.cost.nanos, 6 * 20);

    // A single string is one call.
    let r = embed(&h, &json!({"model": "titan", "input": "just one"})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(vectors(&body), mock_vectors(&["just one"], 8));
    assert_eq!(h.mock.requests().len(), 4);
}

#[tokio::test]
async fn bedrock_cohere_batches_texts_and_reads_the_token_header() {
    let h = harness().await;
    let (id, body) = embed_ok(
        &h,
        &json!({"model": "cohere", "input": ["a b", "c"], "input_type": "search_query"}),
    )
    .await;
    assert_eq!(vectors(&body), mock_vectors(&["a b", "c"], 8));
    let sent = h.mock.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        "/bedrock/model/cohere.embed-english-v3/invoke"
    );
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {BEDROCK_KEY}").as_str())
    );
    assert_eq!(
        sent[0].body,
        json!({"texts": ["a b", "c"], "input_type": "search_query", "embedding_types": ["float"]})
    );
    let e = h.event(&id).await;
    assert_eq!((e.usage.prompt_tokens, e.cost.nanos), (3, 3 * 100));
}

// ---- failover and refusals -----------------------------------------------------------------------------------

#[tokio::test]
async fn upstream_429_and_5xx_fail_over_for_every_kind() {
    let h = harness().await;
    for (model, first, second) in [
        ("gemini-throttled-then-b", "gem", "gem-b"),
        ("vertex-unavailable-then-gemini", "vtx", "gem"),
        ("titan-throttled-then-key", "aws", "aws-key"),
    ] {
        let (id, body) = embed_ok(&h, &json!({"model": model, "input": ["a b", "c"]})).await;
        assert_eq!(vectors(&body), mock_vectors(&["a b", "c"], 8), "{model}");
        let e = h.event(&id).await;
        assert_eq!(
            (e.attempts, e.provider.as_str(), e.outcome),
            (2, second, Outcome::Success),
            "{model} (first tried: {first})"
        );
    }
}

#[tokio::test]
async fn a_throttled_call_among_several_fails_the_attempt_over_and_what_was_billed_is_metered() {
    let h = harness().await;
    // Only the SigV4 key's call for the second text is throttled; the API-key deployment answers all three.
    let texts = [
        "one two",
        &format!("three [mock:status=429&only_key={ACCESS_KEY_ID}]"),
        "four five six",
    ];
    let (id, body) = embed_ok(
        &h,
        &json!({"model": "titan-sigv4-then-key", "input": texts}),
    )
    .await;
    assert_eq!(vectors(&body), mock_vectors(&texts, 8));
    // The answer reports the successful attempt's tokens (2 + 2 + 3)…
    assert_eq!(body["usage"]["prompt_tokens"], 7);
    assert_eq!(h.mock.requests().len(), 6);
    let e = h.event(&id).await;
    // …and the event also meters the first attempt's two calls that Bedrock answered (2 + 3 tokens).
    assert_eq!(
        (
            e.attempts,
            e.provider.as_str(),
            e.usage.prompt_tokens,
            e.usage_source
        ),
        (2, "aws-key", 7 + 5, UsageSource::Provider)
    );
}

#[tokio::test]
async fn what_cannot_be_embedded_is_refused_before_any_call() {
    let h = harness().await;
    for (body, param) in [
        (json!({"model": "vertex-claude", "input": "x"}), "model"),
        (
            json!({"model": "gemini-embed", "input": [1, 2, 3]}),
            "input",
        ),
        (json!({"model": "titan", "input": [[1, 2]]}), "input"),
        (json!({"model": "gemini-embed", "input": []}), "input"),
        (
            json!({"model": "gemini-embed", "input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (
            json!({"model": "titan", "input": "x", "dimensions": -1}),
            "dimensions",
        ),
    ] {
        let r = embed(&h, &body).await;
        assert_eq!(r.status(), 400, "{body}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    assert!(h.mock.requests().is_empty());
}

#[tokio::test]
async fn an_upstream_400_is_passed_on_without_failover() {
    let h = harness().await;
    // Titan v2 takes 256, 512 or 1024 dimensions; the mock refuses others as Bedrock does.
    let r = embed(
        &h,
        &json!({"model": "titan-sigv4-then-key", "input": "x", "dimensions": 100}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let id = request_id(&r);
    let error: Value = r.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1024, 512 or 256")),
        "{error}"
    );
    let e = h.event(&id).await;
    assert_eq!((e.attempts, e.outcome), (1, Outcome::UpstreamError));
    assert_eq!(h.mock.requests().len(), 1);
}

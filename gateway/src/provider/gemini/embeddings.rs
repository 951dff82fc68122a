//! Embeddings on the Gemini API: `POST {base}/models/{model}:batchEmbedContents`.
//!
//! Request: `{"requests": [{"model": "models/{model}", "content": {"parts": [{"text": …}]},
//! "outputDimensionality": dimensions, "taskType": task_type}, …]}`, at most [`GEMINI_BATCH`] texts per call
//! (larger inputs become several calls). Answer: `{"embeddings": [{"values": […]}, …], "usageMetadata":
//! {"promptTokenCount": n}}` — `usageMetadata` is missing on older API surfaces, and then the gateway
//! estimates (marked `estimated`).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::method_url;
use crate::error::GatewayError;
use crate::provider::embeddings::{
    encode, token_count, vectors, Embeddings, EmbeddingsRequest, GEMINI_BATCH,
};

/// The `batchEmbedContents` URL of `model` under `{base}/models/`.
#[must_use]
pub fn batch_url(base: &str, model: &str) -> String {
    method_url(
        &format!("{base}/models/"),
        model,
        "batchEmbedContents",
        None,
    )
}

/// The `batchEmbedContents` bodies for `request`, [`GEMINI_BATCH`] texts each.
///
/// # Errors
/// Only if encoding fails.
pub fn batch_requests(
    request: &EmbeddingsRequest,
    model: &str,
) -> Result<Vec<Bytes>, GatewayError> {
    let name = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
    request
        .inputs
        .chunks(GEMINI_BATCH)
        .map(|texts| {
            let requests: Vec<Value> = texts
                .iter()
                .map(|text| {
                    let mut one = Map::new();
                    one.insert("model".into(), Value::from(name.as_str()));
                    one.insert("content".into(), json!({"parts": [{"text": text}]}));
                    if let Some(d) = request.dimensions {
                        one.insert("outputDimensionality".into(), Value::from(d));
                    }
                    if let Some(task) = &request.task_type {
                        one.insert("taskType".into(), Value::from(task.as_str()));
                    }
                    Value::Object(one)
                })
                .collect();
            encode(&json!({ "requests": requests }))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchAnswer {
    embeddings: Vec<ContentEmbedding>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
struct ContentEmbedding {
    values: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: Option<Value>,
}

/// A `batchEmbedContents` answer → its vectors and `usageMetadata.promptTokenCount`, if present.
///
/// # Errors
/// A body without an `embeddings` array of `values` arrays of numbers.
pub fn batch_response(body: &[u8]) -> Result<Embeddings, String> {
    let answer: BatchAnswer = serde_json::from_slice(body)
        .map_err(|e| format!("the batchEmbedContents answer is not one: {e}"))?;
    Ok(Embeddings {
        vectors: vectors(answer.embeddings.into_iter().map(|e| e.values).collect())?,
        prompt_tokens: token_count(
            answer
                .usage_metadata
                .and_then(|u| u.prompt_token_count)
                .as_ref(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(inputs: Vec<&str>, dimensions: Option<u32>) -> EmbeddingsRequest {
        EmbeddingsRequest {
            inputs: inputs.into_iter().map(str::to_string).collect(),
            dimensions,
            base64: false,
            task_type: None,
            input_type: None,
        }
    }

    #[test]
    fn requests_batch_texts_with_their_model_and_options() {
        assert_eq!(
            batch_url("https://generativelanguage.googleapis.com/v1beta", "models/gemini-embedding-001"),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        let mut r = request(vec!["a", "b"], Some(768));
        r.task_type = Some("RETRIEVAL_QUERY".into());
        let bodies = batch_requests(&r, "gemini-embedding-001").unwrap();
        assert_eq!(bodies.len(), 1);
        let body: Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(
            body,
            json!({"requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]},
                 "outputDimensionality": 768, "taskType": "RETRIEVAL_QUERY"},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]},
                 "outputDimensionality": 768, "taskType": "RETRIEVAL_QUERY"}]})
        );
        let many = request(vec!["x"; 250], None);
        let bodies = batch_requests(&many, "models/m").unwrap();
        let sizes: Vec<usize> = bodies
            .iter()
            .map(|b| {
                let v: Value = serde_json::from_slice(b).unwrap();
                v["requests"].as_array().unwrap().len()
            })
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn answers_with_and_without_usage_metadata() {
        let e = batch_response(
            br#"{"embeddings": [{"values": [0.1, -0.2]}, {"values": [0.3, 0.4]}],
                "usageMetadata": {"promptTokenCount": 9}}"#,
        )
        .unwrap();
        let texts: Vec<&str> = e.vectors.iter().map(|v| v.json()).collect();
        assert_eq!(texts, ["[0.1, -0.2]", "[0.3, 0.4]"]);
        assert_eq!(e.prompt_tokens, Some(9));
        let e = batch_response(br#"{"embeddings": [{"values": [1]}]}"#).unwrap();
        assert_eq!(e.prompt_tokens, None);
        assert!(batch_response(br#"{"candidates": []}"#).is_err());
        assert!(batch_response(br#"{"embeddings": [{"values": ["x"]}]}"#).is_err());
    }
}

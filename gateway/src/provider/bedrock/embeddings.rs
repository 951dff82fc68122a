//! Embeddings on Bedrock: `InvokeModel` (`POST {base}/model/{modelId}/invoke`, SigV4-signed or a Bedrock API
//! key, the model id encoded as for Converse), in the model family's own body.
//!
//! - Amazon Titan Text Embeddings (`amazon.titan-embed-text-v2:0`, `…-v1`): `{"inputText": text,
//!   "dimensions": n, "normalize": true}` (v1: `inputText` only) → `{"embedding": […],
//!   "inputTextTokenCount": n}`. One text per call: an array input becomes one call per text, sent
//!   concurrently (at most 16 in flight) as one attempt, vectors in input order, token counts summed; if any
//!   call fails the attempt fails (and fails over), and the tokens of the calls that succeeded are still
//!   metered — Bedrock bills them.
//! - Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, `cohere.embed-v4:0`):
//!   `{"texts": […], "input_type": "search_document" (or the request's `input_type`), "embedding_types":
//!   ["float"], "output_dimension": n}`, up to [`COHERE_BATCH`] texts per call → `{"embeddings": {"float":
//!   [[…]]}}` (or a bare list); the token count comes in the `x-amzn-bedrock-input-token-count` header.
//!
//! Any other model is refused (400) before anything is sent: Bedrock's embedding bodies differ per family.

use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::provider::embeddings::{
    encode, token_count, vectors, Embeddings, EmbeddingsRequest, Vector,
};
use crate::provider::sign::sigv4::encode_path_segment;

/// Texts per Cohere Embed call (Cohere's limit).
pub const COHERE_BATCH: usize = 96;

/// The header Bedrock reports a call's input tokens in.
pub const INPUT_TOKENS_HEADER: &str = "x-amzn-bedrock-input-token-count";

/// The `InvokeModel` URL of `model_id` under `base`.
#[must_use]
pub fn invoke_url(base: &str, model_id: &str) -> String {
    format!(
        "{}/model/{}/invoke",
        base.trim_end_matches('/'),
        encode_path_segment(model_id)
    )
}

/// An embedding model family Bedrock serves through `InvokeModel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Amazon Titan Text Embeddings; `v2` takes `dimensions` and `normalize`.
    Titan {
        v2: bool,
    },
    Cohere,
}

fn family(model: &str) -> Option<Family> {
    if model.contains("titan-embed-text") {
        Some(Family::Titan {
            v2: model.contains("titan-embed-text-v2"),
        })
    } else if model.contains("cohere.embed") {
        Some(Family::Cohere)
    } else {
        None
    }
}

/// The `InvokeModel` bodies of an embeddings request for `model`.
///
/// # Errors
/// [`GatewayError::InvalidRequest`] for a model of no known embedding family.
pub fn requests(request: &EmbeddingsRequest, model: &str) -> Result<Vec<Bytes>, GatewayError> {
    match family(model) {
        Some(Family::Titan { v2 }) => request
            .inputs
            .iter()
            .map(|text| {
                let mut body = Map::new();
                body.insert("inputText".into(), Value::from(text.as_str()));
                if let Some(d) = request.dimensions {
                    body.insert("dimensions".into(), Value::from(d));
                }
                if v2 {
                    // OpenAI's vectors are unit length; Titan v2 normalizes on request (its default too).
                    body.insert("normalize".into(), Value::Bool(true));
                }
                encode(&Value::Object(body))
            })
            .collect(),
        Some(Family::Cohere) => request
            .inputs
            .chunks(COHERE_BATCH)
            .map(|texts| {
                let mut body = Map::new();
                body.insert("texts".into(), json!(texts));
                body.insert(
                    "input_type".into(),
                    Value::from(request.input_type.as_deref().unwrap_or("search_document")),
                );
                body.insert("embedding_types".into(), json!(["float"]));
                if let Some(d) = request.dimensions {
                    body.insert("output_dimension".into(), Value::from(d));
                }
                encode(&Value::Object(body))
            })
            .collect(),
        None => Err(GatewayError::InvalidRequest {
            message: format!(
                "bedrock embeddings take Amazon Titan Text Embeddings (amazon.titan-embed-text-*) or Cohere \
                 Embed (cohere.embed-*) models; {model:?} is neither"
            ),
            param: Some("model"),
        }),
    }
}

/// Titan's answer (`embedding`, `inputTextTokenCount`) or Cohere's (`embeddings`, a list or by type).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvokeAnswer {
    #[serde(default)]
    embedding: Option<Box<RawValue>>,
    #[serde(default)]
    input_text_token_count: Option<Value>,
    /// Cohere's: `[[…]]`, or `{"float": [[…]]}` when `embedding_types` was asked for (read apart: raw JSON
    /// cannot sit in an untagged enum).
    #[serde(default)]
    embeddings: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ByType {
    float: Vec<Box<RawValue>>,
}

fn cohere_vectors(raw: &RawValue) -> Result<Vec<Vector>, String> {
    let list = if raw.get().trim_start().starts_with('{') {
        serde_json::from_str::<ByType>(raw.get()).map(|t| t.float)
    } else {
        serde_json::from_str::<Vec<Box<RawValue>>>(raw.get())
    };
    vectors(list.map_err(|e| format!("the answer's embeddings are not float vectors: {e}"))?)
}

/// One `InvokeModel` answer (Titan's or Cohere's) → its vectors and input tokens (Titan's
/// `inputTextTokenCount`, else the `x-amzn-bedrock-input-token-count` header).
///
/// # Errors
/// A body with neither Titan's `embedding` nor Cohere's float `embeddings`.
pub fn response(headers: &HeaderMap, body: &[u8]) -> Result<Embeddings, String> {
    let answer: InvokeAnswer = serde_json::from_slice(body)
        .map_err(|e| format!("the InvokeModel answer is not an embeddings answer: {e}"))?;
    let header_count = headers
        .get(INPUT_TOKENS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (answer.embedding, answer.embeddings) {
        (Some(embedding), _) => Ok(Embeddings {
            vectors: vec![Vector::new(embedding)?],
            prompt_tokens: token_count(answer.input_text_token_count.as_ref()).or(header_count),
        }),
        (None, Some(embeddings)) => Ok(Embeddings {
            vectors: cohere_vectors(&embeddings)?,
            prompt_tokens: header_count,
        }),
        (None, None) => Err("the InvokeModel answer has no embedding or embeddings".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(inputs: &[&str], dimensions: Option<u32>) -> EmbeddingsRequest {
        EmbeddingsRequest {
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            dimensions,
            base64: false,
            task_type: None,
            input_type: None,
        }
    }

    fn bodies(request: &EmbeddingsRequest, model: &str) -> Vec<Value> {
        requests(request, model)
            .unwrap()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }

    #[test]
    fn titan_takes_one_text_per_call_and_cohere_batches() {
        assert_eq!(
            invoke_url("http://h/bedrock/", "amazon.titan-embed-text-v2:0"),
            "http://h/bedrock/model/amazon.titan-embed-text-v2%3A0/invoke"
        );
        let r = request(&["a", "b"], Some(256));
        assert_eq!(
            bodies(&r, "amazon.titan-embed-text-v2:0"),
            [
                json!({"inputText": "a", "dimensions": 256, "normalize": true}),
                json!({"inputText": "b", "dimensions": 256, "normalize": true})
            ]
        );
        assert_eq!(
            bodies(&request(&["a"], None), "amazon.titan-embed-text-v1"),
            [json!({"inputText": "a"})]
        );
        let mut r = request(&["a", "b"], None);
        r.input_type = Some("search_query".into());
        assert_eq!(
            bodies(&r, "us.cohere.embed-v4:0"),
            [
                json!({"texts": ["a", "b"], "input_type": "search_query", "embedding_types": ["float"]})
            ]
        );
        let many: Vec<&str> = vec!["x"; 100];
        assert_eq!(
            requests(&request(&many, None), "cohere.embed-english-v3")
                .unwrap()
                .len(),
            2
        );
        let Err(GatewayError::InvalidRequest { message, .. }) = requests(
            &request(&["a"], None),
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        ) else {
            panic!("a chat model took embeddings")
        };
        assert!(message.contains("is neither"), "{message}");
    }

    #[test]
    fn answers_of_both_families() {
        let e = response(
            &HeaderMap::new(),
            br#"{"embedding": [0.5, -0.5], "inputTextTokenCount": 7, "embeddingsByType": {"float": [0.5, -0.5]}}"#,
        )
        .unwrap();
        assert_eq!(
            (e.vectors[0].json(), e.prompt_tokens),
            ("[0.5, -0.5]", Some(7))
        );
        let mut headers = HeaderMap::new();
        headers.insert(INPUT_TOKENS_HEADER, http::HeaderValue::from_static("12"));
        let e = response(
            &headers,
            br#"{"id": "x", "embeddings": {"float": [[0.1], [0.2]]}, "response_type": "embeddings_by_type", "texts": ["a", "b"]}"#,
        )
        .unwrap();
        let texts: Vec<&str> = e.vectors.iter().map(|v| v.json()).collect();
        assert_eq!((texts, e.prompt_tokens), (vec!["[0.1]", "[0.2]"], Some(12)));
        let e = response(
            &HeaderMap::new(),
            br#"{"embeddings": [[0.3]], "response_type": "embeddings_floats"}"#,
        )
        .unwrap();
        assert_eq!((e.vectors[0].json(), e.prompt_tokens), ("[0.3]", None));
        assert!(response(&HeaderMap::new(), br#"{"output": {}}"#).is_err());
    }
}

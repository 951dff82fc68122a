//! `/v1/embeddings` for wires that are not OpenAI's: the pieces every adapter shares.
//!
//! The OpenAI request is read once ([`EmbeddingsRequest::read`]: text inputs, `dimensions`, `encoding_format`,
//! and the provider-specific `task_type` / `input_type` extensions); the adapter turns it into one or more
//! native calls ([`super::adapter::Adapter::embeddings_request`]: Gemini `batchEmbedContents` in batches of
//! [`GEMINI_BATCH`], Vertex `:predict`, Bedrock `InvokeModel`, which takes one text per call for Titan), the
//! orchestrator sends them concurrently as one attempt, and each answer comes back as [`Embeddings`] (vectors in
//! input order, the tokens the upstream counted if it says). [`Embeddings::concat`] joins the calls and
//! [`openai_body`] writes OpenAI's `{"object":"list","data":[…],"model":…,"usage":…}`: each vector as the
//! upstream wrote its numbers (kept as JSON text, [`Vector`]: never re-printed, so nothing is rounded) or, for
//! `encoding_format: "base64"` (what the official SDKs ask for by default), as base64 of their little-endian
//! `f32` bytes, as OpenAI encodes them.

use base64::Engine;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// The most inputs one request may carry (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

/// Texts per `batchEmbedContents` call (the Gemini API refuses more).
pub const GEMINI_BATCH: usize = 100;

/// An OpenAI embeddings request, read for an upstream that is not OpenAI wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingsRequest {
    /// The texts, in order (a string input is one).
    pub inputs: Vec<String>,
    /// `dimensions`: the output size the client asked for.
    pub dimensions: Option<u32>,
    /// `encoding_format: "base64"`.
    pub base64: bool,
    /// `task_type` (not OpenAI's): Gemini's / Vertex's task (`RETRIEVAL_QUERY`, …), passed on as given.
    pub task_type: Option<String>,
    /// `input_type` (not OpenAI's): Cohere's (`search_query`, …; default `search_document`).
    pub input_type: Option<String>,
}

fn invalid(message: String, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param),
    }
}

fn optional_string(
    body: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, GatewayError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("`{field}` must be a string"), field)),
    }
}

impl EmbeddingsRequest {
    /// Reads an OpenAI embeddings body for a provider of kind `kind` (named in the errors).
    ///
    /// # Errors
    /// [`GatewayError::InvalidRequest`] for a missing or empty input, token-id inputs (these wires take text
    /// only), more than [`MAX_INPUTS`] inputs, a `dimensions` that is not a positive integer, an
    /// `encoding_format` other than `float` / `base64`.
    pub fn read(raw: &[u8], kind: &str) -> Result<Self, GatewayError> {
        let body: Map<String, Value> =
            serde_json::from_slice(raw).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        let token_ids = || {
            invalid(
                format!(
                    "provider kind {kind} embeds text only: send `input` as a string or an array of strings, \
                     not token ids"
                ),
                "input",
            )
        };
        let inputs = match body.get("input") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(token_ids()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None | Some(Value::Null) => {
                return Err(invalid("you must provide an `input`".into(), "input"))
            }
            Some(_) => return Err(token_ids()),
        };
        if inputs.is_empty() || inputs.iter().any(String::is_empty) {
            return Err(invalid(
                "`input` must be a non-empty string or a non-empty array of non-empty strings"
                    .into(),
                "input",
            ));
        }
        if inputs.len() > MAX_INPUTS {
            return Err(invalid(
                format!(
                    "`input` has {} items; at most {MAX_INPUTS} per request",
                    inputs.len()
                ),
                "input",
            ));
        }
        let dimensions = match body.get("dimensions") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|d| *d > 0)
                    .and_then(|d| u32::try_from(d).ok())
                    .ok_or_else(|| {
                        invalid(
                            "`dimensions` must be a positive integer".into(),
                            "dimensions",
                        )
                    })?,
            ),
        };
        let base64 = match body.get("encoding_format") {
            None | Some(Value::Null) => false,
            Some(Value::String(f)) if f == "float" => false,
            Some(Value::String(f)) if f == "base64" => true,
            Some(other) => {
                return Err(invalid(
                    format!("`encoding_format` must be \"float\" or \"base64\", not {other}"),
                    "encoding_format",
                ))
            }
        };
        Ok(Self {
            inputs,
            dimensions,
            base64,
            task_type: optional_string(&body, "task_type")?,
            input_type: optional_string(&body, "input_type")?,
        })
    }
}

/// One embedding vector as the upstream wrote it: a JSON array of numbers, kept as text.
#[derive(Debug, Clone)]
pub struct Vector(Box<RawValue>);

impl Vector {
    /// Checks that `raw` is an array of numbers.
    ///
    /// # Errors
    /// What it is instead.
    pub fn new(raw: Box<RawValue>) -> Result<Self, String> {
        let items: Vec<&RawValue> = serde_json::from_str(raw.get())
            .map_err(|_| "an embedding is not an array".to_string())?;
        if items.iter().any(|n| n.get().parse::<f64>().is_err()) {
            return Err("an embedding has a value that is not a number".into());
        }
        Ok(Self(raw))
    }

    /// The JSON text of the array.
    #[must_use]
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The values as `f32` (each number's text parsed with correct rounding).
    #[must_use]
    pub fn f32s(&self) -> Vec<f32> {
        let items: Vec<&RawValue> = serde_json::from_str(self.0.get()).unwrap_or_default();
        items
            .iter()
            .map(|n| n.get().parse::<f32>().unwrap_or(f32::NAN))
            .collect()
    }
}

impl PartialEq for Vector {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

/// One upstream answer (or several joined): a vector per input, in input order, and the input tokens the
/// upstream counted (`None` when it did not say).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vector>,
    pub prompt_tokens: Option<u64>,
}

impl Embeddings {
    /// The answers of one request's calls, in call order: vectors concatenated, tokens summed (unknown if any
    /// call did not say).
    #[must_use]
    pub fn concat(parts: Vec<Embeddings>) -> Self {
        let mut out = Self {
            vectors: Vec::new(),
            prompt_tokens: Some(0),
        };
        for part in parts {
            out.vectors.extend(part.vectors);
            out.prompt_tokens = match (out.prompt_tokens, part.prompt_tokens) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                _ => None,
            };
        }
        out
    }
}

/// Encodes a body the adapter built.
///
/// # Errors
/// [`GatewayError::Internal`] (serde_json cannot fail on a `Value`).
pub fn encode(body: &Value) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

/// The vectors of an answer, each checked ([`Vector::new`]).
///
/// # Errors
/// The first that is not an array of numbers.
pub fn vectors(raw: Vec<Box<RawValue>>) -> Result<Vec<Vector>, String> {
    raw.into_iter().map(Vector::new).collect()
}

/// A token count that may come as a JSON integer or a float (`13.0`).
#[must_use]
pub fn token_count(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            // Counts are whole numbers; the float form is an encoding artefact.
            .map(|f| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = f.round() as u64;
                n
            })
    })
}

#[derive(Serialize)]
#[serde(untagged)]
enum Encoded<'a> {
    Float(&'a RawValue),
    Base64(String),
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Encoded<'a>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: Usage,
}

/// `vector` as OpenAI's base64 encoding: its values as little-endian `f32` bytes.
#[must_use]
pub fn base64_f32(vector: &Vector) -> String {
    let values = vector.f32s();
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The OpenAI `/v1/embeddings` answer: `embeddings` as a `list` of `embedding` objects, `model`, and usage
/// `prompt_tokens` (= `total_tokens`).
///
/// # Errors
/// [`GatewayError::Internal`] if serialisation fails (it cannot: the vectors are checked JSON).
pub fn openai_body(
    embeddings: &Embeddings,
    model: &str,
    base64: bool,
    prompt_tokens: u64,
) -> Result<Bytes, GatewayError> {
    let data = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: if base64 {
                Encoded::Base64(base64_f32(v))
            } else {
                Encoded::Float(&v.0)
            },
        })
        .collect();
    let list = List {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    serde_json::to_vec(&list)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the embeddings answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(body: Value) -> Result<EmbeddingsRequest, GatewayError> {
        EmbeddingsRequest::read(&serde_json::to_vec(&body).unwrap(), "gemini")
    }

    #[test]
    fn reads_text_inputs_dimensions_and_format() {
        let r = read(json!({"model": "m", "input": "hello", "dimensions": 256,
            "encoding_format": "base64", "task_type": "RETRIEVAL_QUERY", "user": "u"}))
        .unwrap();
        assert_eq!(r.inputs, ["hello"]);
        assert_eq!(r.dimensions, Some(256));
        assert!(r.base64);
        assert_eq!(r.task_type.as_deref(), Some("RETRIEVAL_QUERY"));
        let r =
            read(json!({"model": "m", "input": ["a", "b"], "encoding_format": "float"})).unwrap();
        assert_eq!(r.inputs, ["a", "b"]);
        assert!(!r.base64);
        assert_eq!(r.dimensions, None);
    }

    #[test]
    fn refuses_what_these_wires_cannot_take() {
        for (body, param) in [
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (json!({"model": "m", "input": ""}), "input"),
            (json!({"model": "m", "input": [1, 2, 3]}), "input"),
            (json!({"model": "m", "input": [[1, 2]]}), "input"),
            (
                json!({"model": "m", "input": "x", "dimensions": 0}),
                "dimensions",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": "8"}),
                "dimensions",
            ),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
            (
                json!({"model": "m", "input": "x", "task_type": 3}),
                "task_type",
            ),
        ] {
            match read(body.clone()) {
                Err(GatewayError::InvalidRequest { param: Some(p), .. }) => {
                    assert_eq!(p, param, "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let many = vec!["x"; MAX_INPUTS + 1];
        assert!(read(json!({"model": "m", "input": many})).is_err());
        let Err(GatewayError::InvalidRequest { message, .. }) =
            read(json!({"model": "m", "input": [1]}))
        else {
            panic!("token ids accepted")
        };
        assert!(
            message.contains("gemini") && message.contains("token ids"),
            "{message}"
        );
    }

    fn vector(json: &str) -> Vector {
        Vector::new(RawValue::from_string(json.to_string()).unwrap()).unwrap()
    }

    #[test]
    fn vectors_are_arrays_of_numbers_kept_as_written() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        assert!(Vector::new(raw("{}")).is_err());
        assert!(Vector::new(raw(r#"[1, "x"]"#)).is_err());
        let v = vector("[-0.0063667297, 1e-3, 2]");
        assert_eq!(v.json(), "[-0.0063667297, 1e-3, 2]");
        assert_eq!(v.f32s(), [-0.006_366_729_7_f32, 0.001, 2.0]);
    }

    #[test]
    fn joins_calls_and_writes_openai_answers() {
        let joined = Embeddings::concat(vec![
            Embeddings {
                vectors: vec![vector("[0.5,-0.25]")],
                prompt_tokens: Some(3),
            },
            Embeddings {
                vectors: vec![vector("[1.0, 0.0016]")],
                prompt_tokens: Some(4),
            },
        ]);
        assert_eq!(joined.prompt_tokens, Some(7));
        let unknown = Embeddings::concat(vec![
            joined.clone(),
            Embeddings {
                vectors: vec![],
                prompt_tokens: None,
            },
        ]);
        assert_eq!(unknown.prompt_tokens, None);

        let bytes = openai_body(&joined, "gemini-embedding-001", false, 7).unwrap();
        // The upstream's numbers, exactly as written.
        assert!(std::str::from_utf8(&bytes)
            .unwrap()
            .contains(r#""embedding":[1.0, 0.0016]"#));
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                {"object": "embedding", "index": 1, "embedding": [1.0, 0.0016]}],
                "model": "gemini-embedding-001",
                "usage": {"prompt_tokens": 7, "total_tokens": 7}})
        );
        let body: Value =
            serde_json::from_slice(&openai_body(&joined, "m", true, 7).unwrap()).unwrap();
        // OpenAI's encoding: little-endian f32 bytes, standard base64.
        let b64 = body["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, [0.5, -0.25]);
        assert_eq!(b64, "AAAAPwAAgL4=");
    }

    #[test]
    fn token_counts_take_integers_and_float_encodings() {
        assert_eq!(token_count(Some(&json!(6))), Some(6));
        assert_eq!(token_count(Some(&json!(13.0))), Some(13));
        assert_eq!(token_count(Some(&json!(-1))), None);
        assert_eq!(token_count(Some(&json!("6"))), None);
        assert_eq!(token_count(None), None);
    }
}

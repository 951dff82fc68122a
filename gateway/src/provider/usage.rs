//! Reading the usage vector out of OpenAI-family JSON, wherever each provider puts it.
//!
//! Shapes handled: OpenAI's top-level `usage` (with `prompt_tokens_details` / `completion_tokens_details`),
//! Moonshot's `choices[0].usage` and top-level `usage.cached_tokens`, and the cumulative per-chunk usage of
//! Huawei ModelArts and the last-chunk usage of Zhipu (both plain top-level `usage`; callers keep the last
//! value, never a sum).

use serde_json::{Map, Value};
use tollgate_schemas::UsageVector;

/// The usage object of a response or stream chunk, if it carries one: top-level `usage`, else the first
/// `choices[].usage` (Moonshot). `null` counts as absent.
#[must_use]
pub fn find_usage(obj: &Map<String, Value>) -> Option<&Map<String, Value>> {
    if let Some(Value::Object(u)) = obj.get("usage") {
        return Some(u);
    }
    obj.get("choices")?
        .as_array()?
        .iter()
        .find_map(|c| c.get("usage")?.as_object())
}

/// Reads the usage vector from a usage object.
#[must_use]
pub fn usage_vector(u: &Map<String, Value>) -> UsageVector {
    let num = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let prompt_details = u.get("prompt_tokens_details");
    let cached = prompt_details
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .or_else(|| u.get("cached_tokens").and_then(Value::as_u64))
        .unwrap_or(0);
    UsageVector {
        prompt_tokens: num(u.get("prompt_tokens")),
        completion_tokens: num(u.get("completion_tokens")),
        cached_read_tokens: cached,
        cache_write_tokens: num(prompt_details.and_then(|d| d.get("cache_write_tokens"))),
        reasoning_tokens: num(u
            .get("completion_tokens_details")
            .and_then(|d| d.get("reasoning_tokens"))),
    }
}

/// The usage object in OpenAI's shape: Moonshot's top-level `cached_tokens` moves into
/// `prompt_tokens_details.cached_tokens`, and `total_tokens` is filled in when missing.
#[must_use]
pub fn normalized_usage(u: &Map<String, Value>) -> Map<String, Value> {
    let mut out = u.clone();
    if let Some(cached) = out.remove("cached_tokens") {
        let details = out
            .entry("prompt_tokens_details")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(d) = details {
            d.entry("cached_tokens").or_insert(cached);
        }
    }
    if !out.contains_key("total_tokens") {
        let v = usage_vector(u);
        out.insert("total_tokens".into(), Value::from(v.total_tokens()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_openai_usage_with_details() {
        let chunk = obj(
            json!({"choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 20,
            "total_tokens": 100, "prompt_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 12}}}),
        );
        let v = usage_vector(find_usage(&chunk).unwrap());
        assert_eq!(
            v,
            UsageVector {
                prompt_tokens: 80,
                completion_tokens: 20,
                cached_read_tokens: 64,
                cache_write_tokens: 3,
                reasoning_tokens: 12
            }
        );
    }

    #[test]
    fn reads_moonshot_usage_inside_the_choice_with_top_level_cached_tokens() {
        let chunk = obj(
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
            "usage": {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32, "cached_tokens": 10}}]}),
        );
        let u = find_usage(&chunk).unwrap();
        assert_eq!(usage_vector(u).cached_read_tokens, 10);
        let n = normalized_usage(u);
        assert_eq!(n["prompt_tokens_details"]["cached_tokens"], 10);
        assert!(!n.contains_key("cached_tokens"));
    }

    #[test]
    fn null_usage_is_absent_and_missing_total_is_computed() {
        assert!(find_usage(&obj(json!({"choices": [{"delta": {}}], "usage": null}))).is_none());
        let n = normalized_usage(&obj(json!({"prompt_tokens": 2, "completion_tokens": 3})));
        assert_eq!(n["total_tokens"], 5);
    }
}

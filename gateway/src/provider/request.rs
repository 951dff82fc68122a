//! Shaping a client's OpenAI request for one upstream of the OpenAI wire family.
//!
//! Only the fields the gateway must touch change; everything else (tools, response_format, n, logprobs,
//! seed, user, …) reaches the upstream as the client sent it.

use serde_json::{Map, Value};

use super::kind::{MaxTokensField, ProviderKind};

/// What the proxy knows about a request without re-reading its body.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub model: &'a str,
    pub upstream_model: &'a str,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    pub has_max_completion_tokens: bool,
}

/// Whether [`prepare_chat`] would change anything: when it would not, the client's bytes go upstream as
/// they are, with no parse or re-serialization.
#[must_use]
pub fn chat_needs_rewrite(kind: ProviderKind, f: &RequestFacts<'_>) -> bool {
    f.model != f.upstream_model
        || (f.stream && kind.needs_include_usage_flag() && !f.include_usage)
        || (kind.max_tokens_field() == MaxTokensField::MaxTokens && f.has_max_completion_tokens)
        || matches!(kind, ProviderKind::ZeroOne | ProviderKind::Zhipu)
}

/// Rewrites a chat-completions body in place for `kind`, naming `upstream_model`.
pub fn prepare_chat(
    kind: ProviderKind,
    body: &mut Map<String, Value>,
    upstream_model: &str,
    stream: bool,
) {
    body.insert("model".into(), Value::String(upstream_model.into()));
    if stream && kind.needs_include_usage_flag() {
        // Usage is always requested so every stream is metered; the relay strips it again when the client
        // did not ask for it.
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(o) = options {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    if kind.max_tokens_field() == MaxTokensField::MaxTokens {
        if let Some(v) = body.remove("max_completion_tokens") {
            body.entry("max_tokens").or_insert(v);
        }
    }
    match kind {
        // Portkey's 01.AI adapter: the platform predates the `developer` role.
        ProviderKind::ZeroOne => rename_developer_role(body),
        ProviderKind::Zhipu => {
            // Zhipu refuses top_p >= 1 and takes `stop` only as an array (new-api's adapter).
            if let Some(top_p) = body.get_mut("top_p") {
                if top_p.as_f64().is_some_and(|p| p >= 1.0) {
                    *top_p = Value::from(0.99);
                }
            }
            if let Some(stop) = body.get_mut("stop") {
                if let Value::String(s) = stop {
                    *stop = Value::Array(vec![Value::String(std::mem::take(s))]);
                }
            }
        }
        _ => {}
    }
}

/// Sets the upstream model name on an embeddings body.
pub fn prepare_embeddings(body: &mut Map<String, Value>, upstream_model: &str) {
    body.insert("model".into(), Value::String(upstream_model.into()));
}

fn rename_developer_role(body: &mut Map<String, Value>) {
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return;
    };
    for m in messages {
        if let Some(role) = m.get_mut("role") {
            if role == "developer" {
                *role = Value::String("system".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_only_when_something_changes() {
        let plain = RequestFacts {
            model: "gpt-4o",
            upstream_model: "gpt-4o",
            stream: false,
            include_usage: false,
            has_max_completion_tokens: true,
        };
        assert!(!chat_needs_rewrite(ProviderKind::OpenAi, &plain));
        assert!(chat_needs_rewrite(
            ProviderKind::OpenAi,
            &RequestFacts {
                upstream_model: "gpt-4o-2024",
                ..plain
            }
        ));
        assert!(chat_needs_rewrite(
            ProviderKind::OpenAi,
            &RequestFacts {
                stream: true,
                ..plain
            }
        ));
        assert!(!chat_needs_rewrite(
            ProviderKind::OpenAi,
            &RequestFacts {
                stream: true,
                include_usage: true,
                ..plain
            }
        ));
        assert!(
            chat_needs_rewrite(ProviderKind::Moonshot, &plain),
            "max_completion_tokens → max_tokens"
        );
        assert!(!chat_needs_rewrite(
            ProviderKind::Moonshot,
            &RequestFacts {
                has_max_completion_tokens: false,
                ..plain
            }
        ));
        assert!(chat_needs_rewrite(
            ProviderKind::Zhipu,
            &RequestFacts {
                has_max_completion_tokens: false,
                ..plain
            }
        ));
    }

    fn prepared(kind: ProviderKind, body: Value, stream: bool) -> Value {
        let mut map = body.as_object().unwrap().clone();
        prepare_chat(kind, &mut map, "up-model", stream);
        Value::Object(map)
    }

    #[test]
    fn sets_upstream_model_and_keeps_fields_it_does_not_own() {
        let body = json!({"model": "public", "messages": [], "tools": [{"type": "function"}], "n": 2,
            "logprobs": true, "seed": 7, "user": "u1", "response_format": {"type": "json_object"}});
        let out = prepared(ProviderKind::OpenAi, body.clone(), false);
        assert_eq!(out["model"], "up-model");
        for field in [
            "tools",
            "n",
            "logprobs",
            "seed",
            "user",
            "response_format",
            "messages",
        ] {
            assert_eq!(out[field], body[field], "{field}");
        }
        assert!(out.get("stream_options").is_none());
    }

    #[test]
    fn streams_always_request_usage_keeping_other_stream_options() {
        let out = prepared(
            ProviderKind::OpenAi,
            json!({"model": "m", "stream": true, "stream_options": {"include_obfuscation": false}}),
            true,
        );
        assert_eq!(
            out["stream_options"],
            json!({"include_obfuscation": false, "include_usage": true})
        );
        let zhipu = prepared(
            ProviderKind::Zhipu,
            json!({"model": "m", "stream": true}),
            true,
        );
        assert!(
            zhipu.get("stream_options").is_none(),
            "zhipu sends usage unasked"
        );
    }

    #[test]
    fn max_completion_tokens_becomes_max_tokens_where_only_that_is_known() {
        for kind in [
            ProviderKind::Moonshot,
            ProviderKind::ZeroOne,
            ProviderKind::Ollama,
            ProviderKind::Zhipu,
        ] {
            let out = prepared(
                kind,
                json!({"model": "m", "max_completion_tokens": 64}),
                false,
            );
            assert_eq!(out["max_tokens"], 64, "{kind:?}");
            assert!(out.get("max_completion_tokens").is_none());
        }
        let out = prepared(
            ProviderKind::OpenAi,
            json!({"model": "m", "max_completion_tokens": 64}),
            false,
        );
        assert_eq!(out["max_completion_tokens"], 64);
        let both = prepared(
            ProviderKind::Moonshot,
            json!({"max_tokens": 10, "max_completion_tokens": 64}),
            false,
        );
        assert_eq!(both["max_tokens"], 10);
    }

    #[test]
    fn provider_quirks() {
        let out = prepared(
            ProviderKind::ZeroOne,
            json!({"messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "y"}]}),
            false,
        );
        assert_eq!(out["messages"][0]["role"], "system");
        assert_eq!(out["messages"][1]["role"], "user");
        let z = prepared(
            ProviderKind::Zhipu,
            json!({"top_p": 1.0, "stop": "END"}),
            false,
        );
        assert_eq!(z["top_p"], 0.99);
        assert_eq!(z["stop"], json!(["END"]));
        let z = prepared(ProviderKind::Zhipu, json!({"top_p": 0.5}), false);
        assert_eq!(z["top_p"], 0.5);
    }
}

//! Attribution beyond the key: the end user and business tags a request is charged to.
//!
//! - End user: the `x-tollgate-end-user` header, else the OpenAI `user` field.
//! - Tags: the `x-tollgate-tags` header (`feature=summarize,env=prod`) over the request's `metadata` object
//!   (string values only; the header wins on the same key).
//!
//! Both land on the usage event (and so in ClickHouse, reports and budgets). Bad input is refused with a clear
//! 400, never silently dropped: a mislabelled request is a wrong bill.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde_json::Value;

use crate::error::GatewayError;

/// Header naming the end user a request is for.
pub const END_USER_HEADER: &str = "x-tollgate-end-user";
/// Header carrying business tags.
pub const TAGS_HEADER: &str = "x-tollgate-tags";
/// Most tags on one request.
pub const MAX_TAGS: usize = 16;
const MAX_KEY_LEN: usize = 64;
const MAX_VALUE_LEN: usize = 256;

fn bad(message: String) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: None,
    }
}

/// The end user: the header when present (and non-empty), else `user` from the body.
///
/// # Errors
/// A header that is not visible ASCII / UTF-8 or longer than 256 characters.
pub fn end_user(
    headers: &HeaderMap,
    from_body: Option<String>,
) -> Result<Option<String>, GatewayError> {
    match headers.get(END_USER_HEADER) {
        None => Ok(from_body),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| bad(format!("{END_USER_HEADER} must be visible ASCII")))?
                .trim();
            if s.chars().count() > MAX_VALUE_LEN {
                return Err(bad(format!(
                    "{END_USER_HEADER} is longer than {MAX_VALUE_LEN} characters"
                )));
            }
            Ok(if s.is_empty() {
                from_body
            } else {
                Some(s.to_string())
            })
        }
    }
}

/// Tags from `metadata` (string values) with the header's on top.
///
/// # Errors
/// A malformed header entry, a key or value too long or with characters outside `[A-Za-z0-9_.:/-]` (keys),
/// or more than [`MAX_TAGS`] tags.
pub fn tags(
    headers: &HeaderMap,
    metadata: Option<&Value>,
) -> Result<BTreeMap<String, String>, GatewayError> {
    let mut tags = BTreeMap::new();
    if let Some(Value::Object(m)) = metadata {
        for (k, v) in m {
            // OpenAI's metadata holds strings; anything else is the client's own business, not a tag.
            if let Value::String(v) = v {
                insert(&mut tags, k, v, "metadata")?;
            }
        }
    }
    for value in headers.get_all(TAGS_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| bad(format!("{TAGS_HEADER} must be visible ASCII")))?;
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                bad(format!(
                    "{TAGS_HEADER}: {pair:?} is not key=value (example: feature=summarize,env=prod)"
                ))
            })?;
            insert(&mut tags, k.trim(), v.trim(), TAGS_HEADER)?;
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(bad(format!(
            "at most {MAX_TAGS} tags per request ({} given across {TAGS_HEADER} and metadata)",
            tags.len()
        )));
    }
    Ok(tags)
}

fn insert(
    tags: &mut BTreeMap<String, String>,
    key: &str,
    value: &str,
    source: &str,
) -> Result<(), GatewayError> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b));
    if !key_ok {
        return Err(bad(format!(
            "{source}: tag key {:?} must be 1-{MAX_KEY_LEN} characters of A-Z a-z 0-9 _ . : / -",
            key.chars().take(80).collect::<String>()
        )));
    }
    if value.chars().count() > MAX_VALUE_LEN {
        return Err(bad(format!(
            "{source}: the value of tag {key:?} is longer than {MAX_VALUE_LEN} characters"
        )));
    }
    tags.insert(key.to_string(), value.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn header_tags_override_metadata_and_non_strings_are_ignored() {
        let h = headers(&[
            (TAGS_HEADER, "feature=summarize, env=prod"),
            (TAGS_HEADER, "team=x"),
        ]);
        let meta = json!({"env": "dev", "ticket": "T-1", "n": 5});
        let t = tags(&h, Some(&meta)).unwrap();
        let got: Vec<(&str, &str)> = t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("env", "prod"),
                ("feature", "summarize"),
                ("team", "x"),
                ("ticket", "T-1")
            ]
        );
    }

    #[test]
    fn malformed_tags_are_refused_with_a_clear_message() {
        for (value, needle) in [
            ("feature", "is not key=value"),
            ("bad key=1", "tag key"),
            ("=v", "tag key"),
        ] {
            let e = tags(&headers(&[(TAGS_HEADER, value)]), None).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
            assert!(e.to_string().contains(needle), "{value}: {e}");
        }
        let many: String = (0..17).map(|i| format!("k{i}=v,")).collect();
        assert!(tags(&headers(&[(TAGS_HEADER, &many)]), None)
            .unwrap_err()
            .to_string()
            .contains("at most 16"));
    }

    #[test]
    fn end_user_header_wins_over_the_body() {
        let h = headers(&[(END_USER_HEADER, "alice")]);
        assert_eq!(
            end_user(&h, Some("bob".into())).unwrap().as_deref(),
            Some("alice")
        );
        assert_eq!(
            end_user(&HeaderMap::new(), Some("bob".into()))
                .unwrap()
                .as_deref(),
            Some("bob")
        );
        let long = "x".repeat(300);
        assert!(end_user(&headers(&[(END_USER_HEADER, &long)]), None).is_err());
    }
}

//! `${VAR}` / `${VAR:-default}` interpolation over every string of a parsed TOML document.
//!
//! Interpolation runs on parsed values, not on the file's text, so a variable's value can never change the
//! document's structure (a key containing `"` or a newline stays one string).

use super::ConfigIssue;

/// Reads environment variables; a seam so tests pass a map instead of the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Replaces `${…}` in every string of `value`, recording one issue per unresolvable reference.
pub fn interpolate_tree(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Env,
    issues: &mut Vec<ConfigIssue>,
) {
    match value {
        toml::Value::String(s) => match interpolate(s, env) {
            Ok(out) => *s = out,
            Err(message) => issues.push(ConfigIssue::new(path, message)),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), env, issues);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate_tree(item, &child, env, issues);
            }
        }
        _ => {}
    }
}

/// Interpolates one string. `$$` is a literal `$`.
///
/// # Errors
/// A message naming the variable when it is unset and has no default, or when a `${` is not closed.
pub fn interpolate(input: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {input:?}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in `${{{expr}}}`"));
            }
            match (env.var(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        assert_eq!(interpolate("Bearer ${KEY}", &env).unwrap(), "Bearer sk-1");
        assert_eq!(
            interpolate("${NOPE:-http://x:1}/v1", &env).unwrap(),
            "http://x:1/v1"
        );
        assert_eq!(interpolate("${EMPTY:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(interpolate("${KEY:-dflt}", &env).unwrap(), "sk-1");
        assert_eq!(
            interpolate("cost $$5 and $ alone", &env).unwrap(),
            "cost $5 and $ alone"
        );
    }

    #[test]
    fn unset_variable_without_default_is_an_error_naming_it() {
        assert_eq!(
            interpolate("${NOPE}", &env).unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(interpolate("${KEY", &env).unwrap_err().contains("unclosed"));
        assert!(interpolate("${BAD NAME}", &env)
            .unwrap_err()
            .contains("invalid variable name"));
    }

    #[test]
    fn tree_interpolation_reports_every_path() {
        let mut doc: toml::Value =
            toml::from_str("a = '${X}'\n[t]\nlist = ['${KEY}', '${Y}']").unwrap();
        let mut issues = Vec::new();
        interpolate_tree(&mut doc, "", &env, &mut issues);
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["a", "t.list[1]"]);
        assert_eq!(doc["t"]["list"][0].as_str(), Some("sk-1"));
    }
}

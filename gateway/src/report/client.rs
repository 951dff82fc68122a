//! `tollgate usage`: calls `GET /admin/usage` on a running gateway and prints the report as a table, or
//! passes the API's JSON / CSV through unchanged.

use serde_json::Value;

use crate::config::Secret;
use crate::error::GatewayError;

/// How `tollgate usage` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Csv,
}

/// One call of the usage API.
#[derive(Debug, Clone)]
pub struct UsageRequest {
    /// The gateway's base URL (`http://127.0.0.1:8080`).
    pub base_url: String,
    pub admin_key: Secret,
    /// Query parameters as the API names them (`from`, `group_by`, `tenant`, `tag`, …).
    pub params: Vec<(String, String)>,
    pub output: Output,
}

/// Fetches the report and renders it for the terminal.
///
/// # Errors
/// [`GatewayError::Unavailable`] when the gateway cannot be reached or answers with an error (its message is
/// kept).
pub async fn fetch(request: &UsageRequest) -> Result<String, GatewayError> {
    let mut params = request.params.clone();
    params.push((
        "format".into(),
        if request.output == Output::Csv {
            "csv"
        } else {
            "json"
        }
        .into(),
    ));
    let url = format!("{}/admin/usage", request.base_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(request.admin_key.expose())
        .query(&params)
        .send()
        .await
        .map_err(|e| GatewayError::Unavailable(format!("cannot reach {url}: {e}")))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| {
        GatewayError::Unavailable(format!("reading the answer of {url} failed: {e}"))
    })?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(GatewayError::Unavailable(format!(
            "the gateway answered {status}: {message}"
        )));
    }
    match request.output {
        Output::Json | Output::Csv => Ok(body),
        Output::Table => {
            let report: Value = serde_json::from_str(&body).map_err(|e| {
                GatewayError::Unavailable(format!("the gateway's answer is not a report: {e}"))
            })?;
            Ok(table(&report))
        }
    }
}

/// The report as an aligned text table with a totals line per currency.
#[must_use]
pub fn table(report: &Value) -> String {
    let group_by: Vec<String> = report["group_by"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let bucketed = !report["bucket"].is_null();
    let figures = [
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cached_read_tokens",
        "reasoning_tokens",
        "price_missing",
    ];
    let mut header: Vec<String> = Vec::new();
    if bucketed {
        header.push("bucket_start".into());
    }
    header.extend(group_by.iter().cloned());
    header.extend(figures.iter().map(|f| (*f).to_string()));
    header.push("cost".into());
    header.push("currency".into());
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut lines = vec![header];
    let empty = Vec::new();
    for row in report["rows"].as_array().unwrap_or(&empty) {
        let mut line = Vec::new();
        if bucketed {
            line.push(text(&row["bucket_start"]));
        }
        line.extend(group_by.iter().map(|d| text(&row["dimensions"][d])));
        line.extend(figures.iter().map(|f| text(&row[*f])));
        line.push(text(&row["cost"]));
        line.push(text(&row["currency"]));
        lines.push(line);
    }
    let mut leading = usize::from(bucketed) + group_by.len();
    if leading == 0 {
        // No dimension column to hold the word TOTAL: add an unnamed one.
        for line in &mut lines {
            line.insert(0, String::new());
        }
        leading = 1;
    }
    for total in report["totals"].as_array().unwrap_or(&empty) {
        let mut line = vec![String::new(); leading];
        line[0] = "TOTAL".into();
        line.extend(figures.iter().map(|f| text(&total[*f])));
        line.push(text(&total["cost"]));
        line.push(text(&total["currency"]));
        lines.push(line);
    }
    align(&lines, leading)
}

/// Left-aligns the first `text_columns` columns, right-aligns the numbers.
fn align(lines: &[Vec<String>], text_columns: usize) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, s)| {
                let w = widths[c];
                if c < text_columns || c + 1 == columns {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_shows_rows_and_exact_totals() {
        let report = json!({
            "group_by": ["model"], "bucket": null,
            "rows": [
                {"dimensions": {"model": "gpt-4o-mini"}, "currency": "USD", "requests": 2, "errors": 0,
                 "prompt_tokens": 20, "completion_tokens": 8, "cached_read_tokens": 0, "reasoning_tokens": 0,
                 "price_missing": 0, "cost_nanos": 7800, "cost": "0.0000078"},
                {"dimensions": {"model": "kimi"}, "currency": "USD", "requests": 1, "errors": 1,
                 "prompt_tokens": 3, "completion_tokens": 0, "cached_read_tokens": 0, "reasoning_tokens": 0,
                 "price_missing": 1, "cost_nanos": 0, "cost": "0"}
            ],
            "totals": [{"currency": "USD", "requests": 3, "errors": 1, "prompt_tokens": 23,
                        "completion_tokens": 8, "cached_read_tokens": 0, "reasoning_tokens": 0,
                        "price_missing": 1, "cost_nanos": 7800, "cost": "0.0000078"}]
        });
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("model"));
        assert!(lines[1].starts_with("gpt-4o-mini") && lines[1].contains("0.0000078  USD"));
        assert!(lines[3].starts_with("TOTAL") && lines[3].contains("23"));
        assert!(lines[3].trim_end().ends_with("0.0000078  USD"));
    }
}

//! A report as CSV (RFC 4180): a header, then one line per row — bucket start (when bucketed), the
//! dimensions in `group_by` order, currency, the counts, `cost_nanos` and the exact decimal `cost`.

use super::rows::{Amounts, UsageReport};
use super::time;

/// The whole CSV text, lines ending in `\r\n`.
#[must_use]
pub fn render(report: &UsageReport) -> String {
    let mut header: Vec<String> = Vec::new();
    if report.bucket.is_some() {
        header.push("bucket_start".into());
    }
    header.extend(report.group_by.iter().map(super::Dimension::name));
    header.push("currency".into());
    header.extend(
        Amounts::of(&super::Figures::default())
            .columns()
            .map(|(name, _)| name.to_string()),
    );
    let mut out = line(&header);
    for row in &report.rows {
        let mut fields: Vec<String> = Vec::new();
        if let Some(ms) = row.bucket_ms {
            fields.push(time::format_ms(ms));
        }
        fields.extend(row.values.iter().map(|v| defuse(v)));
        fields.push(row.currency.clone());
        fields.extend(Amounts::of(&row.figures).columns().map(|(_, v)| v));
        out.push_str(&line(&fields));
    }
    out
}

fn line(fields: &[String]) -> String {
    let mut out = fields
        .iter()
        .map(|f| field(f))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    out
}

/// Quotes a field when it holds a comma, quote or line break.
fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// A dimension value (a key name, a tag) starting with `=`, `+`, `-` or `@` gets a leading `'`, so a
/// spreadsheet never runs it as a formula.
fn defuse(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::query::{Bucket, Dimension, Filters, UsageQuery};
    use crate::report::rows::{Figures, Row};

    #[test]
    fn header_rows_quoting_and_exact_cost() {
        let query = UsageQuery {
            from_ms: 0,
            to_ms: 86_400_000,
            group_by: vec![Dimension::Key, Dimension::Tag("feature".into())],
            filters: Filters::default(),
            bucket: Some(Bucket::Day),
        };
        let report = UsageReport::new(
            &query,
            "embedded",
            vec![Row {
                bucket_ms: Some(0),
                values: vec!["a,\"b\"".into(), "=cmd()".into()],
                currency: "USD".into(),
                figures: Figures {
                    requests: 3,
                    cost_nanos: -1_500_000_000,
                    ..Figures::default()
                },
            }],
        );
        let text = render(&report);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "bucket_start,key,tag:feature,currency,requests,errors,prompt_tokens,completion_tokens,\
             cached_read_tokens,cache_write_tokens,reasoning_tokens,price_missing,cost_nanos,cost"
        );
        assert_eq!(
            lines[1],
            "1970-01-01T00:00:00Z,\"a,\"\"b\"\"\",'=cmd(),USD,3,0,0,0,0,0,0,0,-1500000000,-1.5"
        );
        assert_eq!(lines.len(), 3);
    }
}

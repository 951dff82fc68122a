//! What a usage report asks for: a time range, the dimensions to group by, filters and an optional time bucket.
//!
//! Parsed from the `/admin/usage` query string ([`UsageQuery::from_pairs`]); both backends read the same
//! [`UsageQuery`], so a value that is valid here is valid for either of them.

use std::fmt;

use crate::error::GatewayError;

use super::time;

/// The default range: the last 24 hours.
pub const DEFAULT_RANGE_MS: i64 = 24 * 3_600_000;
/// Most time buckets one report may span (e.g. a year of hours is refused: ask for days).
pub const MAX_BUCKETS: i64 = 10_000;
/// Most rows one report returns; a query that would return more is refused (narrow it or group by less).
pub const MAX_ROWS: usize = 100_000;

/// One grouping dimension of a report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dimension {
    Tenant,
    Team,
    Key,
    EndUser,
    Model,
    Provider,
    Deployment,
    /// The value of one business tag (`x-tollgate-tags` / `metadata`); `""` for events without that tag.
    Tag(String),
}

impl Dimension {
    /// `tenant`, `key`, `tag:feature`, …
    ///
    /// # Errors
    /// [`GatewayError::InvalidRequest`] naming the accepted values.
    pub fn parse(text: &str) -> Result<Self, GatewayError> {
        Ok(match text.trim() {
            "tenant" => Self::Tenant,
            "team" => Self::Team,
            "key" => Self::Key,
            "end_user" => Self::EndUser,
            "model" => Self::Model,
            "provider" => Self::Provider,
            "deployment" => Self::Deployment,
            other => match other.strip_prefix("tag:") {
                Some(key) if !key.is_empty() => Self::Tag(key.to_string()),
                _ => {
                    return Err(invalid(
                        "group_by",
                        format!(
                            "unknown dimension {other:?} in group_by; use tenant, team, key, end_user, model, \
                             provider, deployment or tag:<key>"
                        ),
                    ))
                }
            },
        })
    }

    /// The name used in results (JSON field, CSV column): `key`, `tag:feature`.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::Tenant => "tenant".into(),
            Self::Team => "team".into(),
            Self::Key => "key".into(),
            Self::EndUser => "end_user".into(),
            Self::Model => "model".into(),
            Self::Provider => "provider".into(),
            Self::Deployment => "deployment".into(),
            Self::Tag(key) => format!("tag:{key}"),
        }
    }

    /// The plain `usage_events` column behind this dimension (`None` for tags). Same in both stores.
    #[must_use]
    pub fn column(&self) -> Option<&'static str> {
        match self {
            Self::Tenant => Some("tenant"),
            Self::Team => Some("team"),
            Self::Key => Some("key_id"),
            Self::EndUser => Some("end_user"),
            Self::Model => Some("model"),
            Self::Provider => Some("provider"),
            Self::Deployment => Some("deployment"),
            Self::Tag(_) => None,
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The width of a time bucket (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    /// # Errors
    /// [`GatewayError::InvalidRequest`] for anything but `minute`, `hour`, `day`.
    pub fn parse(text: &str) -> Result<Self, GatewayError> {
        match text {
            "minute" => Ok(Self::Minute),
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            other => Err(invalid(
                "bucket",
                format!("unknown bucket {other:?}; use minute, hour or day"),
            )),
        }
    }

    #[must_use]
    pub fn millis(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// Equality filters; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub key: Option<String>,
    pub end_user: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub deployment: Option<String>,
    /// `(tag key, tag value)` pairs, each one required.
    pub tags: Vec<(String, String)>,
}

impl Filters {
    /// The column filters as `(column, value)`, in a fixed order.
    #[must_use]
    pub fn columns(&self) -> Vec<(&'static str, &str)> {
        [
            ("tenant", &self.tenant),
            ("team", &self.team),
            ("key_id", &self.key),
            ("end_user", &self.end_user),
            ("model", &self.model),
            ("provider", &self.provider),
            ("deployment", &self.deployment),
        ]
        .into_iter()
        .filter_map(|(column, value)| value.as_deref().map(|v| (column, v)))
        .collect()
    }
}

/// One usage report request. Events count when `from_ms <= started_at_ms < to_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: Vec<Dimension>,
    pub filters: Filters,
    pub bucket: Option<Bucket>,
}

/// How the HTTP answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl UsageQuery {
    /// Parses `/admin/usage` parameters: `from`, `to` (RFC 3339, `YYYY-MM-DD` or epoch milliseconds; default
    /// the last 24 hours before `now_ms`), `group_by` (comma-separated dimensions), `bucket`, the filters
    /// `tenant`, `team`, `key`, `end_user`, `model`, `provider`, `deployment`, `tag` (`name=value`, may
    /// repeat), and `format` (`json` | `csv`). Unknown parameters are refused, so a typo never widens a report.
    ///
    /// # Errors
    /// [`GatewayError::InvalidRequest`] naming the parameter.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
        now_ms: i64,
    ) -> Result<(Self, Format), GatewayError> {
        let mut from = None;
        let mut to = None;
        let mut group_by = Vec::new();
        let mut bucket = None;
        let mut filters = Filters::default();
        let mut format = Format::Json;
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "from" => {
                    from = Some(parse_time("from", &value)?);
                    continue;
                }
                "to" => {
                    to = Some(parse_time("to", &value)?);
                    continue;
                }
                "group_by" | "by" => {
                    for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                        let dimension = Dimension::parse(part)?;
                        if group_by.contains(&dimension) {
                            return Err(invalid(
                                "group_by",
                                format!("dimension {dimension} is listed twice in group_by"),
                            ));
                        }
                        group_by.push(dimension);
                    }
                    continue;
                }
                "bucket" => {
                    bucket = (!value.is_empty())
                        .then(|| Bucket::parse(&value))
                        .transpose()?;
                    continue;
                }
                "format" => {
                    format = match value.as_str() {
                        "json" | "" => Format::Json,
                        "csv" => Format::Csv,
                        other => {
                            return Err(invalid(
                                "format",
                                format!("unknown format {other:?}; use json or csv"),
                            ))
                        }
                    };
                    continue;
                }
                "tag" => {
                    let (key, tag_value) = value
                        .split_once('=')
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| {
                            invalid(
                                "tag",
                                format!("tag filter {value:?} must look like name=value"),
                            )
                        })?;
                    filters.tags.push((key.to_string(), tag_value.to_string()));
                    continue;
                }
                "tenant" => &mut filters.tenant,
                "team" => &mut filters.team,
                "key" => &mut filters.key,
                "end_user" => &mut filters.end_user,
                "model" => &mut filters.model,
                "provider" => &mut filters.provider,
                "deployment" => &mut filters.deployment,
                other => {
                    return Err(invalid(
                        "query",
                        format!(
                            "unknown parameter {other:?}; use from, to, group_by, bucket, format, tenant, team, \
                             key, end_user, model, provider, deployment or tag"
                        ),
                    ))
                }
            };
            if slot.is_some() {
                return Err(invalid(
                    "query",
                    format!("parameter {name:?} is given twice"),
                ));
            }
            *slot = Some(value);
        }
        let to_ms = to.unwrap_or(now_ms);
        let from_ms = from.unwrap_or(to_ms - DEFAULT_RANGE_MS);
        let query = Self {
            from_ms,
            to_ms,
            group_by,
            filters,
            bucket,
        };
        query.validate()?;
        Ok((query, format))
    }

    /// Checks the range and the number of buckets it spans.
    ///
    /// # Errors
    /// [`GatewayError::InvalidRequest`].
    pub fn validate(&self) -> Result<(), GatewayError> {
        if self.from_ms >= self.to_ms {
            return Err(invalid(
                "from",
                format!(
                    "`from` ({}) must be before `to` ({})",
                    time::format_ms(self.from_ms),
                    time::format_ms(self.to_ms)
                ),
            ));
        }
        if let Some(bucket) = self.bucket {
            let buckets = (self.to_ms - self.from_ms) / bucket.millis();
            if buckets > MAX_BUCKETS {
                return Err(invalid(
                    "bucket",
                    format!(
                        "the range spans {buckets} {}s, more than {MAX_BUCKETS}; use a wider bucket or a \
                         shorter range",
                        bucket.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn parse_time(param: &'static str, value: &str) -> Result<i64, GatewayError> {
    time::parse(value).ok_or_else(|| {
        invalid(
            param,
            format!(
                "`{param}` must be an RFC 3339 time (2026-01-31T12:00:00Z), a date (2026-01-31) or epoch \
                 milliseconds, got {value:?}"
            ),
        )
    })
}

pub(super) fn invalid(param: &'static str, message: String) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<(UsageQuery, Format), GatewayError> {
        UsageQuery::from_pairs(
            q.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())),
            1_800_000_000_000,
        )
    }

    #[test]
    fn defaults_to_the_last_day_without_grouping() {
        let (q, format) = parse(&[]).unwrap();
        assert_eq!(q.to_ms, 1_800_000_000_000);
        assert_eq!(q.from_ms, 1_800_000_000_000 - 86_400_000);
        assert!(q.group_by.is_empty() && q.bucket.is_none());
        assert_eq!(format, Format::Json);
    }

    #[test]
    fn reads_dimensions_filters_bucket_and_times() {
        let (q, format) = parse(&[
            ("from", "2026-01-01T00:00:00Z"),
            ("to", "1767229200000"),
            ("group_by", "model,key,tag:feature"),
            ("bucket", "hour"),
            ("tenant", "acme"),
            ("tag", "feature=summarize=v2"),
            ("format", "csv"),
        ])
        .unwrap();
        assert_eq!(q.from_ms, 1_767_225_600_000);
        assert_eq!(q.to_ms, 1_767_229_200_000);
        assert_eq!(
            q.group_by,
            [
                Dimension::Model,
                Dimension::Key,
                Dimension::Tag("feature".into())
            ]
        );
        assert_eq!(q.bucket, Some(Bucket::Hour));
        assert_eq!(q.filters.tenant.as_deref(), Some("acme"));
        assert_eq!(
            q.filters.tags,
            [("feature".to_string(), "summarize=v2".to_string())]
        );
        assert_eq!(q.filters.columns(), [("tenant", "acme")]);
        assert_eq!(format, Format::Csv);
    }

    #[test]
    fn refuses_what_it_cannot_answer_exactly() {
        let cases: &[&[(&str, &str)]] = &[
            &[("group_by", "color")],
            &[("group_by", "tag:")],
            &[("group_by", "model,model")],
            &[("bucket", "week")],
            &[("from", "yesterday")],
            &[("from", "2026-01-02"), ("to", "2026-01-01")],
            &[
                ("from", "2020-01-01"),
                ("to", "2026-01-01"),
                ("bucket", "minute"),
            ],
            &[("tag", "novalue")],
            &[("tenant", "a"), ("tenant", "b")],
            &[("tenat", "acme")],
            &[("format", "xml")],
        ];
        for case in cases {
            let err = parse(case).unwrap_err();
            assert_eq!(err.status(), 400, "{case:?}");
            assert!(!err.to_string().is_empty());
        }
    }
}

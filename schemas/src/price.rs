//! Prices and cost: the shipped price table, exact cost of a usage vector, and currency normalisation.
//!
//! Money is integer **nano-units** of a currency (1 USD = 1_000_000_000 nano-USD) and never passes through a
//! float. Prices are nano-units per million tokens; a cost is `Σ tokens × price / 1_000_000`, summed over the
//! classes in `u128` and rounded once, half up — so a request's cost is exact to the nano-unit and the same
//! on every replica, in ClickHouse and in re-pricing.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::usage::UsageVector;
use crate::SchemaError;

/// The price table shipped with this build (see `prices/seed.toml` for its rules and sources).
pub const SEED_TABLE: &str = include_str!("../prices/seed.toml");

/// Nano-units in one unit of a currency.
pub const NANOS_PER_UNIT: u64 = 1_000_000_000;

/// One model's prices in nano-units of `currency` per million tokens of each class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// ISO 4217 code, upper case (`USD`, `CNY`).
    pub currency: String,
    pub input: u64,
    pub cached_read: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl Price {
    /// Exact cost of `usage` in nano-units of [`Price::currency`].
    ///
    /// Classes follow [`UsageVector`]'s meaning: cached reads and cache writes are part of `prompt_tokens`,
    /// reasoning is part of `completion_tokens`; each token is charged once, at its own class's price.
    #[must_use]
    pub fn cost_nanos(&self, usage: &UsageVector) -> u64 {
        let cached = usage.cached_read_tokens.min(usage.prompt_tokens);
        let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
        let fresh = usage.prompt_tokens - cached - written;
        let reasoning = usage.reasoning_tokens.min(usage.completion_tokens);
        let visible = usage.completion_tokens - reasoning;
        let micro: u128 = [
            (fresh, self.input),
            (cached, self.cached_read),
            (written, self.cache_write),
            (visible, self.output),
            (reasoning, self.reasoning),
        ]
        .iter()
        .map(|&(tokens, price)| u128::from(tokens) * u128::from(price))
        .sum();
        u64::try_from((micro + 500_000) / 1_000_000).unwrap_or(u64::MAX)
    }

    /// The largest price of any prompt class (what an unknown prompt token may cost at most).
    #[must_use]
    pub fn max_prompt_price(&self) -> u64 {
        self.input.max(self.cached_read).max(self.cache_write)
    }

    /// The largest price of any completion class.
    #[must_use]
    pub fn max_completion_price(&self) -> u64 {
        self.output.max(self.reasoning)
    }

    /// Input plus output price: the figure the `lowest-cost` routing strategy ranks by.
    #[must_use]
    pub fn rank(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// Prices as written in a table or config: decimal strings per million tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceText {
    pub currency: String,
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub cached_read: Option<String>,
    #[serde(default)]
    pub cache_write: Option<String>,
    #[serde(default)]
    pub reasoning: Option<String>,
}

impl PriceText {
    /// The exact [`Price`], or the name of the first field that is not a decimal amount / currency code.
    ///
    /// # Errors
    /// [`SchemaError::Price`] naming the field.
    pub fn parse(&self) -> Result<Price, SchemaError> {
        let amount = |field: &str, text: &str| {
            parse_decimal_nanos(text).ok_or_else(|| {
                SchemaError::Price(format!(
                    "`{field}` must be a decimal amount like \"2.50\", got {text:?}"
                ))
            })
        };
        let optional = |field: &str, text: &Option<String>, fallback: u64| {
            text.as_deref().map_or(Ok(fallback), |t| amount(field, t))
        };
        if !is_currency_code(&self.currency) {
            return Err(SchemaError::Price(format!(
                "`currency` must be a three-letter ISO 4217 code like \"USD\", got {:?}",
                self.currency
            )));
        }
        let input = amount("input", &self.input)?;
        let output = amount("output", &self.output)?;
        Ok(Price {
            currency: self.currency.clone(),
            input,
            cached_read: optional("cached_read", &self.cached_read, input)?,
            cache_write: optional("cache_write", &self.cache_write, input)?,
            output,
            reasoning: optional("reasoning", &self.reasoning, output)?,
        })
    }
}

/// One row of a price table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    /// Provider kind (`openai`, `anthropic`, `dashscope`, …).
    pub provider: String,
    /// Upstream model id or id prefix.
    pub model: String,
    pub price: Price,
}

/// A versioned price table: per provider kind and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    /// Recorded on every usage event priced from this table.
    pub version: String,
    entries: Vec<PriceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableText {
    version: String,
    #[serde(default)]
    price: Vec<EntryText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryText {
    provider: String,
    model: String,
    #[serde(flatten)]
    price: PriceText,
}

impl PriceTable {
    /// The table shipped with this build.
    ///
    /// # Errors
    /// Only if the shipped file is broken (a unit test keeps it parsing).
    pub fn seed() -> Result<Self, SchemaError> {
        Self::parse(SEED_TABLE)
    }

    /// Parses a table in the shipped format (`version` + `[[price]]` rows).
    ///
    /// # Errors
    /// [`SchemaError::Price`] for bad TOML, a bad amount or currency, or the same (provider, model) twice.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        let raw: TableText =
            toml::from_str(text).map_err(|e| SchemaError::Price(format!("price table: {e}")))?;
        let mut entries = Vec::with_capacity(raw.price.len());
        for row in raw.price {
            let price = row.price.parse().map_err(|e| {
                SchemaError::Price(format!("price table, {}/{}: {e}", row.provider, row.model))
            })?;
            entries.push(PriceEntry {
                provider: row.provider,
                model: row.model,
                price,
            });
        }
        Self::new(raw.version, entries)
    }

    /// A table from entries.
    ///
    /// # Errors
    /// [`SchemaError::Price`] when a (provider, model) pair appears twice.
    pub fn new(version: String, entries: Vec<PriceEntry>) -> Result<Self, SchemaError> {
        let mut seen = std::collections::BTreeSet::new();
        for e in &entries {
            if !seen.insert((e.provider.as_str(), e.model.as_str())) {
                return Err(SchemaError::Price(format!(
                    "price table lists {}/{} twice",
                    e.provider, e.model
                )));
            }
        }
        Ok(Self { version, entries })
    }

    /// Every entry, in table order.
    #[must_use]
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The price of `model` at a provider of kind `provider`: the exact entry, else the longest entry that
    /// `model` extends by a **version tag** only (see [`is_version_tag`]) — a dated or numbered snapshot of the
    /// same model, never a different model.
    ///
    /// So `gpt-4o` prices `gpt-4o-2024-08-06`, `claude-sonnet-4-5` prices `claude-sonnet-4-5-20250929` and
    /// `claude-sonnet-4-5@20250929` (Vertex), `anthropic.claude-haiku-4-5` prices
    /// `anthropic.claude-haiku-4-5-20251001-v1:0` (Bedrock), `qwen-plus` prices `qwen-plus-latest`; but `gpt-5`
    /// does not price `gpt-5.2` or `gpt-5-nano`, `o3` not `o3-mini`, `claude-opus-4` not `claude-opus-4-5`,
    /// `gemini-2.5-flash` not `gemini-2.5-flash-lite`: those need rows of their own, else they are unpriced
    /// (`price_missing`) rather than silently charged another model's price.
    #[must_use]
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&Price> {
        let mut best: Option<&PriceEntry> = None;
        for e in self.entries.iter().filter(|e| e.provider == provider) {
            if e.model == model {
                return Some(&e.price);
            }
            let is_snapshot = model
                .strip_prefix(e.model.as_str())
                .is_some_and(is_version_tag);
            if is_snapshot && best.is_none_or(|b| b.model.len() < e.model.len()) {
                best = Some(e);
            }
        }
        best.map(|e| &e.price)
    }
}

/// Whether `rest` (what follows a price entry's model id in a requested model id) names a version of the same
/// model: one or more tags, each introduced by `-`, `@` or `:`, each one of
///
/// * a date `YYYY-MM-DD` (`-2024-08-06`),
/// * a run of at least three digits (`-0613`, `-001`, `-20250929`, `@20241022`, `-250414`),
/// * `v<digits>`, optionally `:<digits>` (`-v1`, `-v1:0`),
/// * `latest` or `default` (`-latest`, `@default`).
///
/// Anything else is another model: `-5`, `.2`, `-mini`, `-lite`, `-pro`, `-nano`, `-preview`, `-audio-preview`,
/// `-1-20250805` (one or two digits are a model number, not a version), `-128k`.
#[must_use]
pub fn is_version_tag(rest: &str) -> bool {
    fn is_sep(b: u8) -> bool {
        matches!(b, b'-' | b'@' | b':')
    }
    fn digits(s: &[u8]) -> usize {
        s.iter().take_while(|b| b.is_ascii_digit()).count()
    }
    // Length of the tag at the start of `s` when it is whole (followed by the end or a separator).
    fn tag(s: &[u8]) -> Option<usize> {
        let whole = |n: usize| (n == s.len() || is_sep(s[n])).then_some(n);
        let is_date = s.len() >= 10
            && digits(s) == 4
            && s[4] == b'-'
            && digits(&s[5..]) == 2
            && s[7] == b'-'
            && digits(&s[8..]) == 2;
        if let Some(n) = is_date.then_some(10).and_then(whole) {
            return Some(n);
        }
        let n = digits(s);
        if n >= 3 {
            return whole(n);
        }
        if n == 0 && s.first() == Some(&b'v') {
            let mut n = 1 + digits(&s[1..]);
            if n == 1 {
                return None;
            }
            if s.get(n) == Some(&b':') && digits(&s[n + 1..]) > 0 {
                n += 1 + digits(&s[n + 1..]);
            }
            return whole(n);
        }
        ["latest", "default"]
            .iter()
            .find(|w| s.starts_with(w.as_bytes()))
            .and_then(|w| whole(w.len()))
    }
    let mut s = rest.as_bytes();
    if s.is_empty() {
        return false;
    }
    while let Some((&first, after)) = s.split_first() {
        if !is_sep(first) {
            return false;
        }
        match tag(after) {
            Some(n) => s = &after[n..],
            None => return false,
        }
    }
    true
}

/// Conversion of costs into one reporting currency, for totals across providers and for budgets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRates {
    /// The currency budgets and cross-provider totals are kept in.
    pub reporting: String,
    /// Nano-units of the reporting currency per unit of another currency.
    rates: BTreeMap<String, u64>,
}

impl ExchangeRates {
    /// Rates into `reporting`; `rates` maps a currency to the decimal amount of `reporting` one unit buys
    /// (`CNY = "0.14"` when reporting in USD).
    ///
    /// # Errors
    /// [`SchemaError::Price`] for a bad currency code or amount.
    pub fn new(reporting: &str, rates: &BTreeMap<String, String>) -> Result<Self, SchemaError> {
        if !is_currency_code(reporting) {
            return Err(SchemaError::Price(format!(
                "reporting currency must be a three-letter ISO 4217 code, got {reporting:?}"
            )));
        }
        let mut parsed = BTreeMap::new();
        for (currency, rate) in rates {
            if !is_currency_code(currency) {
                return Err(SchemaError::Price(format!(
                    "exchange rate key must be a three-letter ISO 4217 code, got {currency:?}"
                )));
            }
            let nanos = parse_decimal_nanos(rate).ok_or_else(|| {
                SchemaError::Price(format!(
                    "exchange rate for {currency} must be a decimal amount, got {rate:?}"
                ))
            })?;
            parsed.insert(currency.clone(), nanos);
        }
        parsed.insert(reporting.to_string(), NANOS_PER_UNIT);
        Ok(Self {
            reporting: reporting.to_string(),
            rates: parsed,
        })
    }

    /// Whether `currency` can be converted.
    #[must_use]
    pub fn knows(&self, currency: &str) -> bool {
        self.rates.contains_key(currency)
    }

    /// `nanos` of `currency` in nano-units of the reporting currency (rounded half up), or `None` when no
    /// rate is configured for `currency`.
    #[must_use]
    pub fn to_reporting(&self, nanos: u64, currency: &str) -> Option<u64> {
        let rate = *self.rates.get(currency)?;
        if rate == NANOS_PER_UNIT {
            return Some(nanos);
        }
        let v = (u128::from(nanos) * u128::from(rate) + u128::from(NANOS_PER_UNIT / 2))
            / u128::from(NANOS_PER_UNIT);
        Some(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

/// `"2.50"` → 2_500_000_000 (nano-units). At most 9 decimals, no sign, no exponent: money never goes through
/// a float.
#[must_use]
pub fn parse_decimal_nanos(text: &str) -> Option<u64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > 9
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac_nanos: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    whole.checked_mul(NANOS_PER_UNIT)?.checked_add(frac_nanos)
}

/// `2_500_000_000` → `"2.5"`: nano-units as a decimal string, for reports and APIs (exact, no float).
#[must_use]
pub fn format_nanos(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    let whole = abs / u128::from(NANOS_PER_UNIT);
    let frac = abs % u128::from(NANOS_PER_UNIT);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let frac = format!("{frac:09}");
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(p: u64, c: u64, cr: u64, cw: u64, r: u64) -> UsageVector {
        UsageVector {
            prompt_tokens: p,
            completion_tokens: c,
            cached_read_tokens: cr,
            cache_write_tokens: cw,
            reasoning_tokens: r,
        }
    }

    #[test]
    fn decimals_become_exact_nanos_and_back() {
        assert_eq!(parse_decimal_nanos("2.50"), Some(2_500_000_000));
        assert_eq!(parse_decimal_nanos("0.000000001"), Some(1));
        assert_eq!(parse_decimal_nanos("10"), Some(10_000_000_000));
        for bad in ["", ".5", "1.0000000001", "-1", "1e3", "1,5", "abc"] {
            assert_eq!(parse_decimal_nanos(bad), None, "{bad}");
        }
        assert_eq!(format_nanos(2_500_000_000), "2.5");
        assert_eq!(format_nanos(-1), "-0.000000001");
        assert_eq!(format_nanos(3_000_000_000), "3");
    }

    #[test]
    fn the_seed_table_parses_and_every_price_is_sane() {
        let t = PriceTable::seed().unwrap();
        assert!(!t.version.is_empty());
        assert!(t.entries().len() > 20);
        for e in t.entries() {
            assert!(["USD", "CNY"].contains(&e.price.currency.as_str()), "{e:?}");
            assert!(e.price.cached_read <= e.price.input, "{e:?}");
        }
    }

    #[test]
    fn each_token_class_is_charged_once_at_its_own_price() {
        let p = PriceText {
            currency: "USD".into(),
            input: "3.00".into(),
            output: "15.00".into(),
            cached_read: Some("0.30".into()),
            cache_write: Some("3.75".into()),
            reasoning: None,
        }
        .parse()
        .unwrap();
        // 1000 prompt = 600 fresh + 300 cached + 100 written; 500 completion = 200 visible + 300 reasoning.
        let cost = p.cost_nanos(&usage(1000, 500, 300, 100, 300));
        let expected = 600 * 3_000 + 300 * 300 + 100 * 3_750 + 500 * 15_000;
        assert_eq!(cost, expected);
        // One token of gpt-4o-mini input: 0.15 / 1e6 USD = 150 nano-USD.
        let mini = PriceTable::seed()
            .unwrap()
            .lookup("openai", "gpt-4o-mini")
            .cloned()
            .unwrap();
        assert_eq!(mini.cost_nanos(&usage(1, 0, 0, 0, 0)), 150);
        // Half a nano rounds up, less rounds down: 0.0000005 per token.
        let tiny = PriceText {
            currency: "USD".into(),
            input: "0.0005".into(),
            output: "0".into(),
            cached_read: None,
            cache_write: None,
            reasoning: None,
        }
        .parse()
        .unwrap();
        assert_eq!(tiny.cost_nanos(&usage(1, 0, 0, 0, 0)), 1);
        assert_eq!(tiny.cost_nanos(&usage(3, 0, 0, 0, 0)), 2);
    }

    #[test]
    fn inconsistent_usage_never_underflows() {
        let p = PriceTable::seed()
            .unwrap()
            .lookup("openai", "gpt-4o")
            .cloned()
            .unwrap();
        let c = p.cost_nanos(&usage(10, 5, 50, 50, 99));
        // All 10 prompt tokens counted as cached, all 5 completion tokens as reasoning (= output price).
        assert_eq!(c, 10 * 1_250 + 5 * 10_000);
        assert_eq!(p.cost_nanos(&usage(u64::MAX, u64::MAX, 0, 0, 0)), u64::MAX);
    }

    #[test]
    fn lookup_is_exact_then_longest_entry_extended_by_a_version_tag() {
        let t = PriceTable::seed().unwrap();
        let input = |m: &str| t.lookup("openai", m).map(|p| p.input);
        assert_eq!(input("gpt-4o"), Some(2_500_000_000));
        assert_eq!(input("gpt-4o-2024-08-06"), Some(2_500_000_000));
        assert_eq!(input("gpt-4o-mini-2024-07-18"), Some(150_000_000));
        assert_eq!(input("gpt-4oX"), None);
        assert_eq!(t.lookup("anthropic", "gpt-4o"), None);
        assert_eq!(
            t.lookup("anthropic", "claude-sonnet-4-5-20250929")
                .map(|p| p.input),
            Some(3_000_000_000)
        );
    }

    #[test]
    fn version_tags_are_dates_numbers_versions_and_aliases() {
        for tag in [
            "-2024-08-06",
            "-0613",
            "-001",
            "-20250514",
            "@20241022",
            "@default",
            "-latest",
            "-v1",
            "-v1:0",
            "-20241022-v1:0",
            "-20250929-v2:0",
            "-250414",
            "@2411-001",
            "-2025-01-25",
        ] {
            assert!(is_version_tag(tag), "{tag} should be a version tag");
        }
        for other in [
            "",
            "-",
            "-5",
            "-1",
            "-01",
            ".2",
            ".1-2025-11-13",
            "/x",
            "-mini",
            "-mini-2024-07-18",
            "-lite",
            "-pro",
            "-nano",
            "-preview",
            "-audio-preview",
            "-audio-preview-2024-12-17",
            "-preview-09-2025",
            "-1-20250805",
            "-5@20251101",
            "-128k",
            "-0613-preview",
            "-2024-08-06x",
            "-2024-08",
            "-v",
            "-v1:",
            "-v1:0:200k",
            "-latestX",
            "-prod",
            "X-001",
            "-001-",
        ] {
            assert!(
                !is_version_tag(other),
                "{other:?} should not be a version tag"
            );
        }
    }

    #[test]
    fn a_different_model_is_not_priced_by_a_shorter_id() {
        let table = |rows: &[(&str, &str)]| {
            let entries = rows
                .iter()
                .enumerate()
                .map(|(i, (provider, model))| PriceEntry {
                    provider: (*provider).into(),
                    model: (*model).into(),
                    price: Price {
                        currency: "USD".into(),
                        input: i as u64 + 1,
                        cached_read: 0,
                        cache_write: 0,
                        output: 0,
                        reasoning: 0,
                    },
                })
                .collect();
            PriceTable::new("t".into(), entries).unwrap()
        };
        let t = table(&[
            ("openai", "gpt-5"),
            ("openai", "o3"),
            ("anthropic", "claude-opus-4"),
            ("gemini", "gemini-2.5-flash"),
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-mini"),
            ("bedrock", "anthropic.claude-sonnet-4"),
            ("bedrock", "us.anthropic.claude-sonnet-4"),
            ("dashscope", "qwen-plus"),
            ("vertex", "gemini-2.0-flash"),
            ("vertex", "claude-3-5-haiku"),
        ]);
        let input = |p: &str, m: &str| t.lookup(p, m).map(|p| p.input);
        // Other models: unpriced, never another model's price.
        for (p, m) in [
            ("openai", "gpt-5.2"),
            ("openai", "gpt-5.1-2025-11-13"),
            ("openai", "gpt-5-nano"),
            ("openai", "gpt-5-pro"),
            ("openai", "o3-mini"),
            ("openai", "o3-mini-2025-01-31"),
            ("openai", "gpt-4o-audio-preview"),
            ("openai", "gpt-4o-prod"),
            ("anthropic", "claude-opus-4-5-20251101"),
            ("anthropic", "claude-opus-4-1"),
            ("gemini", "gemini-2.5-flash-lite"),
            ("gemini", "gemini-2.5-flash-preview-09-2025"),
            ("bedrock", "anthropic.claude-sonnet-4-6"),
            ("vertex", "gemini-2.0-flash-lite-001"),
        ] {
            assert_eq!(input(p, m), None, "{p}/{m}");
        }
        // Snapshots of the same model take its row.
        for (p, m, want) in [
            ("openai", "gpt-5-2025-08-07", 1),
            ("openai", "o3-2025-04-16", 2),
            ("anthropic", "claude-opus-4-20250514", 3),
            ("anthropic", "claude-opus-4-latest", 3),
            ("gemini", "gemini-2.5-flash-001", 4),
            ("openai", "gpt-4o-2024-08-06", 5),
            ("bedrock", "anthropic.claude-sonnet-4-20250514-v1:0", 7),
            ("dashscope", "qwen-plus-2025-01-25", 9),
            ("dashscope", "qwen-plus-latest", 9),
            ("vertex", "gemini-2.0-flash-001", 10),
            ("vertex", "claude-3-5-haiku@20241022", 11),
        ] {
            assert_eq!(input(p, m), Some(want), "{p}/{m}");
        }
        // The longest entry still wins, and a region prefix is part of the id (its own row).
        assert_eq!(input("openai", "gpt-4o-mini-2024-07-18"), Some(6));
        assert_eq!(
            input("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0"),
            Some(8)
        );
        assert_eq!(
            input("bedrock", "eu.anthropic.claude-sonnet-4-20250514-v1:0"),
            None
        );
        // An exact row beats a shorter row it is a snapshot of.
        let t = table(&[("openai", "gpt-4o"), ("openai", "gpt-4o-2024-05-13")]);
        assert_eq!(
            t.lookup("openai", "gpt-4o-2024-05-13").map(|p| p.input),
            Some(2)
        );
        assert_eq!(
            t.lookup("openai", "gpt-4o-2024-11-20").map(|p| p.input),
            Some(1)
        );
    }

    #[test]
    fn the_seed_table_prices_new_models_by_their_own_rows() {
        let t = PriceTable::seed().unwrap();
        let io = |p: &str, m: &str| t.lookup(p, m).map(|p| (p.input, p.output));
        let usd = |i: u64, o: u64| Some((i * 10_000_000, o * 10_000_000));
        // Prices in hundredths of a dollar per million tokens, from LiteLLM 1.110.2.
        assert_eq!(io("openai", "gpt-5.2"), usd(175, 1400));
        assert_eq!(io("openai", "gpt-5.2-2025-12-11"), usd(175, 1400));
        assert_eq!(io("openai", "gpt-5-nano-2025-08-07"), usd(5, 40));
        assert_eq!(io("openai", "o3-mini-2025-01-31"), usd(110, 440));
        assert_eq!(io("openai", "gpt-4o-2024-05-13"), usd(500, 1500));
        assert_eq!(io("azure", "gpt-5.1"), usd(125, 1000));
        assert_eq!(io("anthropic", "claude-opus-4-5-20251101"), usd(500, 2500));
        assert_eq!(io("vertex", "claude-opus-4-5@20251101"), usd(500, 2500));
        assert_eq!(
            io("bedrock", "us.anthropic.claude-opus-4-5-20251101-v1:0"),
            usd(550, 2750)
        );
        assert_eq!(io("gemini", "gemini-2.5-flash-lite"), usd(10, 40));
        assert_eq!(io("vertex", "gemini-2.5-flash-lite"), usd(10, 40));
    }

    #[test]
    fn duplicate_rows_and_bad_amounts_are_refused_with_their_names() {
        let dup = "version = \"x\"\n[[price]]\nprovider=\"a\"\nmodel=\"m\"\ncurrency=\"USD\"\ninput=\"1\"\noutput=\"1\"\n[[price]]\nprovider=\"a\"\nmodel=\"m\"\ncurrency=\"USD\"\ninput=\"1\"\noutput=\"1\"\n";
        assert!(PriceTable::parse(dup)
            .unwrap_err()
            .to_string()
            .contains("a/m twice"));
        let bad = "version = \"x\"\n[[price]]\nprovider=\"a\"\nmodel=\"m\"\ncurrency=\"usd\"\ninput=\"1\"\noutput=\"1\"\n";
        assert!(PriceTable::parse(bad)
            .unwrap_err()
            .to_string()
            .contains("currency"));
        let amount = "version = \"x\"\n[[price]]\nprovider=\"a\"\nmodel=\"m\"\ncurrency=\"USD\"\ninput=\"1.5e3\"\noutput=\"1\"\n";
        assert!(PriceTable::parse(amount)
            .unwrap_err()
            .to_string()
            .contains("`input`"));
    }

    #[test]
    fn rates_convert_exactly_and_unknown_currencies_are_none() {
        let mut rates = BTreeMap::new();
        rates.insert("CNY".to_string(), "0.14".to_string());
        let r = ExchangeRates::new("USD", &rates).unwrap();
        assert_eq!(r.to_reporting(1_000_000_000, "CNY"), Some(140_000_000));
        assert_eq!(r.to_reporting(7, "USD"), Some(7));
        assert_eq!(r.to_reporting(1, "EUR"), None);
        assert_eq!(r.to_reporting(3, "CNY"), Some(0)); // 0.42 nano rounds to 0
        assert_eq!(r.to_reporting(4, "CNY"), Some(1)); // 0.56 rounds to 1
    }
}

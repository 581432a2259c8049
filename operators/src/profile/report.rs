//! What a profile says: per-field summaries, alerts in the manner of ydata-profiling,
//! and schema drift between windows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::field::FieldProfile;
use super::sketch::{Counter, ValueType, DISTINCT_STANDARD_ERROR, QUANTILE_RELATIVE_ERROR};
use super::timestamp::format_ms;

/// Quantiles of a numeric field (DDSketch, within [`QUANTILE_RELATIVE_ERROR`] of the value at each rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// 1st percentile.
    pub p1: f64,
    /// 5th percentile.
    pub p5: f64,
    /// First quartile.
    pub p25: f64,
    /// Median.
    pub p50: f64,
    /// Third quartile.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The sketch's relative error.
    pub relative_error: f64,
}

/// The figures of one field in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSummary {
    /// Rows where the key is present (any value, null included).
    pub present: u64,
    /// Rows with a value other than null.
    pub count: u64,
    /// Rows without the key (or without a parent object).
    pub missing: u64,
    /// `null` values.
    pub null: u64,
    /// `""`, `[]` and `{}` values.
    pub empty: u64,
    /// Share of rows missing, null or empty.
    pub missing_or_empty_ratio: f64,
    /// Values per type.
    pub types: BTreeMap<String, u64>,
    /// The most frequent type other than null.
    pub dominant_type: Option<ValueType>,
    /// Numeric values.
    pub numeric_count: u64,
    /// Smallest number.
    pub min: Option<f64>,
    /// Largest number.
    pub max: Option<f64>,
    /// Mean of the numbers.
    pub mean: Option<f64>,
    /// Sample standard deviation of the numbers.
    pub stddev: Option<f64>,
    /// Skewness of the numbers.
    pub skewness: Option<f64>,
    /// Quantiles of the numbers.
    pub quantiles: Option<Percentiles>,
    /// Estimated distinct values (strings, numbers, booleans).
    pub distinct: f64,
    /// Relative standard error of `distinct`.
    pub distinct_error: f64,
    /// The most frequent values.
    pub top: Vec<Counter>,
    /// How far below the truth a top count may be (0: exact).
    pub top_error_bound: u64,
    /// Shortest string, in characters.
    pub length_min: Option<u64>,
    /// Longest string.
    pub length_max: Option<u64>,
    /// Mean string length.
    pub length_mean: Option<f64>,
    /// Strings that are RFC 3339 timestamps.
    pub timestamps: u64,
    /// Earliest timestamp, RFC 3339 (UTC).
    pub time_min: Option<String>,
    /// Latest timestamp.
    pub time_max: Option<String>,
}

impl FieldSummary {
    /// The summary of `field` in a window of `rows` rows, listing `top_k` values.
    pub fn new(field: &FieldProfile, rows: u64, top_k: usize) -> FieldSummary {
        let null = field.types.null;
        let empty = field.empty();
        let missing = rows.saturating_sub(field.present);
        let ratio = if rows == 0 { 0.0 } else { (missing + null + empty) as f64 / rows as f64 };
        let numeric = &field.numeric;
        let has_numbers = numeric.count > 0;
        let quantiles = field.quantiles.as_ref().filter(|q| q.count() > 0).map(|q| {
            let at = |p: f64| q.quantile(p).unwrap_or(f64::NAN);
            Percentiles {
                p1: at(0.01),
                p5: at(0.05),
                p25: at(0.25),
                p50: at(0.5),
                p75: at(0.75),
                p95: at(0.95),
                p99: at(0.99),
                relative_error: QUANTILE_RELATIVE_ERROR,
            }
        });
        let lengths = &field.lengths;
        let has_strings = lengths.count > 0;
        FieldSummary {
            present: field.present,
            count: field.present.saturating_sub(null),
            missing,
            null,
            empty,
            missing_or_empty_ratio: ratio,
            types: ValueType::ALL.iter().map(|t| (t.name().to_owned(), field.types.get(*t))).filter(|(_, n)| *n > 0).collect(),
            dominant_type: field.types.dominant(),
            numeric_count: numeric.count,
            min: has_numbers.then_some(numeric.min),
            max: has_numbers.then_some(numeric.max),
            mean: has_numbers.then_some(numeric.mean),
            stddev: numeric.stddev(),
            skewness: numeric.skewness(),
            quantiles,
            distinct: field.distinct.estimate().round(),
            distinct_error: DISTINCT_STANDARD_ERROR,
            top: field.frequent.top(top_k),
            top_error_bound: field.frequent.error_bound(),
            length_min: has_strings.then_some(lengths.min),
            length_max: has_strings.then_some(lengths.max),
            length_mean: lengths.mean(),
            timestamps: field.timestamps.map_or(0, |t| t.count),
            time_min: field.timestamps.map(|t| format_ms(t.min_ms)),
            time_max: field.timestamps.map(|t| format_ms(t.max_ms)),
        }
    }

    /// Values other than null, `""`, `[]` and `{}`.
    pub fn filled(&self) -> u64 {
        self.count.saturating_sub(self.empty)
    }
}

/// What an alert says about a field (after ydata-profiling's alert types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProfileAlertKind {
    /// Some rows lack the field or hold null.
    Missing,
    /// Every value is missing, null or empty.
    Empty,
    /// All values other than null are the same.
    Constant,
    /// All values other than null are (estimated) distinct.
    Unique,
    /// More than [`HIGH_CARDINALITY`] distinct strings.
    HighCardinality,
    /// One category dominates: imbalance (1 − normalised entropy) above [`IMBALANCE`].
    Imbalance,
    /// Numbers with |skewness| above [`SKEWED`].
    Skewed,
    /// Values of more than one type (integers and floats count as one: numbers).
    MixedTypes,
}

impl ProfileAlertKind {
    /// The alert's name as ydata-profiling spells it.
    pub fn name(self) -> &'static str {
        match self {
            ProfileAlertKind::Missing => "MISSING",
            ProfileAlertKind::Empty => "EMPTY",
            ProfileAlertKind::Constant => "CONSTANT",
            ProfileAlertKind::Unique => "UNIQUE",
            ProfileAlertKind::HighCardinality => "HIGH_CARDINALITY",
            ProfileAlertKind::Imbalance => "IMBALANCE",
            ProfileAlertKind::Skewed => "SKEWED",
            ProfileAlertKind::MixedTypes => "MIXED_TYPES",
        }
    }
}

/// Distinct strings above which a field has high cardinality (ydata-profiling's default).
pub const HIGH_CARDINALITY: f64 = 50.0;
/// Imbalance above which a categorical field is imbalanced (ydata-profiling's default).
pub const IMBALANCE: f64 = 0.5;
/// |Skewness| above which numbers are skewed (ydata-profiling's default).
pub const SKEWED: f64 = 20.0;

/// An alert about a field of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileAlert {
    /// The field.
    pub field: String,
    /// What is wrong.
    pub kind: ProfileAlertKind,
    /// In words, with the figures.
    pub message: String,
}

/// The alerts of a window's summaries, by field then kind.
pub(crate) fn alerts(summary: &BTreeMap<String, FieldSummary>) -> Vec<ProfileAlert> {
    let mut out = Vec::new();
    for (name, s) in summary {
        let mut push = |kind: ProfileAlertKind, message: String| out.push(ProfileAlert { field: name.clone(), kind, message });
        let rows = s.present + s.missing;
        if s.missing + s.null > 0 {
            let share = 100.0 * (s.missing + s.null) as f64 / rows.max(1) as f64;
            push(ProfileAlertKind::Missing, format!("{} missing and {} null of {rows} rows ({share:.1} %)", s.missing, s.null));
        }
        if s.filled() == 0 {
            push(ProfileAlertKind::Empty, format!("no value other than null, \"\", [] or {{}} in {rows} rows"));
            continue;
        }
        let scalar = s.types.keys().any(|t| t != "object" && t != "array" && t != "null");
        if scalar && s.top_error_bound == 0 && s.top.len() == 1 && s.top.first().is_some_and(|c| c.count == s.count) && s.count > 1 {
            let value = s.top.first().map(|c| c.value.clone()).unwrap_or_default();
            push(ProfileAlertKind::Constant, format!("every value is {value:?}"));
        } else if scalar && s.count > 1 && s.distinct >= s.count as f64 * (1.0 - 3.0 * s.distinct_error) {
            push(ProfileAlertKind::Unique, format!("about {} distinct values in {} (estimated, ±{:.1} %)", s.distinct, s.count, 100.0 * s.distinct_error));
        } else if s.dominant_type == Some(ValueType::String) && s.distinct > HIGH_CARDINALITY {
            push(ProfileAlertKind::HighCardinality, format!("about {} distinct values", s.distinct));
        }
        if s.top_error_bound == 0 && s.dominant_type == Some(ValueType::String) && s.top.len() > 1 && (s.distinct as usize) <= s.top.len() {
            if let Some(imbalance) = imbalance(&s.top) {
                if imbalance > IMBALANCE {
                    push(ProfileAlertKind::Imbalance, format!("imbalance {imbalance:.2} over {} categories", s.top.len()));
                }
            }
        }
        if let Some(skew) = s.skewness.filter(|k| k.abs() > SKEWED) {
            push(ProfileAlertKind::Skewed, format!("skewness {skew:.1}"));
        }
        let non_null_kinds =
            s.types.keys().filter(|t| *t != "null").map(|t| if t == "float" { "integer" } else { t.as_str() }).collect::<std::collections::BTreeSet<_>>();
        if non_null_kinds.len() > 1 {
            let types: Vec<String> = s.types.iter().filter(|(t, _)| *t != "null").map(|(t, n)| format!("{t} {n}")).collect();
            push(ProfileAlertKind::MixedTypes, format!("values of several types: {}", types.join(", ")));
        }
    }
    out
}

/// 1 − entropy / ln(categories) of the counts (ydata-profiling's imbalance), `None`
/// below two categories.
fn imbalance(top: &[Counter]) -> Option<f64> {
    let total: u64 = top.iter().map(|c| c.count).sum();
    if top.len() < 2 || total == 0 {
        return None;
    }
    let entropy: f64 = top
        .iter()
        .filter(|c| c.count > 0)
        .map(|c| {
            let p = c.count as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    Some(1.0 - entropy / (top.len() as f64).ln())
}

/// How a field's schema changed since the previous window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The field is new in this window.
    Appeared,
    /// The field was in the previous window, not in this one.
    Vanished,
    /// The field's dominant type changed.
    TypeChanged,
}

/// A schema change of one field against the previous window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// The field.
    pub field: String,
    /// What changed.
    pub kind: DriftKind,
    /// Dominant type in the previous window.
    pub from: Option<ValueType>,
    /// Dominant type in this window.
    pub to: Option<ValueType>,
}

/// The drift from the dominant types of the previous window to those of this one.
pub(crate) fn drift(previous: &BTreeMap<String, ValueType>, current: &BTreeMap<String, ValueType>) -> Vec<Drift> {
    let mut out = Vec::new();
    for (field, to) in current {
        match previous.get(field) {
            None => out.push(Drift { field: field.clone(), kind: DriftKind::Appeared, from: None, to: Some(*to) }),
            Some(from) if from != to => out.push(Drift { field: field.clone(), kind: DriftKind::TypeChanged, from: Some(*from), to: Some(*to) }),
            Some(_) => {}
        }
    }
    for (field, from) in previous {
        if !current.contains_key(field) {
            out.push(Drift { field: field.clone(), kind: DriftKind::Vanished, from: Some(*from), to: None });
        }
    }
    out.sort_by(|a, b| a.field.cmp(&b.field).then(a.kind.cmp(&b.kind)));
    out
}

//! Windowed dataset profiles: per window and per field (nested paths flattened with
//! dots, every field seen), exact counts and moments plus mergeable sketches, rendered
//! as a self-contained HTML report.
//!
//! ```
//! use tidewatch_operators::profile::{render_html, ProfileBuilder, ProfileConfig, WindowProfile};
//!
//! let config = ProfileConfig::default();
//! let mut builder = ProfileBuilder::new(&config);
//! for value in [&br#"{"page":"home","user":{"id":7}}"#[..], b"not json"] {
//!     builder.observe(Some(value));
//! }
//! let mut profile = WindowProfile::new(0, 60_000, builder.finish(), &config);
//! let mut other = ProfileBuilder::new(&config);
//! other.observe(Some(br#"{"page":"cart","user":{"id":9}}"#));
//! profile.merge(&WindowProfile::new(60_000, 120_000, other.finish(), &config)); // e.g. an hour from its minutes
//! assert_eq!(profile.summary["user.id"].count, 2);
//! assert_eq!(profile.overview.unparseable, 1);
//! let html: String = render_html(&profile);
//! let json: String = profile.to_json().expect("serializes");
//! assert!(html.contains("user.id") && json.contains("user.id"));
//! ```
//!
//! What is computed, per field ([`FieldProfile`], summarised in [`FieldSummary`]):
//! records where the key is present, missing (the window's rows minus present), `null`,
//! `""`/`[]`/`{}`, counts per JSON type (string, integer, float, bool, object, array,
//! null; arrays are counted, not exploded), numeric min/max/mean/stddev/skewness
//! (Welford's one-pass update, merged with Chan's and Pébay's formulas), quantiles p1 p5
//! p25 p50 p75 p95 p99, a distinct-count estimate, the top values with counts, the
//! string length distribution, and the range of RFC 3339 timestamps. Per window
//! ([`WindowProfile`]): records, objects, records that are not objects or not JSON
//! (counted, never dropped), alerts in the manner of ydata-profiling ([`ProfileAlert`])
//! and schema drift against the previous window ([`Drift`]).
//!
//! Sketches (see [`sketch`]), chosen for mergeability, stated error and upkeep:
//! - quantiles: **DDSketch** from `sketches-ddsketch` (a port of Datadog's reference
//!   implementation, serde support, negative values): relative error
//!   [`QUANTILE_RELATIVE_ERROR`] = 1 % on the value at each rank, whatever the
//!   distribution; merging adds bucket counts, so it is exact-associative.
//! - distinct counts: **HyperLogLog++** from `hyperloglogplus` (Heule et al., with the
//!   sparse representation that makes small counts nearly exact, serde support),
//!   precision 12: standard error [`DISTINCT_STANDARD_ERROR`] ≈ 1.6 %. Values are hashed
//!   once with xxh3 (`xxhash-rust`, stable across platforms and versions, so sketches
//!   from different processes merge).
//! - top values: **Misra–Gries** with `max(10·top_k, 100)` counters, written here (the
//!   crates found were not mergeable or not serde-serializable); mergeable as in
//!   Agarwal et al. 2012, each count at most [`FrequentValues::error_bound`] (≤ n/(m+1))
//!   below the truth, and exact while that bound is 0.
//!
//! Every part of a [`PartialProfile`] merges associatively and commutatively (counts,
//! extremes and sketches exactly; means and moments up to floating-point rounding), so
//! workers' partial profiles combine in any order and an hour is the merge of its
//! minutes, without rescanning records. In the job, [`dataflow::ProfileWindows`] builds
//! partial profiles per worker and window, exchanges them by field name so several
//! workers merge different fields, and assembles each window on worker 0 once its
//! frontier has passed.

mod builder;
pub mod dataflow;
mod field;
mod html;
mod report;
pub mod sketch;
#[cfg(test)]
mod tests;
mod timestamp;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use builder::ProfileBuilder;
pub use field::{FieldProfile, Lengths, Moments, TimeRange, TypeCounts, LENGTH_BOUNDS};
pub use html::{escape, render_html, render_index, IndexEntry};
pub use report::{Drift, DriftKind, FieldSummary, Percentiles, ProfileAlert, ProfileAlertKind};
pub use crate::parse::MAX_DEPTH;
pub use sketch::{Counter, Distinct, FrequentValues, Quantiles, ValueType, DISTINCT_STANDARD_ERROR, QUANTILE_RELATIVE_ERROR};
pub use timestamp::parse_rfc3339_ms;

/// The `[profile]` table of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// Whether the job profiles its records.
    pub enabled: bool,
    /// Directory of the reports (`profile-<window>.html` and `.json`, `index.html`).
    pub dir: PathBuf,
    /// Length of a profile window (a multiple of the epoch interval).
    #[serde(deserialize_with = "tidewatch_engine::config::deserialize_duration")]
    pub window: Duration,
    /// Frequent values shown per field.
    pub top_k: usize,
    /// Most fields profiled per window; values of further fields are only counted
    /// (`dropped_values`), which bounds memory for wild schemas.
    pub max_fields: usize,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig { enabled: false, dir: PathBuf::from("tidewatch-profiles"), window: Duration::from_secs(60), top_k: 10, max_fields: 1_000 }
    }
}

/// A profile that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The profile is not valid profile JSON.
    #[error("profile JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Whole-record counts of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// Records profiled.
    pub records: u64,
    /// Records skipped under the observation budget (the profile then covers 1 record in
    /// `(records + skipped) / records`).
    #[serde(default)]
    pub skipped: u64,
    /// Records whose value is a JSON object (their fields are profiled).
    pub objects: u64,
    /// Records whose value is JSON but not an object.
    pub not_object: u64,
    /// Records whose value is not JSON (or not UTF-8).
    pub unparseable: u64,
    /// Records with a null value.
    pub tombstones: u64,
    /// Values under fields beyond `max_fields`, counted but not profiled.
    pub dropped_values: u64,
    /// Objects nested deeper than [`MAX_DEPTH`], whose contents were not profiled.
    pub too_deep: u64,
}

impl Overview {
    /// Rows of the table the fields form: records that are JSON (objects or not); a
    /// field is missing from every row that lacks it.
    pub fn rows(&self) -> u64 {
        self.objects + self.not_object
    }

    /// Records the profile was offered: profiled or skipped under the budget.
    pub fn offered(&self) -> u64 {
        self.records + self.skipped
    }

    fn merge(&mut self, o: &Overview) {
        self.records += o.records;
        self.skipped += o.skipped;
        self.objects += o.objects;
        self.not_object += o.not_object;
        self.unparseable += o.unparseable;
        self.tombstones += o.tombstones;
        self.dropped_values += o.dropped_values;
        self.too_deep += o.too_deep;
    }
}

/// A profile of some records, not yet tied to a window: what [`ProfileBuilder::finish`]
/// returns and workers exchange.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartialProfile {
    /// Whole-record counts.
    pub overview: Overview,
    /// Profiles by dotted field path.
    pub fields: BTreeMap<String, FieldProfile>,
}

impl PartialProfile {
    /// Adds the records of `other`.
    pub fn merge(&mut self, other: &PartialProfile) {
        self.overview.merge(&other.overview);
        for (name, field) in &other.fields {
            match self.fields.get_mut(name) {
                Some(mine) => mine.merge(field),
                None => {
                    self.fields.insert(name.clone(), field.clone());
                }
            }
        }
    }

    /// Keeps the `max_fields` most present fields (ties by name), counting the values of
    /// the others as dropped.
    pub fn limit_fields(&mut self, max_fields: usize) {
        if self.fields.len() <= max_fields {
            return;
        }
        let mut ranked: Vec<(u64, String)> = self.fields.iter().map(|(n, f)| (f.present, n.clone())).collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (present, name) in ranked.into_iter().skip(max_fields) {
            self.fields.remove(&name);
            self.overview.dropped_values += present;
        }
    }
}

/// The profile of one window: the merged partial profile, its summary per field, alerts
/// and drift. Serialized as the JSON written next to each HTML report; the sketches
/// travel with it, so windows (and files) merge into longer ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowProfile {
    /// Window start, ms since the Unix epoch.
    pub window_start_ms: u64,
    /// Window end (exclusive), ms since the Unix epoch.
    pub window_end_ms: u64,
    /// Window start, RFC 3339.
    pub window_start: String,
    /// Window end, RFC 3339.
    pub window_end: String,
    /// Frequent values listed per field.
    pub top_k: usize,
    /// Whole-record counts.
    pub overview: Overview,
    /// Per field, the figures for people and machines (derived from `fields`).
    pub summary: BTreeMap<String, FieldSummary>,
    /// Alerts, in the manner of ydata-profiling (derived from `summary`).
    pub alerts: Vec<ProfileAlert>,
    /// Schema drift against the previous window (empty for the first, and for merges).
    pub drift: Vec<Drift>,
    /// Per field, the mergeable state: exact counts and sketches.
    pub fields: BTreeMap<String, FieldProfile>,
}

impl WindowProfile {
    /// The profile of the window `[start_ms, end_ms)` from the records of `partial`.
    pub fn new(start_ms: u64, end_ms: u64, partial: PartialProfile, config: &ProfileConfig) -> WindowProfile {
        let mut partial = partial;
        partial.limit_fields(config.max_fields.max(1));
        let mut profile = WindowProfile {
            window_start_ms: start_ms,
            window_end_ms: end_ms,
            window_start: String::new(),
            window_end: String::new(),
            top_k: config.top_k,
            overview: partial.overview,
            summary: BTreeMap::new(),
            alerts: Vec::new(),
            drift: Vec::new(),
            fields: partial.fields,
        };
        profile.refresh();
        profile
    }

    /// Recomputes the derived parts (times, summaries, alerts) from the state.
    fn refresh(&mut self) {
        self.window_start = timestamp::format_ms(i64::try_from(self.window_start_ms).unwrap_or(i64::MAX));
        self.window_end = timestamp::format_ms(i64::try_from(self.window_end_ms).unwrap_or(i64::MAX));
        let rows = self.overview.rows();
        self.summary = self.fields.iter().map(|(name, f)| (name.clone(), FieldSummary::new(f, rows, self.top_k))).collect();
        self.alerts = report::alerts(&self.summary);
    }

    /// Adds the records of `other` (another window or part of this one): the window
    /// grows to cover both, summaries and alerts are recomputed, drift is cleared.
    pub fn merge(&mut self, other: &WindowProfile) {
        self.window_start_ms = self.window_start_ms.min(other.window_start_ms);
        self.window_end_ms = self.window_end_ms.max(other.window_end_ms);
        self.top_k = self.top_k.max(other.top_k);
        self.overview.merge(&other.overview);
        for (name, field) in &other.fields {
            match self.fields.get_mut(name) {
                Some(mine) => mine.merge(field),
                None => {
                    self.fields.insert(name.clone(), field.clone());
                }
            }
        }
        self.drift.clear();
        self.refresh();
    }

    /// Sets the drift against the previous window's profile (`None`: no drift).
    pub fn set_drift(&mut self, previous: Option<&WindowProfile>) {
        self.drift = match previous {
            Some(p) => report::drift(&p.dominant_types(), &self.dominant_types()),
            None => Vec::new(),
        };
    }

    /// The dominant type of every field.
    pub fn dominant_types(&self) -> BTreeMap<String, ValueType> {
        self.summary.iter().filter_map(|(name, s)| s.dominant_type.map(|t| (name.clone(), t))).collect()
    }

    /// Cells of the table that are missing or null (rows × fields).
    pub fn missing_cells(&self) -> u64 {
        self.summary.values().map(|s| s.missing + s.null).sum()
    }

    /// The profile as JSON.
    pub fn to_json(&self) -> Result<String, ProfileError> {
        Ok(serde_json::to_string(self)?)
    }

    /// A profile read back from [`Self::to_json`]'s output.
    pub fn from_json(text: &str) -> Result<WindowProfile, ProfileError> {
        let mut profile: WindowProfile = serde_json::from_str(text)?;
        profile.refresh();
        Ok(profile)
    }

    /// A file name for the window's files without extension, safe on every file system:
    /// `profile-20241231T235900Z` (plus `-<ms>` when the start is not on a whole second).
    pub fn file_stem(&self) -> String {
        let secs = i64::try_from(self.window_start_ms / 1000).unwrap_or(i64::MAX);
        let base = chrono::DateTime::from_timestamp(secs, 0).map_or_else(|| secs.to_string(), |t| t.format("%Y%m%dT%H%M%SZ").to_string());
        match self.window_start_ms % 1000 {
            0 => format!("profile-{base}"),
            ms => format!("profile-{base}-{ms:03}"),
        }
    }
}

/// The profile as JSON (see [`WindowProfile::to_json`]).
pub fn to_json(profile: &WindowProfile) -> Result<String, ProfileError> {
    profile.to_json()
}

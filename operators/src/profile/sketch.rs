//! The mergeable sketches of a field profile: quantiles ([`Quantiles`], DDSketch),
//! distinct counts ([`Distinct`], HyperLogLog++) and frequent values ([`FrequentValues`],
//! Misra–Gries). Each one merges associatively and commutatively, so partial profiles
//! of workers, epochs or windows combine in any order.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

use hyperloglogplus::{HyperLogLog as _, HyperLogLogPlus};
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config as DDSketchConfig, DDSketch};

/// Relative accuracy of [`Quantiles`]: a reported quantile `q` is within 1 % of the
/// exact value at rank `⌊q·(n−1)⌋` (DDSketch's guarantee, for any distribution), as long
/// as the magnitudes of a field's values span less than 35 orders of magnitude (see
/// `QUANTILE_MAX_BINS`) and magnitudes below 1e-9 may read as 0.
pub const QUANTILE_RELATIVE_ERROR: f64 = 0.01;
/// Bins of the quantile sketch per sign before its lowest bins collapse: at 1 %
/// accuracy, 4096 bins cover magnitudes from `m` to about `m·1e35`. The store is dense
/// between the smallest and largest bin in use, so a field of narrow range stays small.
const QUANTILE_MAX_BINS: u32 = 4096;
/// Magnitudes below this count as zero in the quantile sketch.
const QUANTILE_MIN_VALUE: f64 = 1e-9;

/// Precision of [`Distinct`]: 2^12 registers in the dense representation.
pub const DISTINCT_PRECISION: u8 = 12;
/// Relative standard error of [`Distinct`] estimates in the dense representation,
/// `1.04 / √(2^12)` ≈ 1.6 %; below a few hundred values the sparse representation
/// (precision 25) is practically exact.
pub const DISTINCT_STANDARD_ERROR: f64 = 0.01625;

/// A `BuildHasher` that passes a `u64` through: values are hashed once, with xxh3, by
/// the profile builder, and the sketches reuse that hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassThrough;

/// The hasher of [`PassThrough`].
#[derive(Debug, Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// Quantiles of a numeric field: a DDSketch (crate `sketches-ddsketch`, a port of
/// Datadog's reference implementation) with [`QUANTILE_RELATIVE_ERROR`] relative accuracy.
#[derive(Clone, Serialize, Deserialize)]
pub struct Quantiles {
    sketch: DDSketch,
}

impl fmt::Debug for Quantiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quantiles").field("count", &self.sketch.count()).field("min", &self.sketch.min()).field("max", &self.sketch.max()).finish()
    }
}

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles { sketch: DDSketch::new(DDSketchConfig::new(QUANTILE_RELATIVE_ERROR, QUANTILE_MAX_BINS, QUANTILE_MIN_VALUE)) }
    }
}

impl Quantiles {
    /// Adds a value (non-finite values are ignored: JSON has none).
    #[inline]
    pub fn add(&mut self, value: f64) {
        if value.is_finite() {
            self.sketch.add(value);
        }
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.sketch.count() as u64
    }

    /// The estimated value at quantile `q` in `[0, 1]`; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sketch.quantile(q.clamp(0.0, 1.0)).ok().flatten()
    }

    /// Adds the values of `other`. Sketches of another accuracy (from a foreign file) are
    /// not merged; that is logged.
    pub fn merge(&mut self, other: &Quantiles) {
        if let Err(error) = self.sketch.merge(&other.sketch) {
            tracing::warn!(%error, "quantile sketches of different accuracy are not merged");
        }
    }
}

/// Distinct values of a field: HyperLogLog++ (crate `hyperloglogplus`, Heule et al.'s
/// algorithm with a sparse representation for small counts) over the values' xxh3 hashes,
/// with [`DISTINCT_STANDARD_ERROR`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Distinct {
    hll: HyperLogLogPlus<u64, PassThrough>,
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::new()
    }
}

impl Distinct {
    /// An empty sketch.
    pub fn new() -> Distinct {
        // The precision is a constant within the crate's bounds (4..=18).
        let hll = match HyperLogLogPlus::new(DISTINCT_PRECISION, PassThrough) {
            Ok(hll) => hll,
            Err(_) => unreachable!("precision {DISTINCT_PRECISION} is within 4..=18"),
        };
        Distinct { hll }
    }

    /// Adds a value by its hash.
    #[inline]
    pub fn insert(&mut self, hash: u64) {
        self.hll.insert(&hash);
    }

    /// The estimated number of distinct values.
    pub fn estimate(&self) -> f64 {
        self.hll.clone().count()
    }

    /// Adds the values of `other`.
    pub fn merge(&mut self, other: &Distinct) {
        if let Err(error) = self.hll.merge(&other.hll) {
            tracing::warn!(?error, "distinct-count sketches of different precision are not merged");
        }
    }
}

/// A value's JSON type, as profiles count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// A string.
    String,
    /// A number without fraction or exponent.
    Integer,
    /// Any other number.
    Float,
    /// `true` or `false`.
    Bool,
    /// An object (its fields are profiled under dotted paths).
    Object,
    /// An array (counted, not exploded).
    Array,
    /// `null`.
    Null,
}

impl ValueType {
    /// Every type, in a fixed order.
    pub const ALL: [ValueType; 7] =
        [ValueType::String, ValueType::Integer, ValueType::Float, ValueType::Bool, ValueType::Object, ValueType::Array, ValueType::Null];

    /// The type's name in documents.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Object => "object",
            ValueType::Array => "array",
            ValueType::Null => "null",
        }
    }
}

/// One counter of [`FrequentValues`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The value as text (strings unquoted, numbers and booleans as written).
    pub value: String,
    /// Its type.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Its count, at most [`FrequentValues::error_bound`] below the true count.
    pub count: u64,
    /// xxh3 hash of the type and value.
    pub hash: u64,
}

/// Frequent values of a field: a Misra–Gries summary with `capacity` counters, mergeable
/// as in Agarwal et al., "Mergeable Summaries" (2012). A value's reported count is at
/// most [`FrequentValues::error_bound`] below its true count, and that bound is at most
/// `n / (capacity + 1)` for `n` values; a value absent from the summary occurred at most
/// that often. While the bound is 0 the counts are exact and complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrequentValues {
    capacity: usize,
    counters: Vec<Counter>,
    /// Total decrement applied to every counter so far.
    offset: u64,
    #[serde(skip)]
    index: HashMap<u64, usize, PassThrough>,
    /// Strings of dropped counters, reused for new ones.
    #[serde(skip)]
    spare: Vec<String>,
}

impl PartialEq for FrequentValues {
    fn eq(&self, other: &Self) -> bool {
        self.capacity == other.capacity && self.offset == other.offset && self.sorted() == other.sorted()
    }
}

impl FrequentValues {
    /// An empty summary of `capacity` counters (at least 1).
    pub fn new(capacity: usize) -> FrequentValues {
        let capacity = capacity.max(1);
        FrequentValues { capacity, counters: Vec::new(), offset: 0, index: HashMap::with_hasher(PassThrough), spare: Vec::new() }
    }

    /// Counters kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How far below its true count any reported count may be (0: exact).
    pub fn error_bound(&self) -> u64 {
        self.offset
    }

    /// Number of counters held.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether no value was counted (or all were decremented away).
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    fn reindex(&mut self) {
        if self.index.len() != self.counters.len() {
            self.index.clear();
            for (i, c) in self.counters.iter().enumerate() {
                self.index.insert(c.hash, i);
            }
        }
    }

    /// Counts one occurrence of the value hashed `hash`; `write` writes its text (called
    /// only when a new counter is made). Returns whether the value already had a counter.
    #[inline]
    pub fn insert(&mut self, hash: u64, value_type: ValueType, write: impl FnOnce(&mut String)) -> bool {
        if self.index.len() != self.counters.len() {
            self.reindex();
        }
        if let Some(&i) = self.index.get(&hash) {
            if let Some(c) = self.counters.get_mut(i) {
                c.count += 1;
                return true;
            }
        }
        if self.counters.len() < self.capacity {
            let mut value = self.spare.pop().unwrap_or_default();
            value.clear();
            write(&mut value);
            self.index.insert(hash, self.counters.len());
            self.counters.push(Counter { value, value_type, count: 1, hash });
        } else {
            // Misra–Gries: the new value and every counter lose one.
            self.offset += 1;
            self.decrement(1);
        }
        false
    }

    /// Subtracts `by` from every counter and drops those that reach 0.
    fn decrement(&mut self, by: u64) {
        let spare = &mut self.spare;
        self.counters.retain_mut(|c| {
            c.count = c.count.saturating_sub(by);
            if c.count == 0 {
                spare.push(std::mem::take(&mut c.value));
                false
            } else {
                true
            }
        });
        self.index.clear();
        for (i, c) in self.counters.iter().enumerate() {
            self.index.insert(c.hash, i);
        }
    }

    /// Adds the counts of `other` (the larger capacity wins).
    pub fn merge(&mut self, other: &FrequentValues) {
        self.reindex();
        self.capacity = self.capacity.max(other.capacity);
        self.offset += other.offset;
        for c in &other.counters {
            match self.index.get(&c.hash) {
                Some(&i) => {
                    if let Some(mine) = self.counters.get_mut(i) {
                        mine.count += c.count;
                    }
                }
                None => {
                    self.index.insert(c.hash, self.counters.len());
                    self.counters.push(c.clone());
                }
            }
        }
        if self.counters.len() > self.capacity {
            let mut counts: Vec<u64> = self.counters.iter().map(|c| c.count).collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            let cut = counts.get(self.capacity).copied().unwrap_or(0);
            self.offset += cut;
            self.decrement(cut);
        }
    }

    /// Every counter, most frequent first (ties by value), for reports and comparisons.
    pub fn sorted(&self) -> Vec<Counter> {
        let mut all = self.counters.clone();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)).then_with(|| a.value_type.cmp(&b.value_type)));
        all
    }

    /// The `k` most frequent values.
    pub fn top(&self, k: usize) -> Vec<Counter> {
        let mut all = self.sorted();
        all.truncate(k);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(s: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64(s.as_bytes())
    }

    fn feed(f: &mut FrequentValues, values: &[&str]) {
        for v in values {
            f.insert(hash(v), ValueType::String, |s| s.push_str(v));
        }
    }

    #[test]
    fn frequent_values_are_exact_below_capacity() {
        let mut f = FrequentValues::new(4);
        feed(&mut f, &["a", "b", "a", "c", "a", "b"]);
        let top = f.top(2);
        assert_eq!((top[0].value.as_str(), top[0].count), ("a", 3));
        assert_eq!((top[1].value.as_str(), top[1].count), ("b", 2));
        assert_eq!(f.error_bound(), 0);
    }

    #[test]
    fn frequent_values_bound_the_error() {
        let mut f = FrequentValues::new(3);
        let mut values = Vec::new();
        for i in 0..1000 {
            values.push(if i % 3 == 0 { "hot".to_owned() } else { format!("cold{i}") });
        }
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        feed(&mut f, &refs);
        let hot = f.sorted().into_iter().find(|c| c.value == "hot").expect("hot kept");
        assert!(hot.count <= 334 && hot.count + f.error_bound() >= 334, "{hot:?} ± {}", f.error_bound());
        assert!(f.error_bound() <= 1000 / 4);
    }

    #[test]
    fn distinct_counts_small_sets_exactly_enough() {
        let mut d = Distinct::new();
        for i in 0..100u64 {
            d.insert(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()));
            d.insert(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()));
        }
        assert!((d.estimate() - 100.0).abs() < 1.0, "{}", d.estimate());
    }

    #[test]
    fn quantiles_handle_negative_values() {
        let mut q = Quantiles::default();
        for v in -50..=50 {
            q.add(f64::from(v));
        }
        let median = q.quantile(0.5).expect("not empty");
        assert!(median.abs() <= 1.0, "{median}");
        assert_eq!(q.count(), 101);
    }
}

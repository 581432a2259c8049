//! The profile of one field: exact counts and moments, and the sketches of
//! [`super::sketch`]; every part merges associatively and commutatively.

use serde::{Deserialize, Serialize};

use super::sketch::{Distinct, FrequentValues, Quantiles, ValueType};

/// Records per JSON type of a field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCounts {
    /// Strings.
    pub string: u64,
    /// Integers.
    pub integer: u64,
    /// Other numbers.
    pub float: u64,
    /// Booleans.
    pub bool: u64,
    /// Objects.
    pub object: u64,
    /// Arrays.
    pub array: u64,
    /// `null`.
    pub null: u64,
}

impl TypeCounts {
    /// The count of one type.
    pub fn get(&self, t: ValueType) -> u64 {
        match t {
            ValueType::String => self.string,
            ValueType::Integer => self.integer,
            ValueType::Float => self.float,
            ValueType::Bool => self.bool,
            ValueType::Object => self.object,
            ValueType::Array => self.array,
            ValueType::Null => self.null,
        }
    }

    fn slot(&mut self, t: ValueType) -> &mut u64 {
        match t {
            ValueType::String => &mut self.string,
            ValueType::Integer => &mut self.integer,
            ValueType::Float => &mut self.float,
            ValueType::Bool => &mut self.bool,
            ValueType::Object => &mut self.object,
            ValueType::Array => &mut self.array,
            ValueType::Null => &mut self.null,
        }
    }

    /// Adds one value of type `t`.
    #[inline]
    pub fn add(&mut self, t: ValueType) {
        *self.slot(t) += 1;
    }

    fn merge(&mut self, other: &TypeCounts) {
        for t in ValueType::ALL {
            *self.slot(t) += other.get(t);
        }
    }

    /// The most frequent type other than null (ties: the first in [`ValueType::ALL`]),
    /// or null when every value is null; `None` without values.
    pub fn dominant(&self) -> Option<ValueType> {
        let mut best: Option<(ValueType, u64)> = None;
        for t in ValueType::ALL {
            let n = self.get(t);
            if t != ValueType::Null && n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((t, n));
            }
        }
        best.map(|(t, _)| t).or((self.null > 0).then_some(ValueType::Null))
    }

    /// Types with values other than null, integers and floats counted as one (numbers).
    pub fn non_null_kinds(&self) -> usize {
        let numbers = self.integer + self.float > 0;
        [self.string > 0, numbers, self.bool > 0, self.object > 0, self.array > 0].iter().filter(|b| **b).count()
    }
}

/// Count, mean, spread and shape of numeric values, merged with Chan's and Pébay's
/// formulas (exact counts, extremes and sums; mean and moments up to rounding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Values.
    pub count: u64,
    /// Smallest value (meaningful when `count > 0`).
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// Sum of cubed deviations from the mean.
    pub m3: f64,
}

impl Moments {
    /// Adds a value (Welford's update, extended to the third moment).
    #[inline]
    pub fn add(&mut self, x: f64) {
        if self.count == 0 {
            *self = Moments { count: 1, min: x, max: x, mean: x, m2: 0.0, m3: 0.0 };
            return;
        }
        let n1 = self.count as f64;
        self.count += 1;
        let n = self.count as f64;
        let delta = x - self.mean;
        let delta_n = delta / n;
        let term1 = delta * delta_n * n1;
        self.mean += delta_n;
        self.m3 += term1 * delta_n * (n - 2.0) - 3.0 * delta_n * self.m2;
        self.m2 += term1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Adds the values of `other`.
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        let m2 = self.m2 + other.m2 + delta * delta * na * nb / n;
        let m3 = self.m3 + other.m3 + delta.powi(3) * na * nb * (na - nb) / (n * n) + 3.0 * delta * (na * other.m2 - nb * self.m2) / n;
        self.mean += delta * nb / n;
        self.m2 = m2;
        self.m3 = m3;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Sample standard deviation (n − 1), `None` below two values.
    pub fn stddev(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2.max(0.0) / (self.count as f64 - 1.0)).sqrt())
    }

    /// Skewness (Fisher's moment coefficient), `None` below three values or without spread.
    pub fn skewness(&self) -> Option<f64> {
        (self.count > 2 && self.m2 > 0.0).then(|| (self.count as f64).sqrt() * self.m3 / self.m2.powf(1.5))
    }
}

/// Upper bounds (inclusive) of the string length buckets; the last bucket is open.
pub const LENGTH_BOUNDS: [u64; 20] = [0, 1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 256, 1024];

/// The distribution of string lengths (in characters): exact extremes, sum and buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lengths {
    /// Strings.
    pub count: u64,
    /// Shortest.
    pub min: u64,
    /// Longest.
    pub max: u64,
    /// Sum of lengths.
    pub sum: u64,
    /// Strings per bucket of [`LENGTH_BOUNDS`], plus one for longer strings.
    pub buckets: Vec<u64>,
}

impl Default for Lengths {
    fn default() -> Self {
        Lengths { count: 0, min: 0, max: 0, sum: 0, buckets: vec![0; LENGTH_BOUNDS.len() + 1] }
    }
}

impl Lengths {
    /// Adds a string of `len` characters.
    #[inline]
    pub fn add(&mut self, len: u64) {
        if self.count == 0 {
            self.min = len;
            self.max = len;
        } else {
            self.min = self.min.min(len);
            self.max = self.max.max(len);
        }
        self.count += 1;
        self.sum += len;
        let bucket = LENGTH_BOUNDS.partition_point(|b| *b < len);
        if self.buckets.len() <= LENGTH_BOUNDS.len() {
            self.buckets.resize(LENGTH_BOUNDS.len() + 1, 0);
        }
        if let Some(slot) = self.buckets.get_mut(bucket) {
            *slot += 1;
        }
    }

    fn merge(&mut self, other: &Lengths) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }

    /// Mean length, `None` without strings.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

/// Earliest and latest RFC 3339 timestamps among a field's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Strings that are RFC 3339 timestamps.
    pub count: u64,
    /// Earliest, ms since the Unix epoch.
    pub min_ms: i64,
    /// Latest, ms since the Unix epoch.
    pub max_ms: i64,
}

impl TimeRange {
    fn merge(this: &mut Option<TimeRange>, other: Option<&TimeRange>) {
        match (this.as_mut(), other) {
            (_, None) => {}
            (None, Some(o)) => *this = Some(*o),
            (Some(t), Some(o)) => {
                t.count += o.count;
                t.min_ms = t.min_ms.min(o.min_ms);
                t.max_ms = t.max_ms.max(o.max_ms);
            }
        }
    }

    #[inline]
    pub(crate) fn add(this: &mut Option<TimeRange>, ms: i64) {
        match this {
            None => *this = Some(TimeRange { count: 1, min_ms: ms, max_ms: ms }),
            Some(t) => {
                t.count += 1;
                t.min_ms = t.min_ms.min(ms);
                t.max_ms = t.max_ms.max(ms);
            }
        }
    }
}

/// Everything a profile knows about one field in a window. Missing counts are not here:
/// a field's profile only sees the records that have it, so missing is the window's
/// rows minus [`FieldProfile::present`] (see [`super::FieldSummary`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldProfile {
    /// Records where the key is present (any value, `null` included).
    pub present: u64,
    /// Values per type.
    pub types: TypeCounts,
    /// `""` values.
    pub empty_string: u64,
    /// `[]` values.
    pub empty_array: u64,
    /// `{}` values.
    pub empty_object: u64,
    /// Numeric values: count, extremes, mean, moments.
    pub numeric: Moments,
    /// Quantiles of numeric values (absent until the first number).
    pub quantiles: Option<Quantiles>,
    /// Distinct strings, numbers and booleans.
    pub distinct: Distinct,
    /// Frequent strings, numbers and booleans.
    pub frequent: FrequentValues,
    /// Lengths of strings.
    pub lengths: Lengths,
    /// RFC 3339 timestamps among the strings.
    pub timestamps: Option<TimeRange>,
}

impl FieldProfile {
    /// An empty profile keeping `counters` frequent-value counters.
    pub fn new(counters: usize) -> FieldProfile {
        FieldProfile {
            present: 0,
            types: TypeCounts::default(),
            empty_string: 0,
            empty_array: 0,
            empty_object: 0,
            numeric: Moments::default(),
            quantiles: None,
            distinct: Distinct::new(),
            frequent: FrequentValues::new(counters),
            lengths: Lengths::default(),
            timestamps: None,
        }
    }

    /// `""`, `[]` and `{}` values.
    pub fn empty(&self) -> u64 {
        self.empty_string + self.empty_array + self.empty_object
    }

    /// Adds a number.
    #[inline]
    pub(crate) fn add_number(&mut self, x: f64) {
        // A number beyond f64 (valid JSON) reads as infinite: typed, not summarised.
        if !x.is_finite() {
            return;
        }
        self.numeric.add(x);
        self.quantiles.get_or_insert_with(Quantiles::default).add(x);
    }

    /// Adds the values of `other`.
    pub fn merge(&mut self, other: &FieldProfile) {
        self.present += other.present;
        self.types.merge(&other.types);
        self.empty_string += other.empty_string;
        self.empty_array += other.empty_array;
        self.empty_object += other.empty_object;
        self.numeric.merge(&other.numeric);
        match (&mut self.quantiles, &other.quantiles) {
            (_, None) => {}
            (None, Some(q)) => self.quantiles = Some(q.clone()),
            (Some(mine), Some(theirs)) => mine.merge(theirs),
        }
        self.distinct.merge(&other.distinct);
        self.frequent.merge(&other.frequent);
        self.lengths.merge(&other.lengths);
        TimeRange::merge(&mut self.timestamps, other.timestamps.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_merge_like_one_pass() {
        let values: Vec<f64> = (0..200).map(|i| f64::from(i * i % 37) - 3.5).collect();
        let mut whole = Moments::default();
        values.iter().for_each(|v| whole.add(*v));
        let mut left = Moments::default();
        let mut right = Moments::default();
        values[..71].iter().for_each(|v| left.add(*v));
        values[71..].iter().for_each(|v| right.add(*v));
        right.merge(&left);
        assert_eq!(right.count, whole.count);
        assert!((right.mean - whole.mean).abs() < 1e-9);
        assert!((right.m2 - whole.m2).abs() < 1e-6 * whole.m2);
        assert!((right.m3 - whole.m3).abs() < 1e-6 * whole.m3.abs().max(1.0));
        let mean = values.iter().sum::<f64>() / 200.0;
        let m3: f64 = values.iter().map(|v| (v - mean).powi(3)).sum();
        assert!((whole.m3 - m3).abs() < 1e-6 * m3.abs().max(1.0), "{} vs {m3}", whole.m3);
    }

    #[test]
    fn dominant_type_ignores_nulls() {
        let t = TypeCounts { string: 2, integer: 3, null: 10, ..TypeCounts::default() };
        assert_eq!(t.dominant(), Some(ValueType::Integer));
        assert_eq!(TypeCounts { null: 1, ..TypeCounts::default() }.dominant(), Some(ValueType::Null));
        assert_eq!(TypeCounts::default().dominant(), None);
    }
}

//! Configuration of the visits generator: seed, partitions and their skew, the fault
//! mix, the important fields the summary reports on, and the event-time clock.

use std::time::Duration;

use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};

/// The important fields of the reference job: the ones whose emptiness it observes.
pub const DEFAULT_IMPORTANT_FIELDS: [&str; 3] = ["event_time", "user_id", "page"];

/// Share of the records that receive each fault, every share in `0.0..=1.0`.
///
/// Each fault is drawn independently per generated record, so one record may carry
/// several (the later one wins where they touch the same field, in the order of the
/// fields below). Duplicates copy the final record, faults included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultMix {
    /// A random non-empty subset of the six top-level fields (`visit_id`, `event_time`,
    /// `user_id`, `keep_private`, `page`, `context`) set to `null`: the reference's fault.
    pub null: f64,
    /// One random important field set to `""`.
    pub empty_string: f64,
    /// One random top-level field removed (key absent).
    pub missing_key: f64,
    /// One random field inside `context` (e.g. `context.user.login`,
    /// `context.technical.browser`, or the whole `context.user`) set to `null`.
    pub nested_null: f64,
    /// The value made unparseable: truncated JSON, or a byte that is not UTF-8.
    pub unparseable: f64,
    /// The record (same partition, key and value) emitted twice in a row.
    pub duplicate: f64,
    /// `event_time` shifted back by [`GeneratorConfig::late_delay`].
    pub late: f64,
}

impl Default for FaultMix {
    /// The reference generator's mix: 10 % of the records with nulled top-level fields.
    fn default() -> Self {
        FaultMix { null: 0.10, ..FaultMix::none() }
    }
}

impl FaultMix {
    /// No faults at all: every record is valid.
    pub fn none() -> Self {
        FaultMix { null: 0.0, empty_string: 0.0, missing_key: 0.0, nested_null: 0.0, unparseable: 0.0, duplicate: 0.0, late: 0.0 }
    }

    /// Every fault with the same share.
    pub fn uniform(share: f64) -> Self {
        FaultMix {
            null: share,
            empty_string: share,
            missing_key: share,
            nested_null: share,
            unparseable: share,
            duplicate: share,
            late: share,
        }
    }

    /// The shares with their flag-style names, in a fixed order.
    pub fn shares(&self) -> [(&'static str, f64); 7] {
        [
            ("null", self.null),
            ("empty_string", self.empty_string),
            ("missing_key", self.missing_key),
            ("nested_null", self.nested_null),
            ("unparseable", self.unparseable),
            ("duplicate", self.duplicate),
            ("late", self.late),
        ]
    }

    /// The same mix with every share clamped into `0.0..=1.0` (NaN becomes 0).
    pub fn clamped(&self) -> FaultMix {
        let c = |s: f64| if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) };
        FaultMix {
            null: c(self.null),
            empty_string: c(self.empty_string),
            missing_key: c(self.missing_key),
            nested_null: c(self.nested_null),
            unparseable: c(self.unparseable),
            duplicate: c(self.duplicate),
            late: c(self.late),
        }
    }
}

/// Everything that determines the generated stream: the same configuration gives the
/// same records, byte for byte, and the same partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Seed of the generator's ChaCha8 random streams.
    pub seed: u64,
    /// Number of partitions records are spread over (`0..partitions`).
    pub partitions: u32,
    /// Relative weight of each partition (`[3, 1]`: partition 0 gets three times the
    /// records of partition 1). Empty: all partitions equal. Otherwise one weight per
    /// partition, not all zero.
    pub partition_weights: Vec<u32>,
    /// Which faults, how often.
    pub faults: FaultMix,
    /// Dotted paths (`event_time`, `context.user.login`) the summary counts invalid
    /// values of; the empty-string fault picks among them.
    pub important_fields: Vec<String>,
    /// How far back a late event's `event_time` is shifted (whole seconds).
    pub late_delay: Duration,
    /// Event time of the first refreshes (the clock starts here, not at `now()`).
    pub start_time: DateTime<Utc>,
    /// Visits open at the same time; each record refreshes the one whose next refresh
    /// comes first, so `event_time` never goes backwards except for late events. More
    /// visits make the event time advance more slowly per record (about
    /// 180 s / `concurrent_visits` per record).
    pub concurrent_visits: usize,
}

/// `2024-01-01T00:00:00+00:00`, the default start of the event-time clock.
pub fn default_start_time() -> DateTime<Utc> {
    Utc.timestamp_opt(1_704_067_200, 0).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

impl Default for GeneratorConfig {
    /// The reference's shape: 2 equal partitions, 10 % nulled records, seed 0.
    fn default() -> Self {
        GeneratorConfig {
            seed: 0,
            partitions: 2,
            partition_weights: Vec::new(),
            faults: FaultMix::default(),
            important_fields: DEFAULT_IMPORTANT_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            late_delay: Duration::from_secs(600),
            start_time: default_start_time(),
            concurrent_visits: 100,
        }
    }
}

/// Why a [`GeneratorConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `partitions` is 0 or does not fit an `i32`.
    #[error("partitions must be between 1 and {max}, got {got}", max = i32::MAX)]
    Partitions {
        /// The configured number.
        got: u32,
    },
    /// Weights given, but not one per partition.
    #[error("{weights} partition weights for {partitions} partitions: give one weight per partition")]
    WeightCount {
        /// Number of weights.
        weights: usize,
        /// Number of partitions.
        partitions: u32,
    },
    /// Every weight is zero.
    #[error("partition weights are all zero")]
    ZeroWeights,
    /// A fault share outside `0.0..=1.0`.
    #[error("fault share {name} = {value} is not between 0 and 1")]
    Share {
        /// Which share.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// No concurrent visits.
    #[error("concurrent_visits must be at least 1")]
    NoVisits,
    /// The event-time clock would leave the years RFC 3339 can write.
    #[error("start_time {0} is outside the years 1971..=9000")]
    StartTime(String),
    /// A late delay longer than a year.
    #[error("late_delay {0:?} is longer than 365 days")]
    LateDelay(Duration),
}

impl GeneratorConfig {
    /// Checks every setting; [`VisitGenerator::try_new`](super::VisitGenerator::try_new)
    /// calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.partitions == 0 || i32::try_from(self.partitions).is_err() {
            return Err(ConfigError::Partitions { got: self.partitions });
        }
        if !self.partition_weights.is_empty() {
            if self.partition_weights.len() != self.partitions as usize {
                return Err(ConfigError::WeightCount { weights: self.partition_weights.len(), partitions: self.partitions });
            }
            if self.partition_weights.iter().all(|w| *w == 0) {
                return Err(ConfigError::ZeroWeights);
            }
        }
        for (name, value) in self.faults.shares() {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::Share { name, value });
            }
        }
        if self.concurrent_visits == 0 {
            return Err(ConfigError::NoVisits);
        }
        if !(1971..=9000).contains(&self.start_time.year()) {
            return Err(ConfigError::StartTime(self.start_time.to_rfc3339()));
        }
        if self.late_delay > Duration::from_secs(365 * 86_400) {
            return Err(ConfigError::LateDelay(self.late_delay));
        }
        Ok(())
    }

    /// A copy that passes [`validate`](Self::validate): shares clamped, weights padded
    /// with 1 or cut to one per partition (all-zero weights dropped), at least one
    /// partition and one visit, start time and late delay brought into range.
    pub fn sanitized(&self) -> GeneratorConfig {
        let mut cfg = self.clone();
        cfg.partitions = cfg.partitions.clamp(1, i32::MAX as u32);
        if !cfg.partition_weights.is_empty() {
            cfg.partition_weights.resize(cfg.partitions as usize, 1);
            if cfg.partition_weights.iter().all(|w| *w == 0) {
                cfg.partition_weights.clear();
            }
        }
        cfg.faults = cfg.faults.clamped();
        cfg.concurrent_visits = cfg.concurrent_visits.max(1);
        if !(1971..=9000).contains(&cfg.start_time.year()) {
            cfg.start_time = default_start_time();
        }
        cfg.late_delay = cfg.late_delay.min(Duration::from_secs(365 * 86_400));
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_matches_the_reference() {
        let cfg = GeneratorConfig::default();
        cfg.validate().expect("valid");
        assert_eq!(cfg.partitions, 2);
        assert_eq!(cfg.faults.null, 0.10);
        assert_eq!(cfg.faults.shares().iter().filter(|(_, s)| *s > 0.0).count(), 1);
        assert_eq!(cfg.start_time.to_rfc3339(), "2024-01-01T00:00:00+00:00");
    }

    #[test]
    fn invalid_settings_are_rejected_and_sanitized() {
        let bad = GeneratorConfig {
            partitions: 3,
            partition_weights: vec![3, 1],
            faults: FaultMix { late: 1.5, ..FaultMix::none() },
            ..GeneratorConfig::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::WeightCount { weights: 2, partitions: 3 }));
        let fixed = bad.sanitized();
        fixed.validate().expect("sanitized is valid");
        assert_eq!(fixed.partition_weights, vec![3, 1, 1]);
        assert_eq!(fixed.faults.late, 1.0);
        let zero = GeneratorConfig { partitions: 0, ..GeneratorConfig::default() };
        assert!(zero.validate().is_err());
        assert_eq!(zero.sanitized().partitions, 1);
        let share = GeneratorConfig { faults: FaultMix { null: -0.1, ..FaultMix::none() }, ..GeneratorConfig::default() };
        assert!(matches!(share.validate(), Err(ConfigError::Share { name: "null", .. })));
    }
}

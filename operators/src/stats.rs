//! The stats document: per observation window, every observation of the job in one
//! document (a superset of the reference demo's), assembled on worker 0 once the
//! window's frontier has passed.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use tidewatch_engine::counts::{close_windows, WindowState};
use timely::dataflow::Stream;

use tidewatch_engine::counts::MetricKey;

use crate::classify::{FieldKind, RecordKind};
use crate::protocol::{MetricKind, MetricSpec};
use crate::lag::LagRow;
use crate::quality::QualityKey;

/// One observation, as a differential update: counts carry their count as the difference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Observation {
    /// Records of a quality key.
    Quality(QualityKey),
    /// Records delivered to the output topic.
    Delivered,
    /// A partition's position and watermark (`+1` when it starts to hold, `-1` when it stops).
    Lag(LagRow),
    /// A metric of a custom observer, by its index in the job's custom metric names.
    Custom(u16),
    /// A record behind a custom metric: its input partition and offset.
    Sample(u16, i32, i64),
    /// Records offered to the sampled record observers: observed (`true`) or skipped
    /// under the observation budget.
    Sampled(bool),
    /// A figure of an observer on the protocol ([`crate::protocol`]).
    Metric(MetricKey),
}

/// A figure of an observer on the protocol, as a window closed with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Its key.
    pub key: MetricKey,
    /// How windows read it.
    pub kind: MetricKind,
    /// Its value in the window (an [`MetricKind::Age`] in seconds).
    pub value: f64,
}

/// How many records a sampled branch was offered in a window and how many it observed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Records offered.
    pub seen: i64,
    /// Records observed.
    pub observed: i64,
    /// `observed / seen`: 1.0 while the branch is within its budget.
    pub rate: f64,
}

/// Burrow-style health of one partition, judged over the last windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PartitionStatus {
    /// Caught up, or lag not growing.
    Ok,
    /// Lag grew in each of the last windows.
    Warn,
    /// Position not moving while lag is above 0.
    Stall,
    /// No position reported: the partition is not being consumed.
    Stop,
}

/// Samples a window keeps per custom metric.
const SAMPLES_PER_WINDOW: usize = 5;

/// How many windows the partition status looks back.
const STATUS_WINDOWS: usize = 3;

/// The stats document of one window. Field names follow the reference demo's index
/// (`visits_observation_stats`): `@timestamp`, `invalid_<field>`, `all_events`,
/// `lag_per_partition`; everything else extends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsDoc {
    /// End of the window, RFC 3339.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// Window start, ms since the Unix epoch.
    pub window_start_ms: u64,
    /// Window end (exclusive), ms since the Unix epoch.
    pub window_end_ms: u64,
    /// Records read in the window.
    pub all_events: i64,
    /// Per watched field: records where it is empty in any way (missing, null, "", [], {}),
    /// and by default ([`InvalidCounting::Reference`]) records whose value has no fields
    /// to look at (unparseable, tombstone).
    #[serde(flatten)]
    pub invalid: BTreeMap<String, i64>,
    /// Per watched field, per kind: records.
    pub quality: BTreeMap<String, BTreeMap<String, i64>>,
    /// Records whose value is not valid JSON.
    pub unparseable: i64,
    /// Records whose value is JSON but not an object.
    pub not_object: i64,
    /// Records with a null value.
    pub tombstones: i64,
    /// Offset lag per partition at the window's end (partitions with an unknown lag are absent).
    pub lag_per_partition: BTreeMap<String, i64>,
    /// Lag in seconds per partition at the window's end: the age of the newest record
    /// consumed while behind (absent while unknown: behind, and nothing consumed yet).
    pub lag_seconds_per_partition: BTreeMap<String, f64>,
    /// Status per partition.
    pub status_per_partition: BTreeMap<String, PartitionStatus>,
    /// Largest offset lag over partitions (absent while no lag is known).
    pub max_lag: Option<i64>,
    /// Largest lag in seconds over partitions.
    pub max_lag_seconds: Option<f64>,
    /// Records read in the window.
    pub records_in: i64,
    /// Records of the window's epochs written to the output topic and acknowledged.
    pub records_delivered: i64,
    /// The custom observers' counts in the window, by `<observer>.<metric>`.
    #[serde(default)]
    pub observers: BTreeMap<String, i64>,
    /// A few records behind the custom observers' counts, `[partition, offset]`, by metric.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<String, Vec<(i32, i64)>>,
    /// Per branch that may sample under the observation budget (`observers`: the record
    /// observers that need not see every record), what it saw in the window. Counts in
    /// `observers` of such a branch are over the records it observed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sampling: BTreeMap<String, Sampling>,
    /// Every figure of the observers on the protocol, by its dotted path
    /// (`<observer>.<metric>[.<label>.<value>…]`, see [`MetricKey::path`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// The same figures with their keys and kinds, for outputs that keep labels apart
    /// (`/metrics`); not serialized.
    #[serde(skip)]
    pub figures: Vec<Figure>,
}

impl StatsDoc {
    /// A numeric figure of the document by name, for alert rules: `max_lag`,
    /// `max_lag_seconds`, `all_events`, `records_in`, `records_delivered`, `unparseable`,
    /// `not_object`, `tombstones`, `invalid_<field>`, `lag_<partition>`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "max_lag" => self.max_lag.map(|v| v as f64),
            "max_lag_seconds" => self.max_lag_seconds,
            "all_events" => Some(self.all_events as f64),
            "records_in" => Some(self.records_in as f64),
            "records_delivered" => Some(self.records_delivered as f64),
            "unparseable" => Some(self.unparseable as f64),
            "not_object" => Some(self.not_object as f64),
            "tombstones" => Some(self.tombstones as f64),
            other if self.observers.contains_key(other) => self.observers.get(other).map(|v| *v as f64),
            other if self.metrics.contains_key(other) => self.metrics.get(other).copied(),
            // `<observer>.<metric>` of a labelled metric: the largest over its labels.
            other if self.metrics.keys().any(|k| k.starts_with(other) && k[other.len()..].starts_with('.')) => self
                .metrics
                .iter()
                .filter(|(k, _)| k.starts_with(other) && k[other.len()..].starts_with('.'))
                .map(|(_, v)| *v)
                .reduce(f64::max),
            other => {
                if let Some(v) = self.invalid.get(other) {
                    return Some(*v as f64);
                }
                other.strip_prefix("lag_").and_then(|p| self.lag_per_partition.get(p)).map(|v| *v as f64)
            }
        }
    }

    /// The names [`Self::metric`] knows for `fields` (custom observers' metrics come on top).
    pub fn metric_names(fields: &[String]) -> Vec<String> {
        let mut names: Vec<String> =
            ["max_lag", "max_lag_seconds", "all_events", "records_in", "records_delivered", "unparseable", "not_object", "tombstones"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        names.extend(fields.iter().map(|f| format!("invalid_{f}")));
        names
    }
}

/// Formats ms since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// What `invalid_<field>` counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvalidCounting {
    /// As the reference job, which parses with a schema: a record whose value does not
    /// parse, is null (a tombstone) or is not an object is invalid in every watched field,
    /// as is a field that is missing, null or empty.
    #[default]
    Reference,
    /// Only records whose value is JSON count, by how their fields read: unparseable
    /// records and tombstones are left out of `invalid_<field>` (they have their own counts).
    PresentValuesOnly,
}

/// The shape of a job's stats documents.
#[derive(Debug, Clone, Default)]
pub struct StatsLayout {
    /// Length of a window (ms).
    pub window_ms: u64,
    /// The watched fields, in index order.
    pub fields: Vec<String>,
    /// Full names of the custom observers' metrics, by index.
    pub custom: Vec<String>,
    /// What `invalid_<field>` counts.
    pub invalid: InvalidCounting,
    /// The protocol observers' metrics, by `<observer>.<metric>`.
    pub specs: BTreeMap<String, MetricSpec>,
}

/// Folds observations into windows and emits one [`StatsDoc`] per window on worker 0.
#[derive(Debug)]
struct WindowFolder {
    window_ms: u64,
    fields: Vec<String>,
    /// Full names of the custom observers' metrics, by index.
    custom: Vec<String>,
    invalid: InvalidCounting,
    /// How each protocol metric is read, by `<observer>.<metric>`.
    kinds: BTreeMap<String, MetricKind>,
    /// Level updates (gauges, ages) per epoch, applied to `levels` as windows close.
    level_updates: BTreeMap<u64, Vec<(MetricKey, i64)>>,
    levels: BTreeMap<MetricKey, i64>,
    /// Counts per window start.
    counts: BTreeMap<u64, BTreeMap<Observation, i64>>,
    /// Lag updates per epoch, applied to `lag` as windows close.
    lag_updates: BTreeMap<u64, Vec<(LagRow, i64)>>,
    lag: BTreeMap<LagRow, i64>,
    /// Per partition: (position, lag) at the end of the last windows, newest last.
    history: BTreeMap<i32, VecDeque<(i64, i64)>>,
    last_time: u64,
}

impl WindowFolder {
    fn absorb(&mut self, observation: Observation, time: u64, diff: isize) {
        self.last_time = self.last_time.max(time);
        match observation {
            Observation::Lag(row) => self.lag_updates.entry(time).or_default().push((row, diff as i64)),
            Observation::Metric(key) if self.kinds.get(&key.name()).is_some_and(|k| *k != MetricKind::Count) => {
                self.level_updates.entry(time).or_default().push((key, diff as i64));
            }
            other => {
                let start = time - time % self.window_ms;
                *self.counts.entry(start).or_default().entry(other).or_insert(0) += diff as i64;
            }
        }
    }

    /// Closes the window starting at `start`.
    fn close(&mut self, start: u64) -> StatsDoc {
        let end = start + self.window_ms;
        let counts = self.counts.remove(&start).unwrap_or_default();
        let count = |o: Observation| counts.get(&o).copied().unwrap_or(0);
        let figures = self.figures(&counts, end);
        let record = |k: RecordKind| count(Observation::Quality(QualityKey::Record(k)));
        let all_events: i64 = RecordKind::ALL.iter().map(|k| record(*k)).sum();
        let (invalid, quality) = self.quality(&count);
        let lag = self.lag(end);
        StatsDoc {
            timestamp: rfc3339(end),
            window_start_ms: start,
            window_end_ms: end,
            all_events,
            invalid,
            quality,
            unparseable: record(RecordKind::Unparseable),
            not_object: record(RecordKind::NotObject),
            tombstones: record(RecordKind::Tombstone),
            max_lag: lag.offsets.values().copied().max(),
            max_lag_seconds: lag.seconds.values().copied().reduce(f64::max),
            lag_per_partition: lag.offsets,
            lag_seconds_per_partition: lag.seconds,
            status_per_partition: lag.status,
            records_in: all_events,
            records_delivered: count(Observation::Delivered),
            observers: self
                .custom
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), count(Observation::Custom(u16::try_from(i).unwrap_or(u16::MAX)))))
                .collect(),
            samples: self.samples(&counts),
            metrics: figures.iter().map(|f| (f.key.path(), f.value)).collect(),
            figures,
            sampling: sampling(count(Observation::Sampled(true)), count(Observation::Sampled(false))),
        }
    }

    /// Per watched field: `invalid_<field>` and the count of each kind.
    #[allow(clippy::type_complexity)]
    fn quality(&self, count: &dyn Fn(Observation) -> i64) -> (BTreeMap<String, i64>, BTreeMap<String, BTreeMap<String, i64>>) {
        let record = |k: RecordKind| count(Observation::Quality(QualityKey::Record(k)));
        // Records without fields to look at: invalid in every field, as for the reference.
        let without_fields = match self.invalid {
            InvalidCounting::Reference => record(RecordKind::Unparseable) + record(RecordKind::Tombstone),
            InvalidCounting::PresentValuesOnly => 0,
        };
        let mut invalid = BTreeMap::new();
        let mut quality = BTreeMap::new();
        for (index, name) in self.fields.iter().enumerate() {
            let field = u16::try_from(index).unwrap_or(u16::MAX);
            let kinds: BTreeMap<String, i64> = FieldKind::ALL
                .iter()
                .map(|k| (k.name().to_owned(), count(Observation::Quality(QualityKey::Field(field, *k)))))
                .collect();
            let empty: i64 = FieldKind::ALL.iter().filter(|k| k.is_invalid()).map(|k| kinds[k.name()]).sum();
            invalid.insert(format!("invalid_{name}"), empty + without_fields);
            quality.insert(name.clone(), kinds);
        }
        (invalid, quality)
    }

    /// Lag per partition at `end`, after every lag update of the epochs before it, and
    /// each partition's status over the last windows.
    fn lag(&mut self, end: u64) -> LagAtEnd {
        let later = self.lag_updates.split_off(&end);
        for (row, diff) in std::mem::replace(&mut self.lag_updates, later).into_values().flatten() {
            let entry = self.lag.entry(row).or_insert(0);
            *entry += diff;
            if *entry == 0 {
                self.lag.remove(&row);
            }
        }
        let mut lag = LagAtEnd::default();
        let now = i64::try_from(end).unwrap_or(i64::MAX);
        let mut seen = Vec::new();
        for row in self.lag.keys() {
            let key = row.partition.to_string();
            lag.offsets.insert(key.clone(), row.lag());
            if let Some(seconds) = row.lag_seconds(now) {
                lag.seconds.insert(key.clone(), seconds);
            }
            let history = self.history.entry(row.partition).or_default();
            history.push_back((row.position, row.lag()));
            while history.len() > STATUS_WINDOWS {
                history.pop_front();
            }
            lag.status.insert(key, status(history));
            seen.push(row.partition);
        }
        for (partition, history) in &self.history {
            if !seen.contains(partition) {
                lag.status.insert(partition.to_string(), if history.back().is_some_and(|h| h.1 > 0) { PartitionStatus::Stop } else { PartitionStatus::Ok });
            }
        }
        lag
    }

    /// A few records behind the custom observers' counts, by metric.
    fn samples(&self, counts: &BTreeMap<Observation, i64>) -> BTreeMap<String, Vec<(i32, i64)>> {
        let mut samples: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        for (observation, n) in counts {
            if let (Observation::Sample(metric, partition, offset), true) = (observation, *n > 0) {
                if let Some(name) = self.custom.get(usize::from(*metric)) {
                    let list = samples.entry(name.clone()).or_default();
                    if list.len() < SAMPLES_PER_WINDOW {
                        list.push((*partition, *offset));
                    }
                }
            }
        }
        samples
    }
}

/// Lag per partition at a window's end: offsets, seconds (where known), status.
#[derive(Debug, Default)]
struct LagAtEnd {
    offsets: BTreeMap<String, i64>,
    seconds: BTreeMap<String, f64>,
    status: BTreeMap<String, PartitionStatus>,
}

/// What the sampled record observers saw of a window's records.
fn sampling(observed: i64, skipped: i64) -> BTreeMap<String, Sampling> {
    let seen = observed + skipped;
    let mut sampling = BTreeMap::new();
    if seen > 0 {
        sampling.insert("observers".to_owned(), Sampling { seen, observed, rate: observed as f64 / seen as f64 });
    }
    sampling
}

impl WindowFolder {
    /// The protocol figures of the window ending at `end`: its counts, and the levels
    /// after every update before its end.
    fn figures(&mut self, counts: &BTreeMap<Observation, i64>, end: u64) -> Vec<Figure> {
        let later = self.level_updates.split_off(&end);
        for (key, diff) in std::mem::replace(&mut self.level_updates, later).into_values().flatten() {
            let level = self.levels.entry(key.clone()).or_insert(0);
            *level += diff;
            if *level == 0 {
                self.levels.remove(&key);
            }
        }
        let mut figures: Vec<Figure> = counts
            .iter()
            .filter_map(|(o, n)| match o {
                Observation::Metric(key) => Some(Figure { key: key.clone(), kind: MetricKind::Count, value: *n as f64 }),
                _ => None,
            })
            .collect();
        let end_ms = i64::try_from(end).unwrap_or(i64::MAX);
        for (key, level) in &self.levels {
            let kind = self.kinds.get(&key.name()).copied().unwrap_or(MetricKind::Gauge);
            let value = match kind {
                MetricKind::Age => (end_ms - level).max(0) as f64 / 1000.0,
                _ => *level as f64,
            };
            figures.push(Figure { key: key.clone(), kind, value });
        }
        figures
    }
}

/// Judges a partition from its (position, lag) over the last windows, newest last.
fn status(history: &VecDeque<(i64, i64)>) -> PartitionStatus {
    let Some(&(position, lag)) = history.back() else { return PartitionStatus::Stop };
    if lag == 0 {
        return PartitionStatus::Ok;
    }
    if history.len() >= 2 && history.iter().all(|(p, _)| *p == position) {
        return PartitionStatus::Stall;
    }
    let growing = history.len() >= 2 && history.iter().zip(history.iter().skip(1)).all(|(a, b)| b.1 > a.1);
    if growing {
        PartitionStatus::Warn
    } else {
        PartitionStatus::Ok
    }
}

/// Assembles the stats documents of a job from its observations.
pub trait StatsWindows<'scope> {
    /// Gathers `self` (all workers' observations) on worker 0 and, each time the frontier
    /// passes the end of a window of `layout.window_ms`, emits that window's [`StatsDoc`],
    /// also for windows without records.
    fn stats_windows(self, layout: StatsLayout) -> Stream<'scope, u64, Vec<StatsDoc>>;
}

impl<'scope> StatsWindows<'scope> for Stream<'scope, u64, Vec<(Observation, u64, isize)>> {
    fn stats_windows(self, layout: StatsLayout) -> Stream<'scope, u64, Vec<StatsDoc>> {
        let StatsLayout { window_ms, fields, custom, invalid, specs } = layout;
        let window_ms = window_ms.max(1);
        let folder = WindowFolder {
            window_ms,
            fields,
            custom,
            invalid,
            kinds: specs.into_iter().map(|(name, spec)| (name, spec.kind)).collect(),
            level_updates: BTreeMap::new(),
            levels: BTreeMap::new(),
            counts: BTreeMap::new(),
            lag_updates: BTreeMap::new(),
            lag: BTreeMap::new(),
            history: BTreeMap::new(),
            last_time: 0,
        };
        close_windows(self, "StatsWindows", window_ms, folder)
    }
}

impl WindowState for WindowFolder {
    type Output = StatsDoc;
    type Data = Observation;

    fn absorb(&mut self, observation: Observation, time: u64, diff: isize) {
        WindowFolder::absorb(self, observation, time, diff);
    }

    fn earliest(&self) -> Option<u64> {
        self.counts.keys().next().copied()
    }

    fn latest(&self) -> u64 {
        self.last_time
    }

    fn close(&mut self, start: u64) -> StatsDoc {
        WindowFolder::close(self, start)
    }
}

#[cfg(test)]
mod tests {
    use super::{status, Observation, PartitionStatus, StatsDoc, StatsLayout, StatsWindows};
    use crate::lag::LagRow;
    use std::collections::VecDeque;
    use timely::dataflow::operators::capture::{Capture, Event};
    use timely::dataflow::operators::ToStream;

    /// The documents of two windows of 1 000 ms over `observations`.
    fn docs(observations: Vec<(Observation, u64, isize)>) -> Vec<StatsDoc> {
        let captured = timely::example(move |scope| observations.to_stream(scope).container::<Vec<_>>().stats_windows(StatsLayout { window_ms: 1_000, ..StatsLayout::default() }).capture());
        captured.try_iter().flat_map(|event| if let Event::Messages(_, docs) = event { docs } else { Vec::new() }).collect()
    }

    #[test]
    fn a_partition_behind_with_nothing_consumed_has_no_lag_seconds_rather_than_zero() {
        // Partition 0 is 22 500 behind and never delivered a record; partition 1 consumed one
        // at 1 500 ms and is 10 behind.
        let stalled = LagRow { partition: 0, position: 0, newest_ms: None, high: 22_500 };
        let moving = LagRow { partition: 1, position: 90, newest_ms: Some(1_500), high: 100 };
        let docs = docs(vec![(Observation::Lag(stalled), 1_000, 1), (Observation::Lag(moving), 1_000, 1), (Observation::Delivered, 1_000, 1), (Observation::Delivered, 2_100, 1)]);
        let doc = docs.iter().find(|d| d.window_start_ms == 1_000).expect("the window of the lag rows");
        assert_eq!(doc.lag_per_partition["0"], 22_500);
        assert!(!doc.lag_seconds_per_partition.contains_key("0"), "unknown, not 0: {:?}", doc.lag_seconds_per_partition);
        assert_eq!(doc.lag_seconds_per_partition["1"], 0.5);
        assert_eq!(doc.max_lag_seconds, Some(0.5));
        assert!(docs.iter().flat_map(|d| d.lag_per_partition.iter().map(move |(p, l)| (d, p, l))).all(|(d, p, l)| *l == 0 || d.lag_seconds_per_partition.get(p) != Some(&0.0)));
    }

    fn judge(history: &[(i64, i64)]) -> PartitionStatus {
        status(&history.iter().copied().collect::<VecDeque<_>>())
    }

    #[test]
    fn partition_status_follows_position_and_lag() {
        assert_eq!(judge(&[]), PartitionStatus::Stop);
        assert_eq!(judge(&[(10, 5), (20, 0)]), PartitionStatus::Ok);
        assert_eq!(judge(&[(10, 5), (20, 9), (30, 14)]), PartitionStatus::Warn);
        assert_eq!(judge(&[(10, 5), (10, 9), (10, 14)]), PartitionStatus::Stall);
        assert_eq!(judge(&[(10, 15), (20, 9), (30, 4)]), PartitionStatus::Ok);
    }
}

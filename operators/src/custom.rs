//! Writing your own observer: the API.
//!
//! An observer sees every record of every epoch on every worker, keeps whatever state it
//! likes, and reports **counts**: after each batch of records it adds numbers to the
//! metrics it declared (the engine's [`tidewatch_engine::counts::CountKeys::count_core`]
//! sums them per worker and epoch). The counts of all workers are summed per observation window and flow by
//! themselves into the stats document (as `"<observer>.<metric>": n`), into `/metrics`
//! (`tidewatch_observer_window{metric=...}` and `tidewatch_observer_total{metric=...}`),
//! into OpenSearch with the document, and into alert rules (`metric = "<observer>.<metric>"`).
//! Counts are mergeable by addition, so it does not matter which worker saw which record.
//!
//! ```
//! use tidewatch_operators::custom::{Counts, ObserverFactory, RecordObserver, RecordView, run_observer};
//! use tidewatch_engine::Record;
//!
//! /// Counts records whose key is null.
//! #[derive(Debug)]
//! struct NullKeys;
//!
//! #[derive(Debug, Default)]
//! struct NullKeysOnWorker { seen: i64 }
//!
//! impl RecordObserver for NullKeysOnWorker {
//!     fn observe(&mut self, record: &RecordView<'_>) {
//!         if record.record().key.is_none() { self.seen += 1; }
//!     }
//!     fn flush(&mut self, counts: &mut Counts<'_>) {
//!         counts.add("null_keys", std::mem::take(&mut self.seen));
//!     }
//! }
//!
//! impl ObserverFactory for NullKeys {
//!     fn name(&self) -> &str { "keys" }
//!     fn metrics(&self) -> Vec<String> { vec!["null_keys".to_owned()] }
//!     fn create(&self, _worker: usize) -> Box<dyn RecordObserver> { Box::new(NullKeysOnWorker::default()) }
//! }
//!
//! let record = |key: Option<&[u8]>| Record { partition: 0, offset: 0, timestamp: None, key: key.map(Into::into), value: None, headers: vec![] };
//! let totals = run_observer(NullKeys, vec![record(None), record(Some(b"k")), record(None)]);
//! assert_eq!(totals["keys.null_keys"], 2);
//! ```

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use tidewatch_engine::budget::Sampler;
use tidewatch_engine::counts::CountKeys;
use tidewatch_engine::{Record, RecordStream};

use crate::parse::{FullParse, ParseRecords, ParsedBatch, ParsedRecords};
pub use crate::parse::{FieldValue, RecordView};
use timely::dataflow::operators::capture::{Capture, Extract};
use timely::dataflow::operators::ToStream;

/// Where an observer adds its counts at the end of an epoch.
#[derive(Debug)]
pub struct Counts<'a> {
    names: &'a [String],
    values: &'a mut [i64],
    /// Index of this observer's first metric among all observers' metrics.
    base: usize,
    samples: &'a mut Vec<(u16, i32, i64)>,
}

impl Counts<'_> {
    /// Adds `n` to the declared metric `metric` (an undeclared name is ignored with a log line).
    pub fn add(&mut self, metric: &str, n: i64) {
        match self.names.iter().position(|m| m == metric) {
            Some(i) => self.values[i] += n,
            None => tracing::warn!(metric, "an observer reported a metric it did not declare"),
        }
    }

    /// Points at one record behind `metric` (its input partition and offset), so a reader
    /// of the stats document can look at an example; a window keeps the first few.
    pub fn sample(&mut self, metric: &str, partition: i32, offset: i64) {
        if let Some(i) = self.names.iter().position(|m| m == metric) {
            self.samples.push((u16::try_from(self.base + i).unwrap_or(u16::MAX), partition, offset));
        }
    }
}

/// One update of the custom observers: a count of a metric, or a sample record of it
/// (both by the metric's index in [`metric_names`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum CustomKey {
    /// The metric's count (the update's difference).
    Count(u16),
    /// A record behind the metric: input partition and offset.
    Sample(u16, i32, i64),
    /// Records offered to sampled observers: observed (`true`) or skipped under the budget.
    Sampled(bool),
}

/// One worker's instance of an observer.
pub trait RecordObserver: 'static {
    /// Sees one record.
    fn observe(&mut self, record: &RecordView<'_>);
    /// After each batch of records (all of one epoch): adds what they counted since the
    /// last flush, and forgets it.
    fn flush(&mut self, counts: &mut Counts<'_>);
}

/// An observer: its name, the metrics it reports, and how to make one per worker.
pub trait ObserverFactory: Send + Sync + 'static {
    /// Name, a prefix of its metrics (`<name>.<metric>`).
    fn name(&self) -> &str;
    /// The metrics it reports (without the prefix).
    fn metrics(&self) -> Vec<String>;
    /// An instance for worker `worker`.
    fn create(&self, worker: usize) -> Box<dyn RecordObserver>;
    /// Whether it must see every record. Observers that may not (the default) share one
    /// budget of the copy's time (`observe.budget`): over it, they see 1 record in k and
    /// the stats document's `sampling` says how many they saw.
    fn exact(&self) -> bool {
        false
    }
    /// The fields (dotted paths) it reads with [`RecordView::field`]: read from the parse
    /// every observer shares. A field not listed is read from a second parse.
    fn fields(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The full names (`<observer>.<metric>`) of the metrics of `observers`, in report order.
pub fn metric_names(observers: &[Arc<dyn ObserverFactory>]) -> Vec<String> {
    observers.iter().flat_map(|o| o.metrics().into_iter().map(move |m| format!("{}.{m}", o.name()))).collect()
}

/// One worker's counts of one epoch: per metric, its count and the samples given (a
/// few per metric), and the records observed and skipped (sampled observers only).
#[derive(Debug)]
struct Staged {
    values: Vec<i64>,
    samples: Vec<(u16, i32, i64)>,
    per_metric: Vec<usize>,
    skipped: u64,
    observed: u64,
}

/// How many samples one observer may give per metric and epoch.
const SAMPLES_PER_EPOCH: usize = 5;

/// Runs `observers` over a record stream: per epoch and worker, the count of each metric
/// (by its index in [`metric_names`]) as a differential update, and the samples given,
/// emitted when the epoch is complete.
pub fn observe_custom<'scope>(records: RecordStream<'scope>, observers: Vec<Arc<dyn ObserverFactory>>) -> VecCollection<'scope, u64, CustomKey, isize> {
    observe_custom_core(&records.parse_records(FullParse::Never), observers, 0, None)
}

/// [`observe_custom`] for observers whose metrics start at index `base`, looking at the
/// records `sampler` takes (all without one), with the time they take charged to it.
pub fn observe_custom_core<'scope>(
    records: &ParsedRecords<'scope>,
    observers: Vec<Arc<dyn ObserverFactory>>,
    base: usize,
    mut sampler: Option<Sampler>,
) -> VecCollection<'scope, u64, CustomKey, isize> {
    let worker = records.stream().scope().index();
    for path in observers.iter().flat_map(|o| o.fields()) {
        if let Err(error) = records.watch(&path) {
            tracing::warn!(%error, "an observer's field is read from a second parse");
        }
    }
    let name = if sampler.is_some() { "CustomObservers(sampled)" } else { "CustomObservers" };
    let sampled = sampler.is_some();
    let mut instances: Vec<(Box<dyn RecordObserver>, Vec<String>)> = observers.iter().map(|o| (o.create(worker), o.metrics())).collect();
    let width: usize = instances.iter().map(|(_, m)| m.len()).sum();
    let mut last_epoch = None;
    records.stream().count_core(
        name,
        move || Staged { values: vec![0; width], samples: Vec::new(), per_metric: vec![0; width], skipped: 0, observed: 0 },
        move |staged, epoch, batches: &mut Vec<Rc<ParsedBatch>>| {
            let started = std::time::Instant::now();
            if let Some(sampler) = sampler.as_mut() {
                if last_epoch.replace(epoch).is_some_and(|e| e != epoch) {
                    sampler.next_epoch();
                }
            }
            for view in batches.iter().flat_map(|batch| batch.views()) {
                if let Some(sampler) = sampler.as_mut() {
                    if !sampler.take() {
                        staged.skipped += 1;
                        continue;
                    }
                    staged.observed += 1;
                }
                for (observer, _) in &mut instances {
                    observer.observe(&view);
                }
            }
            // The instances hand over what this batch counted (a worker's records arrive
            // in epoch order, so the batch is all of `epoch`).
            let mut offset = 0;
            for (observer, names) in instances.iter_mut() {
                let mut given = Vec::new();
                observer.flush(&mut Counts { names, values: &mut staged.values[offset..offset + names.len()], base: base + offset, samples: &mut given });
                // A few per metric: samples point at examples, they are not a log.
                for sample in given {
                    if let Some(n) = staged.per_metric.get_mut(usize::from(sample.0).saturating_sub(base)).filter(|n| **n < SAMPLES_PER_EPOCH) {
                        *n += 1;
                        staged.samples.push(sample);
                    }
                }
                offset += names.len();
            }
            if let Some(sampler) = sampler.as_mut() {
                sampler.charge(started.elapsed());
            }
        },
        move |staged, tally| {
            for (index, value) in staged.values.into_iter().enumerate() {
                tally.add(CustomKey::Count(u16::try_from(base + index).unwrap_or(u16::MAX)), value as isize);
            }
            for (metric, partition, offset) in staged.samples {
                tally.add(CustomKey::Sample(metric, partition, offset), 1);
            }
            if sampled {
                for (observed, n) in [(false, staged.skipped), (true, staged.observed)] {
                    tally.add(CustomKey::Sampled(observed), isize::try_from(n).unwrap_or(isize::MAX));
                }
            }
        },
    )
}

/// Runs one observer over `records` (all in one epoch, one worker) with no Kafka at all,
/// and returns the totals by full metric name: the test helper for observers.
pub fn run_observer<O: ObserverFactory>(observer: O, records: Vec<Record>) -> BTreeMap<String, i64> {
    let observers: Vec<Arc<dyn ObserverFactory>> = vec![Arc::new(observer)];
    let names = metric_names(&observers);
    let captured = timely::example(move |scope| observe_custom(records.to_stream(scope).container::<Vec<_>>(), observers).inner.capture());
    let mut totals: BTreeMap<String, i64> = names.iter().map(|n| (n.clone(), 0)).collect();
    for (_, updates) in captured.extract() {
        for (key, _, diff) in updates {
            if let CustomKey::Count(index) = key {
                if let Some(name) = names.get(usize::from(index)) {
                    *totals.entry(name.clone()).or_insert(0) += diff as i64;
                }
            }
        }
    }
    totals
}

//! The observation protocol: an observer is any dataflow over the record stream that
//! emits keyed figures, `((observer, metric, labels), diff)` per epoch
//! ([`MetricKey`], built with [`tidewatch_engine::counts`]). It declares its metrics
//! ([`MetricSpec`]) and how a window reads them ([`MetricKind`]); the stats document,
//! `/metrics`, OpenSearch and the alert rules read every figure generically, so a new
//! observer is one file, one test and one registration line ([`crate::builtin`]).
//!
//! An observer reads the records with their shared parse ([`crate::parse`]): it watches
//! the fields it reads while its dataflow is built, and reads them from each
//! [`crate::parse::RecordView`] without parsing again.
//!
//! ```
//! use differential_dataflow::VecCollection;
//! use tidewatch_engine::counts::{CountKeys, MetricKey};
//! use tidewatch_operators::parse::{FieldValue, ParsedRecords};
//! use tidewatch_operators::protocol::{DataflowObserver, MetricKind, MetricSpec, ObserverContext};
//!
//! /// Records with a null key or a null `page`, per partition and window.
//! #[derive(Debug)]
//! struct NullKeys;
//!
//! impl DataflowObserver for NullKeys {
//!     fn name(&self) -> &str { "null_keys" }
//!     fn metrics(&self) -> Vec<MetricSpec> {
//!         vec![MetricSpec::new("records", MetricKind::Count, &["partition", "of"], "Records with a null key or page")]
//!     }
//!     fn observe<'scope>(&self, records: &ParsedRecords<'scope>, _: &ObserverContext) -> VecCollection<'scope, u64, MetricKey, isize> {
//!         let page = records.watch("page").expect("a valid path");
//!         records.stream().count_each("NullKeys", move |batch, tally| {
//!             for view in batch.views() {
//!                 let key = MetricKey::new("null_keys", "records").label("partition", view.record().partition);
//!                 if view.record().key.is_none() {
//!                     tally.add(key.clone().label("of", "key"), 1);
//!                 }
//!                 if view.get(page) == Some(FieldValue::Null) {
//!                     tally.add(key.label("of", "page"), 1);
//!                 }
//!             }
//!         })
//!     }
//! }
//! # let _ = NullKeys;
//! ```

use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidewatch_engine::budget::{CopyClock, Sampler};
use tidewatch_engine::counts::MetricKey;

use crate::parse::ParsedRecords;

/// How a window reads a metric's updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Summed over the window's epochs (records counted in the window); `/metrics` also
    /// keeps a running total.
    Count,
    /// A level: the sum of all its updates up to the window's end (an observer reports a
    /// change of the level as `new − old`).
    Gauge,
    /// A level that is a time in ms since the Unix epoch; outputs show its age at the
    /// window's end, in seconds (absent while the level is 0: nothing seen yet).
    Age,
}

/// One metric an observer declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    /// The metric's name within the observer.
    pub name: String,
    /// How a window reads it.
    pub kind: MetricKind,
    /// Its label names, in order.
    pub labels: Vec<String>,
    /// One line for `/metrics` and the docs.
    pub help: String,
}

impl MetricSpec {
    /// A metric `name` of `kind` with labels `labels`.
    pub fn new(name: &str, kind: MetricKind, labels: &[&str], help: &str) -> MetricSpec {
        MetricSpec { name: name.to_owned(), kind, labels: labels.iter().map(|l| (*l).to_owned()).collect(), help: help.to_owned() }
    }
}

/// What an observer may use while it builds its dataflow on a worker.
#[derive(Debug, Clone)]
pub struct ObserverContext {
    /// The observation window (ms).
    pub window_ms: u64,
    /// Settings of the `[observe.settings]` table, by `<observer>.<key>`.
    pub settings: BTreeMap<String, String>,
    copy_clock: Rc<CopyClock>,
    budget: f64,
}

impl ObserverContext {
    /// The context of one worker, whose copy path keeps `copy_clock`.
    pub fn new(window_ms: u64, settings: BTreeMap<String, String>, copy_clock: Rc<CopyClock>, budget: f64) -> ObserverContext {
        ObserverContext { window_ms: window_ms.max(1), settings, copy_clock, budget }
    }

    /// A sampler that holds a branch to the job's observation budget (`observe.budget`).
    pub fn sampler(&self) -> Sampler {
        Sampler::new(Rc::clone(&self.copy_clock), self.budget)
    }

    /// The setting `<observer>.<key>`, or `default`.
    pub fn setting(&self, observer: &str, key: &str, default: &str) -> String {
        self.settings.get(&format!("{observer}.{key}")).cloned().unwrap_or_else(|| default.to_owned())
    }
}

/// An observer on the protocol: a dataflow from the record stream to keyed figures.
pub trait DataflowObserver: Send + Sync + 'static {
    /// Its name: the first part of its metrics' keys.
    fn name(&self) -> &str;
    /// The metrics it emits.
    fn metrics(&self) -> Vec<MetricSpec>;
    /// Builds its dataflow on one worker over the parsed records (watch the fields it
    /// reads with [`ParsedRecords::watch`]): updates `(key, epoch, diff)` of its figures.
    fn observe<'scope>(&self, records: &ParsedRecords<'scope>, context: &ObserverContext) -> VecCollection<'scope, u64, MetricKey, isize>;
}

/// The declared metrics of `observers`, by `<observer>.<metric>`.
pub fn specs(observers: &[std::sync::Arc<dyn DataflowObserver>]) -> BTreeMap<String, MetricSpec> {
    observers.iter().flat_map(|o| o.metrics().into_iter().map(move |m| (format!("{}.{}", o.name(), m.name), m))).collect()
}

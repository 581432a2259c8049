//! Data quality: how many records carry each watched field empty, and how, per epoch.
//!
//! The kinds are read from the parse the observers share ([`crate::parse`]); each worker
//! pre-aggregates the counts of its records per epoch and, once the epoch is complete,
//! emits them as differential updates `(key, epoch, count)`. Downstream, the updates of
//! all workers are consolidated in an arrangement keyed by [`QualityKey`].

use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidewatch_engine::counts::CountKeys;
use tidewatch_engine::RecordStream;

use crate::classify::{FieldKind, FieldSet, RecordKind};
use crate::parse::{FieldValue, FullParse, ParseRecords, ParsedBatch, ParsedRecords};

/// What one quality count counts: records of a kind, or records whose field `index`
/// (in the [`FieldSet`]) reads as a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QualityKey {
    /// Records of a kind.
    Record(RecordKind),
    /// Records whose watched field `.0` reads as `.1`.
    Field(u16, FieldKind),
}

/// Slot of a key in a worker's per-epoch count vector.
fn slot(key: QualityKey) -> usize {
    match key {
        QualityKey::Record(kind) => kind as usize,
        QualityKey::Field(field, kind) => RecordKind::ALL.len() + usize::from(field) * FieldKind::ALL.len() + kind as usize,
    }
}

/// Every key for `fields`, in slot order.
fn keys(fields: &FieldSet) -> Vec<QualityKey> {
    let mut keys: Vec<QualityKey> = RecordKind::ALL.iter().map(|k| QualityKey::Record(*k)).collect();
    for field in 0..fields.len() {
        let field = u16::try_from(field).unwrap_or(u16::MAX);
        keys.extend(FieldKind::ALL.iter().map(|k| QualityKey::Field(field, *k)));
    }
    keys
}

/// Observes the quality of the records of a stream.
pub trait ObserveQuality<'scope> {
    /// Per epoch, the number of records of each [`QualityKey`] this worker read, as a
    /// differential collection with the count as the difference. An epoch's counts are
    /// emitted once the epoch is complete, so they are final.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use timely::dataflow::operators::{ToStream, capture::{Capture, Extract}};
    /// use tidewatch_engine::Record;
    /// use tidewatch_operators::classify::{FieldKind, FieldSet, RecordKind};
    /// use tidewatch_operators::quality::{ObserveQuality, QualityKey};
    ///
    /// let record = |v: &[u8]| Record { partition: 0, offset: 0, timestamp: None, key: None, value: Some(v.into()), headers: vec![] };
    /// let fields = Arc::new(FieldSet::new(&["page"]).unwrap());
    /// let captured = timely::example(move |scope| {
    ///     vec![record(br#"{"page":""}"#), record(br#"{"page":"home"}"#), record(b"{oops")]
    ///         .to_stream(scope)
    ///         .container::<Vec<_>>()
    ///         .quality_deltas(fields)
    ///         .inner
    ///         .capture()
    /// });
    /// let mut counts: Vec<_> = captured.extract().into_iter().flat_map(|(_, data)| data).collect();
    /// counts.sort();
    /// assert!(counts.contains(&(QualityKey::Record(RecordKind::Object), 0, 2)));
    /// assert!(counts.contains(&(QualityKey::Record(RecordKind::Unparseable), 0, 1)));
    /// assert!(counts.contains(&(QualityKey::Field(0, FieldKind::EmptyString), 0, 1)));
    /// assert!(counts.contains(&(QualityKey::Field(0, FieldKind::Present), 0, 1)));
    /// ```
    fn quality_deltas(self, fields: Arc<FieldSet>) -> VecCollection<'scope, u64, QualityKey, isize>;
}

impl<'scope> ObserveQuality<'scope> for RecordStream<'scope> {
    fn quality_deltas(self, fields: Arc<FieldSet>) -> VecCollection<'scope, u64, QualityKey, isize> {
        self.parse_records(FullParse::Never).quality_deltas(fields)
    }
}

impl<'scope> ObserveQuality<'scope> for ParsedRecords<'scope> {
    fn quality_deltas(self, fields: Arc<FieldSet>) -> VecCollection<'scope, u64, QualityKey, isize> {
        let all_keys = keys(&fields);
        let width = all_keys.len();
        let watched = fields.watch(&self.watch_handle());
        self.stream().count_core(
            "QualityPreAggregate",
            move || vec![0_isize; width],
            move |counts, _epoch, batches: &mut Vec<Rc<ParsedBatch>>| {
                for view in batches.iter().flat_map(|batch| batch.views()) {
                    let kind = view.kind();
                    counts[slot(QualityKey::Record(kind))] += 1;
                    if kind == RecordKind::Object || kind == RecordKind::NotObject {
                        for (field, watched) in watched.iter().enumerate() {
                            let field_kind = view.get(*watched).map_or(FieldKind::Missing, FieldValue::kind);
                            counts[slot(QualityKey::Field(u16::try_from(field).unwrap_or(u16::MAX), field_kind))] += 1;
                        }
                    }
                }
            },
            move |counts, tally| all_keys.iter().zip(counts).for_each(|(key, n)| tally.add(*key, n)),
        )
    }
}

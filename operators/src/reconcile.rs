//! Copy reconciliation, an observer built only with the [`crate::custom`] API: per window,
//! the input offsets consumed, checked for gaps (offsets skipped: records the job never
//! saw, unless compaction or transaction markers explain them) and repeats (offsets seen
//! again: records copied twice, e.g. replayed after a crash). The stats document sets
//! these beside `records_delivered`, and `reconcile.consumed` against it shows records
//! consumed but not delivered.
//!
//! Metrics: `reconcile.consumed`, `reconcile.offset_gaps` (offsets skipped),
//! `reconcile.repeated_offsets`.

use std::collections::BTreeMap;

use crate::custom::{Counts, ObserverFactory, RecordObserver, RecordView};

/// The reconciliation observer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reconcile;

#[derive(Debug, Default)]
struct OnWorker {
    /// Highest offset seen per partition.
    last: BTreeMap<i32, i64>,
    consumed: i64,
    gaps: i64,
    repeats: i64,
}

impl RecordObserver for OnWorker {
    fn observe(&mut self, record: &RecordView<'_>) {
        let r = record.record();
        self.consumed += 1;
        match self.last.get(&r.partition).copied() {
            Some(last) if r.offset <= last => self.repeats += 1,
            Some(last) => {
                self.gaps += r.offset - last - 1;
                self.last.insert(r.partition, r.offset);
            }
            None => {
                self.last.insert(r.partition, r.offset);
            }
        }
    }

    fn flush(&mut self, counts: &mut Counts<'_>) {
        counts.add("consumed", std::mem::take(&mut self.consumed));
        counts.add("offset_gaps", std::mem::take(&mut self.gaps));
        counts.add("repeated_offsets", std::mem::take(&mut self.repeats));
    }
}

impl ObserverFactory for Reconcile {
    fn name(&self) -> &str {
        "reconcile"
    }

    fn metrics(&self) -> Vec<String> {
        vec!["consumed".to_owned(), "offset_gaps".to_owned(), "repeated_offsets".to_owned()]
    }

    fn create(&self, _worker: usize) -> Box<dyn RecordObserver> {
        Box::<OnWorker>::default()
    }

    /// Always exact: reconciliation counts every record.
    fn exact(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Reconcile;
    use crate::custom::run_observer;
    use tidewatch_engine::Record;

    fn at(partition: i32, offset: i64) -> Record {
        Record { partition, offset, timestamp: None, key: None, value: None, headers: vec![] }
    }

    #[test]
    fn gaps_and_repeats_are_found() {
        // Partition 0: 0 1 2 5 (2 skipped) then 4 again (a repeat); partition 1: 7 8 8.
        let records = vec![at(0, 0), at(0, 1), at(1, 7), at(0, 2), at(0, 5), at(1, 8), at(0, 4), at(1, 8)];
        let totals = run_observer(Reconcile, records);
        assert_eq!(totals["reconcile.consumed"], 8);
        assert_eq!(totals["reconcile.offset_gaps"], 2);
        assert_eq!(totals["reconcile.repeated_offsets"], 2);
    }

    #[test]
    fn a_clean_copy_has_no_gap_and_no_repeat() {
        let records: Vec<Record> = (0..100).map(|i| at(i % 3, i64::from(i / 3))).collect();
        let totals = run_observer(Reconcile, records);
        assert_eq!((totals["reconcile.consumed"], totals["reconcile.offset_gaps"], totals["reconcile.repeated_offsets"]), (100, 0, 0));
    }
}

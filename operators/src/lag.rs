//! Consumer lag: per partition, the high watermark minus the position the job has
//! consumed, in offsets and in seconds.
//!
//! Positions come from the sources (at each epoch close) and high watermarks from the
//! per-process watermark monitor (a side thread; no worker waits on it). Both are
//! differential collections keyed by partition, joined into [`LagRow`]s.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use tidewatch_engine::epoch::{epoch_of, now_ms};
use tidewatch_engine::kafka::SourceHandle;
use tidewatch_engine::JobControl;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::Scope;

/// How often the position and watermark operators look for news.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Positions keyed by partition: `(partition, (position, newest_ms))`.
pub type Positions<'scope> = VecCollection<'scope, u64, (i32, (i64, Option<i64>)), isize>;

/// Where one partition stands: joined position and high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LagRow {
    /// Input partition.
    pub partition: i32,
    /// Next offset the job reads.
    pub position: i64,
    /// Timestamp (ms) of the newest record consumed, if any.
    pub newest_ms: Option<i64>,
    /// High watermark (offset of the next record to be written).
    pub high: i64,
}

impl LagRow {
    /// Offsets not yet consumed: 0 when caught up, never negative.
    pub fn lag(&self) -> i64 {
        (self.high - self.position).max(0)
    }

    /// Age in seconds, at `now_ms`, of the newest record consumed while the offset lag is
    /// above 0; 0 when caught up. With records consumed but none newer than `now_ms`, 0.
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        match (self.lag(), self.newest_ms) {
            (0, _) => 0.0,
            (_, Some(newest)) => ((now_ms - newest).max(0)) as f64 / 1000.0,
            // Nothing consumed yet but records waiting: unknown age, reported as 0 with the offset lag alone.
            (_, None) => 0.0,
        }
    }
}

/// Positions of this worker's partitions as a collection `(partition, (position, newest_ms))`,
/// updated at each epoch close of its source.
pub fn positions<'scope>(scope: Scope<'scope, u64>, handle: Rc<SourceHandle>) -> Positions<'scope> {
    source::<_, CapacityContainerBuilder<Vec<((i32, (i64, Option<i64>)), u64, isize)>>, _, _>(scope, "SourcePositions", move |capability, info| {
        let activator = scope.activator_for(Rc::clone(&info.address));
        let mut capability = Some(capability);
        let mut current: BTreeMap<i32, (i64, Option<i64>)> = BTreeMap::new();
        move |output| {
            let Some(cap) = capability.as_mut() else { return };
            let (progress, finished) = handle.take_progress();
            for step in progress {
                if step.epoch < *cap.time() {
                    continue;
                }
                cap.downgrade(&step.epoch);
                let mut session = output.session(&*cap);
                for (partition, now) in step.partitions {
                    let before = current.insert(partition, now);
                    if before != Some(now) {
                        if let Some(old) = before {
                            session.give(((partition, old), step.epoch, -1));
                        }
                        session.give(((partition, now), step.epoch, 1));
                    }
                }
                drop(session);
                cap.downgrade(&(step.epoch + 1));
            }
            if finished {
                capability = None;
            } else {
                activator.activate_after(LOOK_EVERY);
            }
        }
    })
    .as_collection()
}

/// High watermarks as a collection `(partition, high)`, from the process's watermark
/// monitor, sampled once per epoch. Only worker 0 emits (every process's monitor sees
/// every partition); it stops when `stop` says so.
pub fn watermarks<'scope>(
    scope: Scope<'scope, u64>,
    control: Arc<JobControl>,
    epoch_ms: u64,
    stop: impl Fn() -> bool + 'static,
) -> VecCollection<'scope, u64, (i32, i64), isize> {
    let emits = scope.index() == 0;
    source::<_, CapacityContainerBuilder<Vec<((i32, i64), u64, isize)>>, _, _>(scope, "Watermarks", move |capability, info| {
        let activator = scope.activator_for(Rc::clone(&info.address));
        let mut capability = emits.then_some(capability);
        let mut current: BTreeMap<i32, i64> = BTreeMap::new();
        move |output| {
            let Some(cap) = capability.as_mut() else { return };
            let epoch = epoch_of(now_ms(), epoch_ms).max(*cap.time());
            cap.downgrade(&epoch);
            let mut session = output.session(&*cap);
            for (partition, (_low, high)) in control.metrics.watermarks() {
                let before = current.insert(partition, high);
                if before != Some(high) {
                    if let Some(old) = before {
                        session.give(((partition, old), epoch, -1));
                    }
                    session.give(((partition, high), epoch, 1));
                }
            }
            drop(session);
            if stop() {
                capability = None;
            } else {
                activator.activate_after(LOOK_EVERY);
            }
        }
    })
    .as_collection()
}

/// Joins positions and watermarks by partition into [`LagRow`]s.
pub fn lag_rows<'scope>(
    positions: Positions<'scope>,
    watermarks: VecCollection<'scope, u64, (i32, i64), isize>,
) -> VecCollection<'scope, u64, LagRow, isize> {
    positions
        .join(watermarks)
        .map(|(partition, ((position, newest_ms), high))| LagRow { partition, position, newest_ms, high })
}

#[cfg(test)]
mod tests {
    use super::LagRow;

    #[test]
    fn lag_is_never_negative_and_seconds_only_while_behind() {
        let row = LagRow { partition: 0, position: 10, newest_ms: Some(1_000), high: 8 };
        assert_eq!(row.lag(), 0);
        assert_eq!(row.lag_seconds(5_000), 0.0);
        let behind = LagRow { high: 25, ..row };
        assert_eq!(behind.lag(), 15);
        assert_eq!(behind.lag_seconds(5_000), 4.0);
    }
}

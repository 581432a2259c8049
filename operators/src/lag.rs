//! Consumer lag: per partition, the high watermark minus the position the job has
//! consumed, in offsets and in seconds.
//!
//! Both come through dataflow edges: the sources' progress output (position, newest
//! record timestamp and the high watermark librdkafka cached from the same fetch, at
//! each epoch close) and the watermark monitor's stream (its requests run on a side
//! thread). Both are differential collections keyed by partition, joined into
//! [`LagRow`]s; the newer of the two watermarks counts, so lag pairs a position with a
//! watermark of the same instant whenever a fetch response brought one.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidewatch_engine::kafka::PartitionProgress;

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
    /// above 0; 0 when caught up; unknown (`None`) while records wait but none was ever
    /// consumed — never 0 while the offset lag is above 0.
    pub fn lag_seconds(&self, now_ms: i64) -> Option<f64> {
        match (self.lag(), self.newest_ms) {
            (0, _) => Some(0.0),
            // At least a millisecond: the records waiting are not the newest consumed.
            (_, Some(newest)) => Some(((now_ms - newest).max(1)) as f64 / 1000.0),
            (_, None) => None,
        }
    }
}

/// Joins the sources' progress and the monitor's watermarks by partition into
/// [`LagRow`]s, with the newer of the watermark cached by the fetch and the monitor's.
pub fn lag_rows<'scope>(
    progress: VecCollection<'scope, u64, (i32, PartitionProgress), isize>,
    watermarks: VecCollection<'scope, u64, (i32, i64), isize>,
) -> VecCollection<'scope, u64, LagRow, isize> {
    progress.join(watermarks).map(|(partition, (p, monitor))| LagRow {
        partition,
        position: p.position,
        newest_ms: p.newest_ms,
        high: p.high.map_or(monitor, |cached| cached.max(monitor)),
    })
}

#[cfg(test)]
mod tests {
    use super::LagRow;

    #[test]
    fn lag_is_never_negative_and_seconds_only_while_behind() {
        let row = LagRow { partition: 0, position: 10, newest_ms: Some(1_000), high: 8 };
        assert_eq!(row.lag(), 0);
        assert_eq!(row.lag_seconds(5_000), Some(0.0));
        let behind = LagRow { high: 25, ..row };
        assert_eq!(behind.lag(), 15);
        assert_eq!(behind.lag_seconds(5_000), Some(4.0));
        // Behind with a record consumed just now: still above 0.
        assert!(behind.lag_seconds(1_000).is_some_and(|s| s > 0.0));
        // Behind and nothing ever consumed: unknown, never 0.
        let stalled = LagRow { newest_ms: None, ..behind };
        assert_eq!(stalled.lag_seconds(5_000), None);
    }
}

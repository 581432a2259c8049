//! Processing-time epochs: a record's timestamp is the start, in milliseconds since the
//! Unix epoch, of the interval in which its worker polled it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The epoch containing `at_ms`: `at_ms` rounded down to a multiple of `interval_ms`.
///
/// # Examples
/// ```
/// use tidewatch_engine::epoch::epoch_of;
/// assert_eq!(epoch_of(12_345, 1_000), 12_000);
/// assert_eq!(epoch_of(12_345, 1), 12_345);
/// ```
pub fn epoch_of(at_ms: u64, interval_ms: u64) -> u64 {
    let interval = interval_ms.max(1);
    at_ms - at_ms % interval
}

/// The epoch containing the current instant.
pub fn current_epoch(interval_ms: u64) -> u64 {
    epoch_of(now_ms(), interval_ms)
}

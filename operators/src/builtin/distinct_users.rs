//! Distinct users per window, written as a differential dataflow: each record's
//! `(window, user)` enters a collection and leaves it at the window's end, `distinct`
//! keeps one of each, and the collection's size is the gauge
//! `distinct_users.users` — exact, over every record of the window, on all workers.
//!
//! Setting: `distinct_users.field` (default `user_id`), a top-level string field.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::vec::Map;
use tidewatch_engine::counts::{CountKeys, MetricKey};
use tidewatch_engine::RecordStream;

use crate::protocol::{top_level_str, DataflowObserver, MetricKind, MetricSpec, ObserverContext};

/// The distinct-users observer.
#[derive(Debug, Clone, Copy, Default)]
pub struct DistinctUsers;

const NAME: &str = "distinct_users";

impl DataflowObserver for DistinctUsers {
    fn name(&self) -> &str {
        NAME
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::new("users", MetricKind::Gauge, &[], "Distinct values of the user field in the window")]
    }

    fn observe<'scope>(&self, records: RecordStream<'scope>, context: &ObserverContext) -> VecCollection<'scope, u64, MetricKey, isize> {
        let field = context.setting(NAME, "field", "user_id");
        let window_ms = context.window_ms;
        // Users per epoch (pre-aggregated per worker), placed in their epoch's window.
        let users = records
            .count_each("DistinctUsersSeen", move |record, tally| {
                if let Some(user) = record.value.as_deref().and_then(|v| top_level_str(v, &field)) {
                    tally.add(user.into_owned(), 1);
                }
            })
            .inner
            .map(move |(user, epoch, n)| ((epoch - epoch % window_ms, user), epoch, n))
            .as_collection();
        // Each (window, user) leaves the collection at its window's end.
        let windowed = users.clone().concat(users.delay(move |epoch| epoch - epoch % window_ms + window_ms).negate());
        windowed.distinct().map(|_| MetricKey::new(NAME, "users"))
    }
}

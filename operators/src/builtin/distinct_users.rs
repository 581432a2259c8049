//! Distinct users per window, written as a differential dataflow: each record's
//! `(window, user)` enters a collection and leaves it at the window's end, `distinct`
//! keeps one of each, and the collection's size is the gauge
//! `distinct_users.users` — exact, over every record of the window, on all workers.
//!
//! Setting: `distinct_users.field` (default `user_id`), a string field (a dotted path).

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::vec::Map;
use tidewatch_engine::counts::{CountKeys, MetricKey};

use crate::parse::ParsedRecords;
use crate::protocol::{DataflowObserver, MetricKind, MetricSpec, ObserverContext};

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

    fn observe<'scope>(&self, records: &ParsedRecords<'scope>, context: &ObserverContext) -> VecCollection<'scope, u64, MetricKey, isize> {
        let field = records.watch(&context.setting(NAME, "field", "user_id"));
        let window_ms = context.window_ms;
        // Users per epoch (pre-aggregated per worker), placed in their epoch's window.
        let users = records
            .stream()
            .count_each("DistinctUsersSeen", move |batch, tally| {
                let Ok(field) = field else { return };
                for user in batch.views().filter_map(|view| view.get(field).and_then(|v| v.as_str().map(str::to_owned))) {
                    tally.add(user, 1);
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

//! Freshness: per partition, how old the newest record is at each window's end — by its
//! `event_time` field (`freshness.event_time_age_seconds`) and by its Kafka timestamp
//! (`freshness.record_age_seconds`). A partition that stops receiving records ages as
//! windows pass. The newest `event_time` is read from the records the observation
//! budget lets it see (`observe.budget`); the newest Kafka timestamp from every record.
//!
//! Setting: `freshness.field` (default `event_time`), an RFC 3339 string field (a dotted path).

use std::collections::BTreeMap;

use differential_dataflow::VecCollection;
use std::rc::Rc;

use tidewatch_engine::counts::{CountKeys, MetricKey};

use crate::parse::{ParsedBatch, ParsedRecords};
use crate::protocol::{DataflowObserver, MetricKind, MetricSpec, ObserverContext};

/// The freshness observer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Freshness;

const NAME: &str = "freshness";

/// Newest times (ms) seen in one epoch, per partition: (Kafka timestamp, event time).
type Newest = BTreeMap<i32, (Option<i64>, Option<i64>)>;

impl DataflowObserver for Freshness {
    fn name(&self) -> &str {
        NAME
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("event_time_age_seconds", MetricKind::Age, &["partition"], "Window end minus the newest event time read, per partition"),
            MetricSpec::new("record_age_seconds", MetricKind::Age, &["partition"], "Window end minus the newest record timestamp, per partition"),
        ]
    }

    fn observe<'scope>(&self, records: &ParsedRecords<'scope>, context: &ObserverContext) -> VecCollection<'scope, u64, MetricKey, isize> {
        let field = records.watch(&context.setting(NAME, "field", "event_time")).ok();
        let mut sampler = context.sampler();
        // The levels reported so far, per partition (each partition is read by one worker).
        let mut reported: BTreeMap<(i32, bool), i64> = BTreeMap::new();
        let mut last_epoch = None;
        records.stream().count_core(
            "Freshness",
            Newest::new,
            move |newest, epoch, batches: &mut Vec<Rc<ParsedBatch>>| {
                if last_epoch.replace(epoch).is_some_and(|e| e != epoch) {
                    sampler.next_epoch();
                }
                for record in batches.iter().flat_map(|batch| batch.records()) {
                    let slot = newest.entry(record.partition).or_default();
                    slot.0 = slot.0.max(record.timestamp);
                }
                let Some(field) = field else { return };
                sampler.timed(|sampler| {
                    for view in batches.iter().flat_map(|batch| batch.views()) {
                        if !sampler.take() {
                            continue;
                        }
                        let event = view.get(field).and_then(|v| v.as_str()).and_then(parse_ms);
                        if let (Some(event), Some(slot)) = (event, newest.get_mut(&view.record().partition)) {
                            slot.1 = slot.1.max(Some(event));
                        }
                    }
                });
            },
            move |newest, tally| {
                for (partition, (record_ms, event_ms)) in newest {
                    for (is_event, at) in [(false, record_ms), (true, event_ms)] {
                        let Some(at) = at else { continue };
                        let level = reported.entry((partition, is_event)).or_insert(0);
                        if at > *level {
                            // An Age level moves by its change: the newest time seen so far.
                            let metric = if is_event { "event_time_age_seconds" } else { "record_age_seconds" };
                            tally.add(MetricKey::new(NAME, metric).label("partition", partition), isize::try_from(at - *level).unwrap_or(0));
                            *level = at;
                        }
                    }
                }
            },
        )
    }
}

/// An RFC 3339 time in ms since the Unix epoch.
fn parse_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

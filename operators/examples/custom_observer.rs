//! A custom observer from start to finish: count visits whose `keep_private` flag is set,
//! per window, with no change to the engine. Run it with
//! `cargo run -p tidewatch-operators --example custom_observer`.
//!
//! It runs the observer over a few hand-made records with the test helper
//! [`run_observer`] (no Kafka needed) and prints the totals. To use it in a job, add it to
//! the observer plan: `ObserverPlan::new(&config, epoch)?.with_observer(Arc::new(PrivateVisits))`;
//! its metric `private.visits` then appears in every stats document (under `observers`),
//! on `/metrics` (`tidewatch_observer_window{metric="private.visits"}`), in OpenSearch, and
//! can drive an alert rule (`metric = "private.visits"`).

#![allow(clippy::print_stdout)] // an example prints its result

use tidewatch_engine::Record;
use tidewatch_operators::custom::{run_observer, Counts, FieldValue, ObserverFactory, RecordObserver, RecordView};

/// The observer: a name, the metrics it reports, and one instance per worker.
#[derive(Debug)]
struct PrivateVisits;

/// One worker's state: counts since the last flush.
#[derive(Debug, Default)]
struct PrivateVisitsOnWorker {
    private: i64,
    public: i64,
}

impl RecordObserver for PrivateVisitsOnWorker {
    fn observe(&mut self, record: &RecordView<'_>) {
        // `field` reads the parse every observer shares (the field is listed in `fields`).
        match record.field("keep_private") {
            Some(FieldValue::Bool(true)) => self.private += 1,
            Some(FieldValue::Bool(false)) => self.public += 1,
            _ => {}
        }
    }

    fn flush(&mut self, counts: &mut Counts<'_>) {
        counts.add("visits", std::mem::take(&mut self.private));
        counts.add("public_visits", std::mem::take(&mut self.public));
    }
}

impl ObserverFactory for PrivateVisits {
    fn name(&self) -> &str {
        "private"
    }
    fn metrics(&self) -> Vec<String> {
        vec!["visits".to_owned(), "public_visits".to_owned()]
    }
    fn create(&self, _worker: usize) -> Box<dyn RecordObserver> {
        Box::<PrivateVisitsOnWorker>::default()
    }
    fn fields(&self) -> Vec<String> {
        vec!["keep_private".to_owned()]
    }
}

fn main() {
    let visit = |offset: i64, value: &str| Record {
        partition: 0,
        offset,
        timestamp: None,
        key: None,
        value: Some(value.as_bytes().into()),
        headers: Vec::new(),
    };
    let records = vec![
        visit(0, r#"{"visit_id":"1","keep_private":true,"page":"home"}"#),
        visit(1, r#"{"visit_id":"2","keep_private":false,"page":"index"}"#),
        visit(2, r#"{"visit_id":"3","keep_private":true,"page":"about"}"#),
        visit(3, r#"{"visit_id":"4","keep_private":null}"#),
        visit(4, "not json"),
    ];
    let totals = run_observer(PrivateVisits, records);
    for (metric, total) in &totals {
        println!("{metric} = {total}");
    }
    assert_eq!(totals["private.visits"], 2);
    assert_eq!(totals["private.public_visits"], 1);
}

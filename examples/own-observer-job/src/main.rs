//! A job of your own: `tidewatch`'s whole command line (`run` with its config file, `-X`,
//! `-w -n -p -h`, every output; `demo`; `generate`) with one more observer, written on the
//! observation protocol. Run it as you run `tidewatch`:
//!
//! ```text
//! cargo run -p own-observer-job -- run --brokers 127.0.0.1:9092 --input visits --output copy
//! ```
//!
//! Its figures, `key_sizes.null_keys{partition}` and `key_sizes.key_bytes{partition}`,
//! appear in the stats documents, `/metrics`, OpenSearch and the alert rules by
//! themselves.

use std::process::ExitCode;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use tidewatch_engine::counts::{CountKeys, MetricKey};
use tidewatch_operators::parse::ParsedRecords;
use tidewatch_jobs::cli::Tidewatch;
use tidewatch_operators::protocol::{DataflowObserver, MetricKind, MetricSpec, ObserverContext};

/// Per partition and window: records without a key, and bytes of the keys there are.
#[derive(Debug)]
struct KeySizes;

impl DataflowObserver for KeySizes {
    fn name(&self) -> &str {
        "key_sizes"
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("null_keys", MetricKind::Count, &["partition"], "Records without a key"),
            MetricSpec::new("key_bytes", MetricKind::Count, &["partition"], "Bytes of the records' keys"),
        ]
    }

    fn observe<'scope>(&self, records: &ParsedRecords<'scope>, _context: &ObserverContext) -> VecCollection<'scope, u64, MetricKey, isize> {
        records.stream().count_each("KeySizes", |batch, tally| {
            for record in batch.records() {
                match &record.key {
                    None => tally.add(MetricKey::new("key_sizes", "null_keys").label("partition", record.partition), 1),
                    Some(key) => tally.add(MetricKey::new("key_sizes", "key_bytes").label("partition", record.partition), key.len() as isize),
                }
            }
        })
    }
}

fn main() -> ExitCode {
    Tidewatch::new().observer(Arc::new(KeySizes)).main()
}

//! `KafkaCommit`: commits a worker's source offsets once its epochs are durable everywhere.
//!
//! It watches the frontier of the sinks' acknowledgement stream. That frontier is
//! global: it passes epoch `t` only when the sink of *every* worker has every record of
//! `t` acknowledged. The worker then commits the positions its source logged at the close
//! of the latest such epoch (asynchronously), and, when the frontier is empty at the end
//! of the job, its final positions (synchronously). At-least-once: an offset is never
//! committed before its record is in the output topic.
//!
//! Attached in at-least-once mode only: in exactly-once mode the sink sends the offsets
//! within each epoch's transaction ([`crate::kafka::sink::KafkaSink::build_exactly_once`])
//! and nothing else commits.

use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::control::JobControl;
use crate::kafka::sink::Delivered;
use crate::kafka::source::SourceHandle;

/// Attaches `KafkaCommit(<topic>)` to the acknowledgement stream of the sinks.
pub fn commit_offsets(delivered: Stream<'_, u64, Vec<Delivered>>, source: Rc<SourceHandle>, control: Arc<JobControl>) {
    let name = format!("KafkaCommit({})", source.topic());
    let mut finished = false;
    delivered.sink(Pipeline, &name, move |(input, frontier)| {
        input.for_each(|_, data| data.clear());
        if finished {
            return;
        }
        let bound = frontier.frontier().first().copied();
        if bound.is_none() {
            finished = true;
        }
        if let Err(error) = source.commit_before(bound, &control.metrics) {
            if finished {
                control.fail(error);
            } else {
                tracing::warn!(%error, "offset commit failed; the next epoch's commit covers it");
            }
        }
    });
}

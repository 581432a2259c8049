//! Kafka connectors: the partition plan, the source, the sink, the offset commit, the
//! watermark monitor and partition discovery. The only module of tidewatch that holds rdkafka handles.

pub mod commit;
pub mod context;
pub mod discovery;
pub mod flow;
pub(crate) mod native;
pub mod plan;
pub mod sink;
pub mod source;
pub mod stats;
pub mod watermarks;

pub use flow::FlowGate;
pub use plan::TopicPlan;
pub use sink::{Delivered, KafkaSink};
pub use context::QuietEofContext;
pub use source::{KafkaSource, PartitionProgress, ProgressStream, SourceHandle};

/// A callback for librdkafka's "queue turned non-empty" hooks that schedules the operator
/// of `activator` (called from a librdkafka thread).
pub(crate) fn waker(activator: timely::scheduling::SyncActivator) -> impl Fn() + Send + Sync + 'static {
    move || {
        let _ = activator.activate();
    }
}

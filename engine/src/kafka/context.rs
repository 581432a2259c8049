//! The client context of the engine's consumers.

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use crate::kafka::stats::StatsReporter;

/// Context of the engine's consumers: end-of-partition events are expected (the
/// source asks for them), every other client-level error is logged with its reason.
/// A source's consumer also hands its librdkafka statistics to the process's board.
#[derive(Debug, Default, Clone)]
pub struct QuietEofContext {
    stats: Option<StatsReporter>,
}

impl QuietEofContext {
    /// A context whose statistics go to `reporter`.
    pub fn with_stats(reporter: StatsReporter) -> QuietEofContext {
        QuietEofContext { stats: Some(reporter) }
    }
}

impl ClientContext for QuietEofContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(reporter) = &self.stats {
            reporter.report_json(statistics);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match &error {
            KafkaError::PartitionEOF(_) => tracing::trace!(%reason, "end of partition"),
            KafkaError::Global(code) if *code == rdkafka::types::RDKafkaErrorCode::PartitionEOF => {
                tracing::trace!(%reason, "end of partition")
            }
            _ => tracing::warn!(%error, %reason, "Kafka client error"),
        }
    }
}

impl ConsumerContext for QuietEofContext {}

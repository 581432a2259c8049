//! Reading what reconciliation compares: the group's committed offsets, watermarks,
//! offsets by time, and one partition of a topic from an offset up to a snapshot end.
//! The reader never joins or commits for any group.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tidewatch_engine::kafka::plan::{retry_transient, topic_partitions, REQUEST_TIMEOUT};
use tidewatch_engine::kafka::QuietEofContext;
use tidewatch_engine::{EngineError, KafkaConfig};

use super::ReconcileError;

/// How long a partition may give nothing (no record, no end of partition) before the read fails.
const STALL: Duration = Duration::from_secs(30);

/// Group id of the reading consumer: partitions are assigned, so it never joins a group
/// and never commits.
const READER_GROUP: &str = "tidewatch-reconcile";

/// One consumer for metadata and reads, plus the brokers for error messages.
pub struct Reader {
    consumer: BaseConsumer<QuietEofContext>,
    kafka: KafkaConfig,
    brokers: String,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("brokers", &self.brokers).finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader with the `[kafka]` table's consumer keys (`isolation.level` among them).
    pub fn new(kafka: &KafkaConfig) -> Result<Reader, ReconcileError> {
        let brokers = kafka.brokers().to_owned();
        let mut config = kafka.metadata_config()?;
        // A fetch the broker holds open at a partition's end (librdkafka's 500 ms by
        // default) would delay the next partition's first fetch by as much; the user's value wins.
        if !kafka.common.contains_key("fetch.wait.max.ms") && !kafka.consumer.contains_key("fetch.wait.max.ms") {
            config.set("fetch.wait.max.ms", "10");
        }
        config
            .set("group.id", READER_GROUP)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // A start offset deleted meanwhile must fail the read, not skip records.
            .set("auto.offset.reset", "error");
        let consumer = config.create_with_context(QuietEofContext::default()).map_err(|e| EngineError::kafka(&brokers, "creating the reconcile consumer", e))?;
        Ok(Reader { consumer, kafka: kafka.clone(), brokers })
    }

    /// The partition ids of `topic`, sorted.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, ReconcileError> {
        Ok(topic_partitions(&self.consumer, topic, &self.brokers)?)
    }

    /// The committed offsets of `group` on `partitions` of `topic` (`None`: none).
    pub fn committed(&self, group: &str, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, ReconcileError> {
        let mut config = self.kafka.metadata_config()?;
        config.set("group.id", group).set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config.create().map_err(|e| EngineError::kafka(&self.brokers, "creating the committed-offsets consumer", e))?;
        let mut request = TopicPartitionList::new();
        for p in partitions {
            request.add_partition(topic, *p);
        }
        let got = retry_transient(|| consumer.committed_offsets(request.clone(), REQUEST_TIMEOUT))
            .map_err(|e| EngineError::kafka(&self.brokers, format!("fetching committed offsets of group `{group}`"), e))?;
        let offset = |p: i32| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        };
        Ok(partitions.iter().map(|p| (*p, offset(*p))).collect())
    }

    /// The low and high watermarks of `topic[partition]`.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), ReconcileError> {
        retry_transient(|| self.consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT))
            .map_err(|e| EngineError::kafka(&self.brokers, format!("fetching watermarks of {topic}[{partition}]"), e).into())
    }

    /// The first offset of `topic[partition]` whose timestamp is at or after `ms`
    /// (every earlier record is older); `None` when no record is that recent.
    pub fn offset_for_time(&self, topic: &str, partition: i32, ms: i64) -> Result<Option<i64>, ReconcileError> {
        let mut request = TopicPartitionList::new();
        request
            .add_partition_offset(topic, partition, Offset::Offset(ms))
            .map_err(|e| EngineError::kafka(&self.brokers, "building an offsets-for-times request", e))?;
        let got = retry_transient(|| self.consumer.offsets_for_times(request.clone(), REQUEST_TIMEOUT))
            .map_err(|e| EngineError::kafka(&self.brokers, format!("looking up {topic}[{partition}] by time"), e))?;
        Ok(match got.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        })
    }

    /// Reads `topic[partition]` from offset `from` up to (not including) `to`, or to its
    /// end if that comes first (a `read_committed` reader stops at the last stable
    /// offset), handing each record to `each`; returns how many it read.
    pub fn read(&self, topic: &str, partition: i32, [from, to]: [i64; 2], mut each: impl FnMut(&BorrowedMessage<'_>)) -> Result<u64, ReconcileError> {
        if from >= to {
            return Ok(0);
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(from))
            .and_then(|()| self.consumer.assign(&assignment))
            .map_err(|e| EngineError::kafka(&self.brokers, format!("assigning {topic}[{partition}]"), e))?;
        let mut read = 0;
        let mut last_progress = Instant::now();
        let mut position = from;
        let stalled = |position: i64| ReconcileError::Stalled { topic: topic.to_owned(), partition, position, end: to, waited: STALL };
        loop {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) if message.topic() == topic && message.partition() == partition => {
                    last_progress = Instant::now();
                    if message.offset() >= to {
                        break;
                    }
                    position = message.offset() + 1;
                    each(&message);
                    read += 1;
                    if position >= to {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => return Err(EngineError::kafka(&self.brokers, format!("reading {topic}[{partition}] at offset {position}"), error).into()),
                None if last_progress.elapsed() > STALL => return Err(stalled(position)),
                None => {}
            }
        }
        self.consumer.unassign().map_err(|e| EngineError::kafka(&self.brokers, format!("unassigning {topic}[{partition}]"), e))?;
        Ok(read)
    }
}

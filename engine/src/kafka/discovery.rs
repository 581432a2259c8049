//! Partition discovery: partitions added to the input topic while the job runs are found
//! by the watermark monitor's thread (never a worker), every
//! `job.partition_discovery_interval`, and handed to the sources, which take the ones the
//! assignment function ([`crate::assign::partitions_for_worker`]) gives them. A new
//! partition is read from its committed offset, else from its earliest: records written
//! before it was found are not skipped.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use rdkafka::consumer::BaseConsumer;

use crate::config::{JobConfig, KafkaConfig, StartFrom};
use crate::error::{EngineError, Result};
use crate::kafka::context::QuietEofContext;
use crate::kafka::plan::{start_offsets, topic_partitions};

/// Every partition found since the start, with the offset it is read from, in the order
/// found (each message holds them all, so a source that subscribes late misses none).
pub type Found = Vec<(i32, i64)>;

/// Hands the partitions found to the sources.
#[derive(Debug, Default)]
pub struct PartitionFeed {
    subscribers: Mutex<Vec<Sender<Found>>>,
    found: Mutex<Found>,
}

impl PartitionFeed {
    /// A channel of what is found from now on, what was found before first.
    pub fn subscribe(&self) -> Receiver<Found> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let found = self.found.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if !found.is_empty() {
            let _ = sender.send(found);
        }
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).push(sender);
        receiver
    }

    fn publish(&self, new: &[(i32, i64)]) {
        let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        found.extend_from_slice(new);
        let all = found.clone();
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).retain(|s| s.send(all.clone()).is_ok());
    }
}

/// What the monitor's thread needs to find new partitions.
pub struct Discovery {
    consumer: BaseConsumer<QuietEofContext>,
    input: String,
    output: String,
    group: String,
    brokers: String,
    /// How often to look (never `ZERO`: discovery is then not made).
    pub interval: Duration,
    feed: std::sync::Arc<PartitionFeed>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").field("input", &self.input).field("interval", &self.interval).finish_non_exhaustive()
    }
}

impl Discovery {
    /// Discovery for `job` (`None` when `job.partition_discovery_interval` is 0), handing
    /// what it finds to `feed`.
    pub fn new(job: &JobConfig, kafka: &KafkaConfig, feed: std::sync::Arc<PartitionFeed>) -> Result<Option<Discovery>> {
        if job.partition_discovery_interval.is_zero() {
            return Ok(None);
        }
        let brokers = kafka.brokers().to_owned();
        let consumer = kafka
            .consumer_config(&job.group_id)?
            .create_with_context(QuietEofContext::default().securing(kafka))
            .map_err(|e| EngineError::kafka(&brokers, "creating the partition discovery consumer", e))?;
        Ok(Some(Discovery {
            consumer,
            input: job.input_topic.clone(),
            output: job.output_topic.clone(),
            group: job.group_id.clone(),
            brokers,
            interval: job.partition_discovery_interval,
            feed,
        }))
    }

    /// Looks for partitions of the input beyond `known`; adds those found to `known` and
    /// hands them to the sources. An output topic without the new partition is an error
    /// that stops the job (nothing of that partition was read or committed).
    pub fn look(&self, known: &mut Vec<i32>) -> Result<()> {
        let partitions = topic_partitions(&self.consumer, &self.input, &self.brokers)?;
        let new: Vec<i32> = partitions.into_iter().filter(|p| !known.contains(p)).collect();
        if new.is_empty() {
            return Ok(());
        }
        let output = topic_partitions(&self.consumer, &self.output, &self.brokers)?;
        if let Some(missing) = new.iter().find(|p| !output.contains(p)) {
            return Err(EngineError::Config {
                key: "job.output_topic".to_owned(),
                message: format!(
                    "partition {missing} was added to the input `{}`, but the output `{}` has partitions {output:?}: add partitions to `{}` \
                     (kafka-topics.sh --alter --topic {} --partitions {}) and restart the job; nothing of partition {missing} was committed, \
                     so the restart copies it from its start",
                    self.input,
                    self.output,
                    self.output,
                    self.output,
                    new.iter().max().map_or(0, |m| m + 1)
                ),
            });
        }
        let found = self.starts(&new)?;
        tracing::warn!(topic = %self.input, partitions = ?new, "partitions were added to the input topic while the job runs: reading them from their start");
        known.extend(&new);
        self.feed.publish(&found);
        Ok(())
    }

    /// Where each new partition is read from: the group's committed offset, else the
    /// earliest offset kept (never the latest: records written before it was found count).
    fn starts(&self, new: &[i32]) -> Result<Found> {
        let (start, _) = start_offsets(&self.consumer, &self.input, new, &self.group, StartFrom::Earliest, &self.brokers)?;
        Ok(new.iter().filter_map(|p| start.get(p).map(|o| (*p, *o))).collect())
    }
}

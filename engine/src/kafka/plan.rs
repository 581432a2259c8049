//! The partition plan of a job, resolved once per process on its main thread before
//! any worker starts: which partitions exist, where each starts, where `--until-end` stops.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{JobConfig, KafkaConfig, StartFrom};
use crate::error::{EngineError, Result};
use crate::kafka::context::QuietEofContext;

/// How long a metadata, committed-offset or watermark request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions of the input topic and where the job reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    /// Input topic.
    pub topic: String,
    /// Partition ids, sorted.
    pub partitions: Vec<i32>,
    /// First offset to read per partition (the group's committed offset, else per `start_from`).
    pub start: BTreeMap<i32, i64>,
    /// High watermark per partition when the plan was made (the stop line of `--until-end`).
    pub end: BTreeMap<i32, i64>,
}

impl TopicPlan {
    /// Asks the brokers for the input topic's partitions, the group's committed offsets
    /// and the watermarks; checks that the output topic exists too.
    pub fn resolve(job: &JobConfig, kafka: &KafkaConfig) -> Result<TopicPlan> {
        let brokers = kafka.brokers().to_owned();
        let consumer: BaseConsumer<QuietEofContext> = kafka
            .consumer_config(&job.group_id)?
            .create_with_context(QuietEofContext::default().securing(kafka))
            .map_err(|e| EngineError::kafka(&brokers, "creating the planning consumer", e))?;
        let partitions = topic_partitions(&consumer, &job.input_topic, &brokers)?;
        let output_partitions = topic_partitions(&consumer, &job.output_topic, &brokers)?;
        if let Some(missing) = partitions.iter().find(|p| !output_partitions.contains(p)) {
            return Err(EngineError::Config {
                key: "job.output_topic".to_owned(),
                message: format!(
                    "`{}` has partitions {:?} but the input `{}` has partition {missing}: the output needs at least as many partitions",
                    job.output_topic, output_partitions, job.input_topic
                ),
            });
        }

        let (start, end) = start_offsets(&consumer, &job.input_topic, &partitions, &job.group_id, job.start_from, &brokers)?;
        tracing::info!(topic = %job.input_topic, ?start, ?end, group = %job.group_id, "partition plan");
        Ok(TopicPlan { topic: job.input_topic.clone(), partitions, start, end })
    }
}

/// Where each of `partitions` of `topic` is read from — the group's committed offset
/// (clamped to what the broker keeps), else per `start_from` — and its high watermark.
pub(crate) fn start_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    group: &str,
    start_from: StartFrom,
    brokers: &str,
) -> Result<(BTreeMap<i32, i64>, BTreeMap<i32, i64>)> {
    let mut request = TopicPartitionList::new();
    for p in partitions {
        request.add_partition(topic, *p);
    }
    // A broker that just started answers "not coordinator" or "loading" for a while: retry those.
    let committed = retry_transient(|| consumer.committed_offsets(request.clone(), REQUEST_TIMEOUT))
        .map_err(|e| EngineError::kafka(brokers, format!("fetching committed offsets of group `{group}`"), e))?;
    let mut start = BTreeMap::new();
    let mut end = BTreeMap::new();
    for p in partitions {
        // A topic created a moment ago may not have its leader yet (NotLeaderForPartition).
        let (low, high) = retry_transient(|| consumer.fetch_watermarks(topic, *p, REQUEST_TIMEOUT))
            .map_err(|e| EngineError::kafka(brokers, format!("fetching watermarks of {topic}[{p}]"), e))?;
        let committed = committed.find_partition(topic, *p).and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        });
        let first = match (committed, start_from) {
            // A committed offset below the low watermark was deleted by retention: start at the oldest kept.
            (Some(o), _) => o.clamp(low, high),
            (None, StartFrom::Earliest) => low,
            (None, StartFrom::Latest) => high,
        };
        start.insert(*p, first);
        end.insert(*p, high);
    }
    Ok((start, end))
}

/// The partition ids of a topic, sorted; a clear error when the topic does not exist,
/// and at once when the client's login or TLS handshake failed.
pub fn topic_partitions(consumer: &BaseConsumer<QuietEofContext>, topic: &str, brokers: &str) -> Result<Vec<i32>> {
    let metadata = fetch_metadata(consumer, topic, brokers)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            Ok(ids)
        }
        _ => Err(EngineError::MissingTopic { topic: topic.to_owned(), brokers: brokers.to_owned() }),
    }
}

/// How long the first metadata attempt of [`fetch_metadata`] waits (each next one twice
/// as long, up to [`LONGEST_SHORT_ATTEMPT`]).
const FIRST_METADATA_ATTEMPT: Duration = Duration::from_millis(250);
/// The longest of the short attempts.
const LONGEST_SHORT_ATTEMPT: Duration = Duration::from_secs(1);
/// How long [`fetch_metadata`] makes short attempts before one for the rest of
/// [`REQUEST_TIMEOUT`] (so a slow broker still gets a long one).
const SHORT_ATTEMPTS_FOR: Duration = Duration::from_secs(5);

/// The metadata of `topic`, asked for up to [`REQUEST_TIMEOUT`]: for the first seconds in
/// short attempts, then in one for the rest. librdkafka retries a refused login or a
/// failed TLS handshake on its own, so a request would only time out: between attempts
/// the client's error events are served, and a failure its context recorded ends the
/// wait at once with that failure (within a second of the report).
fn fetch_metadata(consumer: &BaseConsumer<QuietEofContext>, topic: &str, brokers: &str) -> Result<Metadata> {
    let started = Instant::now();
    let mut attempt = FIRST_METADATA_ATTEMPT;
    loop {
        let left = REQUEST_TIMEOUT.saturating_sub(started.elapsed());
        let wait = if started.elapsed() < SHORT_ATTEMPTS_FOR { attempt.min(left) } else { left }.max(Duration::from_millis(1));
        attempt = (attempt * 2).min(LONGEST_SHORT_ATTEMPT);
        let error = match consumer.fetch_metadata(Some(topic), wait) {
            Ok(metadata) => return Ok(metadata),
            Err(error) => error,
        };
        // The error events wait in the consumer's queue until it is polled (behind
        // statistics events, for which poll also answers `None`); the planning and
        // discovery consumers are assigned nothing, so polling reads no record.
        for _ in 0..64 {
            let _ = consumer.poll(Duration::ZERO);
        }
        if let Some(failure) = consumer.context().security_failure(brokers) {
            return Err(failure);
        }
        if started.elapsed() >= REQUEST_TIMEOUT {
            return Err(EngineError::kafka(brokers, format!("fetching metadata of topic `{topic}`"), error));
        }
    }
}

/// How long [`retry_transient`] keeps trying.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Calls `request` until it succeeds, fails with an error that retrying cannot fix, or
/// [`RETRY_FOR`] has passed; backs off from 100 ms to 1 s between attempts.
pub fn retry_transient<T>(mut request: impl FnMut() -> KafkaResult<T>) -> KafkaResult<T> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match request() {
            Ok(value) => return Ok(value),
            Err(error) if is_transient(&error) && started.elapsed() < RETRY_FOR => {
                tracing::warn!(%error, retry_in = ?backoff, "transient Kafka error; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Errors a broker gives while it (or its group coordinator) is starting or moving.
fn is_transient(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::RequestTimedOut
        )
    )
}

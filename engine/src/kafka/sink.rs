//! `KafkaSink`: writes each record to the same partition of the output topic, byte-exact,
//! and reports per epoch how many records the output broker acknowledged.
//!
//! Delivery semantics: the sink holds a capability for an epoch until every record of
//! that epoch it sent is acknowledged; its output frontier therefore passes an epoch only
//! once the epoch is durable in the output topic, which is what the offset commit waits
//! for. A delivery that fails after librdkafka's own retries stops the job: no record is
//! skipped silently. The producer is idempotent by default, so retries keep the order
//! within each partition.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::config::KafkaConfig;
use crate::control::{JobControl, JobMetrics};
use crate::epoch::now_ms;
use crate::error::{EngineError, Result};
use crate::record::Record;

/// How long the sink waits on a full producer queue before looking again.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(1);
/// How often a sink adds its latencies to the process's histogram.
const LATENCY_MERGE: Duration = Duration::from_millis(200);
/// How soon a sink with unacknowledged epochs looks for acknowledgements again.
const ACK_POLL: Duration = Duration::from_millis(1);

/// What a worker's sink reports when an epoch is fully acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The epoch.
    pub epoch: u64,
    /// Records of the epoch this worker delivered.
    pub records: u64,
}

/// How many epochs a sink can have awaiting acknowledgement at once; beyond that it
/// waits for the oldest (the output broker is far behind, and waiting is the backpressure).
const SLOTS: usize = 1024;

/// Counts acknowledgements per epoch slot; librdkafka calls it from `poll` on the worker's
/// thread. Each pending epoch owns one slot, so counting is one relaxed atomic add.
#[derive(Debug)]
struct SinkContext {
    acked: [AtomicU64; SLOTS],
    failure: Mutex<Option<EngineError>>,
    topic: String,
    /// The time (ms) at the sink's last activation: a coarse clock for latencies.
    now_ms: AtomicU64,
    /// Record timestamp → acknowledged, in ms, of this worker's deliveries since the last drain.
    latency: Mutex<hdrhistogram::Histogram<u64>>,
    control: Arc<JobControl>,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        match result {
            Ok(message) => {
                if let Some(counter) = self.acked.get(slot) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(ts) = message.timestamp().to_millis() {
                    let now = self.now_ms.load(Ordering::Relaxed);
                    let age = now.saturating_sub(u64::try_from(ts).unwrap_or(u64::MAX));
                    let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
                    latency.saturating_record(age);
                }
            }
            Err((error, message)) => {
                let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
                if failure.is_none() {
                    *failure = Some(EngineError::Delivery {
                        topic: self.topic.clone(),
                        partition: message.partition(),
                        reason: error.to_string(),
                    });
                }
            }
        }
    }
}

/// An epoch this worker has sent records of and not yet seen fully acknowledged.
#[derive(Debug)]
struct Pending {
    capability: Capability<u64>,
    slot: usize,
    sent: u64,
}

/// Builds the Kafka sink of one worker.
#[derive(Debug)]
pub struct KafkaSink;

impl KafkaSink {
    /// Attaches `KafkaSink(<topic>)` to `records` (no exchange: the worker that read a
    /// record writes it). Returns the stream of per-epoch acknowledgements, whose
    /// frontier is the durable frontier of the output.
    pub fn build<'scope>(
        records: Stream<'scope, u64, Vec<Record>>,
        topic: &str,
        kafka: &KafkaConfig,
        control: Arc<JobControl>,
    ) -> Result<Stream<'scope, u64, Vec<Delivered>>> {
        let brokers = kafka.brokers().to_owned();
        let context = SinkContext {
            acked: std::array::from_fn(|_| AtomicU64::new(0)),
            failure: Mutex::default(),
            topic: topic.to_owned(),
            now_ms: AtomicU64::new(now_ms()),
            latency: Mutex::new(crate::control::latency_histogram()),
            control: Arc::clone(&control),
        };
        let producer: BaseProducer<SinkContext> = kafka
            .producer_config()?
            .create_with_context(context)
            .map_err(|e| EngineError::kafka(&brokers, "creating the sink producer", e))?;
        let producer = Rc::new(producer);
        let topic = topic.to_owned();
        let scope = records.scope();
        let name = format!("KafkaSink({topic})");

        let stream = records.unary_frontier::<timely::container::CapacityContainerBuilder<Vec<Delivered>>, _, _, _>(
            Pipeline,
            &name,
            move |_capability, info| {
                let activator = scope.activator_for(Rc::clone(&info.address));
                let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
                let mut free_slots: Vec<usize> = (0..SLOTS).rev().collect();
                let mut failed = false;
                let mut last_merge = std::time::Instant::now();
                move |(input, frontier), output| {
                    let port = output.output_index();
                    producer.context().now_ms.store(now_ms(), Ordering::Relaxed);
                    input.for_each(|capability, data| {
                        if failed {
                            data.clear();
                            return;
                        }
                        let Some(&epoch) = capability.least() else {
                            control.fail(EngineError::Runtime(format!("{} received records without a timestamp", "KafkaSink")));
                            failed = true;
                            return;
                        };
                        if !pending.contains_key(&epoch) {
                            let slot = loop {
                                if let Some(slot) = free_slots.pop() {
                                    break Some(slot);
                                }
                                // Every slot awaits acknowledgements: wait for closed epochs to be acknowledged.
                                let closed = pending.keys().any(|e| !frontier.less_equal(e));
                                if !closed {
                                    break None;
                                }
                                producer.poll(QUEUE_FULL_BACKOFF);
                                release(&producer, &mut pending, &mut free_slots, frontier.frontier(), &control, |capability, delivered| {
                                    output.session(capability).give(delivered);
                                });
                            };
                            let Some(slot) = slot else {
                                control.fail(EngineError::Runtime(format!("KafkaSink({topic}) has {SLOTS} epochs in flight, none closed")));
                                failed = true;
                                data.clear();
                                return;
                            };
                            producer.context().acked[slot].store(0, Ordering::Relaxed);
                            pending.insert(epoch, Pending { capability: capability.delayed(&epoch, port), slot, sent: 0 });
                        }
                        let Some(entry) = pending.get_mut(&epoch) else { return };
                        let mut sent = 0u64;
                        for record in data.drain(..) {
                            match send(&producer, &topic, &record, entry.slot) {
                                Ok(()) => sent += 1,
                                Err(error) => {
                                    control.fail(error);
                                    failed = true;
                                    break;
                                }
                            }
                        }
                        entry.sent += sent;
                        JobMetrics::add(&control.metrics.records_out, sent);
                    });
                    producer.poll(Duration::ZERO);
                    if last_merge.elapsed() >= LATENCY_MERGE {
                        last_merge = std::time::Instant::now();
                        let context = producer.context();
                        let mut mine = context.latency.lock().unwrap_or_else(PoisonError::into_inner);
                        context.control.metrics.merge_latency(&mine);
                        mine.reset();
                    }
                    if let Some(error) = producer.context().failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
                        control.fail(error);
                        failed = true;
                    }
                    if failed {
                        // Keep the capabilities: the failed epochs must never look delivered.
                        return;
                    }

                    release(&producer, &mut pending, &mut free_slots, frontier.frontier(), &control, |capability, delivered| {
                        output.session(capability).give(delivered);
                    });
                    if !pending.is_empty() {
                        activator.activate_after(ACK_POLL);
                    }
                }
            },
        );
        Ok(stream)
    }
}

/// Releases every pending epoch that is complete: no more input can arrive for it
/// (`frontier` has passed it) and every record sent for it is acknowledged. Reports each
/// released epoch through `emit`.
fn release(
    producer: &BaseProducer<SinkContext>,
    pending: &mut BTreeMap<u64, Pending>,
    free_slots: &mut Vec<usize>,
    frontier: timely::progress::frontier::AntichainRef<'_, u64>,
    control: &JobControl,
    mut emit: impl FnMut(&Capability<u64>, Delivered),
) {
    let done: Vec<u64> = pending
        .iter()
        .filter(|(epoch, entry)| {
            !frontier.less_equal(epoch) && producer.context().acked[entry.slot].load(Ordering::Relaxed) >= entry.sent
        })
        .map(|(epoch, _)| *epoch)
        .collect();
    for epoch in done {
        if let Some(entry) = pending.remove(&epoch) {
            free_slots.push(entry.slot);
            JobMetrics::add(&control.metrics.records_delivered, entry.sent);
            emit(&entry.capability, Delivered { epoch, records: entry.sent });
        }
    }
}

/// Hands one record to the producer, waiting while its queue is full.
fn send(producer: &BaseProducer<SinkContext>, topic: &str, record: &Record, slot: usize) -> Result<()> {
    let headers = (!record.headers.is_empty()).then(|| {
        record.headers.iter().fold(OwnedHeaders::new_with_capacity(record.headers.len()), |hs, (key, value)| {
            hs.insert(Header { key: key.as_str(), value: value.as_deref() })
        })
    });
    let mut message: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(topic, slot).partition(record.partition);
    if let Some(key) = &record.key {
        message = message.key(&key[..]);
    }
    if let Some(value) = &record.value {
        message = message.payload(&value[..]);
    }
    if let Some(ts) = record.timestamp {
        message = message.timestamp(ts);
    }
    if let Some(headers) = headers {
        message = message.headers(headers);
    }
    loop {
        match producer.send(message) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                message = returned;
                producer.poll(QUEUE_FULL_BACKOFF);
            }
            Err((error, _)) => {
                return Err(EngineError::Delivery { topic: topic.to_owned(), partition: record.partition, reason: error.to_string() })
            }
        }
    }
}

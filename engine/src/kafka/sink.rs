//! `KafkaSink`: writes each record to the same partition of the output topic, byte-exact,
//! and reports per epoch how many records the output broker acknowledged.
//!
//! Records are produced **without a copy**: the sink hands librdkafka the bytes the source
//! borrowed from the fetched messages and keeps each batch of records alive until every
//! record of it is acknowledged ([`InFlight`]). Delivery reports wake the sink (a
//! callback on the producer's queue), so no timer sits on the copy path.
//!
//! Delivery semantics: the sink holds a capability for an epoch until every record of
//! that epoch it sent is acknowledged; its output frontier therefore passes an epoch only
//! once the epoch is durable in the output topic, which is what the offset commit waits
//! for. A delivery that fails after librdkafka's own retries stops the job: no record is
//! skipped silently. The producer is idempotent by default, so retries keep the order
//! within each partition.
//!
//! Exactly-once ([`KafkaSink::build_exactly_once`]): each worker has a transactional
//! producer and one Kafka transaction per epoch holding the epoch's records and, sent
//! with `send_offsets_to_transaction`, the source positions at the epoch's close. The
//! transaction commits once the sink's input frontier has passed the epoch; only then
//! does the sink report the epoch delivered. Any error aborts the open transaction and
//! fails the job: neither its records (for `read_committed` readers) nor its offsets
//! count, so a restart resumes from the last committed epoch.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::{Capability, InputCapability};
use timely::dataflow::Stream;
use timely::progress::frontier::MutableAntichain;

use crate::config::KafkaConfig;
use crate::control::{JobControl, JobMetrics};
use crate::epoch::now_ms;
use crate::error::{EngineError, Result};
use crate::kafka::flow::FlowGate;
use crate::kafka::waker;
use crate::kafka::native::{self, Outgoing, Queue, Topic};
use crate::kafka::source::SourceHandle;
use crate::record::Record;

/// How long the sink waits on a full producer queue before looking again.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(1);
/// How often a sink adds its latencies to the process's histogram.
const LATENCY_MERGE: Duration = Duration::from_millis(200);
/// Events (delivery reports, errors) a sink serves per activation before it yields.
const MAX_EVENTS: usize = 64;

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
    /// The records librdkafka still reads, and this worker's latencies since the last drain.
    flight: Mutex<InFlight>,
    control: Arc<JobControl>,
    /// Where librdkafka's statistics of this producer go (set once the worker is known).
    stats: std::sync::OnceLock<crate::kafka::stats::StatsReporter>,
}

/// The batches of records handed to librdkafka and not yet all acknowledged. Their key
/// and value bytes were produced without a copy, so they must live until then; a batch is
/// released (dropped by the sink, after its poll) once its last delivery report is served.
#[derive(Debug)]
struct InFlight {
    /// Sequence number (the delivery opaque) of `batches[0]`.
    base: usize,
    batches: VecDeque<InFlightBatch>,
    /// Batches whose every record is acknowledged or failed, for the sink to drop.
    released: Vec<Vec<Record>>,
    /// Records sent and not yet reported (the flow gate's count).
    records: u64,
    /// Record timestamp → acknowledged, in ms.
    latency: hdrhistogram::Histogram<u64>,
}

#[derive(Debug)]
struct InFlightBatch {
    records: Vec<Record>,
    /// Records sent (or being sent) whose delivery report has not been served.
    remaining: usize,
    /// The epoch slot the acknowledgements count towards.
    slot: usize,
}

impl InFlight {
    /// Opens a batch of `n` records about to be sent for `slot`; returns its sequence number.
    fn open(&mut self, n: usize, slot: usize) -> usize {
        self.records += n as u64;
        self.batches.push_back(InFlightBatch { records: Vec::new(), remaining: n, slot });
        self.base + self.batches.len() - 1
    }

    /// Hands the batch its records once sent, less the `unsent` ones (a send failed).
    fn fill(&mut self, seq: usize, records: Vec<Record>, unsent: usize) {
        let Some(batch) = seq.checked_sub(self.base).and_then(|i| self.batches.get_mut(i)) else { return };
        self.records = self.records.saturating_sub(unsent as u64);
        batch.remaining = batch.remaining.saturating_sub(unsent);
        if batch.remaining == 0 {
            self.released.push(records);
        } else {
            batch.records = records;
        }
        self.trim();
    }

    /// Counts one delivery report of batch `seq`; returns the batch's epoch slot.
    fn report(&mut self, seq: usize) -> Option<usize> {
        let batch = seq.checked_sub(self.base).and_then(|i| self.batches.get_mut(i))?;
        self.records = self.records.saturating_sub(1);
        batch.remaining = batch.remaining.saturating_sub(1);
        let slot = batch.slot;
        if batch.remaining == 0 {
            let records = std::mem::take(&mut batch.records);
            self.released.push(records);
            self.trim();
        }
        Some(slot)
    }

    /// Forgets released batches at the front.
    fn trim(&mut self) {
        while self.batches.front().is_some_and(|b| b.remaining == 0) {
            self.batches.pop_front();
            self.base += 1;
        }
    }
}

impl SinkContext {
    fn new(topic: &str, control: Arc<JobControl>) -> SinkContext {
        SinkContext {
            acked: std::array::from_fn(|_| AtomicU64::new(0)),
            failure: Mutex::default(),
            topic: topic.to_owned(),
            now_ms: AtomicU64::new(now_ms()),
            flight: Mutex::new(InFlight {
                base: 0,
                batches: VecDeque::new(),
                released: Vec::new(),
                records: 0,
                latency: crate::control::latency_histogram(),
            }),
            control,
            stats: std::sync::OnceLock::new(),
        }
    }

    fn flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds this worker's latencies to the process's histogram, at most every [`LATENCY_MERGE`].
    fn merge_latency(&self, last_merge: &mut Instant) {
        if last_merge.elapsed() >= LATENCY_MERGE {
            *last_merge = Instant::now();
            let mut flight = self.flight();
            self.control.metrics.merge_latency(&flight.latency);
            flight.latency.reset();
        }
    }

    /// Takes the first delivery failure, if any.
    fn take_failure(&self) -> Option<EngineError> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl ClientContext for SinkContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(reporter) = self.stats.get() {
            reporter.report_json(statistics);
        }
    }
}

impl SinkContext {
    /// Sends this producer's statistics to the process's board as worker `worker`'s.
    fn report_stats_as(&self, worker: usize) {
        let board = Arc::clone(&self.control.metrics.clients);
        let _ = self.stats.set(crate::kafka::stats::StatsReporter::new(board, crate::kafka::stats::ClientRole::Producer, worker));
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let mut flight = self.flight();
        let slot = flight.report(seq);
        match result {
            Ok(message) => {
                if let Some(counter) = slot.and_then(|slot| self.acked.get(slot)) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(ts) = message.timestamp().to_millis() {
                    let now = self.now_ms.load(Ordering::Relaxed);
                    flight.latency.saturating_record(now.saturating_sub(u64::try_from(ts).unwrap_or(u64::MAX)));
                }
            }
            Err((error, message)) => {
                drop(flight);
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

/// A sink's producer, its handle on the output topic and its wake-up (declared before the
/// producer, so they are released first).
struct SinkProducer {
    /// The producer's main queue: delivery reports and errors, which wake the sink.
    events: Queue,
    topic: Topic,
    /// Shared only with a thread that refreshes its metadata for new partitions.
    producer: Arc<BaseProducer<SinkContext>>,
}

impl std::fmt::Debug for SinkProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkProducer").field("topic", &self.producer.context().topic).finish_non_exhaustive()
    }
}

impl SinkProducer {
    fn new(producer: BaseProducer<SinkContext>, brokers: &str) -> Result<SinkProducer> {
        let topic_name = producer.context().topic.clone();
        let topic = Topic::new(producer.client(), &topic_name)
            .ok_or_else(|| EngineError::kafka(brokers, format!("opening {topic_name} for the sink"), KafkaError::NoMessageReceived))?;
        let events = Queue::main(producer.client())
            .ok_or_else(|| EngineError::Runtime(format!("the producer of {topic_name} has no main queue")))?;
        Ok(SinkProducer { events, topic, producer: Arc::new(producer) })
    }

    /// Refreshes the producer's metadata of its topic (blocking: for a side thread), so it
    /// knows partitions added since; whether the brokers answered.
    fn refresher(&self) -> crate::kafka::source::OutputRefresh {
        let producer = Arc::clone(&self.producer);
        Arc::new(move || {
            let topic = producer.context().topic.clone();
            match producer.client().fetch_metadata(Some(&topic), crate::kafka::plan::REQUEST_TIMEOUT) {
                Ok(_) => true,
                Err(error) => {
                    tracing::warn!(%topic, %error, "refreshing the output's metadata for new partitions failed; retrying");
                    false
                }
            }
        })
    }

    fn context(&self) -> &SinkContext {
        self.producer.context()
    }

    /// Serves the waiting delivery reports and errors (at most [`MAX_EVENTS`]), then drops
    /// the batches librdkafka no longer reads. Returns whether events are still waiting.
    fn serve(&self, flow: &FlowGate) -> bool {
        let mut served = 0;
        while self.events.len() > 0 && served < MAX_EVENTS {
            self.producer.poll(Duration::ZERO);
            served += 1;
        }
        let (released, in_flight) = {
            let mut flight = self.context().flight();
            (std::mem::take(&mut flight.released), flight.records)
        };
        drop(released);
        flow.set_in_flight(in_flight);
        self.events.len() > 0
    }

    /// Sends `records` to their partitions, for epoch slot `slot`, without copying their
    /// bytes; the batch stays alive until every record of it is acknowledged. Returns how
    /// many were sent, and the error that stopped the batch, if any.
    fn send_batch(&self, records: Vec<Record>, slot: usize) -> (u64, Result<()>) {
        if records.is_empty() {
            return (0, Ok(()));
        }
        let seq = self.context().flight().open(records.len(), slot);
        let mut sent = 0;
        let mut result = Ok(());
        for record in &records {
            if let Err(error) = self.send(record, seq) {
                result = Err(error);
                break;
            }
            sent += 1;
        }
        let unsent = records.len() - sent;
        self.context().flight().fill(seq, records, unsent);
        (sent as u64, result)
    }

    /// Hands one record to the producer, waiting while its queue is full.
    fn send(&self, record: &Record, seq: usize) -> Result<()> {
        let out = Outgoing {
            partition: record.partition,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            timestamp: record.timestamp,
            headers: &record.headers,
            opaque: seq,
        };
        loop {
            match native::produce(self.producer.client(), &self.topic, out) {
                Ok(()) => return Ok(()),
                Err(RDKafkaErrorCode::QueueFull) => {
                    let waited = Instant::now();
                    self.producer.poll(QUEUE_FULL_BACKOFF);
                    let ns = u64::try_from(waited.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    JobMetrics::add(&self.context().control.metrics.sink_queue_full_ns, ns);
                }
                Err(code) => {
                    return Err(EngineError::Delivery {
                        topic: self.context().topic.clone(),
                        partition: record.partition,
                        reason: KafkaError::MessageProduction(code).to_string(),
                    })
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
        source: &SourceHandle,
        control: Arc<JobControl>,
    ) -> Result<Stream<'scope, u64, Vec<Delivered>>> {
        let brokers = kafka.brokers().to_owned();
        let context = SinkContext::new(topic, Arc::clone(&control));
        let producer: BaseProducer<SinkContext> = kafka
            .producer_config()?
            .create_with_context(context)
            .map_err(|e| EngineError::kafka(&brokers, "creating the sink producer", e))?;
        let sink = AtLeastOnce {
            producer: SinkProducer::new(producer, &brokers)?,
            topic: topic.to_owned(),
            control: Arc::clone(&control),
            pending: BTreeMap::new(),
            free_slots: (0..SLOTS).rev().collect(),
        };
        Ok(attach(records, &format!("KafkaSink({topic})"), source, control, sink))
    }
}

/// The output of a sink operator: the per-epoch deliveries.
type DeliveredSession<'a> = OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<Delivered>>>;

/// What one kind of sink does with the records it receives and with the epochs its input
/// frontier passes. Everything else a sink's activation does is the same for every kind,
/// and done by [`attach`].
trait SinkLogic: 'static {
    /// The producer the sink writes with.
    fn sink(&mut self) -> &mut SinkProducer;

    /// Sends (or sets aside) `data`, received under `capability`. An error fails the job.
    fn records(
        &mut self,
        capability: InputCapability<u64>,
        data: &mut Vec<Record>,
        frontier: &MutableAntichain<u64>,
        output: &mut DeliveredSession<'_>,
    ) -> Result<()>;

    /// Reports the epochs that are complete, once this activation's records are sent and
    /// its events served. An error fails the job.
    fn progress(&mut self, frontier: &MutableAntichain<u64>, output: &mut DeliveredSession<'_>) -> Result<()>;

    /// Runs at every activation once this sink has failed, before it yields.
    fn failed(&mut self) {}
}

/// Attaches the sink operator `name` to `records`, writing with `logic`'s producer: the
/// wiring every sink shares (wake-ups by delivery reports, statistics, latencies, the
/// flow gate and the copy clock of `source`, failures), around `logic`'s own steps.
fn attach<'scope, L: SinkLogic>(
    records: Stream<'scope, u64, Vec<Record>>,
    name: &str,
    source: &SourceHandle,
    control: Arc<JobControl>,
    mut logic: L,
) -> Stream<'scope, u64, Vec<Delivered>> {
    logic.sink().context().report_stats_as(records.scope().index());
    source.set_output_refresh(logic.sink().refresher());
    let flow = Rc::clone(source.flow());
    let copy_clock = Rc::clone(source.copy_clock());
    let scope = records.scope();
    records.unary_frontier::<CapacityContainerBuilder<Vec<Delivered>>, _, _, _>(Pipeline, name, move |_capability, info| {
        let activator = scope.activator_for(Rc::clone(&info.address));
        // Delivery reports wake the sink: no timer while acknowledgements are due.
        logic.sink().events.wake_on_nonempty(waker(scope.worker().sync_activator_for(info.address.to_vec())));
        let mut failed = false;
        let mut last_merge = Instant::now();
        move |(input, frontier), output| {
            let started = Instant::now();
            logic.sink().context().now_ms.store(now_ms(), Ordering::Relaxed);
            input.for_each(|capability, data| {
                if failed {
                    data.clear();
                    return;
                }
                if let Err(error) = logic.records(capability, data, frontier, output) {
                    control.fail(error);
                    failed = true;
                }
            });
            let more = logic.sink().serve(&flow);
            logic.sink().context().merge_latency(&mut last_merge);
            copy_clock.charge(started.elapsed());
            if let Some(error) = logic.sink().context().take_failure() {
                control.fail(error);
                failed = true;
            }
            if !failed {
                if let Err(error) = logic.progress(frontier, output) {
                    control.fail(error);
                    failed = true;
                }
            }
            if failed {
                // Keep the capabilities: the failed epochs must never look delivered.
                logic.failed();
                return;
            }
            if more {
                activator.activate();
            }
        }
    })
}

/// The at-least-once sink of one worker: each epoch holds a slot counting its
/// acknowledgements, and is delivered once its input is complete and every record of it
/// acknowledged.
#[derive(Debug)]
struct AtLeastOnce {
    producer: SinkProducer,
    topic: String,
    control: Arc<JobControl>,
    pending: BTreeMap<u64, Pending>,
    free_slots: Vec<usize>,
}

impl AtLeastOnce {
    /// A free epoch slot, waiting for closed epochs to be acknowledged while every slot is
    /// taken; `None` when every slot is taken by an epoch still open.
    fn free_slot(&mut self, frontier: &MutableAntichain<u64>, output: &mut DeliveredSession<'_>) -> Option<usize> {
        loop {
            if let Some(slot) = self.free_slots.pop() {
                return Some(slot);
            }
            // Every slot awaits acknowledgements: wait for closed epochs to be acknowledged.
            let closed = self.pending.keys().any(|e| !frontier.less_equal(e));
            if !closed {
                return None;
            }
            self.producer.producer.poll(QUEUE_FULL_BACKOFF);
            self.release(frontier, output);
        }
    }

    /// Delivers every pending epoch that is complete (see [`release`]).
    fn release(&mut self, frontier: &MutableAntichain<u64>, output: &mut DeliveredSession<'_>) {
        release(self.producer.context(), &mut self.pending, &mut self.free_slots, frontier.frontier(), &self.control, |capability, delivered| {
            output.session(capability).give(delivered);
        });
    }
}

impl SinkLogic for AtLeastOnce {
    fn sink(&mut self) -> &mut SinkProducer {
        &mut self.producer
    }

    fn records(
        &mut self,
        capability: InputCapability<u64>,
        data: &mut Vec<Record>,
        frontier: &MutableAntichain<u64>,
        output: &mut DeliveredSession<'_>,
    ) -> Result<()> {
        let Some(&epoch) = capability.least() else {
            return Err(EngineError::Runtime(format!("{} received records without a timestamp", "KafkaSink")));
        };
        if !self.pending.contains_key(&epoch) {
            let Some(slot) = self.free_slot(frontier, output) else {
                data.clear();
                return Err(EngineError::Runtime(format!("KafkaSink({}) has {SLOTS} epochs in flight, none closed", self.topic)));
            };
            self.producer.context().acked[slot].store(0, Ordering::Relaxed);
            let capability = capability.delayed(&epoch, output.output_index());
            self.pending.insert(epoch, Pending { capability, slot, sent: 0 });
        }
        let Some(entry) = self.pending.get_mut(&epoch) else { return Ok(()) };
        let (sent, result) = self.producer.send_batch(std::mem::take(data), entry.slot);
        entry.sent += sent;
        JobMetrics::add(&self.control.metrics.records_out, sent);
        result
    }

    fn progress(&mut self, frontier: &MutableAntichain<u64>, output: &mut DeliveredSession<'_>) -> Result<()> {
        self.release(frontier, output);
        Ok(())
    }
}

/// How long one transactional call (init, offsets, commit, abort) may block its worker.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a transactional step is retried while its errors are retriable (a broker
/// restarting, a coordinator moving) before the job fails.
const TXN_RETRY_FOR: Duration = Duration::from_secs(120);

/// The transactional producer of one worker in exactly-once mode.
///
/// Created with [`TransactionalProducer::init`] before the job reads its start offsets:
/// `init_transactions` fences any earlier producer with the same `transactional.id` (a
/// previous run of this worker that crashed or still runs) and aborts its open
/// transaction, so the committed offsets read next are final. Dropping it aborts an
/// open transaction.
pub struct TransactionalProducer {
    sink: SinkProducer,
    id: String,
    brokers: String,
    /// Whether a transaction is open.
    open: Cell<bool>,
}

impl std::fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer").field("id", &self.id).field("open", &self.open.get()).finish_non_exhaustive()
    }
}

impl TransactionalProducer {
    /// Creates the producer writing `topic` with `transactional.id` `id` and registers it
    /// with the transaction coordinator (fencing earlier producers with that id).
    pub fn init(kafka: &KafkaConfig, topic: &str, id: String, control: Arc<JobControl>) -> Result<TransactionalProducer> {
        let brokers = kafka.brokers().to_owned();
        let mut config = kafka.producer_config()?;
        config.set("transactional.id", &id);
        let producer: BaseProducer<SinkContext> = config
            .create_with_context(SinkContext::new(topic, control))
            .map_err(|e| EngineError::kafka(&brokers, format!("creating the transactional producer `{id}`"), e))?;
        let producer = TransactionalProducer { sink: SinkProducer::new(producer, &brokers)?, id, brokers, open: Cell::new(false) };
        producer.retrying("initialising transactions", |p| p.init_transactions(TXN_CALL_TIMEOUT))?;
        tracing::info!(transactional_id = %producer.id, "transactional producer ready");
        Ok(producer)
    }

    /// The producer's `transactional.id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Calls `call` until it succeeds, fails for good, or [`TXN_RETRY_FOR`] has passed.
    fn retrying(&self, what: &str, mut call: impl FnMut(&BaseProducer<SinkContext>) -> KafkaResult<()>) -> Result<()> {
        let started = Instant::now();
        loop {
            let error = match call(&self.sink.producer) {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let retriable = match &error {
                KafkaError::Transaction(e) => e.is_retriable() && !e.is_fatal() && !e.txn_requires_abort(),
                // commit_transaction flushes first; a flush that timed out is retried like the commit.
                KafkaError::Flush(code) => *code == RDKafkaErrorCode::OperationTimedOut,
                _ => false,
            };
            // A fenced (or otherwise dead) producer never recovers: fail at once, naming why.
            if let Some((code, reason)) = self.sink.producer.client().fatal_error() {
                return Err(EngineError::kafka(
                    &self.brokers,
                    format!("{what} (transactional.id `{}`): the producer failed for good ({code:?}: {reason})", self.id),
                    error,
                ));
            }
            if !retriable || started.elapsed() >= TXN_RETRY_FOR {
                return Err(EngineError::kafka(&self.brokers, format!("{what} (transactional.id `{}`)", self.id), error));
            }
            tracing::warn!(transactional_id = %self.id, %error, "{what}: retriable error; retrying");
            self.sink.producer.poll(Duration::from_millis(100));
        }
    }

    fn begin(&self, epoch: u64) -> Result<()> {
        self.retrying(&format!("beginning the transaction of epoch {epoch}"), |p| p.begin_transaction())?;
        self.open.set(true);
        Ok(())
    }

    /// Sends the source's positions at the close of `epoch` within the open transaction
    /// and commits it.
    fn commit(&self, epoch: u64, positions: &BTreeMap<i32, i64>, source: &SourceHandle) -> Result<()> {
        let mut offsets = TopicPartitionList::new();
        for (p, offset) in positions {
            offsets
                .add_partition_offset(source.topic(), *p, Offset::Offset(*offset))
                .map_err(|e| EngineError::kafka(source.brokers(), "building the transaction's offsets", e))?;
        }
        let metadata = source
            .group_metadata()
            .ok_or_else(|| EngineError::Runtime(format!("the consumer of {} has no group metadata", source.topic())))?;
        self.retrying(&format!("sending the offsets of epoch {epoch} to its transaction"), |p| {
            p.send_offsets_to_transaction(&offsets, &metadata, TXN_CALL_TIMEOUT)
        })?;
        self.retrying(&format!("committing the transaction of epoch {epoch}"), |p| p.commit_transaction(TXN_CALL_TIMEOUT))?;
        self.open.set(false);
        Ok(())
    }

    /// Aborts the open transaction, if any (best effort: the job is failing anyway, and a
    /// restart's `init_transactions` aborts it if this cannot).
    fn abort(&self) {
        if !self.open.replace(false) {
            return;
        }
        // The abort waits for the delivery reports of every record still queued, and only
        // a poll serves them (none runs once the worker stops stepping): purge what was
        // not sent, serve the reports, then abort. Without this a failing job waited the
        // whole call timeout here ("4100 message(s) remaining").
        let producer = &self.sink.producer;
        producer.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + TXN_CALL_TIMEOUT;
        while producer.in_flight_count() > 0 && Instant::now() < deadline {
            producer.poll(Duration::from_millis(10));
        }
        match producer.abort_transaction(TXN_CALL_TIMEOUT) {
            Ok(()) => tracing::warn!(transactional_id = %self.id, "transaction aborted"),
            Err(error) => tracing::warn!(transactional_id = %self.id, %error, "aborting the transaction failed; a restart fences it"),
        }
    }
}

impl Drop for TransactionalProducer {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The epoch whose transaction is open on a worker's exactly-once sink.
#[derive(Debug)]
struct OpenTransaction {
    epoch: u64,
    capability: Capability<u64>,
    sent: u64,
}

impl KafkaSink {
    /// Attaches `KafkaSink(<topic>, exactly-once)` to `records`: one transaction per
    /// epoch on `producer`, holding the epoch's records and `source`'s positions at its
    /// close, committed once the input frontier has passed the epoch. Records of a later
    /// epoch that arrive while one is open wait in memory for its commit. Returns the
    /// stream of per-epoch deliveries, each given once its transaction committed.
    pub fn build_exactly_once<'scope>(
        records: Stream<'scope, u64, Vec<Record>>,
        topic: &str,
        producer: TransactionalProducer,
        source: Rc<SourceHandle>,
        control: Arc<JobControl>,
    ) -> Result<Stream<'scope, u64, Vec<Delivered>>> {
        let name = format!("KafkaSink({topic}, exactly-once)");
        let sink = ExactlyOnce {
            producer,
            source: Rc::clone(&source),
            topic: topic.to_owned(),
            control: Arc::clone(&control),
            open: None,
            later: BTreeMap::new(),
        };
        Ok(attach(records, &name, &source, control, sink))
    }
}

/// The exactly-once sink of one worker: the open transaction, and the records of later
/// epochs waiting for its commit.
#[derive(Debug)]
struct ExactlyOnce {
    producer: TransactionalProducer,
    source: Rc<SourceHandle>,
    topic: String,
    control: Arc<JobControl>,
    open: Option<OpenTransaction>,
    later: BTreeMap<u64, (Capability<u64>, Vec<Record>)>,
}

impl SinkLogic for ExactlyOnce {
    fn sink(&mut self) -> &mut SinkProducer {
        &mut self.producer.sink
    }

    fn records(
        &mut self,
        capability: InputCapability<u64>,
        data: &mut Vec<Record>,
        _frontier: &MutableAntichain<u64>,
        output: &mut DeliveredSession<'_>,
    ) -> Result<()> {
        let (producer, topic, port) = (&self.producer, &self.topic, output.output_index());
        let step = match (capability.least().copied(), self.open.as_mut()) {
            (None, _) => Err(EngineError::Runtime(format!("KafkaSink({topic}) received records without a timestamp"))),
            (Some(epoch), Some(txn)) if txn.epoch == epoch => produce(producer, txn, data),
            (Some(epoch), Some(txn)) if txn.epoch < epoch => {
                self.later.entry(epoch).or_insert_with(|| (capability.delayed(&epoch, port), Vec::new())).1.append(data);
                Ok(())
            }
            (Some(epoch), Some(txn)) => Err(EngineError::Runtime(format!(
                "KafkaSink({topic}) received records of epoch {epoch} after the transaction of epoch {} began",
                txn.epoch
            ))),
            (Some(epoch), None) => producer.begin(epoch).and_then(|()| {
                let txn = self.open.insert(OpenTransaction { epoch, capability: capability.delayed(&epoch, port), sent: 0 });
                produce(producer, txn, data)
            }),
        };
        if step.is_err() {
            data.clear();
        }
        step
    }

    /// Commits every open epoch that is complete, oldest first, and begins the next.
    fn progress(&mut self, frontier: &MutableAntichain<u64>, output: &mut DeliveredSession<'_>) -> Result<()> {
        while let Some(txn) = self.open.take_if(|txn| !frontier.less_equal(&txn.epoch)) {
            let committed = match self.source.take_positions_before(Some(txn.epoch + 1)) {
                Some(positions) => self.producer.commit(txn.epoch, &positions, &self.source),
                None => Err(EngineError::Runtime(format!(
                    "KafkaSink({}): epoch {} sent {} records but its source positions did not move",
                    self.topic, txn.epoch, txn.sent
                ))),
            };
            if let Err(error) = committed {
                self.open = Some(txn);
                return Err(error);
            }
            JobMetrics::add(&self.control.metrics.records_delivered, txn.sent);
            JobMetrics::add(&self.control.metrics.commits, 1);
            tracing::debug!(transactional_id = %self.producer.id, epoch = txn.epoch, records = txn.sent, "transaction committed");
            output.session(&txn.capability).give(Delivered { epoch: txn.epoch, records: txn.sent });
            if let Some((epoch, (capability, mut data))) = self.later.pop_first() {
                let txn = self.open.insert(OpenTransaction { epoch, capability, sent: 0 });
                self.producer.begin(epoch).and_then(|()| produce(&self.producer, txn, &mut data))?;
            }
        }
        Ok(())
    }

    /// Aborts the open transaction: neither its records nor its offsets count.
    fn failed(&mut self) {
        self.producer.abort();
    }
}

/// Sends `data` within the open transaction `txn`, draining it.
fn produce(producer: &TransactionalProducer, txn: &mut OpenTransaction, data: &mut Vec<Record>) -> Result<()> {
    let (sent, result) = producer.sink.send_batch(std::mem::take(data), 0);
    txn.sent += sent;
    JobMetrics::add(&producer.sink.context().control.metrics.records_out, sent);
    result
}

/// Releases every pending epoch that is complete: no more input can arrive for it
/// (`frontier` has passed it) and every record sent for it is acknowledged. Reports each
/// released epoch through `emit`.
fn release(
    context: &SinkContext,
    pending: &mut BTreeMap<u64, Pending>,
    free_slots: &mut Vec<usize>,
    frontier: timely::progress::frontier::AntichainRef<'_, u64>,
    control: &JobControl,
    mut emit: impl FnMut(&Capability<u64>, Delivered),
) {
    let done: Vec<u64> = pending
        .iter()
        .filter(|(epoch, entry)| {
            !frontier.less_equal(epoch) && context.acked[entry.slot].load(Ordering::Relaxed) >= entry.sent
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

#[cfg(test)]
mod tests {
    use super::InFlight;
    use crate::record::Record;

    fn flight() -> InFlight {
        InFlight { base: 0, batches: Default::default(), released: Vec::new(), records: 0, latency: crate::control::latency_histogram() }
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n).map(|i| Record { partition: 0, offset: i as i64, timestamp: None, key: None, value: Some(vec![1u8; 8].into()), headers: vec![] }).collect()
    }

    #[test]
    fn a_batch_lives_until_its_last_delivery_report() {
        let mut f = flight();
        let a = f.open(3, 7);
        let b = f.open(2, 8);
        // A report may come while the batch is still being sent (a full queue polls).
        assert_eq!(f.report(a), Some(7));
        f.fill(a, records(3), 0);
        f.fill(b, records(2), 0);
        assert_eq!(f.records, 4);
        assert_eq!(f.report(b), Some(8));
        assert_eq!(f.report(b), Some(8));
        assert_eq!(f.released.len(), 1, "b is done, a is not");
        assert_eq!(f.batches.len(), 2, "a still holds the front");
        assert_eq!(f.report(a), Some(7));
        assert!(f.released.len() == 1 && f.records == 1);
        assert_eq!(f.report(a), Some(7));
        assert_eq!(f.released.len(), 2);
        assert!(f.batches.is_empty() && f.records == 0);
        assert_eq!(f.report(a), None, "a late report of a released batch is ignored");
    }

    #[test]
    fn unsent_records_of_a_failed_batch_are_not_waited_for() {
        let mut f = flight();
        let a = f.open(4, 0);
        f.fill(a, records(4), 3);
        assert_eq!(f.records, 1);
        assert!(f.released.is_empty());
        f.report(a);
        assert_eq!(f.released.len(), 1);
        let b = f.open(2, 0);
        f.fill(b, records(2), 2);
        assert_eq!(f.released.len(), 2, "nothing sent: released at once");
        assert!(f.batches.is_empty());
    }
}

//! `KafkaSource`: each worker reads its fixed share of the input topic's partitions.
//!
//! Delivery semantics: the source never commits on its own (auto-commit is off). It
//! records, at the close of every epoch, the position (next offset) of each partition
//! it reads; the commit operator ([`crate::kafka::commit`]) commits those positions only
//! once every record of the epoch, on every worker, is acknowledged by the output
//! broker. A crash therefore replays at most the uncommitted epochs: at-least-once.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OperatorInfo, OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, Stream};

use crossbeam_channel::Receiver;

use crate::assign::partitions_for_worker;
use crate::kafka::discovery::Found;

/// Refreshes the sink producer's metadata of the output topic; whether it got an answer.
pub(crate) type OutputRefresh = Arc<dyn Fn() -> bool + Send + Sync>;
use crate::config::{JobConfig, KafkaConfig};
use crate::control::{JobControl, JobMetrics};
use crate::epoch::{epoch_of, now_ms};
use crate::error::{EngineError, Result};
use crate::bytes::Bytes;
use crate::budget::CopyClock;
use crate::kafka::flow::FlowGate;
use crate::kafka::native::{cached_high_watermark, Queue};
use crate::kafka::plan::TopicPlan;
use crate::kafka::context::QuietEofContext;
use crate::kafka::stats::{ClientRole, StatsReporter};
use crate::kafka::waker;
use crate::record::{Record, RecordStream};

/// Most records one activation of the source emits before yielding to other operators.
const MAX_BATCH: usize = 32768;
/// Longest one activation of the source reads.
const MAX_POLL: Duration = Duration::from_millis(10);
/// Messages taken from librdkafka per call (one lock round and one clock read per batch).
const FETCH_BATCH: usize = 1024;
/// Longest an idle source sleeps (it is woken earlier by new data or the next epoch), so
/// stop requests are seen promptly.
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// Events of the consumer's own queue (errors, commit results, statistics) served per activation.
const MAX_EVENTS: usize = 16;

/// New partitions with their start offsets, waiting for the sink producer's metadata
/// refresh (set once it is done).
type Adopting = (Vec<(i32, i64)>, Arc<AtomicBool>);

/// The consumer of one worker and the positions it has reached, shared by the source
/// and the commit operator of that worker.
///
/// The worker's partitions feed one queue of its own (librdkafka's partition queues
/// forwarded to it), which the source drains in batches; the consumer's own queue keeps
/// only events (errors, commit results, statistics).
pub struct SourceHandle {
    /// The queue the partitions feed (declared before the consumer: dropped first).
    fetch: Queue,
    /// The partitions' own queues, forwarding to `fetch`.
    partition_queues: RefCell<Vec<Queue>>,
    /// Partitions added to the input topic since the start ([`crate::kafka::discovery`]),
    /// and every partition of the topic known so far (what the assignment deals out).
    discovered: Receiver<Found>,
    known: RefCell<Vec<i32>>,
    peers: usize,
    /// The sink's producer metadata refresh, and new partitions waiting for it: the
    /// producer must know a partition before the source reads it.
    output_refresh: RefCell<Option<OutputRefresh>>,
    adopting: RefCell<Option<Adopting>>,
    consumer: Arc<BaseConsumer<QuietEofContext>>,
    /// Closed while the sink has `job.max_in_flight` records unacknowledged.
    flow: Rc<FlowGate>,
    /// Time this worker's source and sink spend: the observers' budgets are shares of it.
    copy_clock: Rc<CopyClock>,
    topic: String,
    /// The topic for librdkafka's calls.
    topic_c: std::ffi::CString,
    brokers: String,
    worker: usize,
    state: RefCell<SourceState>,
}

impl std::fmt::Debug for SourceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceHandle").field("topic", &self.topic).field("worker", &self.worker).finish_non_exhaustive()
    }
}

/// Where one partition of this worker stands; updated per record without a map lookup.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    partition: i32,
    /// Next offset to read.
    position: i64,
    /// Stop line for `--until-end`.
    end: i64,
    /// Whether the partition reported end of partition since its last record.
    at_eof: bool,
    /// Timestamp (ms) of the newest record read.
    newest: Option<i64>,
}

#[derive(Debug, Default)]
struct SourceState {
    /// This worker's partitions, in partition order.
    cursors: Vec<Cursor>,
    /// Index into `cursors` by partition number (`u32::MAX`: not this worker's).
    slot: Vec<u32>,
    /// Positions at the close of each epoch, oldest first, not yet committed.
    closed: VecDeque<(u64, BTreeMap<i32, i64>)>,
    /// Positions last committed (or the start positions).
    committed: BTreeMap<i32, i64>,
    /// Per cursor: the progress last given on the source's progress output.
    last_progress: Vec<Option<PartitionProgress>>,
}

impl SourceState {
    fn new(cursors: Vec<Cursor>) -> SourceState {
        let mut state = SourceState::default();
        cursors.into_iter().for_each(|c| state.add(c));
        state
    }

    /// Follows one more partition.
    fn add(&mut self, cursor: Cursor) {
        let Ok(p) = usize::try_from(cursor.partition) else { return };
        if self.slot.len() <= p {
            self.slot.resize(p + 1, u32::MAX);
        }
        self.slot[p] = u32::try_from(self.cursors.len()).unwrap_or(u32::MAX);
        self.committed.insert(cursor.partition, cursor.position);
        self.cursors.push(cursor);
        self.last_progress.push(None);
    }

    fn cursor(&mut self, partition: i32) -> Option<&mut Cursor> {
        let i = *self.slot.get(usize::try_from(partition).ok()?)?;
        self.cursors.get_mut(i as usize)
    }

    fn positions(&self) -> BTreeMap<i32, i64> {
        self.cursors.iter().map(|c| (c.partition, c.position)).collect()
    }
}

/// Where one partition stood when an epoch of its source closed: the source's second
/// output carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// Next offset the job reads.
    pub position: i64,
    /// Timestamp (ms) of the newest record read, if any.
    pub newest_ms: Option<i64>,
    /// The high watermark of the partition's last fetch response, read at the same instant
    /// (librdkafka caches it; no request), if one arrived.
    pub high: Option<i64>,
}

/// Differential updates `((partition, progress), epoch, ±1)`: where each partition of
/// the source stands, changed at the close of the epochs where it moved.
pub type ProgressStream<'scope> = Stream<'scope, u64, Vec<((i32, PartitionProgress), u64, isize)>>;

type RecordSession<'a, 'b> = OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<Record>>>;
/// A session of the record output at one capability.
type Session<'a, 'b> = timely::dataflow::operators::generic::Session<'a, 'b, u64, CapacityContainerBuilder<Vec<Record>>, Capability<u64>>;
type ProgressSession<'a> = OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<((i32, PartitionProgress), u64, isize)>>>;

/// A source operator with two outputs, records and progress, as timely's `source` has one.
fn source_with_progress<'scope, B, L>(scope: Scope<'scope, u64>, name: &str, constructor: B) -> (RecordStream<'scope>, ProgressStream<'scope>)
where
    B: FnOnce(Capability<u64>, Capability<u64>, OperatorInfo) -> L,
    L: FnMut(&mut RecordSession<'_, '_>, &mut ProgressSession<'_>) + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let info = builder.operator_info();
    let (records, record_stream) = builder.new_output();
    let (progress, progress_stream) = builder.new_output();
    let mut records = OutputBuilder::from(records);
    let mut progress = OutputBuilder::from(progress);
    builder.build(move |capabilities| {
        // One capability per output, in the order the outputs were made.
        let mut capabilities = capabilities.into_iter();
        let mut logic = match (capabilities.next(), capabilities.next()) {
            (Some(records_cap), Some(progress_cap)) => Some(constructor(records_cap, progress_cap, info)),
            _ => None,
        };
        move |_frontiers| {
            if let Some(logic) = logic.as_mut() {
                logic(&mut records.activate(), &mut progress.activate());
            }
        }
    });
    (record_stream, progress_stream)
}

impl SourceHandle {
    /// The flow gate this worker's sink keeps (see [`FlowGate`]).
    pub fn flow(&self) -> &Rc<FlowGate> {
        &self.flow
    }

    /// The clock of this worker's copy path (source and sink), which observers' budgets follow.
    pub fn copy_clock(&self) -> &Rc<CopyClock> {
        &self.copy_clock
    }

    /// The input topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partitions this worker reads.
    pub fn partitions(&self) -> Vec<i32> {
        self.state.borrow().cursors.iter().map(|c| c.partition).collect()
    }

    /// Next offset to read per partition of this worker.
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.state.borrow().positions()
    }

    /// Takes the partitions discovery found that the assignment gives this worker: assigns
    /// them at their start offsets, their queue feeding this worker's, and follows them
    /// from then on (positions, progress, commits). Their `--until-end` stop line is their
    /// start: the job's stop line stays the one seen at start.
    fn adopt_discovered(&self, control: &Arc<JobControl>) -> Result<()> {
        let ready = self.adopting.borrow().as_ref().map(|(_, done)| done.load(Ordering::Acquire));
        match ready {
            Some(true) => {
                let new = self.adopting.borrow_mut().take().map(|(new, _)| new).unwrap_or_default();
                return self.assign_new(new);
            }
            Some(false) => return Ok(()),
            None => {}
        }
        let mut new = Vec::new();
        while let Ok(found) = self.discovered.try_recv() {
            let mut known = self.known.borrow_mut();
            let fresh: Vec<(i32, i64)> = found.into_iter().filter(|(p, _)| !known.contains(p)).collect();
            known.extend(fresh.iter().map(|(p, _)| *p));
            let mine = partitions_for_worker(&known, self.worker, self.peers);
            new.extend(fresh.into_iter().filter(|(p, _)| mine.contains(p)));
        }
        if new.is_empty() {
            return Ok(());
        }
        let Some(refresh) = self.output_refresh.borrow().clone() else { return self.assign_new(new) };
        // The producer learns of the output's new partitions on a side thread first.
        let done = Arc::new(AtomicBool::new(false));
        let signal = Arc::clone(&done);
        let control = Arc::clone(control);
        std::thread::Builder::new()
            .name("tidewatch-refresh".to_owned())
            .spawn(move || {
                while !refresh() && !control.stop_requested() {
                    std::thread::sleep(Duration::from_millis(200));
                }
                signal.store(true, Ordering::Release);
            })
            .map_err(|e| EngineError::Runtime(format!("spawning the output metadata refresh: {e}")))?;
        *self.adopting.borrow_mut() = Some((new, done));
        Ok(())
    }

    /// The sink's producer metadata refresh, called before new partitions are read.
    pub(crate) fn set_output_refresh(&self, refresh: OutputRefresh) {
        *self.output_refresh.borrow_mut() = Some(refresh);
    }

    /// Assigns the new partitions `new` of this worker at their start offsets.
    fn assign_new(&self, new: Vec<(i32, i64)>) -> Result<()> {
        let mut adopted = TopicPartitionList::new();
        for (p, start) in &new {
            adopted
                .add_partition_offset(&self.topic, *p, Offset::Offset(*start))
                .map_err(|e| EngineError::kafka(&self.brokers, "building the assignment", e))?;
            self.partition_queues.borrow_mut().push(forwarded_queue(&self.consumer, &self.topic, *p, &self.fetch)?);
        }
        self.consumer
            .incremental_assign(&adopted)
            .map_err(|e| EngineError::kafka(&self.brokers, format!("assigning the new partitions {new:?} of {}", self.topic), e))?;
        let mut state = self.state.borrow_mut();
        for (p, start) in &new {
            state.add(Cursor { partition: *p, position: *start, end: *start, at_eof: false, newest: None });
        }
        tracing::info!(worker = self.worker, topic = %self.topic, partitions = ?new, "source assigned new partitions");
        Ok(())
    }

    /// Whether every partition of this worker reached its `--until-end` stop line.
    fn reached_end(&self) -> bool {
        self.state.borrow().cursors.iter().all(|c| c.position >= c.end || c.at_eof)
    }

    /// Logs the positions at the close of epoch `time`, for the commit if they moved, and
    /// gives the partitions that moved (or whose watermark did) to `progress`.
    fn close_epoch(&self, time: u64, metrics: &JobMetrics, progress: &mut ProgressSession<'_>, cap: &Capability<u64>) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let mut session = progress.session(cap);
        for (cursor, last) in state.cursors.iter().zip(state.last_progress.iter_mut()) {
            let high = cached_high_watermark(self.consumer.client(), &self.topic_c, cursor.partition);
            let now = PartitionProgress { position: cursor.position, newest_ms: cursor.newest, high: high.or(last.and_then(|l| l.high)) };
            if *last != Some(now) {
                if let Some(before) = last.replace(now) {
                    session.give(((cursor.partition, before), time, -1));
                }
                session.give(((cursor.partition, now), time, 1));
            }
        }
        drop(session);
        let positions = state.positions();
        let last = state.closed.back().map_or(&state.committed, |(_, p)| p);
        if *last != positions {
            metrics.set_positions(positions.iter().map(|(p, o)| (*p, *o)));
            state.closed.push_back((time, positions));
        }
    }

    /// Takes the positions logged at the close of the latest epoch before `frontier` (all
    /// logged ones when `None`) and marks them committed; `None` when none moved since.
    /// The caller commits them: [`Self::commit_before`], or the exactly-once sink within
    /// its transaction.
    pub(crate) fn take_positions_before(&self, frontier: Option<u64>) -> Option<BTreeMap<i32, i64>> {
        let mut state = self.state.borrow_mut();
        let mut latest = None;
        while state.closed.front().is_some_and(|(t, _)| frontier.is_none_or(|f| *t < f)) {
            latest = state.closed.pop_front().map(|(_, p)| p);
        }
        let positions = latest?;
        state.committed.clone_from(&positions);
        Some(positions)
    }

    /// The consumer's group metadata, for offsets sent within a producer's transaction.
    pub(crate) fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// The bootstrap servers this source reads from.
    pub(crate) fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Commits the latest positions whose epoch is complete everywhere: every epoch
    /// before `frontier` (all of them when `frontier` is `None`, i.e. the job is done).
    pub(crate) fn commit_before(&self, frontier: Option<u64>, metrics: &JobMetrics) -> Result<()> {
        let Some(positions) = self.take_positions_before(frontier) else { return Ok(()) };
        let mut list = TopicPartitionList::new();
        for (p, offset) in &positions {
            list.add_partition_offset(&self.topic, *p, Offset::Offset(*offset))
                .map_err(|e| EngineError::kafka(&self.brokers, "building the commit", e))?;
        }
        // The last commit of a job is synchronous, so the offsets are durable before it exits.
        let mode = if frontier.is_none() { CommitMode::Sync } else { CommitMode::Async };
        self.consumer
            .commit(&list, mode)
            .map_err(|e| EngineError::kafka(&self.brokers, format!("committing offsets of {}", self.topic), e))?;
        JobMetrics::add(&metrics.commits, 1);
        tracing::debug!(worker = self.worker, topic = %self.topic, ?positions, ?mode, "committed");
        Ok(())
    }
}

/// What one activation of the source read.
#[derive(Debug, Default)]
struct Read {
    records: usize,
    bytes: usize,
    /// Whether the partitions' queue ran empty.
    drained: bool,
}

impl Read {
    /// Adds what was read to the process's counters.
    fn count(&self, metrics: &JobMetrics) {
        JobMetrics::add(&metrics.source_reads, 1);
        if self.drained {
            JobMetrics::add(&metrics.source_empty_reads, 1);
        }
        if self.records > 0 {
            JobMetrics::add(&metrics.records_in, self.records as u64);
            JobMetrics::add(&metrics.bytes_in, self.bytes as u64);
        }
    }

    /// Advances the record's partition past it and counts it, before it is emitted.
    fn record(&mut self, state: &mut SourceState, record: &Record) {
        if let Some(cursor) = state.cursor(record.partition) {
            cursor.position = record.offset + 1;
            cursor.at_eof = false;
            if record.timestamp.is_some() {
                cursor.newest = record.timestamp;
            }
        }
        self.bytes += record.size_bytes();
        self.records += 1;
    }
}

/// Builds the Kafka source of one worker.
#[derive(Debug)]
pub struct KafkaSource;

impl KafkaSource {
    /// Creates `KafkaSource(<topic>)` in `scope`: this worker's consumer, assigned its
    /// partitions ([`partitions_for_worker`]) at the plan's start offsets, and an operator
    /// that emits every record it polls at the current epoch, downgrading its capability
    /// once per epoch, and where its partitions stand at each epoch close on its second
    /// output. It stops when the job's stop flag is set, or, with `until_end`, when its
    /// partitions reach the plan's end offsets.
    pub fn build<'scope>(
        scope: Scope<'scope, u64>,
        plan: &TopicPlan,
        job: &JobConfig,
        kafka: &KafkaConfig,
        control: Arc<JobControl>,
        discovered: Receiver<Found>,
    ) -> Result<(RecordStream<'scope>, ProgressStream<'scope>, Rc<SourceHandle>)> {
        let assigned = Assigned::new(plan, job, kafka, &control, scope.index(), scope.peers())?;
        let pace = Pace { epoch_ms: job.epoch_ms(), until_end: job.until_end };
        let max_in_flight = job.max_in_flight;
        let name = format!("KafkaSource({})", plan.topic);
        // The operator's constructor runs inside `source_with_progress`, and hands the shared handle out through here.
        let shared: Rc<OnceCell<Rc<SourceHandle>>> = Rc::new(OnceCell::new());
        let shared_out = Rc::clone(&shared);
        let (stream, progress) = source_with_progress(scope, &name, move |capability, progress_capability, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            // Event-driven: librdkafka wakes the worker when the partitions' queue (records)
            // or the consumer's queue (errors, commit results) turns non-empty, so an idle
            // source neither spins nor sleeps past new data.
            let wake = || waker(scope.worker().sync_activator_for(info.address.to_vec()));
            let handle = Rc::new(assigned.into_handle(wake(), wake(), max_in_flight, discovered));
            handle.flow.set_source(activator.clone());
            let _ = shared.set(Rc::clone(&handle));
            reader(handle, (capability, progress_capability), activator, control, pace)
        });
        let handle = shared_out
            .get()
            .map(Rc::clone)
            .ok_or_else(|| EngineError::Runtime("the source operator was not constructed".to_owned()))?;
        Ok((stream, progress, handle))
    }
}

/// Partition `partition`'s own queue, forwarding to the worker's `fetch` queue.
fn forwarded_queue(consumer: &BaseConsumer<QuietEofContext>, topic: &str, partition: i32, fetch: &Queue) -> Result<Queue> {
    let queue = Queue::partition(consumer.client(), topic, partition).ok_or_else(|| EngineError::Runtime(format!("librdkafka gave no queue for {topic}[{partition}]")))?;
    queue.forward_to(fetch);
    Ok(queue)
}

/// A worker's consumer, assigned its partitions, before its operator runs.
struct Assigned {
    consumer: BaseConsumer<QuietEofContext>,
    fetch: Queue,
    partition_queues: Vec<Queue>,
    state: SourceState,
    topic: String,
    topic_c: std::ffi::CString,
    brokers: String,
    worker: usize,
    peers: usize,
    known: Vec<i32>,
}

impl Assigned {
    /// Creates the consumer of `worker` (of `peers`) and assigns it its partitions at the
    /// plan's start offsets; they feed one queue of the worker's (a forward librdkafka
    /// keeps across the assignment), drained in batches, while the consumer's own queue
    /// keeps the events.
    fn new(plan: &TopicPlan, job: &JobConfig, kafka: &KafkaConfig, control: &JobControl, worker: usize, peers: usize) -> Result<Assigned> {
        let mine = partitions_for_worker(&plan.partitions, worker, peers);
        let brokers = kafka.brokers().to_owned();
        let reporter = StatsReporter::new(Arc::clone(&control.metrics.clients), ClientRole::Consumer, worker);
        let consumer: BaseConsumer<QuietEofContext> = kafka
            .consumer_config(&job.group_id)?
            .create_with_context(QuietEofContext::with_stats(reporter))
            .map_err(|e| EngineError::kafka(&brokers, "creating the source consumer", e))?;
        let mut assignment = TopicPartitionList::new();
        let mut cursors = Vec::with_capacity(mine.len());
        for p in &mine {
            let start = plan.start.get(p).copied().unwrap_or(0);
            assignment
                .add_partition_offset(&plan.topic, *p, Offset::Offset(start))
                .map_err(|e| EngineError::kafka(&brokers, "building the assignment", e))?;
            let end = plan.end.get(p).copied().unwrap_or(i64::MAX);
            cursors.push(Cursor { partition: *p, position: start, end, at_eof: false, newest: None });
        }
        let fetch = Queue::new(consumer.client()).ok_or_else(|| EngineError::Runtime(format!("librdkafka gave no queue for {}", plan.topic)))?;
        let partition_queues = mine.iter().map(|p| forwarded_queue(&consumer, &plan.topic, *p, &fetch)).collect::<Result<Vec<_>>>()?;
        consumer
            .assign(&assignment)
            .map_err(|e| EngineError::kafka(&brokers, format!("assigning partitions {mine:?} of {}", plan.topic), e))?;
        tracing::info!(worker, topic = %plan.topic, partitions = ?mine, "source assigned");
        let state = SourceState::new(cursors);
        control.metrics.set_positions(state.positions());
        let topic_c = std::ffi::CString::new(plan.topic.as_str()).map_err(|_| EngineError::Runtime(format!("topic name {:?} holds a NUL byte", plan.topic)))?;
        Ok(Assigned { consumer, fetch, partition_queues, state, topic: plan.topic.clone(), topic_c, brokers, worker, peers, known: plan.partitions.clone() })
    }

    /// The handle, with librdkafka's wake-ups of the fetch queue and of the consumer's queue.
    fn into_handle(self, wake_fetch: impl Fn() + Send + Sync + 'static, wake_events: impl Fn() + Send + Sync + 'static, max_in_flight: usize, discovered: Receiver<Found>) -> SourceHandle {
        let Assigned { mut consumer, mut fetch, partition_queues, state, topic, topic_c, brokers, worker, peers, known } = self;
        fetch.wake_on_nonempty(wake_fetch);
        consumer.set_nonempty_callback(wake_events);
        SourceHandle {
            fetch,
            partition_queues: RefCell::new(partition_queues),
            discovered,
            known: RefCell::new(known),
            peers,
            output_refresh: RefCell::new(None),
            adopting: RefCell::new(None),
            consumer: Arc::new(consumer),
            flow: Rc::new(FlowGate::new(max_in_flight)),
            copy_clock: Rc::new(CopyClock::default()),
            topic,
            topic_c,
            brokers,
            worker,
            state: RefCell::new(state),
        }
    }
}

/// When a source closes its epochs and stops.
#[derive(Debug, Clone, Copy)]
struct Pace {
    epoch_ms: u64,
    until_end: bool,
}

/// The source operator's logic: at each activation, closes the epochs that passed, stops
/// when asked (or at the end), and otherwise reads what the queues hold unless the flow
/// gate is closed, then sleeps until woken.
fn reader(
    handle: Rc<SourceHandle>,
    capabilities: (Capability<u64>, Capability<u64>),
    activator: timely::scheduling::Activator,
    control: Arc<JobControl>,
    pace: Pace,
) -> impl FnMut(&mut RecordSession<'_, '_>, &mut ProgressSession<'_>) + 'static {
    let keep_alive: Arc<dyn Send + Sync> = Arc::clone(&handle.consumer) as Arc<dyn Send + Sync>;
    let mut capability = Some(capabilities);
    let mut warnings = Warnings::default();
    move |output, progress| {
        let Some((cap, progress_cap)) = capability.as_mut() else { return };
        let now_ms = now_ms();
        let now = epoch_of(now_ms, pace.epoch_ms);
        if now > *cap.time() {
            // Time 0 is the capability's initial placeholder, not an epoch that ran.
            if *cap.time() > 0 {
                handle.close_epoch(*cap.time(), &control.metrics, progress, progress_cap);
            }
            cap.downgrade(&now);
            progress_cap.downgrade(&now);
        }
        if let Err(error) = handle.adopt_discovered(&control) {
            control.fail(error);
        }
        if control.stop_requested() || (pace.until_end && handle.reached_end()) {
            handle.close_epoch(*cap.time(), &control.metrics, progress, progress_cap);
            tracing::info!(worker = handle.worker, positions = ?handle.positions(), "source finished");
            capability = None;
            return;
        }
        // Idle until woken (by the sink's flow gate, or the queues' callbacks for data),
        // and at the latest for the next epoch or a stop request.
        let sleep = || {
            let to_next_epoch = (now + pace.epoch_ms).saturating_sub(now_ms).max(1);
            activator.activate_after(Duration::from_millis(to_next_epoch).min(IDLE_WAKE));
        };
        if !handle.flow.may_read() {
            JobMetrics::add(&control.metrics.source_gated, 1);
            // The sink wakes us once half of its records in flight are acknowledged.
            sleep();
            return;
        }
        let started = Instant::now();
        let read = handle.read(&mut output.session(&*cap), &keep_alive, &mut warnings);
        handle.copy_clock.charge(started.elapsed());
        read.count(&control.metrics);
        if read.drained {
            // Nothing left: the queues' callbacks wake us for data.
            sleep();
        } else {
            activator.activate();
        }
    }
}

/// Consumer errors, logged at most every 5 s (transient: librdkafka reconnects and refetches by itself).
#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
}

impl Warnings {
    fn warn(&mut self, handle: &SourceHandle, error: &dyn std::fmt::Display) {
        if self.last.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            tracing::warn!(worker = handle.worker, topic = %handle.topic, %error, "consumer error; retrying");
            self.last = Some(Instant::now());
        }
    }
}

impl SourceHandle {
    /// Reads what the consumer's queue and the partitions' queue hold (at most
    /// `MAX_BATCH` records or `MAX_POLL`), giving each record to `session`.
    fn read(&self, session: &mut Session<'_, '_>, keep_alive: &Arc<dyn Send + Sync>, warnings: &mut Warnings) -> Read {
        let started = Instant::now();
        let mut read = Read::default();
        let mut state = self.state.borrow_mut();
        // The consumer's own queue: events, and records only if librdkafka ever delivers
        // one there rather than to the partitions' queue.
        for _ in 0..MAX_EVENTS {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => {
                    let record = Record::from_message(&message);
                    read.record(&mut state, &record);
                    session.give(record);
                }
                Some(Err(KafkaError::PartitionEOF(p))) => state.cursor(p).into_iter().for_each(|c| c.at_eof = true),
                Some(Err(error)) => warnings.warn(self, &error),
            }
        }
        while read.records < MAX_BATCH {
            let Some(batch) = self.fetch.consume_batch(FETCH_BATCH, keep_alive) else {
                read.drained = true;
                break;
            };
            let batch = Bytes::share(batch);
            for i in 0..batch.batch().len() {
                let Some(message) = batch.batch().get(i) else { continue };
                match message.error() {
                    None => {
                        let record = Record {
                            partition: message.partition(),
                            offset: message.offset(),
                            timestamp: message.timestamp(),
                            key: batch.key(i),
                            value: batch.value(i),
                            headers: message.headers(),
                        };
                        read.record(&mut state, &record);
                        session.give(record);
                    }
                    Some(RDKafkaErrorCode::PartitionEOF) => state.cursor(message.partition()).into_iter().for_each(|c| c.at_eof = true),
                    Some(code) => warnings.warn(self, &code),
                }
            }
            if started.elapsed() > MAX_POLL {
                break;
            }
        }
        read
    }
}

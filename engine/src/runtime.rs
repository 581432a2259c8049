//! Runs a job on timely: plans the partitions, starts the side threads, builds the
//! dataflow on every worker (source → sink → commit, plus the caller's observers) and
//! steps the workers until the job is done, stopped or failed.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::Probe;
use timely::dataflow::{Scope, Stream};

use crate::config::{Guarantee, JobConfig, KafkaConfig};
use crate::control::JobControl;
use crate::error::{EngineError, Result};
use crate::kafka::commit::commit_offsets;
use crate::kafka::discovery::{Discovery, PartitionFeed};
use crate::kafka::watermarks::{spawn_watermark_monitor, watermark_stream};
use crate::kafka::PartitionProgress;
use differential_dataflow::{AsCollection, VecCollection};
use crate::kafka::sink::TransactionalProducer;
use crate::kafka::{Delivered, KafkaSink, KafkaSource, SourceHandle, TopicPlan};
use crate::peers::PeerWatch;
use crate::record::Record;

/// timely's own process layout: `-w` workers per process, `-n` processes, this one `-p`,
/// addresses from the `-h` host file (else `localhost:2101`, `localhost:2102`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads per process (`-w`).
    pub workers: usize,
    /// Number of processes (`-n`).
    pub processes: usize,
    /// Index of this process (`-p`).
    pub process: usize,
    /// File with one `host:port` per process (`-h`).
    pub hostfile: Option<PathBuf>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster { workers: 1, processes: 1, process: 0, hostfile: None }
    }
}

impl Cluster {
    /// The timely configuration for this layout.
    pub fn timely_config(&self) -> Result<timely::Config> {
        let bad = |key: &str, message: String| EngineError::Config { key: key.to_owned(), message };
        if self.workers == 0 {
            return Err(bad("workers (-w)", "expected at least 1".to_owned()));
        }
        if self.processes == 0 {
            return Err(bad("processes (-n)", "expected at least 1".to_owned()));
        }
        if self.process >= self.processes {
            return Err(bad("process (-p)", format!("expected an index below -n {}, got {}", self.processes, self.process)));
        }
        let communication = if self.processes > 1 {
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses()?,
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            timely::CommunicationConfig::Thread
        };
        Ok(timely::Config { communication, worker: timely::WorkerConfig::default() })
    }

    /// Every process's address, in process order: the `-h` host file's first `-n` lines,
    /// else `localhost:2101`, `localhost:2102`, ….
    pub fn addresses(&self) -> Result<Vec<String>> {
        match &self.hostfile {
            Some(path) => read_hostfile(path, self.processes),
            None => Ok((0..self.processes).map(|i| format!("localhost:{}", 2101 + i)).collect()),
        }
    }
}

fn read_hostfile(path: &Path, processes: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Config { key: "hostfile (-h)".to_owned(), message: format!("cannot read {}: {e}", path.display()) })?;
    let addresses: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).take(processes).map(str::to_owned).collect();
    if addresses.len() < processes {
        return Err(EngineError::Config {
            key: "hostfile (-h)".to_owned(),
            message: format!("{} lists {} addresses but -n is {processes}", path.display(), addresses.len()),
        });
    }
    Ok(addresses)
}

/// Drops a failed worker's dataflows, so timely does not wait for them to finish.
fn abandon(worker: &mut timely::worker::Worker) {
    for id in worker.installed_dataflows() {
        worker.drop_dataflow(id);
    }
}

/// What a worker's observers get: the records it read, plus where it stands.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// Global index of the worker.
    pub index: usize,
    /// Number of workers in all processes.
    pub peers: usize,
    /// The job's control block in this process.
    pub control: Arc<JobControl>,
    /// The job configuration.
    pub job: JobConfig,
}

/// What observers of one worker can watch.
pub struct ObserveInputs<'scope> {
    /// The records this worker read, at their epochs (before they are written).
    pub records: Stream<'scope, u64, Vec<Record>>,
    /// Per epoch, how many records this worker's sink delivered, once they are acknowledged.
    pub delivered: Stream<'scope, u64, Vec<Delivered>>,
    /// Where this worker's partitions stand, changed at the epoch closes where they moved:
    /// `(partition, progress)`, with the high watermark cached at the same instant.
    pub progress: VecCollection<'scope, u64, (i32, PartitionProgress), isize>,
    /// The input topic's high watermarks from the process's monitor, `(partition, high)`
    /// (worker 0 emits them; they reach every partition's lag by a join).
    pub watermarks: VecCollection<'scope, u64, (i32, i64), isize>,
    /// This worker's source, for its copy clock (observers' budgets).
    pub source: Rc<SourceHandle>,
}

impl std::fmt::Debug for ObserveInputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveInputs").field("source", &self.source).finish_non_exhaustive()
    }
}

/// The observers to attach on every worker: called once per worker while the dataflow
/// is built.
pub trait Observe: Send + Sync + 'static {
    /// Attaches observation operators to the worker's streams.
    fn observe<'scope>(&self, inputs: ObserveInputs<'scope>, context: &WorkerContext);
}

/// Observes nothing: the plain passthrough.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObservers;

impl Observe for NoObservers {
    fn observe<'scope>(&self, _inputs: ObserveInputs<'scope>, _context: &WorkerContext) {}
}

/// Figures of one finished run, summed over the workers of this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Records read.
    pub records_in: u64,
    /// Records acknowledged by the output broker.
    pub records_delivered: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Where the workers' time went.
    pub waits: Waits,
}

/// The partition plan and, in exactly-once mode, this process's transactional producers.
///
/// The first plan checks the brokers and topics. In exactly-once mode the consumer reads
/// committed offsets as "stable", which waits for a crashed instance's open transaction
/// until fencing aborts it; so the first look reads them unstable, the producers fence
/// the previous run of this process's workers (aborting its open transactions), and the
/// plan is made again, on committed offsets that are now final.
fn plan_and_fence(job: &JobConfig, kafka: &KafkaConfig, cluster: &Cluster, control: &Arc<JobControl>) -> Result<(TopicPlan, Vec<Option<TransactionalProducer>>)> {
    match job.guarantee {
        Guarantee::AtLeastOnce => Ok((TopicPlan::resolve(job, kafka)?, Vec::new())),
        Guarantee::ExactlyOnce => {
            let mut first_look = kafka.clone();
            first_look.consumer.insert("isolation.level".to_owned(), "read_uncommitted".to_owned());
            TopicPlan::resolve(job, &first_look)?;
            let first_worker = cluster.process * cluster.workers;
            let producers = (first_worker..first_worker + cluster.workers)
                .map(|w| TransactionalProducer::init(kafka, &job.output_topic, job.transactional_id(w), Arc::clone(control)).map(Some))
                .collect::<Result<Vec<_>>>()?;
            Ok((TopicPlan::resolve(job, kafka)?, producers))
        }
    }
}

/// Where the workers of a process spent their time, and how often the copy path waited.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Waits {
    /// Seconds the worker threads were on a CPU.
    pub worker_cpu_s: f64,
    /// Seconds they were runnable but waiting for a CPU.
    pub worker_runq_s: f64,
    /// Seconds they were parked or blocked (nothing to do, or waiting in a call).
    pub worker_parked_s: f64,
    /// Source activations that read, and those that found nothing.
    pub source_reads: u64,
    pub source_empty_reads: u64,
    /// Source activations that found the flow gate closed.
    pub source_gated: u64,
    /// Seconds the sinks waited on a full producer queue.
    pub sink_queue_full_s: f64,
}

impl Waits {
    /// The figures of `metrics` so far.
    pub fn of(metrics: &crate::control::JobMetrics) -> Waits {
        use crate::control::JobMetrics as M;
        let s = |ns: u64| ns as f64 / 1e9;
        let (wall, cpu, runq) = (M::get(&metrics.worker_wall_ns), M::get(&metrics.worker_cpu_ns), M::get(&metrics.worker_runq_ns));
        Waits {
            worker_cpu_s: s(cpu),
            worker_runq_s: s(runq),
            worker_parked_s: s(wall.saturating_sub(cpu + runq)),
            source_reads: M::get(&metrics.source_reads),
            source_empty_reads: M::get(&metrics.source_empty_reads),
            source_gated: M::get(&metrics.source_gated),
            sink_queue_full_s: s(M::get(&metrics.sink_queue_full_ns)),
        }
    }
}

/// Runs the passthrough job with `observers` until it ends (`until_end`), is stopped
/// through `control`, or fails. Returns this process's figures.
pub fn run_job<O: Observe>(
    job: JobConfig,
    kafka: KafkaConfig,
    cluster: &Cluster,
    control: Arc<JobControl>,
    observers: O,
) -> Result<RunSummary> {
    job.validate()?;
    let timely_config = cluster.timely_config()?;
    let kafka = kafka.for_guarantee(job.guarantee)?;
    let first_worker = cluster.process * cluster.workers;
    let (plan, producers) = plan_and_fence(&job, &kafka, cluster, &control)?;
    let producers = std::sync::Mutex::new(producers);
    let partition_feed = Arc::new(PartitionFeed::default());
    let discovery = Discovery::new(&job, &kafka, Arc::clone(&partition_feed))?;
    let (monitor, watermark_feed) = spawn_watermark_monitor(&kafka, &plan.topic, plan.partitions.clone(), job.epoch_interval, Arc::clone(&control), discovery)?;
    let peers = if cluster.processes > 1 { Some(PeerWatch::start(&control, cluster.addresses()?)) } else { None };
    let worker_control = Arc::clone(&control);
    let guards = timely::execute(timely_config, move |worker| {
        let control = Arc::clone(&worker_control);
        let context = WorkerContext {
            index: worker.index(),
            peers: worker.peers(),
            control: Arc::clone(&control),
            job: job.clone(),
        };
        let built = worker.dataflow::<u64, _, _>(|scope: Scope<'_, u64>| -> Result<_> {
            let (records, progress, handle) = KafkaSource::build(scope, &plan, &job, &kafka, Arc::clone(&control), partition_feed.subscribe())?;
            let watermarks = watermark_stream(&progress, &watermark_feed, job.epoch_ms()).as_collection();
            let delivered = match job.guarantee {
                Guarantee::AtLeastOnce => KafkaSink::build(records.clone(), &job.output_topic, &kafka, &handle, Arc::clone(&control))?,
                Guarantee::ExactlyOnce => {
                    let producer = producers
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_mut(context.index.wrapping_sub(first_worker))
                        .and_then(Option::take)
                        .ok_or_else(|| EngineError::Runtime(format!("no transactional producer for worker {}", context.index)))?;
                    KafkaSink::build_exactly_once(records.clone(), &job.output_topic, producer, Rc::clone(&handle), Arc::clone(&control))?
                }
            };
            let progress = progress.as_collection();
            observers.observe(ObserveInputs { records, delivered: delivered.clone(), progress, watermarks, source: Rc::clone(&handle) }, &context);
            let (probe, delivered) = delivered.probe();
            // Exactly-once commits the offsets within the sink's transactions, never here.
            if job.guarantee == Guarantee::AtLeastOnce {
                commit_offsets(delivered, handle, Arc::clone(&control));
            }
            Ok(probe)
        });
        let probe = match built {
            Ok(probe) => probe,
            Err(error) => {
                control.fail(error);
                abandon(worker);
                return;
            }
        };
        let mut clock = crate::control::WorkerClock::start();
        while !probe.done() {
            if control.failed() {
                abandon(worker);
                return;
            }
            worker.step_or_park(Some(Duration::from_millis(50)));
            clock.update(&control.metrics, false);
        }
        clock.update(&control.metrics, true);
    })
    .map_err(EngineError::Runtime)?;

    join_all(guards, peers.as_ref(), monitor, &control);
    summary(&control)
}

/// Joins the workers, then the watermark monitor. A worker's panic fails the job, unless
/// a lost peer explains it: timely's threads panic then, and their join too, but the job
/// has failed with `PeerLost` already and the panics say nothing more (`crate::peers`).
fn join_all(guards: timely::communication::WorkerGuards<()>, peers: Option<&PeerWatch>, monitor: std::thread::JoinHandle<()>, control: &JobControl) {
    let results = match peers {
        Some(peers) => peers.join_quietly(|| guards.join()).unwrap_or_default(),
        None => guards.join(),
    };
    control.request_stop();
    if monitor.join().is_err() {
        tracing::warn!("watermark monitor panicked");
    }
    let peer_lost = peers.is_some_and(PeerWatch::lost);
    for result in results {
        if let Err(panic) = result {
            if !peer_lost {
                control.fail(EngineError::Runtime(format!("a worker panicked: {panic}")));
            }
        }
    }
}

/// The figures of a finished run, or its first failure.
fn summary(control: &JobControl) -> Result<RunSummary> {
    if let Some(error) = control.take_failure() {
        return Err(error);
    }
    let m = &control.metrics;
    Ok(RunSummary {
        records_in: crate::control::JobMetrics::get(&m.records_in),
        records_delivered: crate::control::JobMetrics::get(&m.records_delivered),
        bytes_in: crate::control::JobMetrics::get(&m.bytes_in),
        waits: Waits::of(m),
    })
}

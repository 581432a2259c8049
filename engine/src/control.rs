//! Shared state of a running job within one process: stop requests, a fatal error
//! slot, and the live counters that progress lines, metrics and tests read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::EngineError;

/// Stop flag and fatal error of a job, shared by its workers and the main thread.
#[derive(Debug, Default)]
pub struct JobControl {
    stop: AtomicBool,
    failure: Mutex<Option<EngineError>>,
    failed: AtomicBool,
    /// Live counters of this process.
    pub metrics: JobMetrics,
}

impl JobControl {
    /// A fresh control block, shared as an `Arc`.
    pub fn new() -> Arc<JobControl> {
        Arc::new(JobControl::default())
    }

    /// Asks the sources to close their epoch and stop; the job then flushes, commits and ends.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Records a fatal error (the first one wins) and asks everything to stop.
    pub fn fail(&self, error: EngineError) {
        tracing::error!(%error, "job failed");
        let mut slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(error);
        }
        self.failed.store(true, Ordering::Release);
        self.request_stop();
    }

    /// Records an error that needs no abandoning (the first one wins): the job stops as on
    /// a stop request, its records delivered and their offsets committed, then fails
    /// with it.
    pub fn stop_with_error(&self, error: EngineError) {
        tracing::error!(%error, "job stopping");
        let mut slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(error);
        }
        self.request_stop();
    }

    /// Whether a fatal error was recorded.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Takes the fatal error, if any.
    pub fn take_failure(&self) -> Option<EngineError> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Counters of one process, updated by its workers.
#[derive(Debug, Default)]
pub struct JobMetrics {
    /// Records read from the input topic.
    pub records_in: AtomicU64,
    /// Bytes (key + value + headers) read from the input topic.
    pub bytes_in: AtomicU64,
    /// Records handed to the producer.
    pub records_out: AtomicU64,
    /// Records acknowledged by the output broker.
    pub records_delivered: AtomicU64,
    /// Epochs whose offsets were committed.
    pub commits: AtomicU64,
    /// Activations of the sources that read from librdkafka.
    pub source_reads: AtomicU64,
    /// Of those, reads that emptied the partitions' queue (the source then waits for the next fetch).
    pub source_empty_reads: AtomicU64,
    /// Source activations that found the flow gate closed (the sink had `job.max_in_flight` unacknowledged).
    pub source_gated: AtomicU64,
    /// Nanoseconds the sinks waited on a full producer queue.
    pub sink_queue_full_ns: AtomicU64,
    /// Nanoseconds the worker threads were on a CPU while running the dataflow.
    pub worker_cpu_ns: AtomicU64,
    /// Nanoseconds the worker threads were runnable but waiting for a CPU.
    pub worker_runq_ns: AtomicU64,
    /// Nanoseconds the worker threads ran the dataflow (wall), on a CPU or not.
    pub worker_wall_ns: AtomicU64,
    /// Next offset to read per input partition owned by this process (updated per epoch).
    positions: Mutex<BTreeMap<i32, i64>>,
    /// Low and high watermark per input partition, from the watermark monitor.
    watermarks: Mutex<BTreeMap<i32, (i64, i64)>>,
    /// End-to-end latency (record timestamp → acknowledged by the output), ms, since the last take.
    latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
    /// The latest librdkafka statistics of this process's consumers and producers.
    pub clients: Arc<crate::kafka::stats::ClientStatsBoard>,
}

/// A histogram of latencies in ms, from 1 ms to an hour, 2 significant digits.
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000, 2).unwrap_or_else(|_| hdrhistogram::Histogram::new(2).unwrap_or_else(|_| unreachable!("2 significant digits are valid")))
}

/// Where one worker thread's time goes: on a CPU, waiting for one, or parked (the rest),
/// from the thread's own `schedstat` (Linux), added to the process's counters about once
/// a second and when the worker ends.
#[derive(Debug)]
pub(crate) struct WorkerClock {
    last_wall: std::time::Instant,
    last: (u64, u64),
}

impl WorkerClock {
    /// Starts counting for the calling thread.
    pub(crate) fn start() -> WorkerClock {
        WorkerClock { last_wall: std::time::Instant::now(), last: thread_schedstat().unwrap_or_default() }
    }

    /// Adds the time since the last update, if a second has passed (or `force`).
    pub(crate) fn update(&mut self, metrics: &JobMetrics, force: bool) {
        let elapsed = self.last_wall.elapsed();
        if !force && elapsed < std::time::Duration::from_secs(1) {
            return;
        }
        let Some(now) = thread_schedstat() else { return };
        self.last_wall += elapsed;
        JobMetrics::add(&metrics.worker_wall_ns, u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        JobMetrics::add(&metrics.worker_cpu_ns, now.0.saturating_sub(self.last.0));
        JobMetrics::add(&metrics.worker_runq_ns, now.1.saturating_sub(self.last.1));
        self.last = now;
    }
}

/// The calling thread's nanoseconds on a CPU and waiting for one (Linux `schedstat`).
fn thread_schedstat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut nums = text.split_whitespace().map(|n| n.parse::<u64>().ok());
    Some((nums.next()??, nums.next()??))
}

impl JobMetrics {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records the positions of some partitions.
    pub fn set_positions(&self, positions: impl IntoIterator<Item = (i32, i64)>) {
        let mut map = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        map.extend(positions);
    }

    /// Positions per partition owned by this process.
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.positions.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records freshly fetched watermarks.
    pub fn set_watermarks(&self, watermarks: impl IntoIterator<Item = (i32, (i64, i64))>) {
        let mut map = self.watermarks.lock().unwrap_or_else(PoisonError::into_inner);
        map.extend(watermarks);
    }

    /// The last watermarks fetched, per partition.
    pub fn watermarks(&self) -> BTreeMap<i32, (i64, i64)> {
        self.watermarks.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Adds a sink's latencies to the process's histogram.
    pub fn merge_latency(&self, other: &hdrhistogram::Histogram<u64>) {
        let mut slot = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let histogram = slot.get_or_insert_with(latency_histogram);
        if let Err(error) = histogram.add(other) {
            tracing::debug!(%error, "latency histogram merge");
        }
    }

    /// Takes the latencies recorded since the last take.
    pub fn take_latency(&self) -> Option<hdrhistogram::Histogram<u64>> {
        self.latency.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Offset lag per partition owned by this process: high watermark minus position,
    /// never negative; partitions without a known watermark or position are left out.
    pub fn lag(&self) -> BTreeMap<i32, i64> {
        let watermarks = self.watermarks();
        self.positions()
            .into_iter()
            .filter_map(|(p, pos)| watermarks.get(&p).map(|(_, high)| (p, (high - pos).max(0))))
            .collect()
    }
}

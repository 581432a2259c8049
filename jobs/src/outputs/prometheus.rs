//! The Prometheus figures of a job, read from its stats documents and live counters.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tidewatch_engine::opensearch::{OpenSearchCounters, OpenSearchSink};
use tidewatch_engine::{JobControl, JobMetrics};
use tidewatch_operators::alerts::{AlertEvent, AlertState};
use tidewatch_operators::observers::ObserverMetrics;
use tidewatch_operators::protocol::MetricKind;
use tidewatch_operators::stats::{PartitionStatus, StatsDoc};

type Labels = Vec<(String, String)>;

/// The Prometheus figures of the job.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    records_read: Counter,
    bytes_read: Counter,
    records_delivered: Counter,
    commits: Counter,
    events: Counter,
    unparseable: Counter,
    field_kind: Family<Labels, Counter>,
    invalid: Family<Labels, Counter>,
    window_events: Gauge,
    window_invalid: Family<Labels, Gauge>,
    lag: Family<Labels, Gauge>,
    lag_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
    status: Family<Labels, Gauge>,
    max_lag: Gauge,
    alert_firing: Family<Labels, Gauge>,
    arrangement_updates: Gauge,
    windows: Counter,
    opensearch_indexed: Counter,
    opensearch_dropped: Counter,
    opensearch_rejected: Counter,
    opensearch_retries: Counter,
    opensearch_buffered: Gauge,
    latency: Family<Labels, Gauge<f64, AtomicU64>>,
    observer_window: Family<Labels, Gauge>,
    observed: Family<Labels, Gauge<f64, AtomicU64>>,
    observed_count: Family<Labels, Counter<f64, AtomicU64>>,
    observer_total: Family<Labels, Counter>,
    sampled_records: Family<Labels, Counter>,
    sampling_rate: Family<Labels, Gauge<f64, AtomicU64>>,
    source_reads: Counter,
    source_empty_reads: Counter,
    source_gated: Counter,
    worker_seconds: Family<Labels, Counter<f64, AtomicU64>>,
}

impl Metrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register("tidewatch_records_read", "Records read from the input topic", self.records_read.clone());
        registry.register("tidewatch_bytes_read", "Bytes (key, value, headers) read from the input topic", self.bytes_read.clone());
        registry.register("tidewatch_records_delivered", "Records acknowledged by the output topic", self.records_delivered.clone());
        registry.register("tidewatch_offset_commits", "Offset commits of completed epochs", self.commits.clone());
        registry.register("tidewatch_events", "Records observed, over all windows", self.events.clone());
        registry.register("tidewatch_unparseable", "Records whose value is not valid JSON", self.unparseable.clone());
        registry.register("tidewatch_field_kind", "Records per watched field and kind (present, missing, null, empty_string, empty_array, empty_object)", self.field_kind.clone());
        registry.register("tidewatch_invalid", "Records with a watched field empty in any way", self.invalid.clone());
        registry.register("tidewatch_window_events", "Records in the last closed window", self.window_events.clone());
        registry.register("tidewatch_window_invalid", "Records with the field empty in the last closed window", self.window_invalid.clone());
        registry.register("tidewatch_lag_offsets", "High watermark minus position, per partition", self.lag.clone());
        registry.register("tidewatch_lag_seconds", "Age of the newest consumed record while lagging, per partition", self.lag_seconds.clone());
        registry.register("tidewatch_partition_status", "Partition status: 0 OK, 1 WARN, 2 STALL, 3 STOP", self.status.clone());
        registry.register("tidewatch_max_lag_offsets", "Largest lag over partitions", self.max_lag.clone());
        registry.register("tidewatch_alert_firing", "1 while an alert rule fires", self.alert_firing.clone());
        registry.register("tidewatch_arrangement_updates", "Updates held by the quality arrangements", self.arrangement_updates.clone());
        registry.register("tidewatch_windows", "Observation windows closed", self.windows.clone());
        registry.register("tidewatch_opensearch_indexed", "Documents indexed in OpenSearch", self.opensearch_indexed.clone());
        registry.register("tidewatch_opensearch_dropped", "Documents dropped because the OpenSearch buffer was full", self.opensearch_dropped.clone());
        registry.register("tidewatch_opensearch_rejected", "Documents OpenSearch rejected for good", self.opensearch_rejected.clone());
        registry.register("tidewatch_opensearch_retries", "Bulk attempts that failed and were retried", self.opensearch_retries.clone());
        registry.register("tidewatch_opensearch_buffered", "Documents waiting for OpenSearch", self.opensearch_buffered.clone());
        registry.register("tidewatch_observer_window", "A custom observer's count in the last closed window", self.observer_window.clone());
        registry.register("tidewatch_observer", "A custom observer's count over all windows", self.observer_total.clone());
        registry.register(
            "tidewatch_observed",
            "A figure of an observer on the observation protocol in the last closed window (ages in seconds), by observer, metric and the metric's labels",
            self.observed.clone(),
        );
        registry.register("tidewatch_observed_count", "A counting figure of an observer on the protocol, summed over all windows", self.observed_count.clone());
        registry.register(
            "tidewatch_observation_sampled_records",
            "Records offered to a sampling branch (profile, observers) under the observation budget, by outcome (observed, skipped)",
            self.sampled_records.clone(),
        );
        registry.register(
            "tidewatch_observation_sampling_rate",
            "Share of the records the sampled record observers observed in the last closed window; 1 within budget",
            self.sampling_rate.clone(),
        );
        registry.register("tidewatch_source_reads", "Source activations that read from librdkafka (this process)", self.source_reads.clone());
        registry.register("tidewatch_source_empty_reads", "Source reads that emptied the partitions' queue and waited for the next fetch", self.source_empty_reads.clone());
        registry.register("tidewatch_source_gated", "Source activations that found the flow gate closed (job.max_in_flight unacknowledged)", self.source_gated.clone());
        registry.register(
            "tidewatch_worker_seconds",
            "Worker threads' time by state: cpu (running), runqueue (waiting for a core), parked (nothing to do, or blocked)",
            self.worker_seconds.clone(),
        );
        registry.register(
            "tidewatch_delivery_latency_seconds",
            "Record timestamp to acknowledgement by the output topic, quantiles over the last half second with deliveries",
            self.latency.clone(),
        );
    }

    pub(super) fn absorb_doc(&self, doc: &StatsDoc, topic: &str) {
        self.windows.inc();
        self.events.inc_by(doc.all_events.max(0) as u64);
        self.unparseable.inc_by(doc.unparseable.max(0) as u64);
        self.window_events.set(doc.all_events);
        for (field, kinds) in &doc.quality {
            for (kind, n) in kinds {
                self.field_kind.get_or_create(&vec![("field".into(), field.clone()), ("kind".into(), kind.clone())]).inc_by((*n).max(0) as u64);
            }
        }
        for (name, n) in &doc.invalid {
            let field = name.strip_prefix("invalid_").unwrap_or(name).to_owned();
            self.invalid.get_or_create(&vec![("field".into(), field.clone())]).inc_by((*n).max(0) as u64);
            self.window_invalid.get_or_create(&vec![("field".into(), field)]).set(*n);
        }
        for (partition, lag) in &doc.lag_per_partition {
            let labels = vec![("topic".into(), topic.to_owned()), ("partition".into(), partition.clone())];
            self.lag.get_or_create(&labels).set(*lag);
            if let Some(seconds) = doc.lag_seconds_per_partition.get(partition) {
                self.lag_seconds.get_or_create(&labels).set(*seconds);
            }
        }
        for (partition, status) in &doc.status_per_partition {
            let labels = vec![("topic".into(), topic.to_owned()), ("partition".into(), partition.clone())];
            let code = match status {
                PartitionStatus::Ok => 0,
                PartitionStatus::Warn => 1,
                PartitionStatus::Stall => 2,
                PartitionStatus::Stop => 3,
            };
            self.status.get_or_create(&labels).set(code);
        }
        if let Some(max) = doc.max_lag {
            self.max_lag.set(max);
        }
        for (metric, n) in &doc.observers {
            let labels = vec![("metric".into(), metric.clone())];
            self.observer_window.get_or_create(&labels).set(*n);
            self.observer_total.get_or_create(&labels).inc_by((*n).max(0) as u64);
        }
        for figure in &doc.figures {
            let mut labels = vec![("observer".to_owned(), figure.key.observer.clone()), ("metric".to_owned(), figure.key.metric.clone())];
            labels.extend(figure.key.labels.iter().map(|(name, value)| (prometheus_label(name), value.clone())));
            self.observed.get_or_create(&labels).set(figure.value);
            if figure.kind == MetricKind::Count {
                self.observed_count.get_or_create(&labels).inc_by(figure.value.max(0.0));
            }
        }
        for (branch, sampling) in &doc.sampling {
            self.sampling_rate.get_or_create(&vec![("branch".into(), branch.clone())]).set(sampling.rate);
        }
    }

    pub(super) fn absorb_alert(&self, event: &AlertEvent) {
        let firing = i64::from(event.state == AlertState::Firing);
        self.alert_firing.get_or_create(&vec![("rule".into(), event.rule.clone())]).set(firing);
    }
}

/// A label name Prometheus accepts: letters, digits and `_`, not starting with a digit.
fn prometheus_label(name: &str) -> String {
    let mut label: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
        label.insert(0, '_');
    }
    label
}

/// Raises a counter to `total` (counters only go up; the job's atomics are the truth).
fn raise_to(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// Copies the job's live counters into the Prometheus figures.
pub(super) fn refresh_metrics(metrics: &Metrics, control: &JobControl, observers: &ObserverMetrics, opensearch: Option<&OpenSearchSink>) {
    let m = &control.metrics;
    raise_to(&metrics.records_read, JobMetrics::get(&m.records_in));
    raise_to(&metrics.bytes_read, JobMetrics::get(&m.bytes_in));
    raise_to(&metrics.records_delivered, JobMetrics::get(&m.records_delivered));
    raise_to(&metrics.commits, JobMetrics::get(&m.commits));
    metrics.arrangement_updates.set(i64::try_from(observers.arrangement_updates.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    for (branch, sampling) in [("profile", &observers.profile_sampling), ("observers", &observers.observer_sampling)] {
        let (seen, observed) = (sampling.seen.load(Ordering::Relaxed), sampling.observed.load(Ordering::Relaxed));
        if seen > 0 {
            let labels = |outcome: &str| vec![("branch".to_owned(), branch.to_owned()), ("outcome".to_owned(), outcome.to_owned())];
            raise_to(&metrics.sampled_records.get_or_create(&labels("observed")), observed);
            raise_to(&metrics.sampled_records.get_or_create(&labels("skipped")), seen.saturating_sub(observed));
        }
    }
    raise_to(&metrics.source_reads, JobMetrics::get(&m.source_reads));
    raise_to(&metrics.source_empty_reads, JobMetrics::get(&m.source_empty_reads));
    raise_to(&metrics.source_gated, JobMetrics::get(&m.source_gated));
    let waits = tidewatch_engine::Waits::of(m);
    for (state, seconds) in [("cpu", waits.worker_cpu_s), ("runqueue", waits.worker_runq_s), ("parked", waits.worker_parked_s)] {
        let counter = metrics.worker_seconds.get_or_create(&vec![("state".to_owned(), state.to_owned())]);
        let delta = seconds - counter.get();
        if delta > 0.0 {
            counter.inc_by(delta);
        }
    }
    if let Some(latency) = m.take_latency().filter(|h| !h.is_empty()) {
        for (label, q) in [("0.5", 0.5), ("0.99", 0.99), ("1", 1.0)] {
            let seconds = latency.value_at_quantile(q) as f64 / 1000.0;
            metrics.latency.get_or_create(&vec![("quantile".into(), label.into())]).set(seconds);
        }
    }
    if let Some(sink) = opensearch {
        refresh_opensearch(metrics, &sink.counters);
    }
}

pub(super) fn refresh_opensearch(metrics: &Metrics, c: &OpenSearchCounters) {
    raise_to(&metrics.opensearch_indexed, c.indexed.load(Ordering::Relaxed));
    raise_to(&metrics.opensearch_dropped, c.dropped.load(Ordering::Relaxed));
    raise_to(&metrics.opensearch_rejected, c.rejected.load(Ordering::Relaxed));
    raise_to(&metrics.opensearch_retries, c.retries.load(Ordering::Relaxed));
    metrics.opensearch_buffered.set(i64::try_from(c.buffered.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
}


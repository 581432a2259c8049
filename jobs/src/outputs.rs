//! Where observations go: NDJSON files (`stats.ndjson`, `alerts.ndjson`) in an output
//! directory, and a Prometheus `/metrics` endpoint with the same figures.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::{select, unbounded, Receiver};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tidewatch_engine::opensearch::{OpenSearchConfig, OpenSearchCounters, OpenSearchSink};
use tidewatch_engine::{JobControl, JobMetrics};
use crate::health::{ClientStatsCollector, ProcessCollector};
use tidewatch_operators::alerts::{AlertEvent, AlertState};
use tidewatch_operators::observers::{ObservationSinks, ObserverMetrics};
use tidewatch_operators::protocol::MetricKind;
use tidewatch_operators::stats::{PartitionStatus, StatsDoc};

/// The `[output]` table of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Directory of `stats.ndjson` and `alerts.ndjson` (created if missing).
    pub dir: PathBuf,
    /// Address of the `/metrics` endpoint; empty to serve none. With several processes,
    /// process `p` serves on this port plus `p`.
    pub metrics_addr: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { dir: PathBuf::from("tidewatch-out"), metrics_addr: "127.0.0.1:9464".to_owned() }
    }
}

type Labels = Vec<(String, String)>;

/// The Prometheus figures of the job.
#[derive(Debug, Default)]
struct Metrics {
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
    fn register(&self, registry: &mut Registry) {
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

    fn absorb_doc(&self, doc: &StatsDoc, topic: &str) {
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

    fn absorb_alert(&self, event: &AlertEvent) {
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

/// The newest observations, for live displays.
#[derive(Debug, Default, Clone)]
pub struct Latest {
    /// The last closed window.
    pub stats: Option<StatsDoc>,
    /// Rules firing now.
    pub firing: std::collections::BTreeSet<String>,
    /// Windows written so far.
    pub windows: u64,
    /// Alert transitions written so far.
    pub alert_events: u64,
}

/// The running outputs of a job.
#[derive(Debug)]
pub struct Outputs {
    /// Hand these to the observers.
    pub sinks: ObservationSinks,
    writer: JoinHandle<anyhow::Result<()>>,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The newest observations.
    pub latest: Arc<Mutex<Latest>>,
}

impl Outputs {
    /// Opens the files, binds the metrics endpoint and starts the writer thread, which
    /// ends when the observers' senders are dropped (the job finished).
    pub fn start(
        config: &OutputConfig,
        opensearch: &OpenSearchConfig,
        topic: &str,
        process: usize,
        control: Arc<JobControl>,
        observers: Arc<ObserverMetrics>,
    ) -> anyhow::Result<Outputs> {
        let opensearch = if opensearch.url.is_empty() { None } else { Some(OpenSearchSink::start(opensearch, crate::mapping::observation_mappings())?) };
        std::fs::create_dir_all(&config.dir).with_context(|| format!("config key `output.dir`: cannot create {}", config.dir.display()))?;
        let stats_file = append(&config.dir.join("stats.ndjson"))?;
        let alerts_file = append(&config.dir.join("alerts.ndjson"))?;
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        registry.register_collector(Box::new(ClientStatsCollector::new(Arc::clone(&control.metrics.clients))));
        registry.register_collector(Box::new(ProcessCollector));
        let registry = Arc::new(registry);

        let metrics_addr = if config.metrics_addr.is_empty() {
            None
        } else {
            let mut addr: SocketAddr = config.metrics_addr.parse().with_context(|| {
                format!("config key `output.metrics_addr`: expected host:port such as 127.0.0.1:9464, got `{}`", config.metrics_addr)
            })?;
            addr.set_port(addr.port().saturating_add(u16::try_from(process).unwrap_or(0)));
            let listener = TcpListener::bind(addr).with_context(|| format!("config key `output.metrics_addr`: cannot listen on {addr}"))?;
            let bound = listener.local_addr()?;
            let registry = Arc::clone(&registry);
            std::thread::Builder::new().name("tidewatch-metrics".into()).spawn(move || serve(listener, &registry))?;
            tracing::info!(%bound, "serving Prometheus metrics at /metrics");
            Some(bound)
        };

        let (stats_tx, stats_rx) = unbounded();
        let (alerts_tx, alerts_rx) = unbounded();
        let topic = topic.to_owned();
        let latest = Arc::new(Mutex::new(Latest::default()));
        let shared = Arc::clone(&latest);
        let writer = std::thread::Builder::new().name("tidewatch-outputs".into()).spawn(move || {
            let files = Files { stats: stats_file, alerts: alerts_file, opensearch };
            write_loop(stats_rx, alerts_rx, files, &metrics, &topic, &control, &observers, &shared)
        })?;
        Ok(Outputs { sinks: ObservationSinks { stats: stats_tx, alerts: alerts_tx }, writer, metrics_addr, latest })
    }

    /// Waits for the writer to drain and close the files.
    pub fn finish(self) -> anyhow::Result<()> {
        drop(self.sinks);
        self.writer.join().map_err(|_| anyhow::anyhow!("the output writer panicked"))?
    }
}

fn append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot open {} for appending", path.display()))
}

/// Where the documents of a job go: the NDJSON files, and OpenSearch if configured.
struct Files {
    stats: File,
    alerts: File,
    opensearch: Option<OpenSearchSink>,
}

#[allow(clippy::too_many_arguments)]
fn write_loop(
    stats: Receiver<StatsDoc>,
    alerts: Receiver<AlertEvent>,
    files: Files,
    metrics: &Metrics,
    topic: &str,
    control: &JobControl,
    observers: &ObserverMetrics,
    latest: &Mutex<Latest>,
) -> anyhow::Result<()> {
    let Files { stats: mut stats_file, alerts: mut alerts_file, opensearch } = files;
    let tick = crossbeam_channel::tick(Duration::from_millis(500));
    let mut open = (true, true);
    let refresh = |opensearch: Option<&OpenSearchSink>| refresh_metrics(metrics, control, observers, opensearch);
    while open.0 || open.1 {
        select! {
            recv(stats) -> doc => match doc {
                Ok(doc) => {
                    serde_json::to_writer(&mut stats_file, &doc)?;
                    stats_file.write_all(b"\n")?;
                    if let Some(sink) = &opensearch {
                        sink.stats(serde_json::to_value(&doc)?);
                    }
                    metrics.absorb_doc(&doc, topic);
                    let mut latest = latest.lock().unwrap_or_else(PoisonError::into_inner);
                    latest.windows += 1;
                    latest.stats = Some(doc);
                }
                Err(_) => open.0 = false,
            },
            recv(alerts) -> event => match event {
                Ok(event) => {
                    serde_json::to_writer(&mut alerts_file, &event)?;
                    alerts_file.write_all(b"\n")?;
                    if let Some(sink) = &opensearch {
                        sink.alert(serde_json::to_value(&event)?);
                    }
                    metrics.absorb_alert(&event);
                    let mut latest = latest.lock().unwrap_or_else(PoisonError::into_inner);
                    latest.alert_events += 1;
                    if event.state == AlertState::Firing {
                        latest.firing.insert(event.rule.clone());
                    } else {
                        latest.firing.remove(&event.rule);
                    }
                }
                Err(_) => open.1 = false,
            },
            recv(tick) -> _ => refresh(opensearch.as_ref()),
        }
    }
    let counters = opensearch.as_ref().map(|sink| Arc::clone(&sink.counters));
    if let Some(sink) = opensearch {
        sink.finish();
    }
    refresh(None);
    if let Some(c) = counters {
        refresh_opensearch(metrics, &c);
    }
    stats_file.sync_data()?;
    alerts_file.sync_data()?;
    Ok(())
}

/// Copies the job's live counters into the Prometheus figures.
fn refresh_metrics(metrics: &Metrics, control: &JobControl, observers: &ObserverMetrics, opensearch: Option<&OpenSearchSink>) {
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

fn refresh_opensearch(metrics: &Metrics, c: &OpenSearchCounters) {
    raise_to(&metrics.opensearch_indexed, c.indexed.load(Ordering::Relaxed));
    raise_to(&metrics.opensearch_dropped, c.dropped.load(Ordering::Relaxed));
    raise_to(&metrics.opensearch_rejected, c.rejected.load(Ordering::Relaxed));
    raise_to(&metrics.opensearch_retries, c.retries.load(Ordering::Relaxed));
    metrics.opensearch_buffered.set(i64::try_from(c.buffered.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
}

/// Answers `GET /metrics` with the registry in the OpenMetrics text format.
fn serve(listener: TcpListener, registry: &Registry) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(error) = answer(stream, registry) {
                    tracing::debug!(%error, "metrics request failed");
                }
            }
            Err(error) => tracing::warn!(%error, "metrics endpoint accept failed"),
        }
    }
}

fn answer(mut stream: TcpStream, registry: &Registry) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = if request_line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
        let mut body = String::new();
        encode(&mut body, registry)?;
        ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", body)
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "tidewatch serves /metrics\n".to_owned())
    };
    write!(stream, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    Ok(())
}

/// Reads an NDJSON file of documents.
pub fn read_ndjson<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).with_context(|| format!("parsing a line of {}", path.display()))).collect()
}

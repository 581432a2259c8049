//! Where observations go: NDJSON files (`stats.ndjson`, `alerts.ndjson`) in an output
//! directory (and OpenSearch), and a Prometheus `/metrics` endpoint with the same figures.
//!
//! - `prometheus.rs`: the figures of `/metrics`, read from the stats documents;
//! - `files.rs`: the writer thread (NDJSON, OpenSearch, the figures);
//! - `http.rs`: the `/metrics` endpoint.

mod files;
mod http;
mod prometheus;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context as _;
use crossbeam_channel::unbounded;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tidewatch_engine::opensearch::{OpenSearchConfig, OpenSearchSink};
use tidewatch_engine::JobControl;
use tidewatch_operators::observers::{ObservationSinks, ObserverMetrics};
use tidewatch_operators::stats::StatsDoc;

use crate::health::{ClientStatsCollector, ProcessCollector};
use files::{append, write_loop, Files};
use prometheus::Metrics;

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
        let opensearch = if opensearch.url.is_empty() { None } else { Some(OpenSearchSink::start(&crate::mapping::with_default_indices(opensearch), crate::mapping::observation_mappings())?) };
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
            std::thread::Builder::new().name("tidewatch-metrics".into()).spawn(move || http::serve(listener, &registry))?;
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

/// Reads an NDJSON file of documents.
pub fn read_ndjson<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).with_context(|| format!("parsing a line of {}", path.display()))).collect()
}

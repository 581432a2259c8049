//! Where observations go: NDJSON files (`stats.ndjson`, `alerts.ndjson`) in an output
//! directory (and OpenSearch), and a Prometheus `/metrics` endpoint with the same figures.
//!
//! - `prometheus.rs`: the figures of `/metrics`, read from the stats documents;
//! - `files.rs`: the writer thread (NDJSON, OpenSearch, the figures);
//!
//! The HTTP server (`/metrics`, the dashboard) is [`crate::dashboard`]'s.

mod files;
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

use crate::dashboard::server::{self, Served, Server};
use crate::dashboard::{Board, JobInfo};
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
    /// process `p` serves on this port plus `p`. Process 0 also serves the dashboard
    /// there (`/`) unless `dashboard` is off.
    pub metrics_addr: String,
    /// Serve the live dashboard (`/`, `/api/state`, `/api/events`, `/profiles/`) beside
    /// `/metrics`.
    pub dashboard: bool,
    /// The access token every request must carry when `metrics_addr` is not a loopback
    /// address (`Authorization: Bearer <token>` or `?token=<token>`); letters, digits and
    /// `-._~`. Without one, a non-loopback address is refused.
    pub dashboard_token: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { dir: PathBuf::from("tidewatch-out"), metrics_addr: "127.0.0.1:9464".to_owned(), dashboard: true, dashboard_token: String::new() }
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
    /// The dashboard's URL, on the process that serves it.
    pub dashboard: Option<String>,
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
    /// The dashboard's URL, on the process that serves it.
    pub dashboard_url: Option<String>,
    server: Option<Server>,
}

impl Outputs {
    /// Opens the files, binds the metrics endpoint and starts the writer thread, which
    /// ends when the observers' senders are dropped (the job finished).
    /// `profiles`: the directory of the job's profile reports, which the dashboard serves.
    pub fn start(
        config: &OutputConfig,
        opensearch: &OpenSearchConfig,
        job: JobInfo,
        profiles: Option<PathBuf>,
        control: Arc<JobControl>,
        observers: Arc<ObserverMetrics>,
    ) -> anyhow::Result<Outputs> {
        let OutputConfig { dir: _, metrics_addr: _, dashboard, dashboard_token: _ } = config;
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

        let board = (*dashboard && job.process == 0).then(|| Arc::new(Board::new(job.clone(), Arc::clone(&control), profiles)));
        let (server, metrics_addr, dashboard_url) = match serve(config, &job, Arc::clone(&registry), board.clone())? {
            Some((server, bound, url)) => (Some(server), Some(bound), url),
            None => (None, None, None),
        };

        let (stats_tx, stats_rx) = unbounded();
        let (alerts_tx, alerts_rx) = unbounded();
        let topic = job.input.clone();
        let latest = Arc::new(Mutex::new(Latest { dashboard: dashboard_url.clone(), ..Latest::default() }));
        let shared = Arc::clone(&latest);
        let writer = std::thread::Builder::new().name("tidewatch-outputs".into()).spawn(move || {
            let files = Files { stats: stats_file, alerts: alerts_file, opensearch, board };
            write_loop(stats_rx, alerts_rx, files, &metrics, &topic, &control, &observers, &shared)
        })?;
        Ok(Outputs { sinks: ObservationSinks { stats: stats_tx, alerts: alerts_tx }, writer, metrics_addr, latest, dashboard_url, server })
    }

    /// Waits for the writer to drain and close the files, then stops the server.
    pub fn finish(self) -> anyhow::Result<()> {
        let Outputs { sinks, writer, server, .. } = self;
        drop(sinks);
        let written = writer.join().map_err(|_| anyhow::anyhow!("the output writer panicked"))?;
        drop(server);
        written
    }
}

/// Binds `output.metrics_addr` (plus the process index) and starts the server there;
/// returns it, the address bound and the dashboard's URL (on the process that shows it).
/// A non-loopback address needs `output.dashboard_token`.
fn serve(config: &OutputConfig, job: &JobInfo, registry: Arc<Registry>, board: Option<Arc<Board>>) -> anyhow::Result<Option<(Server, SocketAddr, Option<String>)>> {
    if config.metrics_addr.is_empty() {
        return Ok(None);
    }
    let mut addr: SocketAddr = config
        .metrics_addr
        .parse()
        .with_context(|| format!("config key `output.metrics_addr`: expected host:port such as 127.0.0.1:9464, got `{}`", config.metrics_addr))?;
    let base = addr;
    let token = access_token(&config.dashboard_token, addr)?;
    addr.set_port(addr.port().saturating_add(u16::try_from(job.process).unwrap_or(0)));
    let listener = TcpListener::bind(addr).with_context(|| format!("config key `output.metrics_addr`: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let query = token.as_ref().map_or_else(String::new, |_| "?token=<output.dashboard_token>".to_owned());
    let url = board.as_ref().map(|_| format!("http://{bound}/{query}"));
    let elsewhere = (job.process != 0 && config.dashboard).then(|| format!("process 0, at http://<its host>:{}/", base.port()));
    let served = Served { registry, board, elsewhere: elsewhere.clone(), token };
    let server = server::start(listener, served).with_context(|| format!("starting the HTTP server on {bound}"))?;
    tracing::info!(%bound, "serving Prometheus metrics at /metrics");
    match (&url, &elsewhere) {
        (Some(url), _) => tracing::info!(%url, "serving the dashboard"),
        (None, Some(place)) => tracing::info!(dashboard = %place, "the job's dashboard is served by process 0"),
        _ => {}
    }
    Ok(Some((server, bound, url)))
}

/// The token requests to `addr` must carry: `output.dashboard_token` when set (on any
/// address); without one, none on a loopback address, and a non-loopback one refused.
fn access_token(token: &str, addr: SocketAddr) -> anyhow::Result<Option<String>> {
    if !token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')) {
        anyhow::bail!("config key `output.dashboard_token`: expected letters, digits and `-._~` only");
    }
    if !token.is_empty() {
        return Ok(Some(token.to_owned()));
    }
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "config key `output.dashboard_token`: required to serve `output.metrics_addr` = {addr}, which is not a loopback address \
             (set a token, or bind 127.0.0.1)"
        );
    }
    Ok(None)
}

/// Reads an NDJSON file of documents.
pub fn read_ndjson<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).with_context(|| format!("parsing a line of {}", path.display()))).collect()
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn job(process: usize) -> JobInfo {
        JobInfo {
            input: "in".into(),
            output: "out".into(),
            workers: 1,
            processes: 2,
            process,
            guarantee: "at-least-once".into(),
            window_ms: 1_000,
            rules: Vec::new(),
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).expect("connects");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("writes");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("reads");
        answer
    }

    #[test]
    fn a_process_other_than_0_serves_its_metrics_and_says_where_the_page_is() {
        let config = OutputConfig { metrics_addr: "127.0.0.1:0".to_owned(), ..OutputConfig::default() };
        let (server, bound, url) = serve(&config, &job(1), Arc::new(Registry::default()), None).expect("serves").expect("an address");
        assert_eq!(url, None);
        let root = get(bound, "/");
        assert!(root.starts_with("HTTP/1.1 404") && root.contains("served by process 0"), "{root}");
        assert!(get(bound, "/metrics").starts_with("HTTP/1.1 200"));
        assert!(get(bound, "/api/state").starts_with("HTTP/1.1 404"));
        drop(server);
    }

    #[test]
    fn a_token_is_needed_off_loopback_and_checked_for_what_a_query_can_carry() {
        let loopback: SocketAddr = "127.0.0.1:9464".parse().expect("an address");
        let any: SocketAddr = "0.0.0.0:9464".parse().expect("an address");
        assert_eq!(access_token("", loopback).expect("no token needed"), None);
        assert_eq!(access_token("t0k-en", loopback).expect("kept"), Some("t0k-en".to_owned()));
        let refused = access_token("", any).expect_err("refused").to_string();
        assert!(refused.contains("output.dashboard_token") && refused.contains("0.0.0.0:9464"), "{refused}");
        let odd = access_token("a;b", any).expect_err("refused").to_string();
        assert!(odd.contains("output.dashboard_token"), "{odd}");
    }
}

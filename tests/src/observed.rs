//! One job run with every output on, for the tests of observers on the observation
//! protocol: its stats documents, alert transitions, the `/metrics` text scraped while
//! it ran, and the stats documents OpenSearch holds.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use tidewatch_engine::opensearch::OpenSearchConfig;
use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig, Record};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_operators::alerts::AlertEvent;
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_operators::stats::StatsDoc;

use crate::{create_topics, free_ports, opensearch_docs, opensearch_url, produce, require_broker, require_opensearch, unique_topic};

/// What the outputs of one run hold.
#[derive(Debug)]
pub struct Observed {
    /// `stats.ndjson`.
    pub docs: Vec<StatsDoc>,
    /// `alerts.ndjson`.
    pub alerts: Vec<AlertEvent>,
    /// `/metrics`, scraped once every record was counted.
    pub metrics: String,
    /// The stats documents read back from OpenSearch.
    pub indexed: Vec<Value>,
    /// Their index.
    pub indexed_index: String,
}

/// Copies `records` (produced to a fresh 2-partition topic) with `observe` (its window a
/// multiple of 100 ms), 2 workers, shipping to OpenSearch and serving `/metrics`; stops
/// once every record is in a closed window and two more windows have passed.
pub fn run_observed_outputs(brokers: &str, records: &[Record], observe: ObserveConfig) -> anyhow::Result<Observed> {
    require_broker(brokers)?;
    let url = opensearch_url();
    require_opensearch(&url)?;
    let (input, output) = (unique_topic("observed-in"), unique_topic("observed-out"));
    create_topics(brokers, &[&input, &output], 2)?;
    produce(brokers, &input, records)?;
    let stats_index = unique_topic("observed-stats").to_lowercase();
    let port = free_ports(1)?[0];
    let dir = tempfile::tempdir()?;
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    let file = FileConfig {
        job: JobConfig { input_topic: input, output_topic: output, group_id: unique_topic("observed"), epoch_interval: Duration::from_millis(100), ..JobConfig::default() },
        kafka,
        observe,
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: format!("127.0.0.1:{port}"), ..OutputConfig::default() },
        opensearch: OpenSearchConfig { url: url.clone(), stats_index: stats_index.clone(), alerts_index: unique_topic("observed-alerts").to_lowercase(), ..OpenSearchConfig::default() },
        profile: Default::default(),
    };
    let control = JobControl::new();
    let job_control = Arc::clone(&control);
    let job = std::thread::spawn(move || run_observed(file, &Cluster { workers: 2, ..Cluster::default() }, job_control));
    let stats = dir.path().join("stats.ndjson");
    let counted = wait_for_windows(&stats, records.len() as i64);
    let metrics = counted.and_then(|()| scrape(port));
    control.request_stop();
    let summary = job.join().map_err(|_| anyhow::anyhow!("the job panicked"))??;
    let metrics = metrics?;
    anyhow::ensure!(summary.records_delivered == records.len() as u64, "copied {} of {} records", summary.records_delivered, records.len());
    let docs: Vec<StatsDoc> = read_ndjson(&stats)?;
    let alerts = read_ndjson(&dir.path().join("alerts.ndjson")).unwrap_or_default();
    let indexed = opensearch_docs(&url, &stats_index, "window_start_ms")?;
    Ok(Observed { docs, alerts, metrics, indexed, indexed_index: stats_index })
}

/// Waits until the closed windows of `stats` hold `records` records and two more windows closed.
fn wait_for_windows(stats: &Path, records: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut after = None;
    loop {
        let docs: Vec<StatsDoc> = read_ndjson(stats).unwrap_or_default();
        let seen: i64 = docs.iter().map(|d| d.all_events).sum();
        if seen >= records && after.is_none() {
            after = Some(docs.len());
        }
        if after.is_some_and(|n| docs.len() >= n + 2) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "after 90 s the windows hold {seen} of {records} records");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /metrics` of the job.
fn scrape(port: u16) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).context("connecting to /metrics")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or(text))
}

/// The value of the first `/metrics` sample line of `family` whose labels include all of `labels`.
pub fn sample(metrics: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{')).find_map(|line| {
        let (head, value) = line.rsplit_once(' ')?;
        labels.iter().all(|(k, v)| head.contains(&format!("{k}=\"{v}\""))).then(|| value.parse().ok()).flatten()
    })
}

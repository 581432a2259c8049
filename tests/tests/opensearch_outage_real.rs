//! OpenSearch stopped mid-run and started again. The test runs a node of its own (on its
//! own ports, through `scripts/opensearch.sh`), so stopping it disturbs no other test.
//!
//! - A 60 s outage (the issue's): the passthrough copies every record regardless and
//!   keeps pace with the producer while the node is away; the documents written
//!   meanwhile wait in the sink's buffer and every one arrives after the restart, none
//!   lost, none twice (`tidewatch_opensearch_dropped` stays 0).
//! - An outage longer than the buffer holds (a buffer of 12 documents): the oldest are
//!   dropped, and the dropped count says exactly how many did not arrive; the ones that
//!   did are the job's documents, unchanged.
//!
//! Whether the copy's *rate* is unchanged by an outage is measured in the benchmarks
//! (`bench/src/bin/outage.rs`), not here.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;
use tidewatch_engine::opensearch::OpenSearchConfig;
use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_jobs::visits::{produce_into, GeneratorConfig, NeverStop, ProduceSettings, VisitGenerator};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_tests::exposition::scrape_parsed;
use tidewatch_tests::{create_topics, end_offsets, free_ports, http_json, opensearch_docs, real_brokers, require_broker, require_opensearch, unique_topic};

/// A node of this test's own, stopped when dropped.
struct Node {
    env: Vec<(String, String)>,
    url: String,
}

impl Node {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/opensearch.sh")
    }

    fn run(&self, action: &str, keep_data: bool) -> anyhow::Result<()> {
        let mut command = Command::new("bash");
        command.arg(Self::script()).arg(action).envs(self.env.iter().map(|(k, v)| (k, v)));
        if keep_data {
            command.env("TIDEWATCH_OPENSEARCH_KEEP_DATA", "1");
        }
        let status = command.status().with_context(|| format!("running scripts/opensearch.sh {action}"))?;
        if !status.success() {
            bail!("scripts/opensearch.sh {action} failed: {status}");
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.run("stop", false);
    }
}

const RATE: u64 = 2_000;

/// One outage: how long the node is away, and the sink's buffer.
struct Outage {
    down_for: Duration,
    buffer: usize,
}

/// What an outage run left: the documents the job wrote to its files (stats and alert
/// transitions), those OpenSearch holds, the sink's dropped count, and the copy.
struct Outcome {
    expected: Vec<Value>,
    got: Vec<Value>,
    dropped: f64,
    records: u64,
    copied_while_down: i64,
    delivered: u64,
}

fn node(ports: &[u16], state: &std::path::Path) -> Node {
    Node {
        env: vec![
            ("TIDEWATCH_OPENSEARCH_PORT".into(), ports[0].to_string()),
            ("TIDEWATCH_OPENSEARCH_TRANSPORT_PORT".into(), ports[1].to_string()),
            ("TIDEWATCH_STATE_DIR".into(), state.display().to_string()),
        ],
        url: format!("http://127.0.0.1:{}", ports[0]),
    }
}

fn job_file(brokers: &str, topics: (&str, &str, &str), dir: &std::path::Path, metrics: &str, url: &str, buffer: usize) -> FileConfig {
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers.to_owned());
    FileConfig {
        job: JobConfig {
            input_topic: topics.0.to_owned(),
            output_topic: topics.1.to_owned(),
            group_id: topics.2.to_owned(),
            epoch_interval: Duration::from_millis(100),
            ..JobConfig::default()
        },
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: OutputConfig { dir: dir.to_owned(), metrics_addr: metrics.to_owned(), ..OutputConfig::default() },
        opensearch: OpenSearchConfig { url: url.to_owned(), buffer, ..OpenSearchConfig::default() },
        profile: Default::default(),
    }
}

/// Waits until the sink holds nothing (every document indexed or dropped); the dropped
/// count then.
fn drained(metrics: &str, timeout: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, exposition) = scrape_parsed(metrics)?;
        let buffered = exposition.sum("tidewatch_opensearch_buffered", &[]).unwrap_or(f64::NAN);
        if buffered == 0.0 {
            return Ok(exposition.sum("tidewatch_opensearch_dropped_total", &[]).unwrap_or(0.0));
        }
        if Instant::now() > deadline {
            bail!("{buffered} documents still wait for OpenSearch {timeout:?} after its restart");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn run_outage(outage: &Outage, name: &str) -> anyhow::Result<Outcome> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let ports = free_ports(3)?;
    let state = tempfile::tempdir()?;
    let node = node(&ports, state.path());
    node.run("start", false)?;
    require_opensearch(&node.url)?;

    let (input, output, group) = (unique_topic(&format!("{name}-in")), unique_topic(&format!("{name}-out")), unique_topic(name));
    create_topics(&brokers, &[&input, &output], 2)?;
    let dir = tempfile::tempdir()?;
    let metrics = format!("127.0.0.1:{}", ports[2]);
    let file = job_file(&brokers, (&input, &output, &group), dir.path(), &metrics, &node.url, outage.buffer);
    let control = JobControl::new();
    let job_control = Arc::clone(&control);
    let job = std::thread::spawn(move || run_observed(file, &Cluster::default(), job_control));

    // The producer offers records from before the outage until after it.
    let records = RATE * (outage.down_for.as_secs() + 8);
    let (producer_brokers, producer_topic) = (brokers.clone(), input.clone());
    let producer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut generator = VisitGenerator::try_new(GeneratorConfig { seed: 4, partitions: 2, ..GeneratorConfig::default() })?;
        produce_into(&ProduceSettings { count: Some(records), rate: RATE, ..ProduceSettings::new(&producer_brokers, &producer_topic) }, &mut generator, &NeverStop, None)?;
        Ok(())
    });

    std::thread::sleep(Duration::from_secs(3));
    let copied_before: i64 = end_offsets(&brokers, &output, 2)?.values().sum();
    node.run("stop", false)?;
    std::thread::sleep(outage.down_for);
    // While OpenSearch was away the copy went on.
    let copied_while_down = end_offsets(&brokers, &output, 2)?.values().sum::<i64>() - copied_before;
    node.run("start", true)?;
    producer.join().map_err(|_| anyhow::anyhow!("producer panicked"))??;

    let deadline = Instant::now() + Duration::from_secs(60);
    while end_offsets(&brokers, &output, 2)?.values().sum::<i64>() < records as i64 {
        if Instant::now() > deadline {
            control.request_stop();
            bail!("the passthrough did not copy every record");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The sink retries with a backoff of up to 30 s: wait until it has shipped its buffer.
    let dropped = drained(&metrics, Duration::from_secs(90))?;
    control.request_stop();
    let summary = job.join().map_err(|_| anyhow::anyhow!("job thread panicked"))??;

    let mut expected: Vec<Value> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let mut got = opensearch_docs(&node.url, "visits_observation_stats", "window_start_ms")?;
    // Alert transitions share the sink's buffer (and so its dropped count).
    let alerts = dir.path().join("alerts.ndjson");
    let alerts: Vec<Value> = if alerts.exists() { read_ndjson(&alerts)? } else { Vec::new() };
    // (The index exists only if one of them arrived.)
    if !alerts.is_empty() && http_json("GET", &format!("{}/visits_observation_alerts", node.url), None)?.0 == 200 {
        got.extend(opensearch_docs(&node.url, "visits_observation_alerts", "@timestamp")?);
    }
    expected.extend(alerts);
    Ok(Outcome { expected, got, dropped, records, copied_while_down, delivered: summary.records_delivered })
}

/// The copy went on at the producer's pace while OpenSearch was away.
fn check_copy(outcome: &Outcome, outage: &Outage) {
    assert_eq!(outcome.delivered, outcome.records, "every record copied");
    let offered = (RATE * outage.down_for.as_secs()) as i64;
    assert!(
        outcome.copied_while_down * 10 >= offered * 9,
        "the copy kept pace while OpenSearch was down: {} of about {offered} records offered meanwhile",
        outcome.copied_while_down
    );
}

#[test]
fn real_opensearch_60s_outage_loses_no_record_and_no_buffered_document() -> anyhow::Result<()> {
    let outage = Outage { down_for: Duration::from_secs(60), buffer: 10_000 };
    let outcome = run_outage(&outage, "outage60")?;
    check_copy(&outcome, &outage);
    assert_eq!(outcome.dropped, 0.0, "nothing dropped");
    assert!(outcome.expected.len() > 120, "a document per window at least: {}", outcome.expected.len());
    assert_eq!(outcome.got.len(), outcome.expected.len(), "every document reached OpenSearch after the restart");
    let mut expected = outcome.expected.clone();
    let mut got = outcome.got.clone();
    expected.sort_by_key(Value::to_string);
    got.sort_by_key(Value::to_string);
    assert_eq!(got, expected);
    Ok(())
}

#[test]
fn real_opensearch_outage_beyond_the_buffer_counts_exactly_the_dropped_documents() -> anyhow::Result<()> {
    let outage = Outage { down_for: Duration::from_secs(12), buffer: 12 };
    let outcome = run_outage(&outage, "outage-drop")?;
    check_copy(&outcome, &outage);
    let (expected, got) = (&outcome.expected, &outcome.got);
    assert!(outcome.dropped > 0.0, "a 12 s outage at 2 windows a second overflows a buffer of 12");
    assert_eq!(
        got.len() as f64 + outcome.dropped,
        expected.len() as f64,
        "what arrived plus what the dropped count says is every document the job wrote"
    );
    let known: std::collections::HashSet<String> = expected.iter().map(Value::to_string).collect();
    for doc in got {
        assert!(known.contains(&doc.to_string()), "a document in OpenSearch is one the job wrote, unchanged: {doc}");
    }
    Ok(())
}

//! OpenSearch stopped mid-run and started again: the passthrough copies every record
//! regardless, the documents written while OpenSearch was away wait in the sink's buffer
//! and arrive after the restart, none lost. The test runs a node of its own (on its own
//! ports, through `scripts/opensearch.sh`), so stopping it disturbs no other test.

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
use tidewatch_tests::{create_topics, end_offsets, free_ports, opensearch_docs, real_brokers, require_broker, require_opensearch, unique_topic};

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

#[test]
fn real_opensearch_outage_loses_no_record_and_no_buffered_document() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let ports = free_ports(2)?;
    let state = tempfile::tempdir()?;
    let node = Node {
        env: vec![
            ("TIDEWATCH_OPENSEARCH_PORT".into(), ports[0].to_string()),
            ("TIDEWATCH_OPENSEARCH_TRANSPORT_PORT".into(), ports[1].to_string()),
            ("TIDEWATCH_STATE_DIR".into(), state.path().display().to_string()),
        ],
        url: format!("http://127.0.0.1:{}", ports[0]),
    };
    node.run("start", false)?;
    require_opensearch(&node.url)?;

    let (input, output, group) = (unique_topic("out-in"), unique_topic("out-out"), unique_topic("outage"));
    create_topics(&brokers, &[&input, &output], 2)?;
    let dir = tempfile::tempdir()?;
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers.clone());
    let file = FileConfig {
        job: JobConfig { input_topic: input.clone(), output_topic: output.clone(), group_id: group, epoch_interval: Duration::from_millis(100), ..JobConfig::default() },
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
        opensearch: OpenSearchConfig { url: node.url.clone(), ..OpenSearchConfig::default() },
        profile: Default::default(),
    };
    let control = JobControl::new();
    let job_control = Arc::clone(&control);
    let job = std::thread::spawn(move || run_observed(file, &Cluster::default(), job_control));

    const RECORDS: u64 = 24_000;
    let producer_brokers = brokers.clone();
    let producer_topic = input.clone();
    let producer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut generator = VisitGenerator::try_new(GeneratorConfig { seed: 4, partitions: 2, ..GeneratorConfig::default() })?;
        produce_into(&ProduceSettings { count: Some(RECORDS), rate: 2_000, ..ProduceSettings::new(&producer_brokers, &producer_topic) }, &mut generator, &NeverStop, None)?;
        Ok(())
    });

    std::thread::sleep(Duration::from_secs(3));
    node.run("stop", false)?;
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    // While OpenSearch is away the copy goes on.
    let copied_while_down: i64 = end_offsets(&brokers, &output, 2)?.values().sum();
    node.run("start", true)?;
    producer.join().map_err(|_| anyhow::anyhow!("producer panicked"))??;

    let deadline = Instant::now() + Duration::from_secs(60);
    while end_offsets(&brokers, &output, 2)?.values().sum::<i64>() < RECORDS as i64 {
        if Instant::now() > deadline {
            control.request_stop();
            bail!("the passthrough did not copy every record");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    control.request_stop();
    let summary = job.join().map_err(|_| anyhow::anyhow!("job thread panicked"))??;
    assert_eq!(summary.records_delivered, RECORDS, "every record copied");
    assert!(copied_while_down > 6_000, "the copy went on while OpenSearch was down ({copied_while_down} records after {:?})", down_at.elapsed());

    let expected: Vec<Value> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let got = opensearch_docs(&node.url, "visits_observation_stats", "window_start_ms")?;
    assert_eq!(got.len(), expected.len(), "every stats document reached OpenSearch after the restart");
    assert_eq!(got, expected);
    Ok(())
}

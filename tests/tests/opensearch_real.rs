//! Observations shipped to a real OpenSearch node (`scripts/opensearch.sh start`): the
//! documents read back equal the NDJSON stats file, and the dashboard's own query (sum of
//! invalid_* per 1-minute date_histogram on `@timestamp`) returns the expected totals.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tidewatch_engine::opensearch::OpenSearchConfig;
use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_jobs::visits::{produce_into, FaultMix, GeneratorConfig, NeverStop, ProduceSettings, VisitGenerator};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_tests::{create_topics, http_json, opensearch_docs, opensearch_url, real_brokers, require_broker, require_opensearch, unique_topic};

#[test]
fn real_opensearch_documents_equal_the_ndjson_stats_and_the_dashboard_query_adds_up() -> anyhow::Result<()> {
    let brokers = real_brokers();
    let url = opensearch_url();
    require_broker(&brokers)?;
    require_opensearch(&url)?;
    let (input, output, group) = (unique_topic("os-in"), unique_topic("os-out"), unique_topic("os"));
    create_topics(&brokers, &[&input, &output], 2)?;
    let stats_index = unique_topic("stats").to_lowercase();
    let alerts_index = unique_topic("alerts").to_lowercase();

    let dir = tempfile::tempdir()?;
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers.clone());
    let file = FileConfig {
        job: JobConfig { input_topic: input.clone(), output_topic: output, group_id: group, epoch_interval: Duration::from_millis(100), ..JobConfig::default() },
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
        opensearch: OpenSearchConfig { url: url.clone(), stats_index: stats_index.clone(), alerts_index, ..OpenSearchConfig::default() },
        profile: Default::default(),
    };
    let control = JobControl::new();
    let job_control = Arc::clone(&control);
    let job = std::thread::spawn(move || run_observed(file, &Cluster { workers: 2, ..Cluster::default() }, job_control));

    // Visits at a steady rate over several windows, with every fault.
    let config = GeneratorConfig { seed: 21, partitions: 2, faults: FaultMix::uniform(0.05), ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::try_new(config)?;
    produce_into(&ProduceSettings { count: Some(12_000), rate: 4_000, ..ProduceSettings::new(&brokers, &input) }, &mut generator, &NeverStop, None)?;
    std::thread::sleep(Duration::from_secs(2));
    control.request_stop();
    let summary = job.join().map_err(|_| anyhow::anyhow!("job thread panicked"))??;
    assert_eq!(summary.records_delivered, 12_000);

    let expected: Vec<Value> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    assert!(expected.len() >= 4, "several windows: {}", expected.len());
    let got = opensearch_docs(&url, &stats_index, "window_start_ms")?;
    assert_eq!(got.len(), expected.len(), "documents in OpenSearch vs lines in stats.ndjson");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "a document differs from its NDJSON line");
    }

    // The dashboard's query: invalid_* summed per 1-minute bucket of @timestamp.
    let fields = ["invalid_event_time", "invalid_user_id", "invalid_page"];
    let mut aggs = serde_json::Map::new();
    for f in fields {
        aggs.insert(f.to_owned(), json!({ "sum": { "field": f } }));
    }
    let query = json!({
        "size": 0,
        "aggs": { "per_minute": { "date_histogram": { "field": "@timestamp", "fixed_interval": "1m" }, "aggs": aggs } }
    });
    let (status, reply) = http_json("POST", &format!("{url}/{stats_index}/_search"), Some(&query))?;
    assert_eq!(status, 200, "{reply}");
    let buckets = reply["aggregations"]["per_minute"]["buckets"].as_array().cloned().unwrap_or_default();
    assert!(!buckets.is_empty());
    for f in fields {
        let from_buckets: f64 = buckets.iter().map(|b| b[f]["value"].as_f64().unwrap_or(0.0)).sum();
        let from_file: i64 = expected.iter().map(|d| d[f].as_i64().unwrap_or(0)).sum();
        assert!(from_file > 0, "{f}: faults were injected");
        assert_eq!(from_buckets as i64, from_file, "{f}");
    }
    Ok(())
}

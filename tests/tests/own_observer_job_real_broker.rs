//! A job of your own (`examples/own-observer-job`: tidewatch's command line with one
//! observer registered in its `main`) runs as 2 processes × 2 workers against the real
//! broker; its observer's counts per partition equal an independent count of the
//! records produced, and the copy is complete.

use std::collections::BTreeMap;

use tidewatch_engine::Record;
use tidewatch_jobs::outputs::read_ndjson;
use tidewatch_operators::stats::StatsDoc;
use tidewatch_tests::{create_topics, end_offsets, produce, real_brokers, require_broker, run_processes_of, unique_topic, workspace_bin};

#[test]
fn real_broker_a_job_of_your_own_runs_two_processes_of_two_workers_with_its_observer() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("own-in"), unique_topic("own-out"), unique_topic("own"));
    create_topics(&brokers, &[&input, &output], 4)?;
    let records: Vec<Record> = (0..8_000_u32)
        .map(|i| Record {
            partition: (i % 4) as i32,
            offset: 0,
            timestamp: None,
            key: (i % 3 != 0).then(|| format!("key-{}", i % 1_000).into_bytes().into()),
            value: Some(format!(r#"{{"n":{i}}}"#).into_bytes().into()),
            headers: vec![],
        })
        .collect();
    produce(&brokers, &input, &records)?;
    // The independent count, per partition.
    let mut null_keys: BTreeMap<i32, f64> = BTreeMap::new();
    let mut key_bytes: BTreeMap<i32, f64> = BTreeMap::new();
    for r in &records {
        match &r.key {
            None => *null_keys.entry(r.partition).or_default() += 1.0,
            Some(k) => *key_bytes.entry(r.partition).or_default() += k.len() as f64,
        }
    }

    let bin = workspace_bin("own-observer-job", "own-observer-job")?;
    let dir = tempfile::tempdir()?;
    let args = ["--until-end", "--epoch", "100ms", "--window", "500ms", "--brokers", &brokers, "--input", &input, "--output", &output, "--group", &group];
    run_processes_of(&bin, dir.path(), 2, 2, &args)?;
    assert_eq!(end_offsets(&brokers, &output, 4)?.values().sum::<i64>(), records.len() as i64, "every record copied");

    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("p0/stats.ndjson"))?;
    let total = |metric: &str, partition: i32| docs.iter().filter_map(|d| d.metrics.get(&format!("key_sizes.{metric}.partition.{partition}"))).sum::<f64>();
    for partition in 0..4 {
        assert_eq!(total("null_keys", partition), null_keys[&partition], "null keys of partition {partition}");
        assert_eq!(total("key_bytes", partition), key_bytes[&partition], "key bytes of partition {partition}");
    }
    // The built-in observers run beside it.
    assert_eq!(docs.iter().map(|d| d.all_events).sum::<i64>(), records.len() as i64);
    Ok(())
}

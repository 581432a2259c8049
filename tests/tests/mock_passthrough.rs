//! Quick checks of the passthrough on librdkafka's in-process mock cluster. They
//! complement the real-broker tests in `passthrough_real_broker.rs`, never replace them.

use std::sync::Arc;

use rdkafka::mocking::MockCluster;
use tidewatch_engine::{run_job, Cluster, JobConfig, JobControl, KafkaConfig, NoObservers};
use tidewatch_tests::{assert_copied_exactly, committed, corpus, end_offsets, produce, read_all};

fn job(input: &str, output: &str, group: &str) -> JobConfig {
    JobConfig {
        input_topic: input.to_owned(),
        output_topic: output.to_owned(),
        group_id: group.to_owned(),
        epoch_interval: std::time::Duration::from_millis(50),
        until_end: true,
        ..JobConfig::default()
    }
}

#[test]
fn mock_cluster_copies_every_record_and_commits_the_end_offsets() -> anyhow::Result<()> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("in", 3, 1)?;
    cluster.create_topic("out", 3, 1)?;
    let brokers = cluster.bootstrap_servers();
    let records = corpus(2_000, 3, false);
    produce(&brokers, "in", &records)?;

    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers.clone());
    let layout = Cluster { workers: 2, ..Cluster::default() };
    let summary = run_job(job("in", "out", "g1"), kafka.clone(), &layout, JobControl::new(), NoObservers)?;
    assert_eq!(summary.records_in, 2_000);
    assert_eq!(summary.records_delivered, 2_000);
    assert_copied_exactly(&records, &read_all(&brokers, "out")?);

    let ends = end_offsets(&brokers, "in", 3)?;
    let got = committed(&brokers, "g1", "in", 3)?;
    for (p, end) in ends {
        assert_eq!(got[&p], Some(end), "partition {p}");
    }

    // A second bounded run finds nothing left to copy.
    let again = run_job(job("in", "out", "g1"), kafka, &layout, Arc::new(JobControl::default()), NoObservers)?;
    assert_eq!(again.records_in, 0);
    assert_eq!(read_all(&brokers, "out")?.values().map(Vec::len).sum::<usize>(), 2_000);
    Ok(())
}

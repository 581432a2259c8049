//! The passthrough against a real Apache Kafka broker (`scripts/kafka.sh start`):
//! every record copied once, byte-identical, same partition, same order, for 1 worker,
//! 3 workers (an uneven split of 4 partitions) and 2 processes × 2 workers; offsets
//! committed at the end; a second run copies nothing; a resumed run completes the copy.

use std::time::Duration;

use tidewatch_engine::{run_job, Cluster, JobConfig, JobControl, KafkaConfig, NoObservers, Record};
use tidewatch_tests::{
    assert_copied_exactly, committed, corpus, create_topics, end_offsets, produce, read_all, real_brokers,
    require_broker, run_processes, unique_topic,
};

const PARTITIONS: i32 = 4;
const RECORDS: usize = 10_000;

struct Topics {
    input: String,
    output: String,
    group: String,
}

fn setup(name: &str) -> anyhow::Result<(String, Topics)> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let topics = Topics { input: unique_topic(&format!("{name}-in")), output: unique_topic(&format!("{name}-out")), group: unique_topic(name) };
    create_topics(&brokers, &[&topics.input, &topics.output], PARTITIONS)?;
    Ok((brokers, topics))
}

fn config(brokers: &str, topics: &Topics) -> (JobConfig, KafkaConfig) {
    let job = JobConfig {
        input_topic: topics.input.clone(),
        output_topic: topics.output.clone(),
        group_id: topics.group.clone(),
        epoch_interval: Duration::from_millis(100),
        until_end: true,
        ..JobConfig::default()
    };
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    kafka.producer.insert("message.max.bytes".into(), "2000000".into());
    (job, kafka)
}

fn assert_committed_to_end(brokers: &str, topics: &Topics) -> anyhow::Result<()> {
    let ends = end_offsets(brokers, &topics.input, PARTITIONS)?;
    let got = committed(brokers, &topics.group, &topics.input, PARTITIONS)?;
    for (p, end) in ends {
        assert_eq!(got[&p], Some(end), "committed offset of partition {p}");
    }
    Ok(())
}

fn copy_in_process(workers: usize, name: &str) -> anyhow::Result<()> {
    let (brokers, topics) = setup(name)?;
    let records = corpus(RECORDS, PARTITIONS, true);
    produce(&brokers, &topics.input, &records)?;
    let (job, kafka) = config(&brokers, &topics);
    let layout = Cluster { workers, ..Cluster::default() };
    let summary = run_job(job.clone(), kafka.clone(), &layout, JobControl::new(), NoObservers)?;
    assert_eq!(summary.records_in, RECORDS as u64);
    assert_eq!(summary.records_delivered, RECORDS as u64);
    assert_copied_exactly(&records, &read_all(&brokers, &topics.output)?);
    assert_committed_to_end(&brokers, &topics)?;

    let again = run_job(job, kafka, &layout, JobControl::new(), NoObservers)?;
    assert_eq!(again.records_in, 0, "a second run must copy nothing");
    assert_copied_exactly(&records, &read_all(&brokers, &topics.output)?);
    Ok(())
}

#[test]
fn real_broker_one_worker_copies_byte_exact() -> anyhow::Result<()> {
    copy_in_process(1, "w1")
}

#[test]
fn real_broker_three_workers_share_four_partitions_unevenly() -> anyhow::Result<()> {
    copy_in_process(3, "w3")
}

#[test]
fn real_broker_two_processes_of_two_workers() -> anyhow::Result<()> {
    let (brokers, topics) = setup("n2w2")?;
    let records = corpus(RECORDS, PARTITIONS, true);
    produce(&brokers, &topics.input, &records)?;
    let dir = tempfile::tempdir()?;
    let args = ["--until-end", "--epoch", "100ms", "--brokers", &brokers, "--input", &topics.input, "--output", &topics.output, "--group", &topics.group];
    run_processes(dir.path(), 2, 2, &[&args[..], &["-X", "message.max.bytes=2000000"]].concat())?;
    assert_copied_exactly(&records, &read_all(&brokers, &topics.output)?);
    assert_committed_to_end(&brokers, &topics)?;
    Ok(())
}

#[test]
fn real_broker_resume_after_a_bounded_run_copies_the_rest_exactly() -> anyhow::Result<()> {
    let (brokers, topics) = setup("resume")?;
    let records = corpus(RECORDS, PARTITIONS, false);
    let (first, second) = records.split_at(RECORDS / 2);
    let (job, kafka) = config(&brokers, &topics);
    let layout = Cluster { workers: 2, ..Cluster::default() };

    produce(&brokers, &topics.input, first)?;
    let one = run_job(job.clone(), kafka.clone(), &layout, JobControl::new(), NoObservers)?;
    assert_eq!(one.records_in, first.len() as u64);
    assert_copied_exactly(first, &read_all(&brokers, &topics.output)?);

    produce(&brokers, &topics.input, second)?;
    let two = run_job(job, kafka, &layout, JobControl::new(), NoObservers)?;
    assert_eq!(two.records_in, second.len() as u64);
    assert_copied_exactly(&records, &read_all(&brokers, &topics.output)?);
    assert_committed_to_end(&brokers, &topics)?;
    Ok(())
}

/// Regression: the source skips librdkafka's header parser for records whose header count
/// it can read after the value; a record with an empty value (librdkafka points it at a
/// static empty string, not into the fetched bytes) once lost its headers that way.
#[test]
fn real_broker_headers_survive_empty_null_and_one_byte_values() -> anyhow::Result<()> {
    let (brokers, topics) = setup("hdrs")?;
    let headers = vec![("trace".to_owned(), Some(b"t1".to_vec())), ("empty".to_owned(), None)];
    let values: [Option<&[u8]>; 4] = [Some(b""), None, Some(b"x"), Some(b"{\"page\":\"index\"}")];
    let mut records = Vec::new();
    for (i, value) in values.iter().cycle().take(40).enumerate() {
        let partition = (i % PARTITIONS as usize) as i32;
        let with_headers = i % 2 == 0;
        records.push(Record {
            partition,
            offset: -1,
            timestamp: Some(1_700_000_000_000 + i as i64),
            key: Some(format!("k{i}").into_bytes().into()),
            value: value.map(Into::into),
            headers: if with_headers { headers.clone() } else { Vec::new() },
        });
    }
    produce(&brokers, &topics.input, &records)?;
    let (job, kafka) = config(&brokers, &topics);
    let summary = run_job(job, kafka, &Cluster::default(), JobControl::new(), NoObservers)?;
    assert_eq!(summary.records_delivered, records.len() as u64);
    assert_copied_exactly(&records, &read_all(&brokers, &topics.output)?);
    Ok(())
}

//! Exactly-once mode against a real Apache Kafka broker (`scripts/kafka.sh start`):
//! `read_committed` readers of the output see every input record once, byte for byte,
//! same partition, same order, for 1 and 3 workers and 2 processes × 2 workers; the
//! input offsets are committed within the transactions (a second run copies nothing);
//! a second instance with the same transactional ids fences the first, which fails
//! cleanly, and the output still holds each record once; a job started over the open
//! transaction of a crashed instance (records and offsets sent, never committed) fences it
//! and runs through, its records never visible. (Crashes of the broker and of
//! the job are in `faults_real_broker.rs`.)

use std::time::{Duration, Instant};

use tidewatch_engine::{run_job, Cluster, Guarantee, JobConfig, JobControl, KafkaConfig, NoObservers};
use tidewatch_tests::faults::{assert_exactly_once, read_topic, wait_committed, Job, SteadyProducer};
use tidewatch_tests::{
    assert_copied_exactly, committed, corpus, create_topics, end_offsets, produce, real_brokers, require_broker, run_processes,
    unique_topic,
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
    let topics =
        Topics { input: unique_topic(&format!("{name}-in")), output: unique_topic(&format!("{name}-out")), group: unique_topic(name) };
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
        guarantee: Guarantee::ExactlyOnce,
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
    assert_copied_exactly(&records, &read_topic(&brokers, &topics.output, true)?);
    assert_committed_to_end(&brokers, &topics)?;

    let again = run_job(job, kafka, &layout, JobControl::new(), NoObservers)?;
    assert_eq!(again.records_in, 0, "a second run must copy nothing");
    assert_copied_exactly(&records, &read_topic(&brokers, &topics.output, true)?);
    Ok(())
}

#[test]
fn real_broker_exactly_once_one_worker_copies_byte_exact() -> anyhow::Result<()> {
    copy_in_process(1, "eos-w1")
}

#[test]
fn real_broker_exactly_once_three_workers_share_four_partitions() -> anyhow::Result<()> {
    copy_in_process(3, "eos-w3")
}

#[test]
fn real_broker_exactly_once_two_processes_of_two_workers() -> anyhow::Result<()> {
    let (brokers, topics) = setup("eos-n2w2")?;
    let records = corpus(RECORDS, PARTITIONS, true);
    produce(&brokers, &topics.input, &records)?;
    let dir = tempfile::tempdir()?;
    let args = [
        "--exactly-once",
        "--until-end",
        "--epoch",
        "100ms",
        "--brokers",
        &brokers,
        "--input",
        &topics.input,
        "--output",
        &topics.output,
        "--group",
        &topics.group,
        "-X",
        "message.max.bytes=2000000",
    ];
    run_processes(dir.path(), 2, 2, &args)?;
    assert_copied_exactly(&records, &read_topic(&brokers, &topics.output, true)?);
    assert_committed_to_end(&brokers, &topics)?;
    Ok(())
}

#[test]
fn real_broker_exactly_once_second_instance_fences_the_first() -> anyhow::Result<()> {
    let (brokers, topics) = setup("eos-fence")?;
    const COUNT: u64 = 16_000;
    let producer = SteadyProducer::spawn(&brokers, &topics.input, PARTITIONS, 2_000, COUNT)?;
    let args = [
        "--exactly-once",
        "--brokers",
        &brokers,
        "--input",
        &topics.input,
        "--output",
        &topics.output,
        "--group",
        &topics.group,
        "--epoch",
        "200ms",
        "-w",
        "2",
    ];
    let (first_dir, second_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut first = Job::start(first_dir.path(), &args)?;
    producer.wait_offered(COUNT / 4, Duration::from_secs(60))?;
    // The first instance keeps running (a "zombie" to the second, which has the same ids).
    let mut second = Job::start(second_dir.path(), &args)?;

    // The first is fenced at its next transaction and fails; it must not be restarted.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = first.try_wait()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "the fenced instance still runs after 90 s\n{}", first.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "the fenced instance must fail, it exited with {status}");
    let log = first.logs();
    assert!(log.to_lowercase().contains("fenced"), "the fenced instance's error names the fencing:\n{log}");

    producer.finish()?;
    wait_committed(&mut second, &brokers, &topics.group, &topics.input, PARTITIONS, COUNT as i64, Duration::from_secs(180))?;
    assert!(second.stop(Duration::from_secs(60))?, "the second instance exits 0 on SIGTERM\n{}", second.logs());
    assert_eq!(second.starts, 1, "the second instance ran through: {:?}", second.failures);
    let input = read_topic(&brokers, &topics.input, true)?;
    assert_eq!(input.values().map(Vec::len).sum::<usize>() as u64, COUNT);
    assert_exactly_once(&input, &read_topic(&brokers, &topics.output, true)?);
    Ok(())
}

/// A crashed instance left a transaction open with records and offsets in it: the
/// restarted job must fence it (aborting it) before it reads where to start — it used to
/// wait for the open transaction's offsets and fail until the broker timed it out.
#[test]
fn real_broker_exactly_once_restart_over_an_open_transaction_fences_it_and_runs_through() -> anyhow::Result<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};

    let (brokers, topics) = setup("eos-open")?;
    let records = corpus(2_000, PARTITIONS, false);
    produce(&brokers, &topics.input, &records)?;
    let (job, kafka) = config(&brokers, &topics);

    // The "crashed" worker 0: its transactional id, a record and offsets past the whole input sent, no commit.
    let zombie: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", job.transactional_id(0))
        .set("transaction.timeout.ms", "300000")
        .create()?;
    zombie.init_transactions(Duration::from_secs(30))?;
    zombie.begin_transaction()?;
    zombie.send(BaseRecord::<[u8], [u8]>::to(&topics.output).partition(0).payload(&b"zombie"[..])).map_err(|(e, _)| e)?;
    zombie.flush(Duration::from_secs(30))?;
    let group: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", &topics.group).create()?;
    let metadata = group.group_metadata().ok_or_else(|| anyhow::anyhow!("no group metadata"))?;
    let mut offsets = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        offsets.add_partition_offset(&topics.input, p, Offset::Offset(1_000_000))?;
    }
    zombie.send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30))?;

    let started = Instant::now();
    let summary = run_job(job, kafka, &Cluster::default(), JobControl::new(), NoObservers)?;
    assert!(started.elapsed() < Duration::from_secs(40), "the restart waited {:?} for the open transaction", started.elapsed());
    assert_eq!(summary.records_in, records.len() as u64, "the open transaction's offsets must not count");
    assert_copied_exactly(&records, &read_topic(&brokers, &topics.output, true)?);
    assert_committed_to_end(&brokers, &topics)?;
    // The zombie is fenced: it can no longer commit.
    assert!(zombie.commit_transaction(Duration::from_secs(30)).is_err(), "the fenced producer committed");
    Ok(())
}

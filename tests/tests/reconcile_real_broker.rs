//! `tidewatch reconcile` against a real Apache Kafka broker (`scripts/kafka.sh start`):
//! after a real run of the job it finds nothing wrong; after records are deleted from the
//! front of an output partition (`DeleteRecords`, what `kafka-delete-records` sends) it
//! reports exactly those input offsets missing; after records are produced to the output
//! a second time it reports exactly those duplicated, and a foreign record unexpected;
//! the command's exit code and JSON say the same; after a `kill -9` of the job mid-stream
//! the duplicates it reports are those an independent count of the output finds, and an
//! exactly-once output reconciles clean with `read_committed`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::{Offset, TopicPartitionList};
use tidewatch_engine::{run_job, Cluster, JobConfig, JobControl, KafkaConfig, NoObservers, Record};
use tidewatch_jobs::reconcile::report::{Report, Span};
use tidewatch_jobs::reconcile::{reconcile, ReconcileArgs};
use tidewatch_tests::faults::{assert_exactly_once, assert_nothing_lost, read_topic, wait_committed, Job, SteadyProducer};
use tidewatch_tests::{corpus, create_topics, end_offsets, produce, read_all, real_brokers, require_broker, tidewatch_bin, unique_topic};

const PARTITIONS: i32 = 4;
const RECORDS: usize = 8_000;

struct Copied {
    brokers: String,
    input: String,
    output: String,
    group: String,
    records: Vec<Record>,
}

/// Produces the corpus plus, in partition 3, records identical to earlier ones (key,
/// value, headers and timestamp: legitimately the same twice), copies it with the real
/// job to the end, and returns the topics.
fn copied(name: &str) -> anyhow::Result<Copied> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic(&format!("{name}-in")), unique_topic(&format!("{name}-out")), unique_topic(name));
    create_topics(&brokers, &[&input, &output], PARTITIONS)?;
    let mut records = corpus(RECORDS, PARTITIONS, false);
    let again: Vec<Record> = records.iter().filter(|r| r.partition == 3).take(50).cloned().collect();
    records.extend(again);
    produce(&brokers, &input, &records)?;
    let job = JobConfig { input_topic: input.clone(), output_topic: output.clone(), group_id: group.clone(), epoch_interval: Duration::from_millis(100), until_end: true, ..JobConfig::default() };
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", &brokers);
    let summary = run_job(job, kafka, &Cluster { workers: 2, ..Cluster::default() }, JobControl::new(), NoObservers)?;
    assert_eq!(summary.records_delivered, records.len() as u64);
    Ok(Copied { brokers, input, output, group, records })
}

impl Copied {
    fn args(&self) -> ReconcileArgs {
        ReconcileArgs {
            brokers: Some(self.brokers.clone()),
            input: Some(self.input.clone()),
            output: Some(self.output.clone()),
            group: Some(self.group.clone()),
            window: Some(Duration::from_secs(1)),
            ..ReconcileArgs::default()
        }
    }

    fn reconcile(&self) -> anyhow::Result<Report> {
        Ok(reconcile(&self.args().plan()?)?)
    }

    /// The records of input partition `p` at offsets `range`, as read from the input.
    fn input_records(&self, p: i32, range: std::ops::Range<usize>) -> anyhow::Result<Vec<Record>> {
        let all = read_all(&self.brokers, &self.input)?;
        Ok(all.get(&p).context("no such partition")?[range].to_vec())
    }
}

fn span(from: i64, to: i64, extra: Option<u32>) -> Span {
    Span { from, to, extra }
}

/// Deletes the records of `topic[partition]` below `before`, as `kafka-delete-records` does.
fn delete_records(brokers: &str, topic: &str, partition: i32, before: i64) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(topic, partition, Offset::Offset(before))?;
    let result = futures_executor::block_on(admin.delete_records(&offsets, &AdminOptions::new()))?;
    for entry in result.elements() {
        if let Err(error) = entry.error() {
            bail!("deleting records of {topic}[{partition}] below {before}: {error}");
        }
    }
    Ok(())
}

#[test]
fn real_broker_a_real_run_reconciles_clean_with_identical_input_records_counted_once() -> anyhow::Result<()> {
    let run = copied("rec-clean")?;
    let report = run.reconcile()?;
    let ends = end_offsets(&run.brokers, &run.input, PARTITIONS)?;
    let t = report.totals;
    assert!(report.clean, "{report:#?}");
    assert_eq!((t.expected, t.found), (run.records.len() as u64, run.records.len() as u64));
    assert_eq!((t.missing, t.duplicated, t.extra_copies, t.unexpected, t.in_flight, t.outside), (0, 0, 0, 0, 0, 0));
    for p in &report.partitions {
        assert_eq!(p.committed, Some(ends[&p.partition]), "partition {}", p.partition);
        assert_eq!(p.counts.expected as i64, ends[&p.partition], "partition {}", p.partition);
        assert_eq!(p.windows.iter().map(|w| w.counts.expected).sum::<u64>(), p.counts.expected);
    }

    // Records produced after the run are in flight: not due, not a problem.
    produce(&run.brokers, &run.input, &corpus(100, PARTITIONS, false))?;
    let later = run.reconcile()?;
    assert!(later.clean, "{later:#?}");
    assert_eq!((later.totals.in_flight, later.totals.in_flight_copied, later.totals.expected), (100, 0, run.records.len() as u64));
    Ok(())
}

#[test]
fn real_broker_records_deleted_from_the_output_are_exactly_the_missing_ones() -> anyhow::Result<()> {
    let run = copied("rec-deleted")?;
    // Partition 3 holds the repeated records too: its deleted prefix recurs later in the input.
    delete_records(&run.brokers, &run.output, 1, 120)?;
    delete_records(&run.brokers, &run.output, 3, 7)?;
    let report = run.reconcile()?;
    assert!(!report.clean);
    let by_partition: BTreeMap<i32, _> = report.partitions.iter().map(|p| (p.partition, p)).collect();
    assert_eq!(by_partition[&1].missing_offsets, vec![span(0, 119, None)]);
    assert_eq!(by_partition[&3].missing_offsets, vec![span(0, 6, None)]);
    for p in [0, 2] {
        assert!(by_partition[&p].counts.clean(), "partition {p}: {:?}", by_partition[&p].counts);
    }
    let t = report.totals;
    assert_eq!((t.missing, t.found, t.duplicated, t.unexpected), (127, run.records.len() as u64 - 127, 0, 0));
    Ok(())
}

#[test]
fn real_broker_records_produced_twice_are_exactly_the_duplicated_ones() -> anyhow::Result<()> {
    let run = copied("rec-twice")?;
    let mut twice = run.input_records(2, 10..20)?;
    twice.extend(run.input_records(0, 5..6)?);
    let foreign = Record { partition: 0, offset: -1, timestamp: Some(1), key: None, value: Some(b"not from the input".to_vec().into()), headers: Vec::new() };
    let foreign_at = end_offsets(&run.brokers, &run.output, PARTITIONS)?[&0] + 1;
    twice.push(foreign);
    produce(&run.brokers, &run.output, &twice)?;

    let report = run.reconcile()?;
    let by_partition: BTreeMap<i32, _> = report.partitions.iter().map(|p| (p.partition, p)).collect();
    assert_eq!(by_partition[&2].duplicated_offsets, vec![span(10, 19, Some(1))]);
    assert_eq!(by_partition[&0].duplicated_offsets, vec![span(5, 5, Some(1))]);
    assert_eq!(by_partition[&0].unexpected_offsets, vec![span(foreign_at, foreign_at, None)]);
    let t = report.totals;
    assert_eq!((t.duplicated, t.extra_copies, t.missing, t.unexpected), (11, 11, 0, 1));
    assert_eq!(t.found, run.records.len() as u64 + 11);
    assert!(!report.clean);
    Ok(())
}

fn reconcile_cli(run: &Copied, extra: &[&str]) -> anyhow::Result<(Option<i32>, String, String)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("job.toml");
    let toml = format!(
        "[job]\ninput_topic = \"{}\"\noutput_topic = \"{}\"\ngroup_id = \"{}\"\n[kafka]\n\"bootstrap.servers\" = \"{}\"\n[observe]\nwindow = \"1s\"\n",
        run.input, run.output, run.group, run.brokers
    );
    std::fs::write(&config, toml)?;
    let out = Command::new(tidewatch_bin()?).arg("reconcile").arg("--config").arg(&config).args(extra).output()?;
    Ok((out.status.code(), String::from_utf8(out.stdout)?, String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[test]
fn real_broker_the_command_exits_0_when_clean_1_on_discrepancies_2_when_it_cannot_check() -> anyhow::Result<()> {
    let run = copied("rec-cli")?;
    let (code, stdout, stderr) = reconcile_cli(&run, &["--json"])?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(json["clean"], true);
    assert_eq!(json["totals"]["expected"], run.records.len() as u64);
    assert_eq!(json["window_ms"], 1000);
    assert_eq!(json["isolation"], "read_committed");

    delete_records(&run.brokers, &run.output, 2, 3)?;
    let (code, stdout, stderr) = reconcile_cli(&run, &["--json"])?;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(json["clean"], false);
    assert_eq!(json["totals"]["missing"], 3);
    let p2 = json["partitions"].as_array().and_then(|ps| ps.iter().find(|p| p["partition"] == 2)).context("partition 2")?;
    assert_eq!(p2["missing_offsets"], serde_json::json!([{ "from": 0, "to": 2 }]));

    let (code, table, _) = reconcile_cli(&run, &[])?;
    assert_eq!(code, Some(1));
    assert!(table.contains("partition 2: missing input offsets: 0-2") && table.contains("DISCREPANCIES"), "{table}");

    let (code, _, stderr) = reconcile_cli(&run, &["--partition", "9"])?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--partition") && stderr.contains("no partition 9"), "{stderr}");
    Ok(())
}

/// Copies a steady input with `tidewatch run` (2 workers), `kill -9`s the job mid-stream
/// and restarts it, waits until every input offset is committed; returns the topics.
fn copied_through_a_crash(name: &str, extra: &[&str]) -> anyhow::Result<Copied> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic(&format!("{name}-in")), unique_topic(&format!("{name}-out")), unique_topic(name));
    create_topics(&brokers, &[&input, &output], 2)?;
    let dir = tempfile::tempdir()?;
    let count = 12_000;
    let producer = SteadyProducer::spawn(&brokers, &input, 2, 2_000, count)?;
    let args = [&["--brokers", &brokers, "--input", &input, "--output", &output, "--group", &group, "--epoch", "200ms", "-w", "2"][..], extra].concat();
    let mut job = Job::start(dir.path(), &args)?;
    producer.wait_offered(count / 3, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_millis(1_500));
    job.kill9()?;
    job.restart()?;
    producer.finish()?;
    let total: i64 = end_offsets(&brokers, &input, 2)?.values().sum();
    wait_committed(&mut job, &brokers, &group, &input, 2, total, Duration::from_secs(240))?;
    anyhow::ensure!(job.stop(Duration::from_secs(60))?, "the job did not exit 0 on SIGTERM\n{}", job.logs());
    Ok(Copied { brokers, input, output, group, records: Vec::new() })
}

#[test]
fn real_broker_after_a_job_kill9_the_duplicates_reported_are_those_in_the_output() -> anyhow::Result<()> {
    let run = copied_through_a_crash("rec-kill", &[])?;
    let input = read_topic(&run.brokers, &run.input, true)?;
    let output = read_topic(&run.brokers, &run.output, true)?;
    let duplicates = assert_nothing_lost(&input, &output) as u64;
    let report = run.reconcile()?;
    let t = report.totals;
    eprintln!("job kill -9, at-least-once: {duplicates} duplicates in the output; reconcile: {t:?}");
    assert_eq!((t.missing, t.unexpected, t.in_flight), (0, 0, 0));
    assert_eq!(t.expected, input.values().map(Vec::len).sum::<usize>() as u64);
    assert_eq!(t.extra_copies, duplicates);
    assert_eq!(t.found, t.expected + duplicates);
    assert_eq!(report.clean, duplicates == 0);
    // One restart re-copies one contiguous range per partition.
    for p in &report.partitions {
        assert!(p.duplicated_offsets.len() <= 1 && p.duplicated_offsets.iter().all(|s| s.extra == Some(1)), "partition {}: {:?}", p.partition, p.duplicated_offsets);
    }
    Ok(())
}

#[test]
fn real_broker_an_exactly_once_output_reconciles_clean_read_committed_after_a_job_kill9() -> anyhow::Result<()> {
    let run = copied_through_a_crash("rec-kill-eos", &["--exactly-once"])?;
    let input = read_topic(&run.brokers, &run.input, true)?;
    assert_exactly_once(&input, &read_topic(&run.brokers, &run.output, true)?);
    let mut args = run.args();
    let report = reconcile(&args.plan()?)?;
    assert!(report.clean, "{:?}", report.totals);
    assert_eq!(report.isolation, "read_committed");
    assert_eq!(report.totals.expected, input.values().map(Vec::len).sum::<usize>() as u64);
    // read_uncommitted also sees what the killed job's aborted transaction had written.
    args.isolation = Some("read_uncommitted".to_owned());
    let uncommitted = reconcile(&args.plan()?)?;
    let aborted = read_topic(&run.brokers, &run.output, false)?.values().map(Vec::len).sum::<usize>() as u64 - report.totals.found;
    eprintln!("exactly-once after kill -9: {aborted} aborted records in the log; read_uncommitted reconcile: {:?}", uncommitted.totals);
    assert_eq!((uncommitted.totals.extra_copies, uncommitted.totals.missing), (aborted, 0));
    Ok(())
}

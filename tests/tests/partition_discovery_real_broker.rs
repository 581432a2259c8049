//! Partitions added while the job runs, against the real broker: the job reads `in` with
//! 2 partitions, then both topics grow to 4 and 1 000 records are produced over all 4.
//! Every record must be in the output, byte for byte, the new partitions' offsets
//! committed, and lag must cover all 4 partitions. And when only the input grows, the job
//! must stop with an error naming both topics and the fix, commit nothing of the new
//! partition, and copy it from its start once restarted after the fix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig, Record, RunSummary};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_operators::stats::StatsDoc;
use tidewatch_tests::{add_partitions, assert_copied_exactly, committed, corpus, create_topics, end_offsets, produce, read_all, real_brokers, require_broker, unique_topic};

fn file_config(brokers: &str, input: &str, output: &str, group: &str, dir: &std::path::Path) -> FileConfig {
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    kafka.producer.insert("message.max.bytes".into(), "2000000".into());
    // A consumer that learns of new partitions quickly, as the job's discovery does.
    kafka.consumer.insert("topic.metadata.refresh.interval.ms".into(), "1000".into());
    let outputs = OutputConfig { dir: dir.to_owned(), metrics_addr: String::new(), ..OutputConfig::default() };
    FileConfig {
        job: JobConfig {
            input_topic: input.to_owned(),
            output_topic: output.to_owned(),
            group_id: group.to_owned(),
            epoch_interval: Duration::from_millis(100),
            partition_discovery_interval: Duration::from_millis(500),
            ..JobConfig::default()
        },
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: outputs,
        opensearch: Default::default(),
        profile: Default::default(),
    }
}

/// Runs the job on 2 workers in a thread until stopped.
fn start(file: FileConfig) -> (Arc<JobControl>, std::thread::JoinHandle<anyhow::Result<RunSummary>>) {
    let control = JobControl::new();
    let stop = Arc::clone(&control);
    let job = std::thread::spawn(move || run_observed(file, &Cluster { workers: 2, ..Cluster::default() }, stop));
    (control, job)
}

/// Waits until `output` holds as many records per partition as `input` on `partitions`.
fn wait_copied(brokers: &str, input: &str, output: &str, partitions: i32, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let (want, got) = (end_offsets(brokers, input, partitions)?, end_offsets(brokers, output, partitions)?);
        if want == got {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "not copied within {within:?}: input ends {want:?}, output ends {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same records, with distinct values from `base` on (a second batch of the corpus).
fn batch(n: usize, partitions: i32, base: usize) -> Vec<Record> {
    corpus(n, partitions, false)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.value = Some(format!(r#"{{"event_time":"2024-05-01T12:00:00Z","user_id":"u-{}","page":"p"}}"#, base + i).into_bytes().into());
            r
        })
        .collect()
}

#[test]
fn real_broker_partitions_added_while_running_are_copied_from_their_start() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("grow-in"), unique_topic("grow-out"), unique_topic("grow"));
    create_topics(&brokers, &[&input, &output], 2)?;
    let mut records = batch(500, 2, 0);
    produce(&brokers, &input, &records)?;
    let dir = tempfile::tempdir()?;
    let (control, job) = start(file_config(&brokers, &input, &output, &group, dir.path()));
    wait_copied(&brokers, &input, &output, 2, Duration::from_secs(60))?;

    // Both topics grow to 4 partitions; 1 000 records over all 4.
    add_partitions(&brokers, &output, 4)?;
    add_partitions(&brokers, &input, 4)?;
    let more = batch(1_000, 4, 500);
    produce(&brokers, &input, &more)?;
    records.extend(more);
    let copied = wait_copied(&brokers, &input, &output, 4, Duration::from_secs(60));
    // Lag is observed for a few windows after the copy.
    std::thread::sleep(Duration::from_secs(2));
    control.request_stop();
    let summary = job.join().map_err(|_| anyhow::anyhow!("the job panicked"))??;
    copied?;

    assert_eq!(summary.records_in, records.len() as u64, "records read");
    assert_copied_exactly(&records, &read_all(&brokers, &output)?);
    let ends = end_offsets(&brokers, &input, 4)?;
    let commits = committed(&brokers, &group, &input, 4)?;
    for (p, end) in &ends {
        assert_eq!(commits[p], Some(*end), "committed offset of partition {p}");
    }
    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let last = docs.last().ok_or_else(|| anyhow::anyhow!("no stats documents"))?;
    let partitions: Vec<&str> = last.lag_per_partition.keys().map(String::as_str).collect();
    assert_eq!(partitions, ["0", "1", "2", "3"], "lag covers every partition at the end");
    assert!(last.lag_per_partition.values().all(|lag| *lag == 0), "no lag once copied: {:?}", last.lag_per_partition);
    Ok(())
}

#[test]
fn real_broker_an_output_without_the_new_partition_stops_the_job_and_loses_nothing() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("grow1-in"), unique_topic("grow1-out"), unique_topic("grow1"));
    create_topics(&brokers, &[&input, &output], 2)?;
    let mut records = batch(200, 2, 0);
    produce(&brokers, &input, &records)?;
    let dir = tempfile::tempdir()?;
    let (control, job) = start(file_config(&brokers, &input, &output, &group, dir.path()));
    wait_copied(&brokers, &input, &output, 2, Duration::from_secs(60))?;

    // Only the input grows: the job must stop by itself, naming both topics and the fix.
    add_partitions(&brokers, &input, 3)?;
    let more = batch(300, 3, 200);
    produce(&brokers, &input, &more)?;
    records.extend(more);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !job.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    control.request_stop();
    let outcome = job.join().map_err(|_| anyhow::anyhow!("the job panicked"))?;
    let error = format!("{:#}", outcome.expect_err("the job must fail when the output lacks the new partition"));
    for needed in ["job.output_topic", input.as_str(), output.as_str(), "--partitions 3", "partition 2"] {
        assert!(error.contains(needed), "the error names `{needed}`: {error}");
    }
    assert_eq!(committed(&brokers, &group, &input, 3)?[&2], None, "nothing of the new partition committed");

    // After the fix, a restart copies the new partition from its start, and nothing twice.
    add_partitions(&brokers, &output, 3)?;
    let again = tempfile::tempdir()?;
    let (control, job) = start(file_config(&brokers, &input, &output, &group, again.path()));
    let copied = wait_copied(&brokers, &input, &output, 3, Duration::from_secs(60));
    control.request_stop();
    job.join().map_err(|_| anyhow::anyhow!("the job panicked"))??;
    copied?;
    assert_copied_exactly(&records, &read_all(&brokers, &output)?);
    Ok(())
}

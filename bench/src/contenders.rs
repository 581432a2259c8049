//! The contenders of the benchmarks: a bare rdkafka consume→produce loop, the tidewatch
//! passthrough with or without the observers, and the peers in `bench/peers/` (Kafka
//! Streams, Spark, Bytewax, Benthos, MirrorMaker 2), each copying every record of one
//! topic to the same partition of another; the observing peers also count what
//! tidewatch's quality observer counts, checked against the generator's summary.
//!
//! Delivery: every contender copies at least once (the bare loop commits nothing; a fresh
//! consumer group per run starts from the earliest offset).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tidewatch_engine::{run_job, Cluster, JobConfig, JobControl, KafkaConfig, NoObservers, Record};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::OutputConfig;
use tidewatch_jobs::visits::{GeneratorConfig, GeneratorSummary, VisitGenerator};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_operators::profile::ProfileConfig;
use tidewatch_tests::unique_topic;

/// Reference-shaped visits (the default fault mix: 10 % with nulled fields), spread evenly.
pub fn make_records(n: usize, partitions: i32) -> Vec<Record> {
    make_records_with_summary(n, partitions).0
}

/// [`make_records`], with the generator's summary of what it wrote.
pub fn make_records_with_summary(n: usize, partitions: i32) -> (Vec<Record>, GeneratorSummary) {
    let config = GeneratorConfig { seed: 1, partitions: partitions.unsigned_abs(), partition_weights: vec![1; partitions.unsigned_abs() as usize], ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::new(config);
    let records = generator
        .by_ref()
        .take(n)
        .map(|g| Record { partition: g.partition, offset: -1, timestamp: Some(g.timestamp_ms), key: g.key.map(Into::into), value: g.value.map(Into::into), headers: Vec::new() })
        .collect();
    (records, generator.into_summary())
}

/// What an observing peer must count over a run of the records `summary` describes, in
/// the shape of its result line's `observed`: every record, the unparseable ones, and per
/// important field the parseable records holding it missing, `null` or `""`.
pub fn expected_observation(summary: &GeneratorSummary) -> serde_json::Value {
    let invalid: serde_json::Map<String, serde_json::Value> =
        summary.fields.iter().map(|(field, c)| (field.clone(), serde_json::json!(c.missing + c.null + c.empty_string))).collect();
    serde_json::json!({ "records": summary.records, "unparseable": summary.unparseable, "invalid": invalid })
}

/// Where `observed` (a peer's result line) differs from `expected`; empty when it does not.
pub fn observation_differences(expected: &serde_json::Value, observed: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let number = |v: &serde_json::Value, path: &[&str]| path.iter().try_fold(v, |v, k| v.get(*k)).and_then(serde_json::Value::as_u64);
    let mut check = |path: &[&str]| {
        let (want, got) = (number(expected, path), number(observed, path));
        if want != got {
            out.push(format!("{}: expected {}, counted {}", path.join("."), want.map_or("none".to_owned(), |n| n.to_string()), got.map_or("none".to_owned(), |n| n.to_string())));
        }
    };
    check(&["records"]);
    check(&["unparseable"]);
    if let Some(fields) = expected["invalid"].as_object() {
        for field in fields.keys() {
            check(&["invalid", field]);
        }
    }
    out
}

/// Runs the tidewatch job in this process: with `until_end`, until the input's high
/// watermarks seen at start are copied; otherwise until the process is ended. Returns
/// the records delivered. `observers`: the default observers (quality, lag, stats
/// windows, alerts); `profile`: the dataset profile too (60 s windows, reports to a
/// temporary directory).
pub fn tidewatch(brokers: &str, input: &str, output: &str, workers: usize, observers: bool, until_end: bool) -> anyhow::Result<u64> {
    tidewatch_with(brokers, input, output, workers, observers, false, until_end)
}

/// [`tidewatch`], with the dataset profile on or off.
pub fn tidewatch_with(brokers: &str, input: &str, output: &str, workers: usize, observers: bool, profile: bool, until_end: bool) -> anyhow::Result<u64> {
    Ok(tidewatch_run(brokers, input, output, workers, observers, profile, until_end)?.records_delivered)
}

/// [`tidewatch_with`], returning the job's whole summary (its wait counters too).
pub fn tidewatch_run(
    brokers: &str,
    input: &str,
    output: &str,
    workers: usize,
    observers: bool,
    profile: bool,
    until_end: bool,
) -> anyhow::Result<tidewatch_engine::RunSummary> {
    let job = JobConfig {
        input_topic: input.to_owned(),
        output_topic: output.to_owned(),
        group_id: unique_topic("bench-group"),
        until_end,
        ..JobConfig::default()
    };
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    let cluster = Cluster { workers, ..Cluster::default() };
    let summary = if observers {
        let dir = tempfile::tempdir()?;
        let file = FileConfig {
            job,
            kafka,
            observe: ObserveConfig::default(),
            output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
            opensearch: Default::default(),
            profile: ProfileConfig { enabled: profile, dir: dir.path().join("profiles"), ..ProfileConfig::default() },
        };
        run_observed(file, &cluster, JobControl::new())?
    } else {
        run_job(job, kafka, &cluster, JobControl::new(), NoObservers)?
    };
    Ok(summary)
}

/// The practical limit: `threads` threads, each with its own consumer and producer and
/// the partitions `p` with `p % threads == i`, no dataflow. With `stop == None` each
/// thread stops at the high watermarks seen at its start; otherwise it runs until
/// `stop` is set. Returns the records copied.
pub fn bare_loop(brokers: &str, input: &str, output: &str, partitions: i32, threads: usize, stop: Option<&AtomicBool>) -> anyhow::Result<u64> {
    let threads = threads.max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let mine: Vec<i32> = (0..partitions).filter(|p| *p as usize % threads == i).collect();
                // Named, so the benchmark's per-thread view finds the loop's threads.
                std::thread::Builder::new()
                    .name(format!("bare-loop-{i}"))
                    .spawn_scoped(scope, move || bare_thread(brokers, input, output, &mine, stop))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut copied = 0;
        for handle in handles {
            copied += handle.join().map_err(|_| anyhow::anyhow!("a bare loop thread panicked"))??;
        }
        Ok(copied)
    })
}

fn bare_thread(brokers: &str, input: &str, output: &str, partitions: &[i32], stop: Option<&AtomicBool>) -> anyhow::Result<u64> {
    if partitions.is_empty() {
        return Ok(0);
    }
    // tidewatch's own client settings (engine::config::{CONSUMER,PRODUCER}_DEFAULTS), so a
    // gain that comes from a setting shows on both sides and the ratio measures the engine.
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    let consumer: BaseConsumer = kafka.consumer_config(&unique_topic("bench-bare"))?.create()?;
    let producer: BaseProducer = kafka.producer_config()?.create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in partitions {
        let (low, high) = consumer.fetch_watermarks(input, p, Duration::from_secs(10))?;
        tpl.add_partition_offset(input, p, Offset::Offset(low))?;
        ends.insert(p, high);
    }
    consumer.assign(&tpl)?;
    let mut next: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    let mut copied = 0u64;
    let more = |next: &BTreeMap<i32, i64>| match stop {
        Some(flag) => !flag.load(Ordering::Relaxed),
        None => next.iter().any(|(p, n)| *n < ends[p]),
    };
    while more(&next) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output).partition(m.partition());
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                if let Some(v) = m.payload() {
                    record = record.payload(v);
                }
                if let Some(ts) = m.timestamp().to_millis() {
                    record = record.timestamp(ts);
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            producer.poll(Duration::from_millis(1));
                        }
                        Err((e, _)) => return Err(e).context("bare loop produce"),
                    }
                }
                copied += 1;
                producer.poll(Duration::ZERO);
            }
            // tidewatch's settings ask for end-of-partition events.
            Some(Err(KafkaError::PartitionEOF(_))) => producer.poll(Duration::ZERO),
            Some(Err(e)) => bail!("bare loop consume: {e}"),
            None => {
                producer.poll(Duration::ZERO);
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(copied)
}

/// The `run.sh` of a peer in `bench/peers/<name>/`.
pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join(name).join("run.sh")
}

/// The Kafka Streams peer (`bench/peers/kafka-streams/run.sh`), run to completion:
/// records copied and its own seconds.
pub fn kafka_streams(brokers: &str, input: &str, output: &str, threads: usize, expect: usize) -> anyhow::Result<(u64, f64)> {
    let out = std::process::Command::new("bash")
        .arg(peer_script("kafka-streams"))
        .args([brokers, input, output, &threads.to_string(), &expect.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the Kafka Streams peer")?;
    if !out.status.success() {
        bail!("the Kafka Streams peer failed: {}", out.status);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or_default()).context("the peer's JSON line")?;
    Ok((result["records"].as_u64().unwrap_or(0), result["seconds"].as_f64().unwrap_or(f64::NAN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observing_peer_is_right_only_with_every_count() {
        let (_, summary) = make_records_with_summary(2_000, 2);
        let expected = expected_observation(&summary);
        assert_eq!(expected["records"], 2_000);
        assert!(observation_differences(&expected, &expected).is_empty());
        let mut observed = expected.clone();
        observed["invalid"]["page"] = serde_json::json!(expected["invalid"]["page"].as_u64().unwrap_or(0) + 1);
        assert_eq!(observation_differences(&expected, &observed).len(), 1);
        assert_eq!(observation_differences(&expected, &serde_json::Value::Null).len(), 5, "records, unparseable and three fields");
    }
}

//! Passthrough throughput on a real broker: a bare rdkafka consume→produce loop (the
//! practical limit) beside the tidewatch passthrough with 1 and 2 workers, with and
//! without the observers (quality, lag, stats windows, alerts), and the Kafka Streams
//! peer (`bench/peers/kafka-streams`, 1 and 2 threads), on the same broker and the same
//! generated visits, interleaved in one run. Prints medians and ratios and
//! writes `bench/results/passthrough.{json,md}`.
//!
//! ```text
//! scripts/kafka.sh start
//! cargo run --release -p tidewatch-bench --bin passthrough -- [--records 1000000] [--quick]
//! ```

#![allow(clippy::print_stdout)] // the result table is the program's output

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tidewatch_bench::{cpu_seconds, median, write_results, Machine};
use tidewatch_engine::{run_job, Cluster, JobConfig, JobControl, KafkaConfig, NoObservers, Record};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::OutputConfig;
use tidewatch_jobs::visits::{GeneratorConfig, VisitGenerator};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_tests::{create_topics, produce, require_broker, unique_topic};

#[derive(Debug, Parser)]
struct Args {
    /// Bootstrap servers of the real broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Records in the input topic.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,

    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Rounds; each round runs every contender once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Smoke run: 100 000 records, one round.
    #[arg(long)]
    quick: bool,
    /// Run only the contenders whose name contains one of these comma-separated parts
    /// (e.g. `bare,passthrough, 1`), for profiling or quick comparisons.
    #[arg(long)]
    only: Option<String>,
}

#[derive(Debug, Serialize)]
struct Contender {
    name: String,
    records_per_s: Vec<f64>,
    median_records_per_s: f64,
    median_mb_per_s: f64,
    median_cpu_s_per_million: f64,
    ratio_to_bare: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    records: usize,
    value_bytes: usize,
    partitions: i32,
    rounds: usize,
    machine: Machine,
    contenders: Vec<Contender>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let mut args = Args::parse();
    if args.quick {
        args.records = args.records.min(100_000);
        args.rounds = 1;
    }
    require_broker(&args.brokers)?;
    let input = unique_topic("bench-in");
    create_topics(&args.brokers, &[&input], args.partitions)?;
    eprintln!("producing {} generated visits to {input} ...", args.records);
    let records = make_records(args.records, args.partitions);
    produce(&args.brokers, &input, &records)?;
    let bytes: usize = records.iter().map(Record::size_bytes).sum();
    drop(records);

    let all = [
        "bare rdkafka loop",
        "tidewatch passthrough, 1 worker",
        "tidewatch passthrough, 2 workers",
        "tidewatch + observers, 1 worker",
        "tidewatch + observers, 2 workers",
        "Kafka Streams passthrough, 1 thread",
        "Kafka Streams passthrough, 2 threads",
    ];
    let names: Vec<&str> =
        all.into_iter().filter(|n| args.only.as_ref().is_none_or(|o| o.split(',').any(|part| n.contains(part)))).collect();
    if names.is_empty() {
        bail!("--only matches none of {all:?}");
    }
    let mut samples: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for round in 0..args.rounds {
        for &name in &names {
            let output = unique_topic("bench-out");
            create_topics(&args.brokers, &[&output], args.partitions)?;
            let cpu0 = cpu_seconds();
            let start = Instant::now();
            let mut peer_seconds = None;
            let copied = match name {
                "bare rdkafka loop" => bare_loop(&args.brokers, &input, &output, args.partitions)?,
                _ if name.starts_with("Kafka Streams") => {
                    let threads = if name.ends_with("2 threads") { 2 } else { 1 };
                    let (records, seconds) = kafka_streams(&args.brokers, &input, &output, threads, args.records)?;
                    peer_seconds = Some(seconds);
                    records
                }
                _ => {
                    let workers = if name.ends_with("2 workers") { 2 } else { 1 };
                    tidewatch(&args.brokers, &input, &output, workers, name.contains("observers"))?
                }
            };
            // The peer times itself from its start to its close (JVM start-up excluded); its CPU
            // is spent in another process and is not counted here.
            let secs = peer_seconds.unwrap_or_else(|| start.elapsed().as_secs_f64());
            let cpu = if peer_seconds.is_some() { f64::NAN } else { cpu_seconds() - cpu0 };
            if copied != args.records as u64 {
                bail!("{name} copied {copied} of {} records", args.records);
            }
            let rate = args.records as f64 / secs;
            eprintln!("round {}/{}: {name:<34} {:>10.0} records/s  {:>6.1} MB/s  {:.2} CPU s", round + 1, args.rounds, rate, bytes as f64 / secs / 1e6, cpu);
            samples.entry(name).or_default().push((rate, cpu));
        }
    }

    let bare = samples.get(all[0]).map_or(f64::NAN, |s| median(&s.iter().map(|s| s.0).collect::<Vec<_>>()));
    let contenders: Vec<Contender> = names
        .iter()
        .map(|name| {
            let rates: Vec<f64> = samples[name].iter().map(|s| s.0).collect();
            let cpus: Vec<f64> = samples[name].iter().map(|s| s.1).collect();
            let med = median(&rates);
            Contender {
                name: (*name).to_owned(),
                median_records_per_s: med,
                median_mb_per_s: med * (bytes as f64 / args.records as f64) / 1e6,
                median_cpu_s_per_million: median(&cpus) * 1e6 / args.records as f64,
                ratio_to_bare: med / bare,
                records_per_s: rates,
            }
        })
        .collect();
    let report = Report {
        benchmark: "passthrough",
        records: args.records,
        value_bytes: bytes / args.records.max(1),
        partitions: args.partitions,
        rounds: args.rounds,
        machine: Machine::current(),
        contenders,
    };
    let table = markdown(&report);
    println!("{table}");
    if !args.quick && args.only.is_none() {
        write_results("passthrough", &report, &table)?;
        eprintln!("wrote bench/results/passthrough.md and .json");
    }
    Ok(())
}

fn markdown(report: &Report) -> String {
    let mut out = format!(
        "Passthrough, {} generated visits (mean {} bytes), {} partitions, median of {} rounds, {} CPUs ({})\n\n| contender | records/s | MB/s | CPU s / M records | ratio to bare loop |\n|---|---:|---:|---:|---:|\n",
        report.records, report.value_bytes, report.partitions, report.rounds, report.machine.cpus, report.machine.cpu_model
    );
    for c in &report.contenders {
        let cpu = if c.median_cpu_s_per_million.is_nan() { "n/a (own process)".to_owned() } else { format!("{:.2}", c.median_cpu_s_per_million) };
        out.push_str(&format!(
            "| {} | {:.0} | {:.1} | {cpu} | {:.2} |\n",
            c.name, c.median_records_per_s, c.median_mb_per_s, c.ratio_to_bare
        ));
    }
    out.push_str("\nKafka Streams times itself from the start of its streams to the end of close (JVM start-up excluded); tidewatch's time includes its partition plan and client creation.\n");
    out
}

/// Reference-shaped visits (the default fault mix: 10 % with nulled fields), spread evenly.
fn make_records(n: usize, partitions: i32) -> Vec<Record> {
    let config = GeneratorConfig { seed: 1, partitions: partitions.unsigned_abs(), partition_weights: vec![1; partitions.unsigned_abs() as usize], ..GeneratorConfig::default() };
    VisitGenerator::new(config)
        .take(n)
        .map(|g| Record { partition: g.partition, offset: -1, timestamp: Some(g.timestamp_ms), key: g.key.map(Into::into), value: g.value.map(Into::into), headers: Vec::new() })
        .collect()
}

fn tidewatch(brokers: &str, input: &str, output: &str, workers: usize, observers: bool) -> anyhow::Result<u64> {
    let job = JobConfig {
        input_topic: input.to_owned(),
        output_topic: output.to_owned(),
        group_id: unique_topic("bench-group"),
        until_end: true,
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
            output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new() },
            opensearch: Default::default(),
        };
        run_observed(file, &cluster, JobControl::new())?
    } else {
        run_job(job, kafka, &cluster, JobControl::new(), NoObservers)?
    };
    Ok(summary.records_delivered)
}

/// The Kafka Streams peer (`bench/peers/kafka-streams/run.sh`): records copied and its own seconds.
fn kafka_streams(brokers: &str, input: &str, output: &str, threads: usize, expect: usize) -> anyhow::Result<(u64, f64)> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/kafka-streams/run.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
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

/// The practical limit: one thread, one consumer, one producer, no dataflow.
fn bare_loop(brokers: &str, input: &str, output: &str, partitions: i32) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_topic("bench-bare"))
        .set("enable.auto.commit", "false")
        .create()?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(input, p, Duration::from_secs(10))?;
        tpl.add_partition_offset(input, p, Offset::Offset(low))?;
        ends.insert(p, high);
    }
    consumer.assign(&tpl)?;
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let mut copied = 0u64;
    while next.iter().any(|(p, n)| *n < ends[p]) {
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
            Some(Err(e)) => bail!("bare loop consume: {e}"),
            None => {}
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(copied)
}

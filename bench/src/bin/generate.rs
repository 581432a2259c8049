//! Visits generator throughput: `produce_into` as fast as possible to the real local
//! broker (default fault mix, a fresh topic per round), beside generation alone (no
//! Kafka), interleaved in one run. Prints medians and writes
//! `bench/results/generate.{json,md}`.
//!
//! ```text
//! scripts/kafka.sh start
//! cargo run --release -p tidewatch-bench --bin generate -- [--records 1000000] [--quick]
//! ```

#![allow(clippy::print_stdout)] // the result table is the program's output

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use serde::Serialize;
use tidewatch_bench::{cpu_seconds, median, write_results, Machine};
use tidewatch_jobs::visits::{produce_into, GeneratorConfig, NeverStop, ProduceSettings, VisitGenerator};
use tidewatch_tests::{create_topics, end_offsets, require_broker, unique_topic};

/// The issue's target for producing to the local broker.
const TARGET_RECORDS_PER_S: f64 = 200_000.0;

#[derive(Debug, Parser)]
struct Args {
    /// Bootstrap servers of the real broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Records per round (duplicates included).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Partitions of the topic (equal weights).
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// Rounds; each round runs every contender once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Smoke run: 100 000 records, one round, no result files.
    #[arg(long)]
    quick: bool,
    /// Run only the contenders whose name contains this (for profiling one of them).
    #[arg(long)]
    only: Option<String>,
    /// librdkafka producer setting over `produce_into`'s defaults, e.g. `-X linger.ms=20`
    /// (repeatable; for trying settings).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = key_value)]
    rdkafka: Vec<(String, String)>,
    /// Keep the benchmark topics (by default each is deleted after its round).
    #[arg(long)]
    keep_topics: bool,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

const TO_BROKER: &str = "produce_into to the local broker";
const GENERATION: &str = "generation alone (no Kafka)";

/// One run of one contender.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    cpu_s: f64,
    broker_cpu_s: f64,
    value_bytes: u64,
    /// Of `secs`, the time before the first record: producer creation and topic metadata.
    setup_s: f64,
}

#[derive(Debug, Serialize)]
struct Contender {
    name: String,
    records_per_s: Vec<f64>,
    median_records_per_s: f64,
    median_mb_per_s: f64,
    median_cpu_s_per_million: f64,
    /// CPU of the broker JVM during the run, when its pid is known (else null).
    median_broker_cpu_s_per_million: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    records: u64,
    mean_value_bytes: f64,
    partitions: u32,
    rounds: usize,
    fault_mix: &'static str,
    producer_overrides: Vec<(String, String)>,
    target_records_per_s: f64,
    target_met: Option<bool>,
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
    let all = [TO_BROKER, GENERATION];
    let names: Vec<&str> = all.into_iter().filter(|n| args.only.as_ref().is_none_or(|o| n.contains(o.as_str()))).collect();
    if names.is_empty() {
        bail!("--only matches none of {all:?}");
    }
    if names.contains(&TO_BROKER) {
        require_broker(&args.brokers)?;
    }
    let broker_pid = broker_pid(&args.brokers);
    if names.contains(&TO_BROKER) && broker_pid.is_none() {
        eprintln!("broker pid not found (scripts/kafka.sh pid file): broker CPU not reported");
    }

    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for round in 0..args.rounds {
        // A different seed per round, the same for both contenders of the round.
        let config = GeneratorConfig { seed: round as u64, partitions: args.partitions, ..GeneratorConfig::default() };
        for &name in &names {
            let sample = match name {
                TO_BROKER => to_broker(&args, config.clone(), broker_pid)?,
                _ => generation_alone(args.records, config.clone()),
            };
            let rate = args.records as f64 / sample.secs;
            eprintln!(
                "round {}/{}: {name:<34} {:>10.0} records/s  {:>6.1} MB/s  {:.2} CPU s{}{}",
                round + 1,
                args.rounds,
                rate,
                sample.value_bytes as f64 / sample.secs / 1e6,
                sample.cpu_s,
                if sample.broker_cpu_s.is_nan() { String::new() } else { format!("  (broker {:.2} CPU s)", sample.broker_cpu_s) },
                if sample.setup_s > 0.0 { format!("  (setup {:.3} s)", sample.setup_s) } else { String::new() }
            );
            samples.entry(name).or_default().push(sample);
        }
    }

    let per_million = 1e6 / args.records as f64;
    let contenders: Vec<Contender> = names
        .iter()
        .map(|name| {
            let runs = &samples[name];
            let of = |f: fn(&Sample) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
            let broker = of(|s| s.broker_cpu_s);
            let rates: Vec<f64> = runs.iter().map(|s| args.records as f64 / s.secs).collect();
            Contender {
                name: (*name).to_owned(),
                median_records_per_s: median(&rates),
                records_per_s: rates,
                median_mb_per_s: of(|s| s.value_bytes as f64 / s.secs / 1e6),
                median_cpu_s_per_million: of(|s| s.cpu_s) * per_million,
                median_broker_cpu_s_per_million: (!broker.is_nan()).then_some(broker * per_million),
            }
        })
        .collect();
    let all_samples: Vec<&Sample> = samples.values().flatten().collect();
    let mean_value_bytes = all_samples.iter().map(|s| s.value_bytes as f64).sum::<f64>() / (all_samples.len() as f64 * args.records as f64);
    let target_met = contenders.iter().find(|c| c.name == TO_BROKER).map(|c| c.median_records_per_s >= TARGET_RECORDS_PER_S);
    let report = Report {
        benchmark: "generate",
        records: args.records,
        mean_value_bytes,
        partitions: args.partitions,
        rounds: args.rounds,
        fault_mix: "default (10 % of the records with nulled top-level fields)",
        producer_overrides: args.rdkafka.clone(),
        target_records_per_s: TARGET_RECORDS_PER_S,
        target_met,
        machine: Machine::current(),
        contenders,
    };
    let table = markdown(&report);
    println!("{table}");
    if !args.quick {
        write_results("generate", &report, &table)?;
        eprintln!("wrote bench/results/generate.md and .json");
    }
    Ok(())
}

fn markdown(report: &Report) -> String {
    let mut out = format!(
        "Visits generator, {} records (mean value {:.0} bytes), {} partitions, default fault mix, median of {} rounds, {} CPUs ({})\n\n\
         | contender | records/s | MB/s (values) | CPU s / M records | broker CPU s / M records |\n|---|---:|---:|---:|---:|\n",
        report.records, report.mean_value_bytes, report.partitions, report.rounds, report.machine.cpus, report.machine.cpu_model
    );
    for c in &report.contenders {
        let broker = c.median_broker_cpu_s_per_million.map_or_else(|| "–".to_owned(), |b| format!("{b:.2}"));
        out.push_str(&format!(
            "| {} | {:.0} | {:.1} | {:.2} | {broker} |\n",
            c.name, c.median_records_per_s, c.median_mb_per_s, c.median_cpu_s_per_million
        ));
    }
    if let (Some(met), Some(c)) = (report.target_met, report.contenders.iter().find(|c| c.name == TO_BROKER)) {
        out.push_str(&format!(
            "\nTarget: ≥ {:.0} records/s to the local broker: {} ({:.0} records/s, the producing process busy {:.2} cores on average, librdkafka's threads included).\n",
            report.target_records_per_s,
            if met { "met" } else { "not met" },
            c.median_records_per_s,
            c.median_cpu_s_per_million * c.median_records_per_s / 1e6
        ));
    }
    if !report.producer_overrides.is_empty() {
        let overrides: Vec<String> = report.producer_overrides.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
        out.push_str(&format!("\nProducer overrides: {}.\n", overrides.join(", ")));
    }
    out
}

/// Generates `records` records into the generator's buffers and drops them.
fn generation_alone(records: u64, config: GeneratorConfig) -> Sample {
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut generator = VisitGenerator::new(config);
    let mut checksum = 0u64;
    for _ in 0..records {
        let record = generator.next_borrowed();
        checksum = checksum.wrapping_add(record.value.map_or(0, |v| v.len() as u64) + record.partition as u64);
    }
    black_box(checksum);
    let secs = start.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu0;
    Sample { secs, cpu_s, broker_cpu_s: f64::NAN, value_bytes: generator.summary().value_bytes, setup_s: 0.0 }
}

/// Produces `records` records to a fresh topic, checks the topic received them all.
fn to_broker(args: &Args, config: GeneratorConfig, broker_pid: Option<u32>) -> anyhow::Result<Sample> {
    let topic = unique_topic("bench-generate");
    create_topics(&args.brokers, &[&topic], i32::try_from(args.partitions).context("too many partitions")?)?;
    let settings = ProduceSettings { count: Some(args.records), overrides: args.rdkafka.clone(), ..ProduceSettings::new(&args.brokers, &topic) };
    let mut generator = VisitGenerator::try_new(config).context("generator settings")?;
    let broker0 = broker_pid.map_or(f64::NAN, process_cpu_seconds);
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let report = produce_into(&settings, &mut generator, &NeverStop, None)?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu0;
    let broker_cpu_s = broker_pid.map_or(f64::NAN, process_cpu_seconds) - broker0;

    let summary = generator.summary();
    if report.delivered != args.records || summary.records != args.records {
        bail!("delivered {} of {} records (summary: {})", report.delivered, args.records, summary.records);
    }
    let ends: Vec<u64> = end_offsets(&args.brokers, &topic, args.partitions as i32)?.values().map(|e| *e as u64).collect();
    if ends != summary.per_partition {
        bail!("end offsets {ends:?} of {topic} differ from the summary's {:?}", summary.per_partition);
    }
    let value_bytes = summary.value_bytes;
    if !args.keep_topics {
        delete_topic(&args.brokers, &topic)?;
    }
    Ok(Sample { secs, cpu_s, broker_cpu_s, value_bytes, setup_s: (secs - report.elapsed.as_secs_f64()).max(0.0) })
}

fn delete_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in futures_executor::block_on(admin.delete_topics(&[topic], &options))? {
        if let Err((topic, code)) = result {
            bail!("deleting topic {topic}: {code}");
        }
    }
    Ok(())
}

/// The pid of the broker `scripts/kafka.sh` started for the port of `brokers`, from its
/// pid file (`$TIDEWATCH_STATE_DIR/kafka-<port>/kafka.pid`).
fn broker_pid(brokers: &str) -> Option<u32> {
    let port = brokers.split(',').next()?.rsplit_once(':')?.1.trim();
    let state = std::env::var("TIDEWATCH_STATE_DIR").unwrap_or_else(|_| "/tmp/tidewatch".to_owned());
    let pid: u32 = std::fs::read_to_string(format!("{state}/kafka-{port}/kafka.pid")).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline).contains("kafka.Kafka").then_some(pid)
}

/// CPU time (user + system) of process `pid` in seconds so far.
fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

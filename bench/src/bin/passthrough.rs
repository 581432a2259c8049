//! Passthrough throughput on a real broker: a bare rdkafka consume→produce loop (the
//! practical limit) beside the tidewatch passthrough with 1 and 2 workers, with and
//! without the observers (quality, lag, stats windows, alerts), and the Kafka Streams
//! peer (`bench/peers/kafka-streams`, 1 and 2 threads), on the same broker and the same
//! generated visits, interleaved in one run. Prints medians and ratios and
//! writes `bench/results/passthrough.{json,md}`. Everything runs in this process; the
//! suite (`--bin suite`) measures the same contenders as separate processes, with CPU,
//! peak RSS, Spark and latency.
//!
//! ```text
//! scripts/kafka.sh start
//! cargo run --release -p tidewatch-bench --bin passthrough -- [--records 1000000] [--quick]
//! ```

#![allow(clippy::print_stdout)] // the result table is the program's output

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::bail;
use clap::Parser;
use serde::Serialize;
use tidewatch_bench::contenders::{bare_loop, kafka_streams, make_records, tidewatch};
use tidewatch_bench::{cpu_seconds, median, write_results, Machine};
use tidewatch_engine::Record;
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
                "bare rdkafka loop" => bare_loop(&args.brokers, &input, &output, args.partitions, 1, None)?,
                _ if name.starts_with("Kafka Streams") => {
                    let threads = if name.ends_with("2 threads") { 2 } else { 1 };
                    let (records, seconds) = kafka_streams(&args.brokers, &input, &output, threads, args.records)?;
                    peer_seconds = Some(seconds);
                    records
                }
                _ => {
                    let workers = if name.ends_with("2 workers") { 2 } else { 1 };
                    tidewatch(&args.brokers, &input, &output, workers, name.contains("observers"), true)?
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

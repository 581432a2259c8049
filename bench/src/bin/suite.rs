//! The benchmark suite: throughput and latency of tidewatch beside a bare rdkafka loop,
//! Kafka Streams, Spark, Bytewax, Benthos and MirrorMaker 2 (and the peers that observe
//! as tidewatch does), on the same broker and the same generated visits, in one run.
//!
//! ```text
//! cargo run --release -p tidewatch-bench --bin suite -- [--quick]
//! ```
//!
//! - **Throughput**: every contender copies the same 1 M visits (4 partitions) into a
//!   fresh topic, as a child process in its own process group, in interleaved rounds:
//!   records/s and MB/s over the contender's own timed span, CPU seconds per million
//!   records over that span (the whole process group, from /proc), peak RSS of the group.
//! - **Latency**: each contender runs continuously while a producer offers a steady rate
//!   (25 %, 50 %, 75 % of tidewatch passthrough's 1-worker median) into a fresh input
//!   topic; a measuring consumer reads the output and records consume time − the input
//!   record's timestamp (joined by partition and offset, as every contender copies in
//!   order to the same partition of a fresh topic) into an hdrhistogram, after a warm-up.
//!
//! Writes `bench/results/suite.{json,md}` and `suite-throughput.svg`, `suite-latency.svg`
//! (`suite-quick.*` with `--quick`). Starts the broker with `scripts/kafka.sh start` when
//! none answers, prepares the peers (Maven, PyPI; cached), and shows progress on stderr.

#![allow(clippy::print_stdout)] // the result table and the contender's lines are the program's output

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tidewatch_bench::contenders::{bare_loop, expected_observation, make_records, make_records_with_summary, observation_differences, peer_script, tidewatch_run};
use tidewatch_bench::procwatch::{tail, Outcome, Watched};
use tidewatch_bench::serving::{tidewatch_serving, Serving};
use tidewatch_bench::svg::{self, Bar, Series};
use tidewatch_bench::watch::{watch, WatchSpec};
use tidewatch_bench::{broker_pid, delete_topics, machine_busy_seconds, machine_steal_seconds, median, process_cpu_seconds, results_dir, Machine};
use tidewatch_engine::Record;
use tidewatch_jobs::visits::{produce_into, GeneratorConfig, ProduceSettings, VisitGenerator};
use tidewatch_tests::{create_topics, end_offsets, produce, require_broker, unique_topic};

#[derive(Debug, Parser)]
#[command(about = "Throughput and latency of tidewatch beside a bare rdkafka loop, Kafka Streams, Spark, Bytewax, Benthos and MirrorMaker 2")]
struct Args {
    #[command(subcommand)]
    contender: Option<Sub>,
    /// Bootstrap servers of the real broker (started with scripts/kafka.sh when it is the default and down).
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Records in the throughput input topic.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Partitions of every input and output topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Throughput rounds; each round runs every contender once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Latency: seconds of steady load before measuring.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Latency: seconds of steady load measured.
    #[arg(long, default_value_t = 20.0)]
    measure: f64,
    /// Latency: offered rates in percent of the base rate (tidewatch passthrough, 1 worker).
    #[arg(long, value_delimiter = ',', default_value = "25,50,75")]
    rates: Vec<f64>,
    /// Latency: the base rate in records/s (default: measured by the throughput part).
    #[arg(long)]
    base_rate: Option<f64>,
    /// Smoke run (a few minutes): 100 000 records, one round, 2 s + 5 s latency phases at
    /// 50 % only, Spark's throughput on the small input and no Spark latency.
    #[arg(long)]
    quick: bool,
    /// Leave Spark out.
    #[arg(long)]
    no_spark: bool,
    /// Leave the throughput part out (needs --base-rate for the latency part).
    #[arg(long)]
    no_throughput: bool,
    /// Leave the latency part out.
    #[arg(long)]
    no_latency: bool,
    /// Run only the contenders whose name contains one of these comma-separated parts.
    #[arg(long)]
    only: Option<String>,
    /// Name of the result files in bench/results/ [default: suite, or suite-quick].
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Runs one librdkafka contender in this process (the suite starts it as a child).
    #[command(hide = true)]
    Contender(ContenderArgs),
    /// Times a peer that runs until ended: its output topic's end offsets mark the end.
    #[command(hide = true)]
    Watch(WatchArgs),
}

#[derive(Debug, clap::Args)]
struct WatchArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    output: String,
    #[arg(long)]
    partitions: i32,
    /// Records to wait for (0: run until ended).
    #[arg(long, default_value_t = 0)]
    expect: u64,
    /// Start the span at the peer's first stdout line containing this.
    #[arg(long)]
    start_after: Option<String>,
    /// host:port of the peer's Prometheus endpoint, read every 10 s.
    #[arg(long)]
    metrics: Option<String>,
    /// Comma-separated names of the peer's own topics (their records are reported).
    #[arg(long, value_delimiter = ',')]
    own_topics: Vec<String>,
    /// The peer's command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ContenderArgs {
    /// bare, passthrough, observers, profiled (observers and the dataset profile), served
    /// (observers and their server) or watched (the server, and a page watching).
    #[arg(long)]
    kind: String,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long)]
    partitions: i32,
    /// Run until ended rather than until the input's end.
    #[arg(long)]
    continuous: bool,
}

/// What a contender is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Bare,
    Passthrough,
    Observers,
    /// The observers and the dataset profile.
    Profiled,
    /// The observers and their server (`/metrics`, the dashboard), nobody watching.
    Served,
    /// The observers and their server, a page reading its event stream.
    Watched,
    KafkaStreams,
    /// Kafka Streams with a step doing what the quality observer does.
    KafkaStreamsObserving,
    Spark,
    Bytewax,
    BytewaxObserving,
    Benthos,
    BenthosObserving,
    MirrorMaker2,
    /// No copy: the measuring consumer reads the input topic (the latency floor).
    Direct,
}

impl Kind {
    /// Whether the contender counts what tidewatch's quality observer counts and reports
    /// it in its result line (`observed`), checked against the generator's summary.
    fn observes(self) -> bool {
        matches!(self, Kind::KafkaStreamsObserving | Kind::BytewaxObserving | Kind::BenthosObserving)
    }

    /// The peer directory in `bench/peers/` that has to be prepared, if any.
    fn peer(self) -> Option<&'static str> {
        match self {
            Kind::KafkaStreams | Kind::KafkaStreamsObserving => Some("kafka-streams"),
            Kind::Spark => Some("spark"),
            Kind::Bytewax | Kind::BytewaxObserving => Some("bytewax"),
            Kind::Benthos | Kind::BenthosObserving => Some("benthos"),
            Kind::MirrorMaker2 => Some("mirrormaker"),
            Kind::Bare | Kind::Passthrough | Kind::Observers | Kind::Profiled | Kind::Served | Kind::Watched | Kind::Direct => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    kind: Kind,
    workers: usize,
}

const SPECS: &[Spec] = &[
    Spec { name: "bare rdkafka loop, 1 thread", kind: Kind::Bare, workers: 1 },
    Spec { name: "bare rdkafka loop, 2 threads", kind: Kind::Bare, workers: 2 },
    Spec { name: "tidewatch passthrough, 1 worker", kind: Kind::Passthrough, workers: 1 },
    Spec { name: "tidewatch passthrough, 2 workers", kind: Kind::Passthrough, workers: 2 },
    Spec { name: "tidewatch + observers, 1 worker", kind: Kind::Observers, workers: 1 },
    Spec { name: "tidewatch + observers, 2 workers", kind: Kind::Observers, workers: 2 },
    Spec { name: "tidewatch + observers + server, 1 worker", kind: Kind::Served, workers: 1 },
    Spec { name: "tidewatch + observers + server + watched page, 1 worker", kind: Kind::Watched, workers: 1 },
    Spec { name: "tidewatch + observers + profile, 1 worker", kind: Kind::Profiled, workers: 1 },
    Spec { name: "tidewatch + observers + profile, 2 workers", kind: Kind::Profiled, workers: 2 },
    Spec { name: "Kafka Streams, 1 thread", kind: Kind::KafkaStreams, workers: 1 },
    Spec { name: "Kafka Streams, 2 threads", kind: Kind::KafkaStreams, workers: 2 },
    Spec { name: "Kafka Streams + observation, 1 thread", kind: Kind::KafkaStreamsObserving, workers: 1 },
    Spec { name: "Kafka Streams + observation, 2 threads", kind: Kind::KafkaStreamsObserving, workers: 2 },
    Spec { name: "Spark, local[2]", kind: Kind::Spark, workers: 2 },
    Spec { name: "Bytewax, 1 worker", kind: Kind::Bytewax, workers: 1 },
    Spec { name: "Bytewax, 2 workers", kind: Kind::Bytewax, workers: 2 },
    Spec { name: "Bytewax + observation, 1 worker", kind: Kind::BytewaxObserving, workers: 1 },
    Spec { name: "Bytewax + observation, 2 workers", kind: Kind::BytewaxObserving, workers: 2 },
    Spec { name: "Benthos, 1 thread", kind: Kind::Benthos, workers: 1 },
    Spec { name: "Benthos + observation, 1 thread", kind: Kind::BenthosObserving, workers: 1 },
    Spec { name: "Benthos + observation, 2 threads", kind: Kind::BenthosObserving, workers: 2 },
    Spec { name: "MirrorMaker 2, 1 task", kind: Kind::MirrorMaker2, workers: 1 },
];

/// The contenders of the latency part (one thread or worker each; Spark as local[2]).
/// Of the observing peers only Benthos, the fastest, to keep a full run within ~40 min.
const LATENCY_SPECS: &[&str] = &[
    DIRECT.name,
    "bare rdkafka loop, 1 thread",
    "tidewatch passthrough, 1 worker",
    "tidewatch + observers, 1 worker",
    "Kafka Streams, 1 thread",
    "Spark, local[2]",
    "Bytewax, 1 worker",
    "Benthos, 1 thread",
    "Benthos + observation, 1 thread",
    "MirrorMaker 2, 1 task",
];

/// The latency floor: producer → broker → measuring consumer, nothing copied.
const DIRECT: Spec = Spec { name: "no copy (input read back)", kind: Kind::Direct, workers: 0 };

/// The measuring consumer's and the load producer's librdkafka settings.
const LOAD_PRODUCER_LINGER_MS: &str = "1";
const MEASURE_FETCH_WAIT_MS: &str = "10";

#[derive(Debug, Serialize)]
struct Throughput {
    name: String,
    kind: Kind,
    workers: usize,
    records_per_s: Vec<f64>,
    median_records_per_s: f64,
    median_mb_per_s: f64,
    /// CPU seconds of the contender's process group over its timed span, per million records.
    median_cpu_s_per_million: f64,
    /// The same over the whole process life (start-up included).
    median_cpu_total_s_per_million: f64,
    median_peak_rss_mb: f64,
    ratio_to_bare_1_thread: f64,
    /// CPU seconds of the broker per million records, over the contender's whole run.
    median_broker_cpu_s_per_million: f64,
    /// Cores kept busy by everything else on the machine during the contender's run
    /// (builds, tests, other programs): machine CPU − contender − broker, over wall time.
    median_other_cores: f64,
    /// CPU the hypervisor took from the machine during the run (steal), in cores.
    median_steal_cores: f64,
    /// Cores the contender kept busy over its span: records/s × CPU s per record.
    median_cores_busy: f64,
    /// Where its threads spent the span (medians), for the librdkafka contenders.
    waits: Option<Waits>,
    /// Observing peers: runs whose counts matched the generator's summary, of those run.
    counts_matched: Option<(usize, usize)>,
    /// The busiest threads of the last round (name, CPU s, waiting for a core s, sleeping s).
    busiest_threads: Vec<(String, f64, f64, f64)>,
    /// The last round's result line (a peer's own figures: records in its own topics,
    /// its metrics at the end).
    last_result: serde_json::Value,
}

/// The off-CPU view of one contender's span, from every thread's schedstat: the worker
/// threads (timely workers, or the bare loop's threads) and librdkafka's own threads.
#[derive(Debug, Serialize)]
struct Waits {
    /// Shares of the worker threads' time in the span: on a CPU, runnable but waiting for one, sleeping.
    worker_cpu_share: f64,
    worker_runq_share: f64,
    worker_sleep_share: f64,
    /// librdkafka's threads, seconds per million records: on a CPU, waiting for one.
    rdkafka_cpu_s_per_million: f64,
    rdkafka_runq_s_per_million: f64,
    /// The engine's own counters from the contender's result line (tidewatch only).
    engine: serde_json::Value,
}

/// Shares of the worker threads' span (on a CPU, waiting for one, sleeping), and
/// librdkafka's CPU and run-queue seconds.
type Shares = (f64, f64, f64, f64, f64);

fn wait_shares(o: &Outcome) -> Option<Shares> {
    let worker = |n: &str| n.starts_with("timely:work") || n.starts_with("bare-loop");
    let sum = |pick: &dyn Fn(&str) -> bool, f: &dyn Fn(&tidewatch_bench::procwatch::ThreadTime) -> f64| {
        o.threads.iter().filter(|t| pick(&t.name)).map(f).sum::<f64>()
    };
    let (cpu, runq, sleep) = (sum(&worker, &|t| t.cpu_s), sum(&worker, &|t| t.runq_s), sum(&worker, &|t| t.sleep_s));
    let total = cpu + runq + sleep;
    if total <= 0.0 {
        return None;
    }
    let rdk = |n: &str| n.starts_with("rdk:");
    Some((cpu / total, runq / total, sleep / total, sum(&rdk, &|t| t.cpu_s), sum(&rdk, &|t| t.runq_s)))
}

#[derive(Debug, Serialize)]
struct Latency {
    name: String,
    percent_of_base: f64,
    offered_per_s: f64,
    /// Records the producer got acknowledged per second over the load phase.
    produced_per_s: f64,
    samples: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// Records of the measured window not in the output when the drain ended.
    undelivered: u64,
    /// Share of output records whose own timestamp equals the input record's.
    timestamp_kept: f64,
}

#[derive(Debug, Serialize)]
struct Goal {
    goal: String,
    measured: String,
    met: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    started_utc: String,
    quick: bool,
    machine: Machine,
    machine_note: &'static str,
    records: usize,
    value_bytes: usize,
    partitions: i32,
    rounds: usize,
    throughput: Vec<Throughput>,
    latency_base: String,
    latency_base_per_s: f64,
    latency_warmup_s: f64,
    latency_measure_s: f64,
    latency_settings: &'static str,
    latency: Vec<Latency>,
    goals: Vec<Goal>,
    /// Peers that could not be prepared on this machine, and why.
    unavailable: Vec<Unavailable>,
    /// Observing runs whose counts differed from the generator's summary (not timed).
    wrong_counts: Vec<WrongCounts>,
}

#[derive(Debug, Serialize)]
struct Unavailable {
    peer: &'static str,
    reason: String,
}

#[derive(Debug, Serialize)]
struct WrongCounts {
    name: String,
    round: usize,
    differences: Vec<String>,
}

const MACHINE_NOTE: &str = "a shared cloud VM (the \"other load\" column says how busy the rest of it was); the broker runs on the same machine";
const LATENCY_SETTINGS: &str = "every contender's producer: linger.ms 5 (librdkafka contenders, Kafka Streams and MirrorMaker 2 as configured; Spark via kafka.linger.ms; Bytewax via its sink's add_config; Benthos v4.27.0 cannot set it and sends batches of 100 records or 5 ms), 1 MB batches, idempotent, acks=all; load producer: librdkafka, linger.ms 1; measuring consumer: librdkafka, fetch.wait.max.ms 10";

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let mut args = Args::parse();
    match args.contender.take() {
        Some(Sub::Contender(c)) => return run_contender(&c),
        Some(Sub::Watch(w)) => return run_watch(w),
        None => {}
    }
    if args.quick {
        args.records = args.records.min(100_000);
        args.rounds = 1;
        args.warmup = args.warmup.min(2.0);
        args.measure = args.measure.min(5.0);
        if args.rates == [25.0, 50.0, 75.0] {
            args.rates = vec![50.0];
        }
    }
    let name = args.name.clone().unwrap_or_else(|| if args.quick { "suite-quick".to_owned() } else { "suite".to_owned() });
    let progress = Progress::new();
    ensure_broker(&args.brokers, &progress)?;
    let mut specs: Vec<Spec> = SPECS
        .iter()
        .copied()
        .filter(|s| !(args.no_spark && s.kind == Kind::Spark))
        .filter(|s| args.only.as_ref().is_none_or(|o| o.split(',').any(|part| s.name.contains(part.trim()))))
        .collect();
    if specs.is_empty() {
        bail!("no contender left (--only, --no-spark)");
    }
    let unavailable = prepare_peers(&specs, &progress);
    specs.retain(|s| !s.kind.peer().is_some_and(|p| unavailable.iter().any(|u| u.peer == p)));
    if specs.is_empty() {
        bail!("no contender could be prepared");
    }

    let started_utc = utc_now();
    let mut report = Report {
        benchmark: "suite",
        started_utc,
        quick: args.quick,
        machine: Machine::current(),
        machine_note: MACHINE_NOTE,
        records: args.records,
        value_bytes: 0,
        partitions: args.partitions,
        rounds: args.rounds,
        throughput: Vec::new(),
        latency_base: String::new(),
        latency_base_per_s: f64::NAN,
        latency_warmup_s: args.warmup,
        latency_measure_s: args.measure,
        latency_settings: LATENCY_SETTINGS,
        latency: Vec::new(),
        goals: Vec::new(),
        unavailable,
        wrong_counts: Vec::new(),
    };
    if !args.no_throughput {
        let (throughput, value_bytes, wrong) = throughput_part(&args, &specs, &progress)?;
        report.throughput = throughput;
        report.value_bytes = value_bytes;
        report.wrong_counts = wrong;
    }
    if !args.no_latency {
        let base = match args.base_rate {
            Some(rate) => (format!("--base-rate {rate}"), rate),
            None => {
                let Some(t) = report.throughput.iter().find(|t| t.name == "tidewatch passthrough, 1 worker") else {
                    bail!("the latency part needs tidewatch passthrough, 1 worker in the throughput part, or --base-rate");
                };
                ("median throughput of tidewatch passthrough, 1 worker".to_owned(), t.median_records_per_s)
            }
        };
        report.latency_base = base.0;
        report.latency_base_per_s = base.1;
        report.latency = latency_part(&args, &specs, base.1, &progress)?;
    }
    report.goals = goals(&report);
    let table = markdown(&report, &name);
    println!("{table}");
    write_all(&name, &report, &table)?;
    progress.say(&format!("wrote bench/results/{name}.json, {name}.md, {name}-throughput.svg, {name}-latency.svg"));
    Ok(())
}

// ---------------------------------------------------------------- the contender child

fn run_contender(c: &ContenderArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    println!("{{\"event\":\"start\"}}");
    let start = Instant::now();
    let tidewatch = |observers, profile| tidewatch_run(&c.brokers, &c.input, &c.output, c.workers, observers, profile, !c.continuous);
    let (records, waits) = match c.kind.as_str() {
        "bare" => (bare_loop(&c.brokers, &c.input, &c.output, c.partitions, c.workers, c.continuous.then_some(&*stop))?, None),
        "passthrough" => tidewatch(false, false).map(|s| (s.records_delivered, Some(s.waits)))?,
        "observers" => tidewatch(true, false).map(|s| (s.records_delivered, Some(s.waits)))?,
        "profiled" => tidewatch(true, true).map(|s| (s.records_delivered, Some(s.waits)))?,
        "served" | "watched" => {
            let serving = if c.kind == "served" { Serving::Unwatched } else { Serving::Watched };
            tidewatch_serving(&c.brokers, &c.input, &c.output, c.workers, serving, !c.continuous).map(|s| (s.records_delivered, Some(s.waits)))?
        }
        other => bail!("unknown contender kind {other}"),
    };
    let seconds = start.elapsed().as_secs_f64();
    let line = serde_json::json!({ "records": records, "seconds": seconds, "waits": waits.map(|w| serde_json::json!({
        "parked_s": (w.worker_parked_s * 1000.0).round() / 1000.0,
        "empty_reads": w.source_empty_reads,
        "reads": w.source_reads,
        "gated": w.source_gated,
        "queue_full_s": (w.sink_queue_full_s * 1000.0).round() / 1000.0,
    })) });
    println!("{line}");
    Ok(())
}

fn run_watch(w: WatchArgs) -> anyhow::Result<()> {
    let WatchArgs { brokers, output, partitions, expect, start_after, metrics, own_topics, command } = w;
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    let spec = WatchSpec { brokers, output, partitions, expect, start_after, metrics, window: Duration::from_secs(10), own_topics };
    watch(&spec, cmd)
}

/// The output topic of a run: fresh, and for MirrorMaker 2 the name its replication
/// policy gives (`<source alias>.<input>`, the alias unique per run).
fn output_topic(spec: &Spec, input: &str) -> String {
    match spec.kind {
        Kind::MirrorMaker2 => format!("{}.{input}", unique_topic("mm2")),
        _ => unique_topic("suite-out"),
    }
}

/// The topics a peer creates for itself (deleted after its run): MirrorMaker 2's
/// heartbeats (and their copy), checkpoints, offset syncs, and each herder's configs,
/// offsets and status (source alias A, target alias A-t, as `mirrormaker/run.sh` names them).
fn own_topics(spec: &Spec, input: &str, output: &str) -> Vec<String> {
    match spec.kind {
        Kind::MirrorMaker2 => {
            let a = mm2_alias(input, output);
            let mut topics = vec!["heartbeats".to_owned(), format!("{a}.heartbeats"), format!("{a}.checkpoints.internal"), format!("mm2-offset-syncs.{a}-t.internal")];
            for herder in [a.to_owned(), format!("{a}-t")] {
                topics.extend(["configs", "offsets", "status"].map(|t| format!("mm2-{t}.{herder}.internal")));
            }
            topics
        }
        _ => Vec::new(),
    }
}

fn mm2_alias<'a>(input: &str, output: &'a str) -> &'a str {
    output.strip_suffix(input).and_then(|o| o.strip_suffix('.')).unwrap_or(output)
}

/// A free TCP port on 127.0.0.1 (for a peer's metrics endpoint).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The suite's `watch` sub-command around a peer that runs until ended.
fn watched(brokers: &str, output: &str, partitions: i32, expect: Option<usize>, extra: &[String], peer: &[String]) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["watch", "--brokers", brokers, "--output", output, "--partitions", &partitions.to_string(), "--expect", &expect.unwrap_or(0).to_string()]);
    cmd.args(extra).arg("--").args(peer);
    Ok(cmd)
}

fn command(spec: &Spec, brokers: &str, input: &str, output: &str, partitions: i32, expect: Option<usize>) -> anyhow::Result<Command> {
    let script = |peer: &str| peer_script(peer).to_string_lossy().into_owned();
    Ok(match spec.kind {
        Kind::Bare | Kind::Passthrough | Kind::Observers | Kind::Profiled | Kind::Served | Kind::Watched => {
            let kind = match spec.kind {
                Kind::Bare => "bare",
                Kind::Passthrough => "passthrough",
                Kind::Profiled => "profiled",
                Kind::Served => "served",
                Kind::Watched => "watched",
                _ => "observers",
            };
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["contender", "--kind", kind, "--workers", &spec.workers.to_string(), "--brokers", brokers, "--input", input, "--output", output]);
            cmd.args(["--partitions", &partitions.to_string()]);
            if expect.is_none() {
                cmd.arg("--continuous");
            }
            cmd
        }
        Kind::KafkaStreams | Kind::KafkaStreamsObserving => {
            let mut cmd = Command::new("bash");
            let expect = expect.unwrap_or(i64::MAX as usize);
            cmd.arg(peer_script("kafka-streams")).args([brokers, input, output, &spec.workers.to_string(), &expect.to_string()]);
            if spec.kind == Kind::KafkaStreamsObserving {
                cmd.arg("--observe");
            }
            cmd
        }
        Kind::Bytewax | Kind::BytewaxObserving => {
            let mut cmd = Command::new("bash");
            cmd.arg(peer_script("bytewax")).args([brokers, input, output, &spec.workers.to_string(), &expect.unwrap_or(0).to_string()]);
            cmd.arg(if spec.kind == Kind::BytewaxObserving { "observe" } else { "passthrough" });
            cmd
        }
        Kind::Benthos | Kind::BenthosObserving => {
            let port = free_port()?.to_string();
            let config = if spec.kind == Kind::BenthosObserving { "observe" } else { "passthrough" };
            let peer = ["bash".to_owned(), script("benthos"), brokers.to_owned(), input.to_owned(), output.to_owned(), spec.workers.to_string(), config.to_owned(), port.clone()];
            watched(brokers, output, partitions, expect, &["--metrics".to_owned(), format!("127.0.0.1:{port}")], &peer)?
        }
        Kind::MirrorMaker2 => {
            let alias = mm2_alias(input, output);
            let peer = ["bash".to_owned(), script("mirrormaker"), brokers.to_owned(), input.to_owned(), alias.to_owned()];
            let extra = ["--start-after".to_owned(), "MirrorSourceConnector-0} Source task finished initialization and start".to_owned(), "--own-topics".to_owned(), own_topics(spec, input, output).join(",")];
            watched(brokers, output, partitions, expect, &extra, &peer)?
        }
        Kind::Direct => bail!("the no-copy floor runs no contender"),
        Kind::Spark => {
            let mut cmd = Command::new("bash");
            cmd.arg(peer_script("spark")).args([brokers, input, output, &expect.unwrap_or(0).to_string()]);
            cmd
        }
    })
}

fn log_path(what: &str) -> PathBuf {
    let cache = std::env::var_os("TIDEWATCH_CACHE").map_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/tidewatch"), PathBuf::from);
    let slug: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    cache.join("bench-logs").join(format!("{slug}.log"))
}

// ---------------------------------------------------------------- preparation

fn ensure_broker(brokers: &str, progress: &Progress) -> anyhow::Result<()> {
    if require_broker(brokers).is_ok() {
        progress.say(&format!("broker at {brokers} answers"));
        return Ok(());
    }
    if brokers != "127.0.0.1:9092" {
        bail!("no broker answers at {brokers}");
    }
    progress.say("no broker answers: starting one with scripts/kafka.sh start");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let status = Command::new("bash").arg(script).arg("start").status().context("running scripts/kafka.sh start")?;
    if !status.success() {
        bail!("scripts/kafka.sh start failed: {status}");
    }
    require_broker(brokers)
}

/// Prepares every peer the contenders need (each `run.sh --prepare`, cached after the
/// first time); a peer that cannot be prepared here is returned with the reason (the
/// last lines it printed), and the run goes on without it.
fn prepare_peers(specs: &[Spec], progress: &Progress) -> Vec<Unavailable> {
    let mut peers: Vec<&'static str> = Vec::new();
    for peer in specs.iter().filter_map(|s| s.kind.peer()) {
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    let mut unavailable = Vec::new();
    for peer in peers {
        progress.say(&format!("preparing the {peer} peer (cached after the first time) ..."));
        let log = log_path(&format!("prepare-{peer}"));
        let result = (|| -> anyhow::Result<()> {
            if let Some(dir) = log.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let err = std::fs::File::create(&log)?;
            let status = Command::new("bash").arg(peer_script(peer)).arg("--prepare").stdout(err.try_clone()?).stderr(err).status()?;
            if !status.success() {
                bail!("{status}: {}", tail(&log, 3).replace('\n', " / "));
            }
            Ok(())
        })();
        if let Err(e) = result {
            progress.say(&format!("    the {peer} peer cannot run here, left out: {e:#} (log: {})", log.display()));
            unavailable.push(Unavailable { peer, reason: format!("{e:#}") });
        }
    }
    unavailable
}

// ---------------------------------------------------------------- throughput

fn throughput_part(args: &Args, specs: &[Spec], progress: &Progress) -> anyhow::Result<(Vec<Throughput>, usize, Vec<WrongCounts>)> {
    let input = unique_topic("suite-in");
    create_topics(&args.brokers, &[&input], args.partitions)?;
    progress.say(&format!("throughput: producing {} generated visits to {input} ...", args.records));
    let (records, summary) = make_records_with_summary(args.records, args.partitions);
    let expected = expected_observation(&summary);
    let mut wrong = Vec::new();
    let mut matched: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    produce(&args.brokers, &input, &records)?;
    let bytes: usize = records.iter().map(Record::size_bytes).sum();
    drop(records);
    let value_bytes = bytes / args.records.max(1);

    let total = args.rounds * specs.len();
    let mut samples: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
    // Per run: (broker CPU s, other cores, steal cores).
    let mut around: BTreeMap<&str, Vec<(f64, f64, f64)>> = BTreeMap::new();
    let broker = broker_pid(&args.brokers);
    let mut step = 0;
    for round in 0..args.rounds {
        for spec in specs {
            step += 1;
            let output = output_topic(spec, &input);
            create_topics(&args.brokers, &[&output], args.partitions)?;
            progress.step(step, total, &format!("throughput round {}/{}: {} ...", round + 1, args.rounds, spec.name));
            let log = log_path(&format!("throughput-{}-{}", spec.name, round + 1));
            let (broker0, busy0, steal0) = (process_cpu_seconds(broker), machine_busy_seconds(), machine_steal_seconds());
            let watched = Watched::spawn(command(spec, &args.brokers, &input, &output, args.partitions, Some(args.records))?, &log)?;
            let outcome = watched.wait(Duration::from_secs(900)).with_context(|| format!("{} (round {})", spec.name, round + 1));
            let (broker_s, busy_s, steal_s) =
                (process_cpu_seconds(broker) - broker0, machine_busy_seconds() - busy0, machine_steal_seconds() - steal0);
            let mut topics = vec![output.clone()];
            topics.extend(own_topics(spec, &input, &output));
            let _ = delete_topics(&args.brokers, &topics.iter().map(String::as_str).collect::<Vec<_>>());
            let outcome = match outcome {
                Ok(o) if o.records == args.records as u64 && spec.kind.observes() => {
                    let differences = observation_differences(&expected, &o.result["observed"]);
                    let counts = matched.entry(spec.name).or_default();
                    counts.1 += 1;
                    if !differences.is_empty() {
                        progress.say(&format!("    wrong counts, not timed: {} (log: {})", differences.join("; "), log.display()));
                        wrong.push(WrongCounts { name: spec.name.to_owned(), round: round + 1, differences });
                        continue;
                    }
                    counts.0 += 1;
                    o
                }
                Ok(o) if o.records == args.records as u64 => o,
                Ok(o) => {
                    progress.say(&format!("    failed: copied {} of {} records (log: {})", o.records, args.records, log.display()));
                    continue;
                }
                Err(e) => {
                    progress.say(&format!("    failed: {e:#}"));
                    continue;
                }
            };
            let rate = outcome.records as f64 / outcome.seconds;
            let other_cores = ((busy_s - outcome.cpu_total_s - broker_s) / outcome.wall_s).max(0.0);
            let steal_cores = steal_s / outcome.wall_s;
            progress.say(&format!(
                "    {:>9.0} records/s  {:>6.1} MB/s  {:>5.2} CPU s/M (span)  {:>5.2} CPU s/M (process)  peak RSS {:>5.0} MB  broker {:.2} CPU s/M  others {:.2} cores  steal {:.2} cores",
                rate,
                rate * value_bytes as f64 / 1e6,
                outcome.cpu_span_s * 1e6 / args.records as f64,
                outcome.cpu_total_s * 1e6 / args.records as f64,
                outcome.peak_rss_bytes as f64 / 1e6,
                broker_s * 1e6 / args.records as f64,
                other_cores,
                steal_cores
            ));
            let threads: Vec<String> = outcome.threads.iter().take(4).map(|t| format!("{} {:.2}/{:.2}/{:.2}", t.name, t.cpu_s, t.runq_s, t.sleep_s)).collect();
            progress.say(&format!("    threads (CPU/run queue/sleeping s): {}", threads.join(", ")));
            around.entry(spec.name).or_default().push((broker_s, other_cores, steal_cores));
            samples.entry(spec.name).or_default().push(outcome);
        }
    }
    let _ = delete_topics(&args.brokers, &[&input]);
    let m = |name: &str, f: &dyn Fn(&Outcome) -> f64| samples.get(name).map_or(f64::NAN, |s| median(&s.iter().map(f).collect::<Vec<_>>()));
    let per_m = 1e6 / args.records as f64;
    let bare = m(SPECS[0].name, &|o| o.records as f64 / o.seconds);
    let results = specs
        .iter()
        .filter(|spec| samples.contains_key(spec.name))
        .map(|spec| {
            let rate = m(spec.name, &|o| o.records as f64 / o.seconds);
            Throughput {
                name: spec.name.to_owned(),
                kind: spec.kind,
                workers: spec.workers,
                records_per_s: samples[spec.name].iter().map(|o| o.records as f64 / o.seconds).collect(),
                median_records_per_s: rate,
                median_mb_per_s: rate * value_bytes as f64 / 1e6,
                median_cpu_s_per_million: m(spec.name, &|o| o.cpu_span_s) * per_m,
                median_cpu_total_s_per_million: m(spec.name, &|o| o.cpu_total_s) * per_m,
                median_peak_rss_mb: m(spec.name, &|o| o.peak_rss_bytes as f64) / 1e6,
                ratio_to_bare_1_thread: rate / bare,
                median_broker_cpu_s_per_million: median(&around[spec.name].iter().map(|a| a.0).collect::<Vec<_>>()) * per_m,
                median_other_cores: median(&around[spec.name].iter().map(|a| a.1).collect::<Vec<_>>()),
                median_steal_cores: median(&around[spec.name].iter().map(|a| a.2).collect::<Vec<_>>()),
                median_cores_busy: m(spec.name, &|o| o.cpu_span_s / o.seconds),
                waits: {
                    let shares: Vec<_> = samples[spec.name].iter().filter_map(wait_shares).collect();
                    let med = |f: &dyn Fn(&Shares) -> f64| median(&shares.iter().map(f).collect::<Vec<_>>());
                    (!shares.is_empty()).then(|| Waits {
                        worker_cpu_share: med(&|s| s.0),
                        worker_runq_share: med(&|s| s.1),
                        worker_sleep_share: med(&|s| s.2),
                        rdkafka_cpu_s_per_million: med(&|s| s.3) * per_m,
                        rdkafka_runq_s_per_million: med(&|s| s.4) * per_m,
                        engine: samples[spec.name].last().and_then(|o| o.result.get("waits").cloned()).unwrap_or_default(),
                    })
                },
                counts_matched: matched.get(spec.name).copied(),
                busiest_threads: samples[spec.name].last().map_or_else(Vec::new, |o| o.threads.iter().take(6).map(|t| (t.name.clone(), t.cpu_s, t.runq_s, t.sleep_s)).collect()),
                last_result: samples[spec.name].last().map_or(serde_json::Value::Null, |o| o.result.clone()),
            }
        })
        .collect();
    Ok((results, value_bytes, wrong))
}

// ---------------------------------------------------------------- latency

fn latency_part(args: &Args, specs: &[Spec], base: f64, progress: &Progress) -> anyhow::Result<Vec<Latency>> {
    let chosen: Vec<Spec> = std::iter::once(DIRECT)
        .chain(specs.iter().copied())
        .filter(|s| LATENCY_SPECS.contains(&s.name))
        .filter(|s| !(args.quick && s.kind == Kind::Spark))
        .collect();
    if args.quick && specs.iter().any(|s| s.kind == Kind::Spark) {
        progress.say("latency: --quick leaves Spark out of the latency part (its start-up alone takes ~15 s per phase)");
    }
    let total = args.rates.len() * chosen.len();
    let mut results = Vec::new();
    let mut step = 0;
    for &percent in &args.rates {
        let rate = (base * percent / 100.0 / 1000.0).round().max(1.0) * 1000.0;
        for spec in &chosen {
            step += 1;
            progress.step(step, total, &format!("latency at {rate:.0} records/s ({percent:.0} % of {base:.0}): {} ...", spec.name));
            match latency_phase(args, spec, percent, rate, progress) {
                Ok(l) => {
                    progress.say(&format!(
                        "    p50 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms  ({} samples, {} undelivered, timestamp kept {:.0} %)",
                        l.p50_ms,
                        l.p99_ms,
                        l.p999_ms,
                        l.max_ms,
                        l.samples,
                        l.undelivered,
                        l.timestamp_kept * 100.0
                    ));
                    results.push(l);
                }
                Err(e) => progress.say(&format!("    failed: {e:#}")),
            }
        }
    }
    Ok(results)
}

/// What the measuring consumer saw per output partition, indexed by offset: (consume
/// time in µs since the epoch, the output record's timestamp in ms).
type Seen = Vec<Vec<(u64, i64)>>;

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn latency_phase(args: &Args, spec: &Spec, percent: f64, rate: f64, progress: &Progress) -> anyhow::Result<Latency> {
    let input = unique_topic("suite-lat-in");
    let output = match spec.kind {
        Kind::MirrorMaker2 => output_topic(spec, &input),
        _ => unique_topic("suite-lat-out"),
    };
    create_topics(&args.brokers, &[&input, &output], args.partitions)?;
    let result = latency_run(args, spec, percent, rate, &input, &output, progress);
    let mut topics = vec![input.clone(), output.clone()];
    topics.extend(own_topics(spec, &input, &output));
    let _ = delete_topics(&args.brokers, &topics.iter().map(String::as_str).collect::<Vec<_>>());
    result
}

#[allow(clippy::too_many_arguments)]
fn latency_run(args: &Args, spec: &Spec, percent: f64, rate: f64, input: &str, output: &str, progress: &Progress) -> anyhow::Result<Latency> {
    let partitions = args.partitions;
    let log = log_path(&format!("latency-{}-{percent}", spec.name));
    // The no-copy floor reads the input itself.
    let (mut watched, output) = if spec.kind == Kind::Direct {
        (None, input)
    } else {
        (Some(Watched::spawn(command(spec, &args.brokers, input, output, partitions, None)?, &log)?), output)
    };
    let exited = |w: &mut Option<Watched>| w.as_mut().is_some_and(Watched::exited);

    // The measuring consumer, from the start of the output topic.
    let seen: Arc<Mutex<Seen>> = Arc::new(Mutex::new(vec![Vec::new(); partitions as usize]));
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", unique_topic("suite-measure"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", MEASURE_FETCH_WAIT_MS)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(output, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let measurer = {
        let (seen, count, stop) = (Arc::clone(&seen), Arc::clone(&count), Arc::clone(&stop));
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let at = now_us();
                        let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                        let part = &mut s[m.partition() as usize];
                        let offset = m.offset() as usize;
                        if part.len() <= offset {
                            part.resize(offset + 1, (0, -1));
                        }
                        part[offset] = (at, m.timestamp().to_millis().unwrap_or(-1));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(e)) => bail!("measuring consumer: {e}"),
                    None => {}
                }
            }
            Ok(())
        })
    };

    // Ready once one probe record per partition has come through.
    let probes: Vec<Record> = make_records(partitions as usize, 1)
        .into_iter()
        .enumerate()
        .map(|(p, r)| Record { partition: p as i32, timestamp: None, ..r })
        .collect();
    produce(&args.brokers, input, &probes)?;
    let ready_by = Instant::now() + Duration::from_secs(300);
    while count.load(Ordering::Relaxed) < partitions as u64 {
        if exited(&mut watched) {
            stop.store(true, Ordering::Relaxed);
            bail!("{} ended before it was ready (log: {})\n{}", spec.name, log.display(), tail(&log, 15));
        }
        if Instant::now() > ready_by {
            stop.store(true, Ordering::Relaxed);
            bail!("{} copied no probe record within 300 s (log: {})", spec.name, log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // Steady load: warm-up, then the measured window.
    let config = GeneratorConfig { seed: 2, partitions: partitions.unsigned_abs(), partition_weights: vec![1; partitions.unsigned_abs() as usize], ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::new(config);
    let mut settings = ProduceSettings::new(&args.brokers, input);
    settings.rate = rate as u64;
    settings.duration = Some(Duration::from_secs_f64(args.warmup + args.measure));
    settings.overrides = vec![("linger.ms".to_owned(), LOAD_PRODUCER_LINGER_MS.to_owned())];
    let load_start_ms = (now_us() / 1000) as i64;
    let never = AtomicBool::new(false);
    let produced = produce_into(&settings, &mut generator, &never, None).context("the load producer")?;
    let window = (load_start_ms + (args.warmup * 1000.0) as i64, load_start_ms + ((args.warmup + args.measure) * 1000.0) as i64);

    // Drain: until everything produced is in the output, at most 30 s.
    let want = partitions as u64 + produced.delivered;
    let drain_by = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::Relaxed) < want && Instant::now() < drain_by && !exited(&mut watched) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let outstanding = want.saturating_sub(count.load(Ordering::Relaxed));
    if outstanding > 0 {
        progress.say(&format!("    {outstanding} records still not copied 30 s after the load ended"));
    }
    stop.store(true, Ordering::Relaxed);
    measurer.join().map_err(|_| anyhow::anyhow!("the measuring consumer panicked"))??;
    if let Some(w) = watched {
        let _ = w.stop();
    }

    // Join with the input's timestamps by partition and offset.
    let input_ts = read_timestamps(&args.brokers, input, partitions)?;
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let (mut samples, mut undelivered, mut kept, mut compared) = (0u64, 0u64, 0u64, 0u64);
    for (p, stamps) in input_ts.iter().enumerate() {
        for (offset, &ts) in stamps.iter().enumerate() {
            let out = seen[p].get(offset).copied().filter(|(at, _)| *at > 0);
            if let Some((_, out_ts)) = out {
                compared += 1;
                kept += u64::from(out_ts == ts);
            }
            if ts < window.0 || ts >= window.1 {
                continue;
            }
            match out {
                Some((at, _)) => {
                    samples += 1;
                    hist.saturating_record((at as i64 - ts * 1000).max(1) as u64);
                }
                None => undelivered += 1,
            }
        }
    }
    if samples == 0 {
        bail!("no record of the measured window came through (log: {})", log.display());
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Latency {
        name: spec.name.to_owned(),
        percent_of_base: percent,
        offered_per_s: rate,
        produced_per_s: produced.rate(),
        samples,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1000.0,
        undelivered,
        timestamp_kept: kept as f64 / compared.max(1) as f64,
    })
}

/// Every record's timestamp (ms) per partition, indexed by offset (topics start at 0).
fn read_timestamps(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<Vec<i64>>> {
    let ends = end_offsets(brokers, topic, partitions)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_topic("suite-read"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out: Vec<Vec<i64>> = (0..partitions).map(|p| vec![-1; ends[&p] as usize]).collect();
    let mut left: u64 = ends.values().map(|e| *e as u64).sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    while left > 0 {
        if Instant::now() > deadline {
            bail!("reading the timestamps of {topic}: {left} records missing after 120 s");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            if let Some(slot) = out[m.partition() as usize].get_mut(m.offset() as usize) {
                if *slot == -1 {
                    left -= 1;
                }
                *slot = m.timestamp().to_millis().unwrap_or(-1);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- goals, tables, plots

/// The copy path's targets (issue 14), judged on this run's medians.
fn goals(report: &Report) -> Vec<Goal> {
    let row = |name: &str| report.throughput.iter().find(|t| t.name == name);
    let t = |name: &str| row(name).map_or(f64::NAN, |t| t.median_records_per_s);
    let cpu = |name: &str| row(name).map_or(f64::NAN, |t| t.median_cpu_s_per_million);
    let (bare, pass, obs) = ("bare rdkafka loop, 1 thread", "tidewatch passthrough, 1 worker", "tidewatch + observers, 1 worker");
    let mut goals = Vec::new();
    let mut at_least = |goal: String, a: f64, b: f64, bound: f64, unit: &str| {
        let r = a / b;
        if r.is_finite() {
            goals.push(Goal { goal, measured: format!("{r:.2} ({a:.0} / {b:.0} {unit})"), met: r >= bound });
        }
    };
    at_least(format!("{obs} ≥ 1.0× {bare}"), t(obs), t(bare), 1.0, "records/s");
    at_least(format!("{obs} ≥ 1.0× Kafka Streams, 1 thread"), t(obs), t("Kafka Streams, 1 thread"), 1.0, "records/s");
    at_least(format!("{pass} ≥ 1.2× {bare}"), t(pass), t(bare), 1.2, "records/s");
    at_least("tidewatch + observers, 2 workers ≥ 1.5× Kafka Streams, 2 threads".to_owned(), t("tidewatch + observers, 2 workers"), t("Kafka Streams, 2 threads"), 1.5, "records/s");
    for (name, bound) in [(pass, 1.0), (obs, 1.25)] {
        let r = cpu(name) / cpu(bare);
        if r.is_finite() {
            goals.push(Goal {
                goal: format!("CPU per record, {name} ≤ {bound:.2}× {bare}"),
                measured: format!("{r:.2} ({:.2} / {:.2} CPU s per M records)", cpu(name), cpu(bare)),
                met: r <= bound,
            });
        }
    }
    for name in [pass, obs] {
        if let Some(busy) = row(name).map(|t| t.median_cores_busy).filter(|b| b.is_finite()) {
            goals.push(Goal { goal: format!("{name} at its maximum rate keeps ≥ 0.9 of a core busy"), measured: format!("{busy:.2} cores"), met: busy >= 0.9 });
        }
    }
    // Issue 17: tidewatch observing against the peers that observe too.
    for (workers, peer_threads) in [("1 worker", "1 thread"), ("2 workers", "2 threads")] {
        let ours = format!("tidewatch + observers, {workers}");
        for peer in [format!("Kafka Streams + observation, {peer_threads}"), format!("Benthos + observation, {peer_threads}")] {
            let r = cpu(&peer) / cpu(&ours);
            if r.is_finite() {
                goals.push(Goal {
                    goal: format!("CPU per record, {ours} ≤ 0.5× {peer}"),
                    measured: format!("{r:.2}× less ({:.2} / {:.2} CPU s per M records)", cpu(&peer), cpu(&ours)),
                    met: r >= 2.0,
                });
            }
        }
        let bytewax = format!("Bytewax + observation, {workers}");
        let r = t(&ours) / t(&bytewax);
        if r.is_finite() {
            goals.push(Goal { goal: format!("{ours} ≥ 5× {bytewax}"), measured: format!("{r:.2} ({:.0} / {:.0} records/s)", t(&ours), t(&bytewax)), met: r >= 5.0 });
        }
    }
    let p99 = |name: &str| report.latency.iter().find(|l| l.name == name && (l.percent_of_base - 75.0).abs() < 1e-9);
    if let Some(b) = p99(bare) {
        for name in [pass, obs] {
            if let Some(l) = p99(name) {
                goals.push(Goal {
                    goal: format!("p99 at 75 % load, {name} ≤ {bare}"),
                    measured: format!("{:.1} ms vs {:.1} ms at {:.0} records/s", l.p99_ms, b.p99_ms, l.offered_per_s),
                    met: l.p99_ms <= b.p99_ms && l.undelivered == 0,
                });
            }
        }
    }
    goals
}

/// tidewatch beside the peers doing the same work (issue 17): records/s and CPU per
/// record of tidewatch over the peer's, from this run's medians.
fn comparisons(report: &Report) -> Vec<(String, String, f64, f64)> {
    let row = |name: &str| report.throughput.iter().find(|t| t.name == name);
    let mut out = Vec::new();
    let pairs: [(&str, &[&str]); 4] = [
        ("tidewatch passthrough, 1 worker", &["MirrorMaker 2, 1 task", "Benthos, 1 thread", "Bytewax, 1 worker", "Kafka Streams, 1 thread"]),
        ("tidewatch passthrough, 2 workers", &["Bytewax, 2 workers", "Kafka Streams, 2 threads"]),
        ("tidewatch + observers, 1 worker", &["Kafka Streams + observation, 1 thread", "Benthos + observation, 1 thread", "Bytewax + observation, 1 worker"]),
        ("tidewatch + observers, 2 workers", &["Kafka Streams + observation, 2 threads", "Benthos + observation, 2 threads", "Bytewax + observation, 2 workers"]),
    ];
    for (ours, peers) in pairs {
        let Some(a) = row(ours) else { continue };
        for peer in peers {
            if let Some(b) = row(peer) {
                out.push((ours.to_owned(), (*peer).to_owned(), a.median_records_per_s / b.median_records_per_s, b.median_cpu_s_per_million / a.median_cpu_s_per_million));
            }
        }
    }
    out
}

fn markdown(report: &Report, name: &str) -> String {
    let mut out = format!(
        "Benchmark suite{}, {} UTC. Machine: {} CPUs ({}), {}; {}.\n\n",
        if report.quick { " (--quick smoke run)" } else { "" },
        report.started_utc,
        report.machine.cpus,
        report.machine.cpu_model,
        report.machine.os,
        report.machine_note
    );
    if !report.throughput.is_empty() {
        out.push_str(&format!(
            "**Throughput**: {} generated visits (mean {} bytes of key + value), {} partitions, each contender into a fresh topic, median of {} interleaved round(s).\n\n\
             | contender | records/s | MB/s | CPU s / M records (span) | cores busy | CPU s / M records (process) | peak RSS MB | ratio to bare loop, 1 thread | broker CPU s / M records | other load (cores) | steal (cores) | counts checked |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
            report.records, report.value_bytes, report.partitions, report.rounds
        ));
        for t in &report.throughput {
            out.push_str(&format!(
                "| {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
                t.name,
                t.median_records_per_s,
                t.median_mb_per_s,
                t.median_cpu_s_per_million,
                t.median_cores_busy,
                t.median_cpu_total_s_per_million,
                t.median_peak_rss_mb,
                t.ratio_to_bare_1_thread,
                t.median_broker_cpu_s_per_million,
                t.median_other_cores,
                t.median_steal_cores,
                t.counts_matched.map_or(String::new(), |(ok, of)| format!("{ok} of {of} runs right"))
            ));
        }
        out.push_str(
            "\nEach contender is a child process in its own process group; the span is its own timed span (from just before it starts \
             consuming until all N records are copied and acknowledged — Kafka Streams until its close, Spark until the output topic holds N records \
             and the last micro-batch's counts are done, Bytewax until every worker process has flushed, Benthos and MirrorMaker 2 until the output topic holds N records); \
             JVM, Spark, Python and MirrorMaker start-up are outside the span but inside \"process\". CPU and RSS cover \
             the whole process group (Spark: the Python driver and its JVM; Bytewax: its driver and worker processes; Benthos and MirrorMaker 2: with the suite's watcher), from /proc. \"+ observers\" is the job's default observers (quality, lag, stats windows, alerts, NDJSON outputs); \"+ profile\" adds the dataset profile \
             (per-field sketches of every record, 60 s windows, so no report is rendered within a run). Broker CPU is the broker's over the contender's whole run; \
             \"other load\" is what everything else on the machine (builds, tests, other programs) kept busy meanwhile, and \"steal\" what the hypervisor took from this VM's CPUs, both in cores out of the machine's. \
             \"Cores busy\" is records/s × CPU s per record: a contender below one core on its own worker is waiting.\n\n",
        );
        out.push_str(&peers_notes(report));
        out.push_str(&waits_table(report));
        out.push_str(&peer_threads_table(report));
    }
    if !report.latency.is_empty() {
        out.push_str(&format!(
            "**Latency** (record timestamp → read back from the output topic by a separate consumer), steady offered rates in percent of the {} ({:.0} records/s), \
             {} s warm-up then {} s measured, each contender running continuously on fresh topics. {}.\n\n\
             | contender | offered records/s | p50 ms | p99 ms | p99.9 ms | max ms | undelivered | output keeps the timestamp |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
            report.latency_base, report.latency_base_per_s, report.latency_warmup_s, report.latency_measure_s, report.latency_settings
        ));
        for l in &report.latency {
            out.push_str(&format!(
                "| {} | {:.0} ({:.0} %) | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} % |\n",
                l.name, l.offered_per_s, l.percent_of_base, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.undelivered, l.timestamp_kept * 100.0
            ));
        }
        out.push_str("\nLatency joins each output record with its input record by partition and offset (every contender copies in order to the same partition of a fresh topic), so it holds for Spark too, whose Kafka sink cannot write the record timestamp.\n\n");
    }
    let pairs = comparisons(report);
    if !pairs.is_empty() {
        out.push_str("**tidewatch beside the peers doing the same work** (this run's medians; ratios above 1 favour tidewatch)\n\n| tidewatch | peer | records/s, tidewatch ÷ peer | CPU per record, peer ÷ tidewatch |\n|---|---|---:|---:|\n");
        for (ours, peer, rate, cpu) in pairs {
            out.push_str(&format!("| {ours} | {peer} | {rate:.2} | {cpu:.2} |\n"));
        }
        out.push('\n');
    }
    if !report.goals.is_empty() {
        out.push_str("**Goals** (the copy path's targets)\n\n| goal | measured | met |\n|---|---|---|\n");
        for g in &report.goals {
            out.push_str(&format!("| {} | {} | {} |\n", g.goal, g.measured, if g.met { "yes" } else { "**no**" }));
        }
        out.push('\n');
    }
    out.push_str(&format!("Plots: [{name}-throughput.svg]({name}-throughput.svg), [{name}-latency.svg]({name}-latency.svg).\n"));
    out
}

/// The off-CPU view: where each librdkafka contender's threads spent the span.
fn waits_table(report: &Report) -> String {
    // The librdkafka contenders only (Bytewax's workers are timely threads too; the peers have their own table).
    let rows: Vec<_> = report.throughput.iter().filter(|t| t.kind.peer().is_none()).filter_map(|t| t.waits.as_ref().map(|w| (t, w))).collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "**Where the time goes** (every thread's schedstat over the span, medians): the worker threads' time split into on a CPU, \
         runnable but waiting for a core, and sleeping (parked, or blocked in a poll); librdkafka's own threads (fetch, produce) in CPU and run-queue \
         seconds per million records; and the engine's own counters of the last round.\n\n\
         | contender | cores busy | worker on CPU | worker waiting for a core | worker sleeping | librdkafka CPU s / M | librdkafka waiting s / M | engine counters |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (t, w) in rows {
        let engine = match &w.engine {
            serde_json::Value::Object(m) if !m.is_empty() => m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| {} | {:.2} | {:.0} % | {:.0} % | {:.0} % | {:.2} | {:.2} | {} |\n",
            t.name,
            t.median_cores_busy,
            w.worker_cpu_share * 100.0,
            w.worker_runq_share * 100.0,
            w.worker_sleep_share * 100.0,
            w.rdkafka_cpu_s_per_million,
            w.rdkafka_runq_s_per_million,
            engine
        ));
    }
    out.push('\n');
    out
}

/// What the observing peers' counts and the peers that could not run say about the run.
fn peers_notes(report: &Report) -> String {
    let mut out = String::new();
    if report.throughput.iter().any(|t| t.kind.observes()) {
        out.push_str(
            "\"+ observation\" peers parse every value as JSON and count, per 10 s window, the records whose `event_time`, `user_id` or `page` is missing, null or \"\" \
             (what tidewatch's quality observer counts); every run's totals are checked against the generator's summary (\"counts checked\"), and a run whose counts differ is \
             reported below and not timed.\n\n",
        );
    }
    for w in &report.wrong_counts {
        out.push_str(&format!("- **wrong counts**, {} (round {}): {}\n", w.name, w.round, w.differences.join("; ")));
    }
    for u in &report.unavailable {
        out.push_str(&format!("- **could not run here**: the {} peer: {}\n", u.peer, u.reason));
    }
    if let Some(mm2) = report.throughput.iter().find(|t| t.kind == Kind::MirrorMaker2) {
        if let Some(own) = mm2.last_result["own_topics"].as_object() {
            let total: u64 = own.values().filter_map(serde_json::Value::as_u64).sum();
            let list: Vec<String> = own.iter().map(|(k, v)| format!("`{k}` {v}")).collect();
            out.push_str(&format!(
                "- MirrorMaker 2's own topics are part of its cost (its CPU and the broker's include writing them): {total} records in the last round besides the copy ({}).\n",
                list.join(", ")
            ));
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Where each peer's threads spent its span (the busiest threads of its last round).
fn peer_threads_table(report: &Report) -> String {
    let rows: Vec<_> = report.throughput.iter().filter(|t| t.kind.peer().is_some() && !t.busiest_threads.is_empty()).collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "**Where the peers' time goes** (the busiest threads of each peer's last round, by schedstat: CPU s / waiting for a core s / sleeping s over the span; \
         thread names as the kernel has them, cut at 15 characters)\n\n| peer | busiest threads |\n|---|---|\n",
    );
    for t in rows {
        let threads: Vec<String> = t.busiest_threads.iter().map(|(n, c, q, s)| format!("{n} {c:.2}/{q:.2}/{s:.2}")).collect();
        out.push_str(&format!("| {} | {} |\n", t.name, threads.join(", ")));
    }
    out.push('\n');
    out
}

fn write_all(name: &str, report: &Report, table: &str) -> anyhow::Result<()> {
    tidewatch_bench::write_results(name, report, table)?;
    let dir = results_dir();
    let colour = |kind: Kind| match kind {
        Kind::Bare => 7,
        Kind::Passthrough => 0,
        Kind::Observers => 2,
        Kind::Served | Kind::Watched => 2,
        Kind::Profiled => 4,
        Kind::KafkaStreams | Kind::KafkaStreamsObserving => 1,
        Kind::Spark => 3,
        Kind::Direct => 5,
        Kind::Bytewax | Kind::BytewaxObserving => 6,
        Kind::Benthos | Kind::BenthosObserving => 8,
        Kind::MirrorMaker2 => 9,
    };
    let bars: Vec<Bar> = report
        .throughput
        .iter()
        .map(|t| Bar {
            label: t.name.clone(),
            value: t.median_records_per_s,
            note: format!("{:.0}k/s · {:.0} MB/s", t.median_records_per_s / 1e3, t.median_mb_per_s),
            colour: colour(t.kind),
        })
        .collect();
    let subtitle = format!("{} visits, {} partitions, median of {} rounds; {} CPUs, shared", report.records, report.partitions, report.rounds, report.machine.cpus);
    std::fs::write(dir.join(format!("{name}-throughput.svg")), svg::bars("Passthrough throughput (records/s)", &subtitle, "records/s", &bars))?;
    let mut series = Vec::new();
    let names: Vec<&str> = LATENCY_SPECS.iter().copied().filter(|n| report.latency.iter().any(|l| l.name == *n)).collect();
    for n in &names {
        let kind = SPECS.iter().chain([&DIRECT]).find(|s| s.name == *n).map_or(Kind::Bare, |s| s.kind);
        let of = |f: &dyn Fn(&Latency) -> f64| report.latency.iter().filter(|l| l.name == *n).map(|l| (l.offered_per_s, f(l))).collect::<Vec<_>>();
        series.push(Series { name: format!("{n}: p99"), points: of(&|l| l.p99_ms), colour: colour(kind), dashed: false });
        series.push(Series { name: format!("{n}: p50"), points: of(&|l| l.p50_ms), colour: colour(kind), dashed: true });
    }
    let subtitle = format!("{} s measured after {} s warm-up; record timestamp → read back from the output", report.latency_measure_s, report.latency_warmup_s);
    std::fs::write(
        dir.join(format!("{name}-latency.svg")),
        svg::lines_log_y("End-to-end latency vs offered rate", &subtitle, "offered records/s", "latency (ms, log scale)", &series, Some((20.0, "goal: p99 ≤ 20 ms at 50 %"))),
    )?;
    Ok(())
}

// ---------------------------------------------------------------- progress

struct Progress {
    start: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress { start: Instant::now() }
    }

    fn say(&self, text: &str) {
        let s = self.start.elapsed().as_secs();
        eprintln!("[{:02}:{:02}] {text}", s / 60, s % 60);
    }

    fn step(&self, step: usize, total: usize, text: &str) {
        self.say(&format!("({step}/{total}) {text}"));
    }
}

fn utc_now() -> String {
    Command::new("date").args(["-u", "+%Y-%m-%d %H:%M"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

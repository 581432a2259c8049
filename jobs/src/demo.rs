//! `tidewatch demo`: the observer job on an embedded default that needs no services.
//!
//! librdkafka's in-process mock cluster holds `visits` and `processed_visits`
//! (2 partitions each); a built-in producer writes reference-shaped visits to `visits`
//! (10 % with nulled fields; partition 0 gets three times the records of partition 1,
//! like the lagging partition of the reference demo); the job copies them to
//! `processed_visits` and observes them: stats and alert documents in the output
//! directory, the live dashboard at `/` and Prometheus figures on `/metrics` of
//! `--metrics-addr` (its URL is the first line the demo prints), and a live progress line with records in
//! and out, the rate, the lag per partition and the last window's empty fields. At the
//! end (Ctrl-C or `--duration`) the producer stops, the job drains the topic, commits
//! and exits.
//!
//! Delivery semantics: as `tidewatch run`, at-least-once.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::mocking::MockCluster;
use tidewatch_engine::opensearch::OpenSearchConfig;
use tidewatch_engine::{Cluster, JobConfig, JobControl, JobMetrics, KafkaConfig, RunSummary};
use tidewatch_operators::alerts::{AlertRule, Comparison};
use tidewatch_operators::observers::{ObserveConfig, ObserverMetrics};
use tidewatch_operators::profile::ProfileConfig;

use crate::config::{duration_flag, FileConfig};
use crate::observer::run_observed_watching;
use crate::outputs::{Latest, OutputConfig};
use crate::visits::{GeneratorConfig, VisitGenerator};

/// Flags of `tidewatch demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. `30s`); without it, run until Ctrl-C.
    #[arg(long, value_parser = duration_flag)]
    pub duration: Option<Duration>,
    /// Visits produced per second.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Worker threads.
    #[arg(short = 'w', long = "workers", default_value_t = 2)]
    pub workers: usize,
    /// Epoch interval.
    #[arg(long, default_value = "1s", value_parser = duration_flag)]
    pub epoch: Duration,
    /// Seed of the visits generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Observation window.
    #[arg(long, default_value = "5s", value_parser = duration_flag)]
    pub window: Duration,
    /// Directory of stats.ndjson and alerts.ndjson.
    #[arg(long, default_value = "tidewatch-demo")]
    pub out: PathBuf,
    /// Address of the /metrics endpoint, or "" for none.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// Directory of the profile reports (default: `profiles` in the output directory).
    #[arg(long, value_name = "DIR")]
    pub profiles: Option<PathBuf>,
    /// Profile window (a report per window).
    #[arg(long, default_value = "10s", value_parser = duration_flag)]
    pub profile_window: Duration,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// Records the built-in producer wrote to `visits`.
    pub produced: u64,
    /// The job's own figures.
    pub job: RunSummary,
}

/// Runs the demo until `control` is stopped or `args.duration` passes.
pub fn run_demo(args: &DemoArgs, control: Arc<JobControl>) -> anyhow::Result<DemoSummary> {
    let cluster = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
    cluster.create_topic("visits", 2, 1).context("creating topic visits")?;
    cluster.create_topic("processed_visits", 2, 1).context("creating topic processed_visits")?;
    let brokers = cluster.bootstrap_servers();
    tracing::info!(%brokers, "mock cluster up with topics visits and processed_visits (2 partitions each)");

    let produced = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(JobControl::default());
    let producer = spawn_producer(&brokers, args, Arc::clone(&produced), Arc::clone(&producing))?;
    let timer = spawn_stopper(args.duration, Arc::clone(&control), Arc::clone(&producing), Arc::clone(&produced));

    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    let mut observe = ObserveConfig { window: args.window, ..ObserveConfig::default() };
    // Beside the reference rule (lag for 5 minutes), one a short demo can see fire: the
    // producer nulls fields of 10 % of the visits.
    observe.alerts.push(AlertRule {
        name: "page_empty".to_owned(),
        metric: "invalid_page".to_owned(),
        op: Comparison::Above,
        threshold: 0.0,
        for_: args.window * 2,
    });
    let file = FileConfig {
        job: JobConfig { epoch_interval: args.epoch, ..JobConfig::default() },
        kafka,
        observe,
        output: OutputConfig { dir: args.out.clone(), metrics_addr: args.metrics_addr.clone(), ..OutputConfig::default() },
        opensearch: OpenSearchConfig::default(),
        profile: ProfileConfig {
            enabled: true,
            dir: args.profiles.clone().unwrap_or_else(|| args.out.join("profiles")),
            window: args.profile_window,
            ..ProfileConfig::default()
        },
    };
    let mut progress = None;
    let result = run_observed_watching(
        file,
        &Cluster { workers: args.workers, ..Cluster::default() },
        Arc::clone(&control),
        Arc::new(ObserverMetrics::default()),
        |latest| {
            let url = latest.lock().unwrap_or_else(PoisonError::into_inner).dashboard.clone();
            if let Some(url) = url {
                // The first thing the demo prints: where to look.
                #[allow(clippy::print_stdout)]
                {
                    println!("tidewatch demo: the live dashboard is at {url}");
                }
            }
            if !args.quiet {
                progress = Some(spawn_progress(Arc::clone(&control), Arc::clone(&produced), latest));
            }
        },
    );

    producing.request_stop();
    control.request_stop();
    let producer_result = producer.join().map_err(|_| anyhow::anyhow!("the visits producer panicked"))?;
    if let Some(p) = progress {
        let _ = p.join();
    }
    let _ = timer.join();
    let job = result.context("the job failed")?;
    producer_result?;
    Ok(DemoSummary { produced: produced.load(Ordering::Relaxed), job })
}

/// Produces visits at `args.rate` until `producing` is stopped.
fn spawn_producer(
    brokers: &str,
    args: &DemoArgs,
    produced: Arc<AtomicU64>,
    producing: Arc<JobControl>,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let config = GeneratorConfig { seed: args.seed, partitions: 2, partition_weights: vec![3, 1], ..GeneratorConfig::default() };
    let generator = VisitGenerator::new(config);
    let brokers = brokers.to_owned();
    let rate = args.rate.max(1);
    Ok(std::thread::Builder::new().name("demo-producer".to_owned()).spawn(move || {
        crate::visits::produce_until(&brokers, "visits", generator, rate, &producing, &produced)
    })?)
}

/// Prints a live progress line to stderr once a second.
fn spawn_progress(control: Arc<JobControl>, produced: Arc<AtomicU64>, latest: Arc<Mutex<Latest>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut last = (Instant::now(), 0u64);
        let mut stderr = std::io::stderr();
        while !control.stop_requested() {
            std::thread::sleep(Duration::from_secs(1));
            let m = &control.metrics;
            let read = JobMetrics::get(&m.records_in);
            let rate = (read - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), read);
            let lag: Vec<String> = m.lag().iter().map(|(p, l)| format!("p{p}={l}")).collect();
            let (window, firing) = {
                let latest = latest.lock().unwrap_or_else(PoisonError::into_inner);
                let window = latest.stats.as_ref().map_or_else(
                    || "window: -".to_owned(),
                    |doc| {
                        let invalid: Vec<String> = doc.invalid.iter().map(|(k, v)| format!("{}={v}", k.trim_start_matches("invalid_"))).collect();
                        format!("window: {} events, empty {}", doc.all_events, invalid.join(" "))
                    },
                );
                let firing = if latest.firing.is_empty() { "none".to_owned() } else { latest.firing.iter().cloned().collect::<Vec<_>>().join(",") };
                (window, firing)
            };
            let _ = write!(
                stderr,
                "\r[{:>4}s] produced {:>7} · read {:>7} ({:>5.0}/s) · delivered {:>7} · lag {} · {window} · firing: {firing}   ",
                started.elapsed().as_secs(),
                produced.load(Ordering::Relaxed),
                read,
                rate,
                JobMetrics::get(&m.records_delivered),
                if lag.is_empty() { "-".to_owned() } else { lag.join(" ") },
            );
            let _ = stderr.flush();
        }
        let _ = writeln!(stderr);
    })
}

/// After `duration`: stops the producer, lets the job drain what was produced (at most
/// 30 s), then stops the job.
fn spawn_stopper(duration: Option<Duration>, control: Arc<JobControl>, producing: Arc<JobControl>, produced: Arc<AtomicU64>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(duration) = duration else { return };
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline && !control.stop_requested() {
            std::thread::sleep(Duration::from_millis(50));
        }
        producing.request_stop();
        let drain_deadline = Instant::now() + Duration::from_secs(30);
        while !control.stop_requested() && Instant::now() < drain_deadline {
            // The producer thread bumps `produced` only after each acknowledgement.
            std::thread::sleep(Duration::from_millis(200));
            if JobMetrics::get(&control.metrics.records_delivered) >= produced.load(Ordering::Relaxed) {
                break;
            }
        }
        control.request_stop();
    })
}

//! Observation never stalls the copy: a record observer that burns CPU on every record
//! is held to its budget of the copy's time (observe.budget, 1.0 by default) by sampling:
//! the time it spent is a small share of the worker's CPU time (measured by the kernel),
//! the sampling shows in the stats documents and the process's counters, and the quality
//! counts stay exact. Real broker. What this costs the copy's rate is measured by the
//! benchmark suite, not here (a shared machine makes a timed test flaky).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewatch_engine::opensearch::OpenSearchConfig;
use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed_core;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_jobs::visits::{produce_into, GeneratorConfig, NeverStop, ProduceSettings, VisitGenerator};
use tidewatch_operators::custom::{Counts, ObserverFactory, RecordObserver, RecordView};
use tidewatch_operators::observers::{ObserveConfig, ObserverMetrics};
use tidewatch_operators::stats::StatsDoc;
use tidewatch_tests::{create_topics, real_brokers, require_broker, unique_topic};

/// A slow observer: spins for `cost` on every record it sees, and counts them.
struct Burner {
    cost: Duration,
}

struct BurnerInstance {
    cost: Duration,
    seen: i64,
}

impl ObserverFactory for Burner {
    fn name(&self) -> &str {
        "burner"
    }

    fn metrics(&self) -> Vec<String> {
        vec!["seen".to_owned()]
    }

    fn create(&self, _worker: usize) -> Box<dyn RecordObserver> {
        Box::new(BurnerInstance { cost: self.cost, seen: 0 })
    }
}

impl RecordObserver for BurnerInstance {
    fn observe(&mut self, _record: &RecordView<'_>) {
        let until = Instant::now() + self.cost;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.seen += 1;
    }

    fn flush(&mut self, counts: &mut Counts<'_>) {
        counts.add("seen", std::mem::take(&mut self.seen));
    }
}

const RECORDS: u64 = 300_000;

struct Run {
    rate: f64,
    /// Seconds the workers were on a CPU (from the kernel's schedstat).
    worker_cpu_s: f64,
    docs: Vec<StatsDoc>,
    metrics: Arc<ObserverMetrics>,
}

/// Copies the whole input once with the default observers (and `own`), into a fresh topic.
fn run(brokers: &str, input: &str, own: Vec<Arc<dyn ObserverFactory>>) -> anyhow::Result<Run> {
    let output = unique_topic("budget-out");
    create_topics(brokers, &[&output], 2)?;
    let dir = tempfile::tempdir()?;
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    let file = FileConfig {
        job: JobConfig {
            input_topic: input.to_owned(),
            output_topic: output,
            group_id: unique_topic("budget"),
            epoch_interval: Duration::from_millis(100),
            until_end: true,
            ..JobConfig::default()
        },
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
        opensearch: OpenSearchConfig::default(),
        profile: Default::default(),
    };
    let metrics = Arc::new(ObserverMetrics::default());
    let started = Instant::now();
    let summary = run_observed_core(file, &Cluster::default(), JobControl::new(), Arc::clone(&metrics), own, |_| {})?;
    let rate = summary.records_delivered as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(summary.records_delivered == RECORDS, "copied {} of {RECORDS} records", summary.records_delivered);
    Ok(Run { rate, worker_cpu_s: summary.waits.worker_cpu_s, docs: read_ndjson(&dir.path().join("stats.ndjson"))?, metrics })
}

#[test]
fn real_broker_a_cpu_burning_observer_is_sampled_and_the_copy_keeps_its_rate() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let input = unique_topic("budget-in");
    create_topics(&brokers, &[&input], 2)?;
    let config = GeneratorConfig { seed: 7, partitions: 2, partition_weights: vec![1, 1], ..GeneratorConfig::default() };
    produce_into(&ProduceSettings { count: Some(RECORDS), ..ProduceSettings::new(&brokers, &input) }, &mut VisitGenerator::try_new(config)?, &NeverStop, None)?;

    // 20 µs a record: seen in full, this observer alone would hold the copy to ~50 000 records/s.
    let burner = || -> Vec<Arc<dyn ObserverFactory>> { vec![Arc::new(Burner { cost: Duration::from_micros(20) })] };
    let plain = run(&brokers, &input, Vec::new())?;
    let burning = run(&brokers, &input, burner())?;
    eprintln!("copy rate without the burner {:.0} records/s, with it {:.0} records/s (not asserted: see bench/)", plain.rate, burning.rate);

    {
        let run = &burning;
        // Quality stays exact: every record counted.
        assert_eq!(run.docs.iter().map(|d| d.all_events as u64).sum::<u64>(), RECORDS, "quality counted every record");
        // The burner was sampled, and the documents say how much.
        let seen: i64 = run.docs.iter().filter_map(|d| d.sampling.get("observers")).map(|s| s.seen).sum();
        let observed: i64 = run.docs.iter().filter_map(|d| d.sampling.get("observers")).map(|s| s.observed).sum();
        let counted: i64 = run.docs.iter().filter_map(|d| d.observers.get("burner.seen")).sum();
        assert_eq!(seen as u64, RECORDS, "every record was offered to the sampled observers");
        assert_eq!(counted, observed, "the burner counted exactly the records the documents say it observed");
        assert!(observed < seen / 2, "sampled: {observed} of {seen} records observed");
        assert!(run.docs.iter().any(|d| d.sampling.get("observers").is_some_and(|s| s.rate < 0.5)), "a window reports a rate below 0.5");
        // The process's counters (what /metrics shows) agree.
        assert_eq!(run.metrics.observer_sampling.seen.load(Ordering::Relaxed), RECORDS);
        assert_eq!(run.metrics.observer_sampling.observed.load(Ordering::Relaxed), observed as u64);
        // Held to its budget: unsampled, the burner alone would take 6 s, about 85 % of the
        // worker's time; a budget of 1.0 lets it take at most the copy's time, so at most
        // half of all the worker's CPU time (the sampler aims at a quarter of the budget).
        let burnt = observed as f64 * 20e-6;
        eprintln!("burner spent {burnt:.2} s of the workers' {:.2} CPU s", run.worker_cpu_s);
        assert!(run.worker_cpu_s > 0.0, "the kernel's schedstat gave the workers' CPU time");
        assert!(burnt <= 0.5 * run.worker_cpu_s, "the burner took {burnt:.2} s of {:.2} CPU s: over its budget", run.worker_cpu_s);
    }
    {
        let run = &plain;
        assert!(run.docs.iter().all(|d| d.sampling.is_empty()), "without a sampled observer no document reports sampling");
    }
    Ok(())
}

//! The observers against the real broker: counts equal what the generator injected,
//! exactly, for 1 worker, 3 workers and 2 processes × 2 workers; lag rises while
//! consumption is held back and falls to 0; the lag alert goes pending → firing →
//! resolved with one document per transition; the quality arrangement stays small over
//! thousands of epochs.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tidewatch_engine::{Cluster, JobControl, JobConfig, KafkaConfig};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_jobs::visits::{produce_into, FaultMix, GeneratorConfig, GeneratorSummary, NeverStop, ProduceSettings, VisitGenerator};
use tidewatch_operators::alerts::{AlertEvent, AlertRule, AlertState, Comparison};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_operators::stats::{PartitionStatus, StatsDoc};
use tidewatch_tests::{create_topics, end_offsets, real_brokers, require_broker, run_processes, unique_topic};

const FIELDS: [&str; 3] = ["event_time", "user_id", "page"];
/// Records of the lag test's burst: a third at once, the rest over 2 s; with tiny fetches
/// 100 ms apart the job consumes far fewer per second, so its lag grows, then drains.
const BURST: u64 = 900;

/// Produces `count` generated visits with every fault at 4 % and returns the summary.
fn produce_visits(brokers: &str, topic: &str, count: u64, partitions: u32, seed: u64) -> anyhow::Result<GeneratorSummary> {
    let config = GeneratorConfig { seed, partitions, partition_weights: vec![1; partitions as usize], faults: FaultMix::uniform(0.04), ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::try_new(config)?;
    let settings = ProduceSettings { count: Some(count), ..ProduceSettings::new(brokers, topic) };
    produce_into(&settings, &mut generator, &NeverStop, None)?;
    Ok(generator.into_summary())
}

fn file_config(brokers: &str, input: &str, output: &str, group: &str, out: &Path) -> FileConfig {
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    FileConfig {
        job: JobConfig {
            input_topic: input.to_owned(),
            output_topic: output.to_owned(),
            group_id: group.to_owned(),
            epoch_interval: Duration::from_millis(100),
            until_end: true,
            ..JobConfig::default()
        },
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: OutputConfig { dir: out.to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
        opensearch: Default::default(),
        profile: Default::default(),
    }
}

/// Sums the documents' counts and compares them with the generator's summary, field by field and kind by kind.
fn assert_counts_match(docs: &[StatsDoc], summary: &GeneratorSummary) {
    let total = |f: &dyn Fn(&StatsDoc) -> i64| docs.iter().map(f).sum::<i64>();
    assert_eq!(total(&|d| d.all_events), summary.records as i64, "all_events");
    assert_eq!(total(&|d| d.records_delivered), summary.records as i64, "records_delivered");
    assert_eq!(total(&|d| d.unparseable), summary.unparseable as i64, "unparseable");
    assert!(summary.unparseable > 0, "the corpus must hold unparseable records");
    for field in FIELDS {
        let want = summary.fields.get(field).copied().unwrap_or_default();
        let kind = |k: &str| total(&|d| d.quality[field][k]);
        // Reference counting: an unparseable value is invalid in every watched field.
        assert_eq!(total(&|d| d.invalid[&format!("invalid_{field}")]), (want.invalid + summary.unparseable) as i64, "invalid_{field}");
        assert_eq!(kind("missing"), want.missing as i64, "{field} missing");
        assert_eq!(kind("null"), want.null as i64, "{field} null");
        assert_eq!(kind("empty_string"), want.empty_string as i64, "{field} empty_string");
        assert_eq!(kind("empty_array"), want.empty_array as i64, "{field} empty_array");
        assert_eq!(kind("empty_object"), want.empty_object as i64, "{field} empty_object");
        assert!(want.null > 0 && want.empty_string > 0 && want.missing > 0, "{field}: the corpus must hold every fault");
    }
    let last = docs.last().expect("at least one window");
    assert_eq!(last.max_lag, Some(0), "caught up at the end: {last:?}");
}

fn observe_in_process(workers: usize, name: &str) -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic(&format!("{name}-in")), unique_topic(&format!("{name}-out")), unique_topic(name));
    create_topics(&brokers, &[&input, &output], 4)?;
    let summary = produce_visits(&brokers, &input, 20_000, 4, 11)?;
    let dir = tempfile::tempdir()?;
    let summary_run = run_observed(file_config(&brokers, &input, &output, &group, dir.path()), &Cluster { workers, ..Cluster::default() }, JobControl::new())?;
    assert_eq!(summary_run.records_delivered, summary.records);
    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    assert_counts_match(&docs, &summary);
    Ok(())
}

#[test]
fn real_broker_observed_counts_equal_injected_one_worker() -> anyhow::Result<()> {
    observe_in_process(1, "obs1")
}

#[test]
fn real_broker_observed_counts_equal_injected_three_workers() -> anyhow::Result<()> {
    observe_in_process(3, "obs3")
}

#[test]
fn real_broker_observed_counts_equal_injected_two_processes_of_two_workers() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("obs22-in"), unique_topic("obs22-out"), unique_topic("obs22"));
    create_topics(&brokers, &[&input, &output], 4)?;
    let summary = produce_visits(&brokers, &input, 20_000, 4, 12)?;
    let dir = tempfile::tempdir()?;
    let args = ["--until-end", "--epoch", "100ms", "--window", "500ms", "--brokers", &brokers, "--input", &input, "--output", &output, "--group", &group];
    run_processes(dir.path(), 2, 2, &args)?;
    // Worker 0 (in process 0) assembles the documents of the whole job.
    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("p0/stats.ndjson"))?;
    assert_counts_match(&docs, &summary);
    let others: Vec<StatsDoc> = read_ndjson(&dir.path().join("p1/stats.ndjson"))?;
    assert!(others.is_empty(), "process 1 must not write documents of its own");
    Ok(())
}

/// Holds consumption back (tiny fetches) while one partition receives a burst: its lag
/// must rise above the alert's threshold, the alert must fire, then everything must
/// return to 0 / OK and the alert resolve, with one document per transition.
#[test]
fn real_broker_lag_rises_alert_fires_then_resolves() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("lag-in"), unique_topic("lag-out"), unique_topic("lag"));
    create_topics(&brokers, &[&input, &output], 2)?;
    let dir = tempfile::tempdir()?;
    let mut file = file_config(&brokers, &input, &output, &group, dir.path());
    file.job.until_end = false;
    file.job.start_from = tidewatch_engine::StartFrom::Earliest;
    // Tiny fetches: a handful of records per request.
    file.kafka.consumer.insert("fetch.max.bytes".into(), "4096".into());
    file.kafka.consumer.insert("max.partition.fetch.bytes".into(), "2048".into());
    file.kafka.consumer.insert("message.max.bytes".into(), "4096".into());
    // ...and a local queue of 1 KB: once it holds a fetch, the next waits 100 ms.
    file.kafka.consumer.insert("queued.max.messages.kbytes".into(), "1".into());
    file.kafka.consumer.insert("fetch.queue.backoff.ms".into(), "100".into());
    file.observe.alerts =
        vec![AlertRule { name: "lag_high".into(), metric: "max_lag".into(), op: Comparison::Above, threshold: 15.0, for_: Duration::from_secs(1) }];
    let control = JobControl::new();
    let job_control = Arc::clone(&control);
    let job = std::thread::spawn(move || run_observed(file, &Cluster::default(), job_control));

    // A burst to partition 0 only.
    let config = GeneratorConfig { seed: 5, partitions: 2, partition_weights: vec![1, 0], faults: FaultMix::none(), ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::try_new(config)?;
    std::thread::sleep(Duration::from_secs(1));
    // One record per batch, so the consumer's tiny fetches really take a few records each
    // (a broker returns a whole batch however small the fetch).
    let one_per_batch = vec![("batch.num.messages".to_owned(), "1".to_owned()), ("linger.ms".to_owned(), "0".to_owned())];
    // A backlog at once (a consumer at the head of a partition fetches small and is not
    // held back), then more, far faster than the held-back consumer, for two seconds: the
    // lag grows window after window.
    let backlog = ProduceSettings { count: Some(BURST / 3), overrides: one_per_batch.clone(), ..ProduceSettings::new(&brokers, &input) };
    produce_into(&backlog, &mut generator, &NeverStop, None)?;
    let growth = ProduceSettings { count: Some(BURST - BURST / 3), rate: BURST / 3, overrides: one_per_batch, ..ProduceSettings::new(&brokers, &input) };
    produce_into(&growth, &mut generator, &NeverStop, None)?;

    // Wait until everything is copied, then two more windows.
    let deadline = Instant::now() + Duration::from_secs(120);
    while end_offsets(&brokers, &output, 2)?.values().sum::<i64>() < BURST as i64 {
        if job.is_finished() {
            job.join().map_err(|_| anyhow::anyhow!("job thread panicked"))??;
            bail!("the job ended before copying the burst");
        }
        if Instant::now() > deadline {
            control.request_stop();
            bail!("the job did not copy the burst within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(2_500));
    control.request_stop();
    job.join().map_err(|_| anyhow::anyhow!("job thread panicked"))??;

    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let peak = docs.iter().filter_map(|d| d.lag_per_partition.get("0").copied()).max().unwrap_or(0);
    assert!(peak > 15, "partition 0's lag never rose above 15: {peak}");
    assert!(docs.iter().all(|d| d.lag_per_partition.get("1").copied().unwrap_or(0) == 0), "partition 1 received nothing and never lags");
    assert!(docs.iter().any(|d| d.lag_seconds_per_partition.get("0").copied().unwrap_or(0.0) > 0.0), "lag in seconds rose too");
    assert!(
        docs.iter().any(|d| d.status_per_partition.get("0") == Some(&PartitionStatus::Warn)),
        "partition 0 never turned WARN while its lag grew: {:?}",
        docs.iter().map(|d| (d.lag_per_partition.get("0"), d.status_per_partition.get("0"))).collect::<Vec<_>>()
    );
    let last = docs.last().context("no windows")?;
    assert_eq!(last.max_lag, Some(0), "caught up at the end");
    assert_eq!(last.status_per_partition.get("0"), Some(&PartitionStatus::Ok));

    let events: Vec<AlertEvent> = read_ndjson(&dir.path().join("alerts.ndjson"))?;
    let states: Vec<AlertState> = events.iter().map(|e| e.state).collect();
    assert_eq!(states, [AlertState::Pending, AlertState::Firing, AlertState::Resolved], "{events:?}");
    Ok(())
}

/// Thousands of 1 ms epochs: the quality arrangement keeps one row per key, not per epoch.
#[test]
fn real_broker_quality_arrangement_stays_bounded_over_thousands_of_epochs() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("mem-in"), unique_topic("mem-out"), unique_topic("mem"));
    create_topics(&brokers, &[&input, &output], 2)?;
    let dir = tempfile::tempdir()?;
    let mut file = file_config(&brokers, &input, &output, &group, dir.path());
    file.job.until_end = false;
    file.job.epoch_interval = Duration::from_millis(1);
    file.observe.window = Duration::from_millis(100);
    let metrics = Arc::new(tidewatch_operators::observers::ObserverMetrics::default());
    let control = JobControl::new();
    let (job_control, job_metrics) = (Arc::clone(&control), Arc::clone(&metrics));
    let job = std::thread::spawn(move || tidewatch_jobs::observer::run_observed_with(file, &Cluster { workers: 2, ..Cluster::default() }, job_control, job_metrics));

    let config = GeneratorConfig { seed: 9, partitions: 2, faults: FaultMix::uniform(0.05), ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::try_new(config)?;
    let started = Instant::now();
    let mut peak = 0u64;
    let settings = ProduceSettings { count: Some(2_000), rate: 4_000, ..ProduceSettings::new(&brokers, &input) };
    while started.elapsed() < Duration::from_secs(6) {
        produce_into(&settings, &mut generator, &NeverStop, None)?;
        peak = peak.max(metrics.arrangement_updates.load(Ordering::Relaxed));
    }
    control.request_stop();
    job.join().map_err(|_| anyhow::anyhow!("job thread panicked"))??;
    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let epochs = started.elapsed().as_millis();
    assert!(epochs > 3_000, "ran {epochs} epochs");
    assert!(docs.iter().map(|d| d.all_events).sum::<i64>() > 10_000, "records were observed");
    // 4 record kinds + 3 fields × 6 kinds = 22 keys; batches not yet merged may hold a few
    // rows each, but nothing like one row per epoch (thousands).
    assert!(peak > 0, "the arrangement was observed");
    assert!(peak <= 400, "the quality arrangement held {peak} updates after {epochs} epochs");
    Ok(())
}

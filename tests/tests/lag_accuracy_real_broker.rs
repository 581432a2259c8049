//! Lag is accurate while records arrive: a job held back by a broker quota on its
//! consumer's fetch rate falls behind a producer writing 3 000 records/s over 2
//! partitions; at each window's end, its offset lag per partition is set beside an
//! independent reading (input end offset − output end offset, sampled every 50 ms and
//! interpolated at the window's end). Real broker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tidewatch_engine::epoch::now_ms;
use tidewatch_engine::opensearch::OpenSearchConfig;
use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed_core;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_jobs::visits::{produce_into, GeneratorConfig, NeverStop, ProduceSettings, VisitGenerator};
use tidewatch_operators::observers::{ObserveConfig, ObserverMetrics};
use tidewatch_operators::stats::StatsDoc;
use tidewatch_tests::{create_topics, real_brokers, require_broker, unique_topic};

const PARTITIONS: i32 = 2;

/// `scripts/kafka.sh quota CLIENT RATE`: a broker quota on a client's fetch rate.
fn quota(client: &str, bytes_per_second: u64) -> anyhow::Result<()> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let status = std::process::Command::new("bash").arg(script).args(["quota", client, &bytes_per_second.to_string()]).status()?;
    anyhow::ensure!(status.success(), "scripts/kafka.sh quota {client} {bytes_per_second} failed");
    Ok(())
}

/// One independent reading: when (ms), and per partition input end − output end.
type Reading = (u64, BTreeMap<i32, i64>);

/// Samples input end − output end every 50 ms until `stop`.
fn sample(brokers: &str, input: &str, output: &str, stop: &AtomicBool) -> anyhow::Result<Vec<Reading>> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let mut readings = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let before = now_ms();
        let mut lag = BTreeMap::new();
        for p in 0..PARTITIONS {
            let (_, input_end) = consumer.fetch_watermarks(input, p, Duration::from_secs(5))?;
            let (_, output_end) = consumer.fetch_watermarks(output, p, Duration::from_secs(5))?;
            lag.insert(p, input_end - output_end);
        }
        let after = now_ms();
        readings.push(((before + after) / 2, lag));
        std::thread::sleep(Duration::from_millis(50).saturating_sub(Duration::from_millis(after - before)));
    }
    Ok(readings)
}

/// The reading of `partition` at `at_ms`, interpolated between the samples around it.
fn reading_at(readings: &[Reading], partition: i32, at_ms: u64) -> Option<f64> {
    let after = readings.iter().position(|(t, _)| *t >= at_ms)?;
    let (t1, l1) = &readings[after];
    let v1 = *l1.get(&partition)? as f64;
    if after == 0 || *t1 == at_ms {
        return Some(v1);
    }
    let (t0, l0) = &readings[after - 1];
    let v0 = *l0.get(&partition)? as f64;
    Some(v0 + (v1 - v0) * (at_ms - t0) as f64 / (t1 - t0) as f64)
}

#[test]
fn real_broker_lag_at_each_window_end_matches_an_independent_reading() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output) = (unique_topic("lag-in"), unique_topic("lag-out"));
    create_topics(&brokers, &[&input, &output], PARTITIONS)?;
    // ~1 500 records/s of ~400 B: half the producer's rate.
    let client = unique_topic("tw-throttled");
    quota(&client, 600_000)?;

    let dir = tempfile::tempdir()?;
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", &brokers);
    kafka.consumer.insert("client.id".to_owned(), client.clone());
    let file = FileConfig {
        job: JobConfig {
            input_topic: input.clone(),
            output_topic: output.clone(),
            group_id: unique_topic("lag"),
            epoch_interval: Duration::from_millis(100),
            ..JobConfig::default()
        },
        kafka,
        observe: ObserveConfig { window: Duration::from_secs(1), ..ObserveConfig::default() },
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
        opensearch: OpenSearchConfig::default(),
        profile: Default::default(),
    };
    let control = JobControl::new();
    let job_control = Arc::clone(&control);
    let job = std::thread::spawn(move || run_observed_core(file, &Cluster::default(), job_control, Arc::new(ObserverMetrics::default()), Vec::new(), |_| {}));

    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (brokers, input, output, stop) = (brokers.clone(), input.clone(), output.clone(), Arc::clone(&sampling));
        std::thread::spawn(move || sample(&brokers, &input, &output, &stop))
    };
    let config = GeneratorConfig { seed: 11, partitions: PARTITIONS as u32, partition_weights: vec![1, 1], ..GeneratorConfig::default() };
    let settings = ProduceSettings { rate: 3_000, duration: Some(Duration::from_secs(12)), ..ProduceSettings::new(&brokers, &input) };
    let started = Instant::now();
    let produced = produce_into(&settings, &mut VisitGenerator::try_new(config)?, &NeverStop, None);
    std::thread::sleep(Duration::from_secs(2));
    control.request_stop();
    let summary = job.join().map_err(|_| anyhow::anyhow!("the job panicked"))?;
    sampling.store(true, Ordering::Relaxed);
    let readings = sampler.join().map_err(|_| anyhow::anyhow!("the sampler panicked"))??;
    quota(&client, 0)?;
    let produced = produced?;
    let summary = summary?;
    eprintln!("produced {} records in {:.1} s; the job copied {}", produced.delivered, started.elapsed().as_secs_f64(), summary.records_delivered);

    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let mut compared = 0;
    let mut worst: f64 = 0.0;
    for doc in &docs {
        for (partition, lag) in &doc.lag_per_partition {
            let partition: i32 = partition.parse()?;
            let Some(independent) = reading_at(&readings, partition, doc.window_end_ms) else { continue };
            // Only while the job is well behind (the comparison is about staleness): a
            // position is logged as its epoch closes, a few ms after the window's end, while
            // the lag grows by ~1.5 records a ms.
            if independent < 2_500.0 {
                continue;
            }
            let off = (*lag as f64 - independent).abs();
            let allowed = (0.01 * independent).max(10.0);
            eprintln!("window end {} partition {partition}: tidewatch {lag}, independent {independent:.0}, off by {off:.0} (allowed {allowed:.0})", doc.window_end_ms);
            worst = worst.max(off / allowed);
            compared += 1;
        }
    }
    anyhow::ensure!(compared >= 4, "only {compared} window ends with the job well behind; the quota did not hold it back (copied {} of {})", summary.records_delivered, produced.delivered);
    anyhow::ensure!(worst <= 1.0, "lag was off the independent reading by {worst:.2}× the allowance (1 % or 10 records)");
    Ok(())
}

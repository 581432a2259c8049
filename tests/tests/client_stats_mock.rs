//! librdkafka's statistics on the in-process mock cluster: a statistics event served by
//! the consumer's `poll` made it answer "nothing" with records still queued, and the
//! source idled until its next wake-up each time (a copy with statistics every 100 ms
//! took 3 to 12 times as long). The copy must take about as long with statistics every
//! few milliseconds as without them, and the statistics must reach the board.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use tidewatch_engine::kafka::stats::ClientRole;
use tidewatch_engine::{run_job, Cluster, JobConfig, JobControl, KafkaConfig, NoObservers};
use tidewatch_tests::{corpus, produce};

const RECORDS: usize = 60_000;

/// Copies the input to `out-<group>` with statistics every `statistics_ms`, stopping the
/// job after `limit` (so a stalling source fails the test instead of hanging it).
fn copy(
    brokers: &str,
    group: &str,
    statistics_ms: &str,
    limit: Duration,
) -> anyhow::Result<(Duration, std::sync::Arc<JobControl>)> {
    let job = JobConfig {
        input_topic: "in".to_owned(),
        output_topic: format!("out-{group}"),
        group_id: group.to_owned(),
        epoch_interval: Duration::from_millis(50),
        until_end: true,
        ..JobConfig::default()
    };
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    kafka.set("statistics.interval.ms", statistics_ms);
    let control = JobControl::new();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let control = std::sync::Arc::clone(&control);
        std::thread::spawn(move || {
            if finished.recv_timeout(limit).is_err() {
                control.request_stop();
            }
        })
    };
    let started = Instant::now();
    let summary = run_job(
        job,
        kafka,
        &Cluster::default(),
        std::sync::Arc::clone(&control),
        NoObservers,
    );
    let took = started.elapsed();
    let _ = done.send(());
    let _ = watchdog.join();
    let summary = summary?;
    assert_eq!(
        summary.records_delivered,
        RECORDS as u64,
        "with statistics every {statistics_ms} ms the copy was not done after {limit:?}: the source idles after statistics events"
    );
    Ok((took, control))
}

#[test]
fn statistics_every_few_milliseconds_do_not_stall_the_source() -> anyhow::Result<()> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("in", 1, 1)?;
    for group in ["off", "on", "off2"] {
        cluster.create_topic(&format!("out-{group}"), 1, 1)?;
    }
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, "in", &corpus(RECORDS, 1, false))?;

    // Without statistics, with them every 5 ms, and without again (the baseline is the
    // faster of the two runs without: the first may pay for warming up).
    let (off, _) = copy(&brokers, "off", "0", Duration::from_secs(120))?;
    let (on, control) = copy(&brokers, "on", "5", off * 3 + Duration::from_secs(10))?;
    let (off2, _) = copy(&brokers, "off2", "0", Duration::from_secs(120))?;
    let baseline = off.min(off2);
    eprintln!("copy of {RECORDS} records: {off:?} and {off2:?} without statistics, {on:?} with statistics every 5 ms");
    assert!(
        on < baseline * 3 + Duration::from_millis(500),
        "with statistics every 5 ms the copy took {on:?}, without {baseline:?}: the source idles after statistics events"
    );
    let clients = control.metrics.clients.snapshots();
    assert!(
        clients
            .iter()
            .any(|(key, _)| key.role == ClientRole::Consumer),
        "the consumer's statistics reached the board"
    );
    assert!(
        clients
            .iter()
            .any(|(key, _)| key.role == ClientRole::Producer),
        "the producer's statistics reached the board"
    );
    assert!(control.metrics.clients.updates() >= 2);
    Ok(())
}

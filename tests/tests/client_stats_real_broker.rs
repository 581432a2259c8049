//! `tidewatch run` (the binary, two workers) against the real broker with librdkafka
//! statistics every 200 ms: its `/metrics` parses strictly as an exposition, and the
//! librdkafka and process series it serves agree with the copy — the producers' acked
//! messages equal the records copied, the consumers' lag as librdkafka sees it ends at
//! 0 on every partition, the broker round-trip times are above 0, the process has
//! memory, threads and CPU time.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use tidewatch_tests::exposition::{scrape_parsed, Exposition};
use tidewatch_tests::process::{wait_for, RunningJob};
use tidewatch_tests::{
    corpus, create_topics, free_ports, produce, real_brokers, require_broker, unique_topic,
};

const PARTITIONS: i32 = 4;
const RECORDS: usize = 4000;
/// The produce is spread over this many batches, a pause apart, so that several
/// statistics intervals of the job's producers see produce requests.
const BATCHES: usize = 8;
const WAIT: Duration = Duration::from_secs(90);

/// Per (topic, partition), how many series of `name` the clients on `role`'s side serve, with their values.
fn per_partition(
    scrape: &Exposition,
    name: &str,
    role: &str,
) -> BTreeMap<(String, String), Vec<f64>> {
    let mut out: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for s in scrape.matching(name, &[("role", role)]) {
        out.entry((s.label("topic").to_owned(), s.label("partition").to_owned()))
            .or_default()
            .push(s.value);
    }
    out
}

/// The largest value of `name{role, stat}` over the brokers.
fn max_of(scrape: &Exposition, name: &str, role: &str, stat: &str) -> f64 {
    scrape
        .matching(name, &[("role", role), ("stat", stat)])
        .map(|s| s.value)
        .fold(0.0, f64::max)
}

#[test]
fn real_broker_client_statistics_on_metrics_match_the_copy() -> anyhow::Result<()> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (
        unique_topic("stats-in"),
        unique_topic("stats-out"),
        unique_topic("stats"),
    );
    create_topics(&brokers, &[&input, &output], PARTITIONS)?;
    let dir = tempfile::tempdir()?;
    let metrics = format!("127.0.0.1:{}", free_ports(1)?[0]);
    let out = dir.path().join("out");
    let out = out.to_str().context("a UTF-8 temporary directory")?;
    let mut job = RunningJob::start(
        dir.path(),
        &[
            "--brokers",
            &brokers,
            "--input",
            &input,
            "--output",
            &output,
            "--group",
            &group,
            "--metrics-addr",
            &metrics,
            "--epoch",
            "100ms",
            "--window",
            "500ms",
            "-w",
            "2",
            "-X",
            "statistics.interval.ms=200",
            "--out",
            out,
        ],
    )?;
    wait_for("/metrics answers", WAIT, || {
        job.check_running()?;
        Ok(scrape_parsed(&metrics).ok())
    })?;

    // Produce in batches while scraping: the producers' RTT window must see produce requests.
    let records = corpus(RECORDS, PARTITIONS, false);
    let (mut producer_rtt, mut consumer_rtt, mut scrapes) = (0.0f64, 0.0f64, 0usize);
    let mut observe = |scrape: &Exposition| {
        producer_rtt = producer_rtt.max(max_of(
            scrape,
            "tidewatch_rdkafka_broker_rtt_seconds",
            "producer",
            "p99",
        ));
        consumer_rtt = consumer_rtt.max(max_of(
            scrape,
            "tidewatch_rdkafka_broker_rtt_seconds",
            "consumer",
            "avg",
        ));
        scrapes += 1;
    };
    for batch in records.chunks(RECORDS / BATCHES) {
        produce(&brokers, &input, batch)?;
        for _ in 0..3 {
            job.check_running()?;
            observe(&scrape_parsed(&metrics)?.1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // librdkafka's statistics trail the copy by up to one interval: wait for them to agree.
    let n = RECORDS as f64;
    let mut last = Exposition::default();
    let done = wait_for(
        "the librdkafka statistics show the whole copy acknowledged and no lag",
        WAIT,
        || {
            job.check_running()?;
            let (_, scrape) = scrape_parsed(&metrics)?;
            observe(&scrape);
            let delivered = scrape
                .sum("tidewatch_records_delivered_total", &[])
                .unwrap_or(0.0);
            let acked = scrape
                .sum(
                    "tidewatch_rdkafka_partition_acked_messages_total",
                    &[("role", "producer")],
                )
                .unwrap_or(0.0);
            let lags = per_partition(
                &scrape,
                "tidewatch_rdkafka_consumer_lag_offsets",
                "consumer",
            );
            let caught_up =
                lags.len() == PARTITIONS as usize && lags.values().flatten().all(|lag| *lag == 0.0);
            let ok = delivered == n && acked == n && caught_up;
            last = scrape;
            Ok(ok.then(|| last.clone()))
        },
    )
    .with_context(|| {
        let pick = |name: &str| {
            last.series(name)
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "last scrape: delivered {:?}\nacked:\n{}\nlag:\n{}\njob log:\n{}",
            last.sum("tidewatch_records_delivered_total", &[]),
            pick("tidewatch_rdkafka_partition_acked_messages_total"),
            pick("tidewatch_rdkafka_consumer_lag_offsets"),
            job.log_tail()
        )
    })?;
    eprintln!("after {scrapes} scrapes: max producer RTT p99 {producer_rtt:.6} s, max consumer RTT avg {consumer_rtt:.6} s");

    // Every partition is read by exactly one consumer and written by exactly one producer
    // (the worker owning it), and their counts add up to the copy.
    let expected: Vec<(String, String)> = (0..PARTITIONS)
        .map(|p| (input.clone(), p.to_string()))
        .collect();
    let lag = per_partition(&done, "tidewatch_rdkafka_consumer_lag_offsets", "consumer");
    assert_eq!(
        lag.keys().cloned().collect::<Vec<_>>(),
        expected,
        "consumer lag series: {lag:?}"
    );
    assert!(
        lag.values().all(|v| v.len() == 1),
        "one consumer per partition: {lag:?}"
    );
    let acked = per_partition(
        &done,
        "tidewatch_rdkafka_partition_acked_messages_total",
        "producer",
    );
    let out_partitions: Vec<(String, String)> = (0..PARTITIONS)
        .map(|p| (output.clone(), p.to_string()))
        .collect();
    assert_eq!(
        acked.keys().cloned().collect::<Vec<_>>(),
        out_partitions,
        "producer series: {acked:?}"
    );
    assert!(
        acked.values().all(|v| v.len() == 1),
        "one producer per partition: {acked:?}"
    );
    for (p, want) in (0..PARTITIONS).map(|p| {
        (
            p,
            records.iter().filter(|r| r.partition == p).count() as f64,
        )
    }) {
        let got = acked
            .get(&(output.clone(), p.to_string()))
            .and_then(|v| v.first())
            .copied();
        assert_eq!(got, Some(want), "acked messages of {output}[{p}]");
    }
    let tx = done
        .sum(
            "tidewatch_rdkafka_partition_tx_messages_total",
            &[("role", "producer")],
        )
        .unwrap_or(0.0);
    assert!(
        tx >= n,
        "messages sent by the producers ({tx}) cover the {n} copied (retries may add some)"
    );
    let rx = done
        .sum(
            "tidewatch_rdkafka_partition_rx_messages_total",
            &[("role", "consumer")],
        )
        .unwrap_or(0.0);
    assert!(
        rx >= n,
        "messages received by the consumers ({rx}) cover the {n} copied"
    );
    let workers: Vec<&str> = done
        .matching("tidewatch_rdkafka_broker_up", &[("role", "consumer")])
        .map(|s| s.label("worker"))
        .collect();
    assert_eq!(
        workers,
        ["0", "1"],
        "one consumer per worker, each up to the broker"
    );
    assert!(
        done.matching("tidewatch_rdkafka_broker_up", &[])
            .all(|s| s.value == 1.0),
        "every connection up"
    );
    assert!(done
        .matching("tidewatch_rdkafka_broker_up", &[])
        .all(|s| s.label("broker_id").parse::<i32>().is_ok_and(|id| id >= 0)));

    // Round-trip times: a consumer's fetches always wait at the broker (long poll), a
    // producer's requests were seen while the batches went through.
    assert!(
        consumer_rtt > 0.0,
        "a consumer's broker RTT was never above 0"
    );
    assert!(
        producer_rtt > 0.0 && producer_rtt < 10.0,
        "the producers' broker RTT p99 was {producer_rtt} s"
    );
    let updates = done
        .sum("tidewatch_rdkafka_stats_updates_total", &[])
        .unwrap_or(0.0);
    assert!(updates >= 4.0, "statistics documents received: {updates}");
    assert_eq!(
        done.sum("tidewatch_rdkafka_stats_errors_total", &[]),
        Some(0.0)
    );

    // The process's own figures.
    let one = |name: &str| done.sum(name, &[]).with_context(|| format!("no {name}"));
    let rss = one("process_resident_memory_bytes")?;
    assert!(rss > 1e6 && rss < 8e9, "resident memory {rss} bytes");
    assert!(one("process_virtual_memory_bytes")? >= rss);
    assert!(one("process_threads")? >= 2.0, "two workers and more");
    assert!(one("process_open_fds")? >= 3.0);
    assert!(one("process_cpu_seconds_total")? > 0.0);
    let start = one("process_start_time_seconds")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    assert!(
        start >= started - 5.0 && start <= now + 1.0,
        "start time {start}, test started at {started}"
    );
    assert_eq!(
        done.types.get("process_cpu_seconds").map(String::as_str),
        Some("counter")
    );

    let status = job.stop()?;
    assert!(
        status.success(),
        "tidewatch exited with {status}; its log:\n{}",
        job.log_tail()
    );
    Ok(())
}

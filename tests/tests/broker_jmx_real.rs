//! The real broker's Prometheus JMX exporter (the agent scripts/kafka.sh loads, rules in
//! scripts/kafka/jmx-exporter.yml): its exposition parses strictly, the input topic's
//! bytes and messages in grow while data is produced, and the health, request and JVM
//! series the "Kafka broker" dashboard draws are there.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use tidewatch_tests::exposition::{
    broker_exporter, require_broker_exporter, scrape_parsed, Exposition,
};
use tidewatch_tests::{corpus, create_topics, produce, real_brokers, require_broker, unique_topic};

const ROUNDS: usize = 3;
const PER_ROUND: usize = 500;

fn topic_figure(scrape: &Exposition, name: &str, topic: &str) -> f64 {
    scrape.sum(name, &[("topic", topic)]).unwrap_or(0.0)
}

#[test]
fn real_broker_exporter_reports_bytes_in_growing_while_data_is_produced() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let exporter = broker_exporter();
    require_broker_exporter(&exporter)?;
    let topic = unique_topic("jmx-in");
    create_topics(&brokers, &[&topic], 2)?;

    let (_, before) = scrape_parsed(&exporter)?;
    let mut bytes_in = vec![topic_figure(&before, "kafka_topic_bytes_in_total", &topic)];
    assert_eq!(bytes_in[0], 0.0, "a new topic has no bytes in yet");
    let records = corpus(ROUNDS * PER_ROUND, 2, false);
    let mut payload = 0usize;
    for (round, batch) in records.chunks(PER_ROUND).enumerate() {
        produce(&brokers, &topic, batch)?;
        payload += batch
            .iter()
            .map(|r| {
                r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())
            })
            .sum::<usize>();
        // The broker's meters count on append; the agent reads them at each scrape.
        let deadline = Instant::now() + Duration::from_secs(30);
        let now = loop {
            let (_, scrape) = scrape_parsed(&exporter)?;
            let now = topic_figure(&scrape, "kafka_topic_bytes_in_total", &topic);
            if now > *bytes_in.last().unwrap_or(&0.0) {
                break now;
            }
            ensure!(
                Instant::now() < deadline,
                "round {round}: bytes in of {topic} stayed at {now}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        bytes_in.push(now);
    }
    eprintln!("bytes in of {topic} after each round: {bytes_in:?} (payload {payload} bytes)");
    let (text, after) = scrape_parsed(&exporter)?;
    let last = *bytes_in.last().context("no rounds")?;
    assert!(
        last >= payload as f64,
        "bytes in ({last}) hold at least the keys and values ({payload})"
    );
    assert_eq!(
        topic_figure(&after, "kafka_topic_messages_in_total", &topic),
        (ROUNDS * PER_ROUND) as f64,
        "messages in of {topic}"
    );
    assert!(topic_figure(&after, "kafka_topic_produce_requests_total", &topic) >= ROUNDS as f64);
    assert!(
        after.sum("kafka_broker_bytes_in_total", &[]).unwrap_or(0.0) >= last,
        "the broker-wide bytes in include the topic's"
    );

    // Health, requests and the JVM, as the dashboard draws them.
    let one = |name: &str, with: &[(&str, &str)]| {
        after
            .sum(name, with)
            .with_context(|| format!("no {name}{with:?} in:\n{text}"))
    };
    assert_eq!(one("kafka_server_under_replicated_partitions", &[])?, 0.0);
    assert_eq!(one("kafka_controller_offline_partitions", &[])?, 0.0);
    assert_eq!(one("kafka_controller_active_controllers", &[])?, 1.0);
    assert!(one("kafka_server_partitions", &[])? >= 2.0);
    assert!(one("kafka_network_requests_total", &[("request", "Produce")])? >= ROUNDS as f64);
    let p99 = one(
        "kafka_network_request_total_time_seconds",
        &[("request", "Produce"), ("stat", "p99")],
    )?;
    assert!(p99 > 0.0 && p99 < 30.0, "Produce total time p99 {p99} s");
    assert!(one("kafka_log_size_bytes", &[("topic", &topic)])? >= payload as f64);
    assert!(one("jvm_memory_used_bytes", &[("area", "heap")])? > 0.0);
    assert!(
        after.series("jvm_gc_collection_seconds_count").count() >= 1,
        "GC collectors"
    );
    assert!(one("process_cpu_seconds_total", &[])? > 0.0);
    Ok(())
}

//! The freshness observer (`operators/src/builtin/freshness.rs`), on the observation
//! protocol: per partition, the age of the newest record timestamp and of the newest
//! `event_time` at each window's end, equal to an independent computation from the
//! records produced, in the stats documents, `/metrics`, OpenSearch (mapped as numbers by
//! the index template's dynamic rules) and an alert rule — none of which names it.
//! Real broker and OpenSearch.

use tidewatch_engine::Record;
use tidewatch_operators::alerts::{AlertRule, AlertState, Comparison};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_tests::observed::{run_observed_outputs, sample};
use tidewatch_tests::{http_json, opensearch_url, real_brokers};

#[test]
fn real_broker_freshness_ages_the_newest_record_of_each_partition() -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    // Partition 0's newest record is a minute old, partition 1's twenty seconds; each
    // event happened two seconds before its record was written.
    let newest = [now - 60_000, now - 20_000];
    let records: Vec<Record> = (0..400)
        .map(|i: i64| {
            let partition = i32::from(i % 2 == 1);
            let ts = newest[partition as usize] - (399 - i) * 10;
            let event = chrono::DateTime::from_timestamp_millis(ts - 2_000).map(|t| t.to_rfc3339()).unwrap_or_default();
            let value = format!(r#"{{"visit_id":{i},"event_time":"{event}","user_id":"u{}","page":"p"}}"#, i % 7);
            Record { partition, offset: 0, timestamp: Some(ts), key: None, value: Some(value.into_bytes().into()), headers: vec![] }
        })
        .collect();
    let rule = AlertRule { name: "stale_input".to_owned(), metric: "freshness.record_age_seconds".to_owned(), op: Comparison::Above, threshold: 30.0, for_: std::time::Duration::ZERO };
    let observe = ObserveConfig { enable: vec!["freshness".to_owned()], alerts: vec![rule], budget: 0.0, window: std::time::Duration::from_millis(500), ..ObserveConfig::default() };
    let run = run_observed_outputs(&real_brokers(), &records, observe)?;
    // The independent reading: the newest timestamp per partition of what was produced.
    let newest: Vec<i64> = (0..2).map(|p| records.iter().filter(|r| r.partition == p).filter_map(|r| r.timestamp).max().unwrap_or(0)).collect();

    // Every window after the records were read: the age is window end − newest, exactly.
    let last = run.docs.last().ok_or_else(|| anyhow::anyhow!("no stats documents"))?;
    let end = last.window_end_ms as i64;
    for (partition, newest) in newest.iter().enumerate() {
        let record_age = last.metrics[&format!("freshness.record_age_seconds.partition.{partition}")];
        let event_age = last.metrics[&format!("freshness.event_time_age_seconds.partition.{partition}")];
        assert_eq!(record_age, (end - newest) as f64 / 1000.0, "partition {partition}: record age");
        assert_eq!(event_age, (end - newest + 2_000) as f64 / 1000.0, "partition {partition}: event time age");
    }
    // It ages as windows pass without records.
    let earlier = &run.docs[run.docs.len() - 2];
    let key = "freshness.record_age_seconds.partition.0";
    assert!(earlier.metrics.contains_key(key) && last.metrics[key] > earlier.metrics[key], "the age grows window by window");

    // /metrics: one generic family, labelled by observer, metric and partition.
    let scraped = sample(&run.metrics, "tidewatch_observed", &[("observer", "freshness"), ("metric", "record_age_seconds"), ("partition", "0")]);
    assert!(scraped.is_some_and(|v| v >= 60.0), "tidewatch_observed for partition 0: {scraped:?}\n{}", run.metrics);

    // The alert rule on the metric (the larger of the two partitions) fired.
    let fired = run.alerts.iter().find(|a| a.rule == "stale_input" && a.state == AlertState::Firing);
    assert!(fired.is_some_and(|a| a.value.is_some_and(|v| v >= 60.0)), "stale_input fired with the oldest partition's age: {:?}", run.alerts);

    // OpenSearch holds the figures, mapped as numbers by the template's dynamic rules.
    let indexed = run.indexed.last().ok_or_else(|| anyhow::anyhow!("no documents in OpenSearch"))?;
    assert_eq!(indexed["metrics"][key].as_f64(), last.metrics.get(key).copied(), "the indexed figure: {indexed}");
    let index = run.indexed_index.as_str();
    let (_, mapping) = http_json("GET", &format!("{}/{index}/_mapping", opensearch_url()), None)?;
    let field = &mapping[index]["mappings"]["properties"]["metrics"]["properties"]["freshness"]["properties"]["record_age_seconds"]["properties"]["partition"]["properties"]["0"];
    assert_eq!(field["type"], "double", "mapping of {key}: {mapping}");
    Ok(())
}

//! The distinct-users observer (`operators/src/builtin/distinct_users.rs`), a differential
//! dataflow (`distinct` over `(window, user)`, retracted at the window's end): per window,
//! the number of distinct `user_id`s equals an independent count of the records of that
//! window's epochs, on 2 workers, in the stats documents, `/metrics`, OpenSearch and an
//! alert rule — none of which names it. Real broker and OpenSearch.

use std::collections::BTreeSet;
use std::time::Duration;

use tidewatch_engine::Record;
use tidewatch_operators::alerts::{AlertRule, AlertState, Comparison};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_tests::observed::{run_observed_outputs, sample};
use tidewatch_tests::real_brokers;

#[test]
fn real_broker_distinct_users_per_window_match_an_independent_count() -> anyhow::Result<()> {
    // 3 000 records over 2 partitions and 400 users, some without a user (or with a
    // number for one), all read within the first window or two.
    let records: Vec<Record> = (0..3_000)
        .map(|i: i64| {
            let user = match i % 50 {
                0 => String::new(),
                1 => r#","user_id":7"#.to_owned(),
                _ => format!(r#","user_id":"user-{}""#, (i * 7919) % 400),
            };
            let value = format!(r#"{{"visit_id":{i}{user},"page":"p"}}"#);
            Record { partition: i32::from(i % 2 == 1), offset: 0, timestamp: None, key: None, value: Some(value.into_bytes().into()), headers: vec![] }
        })
        .collect();
    let users: BTreeSet<String> = records
        .iter()
        .filter_map(|r| r.value.as_deref())
        .filter_map(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
        .filter_map(|v| v.get("user_id").and_then(|u| u.as_str()).map(str::to_owned))
        .collect();
    let rule = AlertRule { name: "many_users".to_owned(), metric: "distinct_users.users".to_owned(), op: Comparison::AtLeast, threshold: 1.0, for_: Duration::ZERO };
    // Windows of 4 s: the records, read in well under a second, most often fall in one.
    let observe = ObserveConfig { enable: vec!["distinct_users".to_owned()], alerts: vec![rule], window: Duration::from_secs(4), ..ObserveConfig::default() };
    let run = run_observed_outputs(&real_brokers(), &records, observe)?;

    // Each window counts its own distinct users: at most all of them, together at least
    // all of them, and exactly all of them when one window holds every record.
    let key = "distinct_users.users";
    let with_records: Vec<_> = run.docs.iter().filter(|d| d.all_events > 0).collect();
    assert!(!with_records.is_empty());
    for doc in &with_records {
        let n = doc.metrics.get(key).copied().unwrap_or(0.0);
        assert!(n >= 1.0 && n <= users.len() as f64, "a window with records has 1 to {} users: {:?}", users.len(), doc.metrics);
    }
    let summed: f64 = with_records.iter().map(|d| d.metrics[key]).sum();
    eprintln!("{} windows with records, {summed} distinct users in them, {} overall", with_records.len(), users.len());
    assert!(summed >= users.len() as f64, "windows' distinct users ({summed}) cover all {} users", users.len());
    if with_records.len() == 1 {
        assert_eq!(with_records[0].metrics[key], users.len() as f64, "one window: all users, once each");
    }
    // A window after the records: no users left (the collection retracted them).
    let last = run.docs.last().ok_or_else(|| anyhow::anyhow!("no documents"))?;
    assert_eq!(last.all_events, 0);
    assert_eq!(last.metrics.get(key), None, "no users in a window without records: {:?}", last.metrics);

    // /metrics and OpenSearch carry it; the alert fired while there were users.
    let most = with_records.iter().map(|d| d.metrics[key]).fold(0.0, f64::max);
    assert!(sample(&run.metrics, "tidewatch_observed", &[("observer", "distinct_users"), ("metric", "users")]).is_some(), "{}", run.metrics);
    let indexed_max = run.indexed.iter().filter_map(|d| d["metrics"][key].as_f64()).fold(0.0, f64::max);
    assert_eq!(indexed_max, most, "OpenSearch holds the figures");
    assert!(run.alerts.iter().any(|a| a.rule == "many_users" && a.state == AlertState::Firing), "{:?}", run.alerts);
    Ok(())
}

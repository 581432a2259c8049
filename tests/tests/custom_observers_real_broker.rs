//! Observers written with the custom-observer API, on the real broker: value rules from
//! config count exactly the violations an independent check finds in the input topic, and
//! copy reconciliation sees every offset once, with no gap and no repeat.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tidewatch_engine::opensearch::OpenSearchConfig;
use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_jobs::visits::{produce_into, FaultMix, GeneratorConfig, NeverStop, ProduceSettings, VisitGenerator};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_operators::stats::StatsDoc;
use tidewatch_operators::value_rules::ValueRule;
use tidewatch_tests::{create_topics, read_all, real_brokers, require_broker, unique_topic};

fn rule(name: &str, field: &str) -> ValueRule {
    ValueRule { name: name.into(), field: field.into(), regex: None, allowed: None, min: None, max: None, max_age: None }
}

#[test]
fn real_broker_value_rules_and_reconciliation_equal_an_independent_count() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("rules-in"), unique_topic("rules-out"), unique_topic("rules"));
    create_topics(&brokers, &[&input, &output], 3)?;
    let config = GeneratorConfig { seed: 31, partitions: 3, partition_weights: vec![1, 1, 1], faults: FaultMix::uniform(0.03), ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::try_new(config)?;
    produce_into(&ProduceSettings { count: Some(15_000), ..ProduceSettings::new(&brokers, &input) }, &mut generator, &NeverStop, None)?;

    let rules = vec![
        ValueRule { regex: Some("^(index|home|main|about)$".into()), ..rule("page_top", "page") },
        ValueRule { allowed: Some(vec!["Chrome".into(), "Firefox".into()]), ..rule("browser", "context.technical.browser") },
        ValueRule { min: Some(20.0), max: Some(24.0), ..rule("version", "context.technical.browser_version") },
        ValueRule { max_age: Some(Duration::from_secs(3600)), ..rule("fresh", "event_time") },
    ];
    let dir = tempfile::tempdir()?;
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers.clone());
    let file = FileConfig {
        job: JobConfig { input_topic: input.clone(), output_topic: output, group_id: group, epoch_interval: Duration::from_millis(100), until_end: true, ..JobConfig::default() },
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), rules: rules.clone(), ..ObserveConfig::default() },
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
        opensearch: OpenSearchConfig::default(),
        profile: Default::default(),
    };
    run_observed(file, &Cluster { workers: 2, ..Cluster::default() }, JobControl::new())?;
    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for doc in &docs {
        for (k, v) in &doc.observers {
            *totals.entry(k.clone()).or_insert(0) += v;
        }
    }

    // The independent count, over the input topic as it is.
    let input_records: Vec<_> = read_all(&brokers, &input)?.into_values().flatten().collect();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let now = chrono::Utc::now().timestamp_millis();
    for record in &input_records {
        let Some(json) = record.value.as_deref().and_then(|v| serde_json::from_slice::<Value>(v).ok()) else { continue };
        let at = |path: &str| path.split('.').try_fold(&json, |v, k| v.get(k)).filter(|v| !v.is_null());
        let mut count = |name: &str, present: bool, broken: bool| {
            *expected.entry(format!("value_rules.{name}_checked")).or_insert(0) += i64::from(present);
            *expected.entry(format!("value_rules.{name}")).or_insert(0) += i64::from(present && broken);
        };
        let page = at("page");
        count("page_top", page.is_some(), !page.and_then(Value::as_str).is_some_and(|p| ["index", "home", "main", "about"].contains(&p)));
        let browser = at("context.technical.browser");
        count("browser", browser.is_some(), !browser.and_then(Value::as_str).is_some_and(|b| b == "Chrome" || b == "Firefox"));
        let version = at("context.technical.browser_version");
        let number = version.and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
        count("version", version.is_some(), !number.is_some_and(|n: f64| (20.0..=24.0).contains(&n)));
        let event_time = at("event_time");
        let fresh = event_time
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|t| (now - t.timestamp_millis()).abs() <= 3_600_000);
        count("fresh", event_time.is_some(), !fresh);
    }
    for (name, want) in &expected {
        assert_eq!(totals.get(name).copied().unwrap_or(0), *want, "{name}");
    }
    assert!(expected["value_rules.browser"] > 0 && expected["value_rules.version"] > 0, "the rules must bite");
    // Samples point at real violating records.
    let by_position: BTreeMap<(i32, i64), &tidewatch_engine::Record> = input_records.iter().map(|r| ((r.partition, r.offset), r)).collect();
    let samples: Vec<(i32, i64)> = docs.iter().flat_map(|d| d.samples.get("value_rules.browser").cloned().unwrap_or_default()).collect();
    assert!(!samples.is_empty(), "violations come with samples");
    for position in samples {
        let record = by_position.get(&position).copied();
        let browser = record
            .and_then(|r| r.value.as_deref())
            .and_then(|v| serde_json::from_slice::<Value>(v).ok())
            .and_then(|j| j["context"]["technical"]["browser"].as_str().map(str::to_owned));
        assert!(browser.as_deref().is_some_and(|b| b != "Chrome" && b != "Firefox"), "sample {position:?} is not a violation: {browser:?}");
    }
    assert_eq!(totals["reconcile.consumed"], input_records.len() as i64);
    assert_eq!(totals["reconcile.offset_gaps"], 0);
    assert_eq!(totals["reconcile.repeated_offsets"], 0);
    Ok(())
}

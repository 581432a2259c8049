//! Tests of the visits generator: determinism, the record shape of `docs/visits.md`,
//! partition skew, the summary against an independent parse of every record, and
//! producing to librdkafka's in-process mock cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone as _, Utc};
use clap::Parser as _;
use rand::{Rng as _, SeedableRng as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

use super::*;

/// Important fields covering top-level, nested, naturally-null, naturally-absent,
/// object and unknown paths.
const FIELDS: [&str; 11] = [
    "event_time",
    "user_id",
    "page",
    "visit_id",
    "keep_private",
    "context",
    "context.referral",
    "context.user",
    "context.user.login",
    "context.user.connected_since",
    "context.technical.browser",
];

fn faulty_config(seed: u64, share: f64) -> GeneratorConfig {
    let mut important_fields: Vec<String> = FIELDS.iter().map(|f| (*f).to_owned()).collect();
    important_fields.push("context.nope".to_owned());
    GeneratorConfig { seed, faults: FaultMix::uniform(share), important_fields, ..GeneratorConfig::default() }
}

fn generate(cfg: &GeneratorConfig, n: usize) -> (Vec<GeneratedRecord>, GeneratorSummary) {
    let mut generator = VisitGenerator::new(cfg.clone());
    let records = generator.by_ref().take(n).collect();
    (records, generator.into_summary())
}

/// The independent parse: UTF-8, then JSON; `None` when unparseable.
fn parse(value: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(value).ok()?;
    serde_json::from_str(text).ok()
}

/// How `path` reads in `doc`, `None` when valid.
fn invalid_kind(doc: &Value, path: &str) -> Option<&'static str> {
    let mut current = doc;
    for segment in path.split('.') {
        match current.as_object().and_then(|o| o.get(segment)) {
            Some(v) => current = v,
            None => return Some("missing"),
        }
    }
    match current {
        Value::Null => Some("null"),
        Value::String(s) if s.is_empty() => Some("empty_string"),
        Value::Array(a) if a.is_empty() => Some("empty_array"),
        Value::Object(o) if o.is_empty() => Some("empty_object"),
        _ => None,
    }
}

fn bump(counts: &mut FieldCounts, kind: &str) {
    counts.invalid += 1;
    match kind {
        "missing" => counts.missing += 1,
        "null" => counts.null += 1,
        "empty_string" => counts.empty_string += 1,
        "empty_array" => counts.empty_array += 1,
        "empty_object" => counts.empty_object += 1,
        other => panic!("unknown kind {other}"),
    }
}

fn rfc3339_ms(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text).expect("RFC 3339 event time").timestamp_millis()
}

#[test]
fn same_seed_gives_the_same_bytes_and_partitions() {
    let cfg = faulty_config(42, 0.05);
    let (a, summary_a) = generate(&cfg, 10_000);
    let (b, summary_b) = generate(&cfg, 10_000);
    assert_eq!(a, b);
    assert_eq!(summary_a, summary_b);
    // The borrowed path writes the same bytes as the owned one.
    let mut generator = VisitGenerator::new(cfg);
    for expected in &a[..1000] {
        assert_eq!(&generator.next_borrowed().to_owned(), expected);
    }
}

#[test]
fn different_seeds_differ() {
    let (a, _) = generate(&faulty_config(1, 0.05), 10_000);
    let (b, _) = generate(&faulty_config(2, 0.05), 10_000);
    let same = a.iter().zip(&b).filter(|(x, y)| x.value == y.value).count();
    assert!(same < 10, "{same} identical values");
    let partitions_same = a.iter().zip(&b).filter(|(x, y)| x.partition == y.partition).count();
    assert!(partitions_same < 6_000, "{partitions_same} identical partitions");
}

#[test]
fn faults_do_not_change_the_visits() {
    // Faults draw from their own stream: with the same seed, every record the default
    // mix left intact is the record of the fault-free stream.
    let (faulty, _) = generate(&GeneratorConfig { seed: 9, ..GeneratorConfig::default() }, 5_000);
    let (clean, _) = generate(&GeneratorConfig { seed: 9, faults: FaultMix::none(), ..GeneratorConfig::default() }, 5_000);
    let mut intact = 0;
    for (f, c) in faulty.iter().zip(&clean) {
        assert_eq!(f.partition, c.partition);
        assert_eq!(f.timestamp_ms, c.timestamp_ms);
        let doc = parse(f.value.as_deref().expect("value")).expect("parses");
        if doc.as_object().expect("object").values().all(|v| !v.is_null()) {
            assert_eq!(f, c);
            intact += 1;
        }
    }
    assert!(intact > 4_000, "{intact}");
}

/// What an independent parse of the records finds, to compare with the generator's
/// [`GeneratorSummary`].
struct ParsedCounts {
    fields: BTreeMap<String, FieldCounts>,
    per_partition: Vec<u64>,
    unparseable: u64,
    non_utf8: u64,
    value_bytes: u64,
    /// Records equal to the original just before them.
    duplicates: u64,
}

impl ParsedCounts {
    /// Parses every record of `records` (generated for `cfg`, two partitions), checking
    /// the key and the timestamp of every parseable one.
    fn of(cfg: &GeneratorConfig, records: &[GeneratedRecord]) -> ParsedCounts {
        let mut counts = ParsedCounts {
            fields: cfg.important_fields.iter().map(|f| (f.clone(), FieldCounts::default())).collect(),
            per_partition: vec![0u64; 2],
            unparseable: 0,
            non_utf8: 0,
            value_bytes: 0,
            duplicates: 0,
        };
        let mut previous_was_original = false;
        for (i, record) in records.iter().enumerate() {
            counts.per_partition[record.partition as usize] += 1;
            let value = record.value.as_deref().expect("value");
            counts.value_bytes += value.len() as u64;
            if i > 0 && previous_was_original && records[i - 1] == *record {
                counts.duplicates += 1;
                previous_was_original = false;
            } else {
                previous_was_original = true;
            }
            if std::str::from_utf8(value).is_err() {
                counts.non_utf8 += 1;
            }
            let Some(doc) = parse(value) else {
                counts.unparseable += 1;
                continue;
            };
            for (path, field) in counts.fields.iter_mut() {
                if let Some(kind) = invalid_kind(&doc, path) {
                    bump(field, kind);
                }
            }
            assert_key_and_timestamp(&doc, record);
        }
        counts
    }

    /// Checks that `summary` (of the records of `seed` and `share`) says what the parse found.
    fn assert_matches(&self, summary: &GeneratorSummary, records: usize, seed: u64, share: f64) {
        assert_eq!(summary.records, records as u64);
        assert_eq!(summary.per_partition, self.per_partition);
        assert_eq!(summary.value_bytes, self.value_bytes);
        assert_eq!(summary.unparseable, self.unparseable, "seed {seed}");
        assert_eq!(summary.faults.non_utf8, self.non_utf8);
        assert_eq!(summary.faults.truncated + summary.faults.non_utf8, self.unparseable);
        assert_eq!(summary.fields, self.fields, "seed {seed} share {share}");
        assert_eq!(summary.faults.duplicates, self.duplicates);
        // The unknown path reads as missing in every parseable record.
        assert_eq!(summary.fields["context.nope"].missing, summary.records - summary.unparseable);
    }
}

/// Checks the key of a parseable record (the visit id, else a UUID) and that its
/// `event_time`, when present, is the record's timestamp.
fn assert_key_and_timestamp(doc: &Value, record: &GeneratedRecord) {
    let key = std::str::from_utf8(record.key.as_deref().expect("key")).expect("UTF-8 key");
    match doc.get("visit_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => assert_eq!(key, id),
        _ => {
            assert_eq!(key.len(), 36);
            uuid::Uuid::parse_str(key).expect("UUID key");
        }
    }
    if let Some(t) = doc.get("event_time").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        assert!(t.ends_with("+00:00"), "{t}");
        assert_eq!(rfc3339_ms(t), record.timestamp_ms);
    }
}

/// Checks that every fault was injected at about `share` (duplicates: of the originals).
fn assert_fault_shares(summary: &GeneratorSummary, seed: u64, share: f64) {
    let n = summary.records as f64;
    let originals = (summary.records - summary.faults.duplicates) as f64;
    let f = summary.faults;
    for (name, count, base) in [
        ("nulled", f.nulled, n),
        ("empty_string", f.empty_string, n),
        ("missing_key", f.missing_key, n),
        ("nested_null", f.nested_null, n),
        ("unparseable", f.truncated + f.non_utf8, n),
        ("late", f.late, n),
        ("duplicates", f.duplicates, originals),
    ] {
        let observed = count as f64 / base;
        assert!((observed - share).abs() < 0.015, "seed {seed}: {name} share {observed}, expected {share}");
    }
}

/// Checks that the `injected` late events are the records that go back in time (within
/// a visit pool whose clock advances seconds per record, a 10-minute shift always shows).
fn assert_late_events_go_back(records: &[GeneratedRecord], injected: u64, seed: u64) {
    let mut max = i64::MIN;
    let mut late = 0;
    for r in records {
        if r.timestamp_ms < max {
            late += 1;
        }
        max = max.max(r.timestamp_ms);
    }
    assert!(injected - late <= 1, "seed {seed}: {late} late records seen, {injected} injected");
}

#[test]
fn summary_matches_an_independent_parse() {
    for (seed, share) in [(5, 0.05), (6, 0.3), (7, 1.0)] {
        let cfg = faulty_config(seed, share);
        let (records, summary) = generate(&cfg, 20_000);
        ParsedCounts::of(&cfg, &records).assert_matches(&summary, records.len(), seed, share);
        assert_fault_shares(&summary, seed, share);
        if share < 1.0 {
            assert_late_events_go_back(&records, summary.faults.late, seed);
        }
    }
}

#[test]
fn default_mix_nulls_top_level_fields_of_a_tenth_of_the_records() {
    let cfg = GeneratorConfig { seed: 11, ..GeneratorConfig::default() };
    let (records, summary) = generate(&cfg, 30_000);
    let f = summary.faults;
    assert_eq!((f.empty_string, f.missing_key, f.nested_null, f.truncated, f.non_utf8, f.duplicates, f.late), (0, 0, 0, 0, 0, 0, 0));
    let share = f.nulled as f64 / summary.records as f64;
    assert!((share - 0.10).abs() < 0.01, "{share}");
    let mut nulled = 0;
    for record in &records {
        let doc = parse(record.value.as_deref().expect("value")).expect("parses");
        let object = doc.as_object().expect("object");
        assert_eq!(object.len(), 6, "no key is ever missing");
        if object.values().any(Value::is_null) {
            nulled += 1;
        }
    }
    assert_eq!(nulled, f.nulled);
    assert_eq!(summary.unparseable, 0);
    assert_eq!(summary.fields.keys().collect::<Vec<_>>(), ["event_time", "page", "user_id"]);
    for counts in summary.fields.values() {
        assert_eq!(counts.invalid, counts.null);
        // A random non-empty subset of 6 fields holds a given one in 32 cases of 63.
        let expected = f.nulled as f64 * 32.0 / 63.0;
        assert!((counts.null as f64 - expected).abs() < expected * 0.1, "{} vs {expected}", counts.null);
    }
}

#[test]
fn partition_weights_skew_the_split() {
    let cfg = GeneratorConfig { seed: 3, partition_weights: vec![3, 1], ..GeneratorConfig::default() };
    let (_, summary) = generate(&cfg, 100_000);
    let [p0, p1] = summary.per_partition[..] else { panic!("two partitions") };
    let ratio = p0 as f64 / p1 as f64;
    assert!((2.85..3.15).contains(&ratio), "{ratio}");

    let cfg = GeneratorConfig { seed: 3, partitions: 4, partition_weights: vec![0, 1, 1, 2], ..GeneratorConfig::default() };
    let (records, summary) = generate(&cfg, 40_000);
    assert_eq!(summary.per_partition[0], 0);
    assert!(records.iter().all(|r| (1..4).contains(&r.partition)));
    let ratio = summary.per_partition[3] as f64 / summary.per_partition[1] as f64;
    assert!((1.85..2.15).contains(&ratio), "{ratio}");

    let cfg = GeneratorConfig { seed: 3, partitions: 3, ..GeneratorConfig::default() };
    let (_, summary) = generate(&cfg, 30_000);
    assert!(summary.per_partition.iter().all(|n| (9_500..10_500).contains(n)), "{:?}", summary.per_partition);
}

/// The top-level fields of a reference-shaped record.
struct TopLevel<'a> {
    visit_id: &'a str,
    user_id: &'a str,
    page: &'a str,
    /// `event_time` in milliseconds since the epoch.
    event_ms: i64,
}

/// Checks that `record` is a JSON object with exactly the top-level keys of the
/// reference (see `docs/visits.md`), `visit_id` first; returns its document.
fn assert_reference_keys(record: &GeneratedRecord) -> Value {
    let text = std::str::from_utf8(record.value.as_deref().expect("value")).expect("UTF-8");
    assert!(text.starts_with("{\"visit_id\":\""), "{text}");
    let doc: Value = serde_json::from_str(text).expect("JSON");
    let keys: Vec<&str> = doc.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 6);
    for key in ["visit_id", "event_time", "user_id", "keep_private", "page", "context"] {
        assert!(keys.contains(&key), "{key} in {text}");
    }
    doc
}

/// Checks the top-level fields of a reference-shaped `doc` against its `record` and
/// returns them.
fn assert_top_level<'a>(doc: &'a Value, record: &GeneratedRecord) -> TopLevel<'a> {
    let visit_id = doc["visit_id"].as_str().expect("visit_id");
    let (left, right) = visit_id.split_once('_').expect("visit id has _");
    assert!(left.len() == 15 && left.bytes().all(|b| b.is_ascii_digit()) && right.parse::<u64>().is_ok(), "{visit_id}");
    assert_eq!(record.key.as_deref(), Some(visit_id.as_bytes()));
    let user_id = doc["user_id"].as_str().expect("user_id");
    let (number, uuid) = user_id.split_once('_').expect("user id has _");
    assert!(number.len() == 9 && left.ends_with(number), "{visit_id} {user_id}");
    uuid::Uuid::parse_str(uuid).expect("user id UUID");
    assert!(doc["keep_private"].is_boolean());
    let page = doc["page"].as_str().expect("page");
    assert!(PAGES.contains(&page), "{page}");
    let event_time = doc["event_time"].as_str().expect("event_time");
    assert!(event_time.ends_with("+00:00"));
    let event_ms = rfc3339_ms(event_time);
    assert_eq!(event_ms, record.timestamp_ms);
    TopLevel { visit_id, user_id, page, event_ms }
}

/// Checks a fault-free `context` (`start_ms`: the generator's start time).
fn assert_reference_context(context: &Value, start_ms: i64) {
    let referral = &context["referral"];
    assert!(referral.is_null() || REFERRALS.contains(&referral.as_str()), "{referral}");
    let ad = &context["ad_id"];
    assert!(ad.is_null() || (1..=5).any(|n| ad.as_str() == Some(&format!("ad {n}"))), "{ad}");
    let user = context["user"].as_object().expect("context.user");
    let octets: Vec<u8> = user["ip"].as_str().expect("ip").split('.').map(|o| o.parse().expect("octet")).collect();
    assert_eq!(octets.len(), 4);
    let login = user["login"].as_str().expect("login");
    assert!(!login.is_empty() && login.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{login}");
    assert!(user.len() == 2 || user.len() == 3);
    if let Some(since) = user.get("connected_since") {
        let since = rfc3339_ms(since.as_str().expect("connected_since string"));
        assert!(since < start_ms && since % 86_400_000 == 0);
    }
    let technical = context["technical"].as_object().expect("context.technical");
    assert_eq!(technical.len(), 5);
    assert!(BROWSERS.contains(&technical["browser"].as_str().expect("browser")));
    assert!(NETWORK_TYPES.contains(&technical["network_type"].as_str().expect("network_type")));
    assert!(DEVICE_TYPES.contains(&technical["device_type"].as_str().expect("device_type")));
    let version = |key: &str| technical[key].as_str().expect("version").parse::<f64>().expect("x.y");
    assert!((20.0..=25.9).contains(&version("browser_version")));
    assert!((1.0..=6.0).contains(&version("device_version")));
}

/// A visit as its records showed it so far.
struct Seen {
    context: Value,
    user_id: String,
    last_ms: i64,
    refreshes: u32,
}

/// The visits of a record stream and the steps between their refreshes.
#[derive(Default)]
struct VisitLog {
    visits: HashMap<String, Seen>,
    /// The page of each visit's latest record.
    pages_by_visit: HashMap<String, String>,
    steps: u32,
    /// Steps of 1–30 seconds.
    short_steps: u32,
    /// Steps that kept the page.
    same_page: u32,
}

impl VisitLog {
    /// Adds the record with the top-level fields `top` and `context`, checking that it
    /// continues its visit (same user and context, a refresh step of the reference).
    fn add(&mut self, top: &TopLevel<'_>, context: &Value) {
        match self.visits.get_mut(top.visit_id) {
            Some(seen) => {
                assert_eq!(&seen.context, context, "context stays with the visit");
                assert_eq!(seen.user_id, top.user_id);
                let step = (top.event_ms - seen.last_ms) / 1000;
                assert!((1..=30).contains(&step) || (60..=300).contains(&step), "refresh step {step} s");
                self.steps += 1;
                self.short_steps += u32::from(step <= 30);
                seen.last_ms = top.event_ms;
                seen.refreshes += 1;
                assert!(seen.refreshes <= 500);
                if self.pages_by_visit.get(top.visit_id).map(String::as_str) == Some(top.page) {
                    self.same_page += 1;
                }
            }
            None => {
                let seen = Seen { context: context.clone(), user_id: top.user_id.to_owned(), last_ms: top.event_ms, refreshes: 1 };
                self.visits.insert(top.visit_id.to_owned(), seen);
            }
        }
        self.pages_by_visit.insert(top.visit_id.to_owned(), top.page.to_owned());
    }

    /// Checks the shares across visits and steps against the reference.
    fn assert_reference_shares(&self) {
        let visits = &self.visits;
        let n = visits.len() as f64;
        assert!(n > 1_000.0, "{n} visits");
        let with_since = visits.values().filter(|s| s.context["user"].get("connected_since").is_some()).count() as f64 / n;
        assert!((0.29..0.38).contains(&with_since), "connected_since in {with_since} of the visits");
        let ad_null = visits.values().filter(|s| s.context["ad_id"].is_null()).count() as f64 / n;
        assert!((0.32..0.43).contains(&ad_null), "ad_id null in {ad_null} of the visits");
        let short = f64::from(self.short_steps) / f64::from(self.steps);
        assert!((0.03..0.07).contains(&short), "{short} of the steps are 1–30 s");
        assert!(f64::from(self.same_page) / f64::from(self.steps) < 0.05, "pages change across refreshes");
        let ids: HashSet<&String> = visits.keys().collect();
        assert_eq!(ids.len(), visits.len());
    }
}

#[test]
fn records_have_the_reference_shape() {
    let cfg = GeneratorConfig { seed: 21, faults: FaultMix::none(), concurrent_visits: 1_000, ..GeneratorConfig::default() };
    let (records, summary) = generate(&cfg, 100_000);
    assert!(summary.fields.values().all(|c| c.invalid == 0));
    let average = summary.value_bytes as f64 / summary.records as f64;
    assert!((330.0..470.0).contains(&average), "average value {average} bytes");

    let start_ms = cfg.start_time.timestamp_millis();
    let mut log = VisitLog::default();
    let mut previous_ms = i64::MIN;
    for record in &records {
        let doc = assert_reference_keys(record);
        let top = assert_top_level(&doc, record);
        assert!(top.event_ms >= previous_ms, "event time never goes backwards without late events");
        previous_ms = top.event_ms;
        let context = &doc["context"];
        assert_reference_context(context, start_ms);
        log.add(&top, context);
    }
    log.assert_reference_shares();
}

#[test]
fn timestamps_are_written_like_chrono() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let lo = Utc.with_ymd_and_hms(1971, 1, 1, 0, 0, 0).single().expect("lo").timestamp();
    let hi = Utc.with_ymd_and_hms(9000, 12, 31, 23, 59, 59).single().expect("hi").timestamp();
    let mut samples: Vec<i64> = (0..100_000).map(|_| rng.gen_range(lo..=hi)).collect();
    samples.extend([lo, hi, 951_782_400, 951_868_799, 4_107_542_400, 1_704_067_200]); // leap days, 2100-03-01
    for secs in samples {
        let mut out = Vec::new();
        super::generator::write_rfc3339(&mut out, secs);
        let expected = Utc.timestamp_opt(secs, 0).single().expect("valid").to_rfc3339();
        assert_eq!(std::str::from_utf8(&out).expect("ASCII"), expected);
    }
    assert_eq!(default_start_time().to_rfc3339(), "2024-01-01T00:00:00+00:00");
}

#[test]
fn the_clock_starts_at_the_configured_time() {
    let (records, _) = generate(&GeneratorConfig { seed: 1, faults: FaultMix::none(), ..GeneratorConfig::default() }, 100);
    let start = default_start_time().timestamp_millis();
    assert!(records.iter().all(|r| r.timestamp_ms >= start && r.timestamp_ms < start + 3_600_000));
    let text = String::from_utf8(records[0].value.clone().expect("value")).expect("UTF-8");
    assert!(text.contains("\"event_time\":\"2024-01-01T00:0"), "{text}");

    let later = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).single().expect("time");
    let cfg = GeneratorConfig {
        start_time: later,
        late_delay: Duration::from_secs(3600),
        faults: FaultMix { late: 1.0, ..FaultMix::none() },
        ..GeneratorConfig::default()
    };
    let (records, summary) = generate(&cfg, 100);
    assert_eq!(summary.faults.late, 100);
    assert!(records.iter().all(|r| r.timestamp_ms >= later.timestamp_millis() - 3_600_000 && r.timestamp_ms < later.timestamp_millis()));
}

#[test]
fn invalid_configs_are_rejected_or_brought_into_range() {
    let bad = GeneratorConfig { partition_weights: vec![1, 2, 3], ..GeneratorConfig::default() };
    assert!(VisitGenerator::try_new(bad.clone()).is_err());
    let mut generator = VisitGenerator::new(bad);
    assert_eq!(generator.config().partition_weights, vec![1, 2]);
    assert!((0..2).contains(&generator.next_record().partition));
    let empty = GeneratorConfig {
        important_fields: Vec::new(),
        faults: FaultMix { empty_string: 1.0, ..FaultMix::none() },
        ..GeneratorConfig::default()
    };
    let (records, summary) = generate(&empty, 100);
    assert!(summary.fields.is_empty());
    assert!(records.iter().all(|r| String::from_utf8_lossy(r.value.as_deref().expect("value")).contains("\"\"")));
}

#[test]
fn generate_flags_parse() {
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: GenerateArgs,
    }
    let cli = Cli::try_parse_from([
        "generate",
        "--count",
        "10",
        "--skew",
        "3,1",
        "-X",
        "acks=1",
        "--late-delay",
        "5m",
        "--null-share",
        "0.2",
        "--late-share",
        "0.01",
        "--field",
        "context.user.login",
        "--start-time",
        "2025-02-03T04:05:06+00:00",
        "--summary",
        "-",
    ])
    .expect("parses");
    let cfg = cli.args.generator_config().expect("valid");
    assert_eq!(cfg.partitions, 2);
    assert_eq!(cfg.partition_weights, vec![3, 1]);
    assert_eq!(cfg.faults.null, 0.2);
    assert_eq!(cfg.faults.late, 0.01);
    assert_eq!(cfg.late_delay, Duration::from_secs(300));
    assert_eq!(cfg.important_fields, vec!["context.user.login".to_owned()]);
    assert_eq!(cfg.start_time.to_rfc3339(), "2025-02-03T04:05:06+00:00");
    let settings = cli.args.produce_settings();
    assert_eq!(settings.brokers, "127.0.0.1:9092");
    assert_eq!(settings.topic, "visits");
    assert_eq!(settings.count, Some(10));
    assert_eq!(settings.overrides, vec![("acks".to_owned(), "1".to_owned())]);

    let defaults = Cli::try_parse_from(["generate"]).expect("parses");
    assert_eq!(defaults.args.generator_config().expect("valid"), GeneratorConfig::default());
    assert!(Cli::try_parse_from(["generate", "--null-share", "1.5"]).is_err());
    assert!(Cli::try_parse_from(["generate", "-X", "novalue"]).is_err());
    let mismatch = Cli::try_parse_from(["generate", "--skew", "3,1", "--partitions", "3"]).expect("parses");
    assert!(mismatch.args.generator_config().is_err());
}

/// Keys and values per partition, in offset order.
type Topic = BTreeMap<i32, Vec<(Vec<u8>, Vec<u8>)>>;

/// A mock cluster with `visits` (2 partitions) and `single` (1 partition).
fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("visits", 2, 1).expect("topic visits");
    cluster.create_topic("single", 1, 1).expect("topic single");
    cluster
}

/// Reads `n` records of `topic` back, per partition in offset order.
fn consume(brokers: &str, topic: &str, partitions: i32, n: usize) -> Topic {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "visits-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning).expect("offset");
    }
    consumer.assign(&assignment).expect("assign");
    let mut out: Topic = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < n && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("message");
            let key = message.key().expect("key").to_vec();
            let value = message.payload().expect("value").to_vec();
            out.entry(message.partition()).or_default().push((key, value));
            got += 1;
        }
    }
    out
}

#[test]
fn produces_exactly_the_generated_records() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let cfg = GeneratorConfig { seed: 77, partition_weights: vec![3, 1], ..faulty_config(77, 0.05) };
    let mut generator = VisitGenerator::new(cfg.clone());
    let settings = ProduceSettings { count: Some(5_000), ..ProduceSettings::new(&brokers, "visits") };
    let acknowledged = AtomicU64::new(0);
    let report = produce_into(&settings, &mut generator, &NeverStop, Some(&acknowledged)).expect("produced");
    assert_eq!((report.sent, report.delivered, report.stopped), (5_000, 5_000, false));
    assert_eq!(acknowledged.load(Ordering::Relaxed), 5_000);
    assert_eq!(generator.summary().records, 5_000);

    let mut expected: Topic = BTreeMap::new();
    for record in VisitGenerator::new(cfg).take(5_000) {
        expected.entry(record.partition).or_default().push((record.key.expect("key"), record.value.expect("value")));
    }
    let consumed = consume(&brokers, "visits", 2, 5_000);
    assert_eq!(consumed.len(), 2);
    for (p, records) in &consumed {
        assert_eq!(records.len() as u64, generator.summary().per_partition[*p as usize]);
    }
    assert!(consumed == expected, "the topic holds exactly the generated records, in order per partition");
}

#[test]
fn a_topic_with_too_few_partitions_is_a_clear_error() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let mut generator = VisitGenerator::new(GeneratorConfig::default());
    let settings = ProduceSettings { count: Some(10), ..ProduceSettings::new(&brokers, "single") };
    let error = produce_into(&settings, &mut generator, &NeverStop, None).expect_err("two partitions into one");
    assert!(format!("{error:#}").contains("has 1 partition(s), the generator writes to 2"), "{error:#}");
    assert_eq!(generator.summary().records, 0);
}

#[test]
fn produce_until_stops_on_the_flag_at_about_the_rate() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let generator = VisitGenerator::new(GeneratorConfig { seed: 1, partition_weights: vec![3, 1], ..GeneratorConfig::default() });
    let thread = {
        let (stop, produced) = (Arc::clone(&stop), Arc::clone(&produced));
        std::thread::spawn(move || produce_until(&brokers, "visits", generator, 2_000, &stop, &produced))
    };
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Release);
    thread.join().expect("no panic").expect("produced");
    let elapsed = started.elapsed().as_secs_f64();
    let n = produced.load(Ordering::Relaxed) as f64;
    assert!(n > 200.0 && n <= 2_000.0 * elapsed + 10.0, "{n} records in {elapsed:.2} s at 2000/s");
}

#[test]
fn produce_until_takes_the_demos_job_control() {
    // The call of `demo.rs`: `produce_until(&brokers, "visits", generator, rate, &producing, &produced)`.
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let producing = Arc::new(tidewatch_engine::JobControl::default());
    let produced = Arc::new(AtomicU64::new(0));
    let generator =
        VisitGenerator::new(GeneratorConfig { seed: 7, partitions: 2, partition_weights: vec![3, 1], ..GeneratorConfig::default() });
    let rate = 5_000u64;
    let thread = {
        let (producing, produced) = (Arc::clone(&producing), Arc::clone(&produced));
        std::thread::spawn(move || produce_until(&brokers, "visits", generator, rate, &producing, &produced))
    };
    std::thread::sleep(Duration::from_millis(300));
    producing.request_stop();
    thread.join().expect("no panic").expect("produced");
    assert!(produced.load(Ordering::Relaxed) > 0);
}

#[test]
fn run_until_writes_the_summary() {
    let cluster = mock_cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("summary.json");
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: GenerateArgs,
    }
    let cli = Cli::try_parse_from([
        "generate",
        "--brokers",
        &cluster.bootstrap_servers(),
        "--count",
        "2000",
        "--seed",
        "4",
        "--skew",
        "3,1",
        "--empty-share",
        "0.1",
        "--bursty",
        "--rate",
        "20000",
        "--no-progress",
        "--summary",
        path.to_str().expect("path"),
    ])
    .expect("parses");
    let summary = run_until(&cli.args, &NeverStop).expect("ran");
    assert_eq!(summary.records, 2_000);
    assert_eq!(GeneratorSummary::read_from(&path).expect("summary file"), summary);
    let (_, expected) = generate(&cli.args.generator_config().expect("config"), 2_000);
    assert_eq!(summary, expected);
}

/// `cargo test --release -p tidewatch-jobs visits::tests::generation_rate -- --ignored --nocapture`
#[test]
#[ignore = "timing; run in release with --nocapture"]
fn generation_rate() {
    for (name, faults) in
        [("no faults", FaultMix::none()), ("default mix", FaultMix::default()), ("all faults 5%", FaultMix::uniform(0.05))]
    {
        let mut generator = VisitGenerator::new(GeneratorConfig { seed: 1, faults, ..GeneratorConfig::default() });
        let n = 3_000_000u64;
        let started = Instant::now();
        let mut bytes = 0usize;
        for _ in 0..n {
            bytes += generator.next_borrowed().value.map_or(0, <[u8]>::len);
        }
        let secs = started.elapsed().as_secs_f64();
        #[allow(clippy::print_stdout)] // the point of this test
        {
            println!(
                "{name}: {n} records in {secs:.3} s = {:.0} records/s, {:.0} MB/s, {:.0} bytes/record",
                n as f64 / secs,
                bytes as f64 / secs / 1e6,
                bytes as f64 / n as f64
            );
        }
    }
}

/// Produce rate into the in-process mock cluster (a lower bound for a real local broker).
#[test]
#[ignore = "timing; run in release with --nocapture"]
fn mock_cluster_produce_rate() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let mut generator = VisitGenerator::new(GeneratorConfig { seed: 1, ..GeneratorConfig::default() });
    let settings = ProduceSettings { count: Some(1_000_000), ..ProduceSettings::new(&brokers, "visits") };
    let report = produce_into(&settings, &mut generator, &NeverStop, None).expect("produced");
    #[allow(clippy::print_stdout)] // the point of this test
    {
        println!("mock cluster: {} records in {:.3} s = {:.0} records/s", report.delivered, report.elapsed.as_secs_f64(), report.rate());
    }
}

//! `tidewatch generate` against the real broker: what lands in the topic is exactly what
//! the written summary says (records per partition, unparseable records, and per
//! important field how many records hold it missing, null or empty), checked by an
//! independent parse of every record read back; and the same seed writes the same
//! bytes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use serde_json::Value;
use tidewatch_engine::Record;
use tidewatch_jobs::visits::{FieldCounts, GeneratorSummary};
use tidewatch_tests::{create_topics, end_offsets, read_all, real_brokers, require_broker, tidewatch_bin, unique_topic};

const RECORDS: u64 = 20_000;
const SEED: u64 = 42;
const PARTITIONS: i32 = 2;
/// The important fields the generator reports on by default.
const FIELDS: [&str; 3] = ["event_time", "user_id", "page"];

/// Runs `tidewatch generate` into `topic` with every fault share at 5 %, and returns the
/// summary it wrote.
fn generate(brokers: &str, topic: &str, seed: u64, dir: &Path) -> anyhow::Result<GeneratorSummary> {
    let summary_path = dir.join(format!("{topic}.summary.json"));
    let count = RECORDS.to_string();
    let seed = seed.to_string();
    let partitions = PARTITIONS.to_string();
    #[rustfmt::skip]
    let args = [
        "generate", "--brokers", brokers, "--topic", topic,
        "--count", &count, "--seed", &seed, "--partitions", &partitions, "--skew", "3,1",
        "--null-share", "0.05", "--empty-share", "0.05", "--missing-share", "0.05",
        "--nested-null-share", "0.05", "--unparseable-share", "0.05",
        "--duplicate-share", "0.05", "--late-share", "0.05",
        "--summary", summary_path.to_str().context("temp path is not UTF-8")?, "--no-progress",
    ];
    let out = Command::new(tidewatch_bin()?).args(args).stdin(Stdio::null()).output().context("running tidewatch generate")?;
    if !out.status.success() {
        bail!("tidewatch generate into {topic} failed ({}); stderr:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read(&summary_path).with_context(|| format!("reading the summary {}", summary_path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing the summary {}", summary_path.display()))
}

/// How an important field reads when it is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalid {
    Missing,
    Null,
    EmptyString,
    EmptyArray,
    EmptyObject,
}

/// How the dotted `path` reads in a parsed record; `None`: present and not empty.
fn classify(document: &Value, path: &str) -> Option<Invalid> {
    let mut current = document;
    for segment in path.split('.') {
        // A parent that is absent, null or not an object hides the path: missing.
        match current.as_object().and_then(|object| object.get(segment)) {
            Some(child) => current = child,
            None => return Some(Invalid::Missing),
        }
    }
    match current {
        Value::Null => Some(Invalid::Null),
        Value::String(s) if s.is_empty() => Some(Invalid::EmptyString),
        Value::Array(a) if a.is_empty() => Some(Invalid::EmptyArray),
        Value::Object(o) if o.is_empty() => Some(Invalid::EmptyObject),
        _ => None,
    }
}

fn count(counts: &mut FieldCounts, invalid: Invalid) {
    match invalid {
        Invalid::Missing => counts.missing += 1,
        Invalid::Null => counts.null += 1,
        Invalid::EmptyString => counts.empty_string += 1,
        Invalid::EmptyArray => counts.empty_array += 1,
        Invalid::EmptyObject => counts.empty_object += 1,
    }
    counts.invalid += 1;
}

/// What an independent parse of the topic finds.
#[derive(Debug, Default)]
struct Observed {
    records: u64,
    unparseable: u64,
    fields: BTreeMap<String, FieldCounts>,
    /// Records identical (key and value) to the one before them in their partition.
    repeats: u64,
}

fn observe(topic: &BTreeMap<i32, Vec<Record>>) -> Observed {
    let mut seen = Observed { fields: FIELDS.iter().map(|f| ((*f).to_owned(), FieldCounts::default())).collect(), ..Observed::default() };
    for records in topic.values() {
        let mut previous: Option<&Record> = None;
        for record in records {
            seen.records += 1;
            if previous.is_some_and(|p| p.key == record.key && p.value == record.value) {
                seen.repeats += 1;
            }
            previous = Some(record);
            let bytes = record.value.as_deref().unwrap_or_default();
            // Not UTF-8 or not JSON: unparseable, counted in no field.
            let parsed = std::str::from_utf8(bytes).ok().and_then(|text| serde_json::from_str::<Value>(text).ok());
            let Some(document) = parsed else {
                seen.unparseable += 1;
                continue;
            };
            for (path, counts) in &mut seen.fields {
                if let Some(invalid) = classify(&document, path) {
                    count(counts, invalid);
                }
            }
        }
    }
    seen
}

#[test]
fn real_broker_generate_writes_exactly_what_its_summary_says() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let topic = unique_topic("gen");
    create_topics(&brokers, &[&topic], PARTITIONS)?;
    let dir = tempfile::tempdir()?;
    let summary = generate(&brokers, &topic, SEED, dir.path())?;

    // (a) The topic's end offsets are the summary's records per partition.
    assert_eq!(summary.seed, SEED, "summary seed");
    assert_eq!(summary.records, RECORDS, "summary records (duplicates included) should be --count");
    assert_eq!(summary.per_partition.len(), PARTITIONS as usize, "summary per_partition: {:?}", summary.per_partition);
    let ends = end_offsets(&brokers, &topic, PARTITIONS)?;
    let ends: Vec<u64> = ends.values().map(|e| u64::try_from(*e).unwrap_or(u64::MAX)).collect();
    assert_eq!(ends, summary.per_partition, "end offsets per partition vs the summary's per_partition");
    assert_eq!(ends.iter().sum::<u64>(), summary.records, "sum of end offsets vs the summary's records");
    // The 3,1 skew shows (a loose bound: the split is random, the share 3/4).
    assert!(
        summary.per_partition[0] > 2 * summary.per_partition[1],
        "skew 3,1 should put most records in partition 0: {:?}",
        summary.per_partition
    );
    // The faults asked for were injected, so the comparisons below test something.
    let f = summary.faults;
    for (name, n) in [
        ("nulled", f.nulled),
        ("empty_string", f.empty_string),
        ("missing_key", f.missing_key),
        ("nested_null", f.nested_null),
        ("truncated", f.truncated),
        ("non_utf8", f.non_utf8),
        ("duplicates", f.duplicates),
        ("late", f.late),
    ] {
        assert!(n > 0, "no {name} fault injected in {RECORDS} records at 5 %: {f:?}");
    }

    // (b) An independent parse of every record finds the summary's counts.
    let records = read_all(&brokers, &topic)?;
    let seen = observe(&records);
    assert_eq!(seen.records, summary.records, "records read back");
    assert_eq!(seen.unparseable, summary.unparseable, "unparseable records: parsed vs summary");
    assert_eq!(summary.unparseable, f.truncated + f.non_utf8, "summary: unparseable = truncated + non_utf8");
    assert_eq!(
        summary.fields.keys().collect::<Vec<_>>(),
        seen.fields.keys().collect::<Vec<_>>(),
        "the summary reports on the default important fields"
    );
    for (path, observed) in &seen.fields {
        let reported = summary.fields[path];
        assert_eq!(*observed, reported, "field `{path}`: parsed counts (left) vs summary (right)");
        assert!(observed.invalid > 0, "field `{path}` is never invalid: the faults did not reach it");
    }
    // Each duplicate follows its original in the same partition.
    assert!(seen.repeats >= f.duplicates, "{} adjacent repeats in the topic, {} duplicates in the summary", seen.repeats, f.duplicates);
    Ok(())
}

#[test]
fn real_broker_generate_same_seed_writes_the_same_bytes() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (first, second) = (unique_topic("gen-a"), unique_topic("gen-b"));
    create_topics(&brokers, &[&first, &second], PARTITIONS)?;
    let dir = tempfile::tempdir()?;
    let summary_a = generate(&brokers, &first, SEED, dir.path())?;
    let summary_b = generate(&brokers, &second, SEED, dir.path())?;
    assert_eq!(summary_a, summary_b, "same seed, same settings: same summary");

    let a = read_all(&brokers, &first)?;
    let b = read_all(&brokers, &second)?;
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "partitions");
    for (partition, records_a) in &a {
        let records_b = &b[partition];
        assert_eq!(records_a.len() as u64, summary_a.per_partition[*partition as usize], "partition {partition} of {first}");
        assert_eq!(records_a.len(), records_b.len(), "partition {partition}: {first} vs {second} record counts");
        for (i, (ra, rb)) in records_a.iter().zip(records_b).enumerate() {
            assert_eq!((ra.offset, rb.offset), (i as i64, i as i64), "partition {partition}: offsets read in order");
            assert!(ra.key == rb.key, "partition {partition}, record {i}: keys differ: {:?} vs {:?}", ra.key, rb.key);
            assert!(
                ra.value == rb.value,
                "partition {partition}, record {i}: values differ:\n{}\n{}",
                String::from_utf8_lossy(ra.value.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(rb.value.as_deref().unwrap_or_default())
            );
        }
    }
    Ok(())
}

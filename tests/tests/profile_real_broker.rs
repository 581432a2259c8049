//! Dataset profiles against the real broker: `tidewatch run` with profiles on, as one
//! process of 2 workers and as 2 processes of 2 workers, over generated visits with
//! faults plus hand-made records (tombstones, JSON that is not an object, mixed types,
//! a field name that needs escaping). The JSON profiles written per window must add up
//! to the records produced, and their exact counts must equal an independent count
//! over the produced values; each window has an HTML report naming every field.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;
use tidewatch_engine::Record;
use tidewatch_jobs::visits::{FaultMix, GeneratorConfig, VisitGenerator};
use tidewatch_operators::profile::WindowProfile;
use tidewatch_tests::{create_topics, produce, real_brokers, require_broker, run_processes, tidewatch_bin, unique_topic};

const PARTITIONS: i32 = 2;

/// Generated visits with every fault, and records the generator does not make.
fn records(n: usize) -> Vec<Record> {
    let mut generator = VisitGenerator::new(GeneratorConfig { seed: 17, partitions: 2, faults: FaultMix::uniform(0.05), ..GeneratorConfig::default() });
    let mut out: Vec<Record> = (0..n)
        .map(|_| {
            let r = generator.next_record();
            Record {
                partition: r.partition,
                offset: -1,
                timestamp: Some(r.timestamp_ms),
                key: r.key.map(Into::into),
                value: r.value.map(Into::into),
                headers: vec![],
            }
        })
        .collect();
    let extra: [Option<&[u8]>; 6] = [
        None,
        Some(br#"[1,2]"#),
        Some(br#""text""#),
        Some(br#"{"page":12,"x<y":"a&b","tags":["t"]}"#),
        Some(br#"{"page":{"nested":true}}"#),
        Some(b"{\"page\":"),
    ];
    for (i, value) in extra.iter().enumerate() {
        let at = (i * 131) % out.len();
        out.insert(at, Record { partition: (i % 2) as i32, offset: -1, timestamp: None, key: None, value: value.map(|v| v.to_vec().into()), headers: vec![] });
    }
    out
}

/// The independent count: whole-record classes and, per flattened field, present and
/// per-type counts, from a plain `serde_json::Value` walk.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    records: u64,
    objects: u64,
    not_object: u64,
    unparseable: u64,
    tombstones: u64,
    present: BTreeMap<String, u64>,
    types: BTreeMap<(String, &'static str), u64>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(prefix: &str, map: &serde_json::Map<String, Value>, counts: &mut Counts) {
    for (key, value) in map {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        *counts.present.entry(path.clone()).or_insert(0) += 1;
        *counts.types.entry((path.clone(), type_name(value))).or_insert(0) += 1;
        if let Value::Object(inner) = value {
            walk(&path, inner, counts);
        }
    }
}

fn independent(records: &[Record]) -> Counts {
    let mut counts = Counts::default();
    for r in records {
        counts.records += 1;
        let Some(value) = &r.value else {
            counts.tombstones += 1;
            continue;
        };
        match serde_json::from_slice::<Value>(value) {
            Ok(Value::Object(map)) => {
                counts.objects += 1;
                walk("", &map, &mut counts);
            }
            Ok(_) => counts.not_object += 1,
            Err(_) => counts.unparseable += 1,
        }
    }
    counts
}

/// Adds up the window profiles in `dir` and checks each window's HTML report.
fn profiled(dir: &Path) -> anyhow::Result<(Counts, usize)> {
    let mut counts = Counts::default();
    let mut windows = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix("profile-").and_then(|n| n.strip_suffix(".json")) else { continue };
        if stem.starts_with("hour-") {
            continue;
        }
        windows += 1;
        let profile = WindowProfile::from_json(&std::fs::read_to_string(dir.join(&name))?)?;
        let o = &profile.overview;
        counts.records += o.records;
        counts.objects += o.objects;
        counts.not_object += o.not_object;
        counts.unparseable += o.unparseable;
        counts.tombstones += o.tombstones;
        for (field, s) in &profile.summary {
            *counts.present.entry(field.clone()).or_insert(0) += s.present;
            for (t, n) in &s.types {
                let t: &'static str = ["string", "integer", "float", "bool", "object", "array", "null"].into_iter().find(|k| k == t).context("a known type")?;
                *counts.types.entry((field.clone(), t)).or_insert(0) += n;
            }
        }
        let html = std::fs::read_to_string(dir.join(format!("profile-{stem}.html"))).context("the window's HTML report")?;
        for field in profile.summary.keys() {
            let escaped = field.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            assert!(html.contains(&format!("<code>{escaped}</code>")), "{name}: the report does not show {field}");
        }
        assert!(!html.contains("<script") && !html.contains("x<y"), "{name}: unescaped data in the report");
    }
    Ok((counts, windows))
}

fn check(dir: &Path, input: &[Record]) -> anyhow::Result<()> {
    let expected = independent(input);
    let (got, windows) = profiled(dir)?;
    assert!(windows >= 1, "no window profile in {}", dir.display());
    assert_eq!(got, expected, "the window profiles do not add up to the records produced");
    assert!(expected.present.contains_key("x<y") && expected.present.contains_key("context.user.login"));
    let index = std::fs::read_to_string(dir.join("index.html")).context("index.html")?;
    assert!(index.contains("profile-"), "the index lists no report");
    Ok(())
}

#[test]
fn real_broker_profiles_of_two_workers_add_up_to_the_records_produced() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output) = (unique_topic("profile-in"), unique_topic("profile-out"));
    create_topics(&brokers, &[&input, &output], PARTITIONS)?;
    let records = records(6_000);
    produce(&brokers, &input, &records)?;

    let dir = tempfile::tempdir()?;
    let profiles = dir.path().join("profiles");
    // No observation budget: the profiles are checked against every record.
    let config = dir.path().join("job.toml");
    std::fs::write(&config, "[observe]\nbudget = 0\n")?;
    let status = std::process::Command::new(tidewatch_bin()?)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--brokers", &brokers, "--input", &input, "--output", &output, "--group", &unique_topic("profile-group")])
        .args(["--until-end", "--start-from", "earliest", "--epoch", "200ms", "--window", "1s", "--metrics-addr", "", "-w", "2", "--out"])
        .arg(dir.path().join("out"))
        .arg("--profiles")
        .arg(&profiles)
        .status()?;
    assert!(status.success(), "tidewatch run exited with {status}");
    check(&profiles, &records)
}

#[test]
fn real_broker_profiles_of_two_processes_add_up_to_the_records_produced() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output) = (unique_topic("profile2-in"), unique_topic("profile2-out"));
    create_topics(&brokers, &[&input, &output], PARTITIONS)?;
    let records = records(4_000);
    produce(&brokers, &input, &records)?;

    let dir = tempfile::tempdir()?;
    let profiles = dir.path().join("profiles");
    // The [profile] table, with windows short enough for several per run; no observation
    // budget, as the profiles are checked against every record.
    let config = dir.path().join("job.toml");
    std::fs::write(
        &config,
        format!("[observe]\nbudget = 0\n\n[profile]\nenabled = true\ndir = {:?}\nwindow = \"400ms\"\ntop_k = 5\n", profiles.display().to_string()),
    )?;
    let group = unique_topic("profile2-group");
    let config_path = config.display().to_string();
    run_processes(
        dir.path(),
        2,
        2,
        &[
            "--config",
            &config_path,
            "--brokers",
            &brokers,
            "--input",
            &input,
            "--output",
            &output,
            "--group",
            &group,
            "--until-end",
            "--start-from",
            "earliest",
            "--epoch",
            "200ms",
        ],
    )?;
    check(&profiles, &records)
}

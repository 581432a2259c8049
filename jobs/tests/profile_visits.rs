//! Profiles of generated visits (with faults) against an independent computation over
//! the same records, merges in any order and grouping, and the single-threaded speed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use serde_json::Value;
use tidewatch_jobs::visits::{FaultMix, GeneratorConfig, VisitGenerator};
use tidewatch_operators::profile::{
    FieldProfile, PartialProfile, ProfileBuilder, ProfileConfig, ValueType, WindowProfile, DISTINCT_STANDARD_ERROR, QUANTILE_RELATIVE_ERROR,
};

/// Generated visits with every fault, plus records the generator does not make:
/// tombstones, JSON that is not an object, mixed types, arrays, escapes, deep nesting.
fn corpus(n: usize, seed: u64) -> Vec<Option<Vec<u8>>> {
    let config = GeneratorConfig { seed, faults: FaultMix::uniform(0.04), ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::new(config);
    let mut records: Vec<Option<Vec<u8>>> = (0..n).map(|_| generator.next_record().value).collect();
    let extra: [&[u8]; 12] = [
        br#"[1,2,3]"#,
        br#""just a string""#,
        br#"42"#,
        br#"{"page":7,"tags":["a","b"],"score":1.5,"flag":true}"#,
        br#"{"page":"h\u00e9llo \"quoted\"","tags":[],"score":-2,"flag":false,"meta":{}}"#,
        br#"{"page":null,"score":18446744073709551615,"nested":{"a":{"b":{"c":"deep"}}}}"#,
        br#"{"score":1e12,"when":"2024-05-01T10:00:00+02:00"}"#,
        br#"{"when":"not a time","x.y":1}"#,
        b"{\"page\":\"\xff\"}",
        b"{truncated",
        br#"{}"#,
        br#"{"<b>html</b>":"<script>alert(1)</script>"}"#,
    ];
    for (i, value) in extra.iter().enumerate() {
        records.insert((i * 997) % records.len().max(1), Some(value.to_vec()));
    }
    records.insert(records.len() / 2, None);
    records.insert(records.len() / 3, None);
    records
}

/// What the independent walk finds for one field.
#[derive(Debug, Default)]
struct Exact {
    present: u64,
    types: BTreeMap<&'static str, u64>,
    empty_string: u64,
    empty_array: u64,
    empty_object: u64,
    numbers: Vec<f64>,
    lengths: Vec<u64>,
    times: Vec<i64>,
    values: HashMap<(String, String), u64>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct ExactOverview {
    records: u64,
    objects: u64,
    not_object: u64,
    unparseable: u64,
    tombstones: u64,
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

fn walk(prefix: &str, map: &serde_json::Map<String, Value>, fields: &mut BTreeMap<String, Exact>) {
    for (key, value) in map {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        let exact = fields.entry(path.clone()).or_default();
        exact.present += 1;
        *exact.types.entry(type_name(value)).or_insert(0) += 1;
        match value {
            Value::String(s) => {
                if s.is_empty() {
                    exact.empty_string += 1;
                }
                exact.lengths.push(s.chars().count() as u64);
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                    exact.times.push(t.timestamp_millis());
                }
                *exact.values.entry(("string".into(), s.clone())).or_insert(0) += 1;
            }
            Value::Number(n) => {
                exact.numbers.push(n.as_f64().unwrap_or(f64::NAN));
                *exact.values.entry((type_name(value).into(), n.to_string())).or_insert(0) += 1;
            }
            Value::Bool(b) => *exact.values.entry(("bool".into(), b.to_string())).or_insert(0) += 1,
            Value::Array(a) if a.is_empty() => exact.empty_array += 1,
            Value::Object(o) => {
                if o.is_empty() {
                    exact.empty_object += 1;
                }
                walk(&path, o, fields);
            }
            _ => {}
        }
    }
}

fn independent(records: &[Option<Vec<u8>>]) -> (ExactOverview, BTreeMap<String, Exact>) {
    let mut overview = ExactOverview::default();
    let mut fields = BTreeMap::new();
    for record in records {
        overview.records += 1;
        let Some(bytes) = record else {
            overview.tombstones += 1;
            continue;
        };
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => {
                overview.objects += 1;
                walk("", &map, &mut fields);
            }
            Ok(_) => overview.not_object += 1,
            Err(_) => overview.unparseable += 1,
        }
    }
    (overview, fields)
}

fn profile(records: &[Option<Vec<u8>>], config: &ProfileConfig) -> PartialProfile {
    let mut builder = ProfileBuilder::new(config);
    for r in records {
        builder.observe(r.as_deref());
    }
    builder.finish()
}

fn close(a: f64, b: f64, relative: f64) -> bool {
    (a - b).abs() <= relative * a.abs().max(b.abs()) + 1e-12
}

/// Checks the sketches of `field` against the exact values, within their stated errors.
fn check_sketches(name: &str, field: &FieldProfile, exact: &Exact) {
    let truth = exact.values.len() as f64;
    let estimate = field.distinct.estimate();
    // 4 standard errors; tiny sets are counted nearly exactly by the sparse representation.
    assert!((estimate - truth).abs() <= (4.0 * DISTINCT_STANDARD_ERROR * truth).max(1.0), "{name}: distinct {estimate} vs {truth}");

    let mut sorted = exact.numbers.clone();
    sorted.sort_by(f64::total_cmp);
    if let Some(q) = &field.quantiles {
        for p in [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99] {
            let rank = (p * (sorted.len() as f64 - 1.0)).floor() as usize;
            let want = sorted[rank];
            let got = q.quantile(p).expect("numbers present");
            assert!((got - want).abs() <= QUANTILE_RELATIVE_ERROR * want.abs() + 1e-9, "{name} p{p}: {got} vs {want}");
        }
    } else {
        assert!(sorted.is_empty(), "{name}: numbers without quantiles");
    }

    let bound = field.frequent.error_bound();
    for counter in field.frequent.top(10) {
        let key = (counter.value_type.name().to_owned(), counter.value.clone());
        let truth = match counter.value_type {
            // Numbers are compared by value: the profile writes floats as Rust does.
            ValueType::Float => {
                exact.values.iter().filter(|((t, v), _)| t == "float" && v.parse::<f64>().ok() == counter.value.parse::<f64>().ok()).map(|(_, n)| *n).sum()
            }
            _ => exact.values.get(&key).copied().unwrap_or(0),
        };
        assert!(counter.count <= truth && truth <= counter.count + bound, "{name}: {:?} counted {} of {truth} (bound {bound})", counter.value, counter.count);
    }
    if bound == 0 {
        assert_eq!(field.frequent.len(), exact.values.len(), "{name}: an exact summary holds every value");
    }
}

#[test]
fn exact_statistics_equal_an_independent_walk_of_generated_visits() {
    let records = corpus(20_000, 11);
    let config = ProfileConfig::default();
    let partial = profile(&records, &config);
    let (overview, fields) = independent(&records);
    let o = &partial.overview;
    assert_eq!(
        ExactOverview { records: o.records, objects: o.objects, not_object: o.not_object, unparseable: o.unparseable, tombstones: o.tombstones },
        overview
    );
    assert!(o.unparseable > 100 && o.tombstones == 2 && o.not_object == 3, "{o:?}");
    assert_eq!(partial.fields.keys().collect::<Vec<_>>(), fields.keys().collect::<Vec<_>>(), "every field seen, nested paths flattened");
    let window = WindowProfile::new(0, 60_000, partial.clone(), &config);
    let rows = overview.objects + overview.not_object;
    for (name, exact) in &fields {
        let field = &partial.fields[name];
        let summary = &window.summary[name];
        assert_eq!(field.present, exact.present, "{name}: present");
        assert_eq!(summary.missing, rows - exact.present, "{name}: missing");
        assert_eq!(summary.null, exact.types.get("null").copied().unwrap_or(0), "{name}: null");
        for t in ValueType::ALL {
            assert_eq!(field.types.get(t), exact.types.get(t.name()).copied().unwrap_or(0), "{name}: type {}", t.name());
        }
        assert_eq!((field.empty_string, field.empty_array, field.empty_object), (exact.empty_string, exact.empty_array, exact.empty_object), "{name}: empties");
        assert_eq!(field.numeric.count, exact.numbers.len() as u64, "{name}: numbers");
        if !exact.numbers.is_empty() {
            let min = exact.numbers.iter().copied().fold(f64::INFINITY, f64::min);
            let max = exact.numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = exact.numbers.iter().sum::<f64>() / exact.numbers.len() as f64;
            assert_eq!((field.numeric.min, field.numeric.max), (min, max), "{name}: min/max");
            assert!(close(field.numeric.mean, mean, 1e-9), "{name}: mean {} vs {mean}", field.numeric.mean);
            if exact.numbers.len() > 1 {
                let var = exact.numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (exact.numbers.len() as f64 - 1.0);
                assert!(close(summary.stddev.expect("stddev"), var.sqrt(), 1e-6), "{name}: stddev");
            }
        }
        assert_eq!(field.lengths.count, exact.lengths.len() as u64, "{name}: strings");
        if !exact.lengths.is_empty() {
            assert_eq!(field.lengths.min, *exact.lengths.iter().min().expect("some"), "{name}: shortest");
            assert_eq!(field.lengths.max, *exact.lengths.iter().max().expect("some"), "{name}: longest");
            assert_eq!(field.lengths.sum, exact.lengths.iter().sum::<u64>(), "{name}: length sum");
        }
        match field.timestamps {
            Some(t) => {
                assert_eq!(t.count, exact.times.len() as u64, "{name}: timestamps");
                assert_eq!((t.min_ms, t.max_ms), (*exact.times.iter().min().expect("some"), *exact.times.iter().max().expect("some")), "{name}: time range");
            }
            None => assert!(exact.times.is_empty(), "{name}: timestamps missed"),
        }
        check_sketches(name, field, exact);
    }
    // The fields of the reference shape are all there, nested ones flattened.
    for name in ["visit_id", "event_time", "user_id", "page", "context.user.login", "context.technical.browser", "tags", "nested.a.b.c", "x.y"] {
        assert!(window.summary.contains_key(name), "{name} missing from {:?}", window.summary.keys().collect::<Vec<_>>());
    }
    assert!(window.summary["event_time"].time_min.is_some());
    assert_eq!(window.summary["tags"].types.get("array"), Some(&2), "arrays are counted, not exploded");
}

/// Exact parts of two profiles are equal; sketches agree within their errors.
fn assert_equivalent(a: &PartialProfile, b: &PartialProfile, exact: &BTreeMap<String, Exact>) {
    assert_eq!(a.overview, b.overview);
    assert_eq!(a.fields.keys().collect::<Vec<_>>(), b.fields.keys().collect::<Vec<_>>());
    for (name, x) in &a.fields {
        let y = &b.fields[name];
        assert_eq!(
            (x.present, x.types, x.empty_string, x.empty_array, x.empty_object),
            (y.present, y.types, y.empty_string, y.empty_array, y.empty_object),
            "{name}"
        );
        assert_eq!(
            (x.numeric.count, x.numeric.min.to_bits(), x.numeric.max.to_bits()),
            (y.numeric.count, y.numeric.min.to_bits(), y.numeric.max.to_bits()),
            "{name}"
        );
        assert!(close(x.numeric.mean, y.numeric.mean, 1e-9) && close(x.numeric.m2, y.numeric.m2, 1e-6), "{name}: moments");
        assert_eq!(x.lengths, y.lengths, "{name}: lengths");
        assert_eq!(x.timestamps, y.timestamps, "{name}: timestamps");
        assert_eq!(x.quantiles.as_ref().map(|q| q.count()), y.quantiles.as_ref().map(|q| q.count()), "{name}: quantile count");
        if let (Some(qx), Some(qy)) = (&x.quantiles, &y.quantiles) {
            for p in [0.01, 0.25, 0.5, 0.75, 0.99] {
                // DDSketch merges by adding bucket counts: merged sketches are identical.
                assert_eq!(qx.quantile(p), qy.quantile(p), "{name} p{p}");
            }
        }
        let (dx, dy) = (x.distinct.estimate(), y.distinct.estimate());
        assert!((dx - dy).abs() <= (4.0 * DISTINCT_STANDARD_ERROR * dx).max(1.0), "{name}: distinct {dx} vs {dy}");
        if x.frequent.error_bound() == 0 && y.frequent.error_bound() == 0 {
            assert_eq!(x.frequent.sorted(), y.frequent.sorted(), "{name}: exact frequent values");
        }
        check_sketches(name, y, &exact[name]);
    }
}

#[test]
fn merging_partial_profiles_in_any_order_and_grouping_equals_one_pass() {
    let records = corpus(12_000, 5);
    let config = ProfileConfig::default();
    let whole = profile(&records, &config);
    let (_, exact) = independent(&records);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for parts in [2usize, 3, 7, 16] {
        let mut shuffled = records.clone();
        shuffled.shuffle(&mut rng);
        let chunk = shuffled.len().div_ceil(parts);
        let mut partials: Vec<PartialProfile> = shuffled.chunks(chunk).map(|c| profile(c, &config)).collect();
        // Linear, in a shuffled order.
        partials.shuffle(&mut rng);
        let mut linear = PartialProfile::default();
        for p in &partials {
            linear.merge(p);
        }
        assert_equivalent(&whole, &linear, &exact);
        // A tree: pairs, then pairs of pairs.
        let mut level = partials.clone();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| {
                    let mut merged = pair[0].clone();
                    if let Some(right) = pair.get(1) {
                        merged.merge(right);
                    }
                    merged
                })
                .collect();
        }
        assert_equivalent(&whole, &level[0], &exact);
        // Through JSON, as files and other processes hand them over.
        let from_json: Vec<PartialProfile> = partials.iter().map(|p| serde_json::from_str(&serde_json::to_string(p).expect("json")).expect("parses")).collect();
        let mut reread = PartialProfile::default();
        for p in from_json.iter().rev() {
            reread.merge(p);
        }
        assert_equivalent(&whole, &reread, &exact);
    }
}

#[test]
fn an_hour_is_the_merge_of_its_minutes_without_rescanning() {
    let records = corpus(6_000, 9);
    let config = ProfileConfig::default();
    let minutes: Vec<WindowProfile> = records
        .chunks(1_000)
        .enumerate()
        .map(|(i, chunk)| WindowProfile::new(i as u64 * 60_000, (i as u64 + 1) * 60_000, profile(chunk, &config), &config))
        .collect();
    let mut hour = WindowProfile::from_json(&minutes[0].to_json().expect("json")).expect("reads");
    for minute in &minutes[1..] {
        hour.merge(&WindowProfile::from_json(&minute.to_json().expect("json")).expect("reads"));
    }
    let end = minutes.len() as u64 * 60_000;
    let one_pass = WindowProfile::new(0, end, profile(&records, &config), &config);
    assert_eq!((hour.window_start_ms, hour.window_end_ms), (0, end));
    assert_eq!(hour.overview, one_pass.overview);
    for (name, s) in &one_pass.summary {
        let h = &hour.summary[name];
        assert_eq!(
            (h.present, h.count, h.missing, h.null, h.empty, h.numeric_count, h.min, h.max),
            (s.present, s.count, s.missing, s.null, s.empty, s.numeric_count, s.min, s.max),
            "{name}"
        );
        assert_eq!(h.quantiles.map(|q| q.p50), s.quantiles.map(|q| q.p50), "{name}");
        assert_eq!((&h.time_min, &h.time_max), (&s.time_min, &s.time_max), "{name}");
    }
}

#[test]
fn every_field_of_the_reference_shape_is_profiled_under_its_dotted_path() {
    let mut generator = VisitGenerator::new(GeneratorConfig { faults: FaultMix::none(), ..GeneratorConfig::default() });
    let records: Vec<Option<Vec<u8>>> = (0..1_000).map(|_| generator.next_record().value).collect();
    let partial = profile(&records, &ProfileConfig::default());
    let names: Vec<&str> = partial.fields.keys().map(String::as_str).collect();
    let mut expected = vec![
        "context",
        "context.ad_id",
        "context.referral",
        "context.technical",
        "context.technical.browser",
        "context.technical.browser_version",
        "context.technical.device_type",
        "context.technical.device_version",
        "context.technical.network_type",
        "context.user",
        "context.user.connected_since",
        "context.user.ip",
        "context.user.login",
        "event_time",
        "keep_private",
        "page",
        "user_id",
        "visit_id",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(partial.fields["context"].types.object, 1_000);
    assert!(partial.fields["event_time"].timestamps.is_some_and(|t| t.count == 1_000));
}

/// `cargo test --release -p tidewatch-jobs --test profile_visits -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run in release"]
#[allow(clippy::print_stdout)] // the measurement is this test's output
fn profile_time_of_100_000_visits_single_threaded() {
    let config = GeneratorConfig { seed: 1, ..GeneratorConfig::default() };
    let mut generator = VisitGenerator::new(config);
    let records: Vec<Vec<u8>> = (0..100_000).filter_map(|_| generator.next_record().value).collect();
    let bytes: usize = records.iter().map(Vec::len).sum();
    let profile_config = ProfileConfig::default();
    let mut times = Vec::new();
    let mut cpu_times = Vec::new();
    let mut fields = 0;
    for _ in 0..9 {
        let started = Instant::now();
        let cpu_started = thread_cpu_ns();
        let mut builder = ProfileBuilder::new(&profile_config);
        for r in &records {
            builder.observe(Some(r));
        }
        let partial = builder.finish();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if let (Some(a), Some(b)) = (cpu_started, thread_cpu_ns()) {
            cpu_times.push((b - a) as f64 / 1e6);
        }
        fields = partial.fields.len();
    }
    cpu_times.sort_by(f64::total_cmp);
    let started = Instant::now();
    let mut builder = ProfileBuilder::new(&profile_config);
    for r in &records {
        builder.observe(Some(r));
    }
    let window = WindowProfile::new(0, 60_000, builder.finish(), &profile_config);
    let html = tidewatch_operators::profile::render_html(&window);
    let json = window.to_json().expect("json");
    let total = started.elapsed().as_secs_f64() * 1000.0;
    times.sort_by(f64::total_cmp);
    let unique: HashSet<usize> = records.iter().map(Vec::len).collect();
    println!(
        "profile of {} visits ({} bytes, {} distinct sizes, {fields} fields): median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs \
         (on-CPU time of the thread: median {:.1} ms); with summary, HTML ({} bytes) and JSON ({} bytes): {total:.1} ms",
        records.len(),
        bytes,
        unique.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len(),
        cpu_times.get(cpu_times.len() / 2).copied().unwrap_or(f64::NAN),
        html.len(),
        json.len()
    );
}

/// Time this thread spent on a CPU, in ns (Linux `schedstat`): unlike wall time, it does
/// not count waiting for a CPU on a busy machine.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

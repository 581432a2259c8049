//! Unit tests of the profile: drift, alerts, malformed records, bounds, the report.

use super::*;

fn window(start_ms: u64, values: &[&[u8]]) -> WindowProfile {
    let config = ProfileConfig::default();
    let mut builder = ProfileBuilder::new(&config);
    for v in values {
        builder.observe(Some(v));
    }
    WindowProfile::new(start_ms, start_ms + 1_000, builder.finish(), &config)
}

fn kinds(profile: &WindowProfile, field: &str) -> Vec<ProfileAlertKind> {
    profile.alerts.iter().filter(|a| a.field == field).map(|a| a.kind).collect()
}

#[test]
fn drift_tells_appeared_vanished_and_changed_type() {
    let before = window(0, &[br#"{"a":1,"b":"x","c":{"d":true}}"#, br#"{"a":2,"b":"y","c":{"d":false}}"#]);
    let mut after = window(1_000, &[br#"{"a":"one","c":{"d":true},"e":null}"#, br#"{"a":"two","a2":3,"c":{"d":1.5}}"#, br#"{"a":3}"#]);
    after.set_drift(Some(&before));
    let drift: Vec<(&str, DriftKind, Option<ValueType>, Option<ValueType>)> = after.drift.iter().map(|d| (d.field.as_str(), d.kind, d.from, d.to)).collect();
    assert_eq!(
        drift,
        [
            ("a", DriftKind::TypeChanged, Some(ValueType::Integer), Some(ValueType::String)),
            ("a2", DriftKind::Appeared, None, Some(ValueType::Integer)),
            ("b", DriftKind::Vanished, Some(ValueType::String), None),
            ("c.d", DriftKind::TypeChanged, Some(ValueType::Bool), Some(ValueType::Float)),
            ("e", DriftKind::Appeared, None, Some(ValueType::Null)),
        ]
    );
    let mut same = window(2_000, &[br#"{"a":"three","c":{"d":2.5},"e":null,"a2":1}"#]);
    same.set_drift(Some(&after));
    assert!(same.drift.is_empty(), "{:?}", same.drift);
    // A merge covers several windows: no drift of its own.
    after.merge(&same);
    assert!(after.drift.is_empty());
}

#[test]
fn drift_in_the_dataflow_is_against_the_previous_window() {
    use crate::profile::dataflow::ProfileWindows;
    use tidewatch_engine::Record;
    use timely::dataflow::operators::capture::{Capture, Event};
    use timely::dataflow::operators::Input;

    let record = |v: &[u8]| Record { partition: 0, offset: 0, timestamp: None, key: None, value: Some(v.into()), headers: vec![] };
    let captured = timely::execute_directly(move |worker| {
        let (mut input, captured) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<Record>>();
            (input, stream.profile_windows(std::sync::Arc::new(ProfileConfig::default()), 1_000).capture())
        });
        input.send(record(br#"{"a":1}"#));
        input.advance_to(1_500);
        input.send(record(br#"{"a":"x","b":2}"#));
        input.close();
        captured
    });
    let profiles: Vec<WindowProfile> = captured.try_iter().flat_map(|event| if let Event::Messages(_, data) = event { data } else { Vec::new() }).collect();
    assert_eq!(profiles.iter().map(|p| p.window_start_ms).collect::<Vec<_>>(), [0, 1_000]);
    assert!(profiles[0].drift.is_empty());
    let drift: Vec<(&str, DriftKind)> = profiles[1].drift.iter().map(|d| (d.field.as_str(), d.kind)).collect();
    assert_eq!(drift, [("a", DriftKind::TypeChanged), ("b", DriftKind::Appeared)]);
}

#[test]
fn records_that_are_not_objects_or_not_json_are_counted_never_dropped() {
    let config = ProfileConfig::default();
    let mut builder = ProfileBuilder::new(&config);
    for value in [&br#"[1]"#[..], b"3", b"\"s\"", b"null", b"{\"a\":", b"{\"a\":1} x", b"{\"a\":\"\xff\"}", b"", br#"{"a":1}"#, br#"{"a":"#] {
        builder.observe(Some(value));
    }
    builder.observe(None);
    let p = builder.finish();
    assert_eq!((p.overview.records, p.overview.objects, p.overview.not_object, p.overview.unparseable, p.overview.tombstones), (11, 1, 4, 5, 1));
    // A record that fails half-way leaves nothing in the fields.
    assert_eq!(p.fields["a"].present, 1);
    assert_eq!(p.fields["a"].types.integer, 1);
}

#[test]
fn max_fields_bounds_a_wild_schema() {
    let config = ProfileConfig { max_fields: 3, ..ProfileConfig::default() };
    let mut builder = ProfileBuilder::new(&config);
    for i in 0..100 {
        builder.observe(Some(format!(r#"{{"a":1,"k{i}":{i}}}"#).as_bytes()));
    }
    let p = builder.finish();
    assert_eq!(p.fields.len(), 3);
    assert_eq!(p.overview.dropped_values, 98);
}

#[test]
fn deep_objects_are_counted_without_recursing_too_far() {
    let deep = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    let p = window(0, &[deep.as_bytes()]);
    assert_eq!(p.overview.objects, 1);
    assert_eq!(p.overview.too_deep, 1);
    assert_eq!(p.summary.len(), MAX_DEPTH as usize);
}

#[test]
fn wide_objects_find_their_keys() {
    let wide: String = format!("{{{}}}", (0..200).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(","));
    let reversed: String = format!("{{{}}}", (0..200).rev().map(|i| format!("\"k{i}\":\"{i}\"")).collect::<Vec<_>>().join(","));
    let p = window(0, &[wide.as_bytes(), reversed.as_bytes(), wide.as_bytes()]);
    assert_eq!(p.summary.len(), 200);
    assert!(p.summary.values().all(|s| s.present == 3 && s.types["integer"] == 2 && s.types["string"] == 1));
}

#[test]
fn alerts_in_the_manner_of_ydata_profiling() {
    let mut values: Vec<Vec<u8>> = Vec::new();
    for i in 0..500 {
        let page = if i % 50 == 0 { "rare" } else { "home" };
        let skewed = if i == 0 { 1_000_000 } else { 1 };
        let mixed = if i % 2 == 0 { "\"s\"".to_owned() } else { i.to_string() };
        let gone = if i % 4 == 0 { "\"x\",\"sometimes\":1".to_owned() } else { "\"x\"".to_owned() };
        values.push(
            format!(r#"{{"id":{i},"constant":"same","page":"{page}","skewed":{skewed},"mixed":{mixed},"empty":"","g":{gone},"card":"v{}"}}"#, i % 90)
                .into_bytes(),
        );
    }
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let p = window(0, &refs);
    assert_eq!(kinds(&p, "id"), [ProfileAlertKind::Unique]);
    assert_eq!(kinds(&p, "constant"), [ProfileAlertKind::Constant]);
    assert_eq!(kinds(&p, "page"), [ProfileAlertKind::Imbalance]);
    assert!(kinds(&p, "skewed").contains(&ProfileAlertKind::Skewed));
    assert!(kinds(&p, "mixed").contains(&ProfileAlertKind::MixedTypes));
    assert_eq!(kinds(&p, "empty"), [ProfileAlertKind::Empty]);
    assert_eq!(kinds(&p, "sometimes"), [ProfileAlertKind::Missing, ProfileAlertKind::Constant]);
    assert_eq!(kinds(&p, "card"), [ProfileAlertKind::HighCardinality]);
}

#[test]
fn the_report_is_self_contained_and_escapes_untrusted_data() {
    let p = window(
        0,
        &[
            br#"{"<img src=x onerror=alert(1)>":"</style><script>alert(2)</script>","n":1.5,"t":"2024-01-01T00:00:00Z","a&b":"'\""}"#,
            br#"{"n":-3,"t":"2024-01-02T00:00:00Z","a&b":"<b>"}"#,
        ],
    );
    let html = render_html(&p);
    for bad in ["<script", "<img", "</style><script", "http://", "https://", "<link", "@import", "url("] {
        assert!(!html.contains(bad), "{bad} in the report");
    }
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("a&amp;b"));
    assert!(html.contains("<svg"), "inline SVG charts");
    assert!(html.contains("2024-01-02T00:00:00.000Z"), "timestamp range");
    assert_eq!(html.matches("<section class=\"card field\"").count(), p.summary.len());
}

#[test]
fn json_round_trips_and_summaries_are_derived_again() {
    let p = window(0, &[br#"{"a":1,"b":"x"}"#, br#"{"a":2}"#]);
    let back = WindowProfile::from_json(&p.to_json().expect("json")).expect("parses");
    assert_eq!(back.summary, p.summary);
    assert_eq!(back.overview, p.overview);
    assert_eq!(back.summary["b"].missing, 1);
    assert_eq!(p.file_stem(), "profile-19700101T000000Z");
}

#[test]
fn the_profile_table_rejects_unknown_keys() {
    let err = toml::from_str::<ProfileConfig>("enabled = true\nwindows = \"1m\"\n").expect_err("unknown key");
    assert!(err.to_string().contains("windows"), "{err}");
    let ok: ProfileConfig = toml::from_str("enabled = true\nwindow = \"5m\"\nmax_fields = 10\n").expect("parses");
    assert_eq!((ok.window, ok.max_fields, ok.top_k), (Duration::from_secs(300), 10, 10));
}

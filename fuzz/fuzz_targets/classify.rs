//! Fuzzes `FieldSet::classify` with arbitrary bytes, for several sets of watched paths
//! (top-level and nested), and checks its invariants:
//!
//! - the kinds vector always has one entry per watched field, whatever it held before;
//! - `Tombstone` exactly for a null value, with every field `Missing`;
//! - for `Unparseable` and `NotObject`, every field is `Missing`;
//! - bytes that are not UTF-8 are always `Unparseable`;
//! - classifying twice gives the same answer;
//! - every set of watched paths, and the profile (which reads every field), see the same
//!   kind of record: whether a record parses does not depend on what is read of it;
//! - when `serde_json` parses the bytes into a `Value`, an object must classify as
//!   `Object` (and anything else as `NotObject`), and every top-level watched field must
//!   read as an independent look at the `Value` says.
//!
//!
//! The same bytes then go through the observe path as a record value: the value-rules
//! observer (one rule of each kind: regex, allowed set, numeric range, freshness, on
//! top-level and nested fields) and the copy-reconciliation observer, run through the
//! custom-observer dataflow (`run_observer`). Invariants: no panic; per rule, `checked` is
//! 1 exactly when the field is present and not null (as serde_json's own tree has it),
//! violations never exceed it, and each rule's verdict agrees with an independent check
//! of the regex, allowed and range rules; reconciliation counts a record read twice as
//! consumed 2, repeated 1, no gap.
//!
//! Built by `cargo fuzz` (feature `libfuzzer`, the default) it is a libFuzzer target.
//! Built with `--no-default-features` it is a plain binary that runs the same checks over a
//! seeded pseudo-random corpus: `classify [SECONDS] [SEED]` (see `fuzz/run.sh`); it stops at the
//! first broken invariant and writes that input to `$FUZZ_ARTIFACTS` (default: the current directory).

#![cfg_attr(feature = "libfuzzer", no_main)]

use std::sync::OnceLock;

use serde_json::Value;
use tidewatch_engine::Record;
use tidewatch_operators::classify::{FieldKind, FieldSet, RecordKind};
use tidewatch_operators::custom::run_observer;
use tidewatch_operators::profile::{ProfileBuilder, ProfileConfig};
use tidewatch_operators::reconcile::Reconcile;
use tidewatch_operators::value_rules::{ValueRule, ValueRules};

/// The watched path sets: the default fields, nested paths (a parent watched along with
/// its children), a single short name, and a deep path.
const PATH_SETS: [&[&str]; 4] = [
    &["event_time", "user_id", "page"],
    &["page", "context", "context.user.login", "context.referral", "a.b"],
    &["a"],
    &["a.b.c.d.e", "a.b", "x"],
];

fn field_sets() -> &'static [(&'static [&'static str], FieldSet)] {
    static SETS: OnceLock<Vec<(&'static [&'static str], FieldSet)>> = OnceLock::new();
    SETS.get_or_init(|| PATH_SETS.iter().map(|paths| (*paths, FieldSet::new(paths).expect("valid paths"))).collect())
}

/// How a value reads as a watched field, judged on the `Value` alone.
fn kind_of(value: &Value) -> FieldKind {
    match value {
        Value::Null => FieldKind::Null,
        Value::String(s) if s.is_empty() => FieldKind::EmptyString,
        Value::Array(a) if a.is_empty() => FieldKind::EmptyArray,
        Value::Object(o) if o.is_empty() => FieldKind::EmptyObject,
        _ => FieldKind::Present,
    }
}

/// The rules of the observe path: (name, field, how an independent check judges a
/// present value; `None` when it cannot be judged without the clock).
type Verdict = fn(&Value) -> Option<bool>;
const RULES: [(&str, &str, Verdict); 4] = [
    ("page", "page", |v| Some(v.as_str().is_some_and(|s| s == "home" || s.strip_prefix("page_").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))))),
    ("browser", "context.technical.browser", |v| {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => return Some(false),
        };
        Some(text == "Chrome" || text == "Firefox" || text == "1")
    }),
    ("version", "a.b", |v| {
        let n = v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse::<f64>().ok()));
        Some(n.is_some_and(|n| (0.0..=26.0).contains(&n)))
    }),
    ("fresh", "event_time", |_| None),
];

fn value_rules() -> &'static ValueRules {
    static RULES_OBSERVER: OnceLock<ValueRules> = OnceLock::new();
    RULES_OBSERVER.get_or_init(|| {
        let base = ValueRule { name: String::new(), field: String::new(), regex: None, allowed: None, min: None, max: None, max_age: None };
        let rules = [
            ValueRule { name: "page".into(), field: "page".into(), regex: Some("^(home|page_[0-9]+)$".into()), ..base.clone() },
            ValueRule {
                name: "browser".into(),
                field: "context.technical.browser".into(),
                allowed: Some(vec!["Chrome".into(), "Firefox".into(), "1".into()]),
                ..base.clone()
            },
            ValueRule { name: "version".into(), field: "a.b".into(), min: Some(0.0), max: Some(26.0), ..base.clone() },
            ValueRule { name: "fresh".into(), field: "event_time".into(), max_age: Some(std::time::Duration::from_secs(3600)), ..base },
        ];
        ValueRules::new(&rules).expect("valid rules")
    })
}

/// The observe path: value rules and reconciliation over `data` as a record's value.
pub fn check_observe(data: &[u8]) {
    let record = Record { partition: 1, offset: 41, timestamp: Some(0), key: None, value: Some(data.into()), headers: vec![] };
    let totals = run_observer(value_rules().clone(), vec![record.clone()]);
    // The oracle: serde_json's own tree. Where it has none but the parse read an object
    // (past serde_json's recursion limit, a number beyond f64 or a lone surrogate where
    // nobody reads it: JSON the streaming parse accepts), there is nothing to judge by.
    let tree = serde_json::from_slice::<Value>(data).ok();
    let kind = field_sets()[0].1.classify(Some(data), &mut Vec::new());
    for (name, field, verdict) in RULES {
        let checked = totals.get(&format!("value_rules.{name}_checked")).copied();
        let violations = totals.get(&format!("value_rules.{name}")).copied();
        assert!(violations.is_some_and(|v| (0..=1).contains(&v) && Some(v) <= checked), "rule {name}: {violations:?} violations");
        let Some(tree) = &tree else {
            if kind != RecordKind::Object {
                assert_eq!(checked, Some(0), "rule {name}: checked in a {kind:?} record");
            }
            continue;
        };
        let value = field.split('.').try_fold(tree, |v, key| v.get(key)).filter(|v| !v.is_null());
        assert_eq!(checked, Some(i64::from(value.is_some())), "rule {name}: checked for {}", String::from_utf8_lossy(data));
        if let Some(holds) = value.and_then(verdict) {
            assert_eq!(violations, Some(i64::from(!holds)), "rule {name} on {value:?} in {}", String::from_utf8_lossy(data));
        }
    }
    let mut again = record.clone();
    again.offset = 42;
    let totals = run_observer(Reconcile, vec![record.clone(), again, record]);
    let want = [("reconcile.consumed", 3), ("reconcile.offset_gaps", 0), ("reconcile.repeated_offsets", 1)];
    for (metric, n) in want {
        assert_eq!(totals.get(metric).copied(), Some(n), "{metric}");
    }
}

/// Checks every invariant for `data`; panics (with the offending input) on a violation.
pub fn check(data: &[u8]) {
    check_classify(data);
    check_observe(data);
}

/// The classifier's invariants.
fn check_classify(data: &[u8]) {
    let parsed = serde_json::from_slice::<Value>(data).ok();
    let utf8 = std::str::from_utf8(data).is_ok();
    // Whether a record parses does not depend on what is read of it: every watched set,
    // and the profile, which reads every field, see the same kind of record.
    let kinds: Vec<RecordKind> = field_sets().iter().map(|(_, set)| set.classify(Some(data), &mut Vec::new())).collect();
    let mut profile = ProfileBuilder::new(&ProfileConfig::default());
    profile.observe(Some(data));
    let overview = profile.finish().overview;
    let profiled = [(overview.objects, RecordKind::Object), (overview.not_object, RecordKind::NotObject), (overview.unparseable, RecordKind::Unparseable)];
    let profiled = profiled.iter().find(|(n, _)| *n == 1).map(|(_, k)| *k);
    assert!(kinds.iter().all(|k| Some(*k) == profiled), "kinds {kinds:?}, profile {profiled:?}: {}", String::from_utf8_lossy(data));
    for (paths, set) in field_sets() {
        let n = set.len();
        assert_eq!(n, paths.len());

        // Null value: a tombstone, every field missing, whatever the vector held before.
        let mut kinds = vec![FieldKind::EmptyObject; n + 3];
        assert_eq!(set.classify(None, &mut kinds), RecordKind::Tombstone);
        assert_eq!(kinds.len(), n);
        assert!(kinds.iter().all(|k| *k == FieldKind::Missing), "tombstone with kinds {kinds:?}");

        // Start from stale contents again (too short this time).
        kinds.clear();
        kinds.push(FieldKind::Null);
        let kind = set.classify(Some(data), &mut kinds);
        assert_eq!(kinds.len(), n, "kinds vector length for {paths:?}");
        assert_ne!(kind, RecordKind::Tombstone, "a value that is not null is never a tombstone: {data:?}");
        if matches!(kind, RecordKind::Unparseable | RecordKind::NotObject) {
            assert!(kinds.iter().all(|k| *k == FieldKind::Missing), "{kind:?} with kinds {kinds:?} for {paths:?}: {data:?}");
        }
        if !utf8 {
            assert_eq!(kind, RecordKind::Unparseable, "bytes that are not UTF-8 must be unparseable: {data:?}");
        }

        // Deterministic, and independent of the vector's previous contents.
        let mut again = vec![FieldKind::EmptyArray; n];
        assert_eq!(set.classify(Some(data), &mut again), kind, "second classification differs: {data:?}");
        assert_eq!(again, kinds, "second classification's kinds differ: {data:?}");

        // Agreement with serde_json's own parse where it has one.
        if let Some(value) = &parsed {
            let Value::Object(map) = value else {
                assert_eq!(kind, RecordKind::NotObject, "valid JSON that is not an object: {data:?}");
                continue;
            };
            assert_eq!(kind, RecordKind::Object, "a JSON object for {paths:?}: {}", String::from_utf8_lossy(data));
            for (index, path) in paths.iter().enumerate() {
                if path.contains('.') {
                    continue;
                }
                let want = map.get(*path).map_or(FieldKind::Missing, kind_of);
                assert_eq!(kinds[index], want, "field `{path}` of {}", String::from_utf8_lossy(data));
            }
        }
    }
}

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    fallback::main();
}

/// Without libFuzzer: the same checks over a seeded pseudo-random corpus of JSON-like inputs.
#[cfg(not(feature = "libfuzzer"))]
mod fallback {
    use std::time::{Duration, Instant};

    /// splitmix64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    const KEYS: &[&str] =
        &["event_time", "user_id", "page", "context", "user", "login", "referral", "a", "b", "c", "x", "", "p\\u0061ge", "Page", "\\u0000"];
    const NUMBERS: &[&str] = &["0", "-0", "1", "-1.5e10", "3.25", "1e400", "-1e400", "123456789012345678901234567890", "18446744073709551616", "1E-7"];
    const STRINGS: &[&[u8]] = &[
        b"x",
        b" ",
        b"null",
        b"\\u0000",
        b"\\\"",
        b"\\ud83d\\ude00",
        b"\\ud800",
        b"caf\xc3\xa9",
        b"caf\xe9",
        b"\xed\xa0\x80",
        b"\xc3\x28",
        b"\\n\\t",
    ];
    const SPACE: &[&[u8]] = &[b"", b"", b"", b" ", b"\n", b"\t\r "];
    /// Bytes worth inserting when mutating.
    const BYTES: &[u8] = b"{}[]\",:\\ 0nule\xff\xc3\x00\x80";

    fn space(rng: &mut Rng, out: &mut Vec<u8>) {
        out.extend_from_slice(rng.pick(SPACE));
    }

    fn string(rng: &mut Rng, out: &mut Vec<u8>) {
        out.push(b'"');
        if rng.below(3) > 0 {
            out.extend_from_slice(rng.pick(STRINGS));
        }
        out.push(b'"');
    }

    fn value(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        space(rng, out);
        match rng.below(if depth > 5 { 7 } else { 11 }) {
            0 => out.extend_from_slice(b"null"),
            1 => out.extend_from_slice(b"\"\""),
            2 => out.extend_from_slice(b"[]"),
            3 => out.extend_from_slice(b"{}"),
            4 => out.extend_from_slice(rng.pick(NUMBERS).as_bytes()),
            5 => string(rng, out),
            6 => out.extend_from_slice(if rng.below(2) == 0 { b"true" } else { b"false" }),
            7 => {
                out.push(b'[');
                for i in 0..1 + rng.below(3) {
                    if i > 0 {
                        out.push(b',');
                    }
                    value(rng, depth + 1, out);
                }
                out.push(b']');
            }
            8 => deep(rng, out),
            _ => object(rng, depth, out),
        }
        space(rng, out);
    }

    fn object(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        for i in 0..rng.below(6) {
            if i > 0 {
                out.push(b',');
            }
            space(rng, out);
            out.push(b'"');
            out.extend_from_slice(rng.pick(KEYS).as_bytes());
            out.push(b'"');
            space(rng, out);
            out.push(b':');
            value(rng, depth + 1, out);
        }
        out.push(b'}');
    }

    /// Arrays or objects nested hundreds to thousands of levels deep.
    fn deep(rng: &mut Rng, out: &mut Vec<u8>) {
        let levels = 100 + rng.below(5_000);
        if rng.below(2) == 0 {
            out.extend(std::iter::repeat_n(b'[', levels));
            out.extend(std::iter::repeat_n(b']', levels));
        } else {
            let key = rng.pick(KEYS).as_bytes();
            for _ in 0..levels {
                out.extend_from_slice(b"{\"");
                out.extend_from_slice(key);
                out.extend_from_slice(b"\":");
            }
            out.push(b'1');
            out.extend(std::iter::repeat_n(b'}', levels));
        }
    }

    fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
        for _ in 0..1 + rng.below(3) {
            let at = if data.is_empty() { 0 } else { rng.below(data.len()) };
            match rng.below(5) {
                0 if !data.is_empty() => data[at] = rng.next() as u8,
                1 if !data.is_empty() => {
                    data.remove(at);
                }
                2 => data.insert(at, rng.pick(BYTES)),
                3 => data.truncate(at),
                _ if !data.is_empty() => {
                    let end = at + rng.below(data.len() - at + 1).min(64);
                    let copy = data[at..end].to_vec();
                    let to = rng.below(data.len() + 1);
                    data.splice(to..to, copy);
                }
                _ => {}
            }
        }
    }

    fn input(rng: &mut Rng) -> Vec<u8> {
        let mut data = Vec::new();
        match rng.below(10) {
            0 => value(rng, 0, &mut data),
            1 => (0..rng.below(64)).for_each(|_| data.push(rng.next() as u8)),
            _ => object(rng, 0, &mut data),
        }
        if rng.below(3) == 0 {
            mutate(rng, &mut data);
        }
        data
    }

    pub(crate) fn main() {
        let mut args = std::env::args().skip(1);
        let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
        let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
        let mut rng = Rng(seed);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let (mut runs, mut bytes) = (0u64, 0u64);
        while Instant::now() < deadline {
            for _ in 0..64 {
                let data = input(&mut rng);
                if std::panic::catch_unwind(|| super::check(&data)).is_err() {
                    // Beside libFuzzer's artifacts when run.sh says where they go.
                    let dir = std::env::var_os("FUZZ_ARTIFACTS").map_or_else(std::path::PathBuf::new, Into::into);
                    let file = dir.join(format!("crash-fallback-seed{seed}-input{runs}"));
                    let _ = std::fs::write(&file, &data);
                    eprintln!("invariant broken at input {runs} (seed {seed}), written to {}: {:?}", file.display(), String::from_utf8_lossy(&data));
                    std::process::exit(1);
                }
                runs += 1;
                bytes += data.len() as u64;
            }
        }
        eprintln!("classify fallback: {runs} inputs ({bytes} bytes) checked in {seconds} s, seed {seed}: no invariant broken");
    }
}

//! Malformed input against the real broker: a hand-written corpus of records that are not
//! JSON, truncated JSON, not UTF-8 (also only inside an unwatched field or key), deeply
//! nested, 1 MB large, tombstones, empty values, JSON that is not an object, and objects
//! whose watched fields have every kind and every wrong type. Every record must be copied
//! byte for byte in order, the job must not panic, and the stats documents must count
//! each record in the class written next to it below (worked out by hand from the
//! project's rules, not by calling its classifier).

use std::collections::BTreeMap;
use std::time::Duration;

use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig, Record};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_operators::stats::{InvalidCounting, StatsDoc};
use tidewatch_tests::{assert_copied_exactly, create_topics, produce, read_all, real_brokers, require_broker, unique_topic};

/// The default watched fields, in this order in [`Class::Object`].
const FIELDS: [&str; 3] = ["event_time", "user_id", "page"];
const PARTITIONS: i32 = 2;
/// Nesting depth of the deep records.
const DEEP: usize = 10_000;
/// Size of the large records.
const MB: usize = 1_000_000;

/// How a watched field should read (the test's own names, not the project's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Present,
    Missing,
    Null,
    EmptyString,
    EmptyArray,
    EmptyObject,
}

impl F {
    const ALL: [F; 6] = [F::Present, F::Missing, F::Null, F::EmptyString, F::EmptyArray, F::EmptyObject];

    /// The kind's name in the stats document.
    fn doc_name(self) -> &'static str {
        match self {
            F::Present => "present",
            F::Missing => "missing",
            F::Null => "null",
            F::EmptyString => "empty_string",
            F::EmptyArray => "empty_array",
            F::EmptyObject => "empty_object",
        }
    }
}

/// How a whole record should be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Not JSON or not UTF-8: counted as unparseable, its fields not counted.
    Unparseable,
    /// A null value: counted as a tombstone, its fields not counted.
    Tombstone,
    /// JSON but not an object: counted as not_object, every field missing.
    NotObject,
    /// An object whose fields `event_time`, `user_id`, `page` read as given.
    Object([F; 3]),
}

use F::{EmptyArray as EA, EmptyObject as EO, EmptyString as ES, Missing as M, Null as N, Present as P};

/// All three watched fields present.
const ALL_PRESENT: Class = Class::Object([P, P, P]);

/// The records in production order, each with the class it must be counted in.
#[derive(Debug, Default)]
struct Corpus {
    records: Vec<Record>,
    classes: Vec<Class>,
}

impl Corpus {
    /// Adds a record with key `k-<n>`.
    fn push(&mut self, value: impl Into<Vec<u8>>, class: Class) {
        let key = format!("k-{}", self.records.len()).into_bytes();
        self.push_keyed(Some(key), Some(value.into()), class);
    }

    /// Adds a record with an explicit key and value (either may be null).
    fn push_keyed(&mut self, key: Option<Vec<u8>>, value: Option<Vec<u8>>, class: Class) {
        let n = self.records.len();
        // Not simply alternating, so both partitions see runs of several records.
        let partition = ((n / 3 + n) % PARTITIONS as usize) as i32;
        let headers = if n % 5 == 0 { vec![("h".to_owned(), Some(format!("r{n}").into_bytes())), ("none".to_owned(), None)] } else { Vec::new() };
        self.records.push(Record {
            partition,
            offset: -1,
            timestamp: Some(1_700_000_000_000 + n as i64),
            key: key.map(Into::into),
            value: value.map(Into::into),
            headers,
        });
        self.classes.push(class);
    }
}

/// `{"event_time":<a>,"user_id":<b>,"page":<c>}` with raw JSON fragments; `None` leaves the key out.
fn object(event_time: Option<&str>, user_id: Option<&str>, page: Option<&str>) -> String {
    let parts: Vec<String> = FIELDS
        .iter()
        .zip([event_time, user_id, page])
        .filter_map(|(name, raw)| raw.map(|raw| format!("\"{name}\":{raw}")))
        .collect();
    format!("{{{}}}", parts.join(","))
}

const ET: &str = "\"2024-05-01T12:00:00Z\"";
const UID: &str = "\"u-17\"";
const PAGE: &str = "\"/home\"";

/// A valid object with every watched field present, followed by `extra` (raw bytes, may be invalid UTF-8) before the closing brace.
fn valid_with(extra: &[u8]) -> Vec<u8> {
    let mut v = format!("{{\"event_time\":{ET},\"user_id\":{UID},\"page\":{PAGE}").into_bytes();
    v.extend_from_slice(extra);
    v.push(b'}');
    v
}

fn build_corpus() -> Corpus {
    let mut c = Corpus::default();
    let valid = object(Some(ET), Some(UID), Some(PAGE));

    // --- A plain valid record first, as a reference.
    c.push(valid.clone(), ALL_PRESENT);

    // --- Text that is not JSON.
    c.push("hello world", Class::Unparseable);
    c.push("<visit page=\"/home\"/>", Class::Unparseable);
    c.push("{'event_time': 1, 'page': 'x'}", Class::Unparseable);
    c.push("{event_time: 1}", Class::Unparseable);
    c.push("NaN", Class::Unparseable);
    c.push("Infinity", Class::Unparseable);
    c.push("page=/home&user_id=u-1", Class::Unparseable);
    c.push("   \n\t ", Class::Unparseable); // whitespace only: no value at all
    c.push("01", Class::Unparseable); // leading zero
    c.push("True", Class::Unparseable);
    c.push(format!("{valid} trailing"), Class::Unparseable);
    c.push(format!("{valid}{valid}"), Class::Unparseable); // two values in one record
    c.push("{\"page\":\"a\tb\"}", Class::Unparseable); // raw control character in a string
    c.push("{\"page\":\"x\" /* comment */}", Class::Unparseable);
    c.push("\u{feff}{\"page\":\"x\"}", Class::Unparseable); // byte order mark (valid UTF-8, not JSON)

    // --- Truncated JSON.
    c.push(&valid.as_bytes()[..valid.len() - 1], Class::Unparseable);
    c.push(&valid.as_bytes()[..valid.len() / 2], Class::Unparseable);
    c.push("{\"event_time\":", Class::Unparseable);
    c.push("{", Class::Unparseable);
    c.push("[1,2", Class::Unparseable);
    c.push("\"unterminated", Class::Unparseable);
    c.push("{\"user_id\":\"u-1\",}", Class::Unparseable); // trailing comma
    c.push("{\"user_id\" \"u-1\"}", Class::Unparseable); // missing colon
    c.push("tru", Class::Unparseable);

    // --- Bytes that are not UTF-8.
    c.push(vec![0xff, 0xfe, 0x00, 0x80, 0x7b], Class::Unparseable);
    c.push(valid_with(b",\"blob\":\"\xc3\x28\""), Class::Unparseable); // bad byte in an unwatched field of a valid object
    c.push(valid_with(b",\"ctx\":{\"a\":[\"ok\",\"\xed\xa0\x80\"]}"), Class::Unparseable); // encoded surrogate, nested, unwatched
    c.push(valid_with(b",\"x\":\"\xc0\xaf\""), Class::Unparseable); // overlong encoding, unwatched
    c.push(valid_with(b",\"\xff\xfe\":1"), Class::Unparseable); // bad bytes in an unwatched key
    c.push(valid_with(b",\"tail\":\"\xe2\x82\""), Class::Unparseable); // truncated multi-byte sequence, unwatched
    c.push(b"{\"event_time\":\"2024\",\"user_id\":\"u\",\"page\":\"caf\xe9\"}".to_vec(), Class::Unparseable); // Latin-1 in a watched field
    let mut trailing_bad = valid.clone().into_bytes();
    trailing_bad.push(0xff);
    c.push(trailing_bad, Class::Unparseable); // a bad byte after the object

    // --- Deep nesting: valid JSON, classified without recursion.
    c.push(format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP)), Class::NotObject);
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(DEEP), "}".repeat(DEEP));
    c.push(object(Some(ET), Some(&deep_objects), Some(PAGE)), ALL_PRESENT); // 10 000 levels under watched user_id
    let deep_arrays = format!("{}7{}", "[".repeat(DEEP), "]".repeat(DEEP));
    c.push(object(Some(ET), Some(UID), Some(&deep_arrays)), ALL_PRESENT); // 10 000 levels of arrays under watched page
    // Deep under an unwatched key, then the watched fields after it.
    c.push(format!("{{\"deep\":{deep_objects},\"event_time\":null,\"user_id\":\"\",\"page\":[]}}"), Class::Object([N, ES, EA]));
    // 10 000 levels under a watched key named like the field again at every level.
    let page_in_page = format!("{}\"\"{}", "{\"page\":".repeat(DEEP), "}".repeat(DEEP));
    c.push(object(None, None, Some(&page_in_page)), Class::Object([M, M, P]));
    // Deep but truncated: not JSON.
    c.push("[".repeat(DEEP), Class::Unparseable);
    c.push(format!("{{\"page\":{}1{}", "{\"a\":".repeat(DEEP), "}".repeat(DEEP)), Class::Unparseable); // outer brace missing

    // --- 1 MB values.
    let head = format!("{{\"event_time\":{ET},\"user_id\":{UID},\"page\":\"");
    let big_page = format!("{head}{}\"}}", "p".repeat(MB - head.len() - 2));
    assert_eq!(big_page.len(), MB);
    c.push(big_page, ALL_PRESENT);
    let head = "{\"blob\":[";
    let tail = "0],\"event_time\":{},\"user_id\":null,\"page\":\"\"}";
    let big_blob = format!("{head}{}{tail}", "1,".repeat((MB - head.len() - tail.len()) / 2));
    assert!(big_blob.len() <= MB && big_blob.len() > MB - 2);
    c.push(big_blob, Class::Object([EO, N, ES]));

    // --- Keys and values that are null or empty.
    c.push_keyed(None, Some(valid.clone().into_bytes()), ALL_PRESENT); // null key
    c.push_keyed(Some(Vec::new()), Some(valid.clone().into_bytes()), ALL_PRESENT); // empty key
    c.push_keyed(Some(b"k-tomb".to_vec()), None, Class::Tombstone); // tombstone
    c.push_keyed(None, None, Class::Tombstone); // tombstone with a null key
    c.push_keyed(Some(b"k-empty".to_vec()), Some(Vec::new()), Class::Unparseable); // empty value: no JSON value
    c.push_keyed(None, Some(Vec::new()), Class::Unparseable);
    c.push_keyed(Some(vec![0xff, 0x00]), None, Class::Tombstone); // binary key, tombstone

    // --- JSON that is not an object: fields count as missing.
    c.push("[1,2,3]", Class::NotObject);
    c.push("[]", Class::NotObject);
    c.push(" [ ] ", Class::NotObject);
    c.push(format!("[{valid}]"), Class::NotObject);
    c.push("\"a string\"", Class::NotObject);
    c.push("\"\"", Class::NotObject);
    c.push("42", Class::NotObject);
    c.push("-1.5e10", Class::NotObject);
    c.push("true", Class::NotObject);
    c.push("false", Class::NotObject);
    c.push("null", Class::NotObject); // the JSON literal null is a value, not a tombstone
    c.push("  \"{\\\"page\\\":\\\"x\\\"}\"  ", Class::NotObject); // an object quoted inside a string

    // --- Wrong types for watched fields: all present.
    c.push(object(Some("1714564800000"), Some("42"), Some("-0.5e-3")), ALL_PRESENT);
    c.push(object(Some("0"), Some("0"), Some("0.0")), ALL_PRESENT);
    c.push(object(Some("123456789012345678901234567890"), Some("-9223372036854775809"), Some("18446744073709551616")), ALL_PRESENT);
    c.push(object(Some("true"), Some("false"), Some("false")), ALL_PRESENT);
    c.push(object(Some("[1]"), Some("[\"\"]"), Some("[null]")), ALL_PRESENT);
    c.push(object(Some("[[]]"), Some("[{}]"), Some("[ [ ] ]")), ALL_PRESENT);
    c.push(object(Some("{\"s\":1}"), Some("{\"\":null}"), Some("{\"page\":\"\"}")), ALL_PRESENT);
    c.push(object(Some("\" \""), Some("\"null\""), Some("\"\\u0000\"")), ALL_PRESENT); // non-empty strings
    c.push(object(Some("\"\\\"\""), Some("\"[]\""), Some("\"{}\"")), ALL_PRESENT);

    // --- Valid records with each watched field missing / null / "" / [] / {}.
    for (index, _) in FIELDS.iter().enumerate() {
        for (raw, kind) in [(None, M), (Some("null"), N), (Some("\"\""), ES), (Some("[]"), EA), (Some("{}"), EO)] {
            let mut raws = [Some(ET), Some(UID), Some(PAGE)];
            raws[index] = raw;
            let mut kinds = [P; 3];
            kinds[index] = kind;
            c.push(object(raws[0], raws[1], raws[2]), Class::Object(kinds));
        }
    }
    c.push("{}", Class::Object([M, M, M])); // an empty object is still an object (its fields are missing)
    c.push("{\"other\":1}", Class::Object([M, M, M]));
    c.push(" { \"event_time\" : [ ] , \"user_id\" : { } , \"page\" : null } ", Class::Object([EA, EO, N]));
    c.push("{\"event_time\":\"\",\"user_id\":\"\",\"page\":\"\"}", Class::Object([ES, ES, ES]));
    c.push("{\"ev\\u0065nt_time\":\"\",\"us\\u0065r_id\":null,\"p\\u0061ge\":[]}", Class::Object([ES, N, EA])); // escaped keys
    c.push("{\"Page\":\"x\",\"PAGE\":\"\",\"page \":1,\"user\":\"u\"}", Class::Object([M, M, M])); // near-miss keys
    c.push(format!("{{\"context\":{valid}}}"), Class::Object([M, M, M])); // fields nested, not top level
    c.push(format!("{{\"event_time\":{ET},\"user_id\":{UID},\"page\":\"\",\"page\":{PAGE}}}"), ALL_PRESENT); // duplicate key: the last wins
    c.push(format!("{{\"event_time\":{ET},\"user_id\":{UID},\"page\":{PAGE},\"page\":null}}"), Class::Object([P, P, N]));
    c.push(format!("{{\"n\":1e400,\"event_time\":{ET},\"user_id\":{UID},\"page\":{PAGE}}}"), ALL_PRESENT); // huge number, unwatched
    c.push_keyed(None, Some(b"{\"event_time\":null,\"user_id\":null,\"page\":null}".to_vec()), Class::Object([N, N, N]));

    // --- A last plain valid record.
    c.push(valid, ALL_PRESENT);
    c
}

/// The totals the stats documents must show for `classes`, worked out from the classes alone.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    all_events: i64,
    unparseable: i64,
    not_object: i64,
    tombstones: i64,
    /// field → kind name → records.
    quality: BTreeMap<String, BTreeMap<String, i64>>,
}

fn expected(classes: &[Class]) -> Expected {
    let mut e = Expected { all_events: classes.len() as i64, ..Expected::default() };
    let mut quality: BTreeMap<String, BTreeMap<String, i64>> = FIELDS
        .iter()
        .map(|field| ((*field).to_owned(), F::ALL.iter().map(|k| (k.doc_name().to_owned(), 0)).collect()))
        .collect();
    let mut count = |field: &str, kind: F| *quality.get_mut(field).and_then(|m| m.get_mut(kind.doc_name())).expect("known field and kind") += 1;
    for class in classes {
        match class {
            Class::Unparseable => e.unparseable += 1,
            Class::Tombstone => e.tombstones += 1,
            Class::NotObject => {
                e.not_object += 1;
                FIELDS.iter().for_each(|f| count(f, F::Missing));
            }
            Class::Object(kinds) => FIELDS.iter().zip(kinds).for_each(|(f, k)| count(f, *k)),
        }
    }
    e.quality = quality;
    e
}

/// The same totals, summed over the stats documents.
fn observed(docs: &[StatsDoc]) -> Expected {
    let mut o = Expected::default();
    for d in docs {
        o.all_events += d.all_events;
        o.unparseable += d.unparseable;
        o.not_object += d.not_object;
        o.tombstones += d.tombstones;
    }
    for field in FIELDS {
        let kinds = F::ALL
            .iter()
            .map(|k| {
                let total = docs.iter().map(|d| d.quality.get(field).and_then(|m| m.get(k.doc_name())).copied().unwrap_or(0)).sum();
                (k.doc_name().to_owned(), total)
            })
            .collect();
        o.quality.insert(field.to_owned(), kinds);
    }
    o
}

#[test]
fn real_broker_malformed_input_is_copied_byte_exact_and_counted_in_the_right_class() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("malformed-in"), unique_topic("malformed-out"), unique_topic("malformed"));
    create_topics(&brokers, &[&input, &output], PARTITIONS)?;

    let corpus = build_corpus();
    let want = expected(&corpus.classes);
    // The corpus must hold every class and, per field, every kind.
    assert!(want.unparseable > 0 && want.not_object > 0 && want.tombstones > 0);
    for (field, kinds) in &want.quality {
        assert!(kinds.values().all(|n| *n > 0), "{field}: the corpus must hold every kind: {kinds:?}");
    }
    produce(&brokers, &input, &corpus.records)?;

    let dir = tempfile::tempdir()?;
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", &brokers);
    kafka.producer.insert("message.max.bytes".into(), "2000000".into());
    kafka.consumer.insert("fetch.max.bytes".into(), "52428800".into());
    kafka.consumer.insert("max.partition.fetch.bytes".into(), "4194304".into());
    let file = FileConfig {
        job: JobConfig {
            input_topic: input.clone(),
            output_topic: output.clone(),
            group_id: group,
            epoch_interval: Duration::from_millis(100),
            until_end: true,
            ..JobConfig::default()
        },
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
        opensearch: Default::default(),
        profile: Default::default(),
    };
    assert_eq!(file.observe.fields, FIELDS, "the default watched fields");
    assert_eq!(file.observe.invalid, InvalidCounting::Reference, "reference counting by default");
    let file_again = file.clone();
    let summary = run_observed(file, &Cluster::default(), JobControl::new())?;
    let n = corpus.records.len() as u64;
    assert_eq!(summary.records_in, n, "records read");
    assert_eq!(summary.records_delivered, n, "records delivered");

    assert_copied_exactly(&corpus.records, &read_all(&brokers, &output)?);

    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    assert!(!docs.is_empty(), "no stats documents");
    assert_eq!(docs.iter().map(|d| d.records_delivered).sum::<i64>(), n as i64, "records_delivered over the documents");
    assert_eq!(docs.iter().map(|d| d.records_in).sum::<i64>(), n as i64, "records_in over the documents");
    // Every figure is compared before failing, so one run shows all that differ.
    let got = observed(&docs);
    let mut wrong = Vec::new();
    let mut compare = |what: String, got: i64, want: i64| {
        if got != want {
            wrong.push(format!("{what}: the documents count {got}, the corpus holds {want}"));
        }
    };
    compare("all_events".into(), got.all_events, want.all_events);
    compare("unparseable".into(), got.unparseable, want.unparseable);
    compare("not_object".into(), got.not_object, want.not_object);
    compare("tombstones".into(), got.tombstones, want.tombstones);
    for field in FIELDS {
        for kind in F::ALL {
            let name = kind.doc_name();
            compare(format!("{field} {name}"), got.quality[field][name], want.quality[field][name]);
        }
        // By default, as the reference job: a value without fields (unparseable, tombstone)
        // is invalid in every watched field, and a non-object's fields count as missing.
        let invalid: i64 = docs.iter().map(|d| d.invalid.get(&format!("invalid_{field}")).copied().unwrap_or(0)).sum();
        let empty: i64 = want.quality[field].iter().filter(|(k, _)| *k != "present").map(|(_, n)| n).sum();
        compare(format!("invalid_{field}"), invalid, empty + want.unparseable + want.tombstones);
    }
    assert!(wrong.is_empty(), "counts differ from the corpus:\n{}", wrong.join("\n"));

    // `observe.invalid = "present-values-only"`: only values that are JSON count, by their fields.
    let again = unique_topic("malformed-out-present");
    create_topics(&brokers, &[&again], PARTITIONS)?;
    let dir = tempfile::tempdir()?;
    let mut file = file_again;
    file.job.output_topic = again;
    file.job.group_id = unique_topic("malformed-present");
    file.observe.invalid = InvalidCounting::PresentValuesOnly;
    file.output.dir = dir.path().to_owned();
    run_observed(file, &Cluster::default(), JobControl::new())?;
    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let got_present = observed(&docs);
    for field in FIELDS {
        let invalid: i64 = docs.iter().map(|d| d.invalid.get(&format!("invalid_{field}")).copied().unwrap_or(0)).sum();
        let empty: i64 = want.quality[field].iter().filter(|(k, _)| *k != "present").map(|(_, n)| n).sum();
        assert_eq!(invalid, empty, "present-values-only invalid_{field}");
        assert_eq!(got_present.quality[field], want.quality[field], "the per-kind breakdown does not depend on the counting");
    }
    Ok(())
}

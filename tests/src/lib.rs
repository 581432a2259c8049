//! Helpers shared by the integration tests: a record corpus, a producer that writes it
//! to explicit partitions, readers of whole topics and of committed offsets, and the
//! connection to the real broker started by `scripts/kafka.sh`.

pub mod browser;
pub mod exposition;
pub mod process;
pub mod secured;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tidewatch_engine::Record;

pub mod faults;
pub mod hosts;
pub mod observed;

/// The bootstrap servers of the real broker: `TIDEWATCH_KAFKA` or the script's default.
pub fn real_brokers() -> String {
    std::env::var("TIDEWATCH_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Fails with instructions when no broker answers at `brokers`.
pub fn require_broker(brokers: &str) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    consumer.fetch_metadata(None, Duration::from_secs(10)).with_context(|| {
        format!("no Kafka broker answers at {brokers}: start one with `scripts/kafka.sh start` (the README's test command does it)")
    })?;
    Ok(())
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Creates topics with `partitions` partitions each (replication 1) and waits until the
/// metadata shows them.
pub fn create_topics(brokers: &str, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new: Vec<NewTopic<'_>> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let results = futures_executor::block_on(admin.create_topics(&new, &AdminOptions::new()))?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("creating topic {topic}: {code}");
        }
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for topic in topics {
        loop {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
            let ready = md.topics().iter().any(|t| t.name() == *topic && t.error().is_none() && t.partitions().len() == partitions as usize);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("topic {topic} not ready after 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// A record to produce: an explicit partition and everything a message can carry.
pub type Outgoing = Record;

/// The test corpus: `n` records over `partitions` partitions with null keys, null
/// values, empty values and keys, headers (one with a null value), binary non-UTF-8
/// payloads, explicit timestamps and, when `big` is set, one 1 MB value.
pub fn corpus(n: usize, partitions: i32, big: bool) -> Vec<Record> {
    let base_ts = 1_700_000_000_000i64;
    (0..n)
        .map(|i| {
            let partition = (((i as u64).wrapping_mul(2_654_435_761) >> 7) % partitions as u64) as i32;
            let key = match i % 11 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(format!("key-{i}").into_bytes()),
            };
            let value = match i % 13 {
                0 => None,
                1 => Some(Vec::new()),
                2 => Some(vec![0xff, 0xfe, 0x00, 0x80, (i % 256) as u8]),
                _ => Some(format!("{{\"i\":{i},\"page\":\"page_{}\"}}", i % 20).into_bytes()),
            };
            let headers = match i % 5 {
                0 => vec![("trace".to_owned(), Some(format!("t{i}").into_bytes())), ("empty".to_owned(), None)],
                1 => vec![("bin".to_owned(), Some(vec![0u8, 159, 146, 150]))],
                _ => Vec::new(),
            };
            let value = if big && i == n / 2 { Some(vec![b'x'; 1_000_000]) } else { value };
            Record { partition, offset: -1, timestamp: Some(base_ts + i as i64), key: key.map(Into::into), value: value.map(Into::into), headers }
        })
        .collect()
}

/// Counts deliveries that failed for good.
#[derive(Debug, Default)]
pub struct CountFailures {
    failed: std::sync::atomic::AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for CountFailures {}

impl rdkafka::producer::ProducerContext for CountFailures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut first) = self.first.lock() {
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Producer settings for large test records.
fn producer(brokers: &str) -> anyhow::Result<BaseProducer<CountFailures>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "2000000")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(CountFailures::default())?)
}

/// Produces `records` to their partitions of `topic`, in order, and waits for every ack.
pub fn produce(brokers: &str, topic: &str, records: &[Record]) -> anyhow::Result<()> {
    let producer = producer(brokers)?;
    for record in records {
        let mut message: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(record.partition);
        if let Some(k) = &record.key {
            message = message.key(&k[..]);
        }
        if let Some(v) = &record.value {
            message = message.payload(&v[..]);
        }
        if let Some(ts) = record.timestamp {
            message = message.timestamp(ts);
        }
        if !record.headers.is_empty() {
            let headers = record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k.as_str(), value: v.as_deref() }));
            message = message.headers(headers);
        }
        loop {
            match producer.send(message) {
                Ok(()) => break,
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), m)) => {
                    message = m;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60))?;
    let failed = producer.context().failed.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        let first = producer.context().first.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
        bail!("{failed} of {} records could not be produced to {topic}: {first}", records.len());
    }
    Ok(())
}

fn reader(brokers: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tidewatch-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("isolation.level", "read_committed")
        .create()?)
}

/// Reads every record of `topic` up to its current high watermarks, per partition in order.
pub fn read_all(brokers: &str, topic: &str) -> anyhow::Result<BTreeMap<i32, Vec<Record>>> {
    let consumer = reader(brokers)?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        ends.insert(*p, high);
        tpl.add_partition_offset(topic, *p, Offset::Offset(low))?;
    }
    consumer.assign(&tpl)?;
    let mut out: BTreeMap<i32, Vec<Record>> = partitions.iter().map(|p| (*p, Vec::new())).collect();
    let mut next: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while next.iter().any(|(p, n)| *n < ends[p]) {
        if Instant::now() > deadline {
            bail!("reading {topic} timed out at {next:?} of {ends:?}");
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let r = Record::from_message(&m);
                next.insert(r.partition, r.offset + 1);
                out.entry(r.partition).or_default().push(r);
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    Ok(out)
}

/// The committed offsets of `group` on every partition of `topic` (`None`: none committed).
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok((0..partitions)
        .map(|p| {
            let offset = got.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            (p, offset)
        })
        .collect())
}

/// Grows `topic` to `total` partitions (as `kafka-topics.sh --alter --partitions` does)
/// and waits until its metadata shows them.
pub fn add_partitions(brokers: &str, topic: &str, total: usize) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let results = futures_executor::block_on(admin.create_partitions(&[NewPartitions::new(topic, total)], &AdminOptions::new()))?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("adding partitions to {topic}: {code}");
        }
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        if md.topics().iter().any(|t| t.name() == topic && t.partitions().len() == total) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{topic} does not show {total} partitions after 30 s")
}

/// High watermark per partition.
pub fn end_offsets(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<BTreeMap<i32, i64>> {
    let consumer = reader(brokers)?;
    (0..partitions).map(|p| Ok((p, consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?.1))).collect()
}

/// Key, value, headers and timestamp of a record.
pub type Content<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, &'a [(String, Option<Vec<u8>>)], Option<i64>);

/// The payload-level view of a record: what the passthrough must preserve.
pub fn content(r: &Record) -> Content<'_> {
    (r.key.as_deref(), r.value.as_deref(), r.headers.as_slice(), r.timestamp)
}

/// Asserts that `output` holds exactly `input`, partition by partition, in order, byte for byte.
pub fn assert_copied_exactly(input: &[Record], output: &BTreeMap<i32, Vec<Record>>) {
    let mut expected: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for r in input {
        expected.entry(r.partition).or_default().push(r);
    }
    let total: usize = output.values().map(Vec::len).sum();
    assert_eq!(total, input.len(), "the output holds {total} records, the input {}", input.len());
    for (p, want) in &expected {
        let got = output.get(p).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(got.len(), want.len(), "partition {p}: {} records out, {} in", got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(content(g), content(w), "partition {p}, record {i} differs");
        }
    }
}

/// The `tidewatch` binary of this build, built first if needed.
pub fn tidewatch_bin() -> anyhow::Result<std::path::PathBuf> {
    workspace_bin("tidewatch-jobs", "tidewatch")
}

/// The binary `bin` of the workspace's package `package`, built first if needed.
pub fn workspace_bin(package: &str, bin: &str) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(std::path::Path::parent).context("test binary has no profile directory")?;
    let name = bin;
    let bin = profile_dir.join(name);
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-q", "-p", package, "--bin", name]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build for the tidewatch binary")?;
    if !status.success() || !bin.exists() {
        bail!("could not build {}", bin.display());
    }
    Ok(bin)
}

/// `n` distinct free TCP ports on 127.0.0.1 (for timely's process addresses).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The URL of the real OpenSearch node: `TIDEWATCH_OPENSEARCH` or the script's default.
pub fn opensearch_url() -> String {
    std::env::var("TIDEWATCH_OPENSEARCH").unwrap_or_else(|_| "http://127.0.0.1:9200".to_owned())
}

/// One HTTP/1.1 request with a JSON body to a plain-HTTP server; returns the status and
/// the body parsed as JSON (`Value::Null` when empty).
pub fn http_json(method: &str, url: &str, body: Option<&serde_json::Value>) -> anyhow::Result<(u16, serde_json::Value)> {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let payload = body.map(serde_json::Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP response")?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    let value = if body.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))? };
    Ok((status, value))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Fails with instructions when no OpenSearch answers at `url`.
pub fn require_opensearch(url: &str) -> anyhow::Result<()> {
    match http_json("GET", &format!("{url}/_cluster/health"), None) {
        Ok((200, _)) => Ok(()),
        other => bail!("no OpenSearch answers at {url} ({other:?}): start one with `scripts/opensearch.sh start` (the README's test command does it)"),
    }
}

/// Every document of `index`, sorted by `field`, as their `_source`.
pub fn opensearch_docs(url: &str, index: &str, sort_field: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    http_json("POST", &format!("{url}/{index}/_refresh"), None)?;
    let query = serde_json::json!({ "size": 10000, "sort": [{ sort_field: "asc" }], "query": { "match_all": {} } });
    let (status, reply) = http_json("POST", &format!("{url}/{index}/_search"), Some(&query))?;
    if status != 200 {
        bail!("searching {index}: HTTP {status}: {reply}");
    }
    Ok(reply["hits"]["hits"].as_array().map(|hits| hits.iter().map(|h| h["_source"].clone()).collect()).unwrap_or_default())
}

/// Runs `tidewatch run ARGS` as `processes` processes of `workers` workers each on this
/// machine (a host file of free ports, `-n -p -h`), process `p` writing its outputs to
/// `dir/p<p>` and serving no metrics; waits for all and fails if any fails.
pub fn run_processes(dir: &std::path::Path, processes: usize, workers: usize, args: &[&str]) -> anyhow::Result<()> {
    run_processes_of(&tidewatch_bin()?, dir, processes, workers, args)
}

/// [`run_processes`] with the binary `bin` (a job of your own with tidewatch's command line).
pub fn run_processes_of(bin: &std::path::Path, dir: &std::path::Path, processes: usize, workers: usize, args: &[&str]) -> anyhow::Result<()> {
    let hostfile = dir.join("hosts");
    std::fs::write(&hostfile, free_ports(processes)?.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>())?;
    let children: Vec<_> = (0..processes)
        .map(|p| {
            std::process::Command::new(bin)
                .arg("run")
                .args(args)
                .args(["--metrics-addr", "", "--out"])
                .arg(dir.join(format!("p{p}")))
                .args(["-w", &workers.to_string(), "-n", &processes.to_string(), "-p", &p.to_string(), "-h"])
                .arg(&hostfile)
                .stdin(std::process::Stdio::null())
                .spawn()
                .context("spawning tidewatch")
        })
        .collect::<anyhow::Result<_>>()?;
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            bail!("a tidewatch process exited with {status}");
        }
    }
    Ok(())
}

//! Times a peer that runs until it is ended (Benthos, MirrorMaker 2): starts it, watches
//! its output topic's end offsets, and once they hold the expected records prints the
//! result line the suite reads, then ends the peer. Optionally reads the peer's
//! Prometheus endpoint every window (its own per-window report) and once at the end.
//!
//! The watcher is the suite binary itself (`suite watch … -- COMMAND`), run as the
//! leader of the peer's process group, so its CPU (a watermark request per partition
//! every 50 ms, one scrape per window) is counted with the peer's; it is a few
//! milliseconds per run.

#![allow(clippy::print_stdout)] // the start and result lines on stdout are what the suite reads

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic the peer writes.
    pub output: String,
    /// Partitions of the output topic.
    pub partitions: i32,
    /// Records to wait for; 0: run until ended (no result line).
    pub expect: u64,
    /// Print the start line once a line of the peer's stdout contains this (else at spawn).
    pub start_after: Option<String>,
    /// `host:port` of the peer's Prometheus endpoint (`/metrics`), read every `window`.
    pub metrics: Option<String>,
    /// The per-window report's length.
    pub window: Duration,
    /// The peer's own topics (MirrorMaker 2's heartbeats, checkpoints, offset syncs,
    /// configs): the records each holds at the end are reported.
    pub own_topics: Vec<String>,
}

/// Runs `command` (inheriting this process's group) under `spec`; prints
/// `{"event":"start"}` and, with `expect > 0`, `{"records":N,"seconds":S,…}` on stdout.
pub fn watch(spec: &WatchSpec, mut command: Command) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &spec.brokers).set("group.id", "tidewatch-bench-watch").create()?;
    let started = Arc::new(AtomicBool::new(spec.start_after.is_none()));
    if spec.start_after.is_none() {
        say_start();
    }
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().with_context(|| format!("starting {command:?}"))?;
    let forward = forward_stdout(&mut child, spec.start_after.clone(), Arc::clone(&started))?;
    let result = watch_child(spec, &consumer, &mut child, &started);
    end(&mut child);
    let _ = forward.join();
    result
}

fn say_start() {
    println!("{{\"event\":\"start\"}}");
    let _ = std::io::stdout().flush();
}

/// Passes the peer's stdout to stderr (the suite's log), and says `start` at the line
/// that contains `start_after`.
fn forward_stdout(child: &mut Child, start_after: Option<String>, started: Arc<AtomicBool>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let stdout = child.stdout.take().context("the peer's stdout")?;
    Ok(std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if let Some(pattern) = &start_after {
                if !started.load(Ordering::Relaxed) && line.contains(pattern.as_str()) {
                    started.store(true, Ordering::Relaxed);
                    say_start();
                }
            }
        }
    }))
}

fn watch_child(spec: &WatchSpec, consumer: &BaseConsumer, child: &mut Child, started: &AtomicBool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    while !started.load(Ordering::Relaxed) {
        if let Some(status) = child.try_wait()? {
            bail!("the peer exited before it started: {status}");
        }
        if Instant::now() > deadline {
            bail!("the peer did not start within 900 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    let mut windows = Windows::new(spec.metrics.clone(), spec.window, start);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the peer exited by itself: {status}");
        }
        windows.tick(false);
        if spec.expect > 0 {
            let copied = output_records(consumer, &spec.output, spec.partitions)?;
            if copied >= spec.expect {
                let seconds = start.elapsed().as_secs_f64();
                windows.tick(true);
                let own = own_topics(consumer, spec);
                let line = serde_json::json!({
                    "records": copied,
                    "seconds": seconds,
                    "observed": windows.totals(),
                    "windows": windows.reported,
                    "metrics": windows.last_scrape_summary(),
                    "own_topics": own,
                });
                println!("{line}");
                let _ = std::io::stdout().flush();
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{copied} of {} records copied after 900 s", spec.expect);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records in `topic` (the sum of its end offsets; a fresh topic starts at 0).
fn output_records(consumer: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<u64> {
    let mut sum = 0;
    for p in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).with_context(|| format!("end offsets of {topic}"))?;
        sum += high.max(0) as u64;
    }
    Ok(sum)
}

/// The records each of the peer's own topics holds (a topic that is not there is left out).
///
/// Named topics only: a metadata request for every topic of a shared broker can meet a
/// topic being deleted, whose null name rust-rdkafka's `MetadataTopic::name` dereferences.
fn own_topics(consumer: &BaseConsumer, spec: &WatchSpec) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for name in &spec.own_topics {
        let Ok(metadata) = consumer.fetch_metadata(Some(name), Duration::from_secs(10)) else { continue };
        let Some(topic) = metadata.topics().first().filter(|t| t.error().is_none()) else { continue };
        let ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        let mut records = 0u64;
        for p in ids {
            if let Ok((low, high)) = consumer.fetch_watermarks(name, p, Duration::from_secs(10)) {
                records += (high - low).max(0) as u64;
            }
        }
        out.insert(name.clone(), records);
    }
    out
}

/// Sends TERM to the peer, then KILL after 10 s.
fn end(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The per-window report from the peer's Prometheus counters: every `window`, the
/// counters named `observed_*` are read and their increase since the last read is
/// printed on stderr as one JSON line.
struct Windows {
    metrics: Option<String>,
    window: Duration,
    next: Instant,
    /// The counters at the last read.
    last: BTreeMap<String, f64>,
    /// Every sample of the last read (for the peer's own view of where time went).
    last_all: BTreeMap<String, f64>,
    reported: u64,
}

impl Windows {
    fn new(metrics: Option<String>, window: Duration, start: Instant) -> Windows {
        Windows { metrics, window, next: start + window, last: BTreeMap::new(), last_all: BTreeMap::new(), reported: 0 }
    }

    /// Reads the counters when a window has ended (or `last`, for the final part window).
    fn tick(&mut self, last: bool) {
        let Some(addr) = &self.metrics else { return };
        if !last && Instant::now() < self.next {
            return;
        }
        self.next += self.window;
        let Ok(text) = scrape(addr) else { return };
        let all = parse_prometheus(&text);
        let observed: BTreeMap<String, f64> = all.iter().filter(|(k, _)| k.starts_with("observed_")).map(|(k, v)| (k.clone(), *v)).collect();
        let delta: BTreeMap<&String, f64> = observed.iter().map(|(k, v)| (k, v - self.last.get(k).copied().unwrap_or(0.0))).collect();
        self.reported += 1;
        eprintln!("{}", serde_json::json!({ "window": self.reported, "counts": delta }));
        self.last = observed;
        self.last_all = all;
    }

    /// The counters at the last read: `records`, `unparseable` and `invalid.<field>`.
    fn totals(&self) -> serde_json::Value {
        if self.last.is_empty() {
            return serde_json::Value::Null;
        }
        let mut invalid = serde_json::Map::new();
        let mut out = serde_json::Map::new();
        for (name, value) in &self.last {
            let value = serde_json::json!(value.round() as u64);
            if let Some(field) = name.strip_prefix("observed_invalid{").and_then(|rest| label(rest, "field")) {
                invalid.insert(field, value);
            } else if let Some(plain) = name.strip_prefix("observed_") {
                out.insert(plain.split('{').next().unwrap_or(plain).to_owned(), value);
            }
        }
        out.insert("invalid".to_owned(), serde_json::Value::Object(invalid));
        serde_json::Value::Object(out)
    }

    /// The peer's own timing metrics at the end (Benthos: `*_latency_ns`, `*_sent`).
    fn last_scrape_summary(&self) -> serde_json::Value {
        let keep = |k: &str| k.contains("latency_ns_sum") || k.contains("latency_ns_count") || k.starts_with("output_sent") || k.starts_with("input_received") || k.starts_with("processor_received");
        serde_json::Value::Object(self.last_all.iter().filter(|(k, _)| keep(k)).map(|(k, v)| (k.clone(), serde_json::json!(v))).collect())
    }
}

/// The value of label `name` in `a="x",name="y"}`.
fn label(labels: &str, name: &str) -> Option<String> {
    let at = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &labels[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// GET http://addr/metrics.
fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text.split_once("\r\n\r\n").map_or(text.clone(), |(_, body)| body.to_owned()))
}

/// Samples of a Prometheus text exposition: `name{labels}` → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_exposition() {
        let text = "# HELP x\nobserved_records{label=\"\",path=\"root.pipeline.processors.0\"} 100\nobserved_invalid{field=\"page\",label=\"\",path=\"p\"} 7\n";
        let mut w = Windows::new(None, Duration::from_secs(10), Instant::now());
        w.last = parse_prometheus(text);
        assert_eq!(w.totals(), serde_json::json!({"records": 100, "invalid": {"page": 7}}));
    }
}

//! A real Prometheus (Debian's `prometheus` package) against the job's `/metrics`: it
//! scrapes the job, an alert rule on `tidewatch_lag_offsets` fires while a burst lags
//! and clears once the job caught up, an instant query sees the job's counters, and the
//! scraped text is well-formed.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::Value;
use tidewatch_engine::{Cluster, JobControl, JobConfig, KafkaConfig, RunSummary};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::OutputConfig;
use tidewatch_jobs::visits::{produce_into, FaultMix, GeneratorConfig, NeverStop, ProduceSettings, VisitGenerator};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_tests::{create_topics, end_offsets, free_ports, real_brokers, require_broker, unique_topic};

/// Where Debian's `prometheus` package puts the server.
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// The alert of the generated rules file.
const ALERT: &str = "TestLagHigh";
/// Records of the burst to partition 0, produced as fast as possible. The held-back
/// consumer reads about 40 a second, so the lag jumps to hundreds and stays above 15 for
/// some 15 s, well over the rule's 2 s plus a scrape and an evaluation.
const BURST: u64 = 600;
/// The longest any one wait may take.
const WAIT: Duration = Duration::from_secs(60);

/// Fails with instructions when Debian's Prometheus server is not installed.
fn require_prometheus() -> anyhow::Result<()> {
    if !Path::new(PROMETHEUS).exists() {
        bail!(
            "{PROMETHEUS} is missing: install Debian's prometheus package (`apt-get install prometheus`; \
             the project's test command scripts/test.sh installs it through deploy/prometheus/check.sh)"
        );
    }
    Ok(())
}

/// A Prometheus server in its own temporary directory, killed (and waited for) on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `port`, scraping `target` every second and evaluating one rule,
    /// `max(tidewatch_lag_offsets) > 15` for 2 s, every second.
    fn start(target: SocketAddr, port: u16) -> anyhow::Result<Prometheus> {
        require_prometheus()?;
        let dir = tempfile::tempdir()?;
        let rules = dir.path().join("rules.yml");
        std::fs::write(
            &rules,
            format!(
                "groups:\n  - name: tidewatch-test\n    interval: 1s\n    rules:\n      - alert: {ALERT}\n        expr: max(tidewatch_lag_offsets) > 15\n        for: 2s\n"
            ),
        )?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: tidewatch\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )?;
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log)?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {PROMETHEUS}"))?;
        Ok(Prometheus { child, addr, log, _dir: dir })
    }

    /// The last lines of Prometheus's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Fails with the log when the server has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("prometheus exited with {status}; its log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// `GET path` of the HTTP API, the `data` of a successful answer.
    fn api(&mut self, path: &str) -> anyhow::Result<Value> {
        self.check_running()?;
        let (status, body) = http_get(self.addr, path)?;
        ensure!(status == 200, "GET {path} from prometheus: HTTP {status}: {body}");
        let json: Value = serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))?;
        ensure!(json["status"] == "success", "GET {path}: {json}");
        Ok(json["data"].clone())
    }

    /// The health of the scrape target at `target` ("up", "down", "unknown"), if listed.
    fn target_health(&mut self, target: SocketAddr) -> anyhow::Result<Option<String>> {
        let data = self.api("/api/v1/targets")?;
        let targets = data["activeTargets"].as_array().cloned().unwrap_or_default();
        Ok(targets
            .iter()
            .find(|t| t["labels"]["job"] == "tidewatch" && t["labels"]["instance"] == target.to_string().as_str())
            .and_then(|t| t["health"].as_str().map(str::to_owned)))
    }

    /// The state of the alert `name` ("pending" or "firing"), `None` when not active.
    fn alert_state(&mut self, name: &str) -> anyhow::Result<Option<String>> {
        let data = self.api("/api/v1/alerts")?;
        let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
        Ok(alerts.iter().find(|a| a["labels"]["alertname"] == name).and_then(|a| a["state"].as_str().map(str::to_owned)))
    }

    /// The values of an instant query (a vector), one per series.
    fn query(&mut self, expr: &str) -> anyhow::Result<Vec<f64>> {
        let data = self.api(&format!("/api/v1/query?query={}", percent_encode(expr)))?;
        ensure!(data["resultType"] == "vector", "query {expr}: {data}");
        data["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|series| {
                let value = series["value"][1].as_str().with_context(|| format!("query {expr}: no value in {series}"))?;
                value.parse::<f64>().with_context(|| format!("query {expr}: value {value}"))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The job running in a thread of this process, stopped (and joined) on drop.
struct Job {
    control: Arc<JobControl>,
    thread: Option<JoinHandle<anyhow::Result<RunSummary>>>,
}

impl Job {
    /// Fails with the job's result when it has ended.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(thread) = self.thread.take_if(|t| t.is_finished()) {
            let result = thread.join().map_err(|_| anyhow::anyhow!("the job thread panicked"))?;
            bail!("the job ended early: {result:?}");
        }
        ensure!(self.thread.is_some(), "the job was already joined");
        Ok(())
    }

    /// Stops the job and returns its result.
    fn finish(mut self) -> anyhow::Result<RunSummary> {
        self.control.request_stop();
        let thread = self.thread.take().context("the job was already joined")?;
        thread.join().map_err(|_| anyhow::anyhow!("the job thread panicked"))?
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.control.request_stop();
            let _ = thread.join();
        }
    }
}

/// A minimal HTTP/1.0 GET: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).with_context(|| format!("reading the answer to GET {path} from {addr}"))?;
    let response = String::from_utf8(response).with_context(|| format!("GET {path} from {addr}: not UTF-8"))?;
    let (head, body) = response.split_once("\r\n\r\n").with_context(|| format!("GET {path} from {addr}: no header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("GET {path} from {addr}: bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query parameter.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// One sample of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// Parses `name{label="value",...} value` (the braces optional).
fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = &line[..name_end];
    ensure!(is_name(name, true), "bad metric name {name:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inside.split_once("=\"").context("a label without =\"")?;
            ensure!(is_name(label, false) && !labels.contains_key(label), "bad or repeated label name {label:?}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().context("an unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().context("an unterminated escape")?.1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => bail!("bad escape \\{c}"),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(label.to_owned(), value);
            inside = &after[end + 1..];
            inside = inside.strip_prefix(',').unwrap_or(inside);
        }
    }
    let value = rest.strip_prefix(' ').context("no space before the value")?;
    ensure!(!value.is_empty() && !value.contains(char::is_whitespace), "expected exactly one value, got {value:?}");
    let value: f64 = value.parse().with_context(|| format!("value {value:?} is not a float"))?;
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Parses every non-comment line of an exposition.
fn parse_exposition(text: &str) -> anyhow::Result<Vec<Sample>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).with_context(|| format!("the /metrics line {l:?}")))
        .collect()
}

/// Calls `probe` every 250 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe()? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn file_config(brokers: &str, input: &str, output: &str, group: &str, out: &Path, metrics: SocketAddr) -> FileConfig {
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    // Tiny fetches: a handful of records per request...
    kafka.consumer.insert("fetch.max.bytes".into(), "4096".into());
    kafka.consumer.insert("max.partition.fetch.bytes".into(), "2048".into());
    kafka.consumer.insert("message.max.bytes".into(), "4096".into());
    // ...and a local queue of 1 KB: once it holds a fetch, the next waits 100 ms.
    kafka.consumer.insert("queued.max.messages.kbytes".into(), "1".into());
    kafka.consumer.insert("fetch.queue.backoff.ms".into(), "100".into());
    let mut job = JobConfig::default();
    (job.input_topic, job.output_topic, job.group_id) = (input.to_owned(), output.to_owned(), group.to_owned());
    job.epoch_interval = Duration::from_millis(100);
    job.start_from = tidewatch_engine::StartFrom::Earliest;
    job.until_end = false;
    FileConfig {
        job,
        kafka,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: OutputConfig { dir: out.to_owned(), metrics_addr: metrics.to_string(), ..OutputConfig::default() },
        ..FileConfig::default()
    }
}

/// Holds consumption back while a burst goes to partition 0: Prometheus, scraping the
/// job's `/metrics` every second, must see the target up, fire `TestLagHigh` while the
/// burst lags and drop it once the job caught up.
#[test]
fn real_prometheus_scrapes_metrics_and_a_lag_rule_fires_then_clears() -> anyhow::Result<()> {
    let started = Instant::now();
    let stage = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    require_prometheus()?;
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("prom-in"), unique_topic("prom-out"), unique_topic("prom"));
    create_topics(&brokers, &[&input, &output], 2)?;
    let ports = free_ports(2)?;
    let metrics: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse()?;

    let dir = tempfile::tempdir()?;
    let file = file_config(&brokers, &input, &output, &group, dir.path(), metrics);
    let control = JobControl::new();
    let job_control = Arc::clone(&control);
    let mut job = Job { control, thread: Some(std::thread::spawn(move || run_observed(file, &Cluster::default(), job_control))) };

    let mut prometheus = Prometheus::start(metrics, ports[1])?;
    let mut health = None;
    wait_for("prometheus shows the job's target up", WAIT, || {
        job.check_running()?;
        prometheus.check_running()?;
        // Connection refused until Prometheus listens.
        health = prometheus.target_health(metrics).ok().flatten();
        Ok((health.as_deref() == Some("up")).then_some(()))
    })
    .with_context(|| format!("last health {health:?}; prometheus log:\n{}", prometheus.log_tail()))?;
    stage("target up");

    // A burst to partition 0 only, one record per batch (a broker returns a whole batch
    // however small the fetch). As fast as possible: a consumer at the head of the
    // partition fetches whatever arrived at once, with a queue under 1 KB and no backoff,
    // and keeps up with a slow producer; a backlog makes every fetch full and holds it
    // to one fetch per 100 ms until the backlog is drained.
    let producer = {
        let (brokers, input) = (brokers.clone(), input.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let config = GeneratorConfig { seed: 5, partitions: 2, partition_weights: vec![1, 0], faults: FaultMix::none(), ..GeneratorConfig::default() };
            let mut generator = VisitGenerator::try_new(config)?;
            let one_per_batch = vec![("batch.num.messages".to_owned(), "1".to_owned()), ("linger.ms".to_owned(), "0".to_owned())];
            let settings = ProduceSettings { count: Some(BURST), overrides: one_per_batch, ..ProduceSettings::new(&brokers, &input) };
            produce_into(&settings, &mut generator, &NeverStop, None)?;
            Ok(())
        })
    };

    // The lag Prometheus saw, (seconds since start, max lag), for failure messages.
    let mut seen: Vec<(f64, f64)> = Vec::new();
    let mut states: Vec<String> = Vec::new();
    let observe = |prometheus: &mut Prometheus, seen: &mut Vec<(f64, f64)>| -> anyhow::Result<Option<String>> {
        if let Some(lag) = prometheus.query("max(tidewatch_lag_offsets)")?.first() {
            seen.push(((started.elapsed().as_secs_f64() * 10.0).round() / 10.0, *lag));
        }
        prometheus.alert_state(ALERT)
    };
    wait_for("TestLagHigh fires while the burst lags", WAIT, || {
        job.check_running()?;
        let state = observe(&mut prometheus, &mut seen)?;
        if let Some(s) = &state {
            if states.last() != Some(s) {
                states.push(s.clone());
            }
        }
        Ok((state.as_deref() == Some("firing")).then_some(()))
    })
    .with_context(|| format!("alert states seen {states:?}; max lag seen by prometheus {seen:?}"))?;
    stage(&format!("{ALERT} firing (states seen: {states:?})"));
    producer.join().map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    stage("burst produced");

    wait_for("the job copies the whole burst", WAIT, || {
        job.check_running()?;
        Ok((end_offsets(&brokers, &output, 2)?.values().sum::<i64>() >= BURST as i64).then_some(()))
    })?;
    stage("burst copied");
    let mut last_state = None;
    wait_for("TestLagHigh is gone once the job caught up", WAIT, || {
        job.check_running()?;
        last_state = observe(&mut prometheus, &mut seen)?;
        Ok(last_state.is_none().then_some(()))
    })
    .with_context(|| format!("last state {last_state:?}; max lag seen by prometheus {seen:?}"))?;
    stage("alert gone");
    eprintln!("max lag seen by prometheus (s, lag): {seen:?}");
    let peak = seen.iter().map(|(_, lag)| *lag).fold(0.0, f64::max);
    assert!(peak > 15.0, "prometheus never saw a lag above 15: {seen:?}");
    // The alert clears as soon as the lag is 15 or less; a scrape or two later it is 0.
    wait_for("prometheus sees the lag back at 0", WAIT, || {
        job.check_running()?;
        Ok((prometheus.query("max(tidewatch_lag_offsets)")? == [0.0]).then_some(()))
    })
    .with_context(|| format!("max lag seen by prometheus {seen:?}"))?;
    stage("lag 0");

    let read = prometheus.query("tidewatch_records_read_total")?;
    assert_eq!(read.len(), 1, "one series of tidewatch_records_read_total: {read:?}");
    assert!(read[0] > 0.0, "tidewatch_records_read_total is {read:?}");

    let (status, text) = http_get(metrics, "/metrics")?;
    assert_eq!(status, 200, "GET /metrics: {text}");
    let samples = parse_exposition(&text)?;
    assert!(
        samples.iter().any(|s| s.name == "tidewatch_lag_offsets"
            && s.labels.get("topic") == Some(&input)
            && s.labels.get("partition").map(String::as_str) == Some("0")),
        "no tidewatch_lag_offsets{{topic={input:?},partition=\"0\"}} in:\n{text}"
    );
    let read_total = samples.iter().find(|s| s.name == "tidewatch_records_read_total").context("no tidewatch_records_read_total")?;
    assert_eq!(read_total.value, BURST as f64, "every record of the burst was read");

    let summary = job.finish()?;
    assert_eq!(summary.records_delivered, BURST);
    drop(prometheus);
    stage("done");
    Ok(())
}

#[test]
fn exposition_parser_accepts_labels_and_rejects_garbage() {
    let ok = parse_exposition("# HELP x y\n# TYPE x gauge\nx 1\ny_total{a=\"1\",b=\"q\\\"\\\\\"} 2.5\nz{} NaN\n# EOF\n");
    let samples = ok.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[1].labels.get("b").map(String::as_str), Some("q\"\\"));
    assert!((samples[1].value - 2.5).abs() < f64::EPSILON);
    for bad in ["x", "x{a=\"1\"}", "x{a=1} 2", "x 1 2", "x abc", "1x 2", "x{a=\"1\" 2"] {
        assert!(parse_sample(bad).is_err(), "{bad:?} parsed");
    }
}

//! The live dashboard in a real browser, over a job on the real broker: Debian's headless
//! Chromium (driven over the DevTools protocol, `tidewatch_tests::browser`) opens the
//! page of a job held back by a broker quota while visits flow, and finds: no console
//! message, no failed request; throughput figures that move between two readings 3 s
//! apart; the held-back partitions with their lag and WARN; the alert it shows firing
//! in `alerts.ndjson`; hostile watched field and rule names shown as text, never run.
//! `/api/state` holds the same documents as `stats.ndjson`. The screenshot is kept at
//! `<target>/test-artifacts/dashboard.png` (path printed; `TIDEWATCH_DOCS_SCREENSHOT=1`
//! also copies it to `docs/dashboard.png`).
//!
//! And the server's door: a non-loopback address without `output.dashboard_token` is
//! refused at start, naming the key; with a token, requests without it get 401.
//!
//! Needs the broker (`scripts/kafka.sh start`) and chromium (`apt-get install -y
//! chromium`; `scripts/test.sh` installs both).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use serde_json::Value;
use tidewatch_engine::opensearch::OpenSearchConfig;
use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig, RunSummary};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed_core;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_jobs::visits::{produce_into, GeneratorConfig, ProduceSettings, VisitGenerator};
use tidewatch_operators::alerts::{AlertEvent, AlertRule, AlertState, Comparison};
use tidewatch_operators::observers::{ObserveConfig, ObserverMetrics};
use tidewatch_operators::profile::ProfileConfig;
use tidewatch_operators::stats::StatsDoc;
use tidewatch_tests::browser::{chromium_path, http_get, Browser};
use tidewatch_tests::{create_topics, real_brokers, require_broker, unique_topic};

const PARTITIONS: i32 = 2;
/// A watched field whose name is a script.
const SCRIPT_FIELD: &str = "<script>document.documentElement.setAttribute('data-tidewatch-pwned','field')</script>";
/// A watched field whose name is an element with a handler, and quotes.
const IMG_FIELD: &str = "<img src=x onerror=\"document.documentElement.setAttribute('data-tidewatch-pwned','img')\">";
/// An alert rule whose name tries to break out of an attribute.
const HOSTILE_RULE: &str = "\"><svg onload=\"document.documentElement.setAttribute('data-tidewatch-pwned','rule')\"> 'empty page'";

/// `scripts/kafka.sh quota CLIENT RATE`: a broker quota on a client's fetch rate.
fn quota(client: &str, bytes_per_second: u64) -> anyhow::Result<()> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let status = std::process::Command::new("bash").arg(script).args(["quota", client, &bytes_per_second.to_string()]).status()?;
    ensure!(status.success(), "scripts/kafka.sh quota {client} {bytes_per_second} failed");
    Ok(())
}

/// `<target>/test-artifacts/`, created.
fn artifacts_dir() -> anyhow::Result<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("CARGO_TARGET_TMPDIR has no parent")?;
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A running job and where its outputs go.
struct Running {
    control: Arc<JobControl>,
    job: JoinHandle<anyhow::Result<RunSummary>>,
    url: String,
    dir: tempfile::TempDir,
}

/// Starts the observer job on `input` with `output` settings and 1 s windows; waits for
/// its server and returns the dashboard's URL.
fn start_job(brokers: &str, input: &str, client: &str, output: OutputConfig, observe: ObserveConfig) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let out = create_output(brokers, input)?;
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    kafka.consumer.insert("client.id".to_owned(), client.to_owned());
    let file = FileConfig {
        job: JobConfig { input_topic: input.to_owned(), output_topic: out, group_id: unique_topic("dash"), epoch_interval: Duration::from_millis(100), ..JobConfig::default() },
        kafka,
        observe: ObserveConfig { window: Duration::from_secs(1), ..observe },
        output: OutputConfig { dir: dir.path().to_owned(), ..output },
        opensearch: OpenSearchConfig::default(),
        profile: ProfileConfig { enabled: true, dir: dir.path().join("profiles"), window: Duration::from_secs(2), ..ProfileConfig::default() },
    };
    let control = JobControl::new();
    let (job_control, found) = (Arc::clone(&control), Arc::new(Mutex::new(None)));
    let slot = Arc::clone(&found);
    let job = std::thread::spawn(move || {
        run_observed_core(file, &Cluster { workers: 2, ..Cluster::default() }, job_control, Arc::new(ObserverMetrics::default()), Vec::new(), move |latest| {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(latest.lock().unwrap_or_else(PoisonError::into_inner).dashboard.clone());
        })
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Some(url) = found.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            break url.context("the job serves no dashboard")?;
        }
        ensure!(!job.is_finished(), "the job ended before serving: {:?}", job.join().map_err(|_| anyhow::anyhow!("panicked"))?.err());
        ensure!(Instant::now() < deadline, "the job served nothing within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Running { control, job, url, dir })
}

fn create_output(brokers: &str, input: &str) -> anyhow::Result<String> {
    let out = format!("{input}-out");
    create_topics(brokers, &[input, &out], PARTITIONS)?;
    Ok(out)
}

impl Running {
    fn stop(self) -> anyhow::Result<(RunSummary, tempfile::TempDir)> {
        self.control.request_stop();
        let summary = self.job.join().map_err(|_| anyhow::anyhow!("the job panicked"))??;
        Ok((summary, self.dir))
    }
}

/// Produces visits at 3 000/s to `topic` until `stop`.
fn spawn_producer(brokers: &str, topic: &str, stop: Arc<AtomicBool>) -> JoinHandle<anyhow::Result<u64>> {
    let settings = ProduceSettings { rate: 3_000, duration: Some(Duration::from_secs(90)), ..ProduceSettings::new(brokers, topic) };
    std::thread::spawn(move || {
        let config = GeneratorConfig { seed: 16, partitions: PARTITIONS as u32, partition_weights: vec![1, 1], ..GeneratorConfig::default() };
        Ok(produce_into(&settings, &mut VisitGenerator::try_new(config)?, stop.as_ref(), None)?.delivered)
    })
}

/// The page's live tiles, partitions and rules, read from the DOM.
const READ_PAGE: &str = r#"JSON.stringify({
  recordsIn: document.getElementById('records-in')?.textContent,
  inPerS: document.getElementById('in-per-s')?.textContent,
  delivered: document.getElementById('records-delivered')?.textContent,
  partitions: [...document.querySelectorAll('tr.partition')].map(r => ({ p: r.dataset.partition, status: r.dataset.status, lag: r.dataset.lag, cls: r.lastElementChild.className, bg: getComputedStyle(r.lastElementChild).backgroundColor })),
  rules: [...document.querySelectorAll('tr.rule')].map(r => ({ name: r.dataset.rule, state: r.dataset.state, text: r.firstElementChild.textContent })),
  fields: [...document.querySelectorAll('tr.field code')].map(c => c.textContent),
  profiles: [...document.querySelectorAll('a.profile')].map(a => a.getAttribute('href')),
})"#;

fn read_page(browser: &mut Browser) -> anyhow::Result<Value> {
    let text = browser.eval(READ_PAGE)?;
    Ok(serde_json::from_str(text.as_str().context("the page reading is not a string")?)?)
}

/// Waits until `check` holds of the page's reading.
fn wait_page(browser: &mut Browser, what: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let page = read_page(browser)?;
        if check(&page) {
            return Ok(page);
        }
        ensure!(Instant::now() < deadline, "{what}: not seen on the page within {timeout:?}; the page shows {page:#}");
        browser.idle(Duration::from_millis(500))?;
    }
}

#[test]
fn real_broker_dashboard_in_chromium_shows_the_job_live_and_runs_no_data() -> anyhow::Result<()> {
    chromium_path()?;
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let input = unique_topic("dash-in");
    // ~1 500 records/s of ~400 B: half the producer's rate, so both partitions fall behind.
    let client = unique_topic("tw-dash");
    quota(&client, 600_000)?;
    let mut observe = ObserveConfig::default();
    observe.fields.extend([SCRIPT_FIELD.to_owned(), IMG_FIELD.to_owned()]);
    observe.alerts.push(AlertRule { name: HOSTILE_RULE.to_owned(), metric: "invalid_page".to_owned(), op: Comparison::Above, threshold: 0.0, for_: Duration::from_secs(2) });
    let output = OutputConfig { metrics_addr: "127.0.0.1:0".to_owned(), ..OutputConfig::default() };
    let running = start_job(&brokers, &input, &client, output, observe)?;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = spawn_producer(&brokers, &input, Arc::clone(&stop));
    let result = watch_the_page(&running).and_then(|firing| Ok((firing, state_of(&running.url)?)));
    stop.store(true, Ordering::Relaxed);
    let (summary, dir) = running.stop()?;
    quota(&client, 0)?;
    let produced = producer.join().map_err(|_| anyhow::anyhow!("the producer panicked"))??;
    let (firing, api) = result?;
    eprintln!("produced {produced}; the job copied {}", summary.records_delivered);

    // The alert the page showed firing is the one in alerts.ndjson.
    let alerts: Vec<AlertEvent> = read_ndjson(&dir.path().join("alerts.ndjson"))?;
    ensure!(alerts.iter().any(|a| a.rule == firing && a.state == AlertState::Firing), "the page showed {firing:?} firing; alerts.ndjson has {alerts:?}");
    // /api/state holds the documents of stats.ndjson, window by window.
    let docs: Vec<StatsDoc> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    let by_start: BTreeMap<u64, Value> = docs.iter().map(|d| Ok((d.window_start_ms, serde_json::to_value(d)?))).collect::<anyhow::Result<_>>()?;
    let windows = api["windows"].as_array().context("no windows in /api/state")?;
    ensure!(windows.len() >= 5, "only {} windows in /api/state", windows.len());
    for window in windows {
        let start = window["window_start_ms"].as_u64().context("a window without its start")?;
        ensure!(by_start.get(&start) == Some(window), "window {start}: /api/state has {window}\nstats.ndjson has {:?}", by_start.get(&start));
    }
    let transitions = api["transitions"].as_array().context("no transitions in /api/state")?;
    let file_alerts: Vec<Value> = alerts.iter().take(transitions.len()).map(serde_json::to_value).collect::<Result<_, _>>()?;
    ensure!(transitions == &file_alerts, "/api/state transitions {transitions:?} differ from alerts.ndjson {file_alerts:?}");
    Ok(())
}

/// `/api/state`, read while the job runs.
fn state_of(url: &str) -> anyhow::Result<Value> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let answer = http_get(addr, "/api/state", &[])?;
    ensure!(answer.status == 200, "/api/state: {}", answer.status);
    Ok(serde_json::from_str(&answer.body)?)
}

/// Checks the page while the job runs; returns the name of the rule it shows firing.
fn watch_the_page(running: &Running) -> anyhow::Result<String> {
    let mut browser = Browser::start(1400, 1000)?;
    browser.open(&running.url)?;
    browser.wait_for("document.getElementById('conn').textContent === 'live'", Duration::from_secs(10))?;

    // Throughput moves while records flow: two readings 3 s apart differ (a few tries,
    // since the quota can stall the job's fetches for a moment).
    wait_page(&mut browser, "records flowing", Duration::from_secs(20), |p| p["recordsIn"].as_str().is_some_and(|n| n != "0"))?;
    let mut unchanged = Vec::new();
    for _ in 0..3 {
        let first = read_page(&mut browser)?;
        browser.idle(Duration::from_secs(3))?;
        let second = read_page(&mut browser)?;
        unchanged = ["recordsIn", "delivered", "inPerS"].into_iter().filter(|f| first[*f] == second[*f]).map(|f| format!("{f} stayed {}", first[f])).collect();
        if unchanged.is_empty() {
            break;
        }
    }
    ensure!(unchanged.is_empty(), "throughput figures did not change in 3 s: {unchanged:?}");

    // The held-back partitions: their lag, WARN, in red.
    let warned = wait_page(&mut browser, "a partition in WARN", Duration::from_secs(30), |p| {
        p["partitions"].as_array().is_some_and(|ps| ps.iter().any(|r| r["status"] == "WARN" && r["lag"].as_str().and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l > 0)))
    })?;
    let red = warned["partitions"].as_array().into_iter().flatten().filter(|r| r["status"] == "WARN").all(|r| r["bg"] == "rgb(214, 39, 40)");
    ensure!(red, "a WARN status is not shown red: {warned:#}");

    // The hostile rule fires, shown by its name as text.
    let page = wait_page(&mut browser, "the hostile rule firing", Duration::from_secs(30), |p| {
        p["rules"].as_array().is_some_and(|rs| rs.iter().any(|r| r["name"] == HOSTILE_RULE && r["state"] == "firing" && r["text"] == HOSTILE_RULE))
    })?;
    let fields: Vec<&str> = page["fields"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    ensure!(fields.contains(&SCRIPT_FIELD) && fields.contains(&IMG_FIELD), "the hostile field names are not shown as text: {fields:?}");
    // Profile reports linked and served.
    let page = wait_page(&mut browser, "a profile report linked", Duration::from_secs(20), |p| p["profiles"].as_array().is_some_and(|a| !a.is_empty()))?;
    let link = page["profiles"][0].as_str().context("a profile link")?.to_owned();
    let addr = running.url.trim_start_matches("http://").trim_end_matches('/');
    let report = http_get(addr, &format!("/{link}"), &[])?;
    ensure!(report.status == 200 && report.body.contains("</html>"), "{link}: {} {}", report.status, &report.body[..report.body.len().min(200)]);

    // Nothing from the data ran or became an element.
    let clean = browser.eval(
        "document.documentElement.getAttribute('data-tidewatch-pwned') === null && document.scripts.length === 1 \
         && document.querySelectorAll('img, #live script, #live [onload], #live [onerror]').length === 0",
    )?;
    ensure!(clean == Value::Bool(true), "a name from the data ran or became an element");

    // The screenshot, at a moment that shows a WARN and the rule firing when one comes.
    let both = |p: &Value| {
        let warn = p["partitions"].as_array().is_some_and(|ps| ps.iter().any(|r| r["status"] == "WARN"));
        warn && p["rules"].as_array().is_some_and(|rs| rs.iter().any(|r| r["state"] == "firing"))
    };
    let _ = wait_page(&mut browser, "a WARN and a rule firing together", Duration::from_secs(15), both);
    let png = artifacts_dir()?.join("dashboard.png");
    browser.screenshot(&png)?;
    eprintln!("dashboard screenshot: {}", png.display());
    if std::env::var_os("TIDEWATCH_DOCS_SCREENSHOT").is_some() {
        std::fs::copy(&png, PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png"))?;
    }
    browser.idle(Duration::from_millis(500))?;
    ensure!(browser.troubles.is_empty(), "the page had trouble: {:#?}", browser.troubles);
    Ok(HOSTILE_RULE.to_owned())
}

/// The job's file config with the dashboard on `addr` and `token`, no broker contacted.
fn door_config(addr: &str, token: &str, dir: &Path) -> FileConfig {
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", real_brokers());
    FileConfig {
        job: JobConfig { input_topic: unique_topic("door-in"), output_topic: unique_topic("door-out"), ..JobConfig::default() },
        kafka,
        observe: ObserveConfig::default(),
        output: OutputConfig { dir: dir.to_owned(), metrics_addr: addr.to_owned(), dashboard: true, dashboard_token: token.to_owned() },
        opensearch: OpenSearchConfig::default(),
        profile: ProfileConfig::default(),
    }
}

#[test]
fn non_loopback_address_without_a_token_is_refused_at_start_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let result = run_observed_core(door_config("0.0.0.0:0", "", dir.path()), &Cluster::default(), JobControl::new(), Arc::new(ObserverMetrics::default()), Vec::new(), |_| {});
    let error = format!("{:#}", result.err().context("the job started on 0.0.0.0 without a token")?);
    ensure!(error.contains("output.dashboard_token") && error.contains("0.0.0.0"), "the refusal does not name the key and the address: {error}");
    ensure!(started.elapsed() < Duration::from_secs(5), "refused only after {:?}", started.elapsed());
    // A token the query and cookie cannot carry is refused by name too.
    let result = run_observed_core(door_config("0.0.0.0:0", "a b;c", dir.path()), &Cluster::default(), JobControl::new(), Arc::new(ObserverMetrics::default()), Vec::new(), |_| {});
    let error = format!("{:#}", result.err().context("the job started with a token holding `; `")?);
    ensure!(error.contains("output.dashboard_token"), "{error}");
    Ok(())
}

#[test]
fn real_broker_with_a_token_requests_without_it_get_401() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let input = unique_topic("door-in");
    let token = "door-token-16.a~b_c";
    let output = OutputConfig { metrics_addr: "0.0.0.0:0".to_owned(), dashboard_token: token.to_owned(), ..OutputConfig::default() };
    let running = start_job(&brokers, &input, &unique_topic("tw-door"), output, ObserveConfig::default())?;
    let checked = check_the_door(&running.url, token);
    running.stop()?;
    checked
}

fn check_the_door(url: &str, token: &str) -> anyhow::Result<()> {
    let port = url.trim_start_matches("http://").split('/').next().and_then(|a| a.rsplit_once(':')).map(|(_, p)| p).context("no port in the URL")?;
    ensure!(url.starts_with("http://0.0.0.0:"), "the URL {url} is not of the address bound");
    let addr = format!("127.0.0.1:{port}");
    for path in ["/", "/metrics", "/api/state", "/api/events", "/dashboard.js", "/profiles/"] {
        let answer = http_get(&addr, path, &[])?;
        ensure!(answer.status == 401, "{path} without the token: {} (expected 401)", answer.status);
        let wrong = http_get(&addr, path, &["Authorization: Bearer door-token-17.a~b_c"])?;
        ensure!(wrong.status == 401, "{path} with a wrong token: {}", wrong.status);
    }
    for path in ["/", "/metrics", "/api/state"] {
        let answer = http_get(&addr, path, &[&format!("Authorization: Bearer {token}")])?;
        ensure!(answer.status == 200, "{path} with the token as a header: {}", answer.status);
    }
    let answer = http_get(&addr, &format!("/?token={token}"), &[])?;
    ensure!(answer.status == 200, "/ with the token in the query: {}", answer.status);
    let cookie = answer.headers.iter().find_map(|h| h.strip_prefix("set-cookie: ")).context("no cookie set by a query token")?;
    let cookie = cookie.split(';').next().context("an empty cookie")?;
    let answer = http_get(&addr, "/api/state", &[&format!("Cookie: {cookie}")])?;
    ensure!(answer.status == 200, "/api/state with the cookie: {}", answer.status);
    Ok(())
}

/// `tidewatch demo` prints the dashboard's URL first, and within 30 s the page shows
/// the lag of both partitions (partition 0, with three times the visits, behind) and the
/// demo's `page_empty` alert firing. Needs no broker (the demo's mock cluster).
#[test]
fn demo_prints_the_dashboard_url_first_and_the_page_shows_lag_and_its_alert_within_30_s() -> anyhow::Result<()> {
    use std::io::BufRead as _;
    chromium_path()?;
    let dir = tempfile::tempdir()?;
    let bin = tidewatch_tests::tidewatch_bin()?;
    let started = Instant::now();
    let mut demo = std::process::Command::new(bin)
        .args(["demo", "--duration", "40s", "--quiet", "--metrics-addr", "127.0.0.1:0", "--out"])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = demo.stdout.take().context("the demo's stdout")?;
    let mut first = String::new();
    std::io::BufReader::new(stdout).read_line(&mut first)?;
    let checked = (|| {
        let url = first.trim().strip_prefix("tidewatch demo: the live dashboard is at ").with_context(|| format!("the demo's first line is {first:?}"))?.to_owned();
        let mut browser = Browser::start(1400, 1000)?;
        browser.open(&url)?;
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        let page = wait_page(&mut browser, "page_empty firing and partition 0 behind", left, |p| {
            let firing = p["rules"].as_array().is_some_and(|rs| rs.iter().any(|r| r["name"] == "page_empty" && r["state"] == "firing"));
            let lag = |n: &str| p["partitions"].as_array().and_then(|ps| ps.iter().find(|r| r["p"] == n)).and_then(|r| r["lag"].as_str()?.parse::<i64>().ok());
            firing && lag("1").is_some() && lag("0").is_some_and(|l| l > 0)
        })?;
        eprintln!("after {:.1} s the demo's page shows {}", started.elapsed().as_secs_f64(), page["partitions"]);
        ensure!(browser.troubles.is_empty(), "the demo's page had trouble: {:#?}", browser.troubles);
        Ok(())
    })();
    let _ = demo.kill();
    let _ = demo.wait();
    checked
}

/// The DevTools harness itself can fail: an uncaught error, a `console.error` and a
/// failed load on a page are each caught, and a quiet page has none. Guards the tests
/// above against a harness that would pass silently.
#[test]
fn devtools_harness_catches_errors_console_messages_and_failed_loads() -> anyhow::Result<()> {
    let mut browser = Browser::start(800, 600)?;
    browser.open("data:text/html,<!doctype html><title>quiet</title><p>quiet")?;
    browser.idle(Duration::from_millis(500))?;
    ensure!(browser.troubles.is_empty(), "a quiet page had trouble: {:?}", browser.troubles);
    for (page, expected) in [
        ("<script>undefinedFunction()</script>", "undefinedFunction"),
        ("<script>console.error('deliberate')</script>", "deliberate"),
        ("<img src=\"http://127.0.0.1:9/missing.png\">", "failed load"),
    ] {
        browser.troubles.clear();
        browser.open(&format!("data:text/html,<!doctype html>{page}"))?;
        browser.idle(Duration::from_secs(1))?;
        ensure!(browser.troubles.iter().any(|t| t.0.contains(expected)), "{page}: not caught ({expected}): {:?}", browser.troubles);
    }
    Ok(())
}

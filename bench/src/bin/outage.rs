//! OpenSearch outage: does the copy slow down while OpenSearch is away?
//!
//! Two runs side by side, the same settings: `tidewatch run` with the default observers,
//! shipping them to an OpenSearch node of the benchmark's own, while `tidewatch generate`
//! offers a steady rate. In the second run the node is stopped for `--outage` (60 s)
//! after `--before`, then started again on its data. Compares, over the outage's span in
//! both runs: records copied per second, the job's CPU s per M records and its lag; and
//! afterwards, whether every stats and alert document reached OpenSearch (or how many the
//! dropped count says did not). Writes `bench/results/outage.{json,md}`.
//!
//! ```text
//! scripts/kafka.sh start
//! cargo run --release -p tidewatch-bench --bin outage -- [--rate 40000] [--outage 60s]
//! ```
//!
//! The rate is one the job keeps up with (about a third of one worker's copy rate here),
//! so the figures say whether the outage disturbs the copy — slows it, costs CPU, lets lag
//! build — not the job's peak rate (`suite` measures that).

#![allow(clippy::print_stdout)] // the summary table is the program's output

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use serde::Serialize;
use tidewatch_bench::{delete_topics, process_cpu_seconds, tidewatch_beside, write_results, Killer, Machine};
use tidewatch_tests::exposition::scrape_parsed;
use tidewatch_tests::{committed, create_topics, end_offsets, free_ports, http_json, require_broker, unique_topic};

#[derive(Debug, Parser)]
struct Args {
    /// Bootstrap servers of the real broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Records per second offered.
    #[arg(long, default_value_t = 40_000)]
    rate: u64,
    /// Offering time before the outage.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    before: Duration,
    /// How long OpenSearch is away.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// Offering time after the outage.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    after: Duration,
    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Worker threads of the job.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// The `tidewatch` binary (default: the one beside this binary, built first).
    #[arg(long, value_name = "PATH")]
    tidewatch: Option<PathBuf>,
    /// Write the results under this name (`bench/results/<name>.{json,md}`).
    #[arg(long, default_value = "outage")]
    name: String,
}

/// One sample of a running job.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    t_s: f64,
    cpu_s: f64,
    copied: i64,
    /// Input records not yet committed by the job's group.
    lag: i64,
}

/// One run's figures.
#[derive(Debug, Serialize)]
struct Run {
    outage: bool,
    /// Over the outage's span (the same span in the run without one).
    copied_per_s: f64,
    cpu_s_per_m: f64,
    max_lag: i64,
    /// Over the whole run.
    max_lag_all: i64,
    records_copied: i64,
    /// Stats and alert documents the job wrote to its files, found in OpenSearch, and
    /// dropped by its sink (`tidewatch_opensearch_dropped`).
    documents_written: usize,
    documents_in_opensearch: usize,
    documents_dropped: f64,
    job_exit_ok: bool,
    samples: Vec<Sample>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    rate: u64,
    before_s: f64,
    outage_s: f64,
    after_s: f64,
    partitions: i32,
    workers: usize,
    baseline: Run,
    with_outage: Run,
    copy_rate_ratio: f64,
    cpu_ratio: f64,
}

/// `scripts/opensearch.sh ACTION` for the node that `env` names (its ports and state dir).
fn opensearch_script(env: &[(String, String)], action: &str, keep_data: bool) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/opensearch.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(action)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("TIDEWATCH_OPENSEARCH_KEEP_DATA", if keep_data { "1" } else { "0" })
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("opensearch.sh {action} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// An OpenSearch node of the benchmark's own (`scripts/opensearch.sh`), stopped on drop.
struct Node {
    env: Vec<(String, String)>,
    url: String,
    _state: tempfile::TempDir,
}

impl Node {
    fn start() -> anyhow::Result<Node> {
        let ports = free_ports(2)?;
        let state = tempfile::tempdir()?;
        let env = vec![
            ("TIDEWATCH_OPENSEARCH_PORT".to_owned(), ports[0].to_string()),
            ("TIDEWATCH_OPENSEARCH_TRANSPORT_PORT".to_owned(), ports[1].to_string()),
            ("TIDEWATCH_STATE_DIR".to_owned(), state.path().display().to_string()),
        ];
        let node = Node { env, url: format!("http://127.0.0.1:{}", ports[0]), _state: state };
        node.run("start", false)?;
        Ok(node)
    }

    fn run(&self, action: &str, keep_data: bool) -> anyhow::Result<()> {
        opensearch_script(&self.env, action, keep_data)
    }

    /// Documents in `index` (0 when it does not exist).
    fn count(&self, index: &str) -> anyhow::Result<usize> {
        http_json("POST", &format!("{}/{index}/_refresh", self.url), None)?;
        let (status, reply) = http_json("GET", &format!("{}/{index}/_count", self.url), None)?;
        Ok(if status == 200 { reply["count"].as_u64().unwrap_or(0) as usize } else { 0 })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.run("stop", false);
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().filter(|l| !l.trim().is_empty()).count())
}

/// Waits until the job's OpenSearch sink holds nothing; its dropped count then.
fn sink_drained(metrics: &str, timeout: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, exposition) = scrape_parsed(metrics)?;
        if exposition.sum("tidewatch_opensearch_buffered", &[]) == Some(0.0) {
            return Ok(exposition.sum("tidewatch_opensearch_dropped_total", &[]).unwrap_or(0.0));
        }
        if Instant::now() > deadline {
            bail!("the OpenSearch sink still holds documents {timeout:?} after the outage");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn spawn_job(bin: &Path, args: &Args, topics: (&str, &str, &str), dir: &Path, url: &str, metrics: &str) -> anyhow::Result<Killer> {
    let job = Command::new(bin)
        .arg("run")
        .args(["--brokers", &args.brokers, "--input", topics.0, "--output", topics.1, "--group", topics.2])
        .args(["-w", &args.workers.to_string(), "--metrics-addr", metrics, "--opensearch", url, "--out"])
        .arg(dir.join("out"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("job.log"))?)
        .spawn()
        .context("starting tidewatch run")?;
    Ok(Killer(Some(job)))
}

fn spawn_generator(bin: &Path, args: &Args, input: &str, dir: &Path) -> anyhow::Result<Killer> {
    let offering = args.before + args.outage + args.after;
    let generator = Command::new(bin)
        .args(["generate", "--brokers", &args.brokers, "--topic", input, "--rate", &args.rate.to_string(), "--seed", "11"])
        .args(["--duration", &humantime::format_duration(offering).to_string(), "--no-progress"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("generate.log"))?)
        .spawn()
        .context("starting tidewatch generate")?;
    Ok(Killer(Some(generator)))
}

/// One run: samples every second until the input is offered and copied; with `outage`,
/// the node is away from `before` to `before + outage`.
fn run(bin: &Path, args: &Args, outage: bool) -> anyhow::Result<Run> {
    let node = Node::start()?;
    let (input, output, group) = (unique_topic("outage-in"), unique_topic("outage-out"), unique_topic("outage"));
    create_topics(&args.brokers, &[&input, &output], args.partitions)?;
    let dir = tempfile::tempdir()?;
    let metrics = format!("127.0.0.1:{}", free_ports(1)?[0]);
    let mut job = spawn_job(bin, args, (&input, &output, &group), dir.path(), &node.url, &metrics)?;
    let pid = job.0.as_ref().map(Child::id);
    let mut generator = spawn_generator(bin, args, &input, dir.path())?;
    let started = Instant::now();
    let (down_at, up_at) = (args.before.as_secs_f64(), (args.before + args.outage).as_secs_f64());
    let mut restart: Option<std::thread::JoinHandle<anyhow::Result<()>>> = None;
    let mut node_down = false;
    let mut samples = Vec::new();
    let mut offered = false;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let t = started.elapsed().as_secs_f64();
        if outage && !node_down && t >= down_at {
            node.run("stop", false)?;
            node_down = true;
        }
        if outage && node_down && restart.is_none() && t >= up_at {
            // The start waits for the node to be ready (~15 s): sampling goes on meanwhile.
            let env = node.env.clone();
            restart = Some(std::thread::spawn(move || opensearch_script(&env, "start", true)));
        }
        if let Some(status) = job.0.as_mut().map(Child::try_wait).transpose()?.flatten() {
            bail!("the job exited early with {status}: {}", std::fs::read_to_string(dir.path().join("job.log")).unwrap_or_default());
        }
        let done: i64 = committed(&args.brokers, &group, &input, args.partitions)?.values().map(|o| o.unwrap_or(0)).sum();
        let produced: i64 = end_offsets(&args.brokers, &input, args.partitions)?.values().sum();
        let copied: i64 = end_offsets(&args.brokers, &output, args.partitions)?.values().sum();
        // The time of the reading itself: stopping the node above takes seconds.
        samples.push(Sample { t_s: started.elapsed().as_secs_f64(), cpu_s: process_cpu_seconds(pid), copied, lag: produced - done });
        if !offered {
            if let Some(status) = generator.0.as_mut().map(Child::try_wait).transpose()?.flatten() {
                anyhow::ensure!(status.success(), "the generator failed: {status}");
                offered = true;
                generator.0 = None;
            }
        }
        if offered && produced == done && restart.as_ref().is_none_or(std::thread::JoinHandle::is_finished) {
            break;
        }
        anyhow::ensure!(t < up_at + args.after.as_secs_f64() + 120.0, "the job did not catch up within 2 minutes of the end");
    }
    if let Some(restart) = restart {
        restart.join().map_err(|_| anyhow::anyhow!("the restart thread panicked"))??;
    }
    let dropped = sink_drained(&metrics, Duration::from_secs(120))?;
    let mut child = job.0.take().context("no job")?;
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    let job_exit_ok = child.wait()?.success();
    let out = dir.path().join("out");
    let documents_written = lines(&out.join("stats.ndjson")) + lines(&out.join("alerts.ndjson"));
    let documents_in_opensearch = node.count("visits_observation_stats")? + node.count("visits_observation_alerts")?;
    if let Err(error) = delete_topics(&args.brokers, &[&input, &output]) {
        tracing::warn!(%error, "could not delete the run's topics");
    }
    Ok(summarise(outage, samples, (down_at, up_at), (documents_written, documents_in_opensearch, dropped), job_exit_ok))
}

fn summarise(outage: bool, samples: Vec<Sample>, span: (f64, f64), documents: (usize, usize, f64), job_exit_ok: bool) -> Run {
    let within: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= span.0 && s.t_s <= span.1).collect();
    let (first, last) = (within.first(), within.last());
    let (copied, cpu, seconds) = match (first, last) {
        (Some(a), Some(b)) => ((b.copied - a.copied) as f64, b.cpu_s - a.cpu_s, b.t_s - a.t_s),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    };
    Run {
        outage,
        copied_per_s: copied / seconds,
        cpu_s_per_m: cpu / (copied / 1e6),
        max_lag: within.iter().map(|s| s.lag).max().unwrap_or(0),
        max_lag_all: samples.iter().map(|s| s.lag).max().unwrap_or(0),
        records_copied: samples.last().map_or(0, |s| s.copied),
        documents_written: documents.0,
        documents_in_opensearch: documents.1,
        documents_dropped: documents.2,
        job_exit_ok,
        samples,
    }
}

fn table(report: &Report) -> String {
    let (b, o) = (&report.baseline, &report.with_outage);
    let mut md = format!(
        "OpenSearch outage, {} records/s offered for {:.0} s (the node away from {:.0} s to {:.0} s in the second run), {} partitions, {} worker(s), \
         default observers shipped to OpenSearch, {} CPUs ({})\n\n",
        report.rate,
        report.before_s + report.outage_s + report.after_s,
        report.before_s,
        report.before_s + report.outage_s,
        report.partitions,
        report.workers,
        report.machine.cpus,
        report.machine.cpu_model,
    );
    md.push_str("| over the outage's span | without outage | with outage | ratio |\n|---|---:|---:|---:|\n");
    md.push_str(&format!("| records copied per second | {:.0} | {:.0} | {:.3} |\n", b.copied_per_s, o.copied_per_s, report.copy_rate_ratio));
    md.push_str(&format!("| job CPU s per M records | {:.2} | {:.2} | {:.3} |\n", b.cpu_s_per_m, o.cpu_s_per_m, report.cpu_ratio));
    md.push_str(&format!("| max lag (uncommitted input records) | {} | {} | |\n", b.max_lag, o.max_lag));
    md.push_str("\n| over the whole run | without outage | with outage |\n|---|---:|---:|\n");
    md.push_str(&format!("| max lag | {} | {} |\n", b.max_lag_all, o.max_lag_all));
    md.push_str(&format!("| records copied | {} | {} |\n", b.records_copied, o.records_copied));
    md.push_str(&format!("| documents written / in OpenSearch / dropped | {} / {} / {} | {} / {} / {} |\n", b.documents_written, b.documents_in_opensearch, b.documents_dropped, o.documents_written, o.documents_in_opensearch, o.documents_dropped));
    md.push_str(&format!("| job exit after SIGTERM | {} | {} |\n", if b.job_exit_ok { "0" } else { "**failed**" }, if o.job_exit_ok { "0" } else { "**failed**" }));
    md.push_str("\nSamples every second; the series are in `outage.json`. A ratio of 1 is an outage the copy did not notice.\n");
    md
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("info").init();
    let args = Args::parse();
    require_broker(&args.brokers)?;
    let bin = match &args.tidewatch {
        Some(path) => path.clone(),
        None => tidewatch_beside()?,
    };
    tracing::info!(rate = args.rate, outage = ?args.outage, "run without an outage");
    let baseline = run(&bin, &args, false)?;
    tracing::info!("run with the outage");
    let with_outage = run(&bin, &args, true)?;
    let report = Report {
        machine: Machine::current(),
        rate: args.rate,
        before_s: args.before.as_secs_f64(),
        outage_s: args.outage.as_secs_f64(),
        after_s: args.after.as_secs_f64(),
        partitions: args.partitions,
        workers: args.workers,
        copy_rate_ratio: with_outage.copied_per_s / baseline.copied_per_s,
        cpu_ratio: with_outage.cpu_s_per_m / baseline.cpu_s_per_m,
        baseline,
        with_outage,
    };
    let md = table(&report);
    println!("{md}");
    write_results(&args.name, &report, &md)?;
    for run in [&report.baseline, &report.with_outage] {
        if run.documents_in_opensearch as f64 + run.documents_dropped != run.documents_written as f64 {
            bail!("documents: {} written, {} in OpenSearch, {} dropped: some went missing uncounted", run.documents_written, run.documents_in_opensearch, run.documents_dropped);
        }
    }
    Ok(())
}

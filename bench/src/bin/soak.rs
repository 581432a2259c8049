//! Soak: `tidewatch run` with every observer on (quality, lag, stats windows, alerts,
//! value rules, copy reconciliation, NDJSON files, /metrics, OpenSearch when it answers)
//! against the local broker for a long time while `tidewatch generate` offers a steady
//! rate. Samples the job's resident memory (VmRSS), CPU, lag and records copied every few
//! seconds; writes `bench/results/soak.{json,md}` with the series and its summary, and
//! whether memory stays flat within 10 % after the warm-up.
//!
//! ```text
//! scripts/kafka.sh start
//! cargo run --release -p tidewatch-bench --bin soak -- [--duration 10m] [--rate 5000]
//! ```
//!
//! Delivery semantics of the job under test: at-least-once (the default), or
//! exactly-once with `--exactly-once`.

#![allow(clippy::print_stdout)] // the summary table is the program's output

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use serde::Serialize;
use tidewatch_bench::{delete_topics, median, process_cpu_seconds, tidewatch_beside, write_results, Killer, Machine};
use tidewatch_tests::{committed, create_topics, end_offsets, require_broker, unique_topic};

/// Memory counts as flat when it grows by at most this share after the warm-up.
const FLAT_WITHIN: f64 = 0.10;

#[derive(Debug, Parser)]
struct Args {
    /// Bootstrap servers of the real broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// How long the producer offers records (the job runs a little longer to drain).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Records per second offered.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Worker threads of the job.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Time between samples.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    sample: Duration,
    /// Samples before this much time are the warm-up, left out of the summary.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// OpenSearch to index the observations into: a URL, `auto` (the local node if it
    /// answers) or `none`.
    #[arg(long, default_value = "auto")]
    opensearch: String,
    /// Run the job in exactly-once mode.
    #[arg(long)]
    exactly_once: bool,
    /// The `tidewatch` binary to soak (default: the release build beside this one, built first).
    #[arg(long, value_name = "PATH")]
    tidewatch: Option<PathBuf>,
    /// Write the results under this name (`bench/results/<name>.{json,md}`).
    #[arg(long, default_value = "soak")]
    name: String,
}

/// One sample of the running job.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    /// Seconds since the job started.
    t_s: f64,
    /// Resident memory of the job's process, MiB.
    rss_mib: f64,
    /// CPU seconds the job's process has used so far.
    cpu_s: f64,
    /// Records in the input topic.
    produced: i64,
    /// Records in the output topic.
    copied: i64,
    /// Input records not yet committed by the job's group (its lag as Kafka sees it).
    lag: i64,
}

#[derive(Debug, Serialize)]
struct Summary {
    samples_after_warmup: usize,
    first_rss_mib: f64,
    median_rss_mib: f64,
    max_rss_mib: f64,
    last_rss_mib: f64,
    /// Least-squares slope of RSS over the samples after the warm-up.
    slope_mib_per_min: f64,
    /// (max − first) / first after the warm-up.
    growth_max_over_first: f64,
    /// The fitted growth over the whole post-warm-up span, as a share of the first sample.
    fitted_growth: f64,
    flat_within_10_percent: bool,
    /// The second half of the post-warm-up samples: median, (max − min) / median, and the
    /// fitted growth over that half as a share of its median — whether memory has
    /// settled on a plateau, whatever the ramp before it.
    second_half_median_rss_mib: f64,
    second_half_spread: f64,
    second_half_fitted_growth: f64,
    second_half_flat_within_10_percent: bool,
    max_lag: i64,
    median_lag: i64,
    final_lag: i64,
    records_produced: i64,
    records_copied: i64,
    /// Mean records per second the job copied over the run.
    copied_per_s: f64,
    /// CPU seconds of the job per million records copied.
    cpu_s_per_m_records: f64,
    job_exit_ok: bool,
    stats_documents: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    duration_s: f64,
    rate: u64,
    partitions: i32,
    workers: usize,
    guarantee: &'static str,
    observers: Vec<&'static str>,
    opensearch: Option<String>,
    summary: Summary,
    samples: Vec<Sample>,
}

/// VmRSS of a process in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")?;
    Ok(kib / 1024.0)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

fn opensearch_url(choice: &str) -> Option<String> {
    match choice {
        "none" => None,
        "auto" => {
            let url = tidewatch_tests::opensearch_url();
            tidewatch_tests::require_opensearch(&url).is_ok().then_some(url)
        }
        url => Some(url.to_owned()),
    }
}

/// The job's config file: the default observers plus value rules and reconciliation.
fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("soak.toml");
    std::fs::write(
        &path,
        r#"[observe]
fields = ["event_time", "user_id", "page", "context.user.login", "context.technical.browser"]
window = "10s"
reconcile = true

[[observe.rules]]
name = "page_known"
field = "page"
regex = "^(index|contact|home|main|about|categories|category_[0-9]+|page_[0-9]+)$"

[[observe.rules]]
name = "browser_known"
field = "context.technical.browser"
allowed = ["Chrome", "Firefox", "Safari", "Edge", "Opera"]

[[observe.rules]]
name = "version_range"
field = "context.technical.browser_version"
min = 1.0
max = 200.0

[[observe.rules]]
name = "fresh_events"
field = "event_time"
max_age = "1h"
"#,
    )?;
    Ok(path)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("info").init();
    let args = Args::parse();
    require_broker(&args.brokers)?;
    let bin = match &args.tidewatch {
        Some(path) => path.clone(),
        None => tidewatch_beside()?,
    };
    let (input, output, group) = (unique_topic("soak-in"), unique_topic("soak-out"), unique_topic("soak"));
    create_topics(&args.brokers, &[&input, &output], args.partitions)?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path())?;
    let opensearch = opensearch_url(&args.opensearch);
    let metrics_port = tidewatch_tests::free_ports(1)?[0];

    let mut job_cmd = Command::new(&bin);
    job_cmd
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--brokers", &args.brokers, "--input", &input, "--output", &output, "--group", &group])
        .args(["-w", &args.workers.to_string(), "--metrics-addr", &format!("127.0.0.1:{metrics_port}"), "--out"])
        .arg(dir.path().join("out"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("job.log"))?);
    if let Some(url) = &opensearch {
        job_cmd.args(["--opensearch", url]);
    }
    if args.exactly_once {
        job_cmd.arg("--exactly-once");
    }
    let mut job = Killer(Some(job_cmd.spawn().context("starting tidewatch run")?));
    let pid = job.0.as_ref().map(Child::id).context("no job")?;
    let started = Instant::now();

    let generator = Command::new(&bin)
        .args(["generate", "--brokers", &args.brokers, "--topic", &input, "--rate", &args.rate.to_string(), "--seed", "11"])
        .args(["--duration", &humantime::format_duration(args.duration).to_string(), "--no-progress"])
        .args(["--null-share", "0.05", "--empty-share", "0.02", "--missing-share", "0.02", "--unparseable-share", "0.005"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("generate.log"))?)
        .spawn()
        .context("starting tidewatch generate")?;
    let mut generator = Killer(Some(generator));
    tracing::info!(pid, input, output, rate = args.rate, duration = ?args.duration, ?opensearch, "soak started");

    // Records produced, copied, and not yet committed.
    let kafka_figures = || -> anyhow::Result<(i64, i64, i64)> {
        // Committed first: the input only grows meanwhile, so the lag is never negative.
        let done: i64 = committed(&args.brokers, &group, &input, args.partitions)?.values().map(|o| o.unwrap_or(0)).sum();
        let produced: i64 = end_offsets(&args.brokers, &input, args.partitions)?.values().sum();
        let copied: i64 = end_offsets(&args.brokers, &output, args.partitions)?.values().sum();
        Ok((produced, copied, produced - done))
    };
    let sample = |t0: Instant| -> anyhow::Result<Sample> {
        let (produced, copied, lag) = kafka_figures()?;
        Ok(Sample { t_s: t0.elapsed().as_secs_f64(), rss_mib: rss_mib(pid)?, cpu_s: process_cpu_seconds(Some(pid)), produced, copied, lag })
    };

    // Offer for the duration; then let the job drain (at most a minute).
    let mut samples = Vec::new();
    let mut generator_ok = None;
    let drain_deadline = args.duration + Duration::from_secs(60);
    loop {
        std::thread::sleep(args.sample);
        if let Some(status) = job.0.as_mut().map(Child::try_wait).transpose()?.flatten() {
            bail!("the job exited early with {status}: {}", std::fs::read_to_string(dir.path().join("job.log")).unwrap_or_default());
        }
        let s = sample(started)?;
        tracing::info!(t_s = s.t_s.round(), rss_mib = format!("{:.1}", s.rss_mib), lag = s.lag, copied = s.copied, "sample");
        samples.push(s);
        if generator_ok.is_none() {
            if let Some(status) = generator.0.as_mut().map(Child::try_wait).transpose()?.flatten() {
                generator_ok = Some(status.success());
                generator.0 = None;
            }
        }
        let drained = generator_ok.is_some() && samples.last().is_some_and(|s| s.lag == 0);
        if drained || started.elapsed() > drain_deadline {
            break;
        }
    }
    if generator_ok != Some(true) {
        bail!("the generator did not finish cleanly: {}", std::fs::read_to_string(dir.path().join("generate.log")).unwrap_or_default());
    }
    let mut child = job.0.take().context("no job")?;
    Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let job_exit_ok = child.wait()?.success();
    let (final_produced, final_copied, final_lag) = kafka_figures()?;
    let cpu_total = samples.last().map_or(f64::NAN, |s| s.cpu_s);
    let stats_documents = std::fs::read_to_string(dir.path().join("out").join("stats.ndjson")).map_or(0, |t| t.lines().count());

    let after: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= args.warmup.as_secs_f64()).collect();
    if after.len() < 2 {
        bail!("only {} samples after the warm-up; run longer", after.len());
    }
    let rss: Vec<f64> = after.iter().map(|s| s.rss_mib).collect();
    let first = rss[0];
    let max = rss.iter().copied().fold(f64::MIN, f64::max);
    let per_s = slope(&after.iter().map(|s| (s.t_s, s.rss_mib)).collect::<Vec<_>>());
    let span = after[after.len() - 1].t_s - after[0].t_s;
    let growth = (max - first) / first;
    let fitted = per_s * span / first;
    let lags: Vec<f64> = after.iter().map(|s| s.lag as f64).collect();
    let half = &after[after.len() / 2..];
    let half_rss: Vec<f64> = half.iter().map(|s| s.rss_mib).collect();
    let half_median = median(&half_rss);
    let half_spread = (half_rss.iter().copied().fold(f64::MIN, f64::max) - half_rss.iter().copied().fold(f64::MAX, f64::min)) / half_median;
    let half_span = half[half.len() - 1].t_s - half[0].t_s;
    let half_fitted = slope(&half.iter().map(|s| (s.t_s, s.rss_mib)).collect::<Vec<_>>()) * half_span / half_median;
    let summary = Summary {
        samples_after_warmup: after.len(),
        first_rss_mib: first,
        median_rss_mib: median(&rss),
        max_rss_mib: max,
        last_rss_mib: rss[rss.len() - 1],
        slope_mib_per_min: per_s * 60.0,
        growth_max_over_first: growth,
        fitted_growth: fitted,
        flat_within_10_percent: growth <= FLAT_WITHIN && fitted <= FLAT_WITHIN,
        second_half_median_rss_mib: half_median,
        second_half_spread: half_spread,
        second_half_fitted_growth: half_fitted,
        second_half_flat_within_10_percent: half_spread <= FLAT_WITHIN && half_fitted.abs() <= FLAT_WITHIN,
        max_lag: after.iter().map(|s| s.lag).max().unwrap_or(0),
        median_lag: median(&lags) as i64,
        final_lag,
        records_produced: final_produced,
        records_copied: final_copied,
        copied_per_s: final_copied as f64 / samples.last().map_or(1.0, |s| s.t_s),
        cpu_s_per_m_records: cpu_total / (final_copied.max(1) as f64 / 1e6),
        job_exit_ok,
        stats_documents,
    };

    let guarantee = if args.exactly_once { "exactly-once" } else { "at-least-once" };
    let mut md = format!(
        "Soak, {:.0} s at {} records/s offered (visits with faults), {} partitions, {} workers, {guarantee}, all observers on \
         (quality, lag, windows, alerts, value rules, reconciliation, NDJSON, /metrics{}), {} CPUs ({})\n\n",
        args.duration.as_secs_f64(),
        args.rate,
        args.partitions,
        args.workers,
        if opensearch.is_some() { ", OpenSearch" } else { "" },
        Machine::current().cpus,
        Machine::current().cpu_model,
    );
    let s = &summary;
    md.push_str("| figure | value |\n|---|---:|\n");
    md.push_str(&format!("| RSS after warm-up ({:.0} s): first | {:.1} MiB |\n", args.warmup.as_secs_f64(), s.first_rss_mib));
    md.push_str(&format!(
        "| RSS median | {:.1} MiB |\n| RSS max | {:.1} MiB |\n| RSS last | {:.1} MiB |\n",
        s.median_rss_mib, s.max_rss_mib, s.last_rss_mib
    ));
    md.push_str(&format!("| RSS slope (least squares) | {:+.3} MiB/min |\n", s.slope_mib_per_min));
    md.push_str(&format!(
        "| growth, max over first | {:+.1} % |\n| growth, fitted over the run | {:+.1} % |\n",
        s.growth_max_over_first * 100.0,
        s.fitted_growth * 100.0
    ));
    md.push_str(&format!(
        "| flat within 10 % (max and fit vs first after warm-up) | {} |\n",
        if s.flat_within_10_percent { "yes" } else { "**no**" }
    ));
    md.push_str(&format!(
        "| second half: median / spread (max−min) / fitted growth | {:.1} MiB / {:.1} % / {:+.1} % |\n",
        s.second_half_median_rss_mib,
        s.second_half_spread * 100.0,
        s.second_half_fitted_growth * 100.0
    ));
    md.push_str(&format!(
        "| second half flat within 10 % (a plateau) | {} |\n",
        if s.second_half_flat_within_10_percent { "yes" } else { "**no**" }
    ));
    md.push_str(&format!(
        "| lag (uncommitted input records): median / max / final | {} / {} / {} |\n",
        s.median_lag, s.max_lag, s.final_lag
    ));
    md.push_str(&format!("| records produced / copied | {} / {} |\n", s.records_produced, s.records_copied));
    md.push_str(&format!(
        "| copied per second (mean) | {:.0} |\n| job CPU s per M records | {:.1} |\n",
        s.copied_per_s, s.cpu_s_per_m_records
    ));
    md.push_str(&format!(
        "| stats documents written | {} |\n| job exit after SIGTERM | {} |\n",
        s.stats_documents,
        if s.job_exit_ok { "0" } else { "**failed**" }
    ));
    md.push_str(&format!("\n{} samples every {:.0} s; the series is in `{}.json`.\n", samples.len(), args.sample.as_secs_f64(), args.name));
    println!("{md}");

    let report = Report {
        machine: Machine::current(),
        duration_s: args.duration.as_secs_f64(),
        rate: args.rate,
        partitions: args.partitions,
        workers: args.workers,
        guarantee,
        observers: vec!["quality", "lag", "stats windows", "alerts", "value rules", "reconciliation", "ndjson", "metrics"],
        opensearch,
        summary,
        samples,
    };
    write_results(&args.name, &report, &md)?;
    if let Err(error) = delete_topics(&args.brokers, &[&input, &output]) {
        tracing::warn!(%error, "could not delete the soak's topics");
    }
    if !report.summary.job_exit_ok {
        bail!("the job did not exit 0 after SIGTERM");
    }
    Ok(())
}

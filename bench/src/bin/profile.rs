//! Dataset profiles: tidewatch's profile of generated visits beside ydata-profiling
//! (minimal) and whylogs over the same records, side by side. Needs no services.
//!
//! ```text
//! cargo run --release -p tidewatch-bench --bin profile -- [--records 100000] [--quick] [--skip-peers]
//! ```
//!
//! Generates the visits once with the project's generator (default fault mix: 10 % of
//! the records with nulled top-level fields, so the profiles see nulls and, under a
//! nulled `context`, missing fields), writes them as NDJSON for the peers
//! (`bench/peers/profiling/run.sh`, a Python virtualenv from PyPI), and times:
//!
//! - tidewatch, in memory: one single-threaded `ProfileBuilder` observing every value
//!   already in memory, `finish`, and `render_html` of the report;
//! - tidewatch, from NDJSON: the same, starting from reading the NDJSON file and splitting
//!   it into lines (what the peers' separately reported load does);
//! - the peers, whose timings exclude their load (read, `json.loads`,
//!   `pandas.json_normalize`), which is reported on its own.
//!
//! Wall time and CPU time are both reported (tidewatch's: its one thread's; the peers':
//! every thread of their process): on a shared machine the CPU time is the steadier.
//! tidewatch runs `--runs` times before the peers and as often after them.
//!
//! Prints a table with the ratios, writes `bench/results/profile.{json,md}` and a sample
//! report, `bench/results/profile-sample.html` (not with `--quick`).

#![allow(clippy::print_stdout)] // the result table is the program's output

use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Parser as _;
use serde::Serialize;
use tidewatch_bench::{cpu_seconds, median, results_dir, write_results, Machine};
use tidewatch_jobs::visits::{GeneratorConfig, VisitGenerator};
use tidewatch_engine::Record;
use tidewatch_operators::parse::{ParsedBatch, Parser, Watches};
use tidewatch_operators::profile::{render_html, PartialProfile, ProfileBuilder, ProfileConfig, WindowProfile};

/// The issue's goals: how many times faster than each peer.
const GOAL_VS_YDATA: f64 = 100.0;
const GOAL_VS_WHYLOGS: f64 = 30.0;

#[derive(Debug, clap::Parser)]
struct Args {
    /// Visits to profile.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Timed runs of each tidewatch contender before the peers (as many again after them).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Timed runs of each peer (ydata-profiling takes seconds per run).
    #[arg(long, default_value_t = 5)]
    peer_runs: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Smoke run: 10 000 records, one run of everything, no result files.
    #[arg(long)]
    quick: bool,
    /// Time tidewatch only (no Python).
    #[arg(long)]
    skip_peers: bool,
    /// Where the NDJSON file goes (default: a temporary directory, removed at the end).
    #[arg(long)]
    ndjson: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let mut args = Args::parse();
    if args.quick {
        args.records = args.records.min(10_000);
        args.runs = 1;
        args.peer_runs = 1;
    }
    if args.runs == 0 || args.peer_runs == 0 {
        bail!("--runs and --peer-runs must be at least 1");
    }

    let load_at_start = load_average();
    let visits = Visits::generate(args.records, args.seed);
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let ndjson = args.ndjson.clone().unwrap_or_else(|| tmp.path().join("visits.ndjson"));
    let lines = visits.write_ndjson(&ndjson)?;
    eprintln!(
        "generated {} visits (mean value {:.0} bytes); {} lines of NDJSON in {}",
        visits.values.len(),
        visits.mean_value_bytes(),
        lines,
        ndjson.display()
    );

    // tidewatch takes well under a second a run: it runs before the peers and, when
    // they ran, as often again after them, so that a load change on this shared machine
    // meets both.
    let mut in_memory = Vec::new();
    let mut from_file = Vec::new();
    let mut two_threads = Vec::new();
    let mut shared = Vec::new();
    let mut sample = None;
    let mut runs = Runs { in_memory: &mut in_memory, from_file: &mut from_file, two_threads: &mut two_threads, shared: &mut shared, sample: &mut sample };
    time_tidewatch(&args, &visits, &ndjson, &mut runs)?;
    let peers = if args.skip_peers { None } else { Some(run_peers(&ndjson, args.peer_runs)?) };
    if peers.is_some() {
        time_tidewatch(&args, &visits, &ndjson, &mut runs)?;
    }
    let sample = sample.context("no run")?;

    let records = visits.values.len() as u64;
    let tidewatch = vec![
        Contender::of_tidewatch(TW_IN_MEMORY, TW_IN_MEMORY_WHAT, &in_memory, records),
        Contender::of_tidewatch(TW_FROM_NDJSON, TW_FROM_NDJSON_WHAT, &from_file, records),
        Contender::of_tidewatch(TW_TWO_THREADS, TW_TWO_THREADS_WHAT, &two_threads, records),
        Contender::of_tidewatch(TW_SHARED, TW_SHARED_WHAT, &shared, records),
    ];
    let peers_ran = peers.is_some();
    let report = Report::new(&args, &visits, lines, tidewatch, peers, &sample, load_at_start);
    let table = markdown(&report);
    println!("{table}");
    if !args.quick {
        let html = results_dir().join("profile-sample.html");
        std::fs::create_dir_all(results_dir())?;
        std::fs::write(&html, &sample.html).with_context(|| format!("writing {}", html.display()))?;
        eprintln!("wrote the sample report {}", html.display());
        // Results without the peers would drop the comparison: kept only with them.
        if peers_ran {
            write_results("profile", &report, &table)?;
            eprintln!("wrote bench/results/profile.md and .json");
        }
    }
    Ok(())
}

/// The tidewatch runs so far, and the first run's output (the sample).
struct Runs<'a> {
    in_memory: &'a mut Vec<Timing>,
    from_file: &'a mut Vec<Timing>,
    two_threads: &'a mut Vec<Timing>,
    shared: &'a mut Vec<Timing>,
    sample: &'a mut Option<Output>,
}

/// `args.runs` timed runs of each tidewatch contender, interleaved; the first output
/// is kept as the sample.
fn time_tidewatch(args: &Args, visits: &Visits, ndjson: &Path, runs: &mut Runs<'_>) -> anyhow::Result<()> {
    let Runs { in_memory, from_file, two_threads, shared, sample } = runs;
    for _ in 0..args.runs {
        let (timing, output) = profile_in_memory(visits);
        eprintln!(
            "run {}: tidewatch in memory     {:.3} s, {:.3} CPU s (observe + finish {:.3} s, render_html {:.2} ms)",
            in_memory.len() + 1,
            timing.total_s,
            timing.cpu_s,
            timing.profile_s,
            timing.render_s * 1e3
        );
        in_memory.push(timing);
        sample.get_or_insert(output);
        let (timing, _) = profile_from_ndjson(ndjson, visits.window)?;
        eprintln!(
            "run {}: tidewatch from NDJSON   {:.3} s, {:.3} CPU s (read {:.3} s, observe + finish {:.3} s, render_html {:.2} ms)",
            from_file.len() + 1,
            timing.total_s,
            timing.cpu_s,
            timing.read_s,
            timing.profile_s,
            timing.render_s * 1e3
        );
        from_file.push(timing);
        let timing = profile_in_memory_two_threads(visits)?;
        eprintln!(
            "run {}: tidewatch on 2 threads  {:.3} s, {:.3} CPU s (observe + merge + finish {:.3} s, render_html {:.2} ms)",
            two_threads.len() + 1,
            timing.total_s,
            timing.cpu_s,
            timing.profile_s,
            timing.render_s * 1e3
        );
        two_threads.push(timing);
        let timing = profile_from_shared_parse(visits);
        eprintln!(
            "run {}: tidewatch, shared parse {:.3} s, {:.3} CPU s (observe + finish {:.3} s, render_html {:.2} ms)",
            shared.len() + 1,
            timing.total_s,
            timing.cpu_s,
            timing.profile_s,
            timing.render_s * 1e3
        );
        shared.push(timing);
    }
    Ok(())
}

/// The 1-minute load average, from /proc/loadavg (NaN when unavailable).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|t| t.split_whitespace().next().and_then(|l| l.parse().ok())).unwrap_or(f64::NAN)
}

/// CPU time of the calling thread in seconds, in nanoseconds' resolution (the scheduler's
/// on-CPU time from /proc/thread-self/schedstat); the process's ticks when unavailable.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()))
        .map_or_else(cpu_seconds, |ns| ns as f64 / 1e9)
}

const TW_IN_MEMORY: &str = "tidewatch, in memory";
const TW_IN_MEMORY_WHAT: &str = "one single-threaded ProfileBuilder observing every value already in memory (JSON parsing included), finish, render_html";
const TW_FROM_NDJSON: &str = "tidewatch, from the NDJSON file";
const TW_FROM_NDJSON_WHAT: &str = "read the NDJSON file, split it into lines, then as in memory (one thread)";

const TW_TWO_THREADS: &str = "tidewatch, in memory, 2 threads";
const TW_TWO_THREADS_WHAT: &str = "as in memory, the values split in two halves profiled on two threads (as two workers do), \
     the two partial profiles merged, finish, render_html; CPU s of both threads";

const TW_SHARED: &str = "tidewatch, from the shared parse";
const TW_SHARED_WHAT: &str = "as in memory, but the profile reads the parse the job's observers share (parsed beforehand, untimed, \
     in batches of 1 000 records as the job's workers do): what the profile adds to a job that parses every record for quality anyway";

/// One timed tidewatch run.
#[derive(Debug, Clone, Copy, Default)]
struct Timing {
    total_s: f64,
    cpu_s: f64,
    /// Reading the file (0 in memory).
    read_s: f64,
    /// Observing every value and finishing the profile.
    profile_s: f64,
    /// Rendering the HTML report.
    render_s: f64,
}

/// What a run produced, kept from the first run as the sample.
#[derive(Debug)]
struct Output {
    html: String,
    fields: usize,
    json_bytes: usize,
}

/// Profiles the values in memory: builder, finish, HTML.
fn profile_in_memory(visits: &Visits) -> (Timing, Output) {
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let config = ProfileConfig::default();
    let mut builder = ProfileBuilder::new(&config);
    for value in &visits.values {
        builder.observe(value.as_deref());
    }
    let profile = finish(builder, &config, visits.window);
    let profiled = Instant::now();
    let html = render_html(&profile);
    let end = Instant::now();
    let timing = Timing {
        total_s: (end - start).as_secs_f64(),
        cpu_s: thread_cpu_seconds() - cpu0,
        read_s: 0.0,
        profile_s: (profiled - start).as_secs_f64(),
        render_s: (end - profiled).as_secs_f64(),
    };
    let output = Output { fields: profile.summary.len(), json_bytes: profile.to_json().map_or(0, |j| j.len()), html };
    (timing, black_box(output))
}

/// Profiles the values from the job's shared parse: parsed beforehand (untimed), the
/// profile reads the parsed batches.
fn profile_from_shared_parse(visits: &Visits) -> Timing {
    let mut parser = Parser::new(&Watches::default(), None);
    let batches: Vec<ParsedBatch> = visits
        .values
        .chunks(1_000)
        .map(|chunk| {
            let records = chunk.iter().map(|value| Record { partition: 0, offset: 0, timestamp: None, key: None, value: value.as_deref().map(Into::into), headers: Vec::new() }).collect();
            parser.batch(records, |_| true)
        })
        .collect();
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let config = ProfileConfig::default();
    let mut builder = ProfileBuilder::new(&config);
    for batch in &batches {
        batch.views().for_each(|view| builder.observe_view(&view));
    }
    let profile = finish(builder, &config, visits.window);
    let profiled = Instant::now();
    let html = black_box(render_html(&profile));
    let end = Instant::now();
    drop(html);
    Timing {
        total_s: (end - start).as_secs_f64(),
        cpu_s: thread_cpu_seconds() - cpu0,
        read_s: 0.0,
        profile_s: (profiled - start).as_secs_f64(),
        render_s: (end - profiled).as_secs_f64(),
    }
}

/// Profiles the values in memory on two threads, one half each, then merges the two
/// partial profiles as the job merges its workers' (the exchange by field aside).
fn profile_in_memory_two_threads(visits: &Visits) -> anyhow::Result<Timing> {
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let config = ProfileConfig::default();
    let half = visits.values.len().div_ceil(2).max(1);
    let parts: Vec<(PartialProfile, f64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = visits
            .values
            .chunks(half)
            .map(|chunk| {
                let config = &config;
                scope.spawn(move || {
                    let cpu = thread_cpu_seconds();
                    let mut builder = ProfileBuilder::new(config);
                    for value in chunk {
                        builder.observe(value.as_deref());
                    }
                    let partial = builder.finish();
                    (partial, thread_cpu_seconds() - cpu)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().map_err(|_| anyhow::anyhow!("a profiling thread panicked"))).collect::<anyhow::Result<_>>()
    })?;
    let workers_cpu: f64 = parts.iter().map(|(_, cpu)| cpu).sum();
    let mut parts = parts.into_iter().map(|(partial, _)| partial);
    let mut total = parts.next().context("no records to profile")?;
    for partial in parts {
        total.merge(&partial);
    }
    let (start_ms, end_ms) = visits.window;
    let profile = WindowProfile::new(start_ms, end_ms, total, &config);
    let profiled = Instant::now();
    let html = render_html(&profile);
    let end = Instant::now();
    black_box(html);
    Ok(Timing {
        total_s: (end - start).as_secs_f64(),
        cpu_s: thread_cpu_seconds() - cpu0 + workers_cpu,
        read_s: 0.0,
        profile_s: (profiled - start).as_secs_f64(),
        render_s: (end - profiled).as_secs_f64(),
    })
}

/// Profiles the NDJSON file: read, split into lines, builder, finish, HTML.
fn profile_from_ndjson(path: &Path, window: (u64, u64)) -> anyhow::Result<(Timing, Output)> {
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let read = Instant::now();
    let config = ProfileConfig::default();
    let mut builder = ProfileBuilder::new(&config);
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        builder.observe(Some(line));
    }
    let profile = finish(builder, &config, window);
    let profiled = Instant::now();
    let html = render_html(&profile);
    let end = Instant::now();
    let timing = Timing {
        total_s: (end - start).as_secs_f64(),
        cpu_s: thread_cpu_seconds() - cpu0,
        read_s: (read - start).as_secs_f64(),
        profile_s: (profiled - read).as_secs_f64(),
        render_s: (end - profiled).as_secs_f64(),
    };
    let output = Output { fields: profile.summary.len(), json_bytes: 0, html };
    Ok((timing, black_box(output)))
}

/// The builder's profile as one window's (summaries and alerts computed), as the job
/// makes it; the window spans the records' event times.
fn finish(builder: ProfileBuilder, config: &ProfileConfig, (start_ms, end_ms): (u64, u64)) -> WindowProfile {
    WindowProfile::new(start_ms, end_ms, builder.finish(), config)
}

/// One contender's figures over its runs.
#[derive(Debug, Serialize)]
struct Contender {
    name: String,
    /// Exactly what the timing includes.
    what: String,
    seconds: Vec<f64>,
    median_seconds: f64,
    median_cpu_seconds: f64,
    median_records_per_s: f64,
    /// tidewatch only: the median of each part.
    #[serde(skip_serializing_if = "Option::is_none")]
    parts: Option<Parts>,
}

#[derive(Debug, Serialize)]
struct Parts {
    read_s: f64,
    observe_and_finish_s: f64,
    render_html_s: f64,
}

impl Contender {
    fn of_tidewatch(name: &str, what: &str, runs: &[Timing], records: u64) -> Contender {
        let of = |f: fn(&Timing) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let median_seconds = of(|t| t.total_s);
        Contender {
            name: name.to_owned(),
            what: what.to_owned(),
            seconds: runs.iter().map(|t| t.total_s).collect(),
            median_seconds,
            median_cpu_seconds: of(|t| t.cpu_s),
            median_records_per_s: records as f64 / median_seconds,
            parts: Some(Parts { read_s: of(|t| t.read_s), observe_and_finish_s: of(|t| t.profile_s), render_html_s: of(|t| t.render_s) }),
        }
    }

    fn of_peer(name: &str, peer: &PeerResult, records: u64) -> Contender {
        Contender {
            name: name.to_owned(),
            what: peer.what.clone(),
            seconds: peer.runs.iter().filter_map(|r| r.get("seconds").and_then(serde_json::Value::as_f64)).collect(),
            median_seconds: peer.median_seconds,
            median_cpu_seconds: peer.median_cpu_seconds,
            median_records_per_s: records as f64 / peer.median_seconds,
            parts: None,
        }
    }
}

/// How many times longer a peer takes than tidewatch.
#[derive(Debug, Serialize)]
struct Ratio {
    peer: String,
    /// Peer (its load excluded) ÷ tidewatch in memory (its JSON parsing included): the
    /// ratio the goals are judged by.
    profile_only: f64,
    /// The same in CPU seconds (the peers' count every thread of their process).
    profile_only_cpu: f64,
    /// (Peer's load + peer) ÷ tidewatch from the NDJSON file: both from the same file.
    from_ndjson: f64,
    /// Peer ÷ tidewatch in memory on two threads, in wall time.
    two_threads: f64,
    /// Peer ÷ tidewatch from the shared parse (what the profile adds to a job), in CPU s.
    shared_parse_cpu: f64,
    goal: f64,
    /// Whether the wall-time ratio reaches the goal.
    goal_met: bool,
    /// Whether the CPU-time ratio does.
    goal_met_cpu: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    records: u64,
    ndjson_lines: usize,
    mean_value_bytes: f64,
    fault_mix: &'static str,
    seed: u64,
    runs: usize,
    peer_runs: Option<usize>,
    machine: Machine,
    /// The machine's 1-minute load average at the start and at the end (other work on
    /// a shared machine stretches wall times, hardly CPU times).
    load_average: [f64; 2],
    /// Fields in tidewatch's profile (nested paths flattened).
    tidewatch_fields: usize,
    /// Bytes of the sample report and of the profile's JSON.
    html_bytes: usize,
    json_bytes: usize,
    contenders: Vec<Contender>,
    /// The peers' load (NDJSON → json.loads → pandas.json_normalize), done once,
    /// outside their timings.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_load: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_versions: Option<serde_json::Value>,
    ratios: Vec<Ratio>,
}

const YDATA: &str = "ydata-profiling, minimal";
const WHYLOGS: &str = "whylogs";

impl Report {
    fn new(
        args: &Args,
        visits: &Visits,
        lines: usize,
        mut contenders: Vec<Contender>,
        peers: Option<PeerResults>,
        sample: &Output,
        load_at_start: f64,
    ) -> Report {
        let records = visits.values.len() as u64;
        let runs = contenders[0].seconds.len();
        let in_memory = contenders[0].median_seconds;
        let in_memory_cpu = contenders[0].median_cpu_seconds;
        let from_file = contenders[1].median_seconds;
        let on_two_threads = contenders[2].median_seconds;
        let shared_cpu = contenders[3].median_cpu_seconds;
        let mut ratios = Vec::new();
        if let Some(peers) = &peers {
            let load_s = peers.load.get("seconds").and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
            for (key, name, goal) in [("ydata", YDATA, GOAL_VS_YDATA), ("whylogs", WHYLOGS, GOAL_VS_WHYLOGS)] {
                let Some(peer) = peers.peers.get(key) else { continue };
                contenders.push(Contender::of_peer(name, peer, records));
                let profile_only = peer.median_seconds / in_memory;
                let profile_only_cpu = peer.median_cpu_seconds / in_memory_cpu;
                ratios.push(Ratio {
                    peer: name.to_owned(),
                    profile_only,
                    profile_only_cpu,
                    from_ndjson: (load_s + peer.median_seconds) / from_file,
                    two_threads: peer.median_seconds / on_two_threads,
                    shared_parse_cpu: peer.median_cpu_seconds / shared_cpu,
                    goal,
                    goal_met: profile_only >= goal,
                    goal_met_cpu: profile_only_cpu >= goal,
                });
            }
        }
        Report {
            benchmark: "profile",
            records,
            ndjson_lines: lines,
            mean_value_bytes: visits.mean_value_bytes(),
            fault_mix: "default (10 % of the records with nulled top-level fields)",
            seed: args.seed,
            runs,
            peer_runs: peers.as_ref().map(|_| args.peer_runs),
            machine: Machine::current(),
            load_average: [load_at_start, load_average()],
            tidewatch_fields: sample.fields,
            html_bytes: sample.html.len(),
            json_bytes: sample.json_bytes,
            contenders,
            peer_load: peers.as_ref().map(|p| p.load.clone()),
            peer_versions: peers.as_ref().map(|p| p.versions.clone()),
            ratios,
        }
    }
}

fn runs(n: usize) -> String {
    if n == 1 {
        "1 run".to_owned()
    } else {
        format!("{n} runs")
    }
}

fn markdown(report: &Report) -> String {
    let mut out = format!(
        "Dataset profile, {} generated visits (mean value {:.0} bytes, default fault mix), median of {} (tidewatch){}, {} CPUs ({}), load average {:.1} at the start and {:.1} at the end\n\n\
         | contender | median s | CPU s | records/s | times tidewatch in memory |\n|---|---:|---:|---:|---:|\n",
        report.records,
        report.mean_value_bytes,
        runs(report.runs),
        report.peer_runs.map_or_else(String::new, |r| format!(" and {} (peers)", runs(r))),
        report.machine.cpus,
        report.machine.cpu_model,
        report.load_average[0],
        report.load_average[1]
    );
    let base = report.contenders.first().map_or(f64::NAN, |c| c.median_seconds);
    for c in &report.contenders {
        out.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.0} | {:.1} |\n",
            c.name,
            c.median_seconds,
            c.median_cpu_seconds,
            c.median_records_per_s,
            c.median_seconds / base
        ));
    }
    out.push_str("\nWhat each timing includes:\n\n");
    for c in &report.contenders {
        out.push_str(&format!("- {}: {}", c.name, c.what));
        if let Some(p) = &c.parts {
            out.push_str(&format!(
                " (medians: read {:.3} s, observe + finish {:.3} s, render_html {:.2} ms)",
                p.read_s,
                p.observe_and_finish_s,
                p.render_html_s * 1e3
            ));
        }
        out.push_str(".\n");
    }
    if let Some(load) = &report.peer_load {
        let f = |k: &str| load.get(k).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
        out.push_str(&format!(
            "- the peers' load, once, outside their timings: read the NDJSON file and json.loads each line ({:.2} s), \
             pandas.json_normalize into {} columns ({:.2} s): {:.2} s.\n",
            f("read_and_parse_seconds"),
            load.get("columns").and_then(serde_json::Value::as_u64).unwrap_or(0),
            f("json_normalize_seconds"),
            f("seconds")
        ));
    }
    if !report.ratios.is_empty() {
        out.push_str(
            "\n| peer | peer ÷ tidewatch in memory | the same in CPU s | (peer load + peer) ÷ tidewatch from NDJSON | peer ÷ tidewatch on 2 threads | peer ÷ tidewatch from the shared parse, CPU s | goal | met (wall / CPU) |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for r in &report.ratios {
            out.push_str(&format!(
                "| {} | {:.0}× | {:.0}× | {:.0}× | {:.0}× | {:.0}× | ≥ {:.0}× | {} / {} |\n",
                r.peer,
                r.profile_only,
                r.profile_only_cpu,
                r.from_ndjson,
                r.two_threads,
                r.shared_parse_cpu,
                r.goal,
                if r.goal_met { "yes" } else { "no" },
                if r.goal_met_cpu { "yes" } else { "no" }
            ));
        }
        out.push_str(
            "\nThe goals are judged on the first ratio: the peers start from a parsed pandas frame, tidewatch from the raw JSON bytes. \
             tidewatch runs on one thread there (on two in the fourth column, as a job with two workers does; the fifth is what the profile \
             adds to a job whose observers parse every record anyway); \
             the peers' CPU seconds count every thread of their process.\n",
        );
    }
    if let Some(v) = &report.peer_versions {
        let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("?").to_owned();
        out.push_str(&format!(
            "\nPeers: ydata-profiling {}, whylogs {}, pandas {}, numpy {}, Python {} (bench/peers/profiling/requirements.txt).\n",
            s("ydata-profiling"),
            s("whylogs"),
            s("pandas"),
            s("numpy"),
            s("python")
        ));
    }
    out.push_str(&format!(
        "\ntidewatch's profile: {} fields; sample report bench/results/profile-sample.html ({} bytes), profile JSON {} bytes.\n",
        report.tidewatch_fields, report.html_bytes, report.json_bytes
    ));
    out
}

/// The generated values, in memory.
struct Visits {
    values: Vec<Option<Vec<u8>>>,
    /// From the earliest event time to just after the latest, ms since the Unix epoch.
    window: (u64, u64),
}

impl Visits {
    /// `records` visits from the generator with the default fault mix.
    fn generate(records: u64, seed: u64) -> Visits {
        let mut generator = VisitGenerator::new(GeneratorConfig { seed, ..GeneratorConfig::default() });
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        let values = (0..records)
            .map(|_| {
                let record = generator.next_borrowed();
                first = first.min(record.timestamp_ms);
                last = last.max(record.timestamp_ms);
                record.value.map(<[u8]>::to_vec)
            })
            .collect();
        let ms = |t: i64| u64::try_from(t).unwrap_or(0);
        Visits { values, window: if first <= last { (ms(first), ms(last) + 1) } else { (0, 0) } }
    }

    fn mean_value_bytes(&self) -> f64 {
        let bytes: usize = self.values.iter().flatten().map(Vec::len).sum();
        bytes as f64 / self.values.len().max(1) as f64
    }

    /// Writes every value as one line; a value that is absent (a tombstone) or holds a
    /// line break cannot be an NDJSON line and is left out. Returns the lines written.
    fn write_ndjson(&self, path: &Path) -> anyhow::Result<usize> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
        let mut lines = 0;
        for value in self.values.iter().flatten().filter(|v| !v.contains(&b'\n')) {
            out.write_all(value)?;
            out.write_all(b"\n")?;
            lines += 1;
        }
        out.flush()?;
        Ok(lines)
    }
}

/// What `bench/peers/profiling/run.sh` prints.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
struct PeerResults {
    versions: serde_json::Value,
    load: serde_json::Value,
    peers: std::collections::BTreeMap<String, PeerResult>,
}

#[derive(Debug, Clone, serde::Deserialize, Serialize)]
struct PeerResult {
    what: String,
    runs: Vec<serde_json::Value>,
    median_seconds: f64,
    median_cpu_seconds: f64,
}

fn run_peers(ndjson: &Path, runs: usize) -> anyhow::Result<PeerResults> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/profiling/run.sh");
    eprintln!("running the Python peers ({runs} runs each; the first run installs the virtualenv) ...");
    let output = Command::new(&script)
        .arg(ndjson)
        .args(["--runs", &runs.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({})", script.display(), output.status);
    }
    serde_json::from_slice(&output.stdout).with_context(|| format!("reading the JSON printed by {}", script.display()))
}

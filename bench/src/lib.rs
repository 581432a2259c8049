//! Shared pieces of the benchmarks: timing, medians, result files, the contenders, a
//! process-group watcher and SVG plots.

pub mod contenders;
pub mod procwatch;
pub mod serving;
pub mod svg;
pub mod watch;

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The median of some samples (the mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Where results are written: `bench/results/` of the source tree.
pub fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// Describes the machine a result was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model, from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel and OS.
    pub os: String,
}

impl Machine {
    /// Reads the current machine's description.
    pub fn current() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_owned()))
            .unwrap_or_else(|| "unknown".to_owned());
        let os = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| std::env::consts::OS.to_owned(), |s| format!("linux {}", s.trim()));
        Machine { cpus: std::thread::available_parallelism().map_or(1, usize::from), cpu_model, os }
    }
}

/// Process CPU time (user + system) in seconds so far, from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}

/// Writes a benchmark's results as `bench/results/<name>.json` and `<name>.md`.
pub fn write_results<R: Serialize>(name: &str, report: &R, table: &str) -> std::io::Result<()> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(format!("{name}.json")), json)?;
    std::fs::write(dir.join(format!("{name}.md")), table)?;
    tracing::info!(path = %dir.join(format!("{name}.md")).display(), "wrote results");
    Ok(())
}

/// Deletes benchmark topics (a 1 M-record topic holds ~0.4 GB on the shared broker).
pub fn delete_topics(brokers: &str, topics: &[&str]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::config::ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    for result in futures_executor::block_on(admin.delete_topics(topics, &options))? {
        if let Err((topic, code)) = result {
            anyhow::bail!("deleting topic {topic}: {code}");
        }
    }
    Ok(())
}

/// The pid of the broker `scripts/kafka.sh` started for the port of `brokers`, from its
/// pid file (`$TIDEWATCH_STATE_DIR/kafka-<port>/kafka.pid`).
pub fn broker_pid(brokers: &str) -> Option<u32> {
    let port = brokers.split(',').next()?.rsplit_once(':')?.1.trim();
    let state = std::env::var("TIDEWATCH_STATE_DIR").unwrap_or_else(|_| "/tmp/tidewatch".to_owned());
    let pid: u32 = std::fs::read_to_string(format!("{state}/kafka-{port}/kafka.pid")).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline).contains("kafka.Kafka").then_some(pid)
}

/// CPU time (user + system) of process `pid` in seconds so far (NaN if unknown).
pub fn process_cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return f64::NAN };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the whole machine has been busy (every CPU: user, nice, system, irq and
/// softirq; not idle, iowait or the hypervisor's steal), from /proc/stat.
pub fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return f64::NAN };
    let Some(line) = stat.lines().next() else { return f64::NAN };
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is inside user)
    let busy: f64 = v.iter().take(7).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    busy / 100.0
}

/// CPU seconds the hypervisor took from this machine's CPUs (steal), from /proc/stat.
pub fn machine_steal_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return f64::NAN };
    let Some(line) = stat.lines().next() else { return f64::NAN };
    line.split_whitespace().nth(8).and_then(|f| f.parse::<f64>().ok()).map_or(f64::NAN, |t| t / 100.0)
}

/// The `tidewatch` binary beside the running benchmark binary (release beside release),
/// built first if needed.
pub fn tidewatch_beside() -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the benchmark binary has no directory")?;
    let bin = dir.join("tidewatch");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-q", "-p", "tidewatch-jobs", "--bin", "tidewatch"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build for the tidewatch binary")?;
    if !status.success() || !bin.exists() {
        anyhow::bail!("could not build {}", bin.display());
    }
    Ok(bin)
}

/// Kills the child process it holds when dropped (an early error must not leave it running).
#[derive(Debug)]
pub struct Killer(pub Option<std::process::Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

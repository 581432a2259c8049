//! Runs a contender as a child process in its own process group and watches the whole
//! group from /proc: CPU seconds (user + system, every process of the group, exited
//! ones at their last sample) and peak resident memory (the largest sum over the group
//! at one sample, or one process's own high-water mark if larger).
//!
//! Every thread of the group is sampled too (`/proc/<pid>/task/<tid>/schedstat`: time on
//! a CPU and time waiting for one), so a contender's span splits per thread into on-CPU,
//! runnable-but-waiting and sleeping time: the off-CPU view of where it waits.
//!
//! The child speaks on stdout: a line `{"event":"start"}` when its timed span begins
//! (CPU is read then), and a last JSON line `{"records":N,"seconds":S}` when it ends.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;
/// How often the group is sampled.
const SAMPLE: Duration = Duration::from_millis(50);

/// One thread's schedstat at a sample.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadSample {
    /// Nanoseconds on a CPU.
    run_ns: u64,
    /// Nanoseconds runnable, waiting for a CPU.
    wait_ns: u64,
}

/// Where one thread of a contender spent its timed span.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ThreadTime {
    /// The thread's name (`comm`).
    pub name: String,
    /// Seconds on a CPU.
    pub cpu_s: f64,
    /// Seconds runnable but waiting for a CPU (the machine was busy).
    pub runq_s: f64,
    /// Seconds sleeping (parked, blocked in a poll, waiting on a lock or the network).
    pub sleep_s: f64,
}

#[derive(Debug, Default)]
struct ThreadState {
    name: String,
    /// The thread's schedstat when the span started (zero for threads born in the span).
    at_start: ThreadSample,
    last: ThreadSample,
    first_seen: Option<Instant>,
    last_seen: Option<Instant>,
    /// Frozen when the result line came.
    at_result: Option<(ThreadSample, Instant)>,
}

#[derive(Debug, Default)]
struct GroupState {
    /// Per thread (tid) of the group.
    threads: HashMap<u32, ThreadState>,
    /// CPU ticks per process at its last sample.
    cpu_ticks: HashMap<u32, u64>,
    /// Largest resident bytes of the group at one sample, or of one process's high-water mark.
    peak_rss: u64,
    /// CPU seconds of the group when the child said `start`.
    cpu_at_start: Option<f64>,
    /// CPU seconds of the group when the child printed its result.
    cpu_at_result: Option<f64>,
    /// The child's last JSON line other than the start marker.
    result: Option<serde_json::Value>,
    /// When the child said `start`.
    started: Option<Instant>,
}

impl GroupState {
    fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks.values().sum::<u64>() as f64 / TICKS
    }

    /// Reads every process of group `pgid` once.
    fn sample(&mut self, pgid: u32) {
        let Ok(dir) = std::fs::read_dir("/proc") else { return };
        let mut rss_sum = 0;
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After the command: state(0) ppid(1) pgrp(2) ... utime(11) stime(12) ... rss(21).
            if fields.get(2).and_then(|f| f.parse::<u32>().ok()) != Some(pgid) {
                continue;
            }
            let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            self.cpu_ticks.insert(pid, num(11) + num(12));
            self.sample_threads(pid);
            rss_sum += num(21) * 4096;
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kb) = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse::<u64>().ok()) {
                    self.peak_rss = self.peak_rss.max(kb * 1024);
                }
            }
        }
        self.peak_rss = self.peak_rss.max(rss_sum);
    }

    /// Reads the schedstat of every thread of `pid`.
    fn sample_threads(&mut self, pid: u32) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return };
        let now = Instant::now();
        let in_span = self.started.is_some();
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")) else { continue };
            let mut nums = stat.split_whitespace().map(|n| n.parse::<u64>().unwrap_or(0));
            let sample = ThreadSample { run_ns: nums.next().unwrap_or(0), wait_ns: nums.next().unwrap_or(0) };
            let thread = self.threads.entry(tid).or_default();
            // A thread first seen after the span started was born in it: its counters start at 0.
            if thread.first_seen.is_none() && !in_span {
                thread.at_start = sample;
            }
            // Read every time: a new thread names itself just after it starts.
            if let Ok(name) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")) {
                thread.name = name.trim().to_owned();
            }
            thread.first_seen.get_or_insert(now);
            thread.last = sample;
            thread.last_seen = Some(now);
        }
    }

    /// Marks the start of the span: every thread's counters so far are before it.
    fn start_threads(&mut self) {
        for thread in self.threads.values_mut() {
            thread.at_start = thread.last;
        }
    }

    /// Freezes every thread's counters at the end of the span.
    fn result_threads(&mut self) {
        for thread in self.threads.values_mut() {
            if let Some(seen) = thread.last_seen {
                thread.at_result.get_or_insert((thread.last, seen));
            }
        }
    }

    /// Each thread's share of the span, busiest first.
    fn thread_times(&self) -> Vec<ThreadTime> {
        let Some(started) = self.started else { return Vec::new() };
        let mut out: Vec<ThreadTime> = self
            .threads
            .values()
            .filter_map(|t| {
                let (end, seen) = t.at_result.or(t.last_seen.map(|s| (t.last, s)))?;
                let born = t.first_seen.map_or(started, |f| f.max(started));
                let alive = seen.saturating_duration_since(born).as_secs_f64();
                let cpu_s = end.run_ns.saturating_sub(t.at_start.run_ns) as f64 / 1e9;
                let runq_s = end.wait_ns.saturating_sub(t.at_start.wait_ns) as f64 / 1e9;
                Some(ThreadTime { name: t.name.clone(), cpu_s, runq_s, sleep_s: (alive - cpu_s - runq_s).max(0.0) })
            })
            .filter(|t| t.cpu_s + t.runq_s > 0.001)
            .collect();
        out.sort_by(|a, b| b.cpu_s.total_cmp(&a.cpu_s));
        out
    }
}

/// What a watched child did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Records the child reported (0 if it reported none).
    pub records: u64,
    /// Seconds the child reported for its timed span, NaN if none.
    pub seconds: f64,
    /// CPU seconds of the group between `start` and the result line (NaN without both).
    pub cpu_span_s: f64,
    /// CPU seconds of the whole group over its life (start-up included).
    pub cpu_total_s: f64,
    /// Peak resident bytes of the group.
    pub peak_rss_bytes: u64,
    /// Wall seconds from spawn to exit.
    pub wall_s: f64,
    /// Per thread: where the timed span went (busiest first).
    pub threads: Vec<ThreadTime>,
    /// The child's result line, for any figures it adds.
    pub result: serde_json::Value,
}

/// A running child, its group watched.
#[allow(missing_debug_implementations)] // holds threads and a child process
pub struct Watched {
    child: Child,
    pgid: u32,
    spawned: Instant,
    state: Arc<Mutex<GroupState>>,
    done: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    log: std::path::PathBuf,
}

impl Watched {
    /// Spawns `command` in a new process group, stdout read here, stderr to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Watched> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let err = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let pgid = child.id();
        let state = Arc::new(Mutex::new(GroupState::default()));
        let done = Arc::new(AtomicBool::new(false));
        let stdout = child.stdout.take().context("child stdout")?;
        let reader = {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let Ok(value) = serde_json::from_str::<serde_json::Value>(line.trim()) else { continue };
                    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
                    s.sample(pgid);
                    if value.get("event").and_then(|e| e.as_str()) == Some("start") {
                        s.cpu_at_start = Some(s.cpu_seconds());
                        s.started = Some(Instant::now());
                        s.start_threads();
                    } else {
                        s.cpu_at_result = Some(s.cpu_seconds());
                        s.result_threads();
                        s.result = Some(value);
                    }
                }
            })
        };
        let sampler = {
            let state = Arc::clone(&state);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    state.lock().unwrap_or_else(PoisonError::into_inner).sample(pgid);
                    std::thread::sleep(SAMPLE);
                }
            })
        };
        Ok(Watched { child, pgid, spawned: Instant::now(), state, done, threads: vec![reader, sampler], log: log.to_owned() })
    }

    /// Seconds since the child said `start`, if it has.
    pub fn since_start(&self) -> Option<Duration> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).started.map(|t| t.elapsed())
    }

    /// Whether the child has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the child to exit by itself (at most `timeout`, then it is ended), and
    /// fails unless it exited successfully with a result line.
    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<Outcome> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                self.end_group();
                bail!("timed out after {timeout:?} (log: {})", self.log.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let outcome = self.finish();
        if !status.success() {
            bail!("exited with {status} (log: {})\n{}", self.log.display(), tail(&self.log, 15));
        }
        if outcome.seconds.is_nan() {
            bail!("printed no result line (log: {})", self.log.display());
        }
        Ok(outcome)
    }

    /// Ends the whole group (SIGTERM, then SIGKILL after 5 s) and returns what was seen.
    pub fn stop(mut self) -> Outcome {
        self.end_group();
        self.finish()
    }

    fn end_group(&mut self) {
        signal_group(self.pgid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) && !group_alive(self.pgid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(self.pgid, "KILL");
        let _ = self.child.wait();
    }

    fn finish(&mut self) -> Outcome {
        let _ = self.child.wait();
        // Let the reader take the last line (stdout closes when every holder exits).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.threads[0].is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.done.store(true, Ordering::Relaxed);
        for handle in self.threads.drain(..) {
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let result = s.result.clone().unwrap_or_default();
        Outcome {
            records: result["records"].as_u64().unwrap_or(0),
            seconds: result["seconds"].as_f64().unwrap_or(f64::NAN),
            cpu_span_s: match (s.cpu_at_start, s.cpu_at_result) {
                (Some(a), Some(b)) => b - a,
                _ => f64::NAN,
            },
            cpu_total_s: s.cpu_seconds(),
            peak_rss_bytes: s.peak_rss,
            wall_s: self.spawned.elapsed().as_secs_f64(),
            threads: s.thread_times(),
            result,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) || group_alive(self.pgid) {
            signal_group(self.pgid, "KILL");
            let _ = self.child.wait();
        }
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Sends a signal to every process of group `pgid` (one this program started).
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg("--").arg(format!("-{pgid}")).stderr(Stdio::null()).status();
}

/// Whether any process of group `pgid` is still there.
fn group_alive(pgid: u32) -> bool {
    let mut s = GroupState::default();
    s.sample(pgid);
    !s.cpu_ticks.is_empty()
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

//! Hosts apart: a job of 2 processes × 2 workers, each process in a Linux network
//! namespace of its own (its own address, reached over a veth pair and a bridge, as
//! separate hosts on one network), `-h` naming the namespaces' addresses; the broker, a
//! test's own, listens on the bridge.
//!
//! One process is `kill -9`ed mid-stream. The other must stop by itself within
//! [`SURVIVOR_BOUND`], exit non-zero, and say so in one error line naming the lost
//! process, its address, and what to do — no panic, no backtrace. Then both are started
//! again (as an operator would, as the line says): at-least-once loses nothing;
//! exactly-once also duplicates nothing for a `read_committed` reader.
//!
//! Where namespaces cannot be made (not root, no `ip`), the test says why and runs the
//! two processes on two loopback addresses (127.0.0.2, 127.0.0.3) instead, on the
//! shared broker.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tidewatch_tests::faults::{assert_exactly_once, assert_nothing_lost, read_topic, Job, OwnBroker, SteadyProducer};
use tidewatch_tests::hosts::NetHosts;
use tidewatch_tests::{committed, create_topics, end_offsets, free_ports, real_brokers, require_broker, unique_topic};

/// How soon the survivor must have stopped after its peer's kill -9 (measured: well under
/// a second; the bound leaves room for a loaded machine).
const SURVIVOR_BOUND: Duration = Duration::from_secs(10);
const PARTITIONS: i32 = 4;
const RATE: u64 = 2_000;
const COUNT: u64 = 24_000;

/// Each test starts a broker of its own and four processes: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

/// Where the two processes run: namespaces with a broker on their bridge, or loopback.
enum Hosts {
    Apart { net: NetHosts, broker: OwnBroker },
    Loopback { brokers: String },
}

impl Hosts {
    fn make() -> anyhow::Result<Hosts> {
        match NetHosts::create(2) {
            Ok(net) => {
                let ports = free_ports(2)?;
                let broker = OwnBroker::start_on(&net.bridge_address(), ports[0], ports[1])?;
                Ok(Hosts::Apart { net, broker })
            }
            Err(why) => {
                eprintln!("network namespaces cannot be made here ({why:#}): running the processes on 127.0.0.2 and 127.0.0.3");
                let brokers = real_brokers();
                require_broker(&brokers)?;
                Ok(Hosts::Loopback { brokers })
            }
        }
    }

    fn brokers(&self) -> String {
        match self {
            Hosts::Apart { broker, .. } => broker.brokers(),
            Hosts::Loopback { brokers } => brokers.clone(),
        }
    }

    /// The host file's lines: each process's address.
    fn addresses(&self) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            // A namespace of its own: any port is free there.
            Hosts::Apart { net, .. } => (0..2).map(|h| format!("{}:2101", net.address(h))).collect(),
            Hosts::Loopback { .. } => {
                let ports = free_ports(2)?;
                (0..2).map(|h| format!("127.0.0.{}:{}", 2 + h, ports[h])).collect()
            }
        })
    }

    fn wrapper(&self, h: usize) -> Vec<&str> {
        match self {
            Hosts::Apart { net, .. } => net.wrapper(h),
            Hosts::Loopback { .. } => Vec::new(),
        }
    }
}

fn job_args(brokers: &str, topics: &(String, String, String), mode: Mode, process: usize, hostfile: &Path) -> Vec<String> {
    let (input, output, group) = topics;
    let mut args: Vec<String> = ["--brokers", brokers, "--input", input, "--output", output, "--group", group, "--epoch", "200ms"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if mode == Mode::ExactlyOnce {
        args.push("--exactly-once".to_owned());
    }
    args.extend(["-w", "2", "-n", "2", "-p"].map(str::to_owned));
    args.push(process.to_string());
    args.push("-h".to_owned());
    args.push(hostfile.display().to_string());
    args
}

/// Waits for the survivor to exit by itself; its status and how long it took.
fn wait_survivor(job: &mut Job, since: Instant) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
    loop {
        if let Some(status) = job.try_wait()? {
            return Ok((status, since.elapsed()));
        }
        anyhow::ensure!(since.elapsed() < SURVIVOR_BOUND, "the surviving process still runs {SURVIVOR_BOUND:?} after its peer's kill -9\n{}", job.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The survivor's log: no panic, one error line that names the lost process, its address
/// and the remedy.
fn check_survivor_log(log: &str, lost_address: &str) {
    assert!(!log.contains("panicked") && !log.contains("RUST_BACKTRACE"), "a panic was printed:\n{log}");
    assert!(!log.contains("timely communication error"), "timely's raw error was printed:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("tidewatch: error:")).collect();
    assert_eq!(errors.len(), 1, "one closing error line:\n{log}");
    let line = errors[0];
    for part in ["lost process 1", lost_address, "restart all its processes"] {
        assert!(line.contains(part), "the error line names `{part}`: {line}");
    }
}

/// Waits until the group's committed offsets reach `total`, restarting any process that
/// ends (as a supervisor would).
fn wait_all_committed(jobs: &mut [Job], brokers: &str, group: &str, input: &str, total: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        for job in jobs.iter_mut() {
            if job.supervise()? {
                eprintln!("a process ended and was restarted: {:?}", job.failures);
            }
        }
        let done: i64 = committed(brokers, group, input, PARTITIONS).map(|c| c.values().map(|o| o.unwrap_or(0)).sum()).unwrap_or(0);
        if done >= total {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{done} of {total} offsets committed after 240 s\n{}\n{}", jobs[0].logs(), jobs[1].logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn hosts_apart(mode: Mode, name: &str) -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let hosts = Hosts::make()?;
    let brokers = hosts.brokers();
    let topics = (unique_topic(&format!("{name}-in")), unique_topic(&format!("{name}-out")), unique_topic(name));
    create_topics(&brokers, &[&topics.0, &topics.1], PARTITIONS)?;
    let dir = tempfile::tempdir()?;
    let addresses = hosts.addresses()?;
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, addresses.iter().map(|a| format!("{a}\n")).collect::<String>())?;

    let producer = SteadyProducer::spawn(&brokers, &topics.0, PARTITIONS, RATE, COUNT)?;
    let mut jobs = (0..2)
        .map(|p| {
            let out = dir.path().join(format!("p{p}"));
            std::fs::create_dir_all(&out)?;
            let args = job_args(&brokers, &topics, mode, p, &hostfile);
            Job::start_wrapped(&hosts.wrapper(p), &out, &args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .collect::<anyhow::Result<Vec<Job>>>()?;
    producer.wait_offered(COUNT / 4, Duration::from_secs(60))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while end_offsets(&brokers, &topics.1, PARTITIONS)?.values().sum::<i64>() == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the job copied nothing in 60 s\n{}\n{}", jobs[0].logs(), jobs[1].logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1_500));

    jobs[1].kill9()?;
    let (status, took) = wait_survivor(&mut jobs[0], Instant::now())?;
    assert!(!status.success(), "the survivor failed: {status}");
    check_survivor_log(&jobs[0].log(0), &addresses[1]);
    eprintln!("{name}: the survivor stopped {took:?} after its peer's kill -9 ({status})");

    jobs[0].restart()?;
    jobs[1].restart()?;
    producer.finish().context("producing the input")?;
    let total: i64 = end_offsets(&brokers, &topics.0, PARTITIONS)?.values().sum();
    wait_all_committed(&mut jobs, &brokers, &topics.2, &topics.0, total)?;
    for job in &jobs {
        job.terminate()?;
    }
    for job in &mut jobs {
        assert!(job.wait_exit(Duration::from_secs(60))?, "a process did not exit 0 on SIGTERM\n{}", job.logs());
    }
    let input = read_topic(&brokers, &topics.0, true)?;
    let output = read_topic(&brokers, &topics.1, true)?;
    match mode {
        Mode::AtLeastOnce => {
            let duplicates = assert_nothing_lost(&input, &output);
            eprintln!("{name}: nothing lost; {duplicates} records copied again after the restart");
        }
        Mode::ExactlyOnce => assert_exactly_once(&input, &output),
    }
    Ok(())
}

#[test]
fn hosts_apart_peer_kill9_stops_the_survivor_with_one_line_and_a_restart_loses_nothing() -> anyhow::Result<()> {
    hosts_apart(Mode::AtLeastOnce, "apart-alo")
}

#[test]
fn hosts_apart_peer_kill9_then_restart_exactly_once_duplicates_nothing() -> anyhow::Result<()> {
    hosts_apart(Mode::ExactlyOnce, "apart-eos")
}

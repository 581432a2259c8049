//! Faults while the job copies, on real processes killed by pid:
//!
//! - the broker `kill -9`ed mid-stream and restarted on its data: at-least-once loses
//!   nothing; exactly-once loses nothing and duplicates nothing (`read_committed`). These
//!   tests start a broker of their own (`scripts/kafka.sh` on ports 19092/19093, its own
//!   state dir) and run one at a time: they never touch the shared broker.
//! - the `tidewatch run` process `kill -9`ed mid-stream and restarted: the same
//!   guarantees (on the shared broker, which they do not kill).
//! - Kafka unreachable at start in exactly-once mode: a clear error naming the brokers,
//!   non-zero exit, in bounded time (the at-least-once case is in `cli.rs`).
//!
//! A producer offers records at a steady rate throughout; the job runs with 2 workers
//! and 200 ms epochs, and is restarted if it dies (as a supervisor would). Output and
//! input are compared byte for byte, partition by partition.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tidewatch_engine::Record;
use tidewatch_tests::faults::{assert_exactly_once, assert_nothing_lost, read_topic, wait_committed, Job, OwnBroker, SteadyProducer};
use tidewatch_tests::{create_topics, end_offsets, real_brokers, require_broker, unique_topic};

/// The tests that kill the test's own broker share it (its ports): one at a time.
static OWN_BROKER: Mutex<()> = Mutex::new(());
const OWN_PORT: u16 = 19092;
const OWN_CONTROLLER_PORT: u16 = 19093;

const PARTITIONS: i32 = 2;
const RATE: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

/// What a fault run left behind.
struct Outcome {
    input: BTreeMap<i32, Vec<Record>>,
    committed: BTreeMap<i32, Vec<Record>>,
    uncommitted: usize,
    job: Job,
}

fn job_args<'a>(brokers: &'a str, input: &'a str, output: &'a str, group: &'a str, mode: Mode) -> Vec<&'a str> {
    let mut args = vec!["--brokers", brokers, "--input", input, "--output", output, "--group", group, "--epoch", "200ms", "-w", "2"];
    if mode == Mode::ExactlyOnce {
        args.push("--exactly-once");
    }
    args
}

/// Waits until the job has copied something (so a fault lands mid-stream).
fn wait_copying(brokers: &str, output: &str, job: &mut Job) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while end_offsets(brokers, output, PARTITIONS)?.values().sum::<i64>() == 0 {
        job.supervise()?;
        anyhow::ensure!(Instant::now() < deadline, "the job copied nothing in 60 s\n{}", job.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Runs the job over a steady input of `count` records on `brokers`, applying `fault`
/// once the job is copying, until every input offset is committed; then stops it and
/// reads both topics.
fn run_with_fault(
    brokers: &str,
    mode: Mode,
    name: &str,
    count: u64,
    fault: impl FnOnce(&mut Job) -> anyhow::Result<()>,
) -> anyhow::Result<Outcome> {
    let (input, output, group) = (unique_topic(&format!("{name}-in")), unique_topic(&format!("{name}-out")), unique_topic(name));
    create_topics(brokers, &[&input, &output], PARTITIONS)?;
    let dir = tempfile::tempdir()?;
    let producer = SteadyProducer::spawn(brokers, &input, PARTITIONS, RATE, count)?;
    let mut job = Job::start(dir.path(), &job_args(brokers, &input, &output, &group, mode))?;
    producer.wait_offered(count / 4, Duration::from_secs(60))?;
    wait_copying(brokers, &output, &mut job)?;
    fault(&mut job)?;
    producer.finish().context("producing the input")?;
    // The input as it is in the topic is what the output must hold: a producer whose
    // broker was killed may itself have written a few records twice.
    let total: i64 = end_offsets(brokers, &input, PARTITIONS)?.values().sum();
    if total != count as i64 {
        eprintln!("note: the input topic holds {total} records; {count} were offered");
    }
    wait_committed(&mut job, brokers, &group, &input, PARTITIONS, total, Duration::from_secs(240))?;
    let clean = job.stop(Duration::from_secs(60))?;
    anyhow::ensure!(clean, "the job did not exit 0 on SIGTERM\n{}", job.logs());

    let input = read_topic(brokers, &input, true)?;
    let committed = read_topic(brokers, &output, true)?;
    let uncommitted = read_topic(brokers, &output, false)?.values().map(Vec::len).sum();
    Ok(Outcome { input, committed, uncommitted, job })
}

fn check(outcome: &Outcome, mode: Mode, what: &str) {
    let Outcome { input, committed, uncommitted, job } = outcome;
    let out: usize = committed.values().map(Vec::len).sum();
    match mode {
        Mode::AtLeastOnce => {
            let duplicates = assert_nothing_lost(input, committed);
            eprintln!(
                "{what}, at-least-once: {out} records out, {duplicates} duplicates; job started {} times ({:?})",
                job.starts, job.failures
            );
        }
        Mode::ExactlyOnce => {
            assert_exactly_once(input, committed);
            eprintln!(
                "{what}, exactly-once: {out} committed records out ({uncommitted} in the log, aborted ones included); job started {} times ({:?})",
                job.starts, job.failures
            );
        }
    }
}

fn broker_kill9(mode: Mode, name: &str) -> anyhow::Result<()> {
    let _one_at_a_time = OWN_BROKER.lock().unwrap_or_else(PoisonError::into_inner);
    let broker = OwnBroker::start(OWN_PORT, OWN_CONTROLLER_PORT)?;
    let brokers = broker.brokers();
    let outcome = run_with_fault(&brokers, mode, name, 40_000, |_job| {
        broker.kill9()?;
        std::thread::sleep(Duration::from_secs(2));
        broker.restart()
    })?;
    check(&outcome, mode, "broker kill -9");
    Ok(())
}

fn job_kill9(mode: Mode, name: &str) -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let outcome = run_with_fault(&brokers, mode, name, 24_000, |job| {
        // Let it commit a few epochs first, then kill it in the middle of one.
        std::thread::sleep(Duration::from_millis(1_500));
        job.kill9()?;
        job.restart()
    })?;
    // The restarted job runs through: it must not wait for (or fail on) the killed one's
    // open transaction, which its fencing aborts.
    assert_eq!(outcome.job.starts, 2, "the job ran again after kill -9 without failing: {:?}", outcome.job.failures);
    check(&outcome, mode, "job kill -9");
    Ok(())
}

#[test]
fn own_broker_kill9_mid_stream_at_least_once_loses_nothing() -> anyhow::Result<()> {
    broker_kill9(Mode::AtLeastOnce, "bk-alo")
}

#[test]
fn own_broker_kill9_mid_stream_exactly_once_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    broker_kill9(Mode::ExactlyOnce, "bk-eos")
}

#[test]
fn real_broker_job_kill9_mid_stream_at_least_once_loses_nothing() -> anyhow::Result<()> {
    job_kill9(Mode::AtLeastOnce, "jk-alo")
}

#[test]
fn real_broker_job_kill9_mid_stream_exactly_once_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    job_kill9(Mode::ExactlyOnce, "jk-eos")
}

#[test]
fn unreachable_kafka_at_start_in_exactly_once_mode_is_a_clear_error() -> anyhow::Result<()> {
    let port = tidewatch_tests::free_ports(1)?[0];
    let brokers = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let out = std::process::Command::new(tidewatch_tests::tidewatch_bin()?)
        .args([
            "run",
            "--exactly-once",
            "--brokers",
            &brokers,
            "-X",
            "socket.connection.setup.timeout.ms=2000",
            "--metrics-addr",
            "",
            "--out",
        ])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail; stderr: {stderr}");
    assert!(stderr.contains(&brokers) && stderr.contains("scripts/kafka.sh start"), "stderr: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    Ok(())
}

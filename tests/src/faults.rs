//! Helpers of the fault tests: a Kafka broker of the test's own (so it may be killed),
//! a producer that offers records at a steady rate while faults happen, a reader that
//! sees only committed transactions, the `tidewatch run` process under a small
//! supervisor, and the checks of what the output holds.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tidewatch_engine::Record;

use crate::{content, CountFailures};

/// A single-node Kafka broker started by `scripts/kafka.sh` on its own ports and state
/// directory; stopped when dropped. Killing it touches no other broker.
#[derive(Debug)]
pub struct OwnBroker {
    host: String,
    port: u16,
    controller_port: u16,
    state_dir: PathBuf,
}

impl OwnBroker {
    /// Starts a fresh broker on `127.0.0.1:port` (controller on `controller_port`).
    pub fn start(port: u16, controller_port: u16) -> anyhow::Result<OwnBroker> {
        OwnBroker::start_on("127.0.0.1", port, controller_port)
    }

    /// Starts a fresh broker listening on, and advertising, `host:port` (an address of
    /// this machine, e.g. a bridge that network namespaces reach).
    pub fn start_on(host: &str, port: u16, controller_port: u16) -> anyhow::Result<OwnBroker> {
        let state_dir = std::env::temp_dir().join(format!("tidewatch-faults-{port}"));
        let broker = OwnBroker { host: host.to_owned(), port, controller_port, state_dir };
        broker.script(&["start"], false)?;
        Ok(broker)
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `kill -9` of the broker's JVM (by pid, through `kafka.sh kill9`); its data stays.
    pub fn kill9(&self) -> anyhow::Result<()> {
        self.script(&["kill9"], false)
    }

    /// Starts the broker again on the data it had.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.script(&["start"], true)
    }

    fn script(&self, args: &[&str], keep_data: bool) -> anyhow::Result<()> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let out = Command::new(&script)
            .args(args)
            .env("TIDEWATCH_KAFKA_HOST", &self.host)
            .env("TIDEWATCH_KAFKA_PORT", self.port.to_string())
            .env("TIDEWATCH_KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            .env("TIDEWATCH_KAFKA_JMX_PORT", "off")
            .env("TIDEWATCH_STATE_DIR", &self.state_dir)
            .env("TIDEWATCH_KAFKA_KEEP_DATA", if keep_data { "1" } else { "0" })
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "kafka.sh {args:?} on port {} failed ({}): {}{}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Err(error) = self.script(&["stop"], false) {
            eprintln!("stopping the test's broker: {error:#}");
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// The `i`-th record a [`SteadyProducer`] offers: unique content (so duplicates can be
/// told apart), a key, a JSON value (every 7th one not UTF-8), an explicit timestamp.
pub fn steady_record(i: u64, partitions: i32) -> Record {
    let partition = (i % partitions as u64) as i32;
    let value = if i % 7 == 3 {
        let mut v = vec![0xff, 0xfe, 0x00];
        v.extend_from_slice(&i.to_be_bytes());
        v
    } else {
        format!("{{\"i\":{i},\"user_id\":\"u{}\",\"page\":\"/p/{}\",\"pad\":\"{}\"}}", i % 97, i % 13, "x".repeat((i % 50) as usize))
            .into_bytes()
    };
    Record {
        partition,
        offset: -1,
        timestamp: Some(1_700_000_000_000 + i as i64),
        key: Some(format!("k{i}").into_bytes().into()),
        value: Some(value.into()),
        headers: Vec::new(),
    }
}

/// Offers [`steady_record`]s `0..count` at `rate` per second from a thread of its own,
/// with an idempotent producer that rides out a broker outage of minutes.
#[derive(Debug)]
pub struct SteadyProducer {
    thread: JoinHandle<anyhow::Result<()>>,
    offered: Arc<AtomicU64>,
    count: u64,
}

impl SteadyProducer {
    /// Starts offering.
    pub fn spawn(brokers: &str, topic: &str, partitions: i32, rate: u64, count: u64) -> anyhow::Result<SteadyProducer> {
        let producer: BaseProducer<CountFailures> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "300000")
            .create_with_context(CountFailures::default())?;
        let offered = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&offered);
        let topic = topic.to_owned();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let started = Instant::now();
            for i in 0..count {
                // Stay on the schedule of `rate` records per second.
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                let record = steady_record(i, partitions);
                let mut message: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic).partition(record.partition);
                if let (Some(k), Some(v), Some(ts)) = (&record.key, &record.value, record.timestamp) {
                    message = message.key(&k[..]).payload(&v[..]).timestamp(ts);
                }
                loop {
                    match producer.send(message) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                            message = m;
                            producer.poll(Duration::from_millis(10));
                        }
                        Err((e, _)) => return Err(e.into()),
                    }
                }
                seen.store(i + 1, Ordering::Relaxed);
                producer.poll(Duration::ZERO);
            }
            producer.flush(Duration::from_secs(300))?;
            let failed = producer.context().failed.load(Ordering::Relaxed);
            if failed > 0 {
                bail!("{failed} records could not be produced to {topic}");
            }
            Ok(())
        });
        Ok(SteadyProducer { thread, offered, count })
    }

    /// How many records were handed to the producer so far.
    pub fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Waits until `n` records were offered (or the producer ended).
    pub fn wait_offered(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.offered() < n.min(self.count) {
            if Instant::now() > deadline || self.thread.is_finished() {
                bail!("only {} of {n} records offered", self.offered());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits for every record to be acknowledged by the broker.
    pub fn finish(self) -> anyhow::Result<()> {
        self.thread.join().map_err(|_| anyhow::anyhow!("the producer thread panicked"))?
    }
}

/// Reads every record of `topic` that a `read_committed` consumer sees (`committed`), or
/// every record in the log (`read_uncommitted`, aborted transactions included), up to
/// the end of each partition, per partition in order.
pub fn read_topic(brokers: &str, topic: &str, committed: bool) -> anyhow::Result<BTreeMap<i32, Vec<Record>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tidewatch-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", if committed { "read_committed" } else { "read_uncommitted" })
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> =
        md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    if partitions.is_empty() {
        bail!("topic {topic} has no partitions");
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out: BTreeMap<i32, Vec<Record>> = partitions.iter().map(|p| (*p, Vec::new())).collect();
    let mut at_end: HashSet<i32> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < partitions.len() {
        if Instant::now() > deadline {
            bail!("reading {topic} timed out; at the end of {at_end:?} of {partitions:?}");
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let r = Record::from_message(&m);
                at_end.remove(&r.partition);
                out.entry(r.partition).or_default().push(r);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    Ok(out)
}

/// The identity of a record's payload.
fn identity(r: &Record) -> Vec<u8> {
    format!("{:?}", content(r)).into_bytes()
}

/// At-least-once: in every partition the input, in order, is a subsequence of the
/// output, byte for byte (nothing lost, nothing reordered), and the output holds no
/// record that is not in the input's partition (a replay repeats input records, nothing
/// else). Returns how many records the output holds beyond the input (the duplicates).
pub fn assert_nothing_lost(input: &BTreeMap<i32, Vec<Record>>, output: &BTreeMap<i32, Vec<Record>>) -> usize {
    let mut duplicates = 0;
    for (p, got) in output {
        let want = input.get(p).map(Vec::as_slice).unwrap_or_default();
        let known: HashSet<Vec<u8>> = want.iter().map(identity).collect();
        if let Some((i, stranger)) = got.iter().enumerate().find(|(_, r)| !known.contains(&identity(r))) {
            panic!("partition {p}: output record {i} is not an input record of the partition: {:?}", content(stranger));
        }
    }
    for (p, want) in input {
        let got = output.get(p).map(Vec::as_slice).unwrap_or_default();
        let mut next = 0;
        for g in got {
            if next < want.len() && content(g) == content(&want[next]) {
                next += 1;
            }
        }
        assert_eq!(
            next,
            want.len(),
            "partition {p}: input record {next} ({:?}) is missing from the output ({} records out, {} in)",
            want.get(next).map(content),
            got.len(),
            want.len()
        );
        duplicates += got.len() - want.len();
    }
    duplicates
}

/// Exactly-once: the output holds exactly the input, partition by partition, in order,
/// byte for byte.
pub fn assert_exactly_once(input: &BTreeMap<i32, Vec<Record>>, output: &BTreeMap<i32, Vec<Record>>) {
    for p in input.keys().chain(output.keys()) {
        let want = input.get(p).map(Vec::as_slice).unwrap_or_default();
        let got = output.get(p).map(Vec::as_slice).unwrap_or_default();
        if let Some(i) = (0..want.len().min(got.len())).find(|&i| content(&got[i]) != content(&want[i])) {
            panic!("partition {p}: output record {i} differs from input record {i}: {:?} vs {:?}", content(&got[i]), content(&want[i]));
        }
        assert_eq!(got.len(), want.len(), "partition {p}: {} records out, {} in", got.len(), want.len());
    }
}

/// A `tidewatch run` process restarted by the test when it dies (its log in `dir`).
#[derive(Debug)]
pub struct Job {
    /// Runs the binary: e.g. `ip netns exec <ns>` (nothing: the binary itself).
    wrapper: Vec<String>,
    bin: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: usize,
    /// Exit statuses of the runs that ended on their own.
    pub failures: Vec<String>,
}

impl Job {
    /// Starts `tidewatch run ARGS`, with outputs and logs in `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> anyhow::Result<Job> {
        Job::start_wrapped(&[], dir, args)
    }

    /// Starts `WRAPPER… tidewatch run ARGS` (e.g. `ip netns exec <ns>`, which execs the
    /// binary in the same process, so its pid is the job's).
    pub fn start_wrapped(wrapper: &[&str], dir: &Path, args: &[&str]) -> anyhow::Result<Job> {
        let mut job = Job {
            wrapper: wrapper.iter().map(|s| (*s).to_owned()).collect(),
            bin: crate::tidewatch_bin()?,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            dir: dir.to_owned(),
            child: None,
            starts: 0,
            failures: Vec::new(),
        };
        job.spawn()?;
        Ok(job)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("run{}.log", self.starts)))?;
        let mut command = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&self.bin);
                command
            }
            None => Command::new(&self.bin),
        };
        let child = command
            .arg("run")
            .args(&self.args)
            .args(["--metrics-addr", "", "--out"])
            .arg(self.dir.join("out"))
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning tidewatch run")?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// The process id of the running job.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` of the job's process, by pid, and waits for it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { bail!("the job is not running") };
        let status = Command::new("kill").args(["-KILL", &child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -9 {} failed", child.id());
        }
        child.wait()?;
        Ok(())
    }

    /// Starts it again (after [`Job::kill9`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }

    /// The exit status if the job has ended (it is not restarted).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// Restarts the job if it ended on its own (a supervisor's job); true if it did.
    pub fn supervise(&mut self) -> anyhow::Result<bool> {
        let Some(child) = self.child.as_mut() else { return Ok(false) };
        if let Some(status) = child.try_wait()? {
            self.failures.push(format!("run {} exited with {status}", self.starts - 1));
            self.spawn()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// SIGTERM, and waits for the exit (killing it after `timeout`); true if it exited 0.
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        self.terminate()?;
        self.wait_exit(timeout)
    }

    /// Sends SIGTERM (the job finishes its epoch, commits and exits), without waiting.
    pub fn terminate(&self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_ref() {
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        }
        Ok(())
    }

    /// Waits for the job to exit (killing it after `timeout`); true if it exited 0.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else { return Ok(false) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                child.wait()?;
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole log of run `i` (0: the first start).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("run{i}.log"))).unwrap_or_default()
    }

    /// The tail of every run's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.starts)
            .map(|i| {
                let text = std::fs::read_to_string(self.dir.join(format!("run{i}.log"))).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!("--- run {i} ---\n{}", lines[lines.len().saturating_sub(15)..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits, restarting the job if it dies, until the group's committed offsets reach the
/// input's ends (`expected` records in all) — the job has copied everything.
pub fn wait_committed(
    job: &mut Job,
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    expected: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if job.supervise()? {
            eprintln!("the job ended on its own and was restarted: {:?}", job.failures);
        }
        let committed: i64 =
            crate::committed(brokers, group, topic, partitions).map(|c| c.values().map(|o| o.unwrap_or(0)).sum()).unwrap_or(0);
        if committed >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {committed} of {expected} input offsets committed after {timeout:?}\n{}", job.logs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

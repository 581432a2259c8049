//! Client and process health on `/metrics`: librdkafka's statistics of the job's
//! consumers and producers, and the standard `process_*` series of this process.
//!
//! Both are Prometheus collectors: they read their source at every scrape (the latest
//! librdkafka snapshot per client, `/proc/self`), so nothing runs between scrapes.
//!
//! Labels are bounded: `role` (`consumer`, `producer`) and `worker` (the global index
//! of the worker owning the client; one consumer and one producer per worker) on every
//! librdkafka series; `broker` (`host:port`) and `broker_id` on broker series; `topic`
//! and `partition` on partition series (a consumer's assigned partitions, the partitions
//! a producer wrote to). `stat` (`avg`, `p50`, `p99`, `max`) on librdkafka's latency
//! windows, which cover the last statistics interval.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tidewatch_engine::kafka::stats::{
    BrokerSnapshot, ClientKey, ClientRole, ClientSnapshot, ClientStatsBoard, PartitionSnapshot,
    WindowSeconds,
};

type Labels = Vec<(&'static str, String)>;

/// Writes one family of gauges; nothing when it has no series.
fn gauges(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: Vec<(Labels, f64)>,
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in &series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// Writes one family of counters (the encoder appends `_total`); nothing when it has no series.
fn counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: Vec<(Labels, u64)>,
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in &series {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn client_labels(key: &ClientKey) -> Labels {
    vec![
        ("role", key.role.as_str().to_owned()),
        ("worker", key.worker.to_string()),
    ]
}

fn broker_labels(key: &ClientKey, broker: &BrokerSnapshot) -> Labels {
    let mut labels = client_labels(key);
    labels.push(("broker", broker.name.clone()));
    labels.push(("broker_id", broker.node_id.to_string()));
    labels
}

fn partition_labels(key: &ClientKey, partition: &PartitionSnapshot) -> Labels {
    let mut labels = client_labels(key);
    labels.push(("topic", partition.topic.clone()));
    labels.push(("partition", partition.partition.to_string()));
    labels
}

/// Exposes the latest librdkafka statistics of the job's clients (see the module docs
/// for the labels). Counters are librdkafka's own totals since the client started.
#[derive(Debug)]
pub struct ClientStatsCollector {
    board: Arc<ClientStatsBoard>,
}

impl ClientStatsCollector {
    /// A collector over `board` (the job's `control.metrics.clients`).
    pub fn new(board: Arc<ClientStatsBoard>) -> ClientStatsCollector {
        ClientStatsCollector { board }
    }
}

type Snapshots = [(ClientKey, Arc<ClientSnapshot>)];

/// The series of a per-client figure, for the clients `only` accepts.
fn per_client<T>(
    clients: &Snapshots,
    only: impl Fn(ClientRole) -> bool,
    mut value: impl FnMut(&ClientSnapshot) -> T,
) -> Vec<(Labels, T)> {
    clients
        .iter()
        .filter(|(key, _)| only(key.role))
        .map(|(key, snap)| (client_labels(key), value(snap)))
        .collect()
}

/// The series of a per-broker figure, for the clients `only` accepts.
fn per_broker<T>(
    clients: &Snapshots,
    only: impl Fn(ClientRole) -> bool,
    mut value: impl FnMut(&BrokerSnapshot) -> Option<T>,
) -> Vec<(Labels, T)> {
    let mut out = Vec::new();
    for (key, snap) in clients.iter().filter(|(key, _)| only(key.role)) {
        for broker in &snap.brokers {
            if let Some(v) = value(broker) {
                out.push((broker_labels(key, broker), v));
            }
        }
    }
    out
}

/// The series of a latency window per broker, one per `stat`.
fn per_broker_window(
    clients: &Snapshots,
    only: impl Fn(ClientRole) -> bool,
    window: impl Fn(&BrokerSnapshot) -> Option<WindowSeconds>,
) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for (key, snap) in clients.iter().filter(|(key, _)| only(key.role)) {
        for broker in &snap.brokers {
            if let Some(w) = window(broker) {
                for (stat, v) in [
                    ("avg", w.avg),
                    ("p50", w.p50),
                    ("p99", w.p99),
                    ("max", w.max),
                ] {
                    let mut labels = broker_labels(key, broker);
                    labels.push(("stat", stat.to_owned()));
                    out.push((labels, v));
                }
            }
        }
    }
    out
}

/// The series of a per-partition figure of the clients on `role`'s side.
fn per_partition<T>(
    clients: &Snapshots,
    role: ClientRole,
    mut value: impl FnMut(&PartitionSnapshot) -> Option<T>,
) -> Vec<(Labels, T)> {
    let mut out = Vec::new();
    for (key, snap) in clients.iter().filter(|(key, _)| key.role == role) {
        for partition in &snap.partitions {
            if let Some(v) = value(partition) {
                out.push((partition_labels(key, partition), v));
            }
        }
    }
    out
}

impl Collector for ClientStatsCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let c = self.board.snapshots();
        let e = &mut e;
        let any = |_: ClientRole| true;
        let producers = |r: ClientRole| r == ClientRole::Producer;
        let consumers = |r: ClientRole| r == ClientRole::Consumer;
        use ClientRole::{Consumer, Producer};

        counters(
            e,
            "tidewatch_rdkafka_stats_updates",
            "librdkafka statistics documents received (all clients of this process)",
            vec![(Vec::new(), self.board.updates())],
        )?;
        counters(
            e,
            "tidewatch_rdkafka_stats_errors",
            "librdkafka statistics documents that could not be parsed",
            vec![(Vec::new(), self.board.errors())],
        )?;

        // Per client.
        gauges(
            e,
            "tidewatch_rdkafka_client_age_seconds",
            "Time since the librdkafka client was created",
            per_client(&c, any, |s| s.age_seconds),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_replyq",
            "Events waiting in the client's queue to be served by poll()",
            per_client(&c, any, |s| s.replyq as f64),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_msg_count",
            "Messages in the producer's queues (librdkafka msg_cnt)",
            per_client(&c, producers, |s| s.msg_count as f64),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_msg_bytes",
            "Bytes of the messages in the producer's queues (librdkafka msg_size)",
            per_client(&c, producers, |s| s.msg_bytes as f64),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_tx_requests",
            "Requests sent to all brokers",
            per_client(&c, any, |s| non_negative(s.tx_requests)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_tx_bytes",
            "Bytes sent to all brokers",
            per_client(&c, any, |s| non_negative(s.tx_bytes)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_rx_responses",
            "Responses received from all brokers",
            per_client(&c, any, |s| non_negative(s.rx_responses)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_rx_bytes",
            "Bytes received from all brokers",
            per_client(&c, any, |s| non_negative(s.rx_bytes)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_tx_messages",
            "Messages sent to brokers (librdkafka txmsgs)",
            per_client(&c, producers, |s| non_negative(s.tx_messages)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_tx_message_bytes",
            "Bytes of the messages sent to brokers",
            per_client(&c, producers, |s| non_negative(s.tx_message_bytes)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_rx_messages",
            "Messages received from brokers (librdkafka rxmsgs)",
            per_client(&c, consumers, |s| non_negative(s.rx_messages)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_rx_message_bytes",
            "Bytes of the messages received from brokers",
            per_client(&c, consumers, |s| non_negative(s.rx_message_bytes)),
        )?;

        // Per broker.
        gauges(
            e,
            "tidewatch_rdkafka_broker_up",
            "1 while the connection to the broker is up, else 0",
            per_broker(&c, any, |b| Some(f64::from(u8::from(b.is_up())))),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_connects",
            "Connection attempts to the broker",
            per_broker(&c, any, |b| Some(non_negative(b.connects))),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_disconnects",
            "Disconnects from the broker",
            per_broker(&c, any, |b| Some(non_negative(b.disconnects))),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_broker_rtt_seconds",
            "Request round-trip time over the last statistics interval (0 without requests)",
            per_broker_window(&c, any, |b| b.rtt),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_broker_throttle_seconds",
            "Time the broker throttled the client over the last statistics interval",
            per_broker_window(&c, any, |b| b.throttle),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_broker_int_latency_seconds",
            "Producer: time from produce() until the message is in a request for the broker, over the last statistics interval",
            per_broker_window(&c, producers, |b| b.int_latency),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_broker_outbuf_latency_seconds",
            "Time a request waits in the send queue, over the last statistics interval",
            per_broker_window(&c, any, |b| b.outbuf_latency),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_broker_outbuf_requests",
            "Requests waiting to be sent to the broker",
            per_broker(&c, any, |b| Some(b.outbuf_requests as f64)),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_broker_outbuf_messages",
            "Messages in the requests waiting to be sent to the broker",
            per_broker(&c, any, |b| Some(b.outbuf_messages as f64)),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_broker_waitresp_requests",
            "Requests sent to the broker, awaiting their response",
            per_broker(&c, any, |b| Some(b.waitresp_requests as f64)),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_broker_waitresp_messages",
            "Messages in the requests awaiting a response",
            per_broker(&c, any, |b| Some(b.waitresp_messages as f64)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_tx_requests",
            "Requests sent to the broker",
            per_broker(&c, any, |b| Some(b.tx_requests)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_tx_bytes",
            "Bytes sent to the broker",
            per_broker(&c, any, |b| Some(b.tx_bytes)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_tx_errors",
            "Send errors to the broker",
            per_broker(&c, any, |b| Some(b.tx_errors)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_tx_retries",
            "Requests to the broker retried",
            per_broker(&c, any, |b| Some(b.tx_retries)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_request_timeouts",
            "Requests to the broker that timed out",
            per_broker(&c, any, |b| Some(b.request_timeouts)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_rx_responses",
            "Responses received from the broker",
            per_broker(&c, any, |b| Some(b.rx_responses)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_rx_bytes",
            "Bytes received from the broker",
            per_broker(&c, any, |b| Some(b.rx_bytes)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_broker_rx_errors",
            "Receive errors from the broker",
            per_broker(&c, any, |b| Some(b.rx_errors)),
        )?;

        // Per partition: the consumers'.
        gauges(
            e,
            "tidewatch_rdkafka_partition_fetchq_messages",
            "Consumer: messages fetched and waiting in the local queue",
            per_partition(&c, Consumer, |p| Some(p.fetchq_messages as f64)),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_partition_fetchq_bytes",
            "Consumer: bytes fetched and waiting in the local queue",
            per_partition(&c, Consumer, |p| Some(p.fetchq_bytes as f64)),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_consumer_lag_offsets",
            "Consumer: high watermark minus the consumer's position, as librdkafka saw it at its last statistics (absent while unknown)",
            per_partition(&c, Consumer, |p| p.consumer_lag.map(|l| l as f64)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_partition_rx_messages",
            "Consumer: messages received for the partition",
            per_partition(&c, Consumer, |p| Some(p.rx_messages)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_partition_rx_bytes",
            "Consumer: bytes received for the partition",
            per_partition(&c, Consumer, |p| Some(p.rx_bytes)),
        )?;
        // Per partition: the producers'.
        gauges(
            e,
            "tidewatch_rdkafka_partition_msgq_messages",
            "Producer: messages waiting in the partition's queue",
            per_partition(&c, Producer, |p| Some(p.msgq_messages as f64)),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_partition_msgq_bytes",
            "Producer: bytes waiting in the partition's queue",
            per_partition(&c, Producer, |p| Some(p.msgq_bytes as f64)),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_partition_xmit_msgq_messages",
            "Producer: messages ready to be sent (transmit queue)",
            per_partition(&c, Producer, |p| Some(p.xmit_msgq_messages as f64)),
        )?;
        gauges(
            e,
            "tidewatch_rdkafka_partition_inflight_messages",
            "Producer: messages sent, awaiting the broker's acknowledgement",
            per_partition(&c, Producer, |p| Some(p.inflight_messages as f64)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_partition_tx_messages",
            "Producer: messages sent for the partition (retries included)",
            per_partition(&c, Producer, |p| Some(p.tx_messages)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_partition_tx_bytes",
            "Producer: bytes sent for the partition",
            per_partition(&c, Producer, |p| Some(p.tx_bytes)),
        )?;
        counters(
            e,
            "tidewatch_rdkafka_partition_acked_messages",
            "Producer (idempotent, the default): messages the broker acknowledged (librdkafka acked_msgid)",
            per_partition(&c, Producer, |p| Some(p.acked_msgid)),
        )?;
        Ok(())
    }
}

/// The figures of the standard `process_*` series, read from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Soft limit of open file descriptors (`None`: unlimited or unknown).
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI).
const CLOCK_TICKS: f64 = 100.0;

impl ProcessStats {
    /// Reads this process's figures from `/proc/self` (Linux only).
    pub fn read() -> std::io::Result<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let status = std::fs::read_to_string("/proc/self/status")?;
        let boot = std::fs::read_to_string("/proc/stat")?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
        ProcessStats::parse(&stat, &status, &boot, &limits, open_fds).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected /proc format")
        })
    }

    /// Parses `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and `/proc/self/limits`.
    pub fn parse(
        stat: &str,
        status: &str,
        boot: &str,
        limits: &str,
        open_fds: u64,
    ) -> Option<ProcessStats> {
        // Fields after the command name, which is in parentheses and may hold spaces:
        // index 0 is field 3 (state) of proc(5).
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let (utime, stime, threads, start_ticks) = (field(14)?, field(15)?, field(20)?, field(22)?);
        let kb = |key: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line[key.len()..]
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|v| v * 1024)
        };
        let btime: u64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l["Max open files".len()..].split_whitespace().next())
            .and_then(|v| v.parse().ok());
        Some(ProcessStats {
            cpu_seconds: (utime + stime) as f64 / CLOCK_TICKS,
            resident_bytes: kb("VmRSS:")?,
            virtual_bytes: kb("VmSize:")?,
            threads,
            open_fds,
            max_fds,
            start_time_seconds: btime as f64 + start_ticks as f64 / CLOCK_TICKS,
        })
    }
}

/// The standard `process_*` series of this process (what the Go and Java clients'
/// process collectors serve); nothing on systems without `/proc`.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let stats = match ProcessStats::read() {
            Ok(stats) => stats,
            Err(error) => {
                tracing::debug!(%error, "no process metrics");
                return Ok(());
            }
        };
        let e = &mut e;
        let one = |v: f64| vec![(Labels::new(), v)];
        let mut cpu = e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.cpu_seconds).encode(cpu.encode_family(&Labels::new())?)?;
        gauges(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            one(stats.resident_bytes as f64),
        )?;
        gauges(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            one(stats.virtual_bytes as f64),
        )?;
        gauges(
            e,
            "process_threads",
            "Number of OS threads in the process",
            one(stats.threads as f64),
        )?;
        gauges(
            e,
            "process_open_fds",
            "Number of open file descriptors",
            one(stats.open_fds as f64),
        )?;
        if let Some(max) = stats.max_fds {
            gauges(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors",
                one(max as f64),
            )?;
        }
        gauges(
            e,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            one(stats.start_time_seconds),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    const STAT: &str = "4242 (tide watch) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 123456 987654321 5000 18446744073709551615";
    const STATUS: &str =
        "Name:\ttidewatch\nVmSize:\t  964504 kB\nVmRSS:\t   20000 kB\nThreads:\t7\n";
    const BOOT: &str = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";

    #[test]
    fn proc_files_parse_into_seconds_and_bytes() {
        let stats = ProcessStats::parse(STAT, STATUS, BOOT, LIMITS, 12).expect("parses");
        assert!((stats.cpu_seconds - 3.0).abs() < 1e-9, "{stats:?}");
        assert_eq!(
            (
                stats.resident_bytes,
                stats.virtual_bytes,
                stats.threads,
                stats.open_fds,
                stats.max_fds
            ),
            (20_000 * 1024, 964_504 * 1024, 7, 12, Some(1024))
        );
        assert!(
            (stats.start_time_seconds - 1_700_001_234.56).abs() < 1e-6,
            "{stats:?}"
        );
        assert!(ProcessStats::parse("garbage", STATUS, BOOT, LIMITS, 1).is_none());
    }

    #[test]
    fn this_process_has_memory_threads_and_a_start_time() {
        let stats = ProcessStats::read().expect("reads /proc/self");
        assert!(
            stats.resident_bytes > 0
                && stats.virtual_bytes >= stats.resident_bytes
                && stats.threads >= 1
                && stats.open_fds >= 1,
            "{stats:?}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        assert!(
            stats.start_time_seconds > 1e9 && stats.start_time_seconds <= now + 1.0,
            "{stats:?}"
        );
    }

    #[test]
    fn collectors_encode_the_named_series() {
        use tidewatch_engine::kafka::stats::ClientSnapshot;
        let board = Arc::new(ClientStatsBoard::default());
        let mut snapshot = ClientSnapshot {
            name: "rdkafka#producer-1".into(),
            ..ClientSnapshot::default()
        };
        snapshot.brokers.push(BrokerSnapshot {
            name: "127.0.0.1:9092".into(),
            node_id: 1,
            state: "UP".into(),
            rtt: Some(WindowSeconds {
                avg: 0.002,
                p50: 0.001,
                p99: 0.004,
                max: 0.005,
                count: 10,
            }),
            ..BrokerSnapshot::default()
        });
        snapshot.partitions.push(PartitionSnapshot {
            topic: "out".into(),
            partition: 1,
            tx_messages: 5,
            acked_msgid: 5,
            ..PartitionSnapshot::default()
        });
        board.update(
            ClientKey {
                role: ClientRole::Producer,
                worker: 2,
            },
            snapshot,
        );
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ClientStatsCollector::new(board)));
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        for line in [
            "tidewatch_rdkafka_broker_rtt_seconds{role=\"producer\",worker=\"2\",broker=\"127.0.0.1:9092\",broker_id=\"1\",stat=\"p99\"} 0.004",
            "tidewatch_rdkafka_broker_up{role=\"producer\",worker=\"2\",broker=\"127.0.0.1:9092\",broker_id=\"1\"} 1",
            "tidewatch_rdkafka_partition_acked_messages_total{role=\"producer\",worker=\"2\",topic=\"out\",partition=\"1\"} 5",
            "tidewatch_rdkafka_stats_updates_total 1",
            "# TYPE process_cpu_seconds counter",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("process_resident_memory_bytes ")),
            "{text}"
        );
        assert!(
            !text.contains("tidewatch_rdkafka_partition_fetchq_messages"),
            "no consumer, no consumer series:\n{text}"
        );
    }
}

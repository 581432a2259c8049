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

/// The clients a family of series covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clients {
    /// Consumers and producers.
    All,
    /// Producers only.
    Producers,
    /// Consumers only.
    Consumers,
}

impl Clients {
    /// Whether the clients on `role`'s side are covered.
    fn accepts(self, role: ClientRole) -> bool {
        match self {
            Clients::All => true,
            Clients::Producers => role == ClientRole::Producer,
            Clients::Consumers => role == ClientRole::Consumer,
        }
    }
}

/// How a family reads its figure, which also decides its type (gauge or counter) and
/// its labels (none for the board's own counters, else those of a client, a broker of
/// a client or a partition of a client).
#[derive(Debug, Clone, Copy)]
enum Read {
    /// A counter of the whole board: one series without labels.
    BoardCounter(fn(&ClientStatsBoard) -> u64),
    /// A gauge per client.
    ClientGauge(fn(&ClientSnapshot) -> f64),
    /// A counter per client.
    ClientCounter(fn(&ClientSnapshot) -> u64),
    /// A gauge per broker of a client.
    BrokerGauge(fn(&BrokerSnapshot) -> f64),
    /// A counter per broker of a client.
    BrokerCounter(fn(&BrokerSnapshot) -> u64),
    /// A latency window per broker of a client, one gauge per `stat`; none while absent.
    BrokerWindow(fn(&BrokerSnapshot) -> Option<WindowSeconds>),
    /// A gauge per partition of a client; none while absent.
    PartitionGauge(fn(&PartitionSnapshot) -> Option<f64>),
    /// A counter per partition of a client.
    PartitionCounter(fn(&PartitionSnapshot) -> u64),
}

/// One family of [`ClientStatsCollector`]'s series: a row of [`CLIENT_FAMILIES`].
#[derive(Debug, Clone, Copy)]
struct Family {
    /// The family's name (the encoder appends `_total` to a counter's series).
    name: &'static str,
    /// Its help text.
    help: &'static str,
    /// The clients it has series of (ignored by [`Read::BoardCounter`]).
    clients: Clients,
    /// How its figure is read, hence its type and labels.
    read: Read,
}

/// The series of a per-client figure, for the clients `only` accepts.
fn per_client<T>(
    clients: &Snapshots,
    only: Clients,
    value: impl Fn(&ClientSnapshot) -> T,
) -> Vec<(Labels, T)> {
    clients
        .iter()
        .filter(|(key, _)| only.accepts(key.role))
        .map(|(key, snap)| (client_labels(key), value(snap)))
        .collect()
}

/// The series of a per-broker figure, for the clients `only` accepts.
fn per_broker<T>(
    clients: &Snapshots,
    only: Clients,
    value: impl Fn(&BrokerSnapshot) -> T,
) -> Vec<(Labels, T)> {
    let mut out = Vec::new();
    for (key, snap) in clients.iter().filter(|(key, _)| only.accepts(key.role)) {
        for broker in &snap.brokers {
            out.push((broker_labels(key, broker), value(broker)));
        }
    }
    out
}

/// The series of a latency window per broker, one per `stat`, for the clients `only`
/// accepts.
fn per_broker_window(
    clients: &Snapshots,
    only: Clients,
    window: impl Fn(&BrokerSnapshot) -> Option<WindowSeconds>,
) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for (key, snap) in clients.iter().filter(|(key, _)| only.accepts(key.role)) {
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

/// The series of a per-partition figure, for the clients `only` accepts.
fn per_partition<T>(
    clients: &Snapshots,
    only: Clients,
    value: impl Fn(&PartitionSnapshot) -> Option<T>,
) -> Vec<(Labels, T)> {
    let mut out = Vec::new();
    for (key, snap) in clients.iter().filter(|(key, _)| only.accepts(key.role)) {
        for partition in &snap.partitions {
            if let Some(v) = value(partition) {
                out.push((partition_labels(key, partition), v));
            }
        }
    }
    out
}

impl Family {
    /// Writes the family's series from `board` and its `clients`; nothing when it has none.
    fn encode(
        &self,
        e: &mut DescriptorEncoder<'_>,
        board: &ClientStatsBoard,
        clients: &Snapshots,
    ) -> fmt::Result {
        let (name, help, only) = (self.name, self.help, self.clients);
        match self.read {
            Read::BoardCounter(f) => counters(e, name, help, vec![(Vec::new(), f(board))]),
            Read::ClientGauge(f) => gauges(e, name, help, per_client(clients, only, f)),
            Read::ClientCounter(f) => counters(e, name, help, per_client(clients, only, f)),
            Read::BrokerGauge(f) => gauges(e, name, help, per_broker(clients, only, f)),
            Read::BrokerCounter(f) => counters(e, name, help, per_broker(clients, only, f)),
            Read::BrokerWindow(f) => gauges(e, name, help, per_broker_window(clients, only, f)),
            Read::PartitionGauge(f) => gauges(e, name, help, per_partition(clients, only, f)),
            Read::PartitionCounter(f) => {
                counters(e, name, help, per_partition(clients, only, |p| Some(f(p))))
            }
        }
    }
}

/// The families of [`ClientStatsCollector`], in the order they are written.
const CLIENT_FAMILIES: &[Family] = &[
    Family {
        name: "tidewatch_rdkafka_stats_updates",
        help: "librdkafka statistics documents received (all clients of this process)",
        clients: Clients::All,
        read: Read::BoardCounter(ClientStatsBoard::updates),
    },
    Family {
        name: "tidewatch_rdkafka_stats_errors",
        help: "librdkafka statistics documents that could not be parsed",
        clients: Clients::All,
        read: Read::BoardCounter(ClientStatsBoard::errors),
    },
    // Per client.
    Family {
        name: "tidewatch_rdkafka_client_age_seconds",
        help: "Time since the librdkafka client was created",
        clients: Clients::All,
        read: Read::ClientGauge(|s| s.age_seconds),
    },
    Family {
        name: "tidewatch_rdkafka_replyq",
        help: "Events waiting in the client's queue to be served by poll()",
        clients: Clients::All,
        read: Read::ClientGauge(|s| s.replyq as f64),
    },
    Family {
        name: "tidewatch_rdkafka_msg_count",
        help: "Messages in the producer's queues (librdkafka msg_cnt)",
        clients: Clients::Producers,
        read: Read::ClientGauge(|s| s.msg_count as f64),
    },
    Family {
        name: "tidewatch_rdkafka_msg_bytes",
        help: "Bytes of the messages in the producer's queues (librdkafka msg_size)",
        clients: Clients::Producers,
        read: Read::ClientGauge(|s| s.msg_bytes as f64),
    },
    Family {
        name: "tidewatch_rdkafka_tx_requests",
        help: "Requests sent to all brokers",
        clients: Clients::All,
        read: Read::ClientCounter(|s| non_negative(s.tx_requests)),
    },
    Family {
        name: "tidewatch_rdkafka_tx_bytes",
        help: "Bytes sent to all brokers",
        clients: Clients::All,
        read: Read::ClientCounter(|s| non_negative(s.tx_bytes)),
    },
    Family {
        name: "tidewatch_rdkafka_rx_responses",
        help: "Responses received from all brokers",
        clients: Clients::All,
        read: Read::ClientCounter(|s| non_negative(s.rx_responses)),
    },
    Family {
        name: "tidewatch_rdkafka_rx_bytes",
        help: "Bytes received from all brokers",
        clients: Clients::All,
        read: Read::ClientCounter(|s| non_negative(s.rx_bytes)),
    },
    Family {
        name: "tidewatch_rdkafka_tx_messages",
        help: "Messages sent to brokers (librdkafka txmsgs)",
        clients: Clients::Producers,
        read: Read::ClientCounter(|s| non_negative(s.tx_messages)),
    },
    Family {
        name: "tidewatch_rdkafka_tx_message_bytes",
        help: "Bytes of the messages sent to brokers",
        clients: Clients::Producers,
        read: Read::ClientCounter(|s| non_negative(s.tx_message_bytes)),
    },
    Family {
        name: "tidewatch_rdkafka_rx_messages",
        help: "Messages received from brokers (librdkafka rxmsgs)",
        clients: Clients::Consumers,
        read: Read::ClientCounter(|s| non_negative(s.rx_messages)),
    },
    Family {
        name: "tidewatch_rdkafka_rx_message_bytes",
        help: "Bytes of the messages received from brokers",
        clients: Clients::Consumers,
        read: Read::ClientCounter(|s| non_negative(s.rx_message_bytes)),
    },
    // Per broker.
    Family {
        name: "tidewatch_rdkafka_broker_up",
        help: "1 while the connection to the broker is up, else 0",
        clients: Clients::All,
        read: Read::BrokerGauge(|b| f64::from(u8::from(b.is_up()))),
    },
    Family {
        name: "tidewatch_rdkafka_broker_connects",
        help: "Connection attempts to the broker",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| non_negative(b.connects)),
    },
    Family {
        name: "tidewatch_rdkafka_broker_disconnects",
        help: "Disconnects from the broker",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| non_negative(b.disconnects)),
    },
    Family {
        name: "tidewatch_rdkafka_broker_rtt_seconds",
        help: "Request round-trip time over the last statistics interval (0 without requests)",
        clients: Clients::All,
        read: Read::BrokerWindow(|b| b.rtt),
    },
    Family {
        name: "tidewatch_rdkafka_broker_throttle_seconds",
        help: "Time the broker throttled the client over the last statistics interval",
        clients: Clients::All,
        read: Read::BrokerWindow(|b| b.throttle),
    },
    Family {
        name: "tidewatch_rdkafka_broker_int_latency_seconds",
        help: "Producer: time from produce() until the message is in a request for the broker, over the last statistics interval",
        clients: Clients::Producers,
        read: Read::BrokerWindow(|b| b.int_latency),
    },
    Family {
        name: "tidewatch_rdkafka_broker_outbuf_latency_seconds",
        help: "Time a request waits in the send queue, over the last statistics interval",
        clients: Clients::All,
        read: Read::BrokerWindow(|b| b.outbuf_latency),
    },
    Family {
        name: "tidewatch_rdkafka_broker_outbuf_requests",
        help: "Requests waiting to be sent to the broker",
        clients: Clients::All,
        read: Read::BrokerGauge(|b| b.outbuf_requests as f64),
    },
    Family {
        name: "tidewatch_rdkafka_broker_outbuf_messages",
        help: "Messages in the requests waiting to be sent to the broker",
        clients: Clients::All,
        read: Read::BrokerGauge(|b| b.outbuf_messages as f64),
    },
    Family {
        name: "tidewatch_rdkafka_broker_waitresp_requests",
        help: "Requests sent to the broker, awaiting their response",
        clients: Clients::All,
        read: Read::BrokerGauge(|b| b.waitresp_requests as f64),
    },
    Family {
        name: "tidewatch_rdkafka_broker_waitresp_messages",
        help: "Messages in the requests awaiting a response",
        clients: Clients::All,
        read: Read::BrokerGauge(|b| b.waitresp_messages as f64),
    },
    Family {
        name: "tidewatch_rdkafka_broker_tx_requests",
        help: "Requests sent to the broker",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| b.tx_requests),
    },
    Family {
        name: "tidewatch_rdkafka_broker_tx_bytes",
        help: "Bytes sent to the broker",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| b.tx_bytes),
    },
    Family {
        name: "tidewatch_rdkafka_broker_tx_errors",
        help: "Send errors to the broker",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| b.tx_errors),
    },
    Family {
        name: "tidewatch_rdkafka_broker_tx_retries",
        help: "Requests to the broker retried",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| b.tx_retries),
    },
    Family {
        name: "tidewatch_rdkafka_broker_request_timeouts",
        help: "Requests to the broker that timed out",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| b.request_timeouts),
    },
    Family {
        name: "tidewatch_rdkafka_broker_rx_responses",
        help: "Responses received from the broker",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| b.rx_responses),
    },
    Family {
        name: "tidewatch_rdkafka_broker_rx_bytes",
        help: "Bytes received from the broker",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| b.rx_bytes),
    },
    Family {
        name: "tidewatch_rdkafka_broker_rx_errors",
        help: "Receive errors from the broker",
        clients: Clients::All,
        read: Read::BrokerCounter(|b| b.rx_errors),
    },
    // Per partition: the consumers'.
    Family {
        name: "tidewatch_rdkafka_partition_fetchq_messages",
        help: "Consumer: messages fetched and waiting in the local queue",
        clients: Clients::Consumers,
        read: Read::PartitionGauge(|p| Some(p.fetchq_messages as f64)),
    },
    Family {
        name: "tidewatch_rdkafka_partition_fetchq_bytes",
        help: "Consumer: bytes fetched and waiting in the local queue",
        clients: Clients::Consumers,
        read: Read::PartitionGauge(|p| Some(p.fetchq_bytes as f64)),
    },
    Family {
        name: "tidewatch_rdkafka_consumer_lag_offsets",
        help: "Consumer: high watermark minus the consumer's position, as librdkafka saw it at its last statistics (absent while unknown)",
        clients: Clients::Consumers,
        read: Read::PartitionGauge(|p| p.consumer_lag.map(|l| l as f64)),
    },
    Family {
        name: "tidewatch_rdkafka_partition_rx_messages",
        help: "Consumer: messages received for the partition",
        clients: Clients::Consumers,
        read: Read::PartitionCounter(|p| p.rx_messages),
    },
    Family {
        name: "tidewatch_rdkafka_partition_rx_bytes",
        help: "Consumer: bytes received for the partition",
        clients: Clients::Consumers,
        read: Read::PartitionCounter(|p| p.rx_bytes),
    },
    // Per partition: the producers'.
    Family {
        name: "tidewatch_rdkafka_partition_msgq_messages",
        help: "Producer: messages waiting in the partition's queue",
        clients: Clients::Producers,
        read: Read::PartitionGauge(|p| Some(p.msgq_messages as f64)),
    },
    Family {
        name: "tidewatch_rdkafka_partition_msgq_bytes",
        help: "Producer: bytes waiting in the partition's queue",
        clients: Clients::Producers,
        read: Read::PartitionGauge(|p| Some(p.msgq_bytes as f64)),
    },
    Family {
        name: "tidewatch_rdkafka_partition_xmit_msgq_messages",
        help: "Producer: messages ready to be sent (transmit queue)",
        clients: Clients::Producers,
        read: Read::PartitionGauge(|p| Some(p.xmit_msgq_messages as f64)),
    },
    Family {
        name: "tidewatch_rdkafka_partition_inflight_messages",
        help: "Producer: messages sent, awaiting the broker's acknowledgement",
        clients: Clients::Producers,
        read: Read::PartitionGauge(|p| Some(p.inflight_messages as f64)),
    },
    Family {
        name: "tidewatch_rdkafka_partition_tx_messages",
        help: "Producer: messages sent for the partition (retries included)",
        clients: Clients::Producers,
        read: Read::PartitionCounter(|p| p.tx_messages),
    },
    Family {
        name: "tidewatch_rdkafka_partition_tx_bytes",
        help: "Producer: bytes sent for the partition",
        clients: Clients::Producers,
        read: Read::PartitionCounter(|p| p.tx_bytes),
    },
    Family {
        name: "tidewatch_rdkafka_partition_acked_messages",
        help: "Producer (idempotent, the default): messages the broker acknowledged (librdkafka acked_msgid)",
        clients: Clients::Producers,
        read: Read::PartitionCounter(|p| p.acked_msgid),
    },
];

impl Collector for ClientStatsCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let clients = self.board.snapshots();
        for family in CLIENT_FAMILIES {
            family.encode(&mut e, &self.board, &clients)?;
        }
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

    /// A consumer and a producer of worker 1, each with a broker (down, every window
    /// present) and two partitions (one with a lag, one without).
    fn board_of_two_clients() -> Arc<ClientStatsBoard> {
        use tidewatch_engine::kafka::stats::ClientSnapshot;
        let window = WindowSeconds {
            avg: 0.5,
            p50: 0.25,
            p99: 0.75,
            max: 1.0,
            count: 4,
        };
        let broker = BrokerSnapshot {
            name: "k:9092".into(),
            node_id: 3,
            state: "DOWN".into(),
            disconnects: -1,
            rtt: Some(window),
            throttle: Some(window),
            int_latency: Some(window),
            outbuf_latency: Some(window),
            ..BrokerSnapshot::default()
        };
        let partition = |n: i32, lag: Option<i64>| PartitionSnapshot {
            topic: "t".into(),
            partition: n,
            consumer_lag: lag,
            ..PartitionSnapshot::default()
        };
        let board = Arc::new(ClientStatsBoard::default());
        for role in [ClientRole::Consumer, ClientRole::Producer] {
            let snapshot = ClientSnapshot {
                rx_messages: -3,
                brokers: vec![broker.clone()],
                partitions: vec![partition(0, Some(7)), partition(1, None)],
                ..ClientSnapshot::default()
            };
            board.update(ClientKey { role, worker: 1 }, snapshot);
        }
        board
    }

    #[test]
    fn every_family_of_the_table_is_written_in_order_with_its_type() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ClientStatsCollector::new(board_of_two_clients())));
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");

        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let expected: Vec<String> = CLIENT_FAMILIES
            .iter()
            .map(|f| {
                let kind = match f.read {
                    Read::BoardCounter(_)
                    | Read::ClientCounter(_)
                    | Read::BrokerCounter(_)
                    | Read::PartitionCounter(_) => "counter",
                    _ => "gauge",
                };
                format!("# TYPE {} {kind}", f.name)
            })
            .collect();
        assert_eq!(types, expected, "in:\n{text}");
        let c = "role=\"consumer\",worker=\"1\"";
        let p = "role=\"producer\",worker=\"1\"";
        let b = "broker=\"k:9092\",broker_id=\"3\"";
        for line in [
            format!(
                "tidewatch_rdkafka_consumer_lag_offsets{{{c},topic=\"t\",partition=\"0\"}} 7.0"
            ),
            format!("tidewatch_rdkafka_rx_messages_total{{{c}}} 0"),
            format!("tidewatch_rdkafka_broker_up{{{c},{b}}} 0.0"),
            format!("tidewatch_rdkafka_broker_disconnects_total{{{c},{b}}} 0"),
            format!("tidewatch_rdkafka_broker_int_latency_seconds{{{p},{b},stat=\"p50\"}} 0.25"),
        ] {
            assert!(text.contains(&line), "no {line:?} in:\n{text}");
        }
        for absent in [
            "tidewatch_rdkafka_consumer_lag_offsets{role=\"consumer\",worker=\"1\",topic=\"t\",partition=\"1\"}",
            "tidewatch_rdkafka_broker_int_latency_seconds{role=\"consumer\"",
            "tidewatch_rdkafka_msg_count{role=\"consumer\"",
            "tidewatch_rdkafka_partition_fetchq_messages{role=\"producer\"",
        ] {
            assert!(!text.contains(absent), "{absent:?} in:\n{text}");
        }
    }
}

//! librdkafka's statistics of the engine's Kafka clients, kept as the latest snapshot
//! per client for the metrics endpoint.
//!
//! librdkafka emits a JSON document every `statistics.interval.ms` (tidewatch's default
//! [`DEFAULT_INTERVAL_MS`]; `0` turns it off; a user's `-X statistics.interval.ms=` or
//! `[kafka]` key wins). It is queued like the client's other events and served by the
//! client's `poll`, so the contexts' handler runs on the worker thread that polls: it
//! hands the document to a [`StatsReporter`], which parses it with rdkafka's
//! [`Statistics`], keeps only the figures tidewatch exposes ([`ClientSnapshot`]) and
//! swaps it into the process's [`ClientStatsBoard`] under a short lock — a fraction of a
//! millisecond per interval. Readers (the `/metrics` endpoint) clone the `Arc`s of the
//! snapshots and never hold the lock for longer than that.
//!
//! Time figures are converted to seconds here: librdkafka reports its latency windows
//! (`rtt`, `int_latency`, `outbuf_latency`) in microseconds and `throttle` in
//! milliseconds.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::statistics::{Broker, Partition, Statistics, Window};

/// tidewatch's default `statistics.interval.ms` for the source's consumers and the
/// sink's producers.
pub const DEFAULT_INTERVAL_MS: &str = "5000";

/// Which side of the job a client is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientRole {
    /// A source's consumer (reads the input topic).
    Consumer,
    /// A sink's producer (writes the output topic).
    Producer,
}

impl ClientRole {
    /// The label value: `consumer` or `producer`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Consumer => "consumer",
            ClientRole::Producer => "producer",
        }
    }
}

impl fmt::Display for ClientRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of librdkafka's rolling windows (the last statistics interval), in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowSeconds {
    /// Mean.
    pub avg: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Values in the window (0: nothing happened, every figure is 0).
    pub count: i64,
}

impl WindowSeconds {
    fn from_window(window: &Window, units_per_second: f64) -> WindowSeconds {
        // Dividing (not multiplying by 1e-6) keeps 378 µs printed as 0.000378.
        let s = |v: i64| v.max(0) as f64 / units_per_second;
        WindowSeconds {
            avg: s(window.avg),
            p50: s(window.p50),
            p99: s(window.p99),
            max: s(window.max),
            count: window.cnt,
        }
    }
}

/// What tidewatch keeps of one broker connection of a client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerSnapshot {
    /// `host:port` of the broker.
    pub name: String,
    /// The broker's node id.
    pub node_id: i32,
    /// librdkafka's connection state (`UP`, `DOWN`, `CONNECT`, ...).
    pub state: String,
    /// Requests waiting to be sent.
    pub outbuf_requests: i64,
    /// Messages in the requests waiting to be sent.
    pub outbuf_messages: i64,
    /// Requests sent, awaiting their response.
    pub waitresp_requests: i64,
    /// Messages in the requests awaiting their response.
    pub waitresp_messages: i64,
    /// Requests sent.
    pub tx_requests: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Requests retried.
    pub tx_retries: u64,
    /// Requests timed out.
    pub request_timeouts: u64,
    /// Responses received.
    pub rx_responses: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Connection attempts, successful or not.
    pub connects: i64,
    /// Disconnects, by the broker or on errors.
    pub disconnects: i64,
    /// Round-trip time of requests.
    pub rtt: Option<WindowSeconds>,
    /// Time the broker throttled the client.
    pub throttle: Option<WindowSeconds>,
    /// Producer: time from `produce()` until the message is in a request for the broker.
    pub int_latency: Option<WindowSeconds>,
    /// Time a request waits in the send queue.
    pub outbuf_latency: Option<WindowSeconds>,
}

impl BrokerSnapshot {
    /// Whether the connection is up (`UP`, or `UPDATE` while it refreshes its features).
    pub fn is_up(&self) -> bool {
        matches!(self.state.as_str(), "UP" | "UPDATE")
    }

    fn from_broker(b: &Broker) -> BrokerSnapshot {
        const MICROS: f64 = 1e6; // per second
        const MILLIS: f64 = 1e3; // per second
        BrokerSnapshot {
            name: b.nodename.clone(),
            node_id: b.nodeid,
            state: b.state.clone(),
            outbuf_requests: b.outbuf_cnt,
            outbuf_messages: b.outbuf_msg_cnt,
            waitresp_requests: b.waitresp_cnt,
            waitresp_messages: b.waitresp_msg_cnt,
            tx_requests: b.tx,
            tx_bytes: b.txbytes,
            tx_errors: b.txerrs,
            tx_retries: b.txretries,
            request_timeouts: b.req_timeouts,
            rx_responses: b.rx,
            rx_bytes: b.rxbytes,
            rx_errors: b.rxerrs,
            connects: b.connects.unwrap_or(0),
            disconnects: b.disconnects.unwrap_or(0),
            rtt: b
                .rtt
                .as_ref()
                .map(|w| WindowSeconds::from_window(w, MICROS)),
            throttle: b
                .throttle
                .as_ref()
                .map(|w| WindowSeconds::from_window(w, MILLIS)),
            int_latency: b
                .int_latency
                .as_ref()
                .map(|w| WindowSeconds::from_window(w, MICROS)),
            outbuf_latency: b
                .outbuf_latency
                .as_ref()
                .map(|w| WindowSeconds::from_window(w, MICROS)),
        }
    }
}

/// What tidewatch keeps of one topic partition of a client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionSnapshot {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Node id of the partition's leader (-1 unknown).
    pub leader: i32,
    /// Consumer: messages fetched and waiting in the local queue.
    pub fetchq_messages: i64,
    /// Consumer: bytes fetched and waiting in the local queue.
    pub fetchq_bytes: u64,
    /// Consumer: high watermark minus the consumer's position, as librdkafka sees it
    /// (`None` while either is unknown).
    pub consumer_lag: Option<i64>,
    /// Consumer: the partition's high watermark (`None` while unknown).
    pub high_watermark: Option<i64>,
    /// Producer: messages waiting in the partition's queue.
    pub msgq_messages: i64,
    /// Producer: bytes waiting in the partition's queue.
    pub msgq_bytes: u64,
    /// Producer: messages ready to be sent (in the transmit queue).
    pub xmit_msgq_messages: i64,
    /// Producer: messages sent, awaiting the broker's acknowledgement.
    pub inflight_messages: i64,
    /// Producer: messages sent to the broker (retries included).
    pub tx_messages: u64,
    /// Producer: bytes sent to the broker.
    pub tx_bytes: u64,
    /// Producer (idempotent): id of the last acknowledged message; ids are handed out
    /// per partition from 1, so it counts the acknowledged messages.
    pub acked_msgid: u64,
    /// Consumer: messages received.
    pub rx_messages: u64,
    /// Consumer: bytes received.
    pub rx_bytes: u64,
}

impl PartitionSnapshot {
    fn from_partition(topic: &str, p: &Partition) -> PartitionSnapshot {
        PartitionSnapshot {
            topic: topic.to_owned(),
            partition: p.partition,
            leader: p.leader,
            fetchq_messages: p.fetchq_cnt,
            fetchq_bytes: p.fetchq_size,
            consumer_lag: (p.consumer_lag >= 0).then_some(p.consumer_lag),
            high_watermark: (p.hi_offset >= 0).then_some(p.hi_offset),
            msgq_messages: p.msgq_cnt,
            msgq_bytes: p.msgq_bytes,
            xmit_msgq_messages: p.xmit_msgq_cnt,
            inflight_messages: p.msgs_inflight,
            tx_messages: p.txmsgs,
            tx_bytes: p.txbytes,
            acked_msgid: p.acked_msgid,
            rx_messages: p.rxmsgs,
            rx_bytes: p.rxbytes,
        }
    }

    /// Whether a producer ever had traffic on this partition (librdkafka lists every
    /// partition of the topic; the sink of a worker writes only its own).
    fn producer_active(&self) -> bool {
        self.tx_messages > 0
            || self.msgq_messages > 0
            || self.xmit_msgq_messages > 0
            || self.inflight_messages > 0
    }
}

/// The latest statistics of one client, reduced to what tidewatch exposes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientSnapshot {
    /// librdkafka's name of the client (`rdkafka#consumer-3`).
    pub name: String,
    /// Seconds since the client was created.
    pub age_seconds: f64,
    /// Events waiting to be served by `poll()`.
    pub replyq: i64,
    /// Producer: messages in the client's queues.
    pub msg_count: u64,
    /// Producer: bytes of the messages in the client's queues.
    pub msg_bytes: u64,
    /// Producer: the queue's limit in messages (`queue.buffering.max.messages`).
    pub msg_count_max: u64,
    /// Producer: the queue's limit in bytes.
    pub msg_bytes_max: u64,
    /// Requests sent to all brokers.
    pub tx_requests: i64,
    /// Bytes sent to all brokers.
    pub tx_bytes: i64,
    /// Responses received from all brokers.
    pub rx_responses: i64,
    /// Bytes received from all brokers.
    pub rx_bytes: i64,
    /// Messages sent (producer).
    pub tx_messages: i64,
    /// Bytes of the messages sent (producer).
    pub tx_message_bytes: i64,
    /// Messages received (consumer).
    pub rx_messages: i64,
    /// Bytes of the messages received (consumer).
    pub rx_message_bytes: i64,
    /// The brokers of the cluster this client talks to (bootstrap and internal
    /// pseudo-brokers left out), by node id.
    pub brokers: Vec<BrokerSnapshot>,
    /// Consumer: the partitions assigned to it; producer: the partitions it wrote to.
    pub partitions: Vec<PartitionSnapshot>,
}

impl ClientSnapshot {
    /// Reduces librdkafka's statistics of a client on `role`'s side.
    pub fn from_statistics(stats: &Statistics, role: ClientRole) -> ClientSnapshot {
        let mut brokers: Vec<BrokerSnapshot> = stats
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0)
            .map(BrokerSnapshot::from_broker)
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        let mut partitions: Vec<PartitionSnapshot> = stats
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0 && (role == ClientRole::Producer || p.desired))
                    .map(|p| PartitionSnapshot::from_partition(&t.topic, p))
            })
            .filter(|p| role == ClientRole::Consumer || p.producer_active())
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        ClientSnapshot {
            name: stats.name.clone(),
            age_seconds: stats.age.max(0) as f64 / 1e6,
            replyq: stats.replyq,
            msg_count: stats.msg_cnt,
            msg_bytes: stats.msg_size,
            msg_count_max: stats.msg_max,
            msg_bytes_max: stats.msg_size_max,
            tx_requests: stats.tx,
            tx_bytes: stats.tx_bytes,
            rx_responses: stats.rx,
            rx_bytes: stats.rx_bytes,
            tx_messages: stats.txmsgs,
            tx_message_bytes: stats.txmsg_bytes,
            rx_messages: stats.rxmsgs,
            rx_message_bytes: stats.rxmsg_bytes,
            brokers,
            partitions,
        }
    }
}

/// Identifies a client of the process: its side and the (global) index of the worker
/// that owns it. These are the only per-client labels on `/metrics`, so the series grow
/// with the workers, never with restarts or reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey {
    /// Consumer or producer.
    pub role: ClientRole,
    /// The worker owning the client.
    pub worker: usize,
}

/// The latest snapshot of every client of the process.
#[derive(Debug, Default)]
pub struct ClientStatsBoard {
    clients: Mutex<BTreeMap<ClientKey, Arc<ClientSnapshot>>>,
    updates: AtomicU64,
    errors: AtomicU64,
}

impl ClientStatsBoard {
    /// Replaces the snapshot of `key`.
    pub fn update(&self, key: ClientKey, snapshot: ClientSnapshot) {
        let snapshot = Arc::new(snapshot);
        let old = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, snapshot);
        // The old snapshot is freed outside the lock.
        drop(old);
        self.updates.fetch_add(1, Ordering::Relaxed);
    }

    /// The latest snapshot of every client that reported, ordered by role and worker.
    /// Snapshots stay after their client is dropped (the figures it ended with).
    pub fn snapshots(&self) -> Vec<(ClientKey, Arc<ClientSnapshot>)> {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (*k, Arc::clone(v)))
            .collect()
    }

    /// Statistics documents received so far.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// Statistics documents that could not be parsed.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Hands the statistics of one client to the board; held by the client's context.
#[derive(Debug, Clone)]
pub struct StatsReporter {
    board: Arc<ClientStatsBoard>,
    key: ClientKey,
}

impl StatsReporter {
    /// A reporter for the client of `worker` on `role`'s side.
    pub fn new(board: Arc<ClientStatsBoard>, role: ClientRole, worker: usize) -> StatsReporter {
        StatsReporter {
            board,
            key: ClientKey { role, worker },
        }
    }

    /// Parses one statistics document (librdkafka's JSON) and keeps its snapshot. Runs
    /// on the thread polling the client: a parse, a reduction and a swap under a short lock.
    pub fn report_json(&self, json: &[u8]) {
        match serde_json::from_slice::<Statistics>(json) {
            Ok(stats) => self.board.update(
                self.key,
                ClientSnapshot::from_statistics(&stats, self.key.role),
            ),
            Err(error) => {
                if self.board.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(%error, role = %self.key.role, worker = self.key.worker, "unreadable librdkafka statistics");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statistics document as librdkafka 2.12 writes it for a consumer, trimmed.
    const CONSUMER: &str = r#"{
      "name": "rdkafka#consumer-2", "client_id": "rdkafka", "type": "consumer",
      "ts": 1000, "time": 1700000000, "age": 2500000, "replyq": 3,
      "msg_cnt": 0, "msg_size": 0, "msg_max": 100000, "msg_size_max": 1048576,
      "simple_cnt": 0, "metadata_cache_cnt": 1,
      "tx": 40, "tx_bytes": 4000, "rx": 39, "rx_bytes": 90000,
      "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 120, "rxmsg_bytes": 80000,
      "brokers": {
        "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1, "nodename": "127.0.0.1:9092",
          "source": "configured", "state": "UP", "stateage": 10, "outbuf_cnt": 0, "outbuf_msg_cnt": 0,
          "waitresp_cnt": 0, "waitresp_msg_cnt": 0, "tx": 2, "txbytes": 100, "txerrs": 0, "txretries": 0,
          "txidle": 0, "req_timeouts": 0, "rx": 2, "rxbytes": 200, "rxerrs": 0, "rxcorriderrs": 0,
          "rxpartial": 0, "rxidle": 0, "zbuf_grow": 0, "buf_grow": 0, "wakeups": 1, "connects": 1,
          "disconnects": 0, "req": {}, "toppars": {}},
        "127.0.0.1:9092/1": {"name": "127.0.0.1:9092/1", "nodeid": 1, "nodename": "127.0.0.1:9092",
          "source": "learned", "state": "UP", "stateage": 10, "outbuf_cnt": 1, "outbuf_msg_cnt": 0,
          "waitresp_cnt": 2, "waitresp_msg_cnt": 0, "tx": 38, "txbytes": 3900, "txerrs": 0, "txretries": 1,
          "txidle": 0, "req_timeouts": 0, "rx": 37, "rxbytes": 89800, "rxerrs": 0, "rxcorriderrs": 0,
          "rxpartial": 0, "rxidle": 0, "zbuf_grow": 0, "buf_grow": 0, "wakeups": 5, "connects": 1,
          "disconnects": 0, "req": {"Fetch": 30},
          "int_latency": {"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":11376,"cnt":0},
          "outbuf_latency": {"min":5,"max":40,"avg":12,"sum":120,"stddev":3,"p50":10,"p75":15,"p90":20,"p95":30,"p99":40,"p99_99":40,"outofrange":0,"hdrsize":11376,"cnt":10},
          "rtt": {"min":800,"max":502000,"avg":250000,"sum":2500000,"stddev":1000,"p50":1500,"p75":500000,"p90":501000,"p95":501000,"p99":502000,"p99_99":502000,"outofrange":0,"hdrsize":13424,"cnt":10},
          "throttle": {"min":0,"max":20,"avg":10,"sum":20,"stddev":0,"p50":10,"p75":20,"p90":20,"p95":20,"p99":20,"p99_99":20,"outofrange":0,"hdrsize":17520,"cnt":2},
          "toppars": {"in-0": {"topic": "in", "partition": 0}}}
      },
      "topics": {
        "in": {"topic": "in", "age": 100, "metadata_age": 100,
          "batchsize": {"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":14448,"cnt":0},
          "batchcnt": {"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":8304,"cnt":0},
          "partitions": {
            "0": {"partition": 0, "broker": 1, "leader": 1, "desired": true, "unknown": false,
              "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0, "fetchq_cnt": 7,
              "fetchq_size": 700, "fetch_state": "active", "query_offset": -1001, "next_offset": 120,
              "app_offset": 113, "stored_offset": -1001, "committed_offset": 100, "eof_offset": 120,
              "lo_offset": 0, "hi_offset": 125, "ls_offset": 125, "consumer_lag": 12, "consumer_lag_stored": -1,
              "txmsgs": 0, "txbytes": 0, "rxmsgs": 120, "rxbytes": 80000, "msgs": 120, "rx_ver_drops": 0,
              "msgs_inflight": 0, "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0},
            "1": {"partition": 1, "broker": 1, "leader": 1, "desired": false, "unknown": false,
              "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0, "fetchq_cnt": 0,
              "fetchq_size": 0, "fetch_state": "none", "query_offset": -1001, "next_offset": 0,
              "app_offset": -1001, "stored_offset": -1001, "committed_offset": -1001, "eof_offset": -1001,
              "lo_offset": -1001, "hi_offset": -1001, "ls_offset": -1001, "consumer_lag": -1, "consumer_lag_stored": -1,
              "txmsgs": 0, "txbytes": 0, "rxmsgs": 0, "rxbytes": 0, "msgs": 0, "rx_ver_drops": 0,
              "msgs_inflight": 0, "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0},
            "-1": {"partition": -1, "broker": -1, "leader": -1, "desired": false, "unknown": false,
              "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0, "fetchq_cnt": 0,
              "fetchq_size": 0, "fetch_state": "none", "query_offset": -1001, "next_offset": 0,
              "app_offset": -1001, "stored_offset": -1001, "committed_offset": -1001, "eof_offset": -1001,
              "lo_offset": -1001, "hi_offset": -1001, "ls_offset": -1001, "consumer_lag": -1, "consumer_lag_stored": -1,
              "txmsgs": 0, "txbytes": 0, "rxmsgs": 0, "rxbytes": 0, "msgs": 0, "rx_ver_drops": 0,
              "msgs_inflight": 0, "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0}
          }}
      }
    }"#;

    #[test]
    fn a_consumer_document_keeps_real_brokers_and_assigned_partitions_in_seconds() {
        let board = Arc::new(ClientStatsBoard::default());
        let reporter = StatsReporter::new(Arc::clone(&board), ClientRole::Consumer, 3);
        reporter.report_json(CONSUMER.as_bytes());
        let snapshots = board.snapshots();
        assert_eq!(snapshots.len(), 1);
        let (key, snap) = &snapshots[0];
        assert_eq!(
            *key,
            ClientKey {
                role: ClientRole::Consumer,
                worker: 3
            }
        );
        assert_eq!(snap.name, "rdkafka#consumer-2");
        assert!((snap.age_seconds - 2.5).abs() < 1e-9);
        assert_eq!(snap.rx_messages, 120);
        assert_eq!(
            snap.brokers.len(),
            1,
            "the bootstrap pseudo-broker is left out: {:?}",
            snap.brokers
        );
        let broker = &snap.brokers[0];
        assert_eq!(
            (broker.name.as_str(), broker.node_id, broker.is_up()),
            ("127.0.0.1:9092", 1, true)
        );
        let rtt = broker.rtt.expect("rtt window");
        assert!(
            (rtt.avg - 0.25).abs() < 1e-9
                && (rtt.p50 - 0.0015).abs() < 1e-9
                && (rtt.p99 - 0.502).abs() < 1e-9,
            "{rtt:?}"
        );
        let throttle = broker.throttle.expect("throttle window");
        assert!(
            (throttle.max - 0.020).abs() < 1e-9,
            "throttle is in ms: {throttle:?}"
        );
        assert_eq!(broker.int_latency.map(|w| w.count), Some(0));
        assert_eq!(
            snap.partitions.len(),
            1,
            "only the assigned partition: {:?}",
            snap.partitions
        );
        let p = &snap.partitions[0];
        assert_eq!(
            (
                p.topic.as_str(),
                p.partition,
                p.fetchq_messages,
                p.consumer_lag,
                p.high_watermark
            ),
            ("in", 0, 7, Some(12), Some(125))
        );
        assert_eq!(board.updates(), 1);
    }

    #[test]
    fn a_producer_keeps_only_partitions_it_wrote_to() {
        let mut stats: Statistics = serde_json::from_str(CONSUMER).expect("parses");
        stats.client_type = "producer".into();
        if let Some(p) = stats
            .topics
            .get_mut("in")
            .and_then(|t| t.partitions.get_mut(&1))
        {
            p.txmsgs = 40;
            p.acked_msgid = 40;
        }
        let snap = ClientSnapshot::from_statistics(&stats, ClientRole::Producer);
        let written: Vec<(i32, u64, u64)> = snap
            .partitions
            .iter()
            .map(|p| (p.partition, p.tx_messages, p.acked_msgid))
            .collect();
        assert_eq!(written, vec![(1, 40, 40)]);
    }

    #[test]
    fn statistics_are_on_by_default_and_the_users_interval_wins() {
        let mut kafka = crate::config::KafkaConfig::default();
        let interval =
            |c: rdkafka::ClientConfig| c.get("statistics.interval.ms").map(str::to_owned);
        assert_eq!(
            interval(kafka.producer_config().expect("producer")).as_deref(),
            Some(DEFAULT_INTERVAL_MS)
        );
        assert_eq!(
            interval(kafka.consumer_config("g").expect("consumer")).as_deref(),
            Some(DEFAULT_INTERVAL_MS)
        );
        assert_eq!(
            interval(kafka.metadata_config().expect("metadata")).as_deref(),
            Some("0")
        );
        kafka.set("statistics.interval.ms", "0");
        kafka
            .producer
            .insert("statistics.interval.ms".into(), "200".into());
        assert_eq!(
            interval(kafka.producer_config().expect("producer")).as_deref(),
            Some("200")
        );
        assert_eq!(
            interval(kafka.consumer_config("g").expect("consumer")).as_deref(),
            Some("0")
        );
    }

    #[test]
    fn garbage_is_counted_not_kept() {
        let board = Arc::new(ClientStatsBoard::default());
        StatsReporter::new(Arc::clone(&board), ClientRole::Producer, 0).report_json(b"{not json");
        assert!(board.snapshots().is_empty());
        assert_eq!((board.updates(), board.errors()), (0, 1));
    }
}

//! Job configuration: the `[job]` table and the `[kafka]` table of raw librdkafka keys.
//!
//! ```toml
//! [job]
//! input_topic = "visits"
//! output_topic = "processed_visits"
//! group_id = "tidewatch"
//! epoch_interval = "1s"
//! start_from = "earliest"      # where to start a partition the group has no offset for
//! guarantee = "at-least-once"  # or "exactly-once": one Kafka transaction per epoch
//!
//! [kafka]                      # any librdkafka key, shared by consumer and producer
//! "bootstrap.servers" = "127.0.0.1:9092"
//! [kafka.consumer]             # consumer-only keys
//! "fetch.min.bytes" = 1
//! [kafka.producer]             # producer-only keys
//! "linger.ms" = 5
//! ```
//!
//! Any value of the `[kafka]` tables may instead be read when the config is loaded, from
//! an environment variable or a file (`"sasl.password" = { env = "KAFKA_PASSWORD" }`,
//! `{ file = "/run/secrets/kafka" }`; see [`crate::secret`]). `Debug` of [`KafkaConfig`]
//! and the config errors never show the values of secret keys ([`is_secret_key`]).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use serde::{Deserialize, Deserializer};

use crate::error::{EngineError, Result};
use crate::secret::{is_secret_key, read_source, REDACTED, SECRET_FORMS};

/// Where a partition starts when the consumer group has no committed offset for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest offset still in the partition.
    #[default]
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
}

impl std::str::FromStr for StartFrom {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            other => Err(format!("expected `earliest` or `latest`, got `{other}`")),
        }
    }
}

/// What the job promises about each input record in the output topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guarantee {
    /// Nothing lost; after a crash the uncommitted epochs are copied again (duplicates).
    #[default]
    AtLeastOnce,
    /// Nothing lost, nothing duplicated for `read_committed` readers: one Kafka
    /// transaction per epoch holds its records and the input offsets.
    ExactlyOnce,
}

impl Guarantee {
    /// The spellings accepted in the config file.
    pub const CHOICES: &'static str = "`at-least-once` or `exactly-once`";

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

impl std::str::FromStr for Guarantee {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "at-least-once" => Ok(Guarantee::AtLeastOnce),
            "exactly-once" => Ok(Guarantee::ExactlyOnce),
            other => Err(format!("expected {}, got `{other}`", Guarantee::CHOICES)),
        }
    }
}

impl<'de> Deserialize<'de> for Guarantee {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The `[job]` table: what to copy where, and how time advances.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    /// Topic read by the job.
    pub input_topic: String,
    /// Topic written by the job, with the same partition numbers as the input.
    pub output_topic: String,
    /// Consumer group under which offsets are committed.
    pub group_id: String,
    /// Length of a processing-time epoch.
    #[serde(deserialize_with = "deserialize_duration")]
    pub epoch_interval: Duration,
    /// Start of partitions without a committed offset.
    pub start_from: StartFrom,
    /// Read up to the high watermarks seen at start, then stop.
    pub until_end: bool,
    /// At-least-once (the default) or exactly-once.
    pub guarantee: Guarantee,
    /// Exactly-once: the transactional ids are `<prefix>-<input topic>-<worker index>`
    /// (the group id when unset). Keep it, and `-w`/`-n`, across restarts so a restarted
    /// job fences the transactions of the one it replaces.
    pub transactional_id_prefix: Option<String>,
    /// Most records a worker has handed to the producer and not yet seen acknowledged;
    /// its source waits beyond that ([`crate::kafka::FlowGate`]). Bounds the memory a
    /// worker holds, and keeps librdkafka's producer queue within what it may send.
    pub max_in_flight: usize,
    /// How often the job looks for partitions added to the input topic (0: never); each
    /// new one is read from its start ([`crate::kafka::discovery`]).
    #[serde(deserialize_with = "deserialize_duration")]
    pub partition_discovery_interval: Duration,
}

/// Default of `job.max_in_flight`: at ~400 bytes a record about 100 MB of payload per
/// worker (plus librdkafka's own bookkeeping), half a second of copy at the fastest rates
/// measured here; lower limits made the source wait for acknowledgements (bench/README.md).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 262_144;

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            input_topic: "visits".to_owned(),
            output_topic: "processed_visits".to_owned(),
            group_id: "tidewatch".to_owned(),
            epoch_interval: Duration::from_secs(1),
            start_from: StartFrom::Earliest,
            until_end: false,
            guarantee: Guarantee::AtLeastOnce,
            transactional_id_prefix: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            partition_discovery_interval: Duration::from_secs(10),
        }
    }
}

impl JobConfig {
    /// The epoch interval in milliseconds (at least 1).
    pub fn epoch_ms(&self) -> u64 {
        u64::try_from(self.epoch_interval.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, message: &str| Err(EngineError::Config { key: key.to_owned(), message: message.to_owned() });
        if self.input_topic.is_empty() {
            return bad("job.input_topic", "expected a topic name, got an empty string");
        }
        if self.output_topic.is_empty() {
            return bad("job.output_topic", "expected a topic name, got an empty string");
        }
        if self.input_topic == self.output_topic {
            return bad("job.output_topic", "must differ from job.input_topic (the job would copy its own output forever)");
        }
        if self.group_id.is_empty() {
            return bad("job.group_id", "expected a consumer group id, got an empty string");
        }
        if self.epoch_interval < Duration::from_millis(1) {
            return bad("job.epoch_interval", "expected at least 1ms");
        }
        if self.max_in_flight == 0 {
            return bad("job.max_in_flight", "expected at least 1 record");
        }
        if self.transactional_id_prefix.as_deref().is_some_and(str::is_empty) {
            return bad("job.transactional_id_prefix", "expected a prefix, got an empty string");
        }
        Ok(())
    }

    /// The transactional id of worker `worker` in exactly-once mode: the same for the
    /// same worker of the same job across restarts, so a restart fences its zombie.
    pub fn transactional_id(&self, worker: usize) -> String {
        let prefix = self.transactional_id_prefix.as_deref().unwrap_or(&self.group_id);
        format!("{prefix}-{}-{worker}", self.input_topic)
    }
}

/// Parses a duration written for humans (`"1s"`, `"250ms"`, `"5m"`).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("expected a duration such as `1s` or `250ms`, got `{text}` ({e})"))
}

/// Reads a duration written for humans from a config value (`deserialize_with`): the one
/// duration parser of every config table.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// [`deserialize_duration`] for an optional value.
pub fn deserialize_optional_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Duration>, D::Error> {
    deserialize_duration(d).map(Some)
}

/// Writes a duration as [`parse_duration`] reads it (`serialize_with`).
pub fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Keys the engine sets itself on its consumer; a user value for them would break delivery guarantees.
const OWNED_CONSUMER_KEYS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "true"),
];

/// Consumer keys tidewatch sets to other values than librdkafka's defaults, each with its
/// reason; the user's keys win. The benchmarks' bare librdkafka loop uses them too, so a
/// gain from a setting shows on both sides.
pub const CONSUMER_DEFAULTS: &[(&str, &str, &str)] = &[(
    "fetch.queue.backoff.ms",
    "10",
    "librdkafka stops fetching a partition for this long whenever its queue holds queued.min.messages; \
     the default (1000 ms) lets a copy that is briefly behind its prefetch drain the queue and then wait up to a second with nothing to read",
)];

/// Producer keys tidewatch sets, each with its reason (two are librdkafka's defaults,
/// pinned because the benchmarks give every peer the same values); the user's keys win.
pub const PRODUCER_DEFAULTS: &[(&str, &str, &str)] = &[
    ("enable.idempotence", "true", "retries keep the order within a partition and write no duplicates"),
    ("linger.ms", "5", "librdkafka's default, pinned: batches fill at high rates while a lone record waits at most 5 ms"),
    ("batch.num.messages", "10000", "librdkafka's default, pinned: with records of a few hundred bytes, batch.size (1 MB) ends a batch first"),
    (
        "queue.buffering.max.messages",
        "1000000",
        "a worker can hand over several epochs of records before the queue pushes back (the default is 100 000)",
    ),
];

/// The `[kafka]` table: raw librdkafka keys for both clients, plus `[kafka.consumer]`
/// and `[kafka.producer]` for one side only. Values may be strings, numbers or booleans,
/// or `{ env = "…" }` / `{ file = "…" }` tables read at load time ([`crate::secret`]).
/// `Debug` shows the values of secret keys as `"<redacted>"`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Keys for every client.
    pub common: BTreeMap<String, String>,
    /// Keys for the source's consumers (and the watermark monitor).
    pub consumer: BTreeMap<String, String>,
    /// Keys for the sink's producers.
    pub producer: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Redacted<'a>(&'a BTreeMap<String, String>);
        impl std::fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut map = f.debug_map();
                for (key, value) in self.0 {
                    if is_secret_key(key) {
                        map.entry(key, &Redact);
                    } else {
                        map.entry(key, value);
                    }
                }
                map.finish()
            }
        }
        let KafkaConfig { common, consumer, producer } = self;
        f.debug_struct("KafkaConfig")
            .field("common", &Redacted(common))
            .field("consumer", &Redacted(consumer))
            .field("producer", &Redacted(producer))
            .finish()
    }
}

/// Shows as `"<redacted>"`.
struct Redact;

impl std::fmt::Debug for Redact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for KafkaConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let table = BTreeMap::<String, toml::Value>::deserialize(d)?;
        let mut config = KafkaConfig::default();
        for (key, value) in table {
            match (key.as_str(), value) {
                ("consumer", toml::Value::Table(t)) => config.consumer = value_table(t, "kafka.consumer").map_err(D::Error::custom)?,
                ("producer", toml::Value::Table(t)) => config.producer = value_table(t, "kafka.producer").map_err(D::Error::custom)?,
                (_, value) => {
                    let text = value_text(&value).map_err(|message| D::Error::custom(format!("kafka.{key}: {message}")))?;
                    config.common.insert(key, text);
                }
            }
        }
        Ok(config)
    }
}

/// The text of a `[kafka]` value: a scalar as librdkafka reads it, or the secret an
/// `{ env = "…" }` / `{ file = "…" }` table names.
fn value_text(value: &toml::Value) -> std::result::Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Table(table) => read_source(table).map(|secret| secret.expose().to_owned()),
        other => Err(format!("expected a string, number, boolean, or for a secret {SECRET_FORMS}; got a {}", other.type_str())),
    }
}

fn value_table(table: toml::Table, prefix: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    table
        .into_iter()
        .map(|(k, v)| value_text(&v).map(|s| (k.clone(), s)).map_err(|message| format!("{prefix}.{k}: {message}")))
        .collect()
}

impl KafkaConfig {
    /// The bootstrap servers, or the local default.
    pub fn brokers(&self) -> &str {
        self.common.get("bootstrap.servers").map_or("127.0.0.1:9092", String::as_str)
    }

    /// Sets a key for both clients (as `-X key=value` does on the command line).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.common.insert(key.into(), value.into());
    }

    /// The consumer's configuration: defaults, then the user's keys, then the keys the
    /// engine owns (offsets are committed by the engine, never by librdkafka on its own).
    pub fn consumer_config(&self, group_id: &str) -> Result<ClientConfig> {
        for (key, value) in self.common.iter().chain(&self.consumer) {
            if let Some((_, owned)) = OWNED_CONSUMER_KEYS.iter().find(|(k, _)| k == key) {
                if value != owned {
                    return Err(EngineError::Config {
                        key: format!("kafka.{key}"),
                        message: format!("is managed by tidewatch (must be {owned}): offsets are committed only after delivery"),
                    });
                }
            }
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers())
            .set("group.id", group_id)
            .set("statistics.interval.ms", crate::kafka::stats::DEFAULT_INTERVAL_MS);
        for (key, value, _why) in CONSUMER_DEFAULTS {
            config.set(*key, *value);
        }
        self.apply(&mut config, &self.consumer);
        for (key, value) in OWNED_CONSUMER_KEYS {
            config.set(*key, *value);
        }
        check(&config, "consumer")?;
        Ok(config)
    }

    /// The producer's configuration: idempotent by default, so retries keep the order
    /// within a partition; the user's keys win.
    pub fn producer_config(&self) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.brokers()).set("statistics.interval.ms", crate::kafka::stats::DEFAULT_INTERVAL_MS);
        for (key, value, _why) in PRODUCER_DEFAULTS {
            config.set(*key, *value);
        }
        self.apply(&mut config, &self.producer);
        check(&config, "producer")?;
        Ok(config)
    }

    /// The configuration for a job with `guarantee`: exactly-once reads only committed
    /// records (so a job reading another one's transactional output sees each record once);
    /// a user value other than `read_committed` is rejected then.
    pub fn for_guarantee(&self, guarantee: Guarantee) -> Result<KafkaConfig> {
        let mut config = self.clone();
        if guarantee == Guarantee::ExactlyOnce {
            for (key, value) in self.common.iter().chain(&self.consumer) {
                if key == "isolation.level" && value != "read_committed" {
                    return Err(EngineError::Config {
                        key: format!("kafka.{key}"),
                        message: "must be read_committed with job.guarantee = \"exactly-once\"".to_owned(),
                    });
                }
                if key == "transactional.id" {
                    return Err(EngineError::Config {
                        key: format!("kafka.{key}"),
                        message: "is set by tidewatch per worker; use job.transactional_id_prefix".to_owned(),
                    });
                }
            }
            config.consumer.insert("isolation.level".to_owned(), "read_committed".to_owned());
        }
        Ok(config)
    }

    /// A plain client for metadata and watermark requests (no group).
    pub fn metadata_config(&self) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.brokers());
        self.apply(&mut config, &self.consumer);
        // Nobody reads this client's statistics (librdkafka would build them for nothing).
        config.set("statistics.interval.ms", "0");
        check(&config, "consumer")?;
        Ok(config)
    }

    fn apply(&self, config: &mut ClientConfig, side: &BTreeMap<String, String>) {
        for (key, value) in self.common.iter().chain(side) {
            config.set(key, value);
        }
    }
}

/// Lets librdkafka itself judge every key and value, and names the key it rejects.
fn check(config: &ClientConfig, side: &str) -> Result<()> {
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(rdkafka::error::KafkaError::ClientConfig(_, description, key, value)) => {
            let value = if is_secret_key(&key) { "<redacted>".to_owned() } else { format!("`{value}`") };
            Err(EngineError::Config { key: format!("kafka.{key}"), message: format!("librdkafka rejects {value} for the {side}: {description}") })
        }
        Err(other) => Err(EngineError::Config { key: "kafka".to_owned(), message: other.to_string() }),
    }
}

/// Deserializes a TOML document into `T`, naming the full key path of any error
/// (`job.epoch_interval: expected a duration ...`).
pub fn from_toml_str<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_owned();
        if key == "." || key.is_empty() {
            EngineError::ConfigFile { path: origin.to_owned(), message: inner.to_string() }
        } else {
            EngineError::Config { key, message }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        job: JobConfig,
        #[serde(default)]
        kafka: KafkaConfig,
    }

    #[test]
    fn parses_a_full_file() {
        let file: File = from_toml_str(
            r#"
            [job]
            input_topic = "a"
            output_topic = "b"
            epoch_interval = "250ms"
            start_from = "latest"
            [kafka]
            "bootstrap.servers" = "127.0.0.1:1234"
            "socket.timeout.ms" = 5000
            [kafka.producer]
            "linger.ms" = 1
            "#,
            "test",
        )
        .expect("valid config");
        assert_eq!(file.job.epoch_ms(), 250);
        assert_eq!(file.job.start_from, StartFrom::Latest);
        assert_eq!(file.kafka.brokers(), "127.0.0.1:1234");
        assert_eq!(file.kafka.common.get("socket.timeout.ms").map(String::as_str), Some("5000"));
        assert_eq!(file.kafka.producer.get("linger.ms").map(String::as_str), Some("1"));
        file.kafka.producer_config().expect("producer config");
        file.kafka.consumer_config("g").expect("consumer config");
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = from_toml_str::<File>("[job]\ninput_topik = \"x\"\n", "test").expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("job") && text.contains("input_topik"), "{text}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let err = from_toml_str::<File>("[job]\nepoch_interval = \"soon\"\n", "test").expect_err("bad duration");
        let text = err.to_string();
        assert!(text.contains("job.epoch_interval") && text.contains("soon"), "{text}");
    }

    #[test]
    fn unknown_librdkafka_key_is_rejected_by_name() {
        let mut kafka = KafkaConfig::default();
        kafka.set("no.such.key", "1");
        let text = kafka.producer_config().expect_err("unknown key").to_string();
        assert!(text.contains("kafka.no.such.key"), "{text}");
    }

    #[test]
    fn engine_owned_keys_cannot_be_overridden() {
        let mut kafka = KafkaConfig::default();
        kafka.set("enable.auto.commit", "true");
        let text = kafka.consumer_config("g").expect_err("owned key").to_string();
        assert!(text.contains("kafka.enable.auto.commit"), "{text}");
    }

    #[test]
    fn guarantee_parses_and_bad_values_name_the_key_and_choices() {
        let file: File = from_toml_str("[job]\nguarantee = \"exactly-once\"\n", "test").expect("valid");
        assert_eq!(file.job.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(from_toml_str::<File>("", "test").expect("empty").job.guarantee, Guarantee::AtLeastOnce);
        let text = from_toml_str::<File>("[job]\nguarantee = \"once\"\n", "test").expect_err("bad").to_string();
        assert!(text.contains("job.guarantee") && text.contains("at-least-once") && text.contains("exactly-once"), "{text}");
    }

    #[test]
    fn exactly_once_reads_committed_and_keeps_transactional_ids_stable() {
        let kafka = KafkaConfig::default().for_guarantee(Guarantee::ExactlyOnce).expect("config");
        assert_eq!(kafka.consumer.get("isolation.level").map(String::as_str), Some("read_committed"));
        let mut bad = KafkaConfig::default();
        bad.set("isolation.level", "read_uncommitted");
        let text = bad.for_guarantee(Guarantee::ExactlyOnce).expect_err("uncommitted").to_string();
        assert!(text.contains("kafka.isolation.level"), "{text}");
        assert!(bad.for_guarantee(Guarantee::AtLeastOnce).is_ok());
        let job = JobConfig { group_id: "g".into(), input_topic: "in".into(), ..JobConfig::default() };
        assert_eq!(job.transactional_id(3), "g-in-3");
        let job = JobConfig { transactional_id_prefix: Some("p".into()), ..job };
        assert_eq!(job.transactional_id(0), "p-in-0");
    }

    #[test]
    fn kafka_values_come_from_the_environment_or_a_file_and_debug_redacts_secrets() {
        let variable = format!("TIDEWATCH_KAFKA_PASSWORD_TEST_{}", std::process::id());
        // This test is the only reader of this variable.
        std::env::set_var(&variable, "from-the-env");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "from-a-file\n").expect("write");
        let text = format!(
            "[kafka]\n\"sasl.username\" = \"alice\"\n\"sasl.password\" = {{ env = \"{variable}\" }}\n[kafka.producer]\n\"ssl.key.password\" = {{ file = \"{}\" }}\n",
            path.display()
        );
        let file: File = from_toml_str(&text, "test").expect("valid");
        assert_eq!(file.kafka.common.get("sasl.password").map(String::as_str), Some("from-the-env"));
        assert_eq!(file.kafka.producer.get("ssl.key.password").map(String::as_str), Some("from-a-file"));
        let shown = format!("{file:?}");
        assert!(!shown.contains("from-the-env") && !shown.contains("from-a-file"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("<redacted>"), "{shown}");

        let err = from_toml_str::<File>("[kafka]\n\"sasl.password\" = { env = \"TIDEWATCH_NO_SUCH_VARIABLE\" }\n", "test").expect_err("unset");
        let text = err.to_string();
        assert!(text.contains("kafka.sasl.password") && text.contains("TIDEWATCH_NO_SUCH_VARIABLE"), "{text}");
    }

    #[test]
    fn same_input_and_output_topic_is_rejected() {
        let job = JobConfig { output_topic: "visits".into(), ..JobConfig::default() };
        let text = job.validate().expect_err("loop").to_string();
        assert!(text.contains("job.output_topic"), "{text}");
    }
}

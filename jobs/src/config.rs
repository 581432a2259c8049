//! The `tidewatch` config file: one TOML document, unknown keys rejected by name.

use std::path::Path;

use serde::Deserialize;
use tidewatch_engine::config::{from_toml_str, parse_duration};
use tidewatch_engine::{EngineError, JobConfig, KafkaConfig};

/// Everything a config file may hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The `[job]` table.
    #[serde(default)]
    pub job: JobConfig,
    /// The `[kafka]` table of raw librdkafka keys.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The `[observe]` table: watched fields, window, alert rules.
    #[serde(default)]
    pub observe: tidewatch_operators::observers::ObserveConfig,
    /// The `[output]` table: files and the metrics endpoint.
    #[serde(default)]
    pub output: crate::outputs::OutputConfig,
    /// The `[opensearch]` table: where observation documents are indexed.
    #[serde(default)]
    pub opensearch: tidewatch_engine::opensearch::OpenSearchConfig,
    /// The `[profile]` table: windowed dataset profiles and their reports.
    #[serde(default)]
    pub profile: tidewatch_operators::profile::ProfileConfig,
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<FileConfig, EngineError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::ConfigFile { path: path.display().to_string(), message: e.to_string() })?;
        from_toml_str(&text, &path.display().to_string())
    }
}

/// Command-line overrides of the config file (flags win over the file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JobFlags {
    /// TOML config file with `[job]` and `[kafka]` tables.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Kafka bootstrap servers (`kafka."bootstrap.servers"`).
    #[arg(long, value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,
    /// Input topic (`job.input_topic`).
    #[arg(long, value_name = "TOPIC")]
    pub input: Option<String>,
    /// Output topic (`job.output_topic`).
    #[arg(long, value_name = "TOPIC")]
    pub output: Option<String>,
    /// Consumer group id (`job.group_id`).
    #[arg(long, value_name = "ID")]
    pub group: Option<String>,
    /// Epoch interval, e.g. `1s`, `200ms` (`job.epoch_interval`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub epoch: Option<std::time::Duration>,
    /// Where partitions without a committed offset start: earliest or latest (`job.start_from`).
    #[arg(long, value_name = "earliest|latest")]
    pub start_from: Option<tidewatch_engine::StartFrom>,
    /// Read up to the high watermarks seen at start, then stop.
    #[arg(long)]
    pub until_end: bool,
    /// One Kafka transaction per epoch: read_committed readers see each input record
    /// once (`job.guarantee = "exactly-once"`; default at-least-once).
    #[arg(long)]
    pub exactly_once: bool,
    /// Any librdkafka key for both clients, e.g. `-X socket.timeout.ms=5000` (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub rdkafka: Vec<(String, String)>,
    /// Observation window, e.g. `10s` (`observe.window`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub window: Option<std::time::Duration>,
    /// A watched field path, e.g. `context.user.login`; repeat for several (`observe.fields`).
    #[arg(long = "field", value_name = "PATH")]
    pub fields: Vec<String>,
    /// Directory of stats.ndjson and alerts.ndjson (`output.dir`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// Address of the /metrics endpoint, or "" for none (`output.metrics_addr`).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// OpenSearch URL to index the observations into, e.g. http://127.0.0.1:9200 (`opensearch.url`).
    #[arg(long, value_name = "URL")]
    pub opensearch: Option<String>,
    /// Write dataset profile reports to this directory (`profile.enabled`, `profile.dir`).
    #[arg(long, value_name = "DIR")]
    pub profiles: Option<std::path::PathBuf>,
}

pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

impl JobFlags {
    /// The config file (if any) with the flags applied on top.
    pub fn resolve(&self) -> Result<FileConfig, EngineError> {
        let mut file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let JobFlags {
            config: _,
            brokers,
            input,
            output,
            group,
            epoch,
            start_from,
            until_end,
            exactly_once,
            rdkafka,
            window,
            fields,
            out,
            metrics_addr,
            opensearch,
            profiles,
        } = self;
        if let Some(b) = brokers {
            file.kafka.set("bootstrap.servers", b.clone());
        }
        if let Some(t) = input {
            file.job.input_topic.clone_from(t);
        }
        if let Some(t) = output {
            file.job.output_topic.clone_from(t);
        }
        if let Some(g) = group {
            file.job.group_id.clone_from(g);
        }
        if let Some(e) = epoch {
            file.job.epoch_interval = *e;
        }
        if let Some(s) = start_from {
            file.job.start_from = *s;
        }
        if *until_end {
            file.job.until_end = true;
        }
        if *exactly_once {
            file.job.guarantee = tidewatch_engine::Guarantee::ExactlyOnce;
        }
        for (k, v) in rdkafka {
            file.kafka.set(k.clone(), v.clone());
        }
        if let Some(w) = window {
            file.observe.window = *w;
        }
        if !fields.is_empty() {
            file.observe.fields.clone_from(fields);
        }
        if let Some(dir) = out {
            file.output.dir.clone_from(dir);
        }
        if let Some(addr) = metrics_addr {
            file.output.metrics_addr.clone_from(addr);
        }
        if let Some(url) = opensearch {
            file.opensearch.url.clone_from(url);
        }
        if let Some(dir) = profiles {
            file.profile.enabled = true;
            file.profile.dir.clone_from(dir);
        }
        file.job.validate()?;
        Ok(file)
    }
}

/// timely's process layout flags, spelled as timely spells them.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterFlags {
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub workers: usize,
    /// Number of processes.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    pub processes: usize,
    /// Index of this process, 0..n.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub process: usize,
    /// File with one host:port per process (default localhost:2101, 2102, ...).
    #[arg(short = 'h', long = "hostfile", value_name = "FILE")]
    pub hostfile: Option<std::path::PathBuf>,
}

impl ClusterFlags {
    /// The engine's cluster description.
    pub fn cluster(&self) -> tidewatch_engine::Cluster {
        tidewatch_engine::Cluster {
            workers: self.workers,
            processes: self.processes,
            process: self.process,
            hostfile: self.hostfile.clone(),
        }
    }
}

/// Parses `"30s"` style durations for flags.
pub fn duration_flag(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.toml");
        std::fs::write(&path, "[job]\ninput_topic = \"a\"\noutput_topic = \"b\"\n[kafka]\n\"bootstrap.servers\" = \"h:1\"\n")
            .expect("write");
        let flags = JobFlags { config: Some(path), output: Some("c".into()), ..JobFlags::default() };
        let file = flags.resolve().expect("resolves");
        assert_eq!(file.job.input_topic, "a");
        assert_eq!(file.job.output_topic, "c");
        assert_eq!(file.kafka.brokers(), "h:1");
    }

    #[test]
    fn the_profile_table_rejects_unknown_keys_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.toml");
        std::fs::write(&path, "[profile]\nenabled = true\nwindow = \"2m\"\ntop_k = 5\n").expect("write");
        let file = FileConfig::load(&path).expect("loads");
        assert!(file.profile.enabled);
        assert_eq!((file.profile.window, file.profile.top_k), (std::time::Duration::from_secs(120), 5));
        std::fs::write(&path, "[profile]\nenabled = true\ntopk = 5\n").expect("write");
        let err = FileConfig::load(&path).expect_err("unknown key");
        assert!(err.to_string().contains("topk"), "{err}");
        let flags = JobFlags { profiles: Some("p".into()), ..JobFlags::default() };
        let file = flags.resolve().expect("resolves");
        assert!(file.profile.enabled && file.profile.dir == std::path::Path::new("p"));
    }

    #[test]
    fn unknown_top_level_table_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.toml");
        std::fs::write(&path, "[jobs]\ninput_topic = \"a\"\n").expect("write");
        let err = FileConfig::load(&path).expect_err("unknown table");
        assert!(err.to_string().contains("jobs"), "{err}");
    }
}

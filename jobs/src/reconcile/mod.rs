//! `tidewatch reconcile`: reads a job's output topic back and checks it against what the
//! job consumed from its input, per partition and per record-timestamp window.
//!
//! What the source consumed is what the job's consumer group committed: for partition
//! `p`, every input record below the committed offset must be in output partition `p`
//! exactly once. The checker reads input partition `p` (from its low watermark, or from
//! `--from`) and then output partition `p`, and matches each output record to the input
//! record it copies by content — key, value, headers and timestamp, which the job keeps
//! byte for byte ([`align`]). It reports, per partition and per window:
//!
//! - **missing**: consumed (committed) input records with no copy in the output, by input offset;
//! - **duplicated**: input records with more than one copy, by input offset and extra copies;
//! - **unexpected**: output records that copy no input record, by output offset;
//! - **in flight**: input records at or past the committed offset, and how many are copied
//!   already (not yet due: never missing, though two copies of one are still duplicated);
//! - **outside**: unmatched output records older than every input record read (copies of
//!   records the input's retention has deleted) or outside `--from`/`--to`: not checked.
//!
//! Snapshot order: the committed offsets first, then the output's watermarks, then the
//! input's, so a job running meanwhile cannot make a consumed record look missing (it is
//! delivered before it is committed). Reads use `read_committed` unless `--isolation`
//! says otherwise (librdkafka's default, and what an exactly-once output needs: aborted
//! transactions are not part of the output). The checker never joins the job's group and
//! never commits.
//!
//! Memory: one partition at a time, 40 bytes per input record of that partition's
//! range (see [`align`]); the output is streamed. `--from` bounds the input read by time.

pub mod align;
pub mod read;
pub mod report;

use std::time::{Duration, Instant};

use rdkafka::message::{Headers as _, Message as _};
use tidewatch_engine::config::parse_duration;
use tidewatch_engine::EngineError;

use crate::config::{FileConfig, JobFlags};
use align::{fingerprint, InputIndex, Matcher, OutputRecord};
use read::Reader;
use report::{PartitionReport, Report, Scope, Tally};

/// Errors of the reconciliation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// Bad config or a Kafka error, as the job reports them.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A command-line value that parses but makes no sense; fix it, do not retry.
    #[error("{flag}: {message}")]
    Option {
        /// The flag, e.g. `--to`.
        flag: &'static str,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A partition gave neither records nor its end for a while; the broker may be
    /// overloaded or unreachable: retry.
    #[error("reading {topic}[{partition}] stalled at offset {position} of {end}: nothing arrived for {waited:?}")]
    Stalled {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Next offset to read.
        position: i64,
        /// Where the read would stop.
        end: i64,
        /// How long nothing arrived.
        waited: Duration,
    },
    /// The input range of one partition holds more records than the matcher indexes.
    #[error("{topic}[{partition}] holds more than {} records in the range to check; narrow it with --from", u32::MAX)]
    TooLarge {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
}

/// `tidewatch reconcile`'s flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReconcileArgs {
    /// The job's TOML config file ([job] topics and group, [kafka], [observe] window).
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
    /// The job's consumer group, whose committed offsets say what was consumed (`job.group_id`).
    #[arg(long, value_name = "ID")]
    pub group: Option<String>,
    /// Any librdkafka key for the reading consumers (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = crate::config::parse_key_value)]
    pub rdkafka: Vec<(String, String)>,
    /// Length of the record-timestamp windows reported, e.g. `1m` (default `observe.window`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub window: Option<Duration>,
    /// Check only records with a timestamp at or after TIME: RFC 3339, ms since the Unix
    /// epoch, or a duration ago (`2h`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<i64>,
    /// Check only records with a timestamp before TIME (same forms as --from).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<i64>,
    /// Check only this partition (repeatable; default all).
    #[arg(long = "partition", value_name = "N")]
    pub partitions: Vec<i32>,
    /// `read_committed` (default) or `read_uncommitted` (also sees aborted transactions).
    #[arg(long, value_name = "LEVEL", value_parser = parse_isolation)]
    pub isolation: Option<String>,
    /// Print the report as one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// List every window in the table, not only those with a problem.
    #[arg(long)]
    pub all_windows: bool,
}

fn parse_isolation(text: &str) -> Result<String, String> {
    match text {
        "read_committed" | "read_uncommitted" => Ok(text.to_owned()),
        other => Err(format!("expected `read_committed` or `read_uncommitted`, got `{other}`")),
    }
}

/// Parses a time: RFC 3339, milliseconds since the Unix epoch, or a duration before now.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(chrono::Utc::now().timestamp_millis() - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX)),
        Err(_) => Err(format!(
            "expected an RFC 3339 time (2024-05-01T12:00:00Z), milliseconds since the Unix epoch, or a duration ago such as `2h`, got `{text}`"
        )),
    }
}

/// What to check, resolved from the config file and the flags.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The job's config with the flags applied.
    pub file: FileConfig,
    /// Windows and time range.
    pub scope: Scope,
    /// Partitions to check (empty: all).
    pub partitions: Vec<i32>,
    /// `isolation.level` of the reads.
    pub isolation: String,
}

impl ReconcileArgs {
    /// The config file with the flags applied, checked.
    pub fn plan(&self) -> Result<Plan, ReconcileError> {
        let ReconcileArgs { config, brokers, input, output, group, rdkafka, window, from, to, partitions, isolation, json: _, all_windows: _ } = self;
        let flags = JobFlags {
            config: config.clone(),
            brokers: brokers.clone(),
            input: input.clone(),
            output: output.clone(),
            group: group.clone(),
            rdkafka: rdkafka.clone(),
            window: *window,
            ..JobFlags::default()
        };
        let mut file = flags.resolve()?;
        let window_ms = i64::try_from(file.observe.window.as_millis()).unwrap_or(i64::MAX);
        if window_ms < 1 {
            let flag = if window.is_some() { "--window" } else { "observe.window" };
            return Err(ReconcileError::Option { flag, message: "expected at least 1ms".to_owned() });
        }
        if let (Some(f), Some(t)) = (from, to) {
            if t <= f {
                return Err(ReconcileError::Option { flag: "--to", message: format!("expected a time after --from ({f} ms), got {t} ms") });
            }
        }
        file.kafka = file.kafka.for_guarantee(file.job.guarantee)?;
        let isolation = isolation.clone().unwrap_or_else(|| "read_committed".to_owned());
        file.kafka.consumer.insert("isolation.level".to_owned(), isolation.clone());
        Ok(Plan { file, scope: Scope { window_ms, from_ms: *from, to_ms: *to }, partitions: partitions.clone(), isolation })
    }
}

/// Runs `tidewatch reconcile`: prints the report (a table, or JSON with `--json`) and
/// returns whether it is clean.
pub fn run(args: &ReconcileArgs) -> Result<bool, ReconcileError> {
    let report = reconcile(&args.plan()?)?;
    #[allow(clippy::print_stdout)] // the report is the command's output
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", report::render(&report, args.all_windows));
    }
    Ok(report.clean)
}

/// The offsets one partition is checked over.
#[derive(Debug, Clone, Copy)]
struct Ranges {
    committed: Option<i64>,
    input: (i64, i64),
    output: (i64, i64),
}

/// Reconciles the output topic of `plan` against its input, partition by partition.
pub fn reconcile(plan: &Plan) -> Result<Report, ReconcileError> {
    let job = &plan.file.job;
    let (inputs, outputs) = (Reader::new(&plan.file.kafka)?, Reader::new(&plan.file.kafka)?);
    let mut partitions = inputs.partitions(&job.input_topic)?;
    if !plan.partitions.is_empty() {
        if let Some(p) = plan.partitions.iter().find(|p| !partitions.contains(p)) {
            return Err(ReconcileError::Option { flag: "--partition", message: format!("`{}` has no partition {p} (it has {partitions:?})", job.input_topic) });
        }
        partitions.retain(|p| plan.partitions.contains(p));
    }
    let output_partitions = outputs.partitions(&job.output_topic)?;
    // Snapshot order: committed offsets, then the output's watermarks, then the input's.
    let committed = inputs.committed(&job.group_id, &job.input_topic, &partitions)?;
    let mut out_marks = Vec::with_capacity(partitions.len());
    for p in &partitions {
        out_marks.push(if output_partitions.contains(p) { outputs.watermarks(&job.output_topic, *p)? } else { (0, 0) });
    }
    let mut ranges = Vec::with_capacity(partitions.len());
    for (p, output) in partitions.iter().zip(out_marks) {
        ranges.push(Ranges { committed: committed.get(p).copied().flatten(), input: inputs.watermarks(&job.input_topic, *p)?, output });
    }
    let mut reports = Vec::with_capacity(partitions.len());
    for (p, ranges) in partitions.iter().zip(ranges) {
        reports.push(reconcile_partition(plan, &inputs, &outputs, *p, ranges)?);
    }
    let header = Report {
        input_topic: job.input_topic.clone(),
        output_topic: job.output_topic.clone(),
        group_id: job.group_id.clone(),
        isolation: plan.isolation.clone(),
        window_ms: plan.scope.window_ms,
        from_ms: plan.scope.from_ms,
        to_ms: plan.scope.to_ms,
        clean: true,
        totals: report::Counts::default(),
        partitions: Vec::new(),
    };
    Ok(Report::new(header, reports))
}

/// Where reading starts: the low watermark, or with `--from` the first offset that recent.
fn start(reader: &Reader, topic: &str, partition: i32, (low, high): (i64, i64), from_ms: Option<i64>) -> Result<i64, ReconcileError> {
    let Some(ms) = from_ms else { return Ok(low) };
    Ok(reader.offset_for_time(topic, partition, ms)?.unwrap_or(high).clamp(low, high))
}

/// A message's fingerprint and timestamp.
fn message_fingerprint(m: &rdkafka::message::BorrowedMessage<'_>) -> (align::Fingerprint, Option<i64>) {
    let ts = m.timestamp().to_millis();
    (fingerprint(m.key(), m.payload(), m.headers().into_iter().flat_map(|h| h.iter().map(|h| (h.key, h.value))), ts), ts)
}

fn reconcile_partition(plan: &Plan, inputs: &Reader, outputs: &Reader, partition: i32, ranges: Ranges) -> Result<PartitionReport, ReconcileError> {
    let job = &plan.file.job;
    let started = Instant::now();
    let input = [start(inputs, &job.input_topic, partition, ranges.input, plan.scope.from_ms)?, ranges.input.1];
    let output = [start(outputs, &job.output_topic, partition, ranges.output, plan.scope.from_ms)?, ranges.output.1];
    // The offset range bounds the record count (compaction and markers only make it smaller).
    let mut index = InputIndex::with_capacity(usize::try_from(input[1] - input[0]).unwrap_or(0).min(u32::MAX as usize));
    let mut full = false;
    inputs.read(&job.input_topic, partition, input, |m| {
        let (fp, ts) = message_fingerprint(m);
        full |= !index.push(m.offset(), fp, ts);
    })?;
    if full {
        return Err(ReconcileError::TooLarge { topic: job.input_topic.clone(), partition });
    }
    let input_records = index.len();
    // Unmatched output older than every input record copies records the input no longer holds.
    let floor_ms = if plan.scope.from_ms.is_some() || ranges.input.0 > 0 { index.min_timestamp().or(plan.scope.from_ms) } else { None };
    let mut tally = Tally::new(plan.scope, floor_ms);
    let mut matcher = Matcher::new(index);
    let output_records = outputs.read(&job.output_topic, partition, output, |m| {
        let (fp, ts) = message_fingerprint(m);
        matcher.push(OutputRecord { offset: m.offset(), fingerprint: fp, timestamp: ts });
        matcher.drain_unexpected().for_each(|r| tally.unexpected(&r));
    })?;
    let (unexpected, copied) = matcher.finish();
    unexpected.iter().for_each(|r| tally.unexpected(r));
    let report = tally.finish(partition, ranges.committed, input, output, copied);
    tracing::info!(
        partition,
        input_records,
        output_records,
        missing = report.counts.missing,
        duplicated = report.counts.duplicated,
        unexpected = report.counts.unexpected,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "partition reconciled"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_milliseconds_or_a_duration_ago() {
        assert_eq!(parse_time("2024-05-01T12:00:00Z"), Ok(1_714_564_800_000));
        assert_eq!(parse_time("1714564800000"), Ok(1_714_564_800_000));
        let ago = parse_time("2h").expect("a duration ago");
        let now = chrono::Utc::now().timestamp_millis();
        assert!((now - 7_200_000 - ago).abs() < 60_000, "{ago} vs {now}");
        let text = parse_time("yesterday").expect_err("not a time");
        assert!(text.contains("RFC 3339") && text.contains("yesterday"), "{text}");
    }

    #[test]
    fn bad_flags_name_the_flag_and_what_was_expected() {
        let args = ReconcileArgs { from: Some(2_000), to: Some(1_000), ..ReconcileArgs::default() };
        let text = args.plan().expect_err("to before from").to_string();
        assert!(text.starts_with("--to: expected a time after --from"), "{text}");
        let args = ReconcileArgs { window: Some(Duration::ZERO), ..ReconcileArgs::default() };
        assert!(args.plan().expect_err("no window").to_string().starts_with("--window: expected at least 1ms"));
        assert!(parse_isolation("read_dirty").expect_err("bad level").contains("read_committed"));
    }

    #[test]
    fn the_plan_follows_the_config_file_and_reads_committed_by_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.toml");
        let toml = "[job]\ninput_topic = \"a\"\noutput_topic = \"b\"\ngroup_id = \"g\"\nguarantee = \"exactly-once\"\n[observe]\nwindow = \"1m\"\n";
        std::fs::write(&path, toml).expect("write");
        let plan = ReconcileArgs { config: Some(path), ..ReconcileArgs::default() }.plan().expect("plan");
        assert_eq!((plan.file.job.input_topic.as_str(), plan.file.job.group_id.as_str(), plan.scope.window_ms), ("a", "g", 60_000));
        assert_eq!(plan.isolation, "read_committed");
        assert_eq!(plan.file.kafka.consumer.get("isolation.level").map(String::as_str), Some("read_committed"));
    }
}

//! Producing generated visits to Kafka: the `generate` command's flags and entry point
//! ([`GenerateArgs`], [`run`]), and [`produce_into`], the loop it shares with the
//! in-process demo ([`produce_until`]).
//!
//! The producer is an rdkafka [`BaseProducer`] polled by the producing thread itself:
//! a full local queue is waited out by polling, every delivery report is counted, and
//! the run fails with the first delivery error after flushing. Every generated record
//! is handed to the producer, so on success the generator's summary describes exactly
//! what the topic received.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tidewatch_engine::JobControl;

use super::config::{FaultMix, GeneratorConfig, DEFAULT_IMPORTANT_FIELDS};
use super::generator::{RecordRef, VisitGenerator};
use super::summary::GeneratorSummary;
use crate::config::duration_flag;

/// Something a producing loop checks to know it should stop.
pub trait StopFlag {
    /// Whether to stop now.
    fn should_stop(&self) -> bool;
}

impl StopFlag for AtomicBool {
    fn should_stop(&self) -> bool {
        self.load(Ordering::Acquire)
    }
}

impl StopFlag for JobControl {
    fn should_stop(&self) -> bool {
        self.stop_requested()
    }
}

impl<T: StopFlag + ?Sized> StopFlag for Arc<T> {
    fn should_stop(&self) -> bool {
        (**self).should_stop()
    }
}

impl<T: StopFlag + ?Sized> StopFlag for &T {
    fn should_stop(&self) -> bool {
        (**self).should_stop()
    }
}

/// A stop flag that never fires: produce until the count or duration is reached.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverStop;

impl StopFlag for NeverStop {
    fn should_stop(&self) -> bool {
        false
    }
}

/// Flags of the `generate` command.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT,...")]
    pub brokers: String,
    /// Topic to write to; it must exist with at least `--partitions` partitions.
    #[arg(long, default_value = "visits", value_name = "TOPIC")]
    pub topic: String,
    /// Records to produce (duplicates included); without it and `--duration`, run until Ctrl-C.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this long (e.g. `30s`, `5m`).
    #[arg(long, value_name = "DURATION", value_parser = duration_flag)]
    pub duration: Option<Duration>,
    /// Records per second; 0 produces as fast as possible.
    #[arg(long, default_value_t = 0, value_name = "RECORDS_PER_S")]
    pub rate: u64,
    /// Alternate bursts (4× the rate for 0.5 s) and pauses (1.5 s) with the same mean rate.
    #[arg(long)]
    pub bursty: bool,
    /// Seed: the same seed and settings give the same records, byte for byte, in the same partitions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Partitions to spread records over [default: the number of `--skew` weights, else 2].
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,
    /// Relative weight per partition, e.g. `3,1`: partition 0 gets three times the records of partition 1.
    #[arg(long, value_delimiter = ',', value_name = "W,W,...")]
    pub skew: Vec<u32>,
    /// Share of records with a random non-empty subset of the top-level fields set to null.
    #[arg(long, default_value_t = 0.10, value_parser = share, value_name = "0..1")]
    pub null_share: f64,
    /// Share of records with one important field set to "".
    #[arg(long, default_value_t = 0.0, value_parser = share, value_name = "0..1")]
    pub empty_share: f64,
    /// Share of records with one top-level key removed.
    #[arg(long, default_value_t = 0.0, value_parser = share, value_name = "0..1")]
    pub missing_share: f64,
    /// Share of records with one field inside `context` set to null.
    #[arg(long, default_value_t = 0.0, value_parser = share, value_name = "0..1")]
    pub nested_null_share: f64,
    /// Share of records that are not JSON (truncated, or not UTF-8).
    #[arg(long, default_value_t = 0.0, value_parser = share, value_name = "0..1")]
    pub unparseable_share: f64,
    /// Share of records emitted twice (same partition, key and value).
    #[arg(long, default_value_t = 0.0, value_parser = share, value_name = "0..1")]
    pub duplicate_share: f64,
    /// Share of records whose event_time is shifted back by `--late-delay`.
    #[arg(long, default_value_t = 0.0, value_parser = share, value_name = "0..1")]
    pub late_share: f64,
    /// How far back late events are shifted.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = duration_flag)]
    pub late_delay: Duration,
    /// Important field (dotted path) the summary counts invalid values of; repeatable
    /// [default: event_time, user_id, page].
    #[arg(long = "field", value_name = "PATH")]
    pub fields: Vec<String>,
    /// Event time of the first records: RFC 3339 or `now` [default: 2024-01-01T00:00:00+00:00].
    #[arg(long, value_name = "TIME", value_parser = start_time)]
    pub start_time: Option<DateTime<Utc>>,
    /// Visits open at the same time (event time advances about 180 s / N per record).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub concurrent_visits: usize,
    /// Use each record's event time as its Kafka timestamp (default: the producer's clock;
    /// beware of retention with old event times).
    #[arg(long)]
    pub event_time_timestamps: bool,
    /// Write the JSON summary to this file (`-`: stdout).
    #[arg(long, value_name = "PATH")]
    pub summary: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Any librdkafka producer key, e.g. `-X acks=1` (repeatable; wins over the defaults).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = key_value)]
    pub rdkafka: Vec<(String, String)>,
}

fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|e| format!("`{text}` is not a number: {e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

fn start_time(text: &str) -> Result<DateTime<Utc>, String> {
    if text.eq_ignore_ascii_case("now") {
        return Ok(Utc::now());
    }
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
}

impl GenerateArgs {
    /// The generator configuration these flags describe, validated.
    pub fn generator_config(&self) -> anyhow::Result<GeneratorConfig> {
        let defaults = GeneratorConfig::default();
        let partitions = self.partitions.unwrap_or(if self.skew.is_empty() { defaults.partitions } else { self.skew.len() as u32 });
        let config = GeneratorConfig {
            seed: self.seed,
            partitions,
            partition_weights: self.skew.clone(),
            faults: FaultMix {
                null: self.null_share,
                empty_string: self.empty_share,
                missing_key: self.missing_share,
                nested_null: self.nested_null_share,
                unparseable: self.unparseable_share,
                duplicate: self.duplicate_share,
                late: self.late_share,
            },
            important_fields: if self.fields.is_empty() {
                DEFAULT_IMPORTANT_FIELDS.iter().map(|f| (*f).to_owned()).collect()
            } else {
                self.fields.clone()
            },
            late_delay: self.late_delay,
            start_time: self.start_time.unwrap_or(defaults.start_time),
            concurrent_visits: self.concurrent_visits,
        };
        config.validate().context("invalid generator settings")?;
        Ok(config)
    }

    /// The producing settings these flags describe.
    pub fn produce_settings(&self) -> ProduceSettings {
        ProduceSettings {
            count: self.count,
            duration: self.duration,
            rate: self.rate,
            bursty: self.bursty,
            event_time_timestamps: self.event_time_timestamps,
            overrides: self.rdkafka.clone(),
            progress: !self.no_progress,
            ..ProduceSettings::new(&self.brokers, &self.topic)
        }
    }
}

/// How [`produce_into`] produces.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceSettings {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic to write to.
    pub topic: String,
    /// Stop after this many records.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Records per second; 0: as fast as possible.
    pub rate: u64,
    /// Alternate bursts and pauses with the same mean rate (needs a rate).
    pub bursty: bool,
    /// Set each record's Kafka timestamp to its event time (otherwise the producer's clock).
    pub event_time_timestamps: bool,
    /// librdkafka settings applied over the defaults.
    pub overrides: Vec<(String, String)>,
    /// Show a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// How long the final flush may take.
    pub flush_timeout: Duration,
    /// How long the local queue may stay full before giving up.
    pub queue_full_timeout: Duration,
    /// How long to wait for the topic's metadata.
    pub metadata_timeout: Duration,
}

impl ProduceSettings {
    /// As fast as possible, until stopped, no progress bar.
    pub fn new(brokers: &str, topic: &str) -> Self {
        ProduceSettings {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            count: None,
            duration: None,
            rate: 0,
            bursty: false,
            event_time_timestamps: false,
            overrides: Vec::new(),
            progress: false,
            flush_timeout: Duration::from_secs(60),
            queue_full_timeout: Duration::from_secs(60),
            metadata_timeout: Duration::from_secs(10),
        }
    }
}

/// What [`produce_into`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProduceReport {
    /// Records handed to the producer (all acknowledged, or the call failed).
    pub sent: u64,
    /// Records the brokers acknowledged.
    pub delivered: u64,
    /// From the first record to the end of the flush.
    pub elapsed: Duration,
    /// Whether the stop flag ended the run (rather than the count or the duration).
    pub stopped: bool,
}

impl ProduceReport {
    /// Acknowledged records per second.
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Counts delivery reports; librdkafka calls it from `poll` on the producing thread.
#[derive(Debug, Default)]
struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka client error");
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(PoisonError::into_inner);
                if first.is_none() {
                    *first = Some(format!("partition {}: {error}", message.partition()));
                }
            }
        }
    }
}

impl DeliveryCounter {
    fn failure(&self) -> Option<(u64, String)> {
        let failed = self.failed.load(Ordering::Relaxed);
        (failed > 0).then(|| {
            let first = self.first_error.lock().unwrap_or_else(PoisonError::into_inner);
            (failed, first.clone().unwrap_or_default())
        })
    }
}

/// When records are due, relative to the start.
#[derive(Debug, Clone, Copy)]
struct Pacer {
    rate: f64,
    bursty: bool,
}

/// Length of one burst-and-pause cycle.
const BURST_PERIOD_S: f64 = 2.0;
/// Share of the cycle spent producing (at rate / share).
const BURST_SHARE: f64 = 0.25;

impl Pacer {
    /// When record `i` (from 0) is due; `None`: at once.
    fn due(&self, i: u64) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        let i = i as f64;
        let secs = if self.bursty {
            let per_cycle = self.rate * BURST_PERIOD_S;
            let cycle = (i / per_cycle).floor();
            let within = (i - cycle * per_cycle) / per_cycle;
            cycle * BURST_PERIOD_S + within * BURST_PERIOD_S * BURST_SHARE
        } else {
            i / self.rate
        };
        Some(Duration::from_secs_f64(secs))
    }
}

fn create_producer(settings: &ProduceSettings) -> anyhow::Result<BaseProducer<DeliveryCounter>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.type", "none");
    for (key, value) in &settings.overrides {
        config.set(key, value);
    }
    config.create_with_context(DeliveryCounter::default()).with_context(|| format!("creating a Kafka producer for {}", settings.brokers))
}

/// Fails clearly when the topic is missing or has fewer partitions than the generator uses.
fn check_topic(producer: &BaseProducer<DeliveryCounter>, settings: &ProduceSettings, partitions: u32) -> anyhow::Result<()> {
    let topic = &settings.topic;
    let deadline = Instant::now() + settings.metadata_timeout;
    let have = loop {
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), settings.metadata_timeout)
            .with_context(|| format!("reading the metadata of topic `{topic}` from {}", settings.brokers))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            bail!("topic `{topic}` not found on {}: create it with {partitions} partitions", settings.brokers);
        };
        match found.error().map(RDKafkaErrorCode::from) {
            None => break found.partitions().len(),
            // A topic being created (e.g. auto-created by this very request).
            Some(RDKafkaErrorCode::LeaderNotAvailable) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Some(error) => bail!("topic `{topic}` is not available ({error}): create it with {partitions} partitions"),
        }
    };
    if have < partitions as usize {
        bail!("topic `{topic}` has {have} partition(s), the generator writes to {partitions}: add partitions or pass --partitions {have}");
    }
    if have > partitions as usize {
        tracing::info!(topic, have, partitions, "the topic has more partitions than the generator writes to");
    }
    Ok(())
}

/// Hands one record to the producer, waiting out a full queue.
fn send(producer: &BaseProducer<DeliveryCounter>, settings: &ProduceSettings, record: RecordRef<'_>) -> anyhow::Result<()> {
    let mut message: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&settings.topic).partition(record.partition);
    if let Some(key) = record.key {
        message = message.key(key);
    }
    if let Some(value) = record.value {
        message = message.payload(value);
    }
    if settings.event_time_timestamps {
        message = message.timestamp(record.timestamp_ms);
    }
    let mut full_since: Option<Instant> = None;
    loop {
        match producer.send(message) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                message = returned;
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > settings.queue_full_timeout {
                    bail!(
                        "the producer queue stayed full for {:?}: are the brokers {} reachable?",
                        settings.queue_full_timeout,
                        settings.brokers
                    );
                }
                producer.poll(Duration::from_millis(1));
            }
            Err((error, _)) => {
                return Err(error).with_context(|| format!("producing to `{}` partition {}", settings.topic, record.partition));
            }
        }
    }
}

fn progress_bar(settings: &ProduceSettings) -> ProgressBar {
    if !settings.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match settings.count {
        Some(n) => (ProgressBar::new(n), "{spinner} {elapsed_precise} [{bar:30}] {human_pos}/{human_len} records · {per_sec} {msg}"),
        None => (ProgressBar::new_spinner(), "{spinner} {elapsed_precise} {human_pos} records · {per_sec} {msg}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Produces records of `generator` to `settings.topic` until `settings.count` records,
/// `settings.duration` or `stop`, whichever comes first, at `settings.rate`; then
/// flushes. `acknowledged`, if given, is raised as the brokers acknowledge records (for
/// live progress on another thread).
///
/// Fails if the topic has fewer partitions than the generator, if the producer queue
/// stays full, or if any record is not delivered. On success every generated record
/// was acknowledged: `generator.summary()` describes what the topic received.
pub fn produce_into<S: StopFlag + ?Sized>(
    settings: &ProduceSettings,
    generator: &mut VisitGenerator,
    stop: &S,
    acknowledged: Option<&AtomicU64>,
) -> anyhow::Result<ProduceReport> {
    let producer = create_producer(settings)?;
    check_topic(&producer, settings, generator.partitions())?;
    if settings.bursty && settings.rate == 0 {
        tracing::warn!("--bursty needs a rate: producing as fast as possible");
    }
    let pacer = Pacer { rate: settings.rate as f64, bursty: settings.bursty };
    let mut run = ProduceRun { settings, bar: progress_bar(settings), producer, acknowledged, reported: 0 };

    tracing::info!(brokers = %settings.brokers, topic = %settings.topic, rate = settings.rate, count = ?settings.count, "producing visits");
    let started = Instant::now();
    let (sent, stopped) = run.send_records(generator, stop, pacer, started)?;
    let flushed = run.flush(sent);
    let elapsed = started.elapsed();
    let delivered = run.check_delivered(sent, flushed)?;
    Ok(ProduceReport { sent, delivered, elapsed, stopped })
}

/// The state of one [`produce_into`] call: the producer, its progress bar, and the
/// acknowledgements passed on so far.
struct ProduceRun<'a> {
    settings: &'a ProduceSettings,
    /// Declared before `producer`, so it is dropped first.
    bar: ProgressBar,
    producer: BaseProducer<DeliveryCounter>,
    /// Raised as the brokers acknowledge records, if given.
    acknowledged: Option<&'a AtomicU64>,
    /// Acknowledgements already added to `acknowledged`.
    reported: u64,
}

impl ProduceRun<'_> {
    /// Adds the acknowledgements since the last call to `self.acknowledged`.
    fn report_acks(&mut self) {
        let delivered = self.producer.context().delivered.load(Ordering::Relaxed);
        if let Some(counter) = self.acknowledged {
            counter.fetch_add(delivered - self.reported, Ordering::Relaxed);
        }
        self.reported = delivered;
    }

    /// Serves delivery reports for up to `timeout`, then shows the progress of `sent`
    /// records.
    fn poll(&mut self, timeout: Duration, sent: u64) {
        self.producer.poll(timeout);
        self.report_acks();
        self.bar.set_position(sent);
    }

    /// Hands records of `generator` to the producer, paced by `pacer` from `started`,
    /// until the count, the duration or `stop`. Returns the records sent and whether
    /// `stop` ended the run; fails early on a delivery error.
    fn send_records<S: StopFlag + ?Sized>(
        &mut self,
        generator: &mut VisitGenerator,
        stop: &S,
        pacer: Pacer,
        started: Instant,
    ) -> anyhow::Result<(u64, bool)> {
        let settings = self.settings;
        let mut sent = 0u64;
        loop {
            if settings.count.is_some_and(|c| sent >= c) {
                return Ok((sent, false));
            }
            if stop.should_stop() {
                return Ok((sent, true));
            }
            if sent % 64 == 0 && settings.duration.is_some_and(|d| started.elapsed() >= d) {
                return Ok((sent, false));
            }
            if let Some(due) = pacer.due(sent) {
                let elapsed = started.elapsed();
                if due > elapsed + Duration::from_micros(200) {
                    self.poll((due - elapsed).min(Duration::from_millis(50)), sent);
                    if settings.duration.is_some_and(|d| started.elapsed() >= d) {
                        return Ok((sent, false));
                    }
                    continue;
                }
            }
            send(&self.producer, settings, generator.next_borrowed())?;
            sent += 1;
            if sent % 1024 == 0 {
                self.poll(Duration::ZERO, sent);
                if let Some((failed, first)) = self.producer.context().failure() {
                    self.bar.abandon();
                    bail!("{failed} record(s) could not be delivered to `{}`; first: {first}", settings.topic);
                }
            }
        }
    }

    /// Flushes the producer after `sent` records and serves the last delivery reports;
    /// returns the flush's outcome.
    fn flush(&mut self, sent: u64) -> Result<(), KafkaError> {
        self.bar.set_position(sent);
        self.bar.set_message("flushing");
        let flushed = self.producer.flush(self.settings.flush_timeout);
        // Serve the last delivery reports.
        let context = self.producer.context();
        let deadline = Instant::now() + Duration::from_secs(5);
        while context.delivered.load(Ordering::Relaxed) + context.failed.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
        }
        self.report_acks();
        self.bar.finish_and_clear();
        flushed
    }

    /// The records acknowledged, or why not all `sent` records were (`flushed`: the
    /// outcome of [`Self::flush`]).
    fn check_delivered(&self, sent: u64, flushed: Result<(), KafkaError>) -> anyhow::Result<u64> {
        let settings = self.settings;
        let context = self.producer.context();
        if let Some((failed, first)) = context.failure() {
            bail!("{failed} of {sent} record(s) could not be delivered to `{}`; first: {first}", settings.topic);
        }
        if let Err(error) = flushed {
            bail!(
                "{} of {sent} record(s) still unacknowledged after {:?} ({error}): are the brokers {} reachable?",
                self.producer.in_flight_count(),
                settings.flush_timeout,
                settings.brokers
            );
        }
        let delivered = context.delivered.load(Ordering::Relaxed);
        if delivered != sent {
            bail!("only {delivered} of {sent} record(s) were acknowledged by {}", settings.brokers);
        }
        Ok(delivered)
    }
}

/// Produces `generator`'s records to `topic` at `rate` records per second until `stop`
/// fires, raising `produced` as records are acknowledged: the in-process demo's producer
/// thread.
pub fn produce_until<S: StopFlag + ?Sized>(
    brokers: &str,
    topic: &str,
    mut generator: VisitGenerator,
    rate: u64,
    stop: &S,
    produced: &AtomicU64,
) -> anyhow::Result<()> {
    let settings = ProduceSettings { rate, ..ProduceSettings::new(brokers, topic) };
    let report = produce_into(&settings, &mut generator, stop, Some(produced))?;
    let summary = generator.summary();
    tracing::info!(
        records = report.delivered,
        per_partition = ?summary.per_partition,
        unparseable = summary.unparseable,
        "visits producer stopped"
    );
    Ok(())
}

/// The `generate` command: produces visits as `args` say, stopping early on SIGINT or
/// SIGTERM (installs the handlers; a second signal exits at once), and writes the
/// summary if asked.
pub fn run(args: &GenerateArgs) -> anyhow::Result<GeneratorSummary> {
    let control = JobControl::new();
    crate::signals::stop_on_signals(&control)?;
    run_until(args, &control)
}

/// [`run`] without signal handlers: stops when `stop` fires.
pub fn run_until<S: StopFlag + ?Sized>(args: &GenerateArgs, stop: &S) -> anyhow::Result<GeneratorSummary> {
    let config = args.generator_config()?;
    let mut generator = VisitGenerator::try_new(config).context("invalid generator settings")?;
    let settings = args.produce_settings();
    let report = produce_into(&settings, &mut generator, stop, None)?;
    let summary = generator.into_summary();
    tracing::info!(
        records = report.delivered,
        seconds = format_args!("{:.2}", report.elapsed.as_secs_f64()),
        rate = format_args!("{:.0}", report.rate()),
        per_partition = ?summary.per_partition,
        unparseable = summary.unparseable,
        "produced visits"
    );
    if let Some(path) = &args.summary {
        summary.write_to(path)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Option<Duration>) -> f64 {
        d.expect("paced").as_secs_f64()
    }

    #[test]
    fn the_pacer_keeps_the_mean_rate() {
        assert_eq!(Pacer { rate: 0.0, bursty: true }.due(10), None);
        let steady = Pacer { rate: 1000.0, bursty: false };
        assert!((secs(steady.due(1000)) - 1.0).abs() < 1e-9);
        assert!((secs(steady.due(1)) - 0.001).abs() < 1e-9);
        let bursty = Pacer { rate: 1000.0, bursty: true };
        // 2000 records per 2 s cycle, all within its first 0.5 s.
        assert!((secs(bursty.due(2000)) - 2.0).abs() < 1e-9);
        assert!((secs(bursty.due(4000)) - 4.0).abs() < 1e-9);
        assert!((secs(bursty.due(1000)) - 0.25).abs() < 1e-9);
        assert!(secs(bursty.due(1999)) < 0.5);
        assert!((secs(bursty.due(2001)) - 2.00025).abs() < 1e-9);
    }

    #[test]
    fn stop_flags() {
        let flag = Arc::new(AtomicBool::new(false));
        assert!(!flag.should_stop());
        flag.store(true, Ordering::Release);
        assert!(flag.should_stop());
        let control = JobControl::new();
        assert!(!control.should_stop());
        control.request_stop();
        assert!(control.should_stop());
        assert!(StopFlag::should_stop(&&*control));
        assert!(!NeverStop.should_stop());
    }
}

//! The job's observers assembled: quality and lag observed on every worker, folded into
//! one stats document per window and alert transitions on worker 0, handed to outputs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use differential_dataflow::{AsCollection, VecCollection};
use serde::Deserialize;
use tidewatch_engine::budget::{CopyClock, Sampler};
use tidewatch_engine::config::deserialize_duration;
use tidewatch_engine::counts::arrange_compacted;
use tidewatch_engine::{Observe, ObserveInputs, WorkerContext};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Inspect;

use crate::alerts::{AlertEvent, AlertRule, EvaluateAlerts};
use crate::classify::{FieldPathError, FieldSet};
use crate::custom::{metric_names, observe_custom_core, CustomKey, ObserverFactory};
use crate::reconcile::Reconcile;
use crate::value_rules::{RuleError, ValueRule, ValueRules};
use crate::lag::lag_rows;
use crate::parse::{FullParse, ParseRecords, ParsedRecords, ParsedStream};
use crate::profile::dataflow::profile_parsed;
use crate::profile::{ProfileConfig, WindowProfile};
use crate::quality::ObserveQuality;
use crate::builtin;
use crate::protocol::{self, DataflowObserver, MetricSpec, ObserverContext};
use crate::stats::{InvalidCounting, Observation, StatsDoc, StatsLayout, StatsWindows};

/// The `[observe]` table of the config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserveConfig {
    /// Watched fields, as dotted paths into the JSON value.
    pub fields: Vec<String>,
    /// Length of an observation window (a multiple of the epoch interval).
    #[serde(deserialize_with = "deserialize_duration")]
    pub window: Duration,
    /// Alert rules (`[[observe.alerts]]`); the reference rule "max_lag > 15 for 5m" when absent.
    pub alerts: Vec<AlertRule>,
    /// Value rules (`[[observe.rules]]`): regex, allowed set, numeric range, freshness.
    pub rules: Vec<ValueRule>,
    /// Copy reconciliation (offsets consumed, gaps, repeats) per window.
    pub reconcile: bool,
    /// The share of the copy's time each sampling branch (the dataset profile, record
    /// observers that need not see every record) may spend per epoch; over it, the branch
    /// observes 1 record in k. 0: no budget. Quality, lag and reconciliation never sample.
    pub budget: f64,
    /// What `invalid_<field>` counts: `reference` (default: as the reference job, an
    /// unparseable value or a tombstone is invalid in every watched field) or
    /// `present-values-only` (only records whose value is JSON, by their fields).
    pub invalid: InvalidCounting,
    /// Built-in observers on the observation protocol to run, by name ([`crate::builtin`]):
    /// `freshness` (default), `distinct_users`.
    pub enable: Vec<String>,
    /// Settings of the protocol observers, by `<observer>.<key>` (e.g.
    /// `"distinct_users.field" = "user_id"`).
    pub settings: BTreeMap<String, String>,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            fields: vec!["event_time".to_owned(), "user_id".to_owned(), "page".to_owned()],
            window: Duration::from_secs(10),
            alerts: vec![AlertRule::reference_lag()],
            rules: Vec::new(),
            reconcile: true,
            budget: 1.0,
            invalid: InvalidCounting::Reference,
            enable: vec!["freshness".to_owned()],
            settings: BTreeMap::new(),
        }
    }
}

/// Counters the observers keep about themselves.
#[derive(Debug, Default)]
pub struct ObserverMetrics {
    /// Updates held by the quality arrangements of this process (stays flat as epochs advance).
    pub arrangement_updates: AtomicU64,
    /// The dataset profile's sampling (whole job, counted where the profile is assembled).
    pub profile_sampling: BranchSampling,
    /// The sampled record observers' sampling (this process's workers).
    pub observer_sampling: BranchSampling,
}

/// How one sampling branch fares under the observation budget: records offered to it
/// and records it observed (their ratio is its sampling rate).
#[derive(Debug, Default)]
pub struct BranchSampling {
    /// Records offered to the branch.
    pub seen: AtomicU64,
    /// Records it observed.
    pub observed: AtomicU64,
}

impl BranchSampling {
    /// Adds figures since the last report.
    pub fn report(&self, seen: u64, observed: u64) {
        self.seen.fetch_add(seen, Ordering::Relaxed);
        self.observed.fetch_add(observed, Ordering::Relaxed);
    }
}

/// Where worker 0 hands the documents.
#[derive(Debug, Clone)]
pub struct ObservationSinks {
    /// Stats documents, one per window.
    pub stats: Sender<StatsDoc>,
    /// Alert transitions.
    pub alerts: Sender<AlertEvent>,
}

/// The observers of the job, attached to every worker by the engine.
#[derive(Clone)]
pub struct Observers {
    fields: Arc<FieldSet>,
    window_ms: u64,
    rules: Vec<AlertRule>,
    custom: Vec<Arc<dyn ObserverFactory>>,
    sinks: ObservationSinks,
    metrics: Arc<ObserverMetrics>,
    /// Dataset profiles: their config and window, once enabled.
    profile: Option<(Arc<ProfileConfig>, u64)>,
    /// Where worker 0 hands the window profiles (none: not profiled).
    profile_sink: Option<Sender<WindowProfile>>,
    /// Each sampling branch's share of the copy's time (0: no budget).
    budget: f64,
    invalid: InvalidCounting,
    /// Observers on the protocol, and their settings.
    dataflow: Vec<Arc<dyn DataflowObserver>>,
    settings: BTreeMap<String, String>,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observers").field("fields", &self.fields).field("window_ms", &self.window_ms).field("custom", &metric_names(&self.custom)).finish()
    }
}

/// A config value the observers cannot use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// A watched field path is malformed.
    #[error("config key `observe.fields`: {0}")]
    Field(#[from] FieldPathError),
    /// A value rule cannot be used.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// Another value is out of range; names the key.
    #[error("config key `{key}`: {message}")]
    Value {
        /// The key.
        key: String,
        /// What was expected.
        message: String,
    },
}

/// Checked observer settings, not yet attached to outputs.
#[derive(Clone)]
pub struct ObserverPlan {
    fields: Arc<FieldSet>,
    window_ms: u64,
    rules: Vec<AlertRule>,
    custom: Vec<Arc<dyn ObserverFactory>>,
    profile: Option<(Arc<ProfileConfig>, u64)>,
    budget: f64,
    invalid: InvalidCounting,
    dataflow: Vec<Arc<dyn DataflowObserver>>,
    settings: BTreeMap<String, String>,
}

impl std::fmt::Debug for ObserverPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverPlan").field("fields", &self.fields).field("window_ms", &self.window_ms).field("custom", &metric_names(&self.custom)).finish()
    }
}

impl ObserverPlan {
    /// Checks `config` against the job's `epoch_interval` (windows are whole epochs),
    /// naming the key of any bad value.
    pub fn new(config: &ObserveConfig, epoch_interval: Duration) -> Result<ObserverPlan, ObserveError> {
        let fields = FieldSet::new(&config.fields)?;
        let epoch_ms = epoch_interval.as_millis().max(1);
        let window_ms = config.window.as_millis();
        if window_ms == 0 || window_ms % epoch_ms != 0 {
            return Err(ObserveError::Value {
                key: "observe.window".to_owned(),
                message: format!("expected a positive multiple of the epoch interval ({epoch_ms} ms), got {window_ms} ms"),
            });
        }
        if !config.budget.is_finite() || config.budget < 0.0 {
            return Err(ObserveError::Value {
                key: "observe.budget".to_owned(),
                message: format!("expected a share of the copy's time of at least 0 (1.0: as long as the copy, 0: no budget), got {}", config.budget),
            });
        }
        let mut custom: Vec<Arc<dyn ObserverFactory>> = Vec::new();
        if !config.rules.is_empty() {
            custom.push(Arc::new(ValueRules::new(&config.rules)?));
        }
        if config.reconcile {
            custom.push(Arc::new(Reconcile));
        }
        let mut dataflow = Vec::new();
        for name in &config.enable {
            dataflow.push(builtin::named(name).ok_or_else(|| ObserveError::Value {
                key: "observe.enable".to_owned(),
                message: format!("unknown observer `{name}`; expected any of {}", builtin::names().join(", ")),
            })?);
        }
        let plan = ObserverPlan {
            fields: Arc::new(fields),
            window_ms: u64::try_from(window_ms).unwrap_or(u64::MAX),
            rules: config.alerts.clone(),
            custom,
            profile: None,
            budget: config.budget,
            invalid: config.invalid,
            dataflow,
            settings: config.settings.clone(),
        };
        plan.check_rules()?;
        Ok(plan)
    }

    /// Every alert rule names a figure the stats documents hold.
    fn check_rules(&self) -> Result<(), ObserveError> {
        let mut names = StatsDoc::metric_names(self.fields.paths());
        names.extend(metric_names(&self.custom));
        names.extend(protocol::specs(&self.dataflow).into_keys());
        for rule in &self.rules {
            let labelled = names.iter().any(|n| rule.metric.starts_with(n.as_str()) && rule.metric[n.len()..].starts_with('.'));
            if !names.contains(&rule.metric) && !labelled && !rule.metric.starts_with("lag_") {
                return Err(ObserveError::Value {
                    key: format!("observe.alerts.{}.metric", rule.name),
                    message: format!("unknown metric `{}`; expected one of {} or lag_<partition>", rule.metric, names.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// Adds dataset profiles (the `[profile]` table) when `config.enabled`, checking its
    /// values against the job's `epoch_interval` and naming the key of any bad one.
    pub fn with_profile(mut self, config: &ProfileConfig, epoch_interval: Duration) -> Result<ObserverPlan, ObserveError> {
        let ProfileConfig { enabled, dir: _, window, top_k, max_fields } = config;
        if !*enabled {
            self.profile = None;
            return Ok(self);
        }
        let bad = |key: &str, message: String| ObserveError::Value { key: format!("profile.{key}"), message };
        let epoch_ms = epoch_interval.as_millis().max(1);
        let window_ms = window.as_millis();
        if window_ms == 0 || window_ms % epoch_ms != 0 {
            return Err(bad("window", format!("expected a positive multiple of the epoch interval ({epoch_ms} ms), got {window_ms} ms")));
        }
        if *top_k == 0 || *top_k > 1_000 {
            return Err(bad("top_k", format!("expected 1 to 1000, got {top_k}")));
        }
        if *max_fields == 0 {
            return Err(bad("max_fields", "expected at least 1".to_owned()));
        }
        self.profile = Some((Arc::new(config.clone()), u64::try_from(window_ms).unwrap_or(u64::MAX)));
        Ok(self)
    }

    /// Whether dataset profiles are planned.
    pub fn profiles(&self) -> bool {
        self.profile.is_some()
    }

    /// Adds an observer of your own (see [`crate::custom`]); its metrics join the stats
    /// documents, `/metrics`, OpenSearch and the alert rules' metric names.
    pub fn with_observer(mut self, observer: Arc<dyn ObserverFactory>) -> ObserverPlan {
        self.custom.push(observer);
        self
    }

    /// Adds an observer on the observation protocol ([`crate::protocol`]); its figures
    /// join the stats documents, `/metrics`, OpenSearch and the alert rules' metric names.
    pub fn with_dataflow_observer(mut self, observer: Arc<dyn DataflowObserver>) -> ObserverPlan {
        self.dataflow.push(observer);
        self
    }

    /// The protocol observers' metrics, by `<observer>.<metric>`.
    pub fn specs(&self) -> BTreeMap<String, MetricSpec> {
        protocol::specs(&self.dataflow)
    }

    /// The observers, handing documents to `sinks` and keeping their counters in `metrics`.
    pub fn attach(self, sinks: ObservationSinks, metrics: Arc<ObserverMetrics>) -> Observers {
        let ObserverPlan { fields, window_ms, rules, mut custom, profile, budget, invalid, dataflow, settings } = self;
        // Exact observers first: the sampled ones report after them, by metric index.
        custom.sort_by_key(|o| !o.exact());
        Observers { fields, window_ms, rules, custom, sinks, metrics, profile, profile_sink: None, budget, invalid, dataflow, settings }
    }
}

impl Observers {
    /// Hands the window profiles (if planned with [`ObserverPlan::with_profile`]) to `sink`.
    pub fn with_profile_sink(mut self, sink: Sender<WindowProfile>) -> Observers {
        self.profile_sink = Some(sink);
        self
    }
}

impl Observe for Observers {
    fn observe<'scope>(&self, inputs: ObserveInputs<'scope>, _context: &WorkerContext) {
        let ObserveInputs { records, delivered, progress, watermarks, source } = inputs;
        let scope = records.scope();
        let copy_clock = Rc::clone(source.copy_clock());
        // One parse of every record, shared by every observer below; the records the
        // profile takes (within the budget) are read whole.
        let profile_sampler = self.profile.as_ref().map(|_| Rc::new(RefCell::new(Sampler::new(Rc::clone(&copy_clock), self.budget))));
        let full = profile_sampler.clone().map_or(FullParse::Never, FullParse::Sampled);
        let parsed = records.parse_records(full);
        if let (Some((config, window_ms)), Some(sampler)) = (&self.profile, profile_sampler) {
            self.profile(parsed.stream(), Arc::clone(config), *window_ms, sampler);
        }

        // Quality: pre-aggregated per worker and epoch, consolidated by key in an arrangement.
        let metrics = Arc::clone(&self.metrics);
        let mut last_size = 0u64;
        let quality = arrange_compacted(parsed.clone().quality_deltas(Arc::clone(&self.fields)), "QualityCounts", move |size| {
            metrics.arrangement_updates.fetch_add(size.wrapping_sub(last_size), Ordering::Relaxed);
            last_size = size;
        })
        .map(Observation::Quality);
        // Delivery counts per epoch.
        let delivered = delivered
            .map(|d| (Observation::Delivered, d.epoch, isize::try_from(d.records).unwrap_or(isize::MAX)))
            .as_collection();
        // Lag: this worker's source progress joined with the monitor's watermarks.
        let lag = lag_rows(progress, watermarks).map(Observation::Lag);
        let custom = self.record_observers(&parsed, &copy_clock);
        // Observers on the protocol: any dataflow, keyed figures out.
        let context = ObserverContext::new(self.window_ms, self.settings.clone(), Rc::clone(&copy_clock), self.budget);
        let figures = self.dataflow.iter().map(|o| o.observe(&parsed, &context).map(Observation::Metric));
        let figures = differential_dataflow::collection::concatenate(scope, figures);

        let stats_sink = self.sinks.stats.clone();
        let alerts_sink = self.sinks.alerts.clone();
        let layout = StatsLayout { window_ms: self.window_ms, fields: self.fields.paths().to_vec(), custom: metric_names(&self.custom), invalid: self.invalid, specs: protocol::specs(&self.dataflow) };
        let docs = quality.concat(delivered).concat(lag).concat(custom).concat(figures).inner.stats_windows(layout).inspect(move |doc| {
            let _ = stats_sink.send(doc.clone());
        });
        docs.alerts(self.rules.clone()).inspect(move |event| {
            let _ = alerts_sink.send(event.clone());
        });
    }
}

impl Observers {
    /// Dataset profiles: partial profiles per worker and window, merged by field,
    /// assembled on worker 0. Every worker builds the operators (their exchanges span all
    /// workers); worker 0, in process 0, hands the profiles to the sink.
    fn profile<'scope>(&self, records: ParsedStream<'scope>, config: Arc<ProfileConfig>, window_ms: u64, sampler: Rc<RefCell<Sampler>>) {
        let sink = self.profile_sink.clone();
        let counted = Arc::clone(&self.metrics);
        profile_parsed(records, config, window_ms, Some(sampler)).inspect(move |profile| {
            counted.profile_sampling.report(profile.overview.offered(), profile.overview.records);
            if let Some(sink) = &sink {
                let _ = sink.send(profile.clone());
            }
        });
    }

    /// The record observers' counts per epoch and worker: those that must see every
    /// record (value rules, reconciliation) first, the others within the budget.
    fn record_observers<'scope>(&self, records: &ParsedRecords<'scope>, copy_clock: &Rc<CopyClock>) -> VecCollection<'scope, u64, Observation, isize> {
        let (exact, sampled): (Vec<_>, Vec<_>) = self.custom.iter().cloned().partition(|o| o.exact());
        let base = metric_names(&exact).len();
        let exact = observe_custom_core(records, exact, 0, None);
        let custom = if sampled.is_empty() {
            exact
        } else {
            let sampler = Sampler::new(Rc::clone(copy_clock), self.budget);
            let counted = Arc::clone(&self.metrics);
            let sampled = observe_custom_core(records, sampled, base, Some(sampler)).inspect(move |(key, _, diff)| {
                if let CustomKey::Sampled(observed) = key {
                    let n = u64::try_from(*diff).unwrap_or(0);
                    counted.observer_sampling.report(n, if *observed { n } else { 0 });
                }
            });
            exact.concat(sampled)
        };
        custom.map(|key| match key {
            CustomKey::Count(metric) => Observation::Custom(metric),
            CustomKey::Sample(metric, partition, offset) => Observation::Sample(metric, partition, offset),
            CustomKey::Sampled(observed) => Observation::Sampled(observed),
        })
    }
}

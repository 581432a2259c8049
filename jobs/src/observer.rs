//! The observer job: the passthrough with every observer attached and its outputs running.
//!
//! Delivery semantics: at-least-once, as the engine's passthrough. Observations are
//! derived from the records read; a record replayed after a crash is observed again.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tidewatch_engine::{run_job, Cluster, JobControl, RunSummary};
use tidewatch_operators::custom::ObserverFactory;
use tidewatch_operators::observers::{ObserverMetrics, ObserverPlan};
use tidewatch_operators::protocol::DataflowObserver;

use crate::config::FileConfig;
use crate::dashboard::JobInfo;
use crate::outputs::{Latest, Outputs};
use crate::profiles::ProfileWriter;

/// Runs the job described by `file` with its observers and outputs until it ends.
pub fn run_observed(file: FileConfig, cluster: &Cluster, control: Arc<JobControl>) -> anyhow::Result<RunSummary> {
    run_observed_with(file, cluster, control, Arc::new(ObserverMetrics::default()))
}

/// [`run_observed`], keeping the observers' own counters in `observer_metrics`.
pub fn run_observed_with(
    file: FileConfig,
    cluster: &Cluster,
    control: Arc<JobControl>,
    observer_metrics: Arc<ObserverMetrics>,
) -> anyhow::Result<RunSummary> {
    run_observed_watching(file, cluster, control, observer_metrics, |_| {})
}

/// [`run_observed_with`], handing the outputs' [`Latest`] observations to `watch` once
/// they run (for live displays).
pub fn run_observed_watching(
    file: FileConfig,
    cluster: &Cluster,
    control: Arc<JobControl>,
    observer_metrics: Arc<ObserverMetrics>,
    watch: impl FnOnce(Arc<Mutex<Latest>>),
) -> anyhow::Result<RunSummary> {
    run_observed_core(file, cluster, control, observer_metrics, Vec::new(), watch)
}

/// Observers of your own, run beside the built-in ones: their figures join the stats
/// documents, `/metrics`, OpenSearch and the alert rules.
#[derive(Default, Clone)]
pub struct Own {
    /// Record observers ([`tidewatch_operators::custom`]).
    pub record: Vec<Arc<dyn ObserverFactory>>,
    /// Observers on the observation protocol ([`tidewatch_operators::protocol`]).
    pub dataflow: Vec<Arc<dyn DataflowObserver>>,
}

impl std::fmt::Debug for Own {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dataflow: Vec<&str> = self.dataflow.iter().map(|o| o.name()).collect();
        let record: Vec<&str> = self.record.iter().map(|o| o.name()).collect();
        f.debug_struct("Own").field("record", &record).field("dataflow", &dataflow).finish()
    }
}

impl From<Vec<Arc<dyn ObserverFactory>>> for Own {
    fn from(record: Vec<Arc<dyn ObserverFactory>>) -> Own {
        Own { record, dataflow: Vec::new() }
    }
}

/// [`run_observed_watching`], with observers of your own beside the built-in ones.
pub fn run_observed_core(
    file: FileConfig,
    cluster: &Cluster,
    control: Arc<JobControl>,
    observer_metrics: Arc<ObserverMetrics>,
    own: impl Into<Own>,
    watch: impl FnOnce(Arc<Mutex<Latest>>),
) -> anyhow::Result<RunSummary> {
    let own: Own = own.into();
    let FileConfig { job, kafka, observe, output, opensearch, profile } = file;
    // Check everything before anything starts (files, ports).
    job.validate()?;
    kafka.consumer_config(&job.group_id)?;
    kafka.producer_config()?;
    let plan = ObserverPlan::new(&observe, job.epoch_interval)?.with_profile(&profile, job.epoch_interval)?;
    let plan = own.record.into_iter().fold(plan, ObserverPlan::with_observer);
    let plan = own.dataflow.into_iter().fold(plan, ObserverPlan::with_dataflow_observer);
    // Profiles are assembled on worker 0, which runs in process 0.
    let profiles = if plan.profiles() && cluster.process == 0 { Some(ProfileWriter::start(&profile.dir, &opensearch)?) } else { None };
    let info = JobInfo {
        input: job.input_topic.clone(),
        output: job.output_topic.clone(),
        workers: cluster.workers,
        processes: cluster.processes,
        process: cluster.process,
        guarantee: job.guarantee.as_str().to_owned(),
        window_ms: u64::try_from(observe.window.as_millis()).unwrap_or(u64::MAX),
        rules: observe.alerts.clone(),
    };
    let profiles_dir = profiles.as_ref().map(|writer| writer.dir().to_path_buf());
    let outputs = Outputs::start(&output, &opensearch, info, profiles_dir, Arc::clone(&control), Arc::clone(&observer_metrics))?;
    let mut observers = plan.attach(outputs.sinks.clone(), observer_metrics);
    if let Some(writer) = &profiles {
        observers = observers.with_profile_sink(writer.sender());
    }
    watch(Arc::clone(&outputs.latest));
    tracing::info!(dir = %output.dir.display(), metrics = ?outputs.metrics_addr, "observations go to stats.ndjson and alerts.ndjson");
    let result = run_job(job, kafka, cluster, control, observers);
    let finished = outputs.finish().context("writing the observations");
    let profiled = profiles.map(|writer| writer.finish().context("writing the profile reports"));
    let summary = result?;
    finished?;
    if let Some(windows) = profiled.transpose()? {
        tracing::info!(windows, dir = %profile.dir.display(), "profile reports written");
    }
    Ok(summary)
}

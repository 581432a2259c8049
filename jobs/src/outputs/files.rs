//! The writer thread: each stats document and alert transition to its NDJSON file, to
//! OpenSearch when configured, and to the Prometheus figures.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::{select, Receiver};
use tidewatch_engine::opensearch::OpenSearchSink;
use tidewatch_engine::JobControl;
use tidewatch_operators::alerts::{AlertEvent, AlertState};
use tidewatch_operators::observers::ObserverMetrics;
use tidewatch_operators::stats::StatsDoc;

use super::prometheus::{refresh_metrics, refresh_opensearch, Metrics};
use super::Latest;
use crate::dashboard::Board;

/// Opens `path` for appending, creating it.
pub(super) fn append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot open {} for appending", path.display()))
}

/// Where the documents of a job go: the NDJSON files, and OpenSearch if configured.
pub(super) struct Files {
    /// `stats.ndjson`.
    pub(super) stats: File,
    /// `alerts.ndjson`.
    pub(super) alerts: File,
    /// OpenSearch, when configured.
    pub(super) opensearch: Option<OpenSearchSink>,
    /// The dashboard's history, on the process that shows it.
    pub(super) board: Option<Arc<Board>>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn write_loop(
    stats: Receiver<StatsDoc>,
    alerts: Receiver<AlertEvent>,
    files: Files,
    metrics: &Metrics,
    topic: &str,
    control: &JobControl,
    observers: &ObserverMetrics,
    latest: &Mutex<Latest>,
) -> anyhow::Result<()> {
    let Files { stats: mut stats_file, alerts: mut alerts_file, opensearch, board } = files;
    // Documents get ids of this run: shipping again after an outage overwrites, and
    // another run (a restart replaying a window) adds its own.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let tick = crossbeam_channel::tick(Duration::from_millis(500));
    let mut open = (true, true);
    let refresh = |opensearch: Option<&OpenSearchSink>| refresh_metrics(metrics, control, observers, opensearch);
    while open.0 || open.1 {
        select! {
            recv(stats) -> doc => match doc {
                Ok(doc) => {
                    serde_json::to_writer(&mut stats_file, &doc)?;
                    stats_file.write_all(b"\n")?;
                    if let Some(sink) = &opensearch {
                        sink.stats(format!("{run}-{}", doc.window_start_ms), serde_json::to_value(&doc)?);
                    }
                    metrics.absorb_doc(&doc, topic);
                    if let Some(board) = &board {
                        board.absorb_doc(&doc);
                    }
                    let mut latest = latest.lock().unwrap_or_else(PoisonError::into_inner);
                    latest.windows += 1;
                    latest.stats = Some(doc);
                }
                Err(_) => open.0 = false,
            },
            recv(alerts) -> event => match event {
                Ok(event) => {
                    serde_json::to_writer(&mut alerts_file, &event)?;
                    alerts_file.write_all(b"\n")?;
                    if let Some(sink) = &opensearch {
                        sink.alert(format!("{run}-{}-{}-{:?}", event.rule, event.timestamp, event.state), serde_json::to_value(&event)?);
                    }
                    metrics.absorb_alert(&event);
                    if let Some(board) = &board {
                        board.absorb_alert(&event);
                    }
                    let mut latest = latest.lock().unwrap_or_else(PoisonError::into_inner);
                    latest.alert_events += 1;
                    if event.state == AlertState::Firing {
                        latest.firing.insert(event.rule.clone());
                    } else {
                        latest.firing.remove(&event.rule);
                    }
                }
                Err(_) => open.1 = false,
            },
            recv(tick) -> _ => refresh(opensearch.as_ref()),
        }
    }
    let counters = opensearch.as_ref().map(|sink| Arc::clone(&sink.counters));
    if let Some(sink) = opensearch {
        sink.finish();
    }
    refresh(None);
    if let Some(c) = counters {
        refresh_opensearch(metrics, &c);
    }
    stats_file.sync_data()?;
    alerts_file.sync_data()?;
    Ok(())
}


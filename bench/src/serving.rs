//! The observed job with its HTTP server (`/metrics`, the dashboard) on, unwatched or
//! watched: the contenders that measure what the dashboard costs.
//!
//! Delivery: as the other tidewatch contenders, at least once.

use std::io::{Read as _, Write as _};
use std::sync::{Arc, PoisonError};

use anyhow::Context as _;
use tidewatch_engine::{Cluster, JobConfig, JobControl, KafkaConfig, RunSummary};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed_core;
use tidewatch_jobs::outputs::OutputConfig;
use tidewatch_operators::observers::{ObserveConfig, ObserverMetrics};
use tidewatch_tests::unique_topic;

/// Whether a page watches the served job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The server on a loopback port, nobody asking.
    Unwatched,
    /// The server, and a client that reads the page's event stream (a fresh rendering of
    /// the page each second) for the whole run, as an open browser tab does.
    Watched,
}

/// Runs the job with the default observers and the server, as
/// [`crate::contenders::tidewatch_run`] does with `observers` on.
pub fn tidewatch_serving(brokers: &str, input: &str, output: &str, workers: usize, serving: Serving, until_end: bool) -> anyhow::Result<RunSummary> {
    let job = JobConfig { input_topic: input.to_owned(), output_topic: output.to_owned(), group_id: unique_topic("bench-group"), until_end, ..JobConfig::default() };
    let mut kafka = KafkaConfig::default();
    kafka.set("bootstrap.servers", brokers);
    let dir = tempfile::tempdir()?;
    let file = FileConfig {
        job,
        kafka,
        observe: ObserveConfig::default(),
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: "127.0.0.1:0".to_owned(), ..OutputConfig::default() },
        opensearch: Default::default(),
        profile: Default::default(),
    };
    let mut watcher = None;
    let cluster = Cluster { workers, ..Cluster::default() };
    let summary = run_observed_core(file, &cluster, JobControl::new(), Arc::new(ObserverMetrics::default()), Vec::new(), |latest| {
        let url = latest.lock().unwrap_or_else(PoisonError::into_inner).dashboard.clone();
        if let (Serving::Watched, Some(url)) = (serving, url) {
            watcher = Some(std::thread::spawn(move || watch_events(&url)));
        }
    })?;
    if let Some(watcher) = watcher {
        let bytes = watcher.join().map_err(|_| anyhow::anyhow!("the page watcher panicked"))??;
        anyhow::ensure!(bytes > 0, "the page watcher read nothing from the event stream");
    }
    Ok(summary)
}

/// Reads the dashboard's event stream at `url` until the server closes it; returns the
/// bytes read.
fn watch_events(url: &str) -> anyhow::Result<u64> {
    let addr = url.trim_start_matches("http://").split('/').next().context("no address in the dashboard URL")?;
    let mut stream = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to the dashboard at {addr}"))?;
    write!(stream, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return Ok(total),
            Ok(n) => total += n as u64,
        }
    }
}

//! The live dashboard of a job: a bounded history of its observations, a page that
//! charts it, and the HTTP server that serves the page beside `/metrics`.
//!
//! - [`Board`]: the history, a fixed-size ring of the last windows' stats documents and
//!   of the alert transitions, fed by the outputs' writer once per window (never per
//!   record); the live counters are read only while someone asks;
//! - `page.rs`, `charts.rs`: the page, HTML with server-side SVG charts (plotters) and
//!   a few lines of script that swap in a fresh rendering every second (server-sent
//!   events); every name and value from the data is HTML-escaped;
//! - `server.rs`: the server (axum): `/metrics`, `/`, `/api/state`, `/api/events`,
//!   `/profiles/…`, and the access token a non-loopback address needs.

mod charts;
mod page;
pub(crate) mod server;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tidewatch_engine::epoch::now_ms;
use tidewatch_engine::{JobControl, JobMetrics};
use tidewatch_operators::alerts::{AlertEvent, AlertRule, AlertState};
use tidewatch_operators::stats::StatsDoc;

/// How far back the page looks: the ring holds this much at window resolution.
pub const HISTORY: Duration = Duration::from_secs(3_600);
/// Fewest and most windows the ring holds, whatever the window length.
const RING_BOUNDS: (usize, usize) = (60, 3_600);
/// Alert transitions kept.
const TRANSITIONS: usize = 500;
/// Live counter readings kept (one per page refresh at most every half second).
const LIVE_SAMPLES: usize = 32;

/// What the page says about the job itself.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// Input topic.
    pub input: String,
    /// Output topic.
    pub output: String,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// This process.
    pub process: usize,
    /// `at-least-once` or `exactly-once`.
    pub guarantee: String,
    /// Observation window (ms).
    pub window_ms: u64,
    /// The alert rules.
    pub rules: Vec<AlertRule>,
}

/// The job's observations as the page shows them, bounded.
#[derive(Debug)]
pub struct Board {
    job: JobInfo,
    started: Instant,
    started_ms: u64,
    capacity: usize,
    control: Arc<JobControl>,
    profiles: Option<PathBuf>,
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    windows: VecDeque<StatsDoc>,
    transitions: VecDeque<AlertEvent>,
    states: BTreeMap<String, AlertState>,
    live: VecDeque<(Instant, u64, u64)>,
}

/// The live counters of this process, read when the page asks.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// Records read so far (this process).
    pub records_in: u64,
    /// Records delivered so far (this process).
    pub records_delivered: u64,
    /// Records read per second over the last readings (absent until two readings).
    pub in_per_s: Option<f64>,
    /// Records delivered per second over the last readings.
    pub delivered_per_s: Option<f64>,
    /// Seconds since the job started.
    pub uptime_s: f64,
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
}

/// An alert rule and the state it is in.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// The rule.
    #[serde(flatten)]
    pub rule: AlertRule,
    /// The state of its last transition (`inactive` before any).
    pub state: AlertState,
}

/// A profile report the page links.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileLink {
    /// File name in the profiles directory (served at `/profiles/<file>`).
    pub file: String,
}

/// Everything the page shows: the body of `/api/state`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The job.
    pub job: JobInfo,
    /// When the job started, ms since the Unix epoch.
    pub started_ms: u64,
    /// The live counters.
    pub live: Live,
    /// The stats documents of the last windows, oldest first (as in `stats.ndjson`).
    pub windows: Vec<StatsDoc>,
    /// The alert rules with their states.
    pub alerts: Vec<RuleView>,
    /// The alert transitions of the last windows, oldest first (as in `alerts.ndjson`).
    pub transitions: Vec<AlertEvent>,
    /// The latest profile reports, newest first.
    pub profiles: Vec<ProfileLink>,
}

impl Board {
    /// An empty board of `job`; `profiles`: the directory of its profile reports.
    pub fn new(job: JobInfo, control: Arc<JobControl>, profiles: Option<PathBuf>) -> Board {
        let window_ms = job.window_ms.max(1);
        let capacity = usize::try_from(HISTORY.as_millis() as u64 / window_ms).unwrap_or(RING_BOUNDS.1).clamp(RING_BOUNDS.0, RING_BOUNDS.1);
        Board { job, started: Instant::now(), started_ms: now_ms(), capacity, control, profiles, history: Mutex::new(History::default()) }
    }

    /// Windows the ring holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a closed window's document (the oldest one leaves a full ring).
    pub fn absorb_doc(&self, doc: &StatsDoc) {
        let mut history = self.history();
        if history.windows.len() == self.capacity {
            history.windows.pop_front();
        }
        history.windows.push_back(doc.clone());
    }

    /// Keeps an alert transition.
    pub fn absorb_alert(&self, event: &AlertEvent) {
        let mut history = self.history();
        if history.transitions.len() == TRANSITIONS {
            history.transitions.pop_front();
        }
        history.states.insert(event.rule.clone(), event.state);
        history.transitions.push_back(event.clone());
    }

    /// Reads the live counters, and the rates since the oldest of the last readings.
    fn live(&self, history: &mut History) -> Live {
        let m = &self.control.metrics;
        let now = Instant::now();
        let (records_in, records_delivered) = (JobMetrics::get(&m.records_in), JobMetrics::get(&m.records_delivered));
        let newest = history.live.back().map(|(t, _, _)| *t);
        if newest.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(500)) {
            if history.live.len() == LIVE_SAMPLES {
                history.live.pop_front();
            }
            history.live.push_back((now, records_in, records_delivered));
        }
        // The oldest reading within the last 5 s, at least 0.5 s old.
        let base = history.live.iter().find(|(t, _, _)| {
            let age = now.duration_since(*t);
            age <= Duration::from_secs(5) && age >= Duration::from_millis(500)
        });
        let rate = |now_count: u64, then: u64, t: Instant| now_count.saturating_sub(then) as f64 / now.duration_since(t).as_secs_f64();
        Live {
            records_in,
            records_delivered,
            in_per_s: base.map(|(t, i, _)| rate(records_in, *i, *t)),
            delivered_per_s: base.map(|(t, _, d)| rate(records_delivered, *d, *t)),
            uptime_s: self.started.elapsed().as_secs_f64(),
            now_ms: now_ms(),
        }
    }

    /// Everything the page shows, now.
    pub fn snapshot(&self) -> Snapshot {
        let mut history = self.history();
        let live = self.live(&mut history);
        let alerts = self
            .job
            .rules
            .iter()
            .map(|rule| RuleView { rule: rule.clone(), state: history.states.get(&rule.name).copied().unwrap_or(AlertState::Inactive) })
            .collect();
        let windows = history.windows.iter().cloned().collect();
        let transitions = history.transitions.iter().cloned().collect();
        drop(history);
        Snapshot { job: self.job.clone(), started_ms: self.started_ms, live, windows, alerts, transitions, profiles: self.profile_links() }
    }

    /// The newest window reports in the profiles directory (hourly roll-ups first).
    fn profile_links(&self) -> Vec<ProfileLink> {
        let Some(dir) = &self.profiles else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("profile-") && name.ends_with(".html"))
            .collect();
        // Stems carry the window start (`profile-20261125T100000Z`): newest last by name.
        files.sort_by(|a, b| b.cmp(a));
        files.truncate(8);
        files.into_iter().map(|file| ProfileLink { file }).collect()
    }

    /// The profiles directory, when the job writes profiles.
    pub(crate) fn profiles_dir(&self) -> Option<&std::path::Path> {
        self.profiles.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(start: u64) -> StatsDoc {
        let text = format!(
            r#"{{"@timestamp":"x","window_start_ms":{start},"window_end_ms":{},"all_events":1,"quality":{{}},"unparseable":0,"not_object":0,
            "tombstones":0,"lag_per_partition":{{"0":5,"1":7}},"lag_seconds_per_partition":{{}},"status_per_partition":{{"0":"OK","1":"WARN"}},
            "max_lag":7,"max_lag_seconds":null,"records_in":1,"records_delivered":1,"invalid_<img src=x onerror=alert(1)>":3,"invalid_page":1,
            "metrics":{{"own.<b>count</b>":2.5}}}}"#,
            start + 1000
        );
        serde_json::from_str(&text).expect("a stats document")
    }

    fn info() -> JobInfo {
        JobInfo {
            input: "in".into(),
            output: "out".into(),
            workers: 1,
            processes: 1,
            process: 0,
            guarantee: "at-least-once".into(),
            window_ms: 1_000,
            rules: Vec::new(),
        }
    }

    #[test]
    fn the_ring_keeps_the_last_hour_of_windows_and_no_more() {
        let board = Board::new(info(), JobControl::new(), None);
        assert_eq!(board.capacity(), 3_600);
        for i in 0..4_000 {
            board.absorb_doc(&doc(i * 1000));
        }
        let snapshot = board.snapshot();
        assert_eq!(snapshot.windows.len(), 3_600);
        assert_eq!(snapshot.windows.first().map(|d| d.window_start_ms), Some(400_000));
        assert_eq!(snapshot.windows.last().map(|d| d.window_start_ms), Some(3_999_000));
    }

    #[test]
    fn a_full_ring_renders_a_bounded_page_with_names_from_the_data_as_text() {
        let board = Board::new(info(), JobControl::new(), None);
        let now = now_ms() - now_ms() % 1000;
        for i in 0..3_600 {
            board.absorb_doc(&doc(now - 3_600_000 + i * 1000));
        }
        let started = Instant::now();
        let html = page::render_page(&board.snapshot());
        let took = started.elapsed();
        assert!(html.len() < 600_000, "a page of {} bytes", html.len());
        assert!(!html.contains("<img") && !html.contains("<b>count"), "a name from the data became markup");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;") && html.contains("own.&lt;b&gt;count&lt;/b&gt;"));
        assert!(took < Duration::from_secs(5), "rendering took {took:?}");
    }
}

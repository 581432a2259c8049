//! Where window profiles go: per window a self-contained HTML report and the same
//! profile as JSON (`profile-<window start>.html` / `.json`) in the profiles directory,
//! an `index.html` listing them, hourly roll-ups merged from the windows
//! (`profile-hour-<hour>.html` / `.json`, the hour so far while it runs), and, when
//! OpenSearch is configured, one summary document per window in its profiles index.
//!
//! Files are written to a temporary name and renamed, so a reader never sees half a report.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::Context as _;
use crossbeam_channel::{unbounded, Receiver, Sender};
use serde_json::json;
use tidewatch_engine::opensearch::{OpenSearchConfig, OpenSearchSink};
use tidewatch_operators::profile::{render_html, render_index, IndexEntry, PartialProfile, ProfileConfig, WindowProfile};

const HOUR_MS: u64 = 3_600_000;

/// The running profile writer: a thread that writes what the observers hand it.
#[derive(Debug)]
pub struct ProfileWriter {
    sender: Sender<WindowProfile>,
    thread: JoinHandle<anyhow::Result<u64>>,
    dir: PathBuf,
}

impl ProfileWriter {
    /// Creates `dir` and starts the writer; with an OpenSearch URL in `opensearch`, also a
    /// sink of its own for the profiles index.
    pub fn start(dir: &Path, opensearch: &OpenSearchConfig) -> anyhow::Result<ProfileWriter> {
        fs::create_dir_all(dir).with_context(|| format!("config key `profile.dir`: cannot create {}", dir.display()))?;
        let opensearch = crate::mapping::with_default_indices(opensearch);
        let sink = if opensearch.url.is_empty() { None } else { Some(OpenSearchSink::start(&opensearch, crate::mapping::observation_mappings())?) };
        let index = opensearch.profiles_index.clone();
        let (sender, receiver) = unbounded();
        let target = dir.to_path_buf();
        let thread = std::thread::Builder::new().name("tidewatch-profiles".into()).spawn(move || write_loop(&receiver, &target, sink, &index))?;
        tracing::info!(dir = %dir.display(), "profile reports go to index.html there");
        Ok(ProfileWriter { sender, thread, dir: dir.to_path_buf() })
    }

    /// Where the observers hand window profiles.
    pub fn sender(&self) -> Sender<WindowProfile> {
        self.sender.clone()
    }

    /// The profiles directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits for every profile handed over (the observers' senders dropped) to be
    /// written; returns how many windows were.
    pub fn finish(self) -> anyhow::Result<u64> {
        drop(self.sender);
        self.thread.join().map_err(|_| anyhow::anyhow!("the profile writer panicked"))?
    }
}

/// Writes `text` to `path` through a temporary file in the same directory.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Writes the HTML report and the JSON of `profile` as `<stem>.html` and `<stem>.json`.
pub fn write_profile(dir: &Path, stem: &str, profile: &WindowProfile) -> anyhow::Result<()> {
    write_atomically(&dir.join(format!("{stem}.json")), &profile.to_json()?)?;
    write_atomically(&dir.join(format!("{stem}.html")), &render_html(profile))
}

/// The OpenSearch summary document of a window profile: whole-record counts, alerts and
/// drift (no per-field figures, so a wild schema cannot blow up the index mapping).
pub fn summary_doc(profile: &WindowProfile) -> serde_json::Value {
    let o = &profile.overview;
    let mut kinds = serde_json::Map::new();
    for a in &profile.alerts {
        let n = kinds.get(a.kind.name()).and_then(serde_json::Value::as_u64).unwrap_or(0);
        kinds.insert(a.kind.name().to_owned(), json!(n + 1));
    }
    json!({
        "@timestamp": profile.window_end,
        "window_start_ms": profile.window_start_ms,
        "window_end_ms": profile.window_end_ms,
        "records": o.records,
        "objects": o.objects,
        "not_object": o.not_object,
        "unparseable": o.unparseable,
        "tombstones": o.tombstones,
        "fields": profile.summary.len(),
        "missing_cells": profile.missing_cells(),
        "alerts": profile.alerts.len(),
        "alerts_by_kind": kinds,
        "alert_list": profile.alerts.iter().map(|a| json!({"field": a.field, "kind": a.kind.name()})).collect::<Vec<_>>(),
        "drift": profile.drift.iter().map(|d| json!({"field": d.field, "kind": d.kind, "from": d.from, "to": d.to})).collect::<Vec<_>>(),
    })
}

fn write_loop(receiver: &Receiver<WindowProfile>, dir: &Path, sink: Option<OpenSearchSink>, index: &str) -> anyhow::Result<u64> {
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut hours: Vec<IndexEntry> = Vec::new();
    let mut hour: Option<WindowProfile> = None;
    let mut written = 0u64;
    let run = uuid::Uuid::new_v4().simple().to_string();
    for profile in receiver.iter() {
        let stem = profile.file_stem();
        write_profile(dir, &stem, &profile)?;
        written += 1;
        if let Some(sink) = &sink {
            sink.send(index, format!("{run}-{stem}"), summary_doc(&profile));
        }
        tracing::debug!(file = %stem, records = profile.overview.records, alerts = profile.alerts.len(), "profile written");
        entries.insert(0, IndexEntry::of(&stem, &profile));

        // The hour so far: a merge of its windows, no records rescanned.
        let this_hour = profile.window_start_ms / HOUR_MS;
        match &mut hour {
            Some(h) if h.window_start_ms / HOUR_MS == this_hour => h.merge(&profile),
            _ => {
                let config = ProfileConfig { top_k: profile.top_k, ..ProfileConfig::default() };
                let mut fresh = WindowProfile::new(this_hour * HOUR_MS, this_hour * HOUR_MS, PartialProfile::default(), &config);
                fresh.merge(&profile);
                hour = Some(fresh);
            }
        }
        if let Some(h) = &hour {
            let hour_stem = h.file_stem().replacen("profile-", "profile-hour-", 1);
            write_profile(dir, &hour_stem, h)?;
            hours.retain(|e| e.stem != hour_stem);
            hours.insert(0, IndexEntry::of(&hour_stem, h));
        }
        let mut listed = hours.clone();
        listed.extend(entries.iter().cloned());
        write_atomically(&dir.join("index.html"), &render_index("tidewatch profiles (hours, then windows, newest first)", &listed))?;
    }
    if let Some(sink) = sink {
        sink.finish();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewatch_operators::profile::ProfileBuilder;

    fn window(start_ms: u64, values: &[&[u8]]) -> WindowProfile {
        let config = ProfileConfig::default();
        let mut builder = ProfileBuilder::new(&config);
        for v in values {
            builder.observe(Some(v));
        }
        WindowProfile::new(start_ms, start_ms + 60_000, builder.finish(), &config)
    }

    #[test]
    fn writes_reports_an_index_and_the_hour_so_far() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = ProfileWriter::start(dir.path(), &OpenSearchConfig::default()).expect("starts");
        let sender = writer.sender();
        let start = 1_795_600_800_000; // on the hour
        sender.send(window(start, &[br#"{"a":1}"#, br#"{"a":2}"#])).expect("sends");
        sender.send(window(start + 60_000, &[br#"{"a":"x","<i>b</i>":true}"#])).expect("sends");
        drop(sender);
        assert_eq!(writer.finish().expect("writes"), 2);
        let mut names: Vec<String> = fs::read_dir(dir.path()).expect("lists").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "index.html",
                "profile-20261125T100000Z.html",
                "profile-20261125T100000Z.json",
                "profile-20261125T100100Z.html",
                "profile-20261125T100100Z.json",
                "profile-hour-20261125T100000Z.html",
                "profile-hour-20261125T100000Z.json",
            ]
        );
        let hour = WindowProfile::from_json(&fs::read_to_string(dir.path().join("profile-hour-20261125T100000Z.json")).expect("reads")).expect("parses");
        assert_eq!((hour.overview.records, hour.summary["a"].present, hour.window_end_ms - hour.window_start_ms), (3, 3, 120_000));
        let html = fs::read_to_string(dir.path().join("profile-20261125T100100Z.html")).expect("reads");
        assert!(html.contains("&lt;i&gt;b&lt;/i&gt;") && !html.contains("<i>b</i>"));
        let index = fs::read_to_string(dir.path().join("index.html")).expect("reads");
        assert!(index.contains("profile-20261125T100000Z.html") && index.contains("profile-hour-20261125T100000Z.html"));
    }
}

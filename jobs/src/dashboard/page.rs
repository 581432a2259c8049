//! The dashboard page: the document shell, and the live part (`render_live`) that the
//! page's script swaps in on every update. Every name and value from the data goes
//! through [`escape`]; the charts come from `charts.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tidewatch_operators::alerts::AlertState;
use tidewatch_operators::stats::{PartitionStatus, StatsDoc};

use super::charts::{colour_hex, line_chart, short_number, state_strips, Series};
use super::Snapshot;

/// The page's own script: opens the event stream (with the page's query, which may carry
/// the access token) and swaps each rendering in. It inserts only what the server
/// rendered and escaped.
pub(super) const SCRIPT: &str = r#"'use strict';
const live = document.getElementById('live');
const conn = document.getElementById('conn');
const events = new EventSource('api/events' + window.location.search);
events.addEventListener('live', (e) => { live.innerHTML = e.data; conn.textContent = 'live'; conn.className = 'ok'; });
events.onerror = () => { conn.textContent = 'reconnecting'; conn.className = 'bad'; };
"#;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}\
header{background:#1f2a44;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}\
header h1{font-size:18px;margin:0}main{padding:12px 18px;display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:14px}\
section{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px #0002}h2{font-size:15px;margin:0 0 8px}\
.tiles{display:flex;gap:12px;flex-wrap:wrap}.tile{background:#eef1f6;border-radius:4px;padding:6px 10px;min-width:110px}\
.tile b{display:block;font-size:20px}table{border-collapse:collapse;width:100%;font-size:13px}\
td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #eee}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#1a7f37}.bad,.st-WARN,.st-STALL,.st-STOP,.al-firing{color:#fff;background:#d62728;font-weight:bold}\
.al-pending{background:#ffa500}.st-OK,.al-inactive,.al-resolved{color:#1a7f37}.legend span{margin-right:12px}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}.empty{color:#888}code{word-break:break-all}";

/// HTML-escapes text for element content and quoted attribute values.
pub(super) use tidewatch_operators::profile::escape;

/// The whole page: the shell with a first rendering of the live part.
pub(super) fn render_page(snapshot: &Snapshot) -> String {
    let job = &snapshot.job;
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>tidewatch · {input} → {output}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head><body>\
         <header><h1>tidewatch</h1><span>{input} → {output}</span><span id=\"conn\" class=\"bad\">connecting</span></header>\
         <div id=\"live\">{live}</div><script src=\"dashboard.js\"></script></body></html>",
        input = escape(&job.input),
        output = escape(&job.output),
        live = render_live(snapshot),
    )
}

/// The live part of the page.
pub(super) fn render_live(s: &Snapshot) -> String {
    let span = span_minutes(s);
    let mut html = String::from("<main>");
    html.push_str(&job_section(s));
    html.push_str(&throughput_section(s, span));
    html.push_str(&lag_section(s, span));
    html.push_str(&errors_section(s, span));
    html.push_str(&alerts_section(s, span));
    html.push_str(&observers_section(s, span));
    html.push_str(&profiles_section(s));
    html.push_str("</main>");
    html
}

/// Minutes the charts span: the history kept, at least 2, at most 60.
fn span_minutes(s: &Snapshot) -> f64 {
    let oldest = s.windows.first().map_or(s.started_ms, |d| d.window_start_ms.min(s.started_ms));
    (s.live.now_ms.saturating_sub(oldest) as f64 / 60_000.0).clamp(2.0, 60.0)
}

/// Most points a chart line has: longer histories are charted every k-th window.
const MAX_POINTS: usize = 600;

/// The windows the charts draw: every one, or every k-th of a long history (the newest
/// always among them).
fn charted(s: &Snapshot) -> impl Iterator<Item = &StatsDoc> + '_ {
    let step = s.windows.len().div_ceil(MAX_POINTS).max(1);
    let skip = (s.windows.len() + step - 1) % step;
    s.windows.iter().skip(skip).step_by(step)
}

/// Where a window's end falls on the charts: minutes relative to now.
fn at(s: &Snapshot, doc: &StatsDoc) -> f64 {
    (doc.window_end_ms as f64 - s.live.now_ms as f64) / 60_000.0
}

fn tile(id: &str, label: &str, value: &str) -> String {
    format!("<div class=\"tile\"><b id=\"{id}\">{}</b>{}</div>", escape(value), escape(label))
}

fn legend(names: &[String]) -> String {
    let mut html = String::from("<div class=\"legend\">");
    for (i, name) in names.iter().enumerate() {
        let _ = write!(html, "<span><i style=\"background:{}\"></i>{}</span>", colour_hex(i), escape(name));
    }
    html.push_str("</div>");
    html
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
}

fn job_section(s: &Snapshot) -> String {
    let job = &s.job;
    let this = if job.processes > 1 { " (this process)" } else { "" };
    let uptime = humantime::format_duration(std::time::Duration::from_secs(s.live.uptime_s as u64)).to_string();
    let mut html = format!(
        "<section id=\"job\"><h2>Job</h2><p><code>{}</code> → <code>{}</code> · {} workers × {} processes · {} · window {} ms · up <span id=\"uptime\">{}</span></p><div class=\"tiles\">",
        escape(&job.input),
        escape(&job.output),
        job.workers,
        job.processes,
        escape(&job.guarantee),
        job.window_ms,
        escape(&uptime),
    );
    html.push_str(&tile("records-in", &format!("records in{this}"), &s.live.records_in.to_string()));
    html.push_str(&tile("in-per-s", &format!("in /s{this}"), &rate(s.live.in_per_s)));
    html.push_str(&tile("records-delivered", &format!("delivered{this}"), &s.live.records_delivered.to_string()));
    html.push_str(&tile("delivered-per-s", &format!("delivered /s{this}"), &rate(s.live.delivered_per_s)));
    html.push_str(&tile("windows", "windows shown", &s.windows.len().to_string()));
    html.push_str("</div></section>");
    html
}

fn throughput_section(s: &Snapshot, span: f64) -> String {
    let per_s = 1000.0 / s.job.window_ms.max(1) as f64;
    let series = vec![
        Series { name: "records in /s".into(), points: charted(s).map(|d| (at(s, d), d.records_in as f64 * per_s)).collect() },
        Series { name: "delivered /s".into(), points: charted(s).map(|d| (at(s, d), d.records_delivered as f64 * per_s)).collect() },
    ];
    let names: Vec<String> = series.iter().map(|x| x.name.clone()).collect();
    format!("<section id=\"throughput\"><h2>Records per second (per window, whole job)</h2>{}{}</section>", legend(&names), line_chart("records/s", span, &series))
}

fn status_name(status: PartitionStatus) -> &'static str {
    match status {
        PartitionStatus::Ok => "OK",
        PartitionStatus::Warn => "WARN",
        PartitionStatus::Stall => "STALL",
        PartitionStatus::Stop => "STOP",
    }
}

fn lag_section(s: &Snapshot, span: f64) -> String {
    let mut html = String::from("<section id=\"lag\"><h2>Lag per partition</h2>");
    let Some(last) = s.windows.last() else {
        html.push_str("<p class=\"empty\">no closed window yet</p></section>");
        return html;
    };
    html.push_str("<table><tr><th>partition</th><th>lag (offsets)</th><th>lag (s)</th><th>status</th></tr>");
    let partitions: Vec<&String> = last.status_per_partition.keys().chain(last.lag_per_partition.keys()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for p in &partitions {
        let status = last.status_per_partition.get(*p).map_or("–", |st| status_name(*st));
        let lag = last.lag_per_partition.get(*p).map_or_else(|| "–".to_owned(), i64::to_string);
        let seconds = last.lag_seconds_per_partition.get(*p).map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"));
        let (p, status) = (escape(p), escape(status));
        let _ = write!(
            html,
            "<tr class=\"partition\" data-partition=\"{p}\" data-status=\"{status}\" data-lag=\"{lag}\"><td>{p}</td><td class=\"n\">{lag}</td><td class=\"n\">{seconds}</td><td class=\"st-{status}\">{status}</td></tr>"
        );
    }
    html.push_str("</table>");
    let series: Vec<Series> = partitions
        .iter()
        .map(|p| Series {
            name: format!("partition {p}"),
            points: charted(s).filter_map(|d| d.lag_per_partition.get(*p).map(|v| (at(s, d), *v as f64))).collect(),
        })
        .collect();
    let names: Vec<String> = series.iter().map(|x| x.name.clone()).collect();
    let _ = write!(html, "{}{}</section>", legend(&names), line_chart("offsets behind", span, &series));
    html
}

fn errors_section(s: &Snapshot, span: f64) -> String {
    let per_min = 60_000.0 / s.job.window_ms.max(1) as f64;
    let mut fields: Vec<String> = s.windows.iter().flat_map(|d| d.invalid.keys().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    fields.push("unparseable".to_owned());
    let value = |d: &StatsDoc, f: &str| if f == "unparseable" { Some(d.unparseable) } else { d.invalid.get(f).copied() };
    let series: Vec<Series> = fields
        .iter()
        .map(|f| Series {
            name: f.strip_prefix("invalid_").unwrap_or(f).to_owned(),
            points: charted(s).filter_map(|d| value(d, f).map(|v| (at(s, d), v as f64 * per_min))).collect(),
        })
        .collect();
    let mut html = String::from("<section id=\"errors\"><h2>Errors per minute per watched field</h2>");
    if let Some(last) = s.windows.last() {
        html.push_str("<table><tr><th>field</th><th>last window</th><th>per minute</th></tr>");
        for (f, x) in fields.iter().zip(&series) {
            let n = value(last, f).unwrap_or(0);
            let _ = write!(html, "<tr class=\"field\"><td><code>{}</code></td><td class=\"n\">{n}</td><td class=\"n\">{}</td></tr>", escape(&x.name), short_number(n as f64 * per_min));
        }
        let share = if last.all_events > 0 { 100.0 * last.unparseable as f64 / last.all_events as f64 } else { 0.0 };
        let _ = write!(html, "</table><p>unparseable: <b id=\"unparseable-rate\">{share:.2} %</b> of the last window's records</p>");
    }
    let names: Vec<String> = series.iter().map(|x| x.name.clone()).collect();
    let _ = write!(html, "{}{}</section>", legend(&names), line_chart("records/min", span, &series));
    html
}

fn state_name(state: AlertState) -> &'static str {
    match state {
        AlertState::Pending => "pending",
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
        AlertState::Inactive => "inactive",
    }
}

/// Minutes relative to now of an RFC 3339 time.
fn minutes_of(s: &Snapshot, rfc3339: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?.timestamp_millis();
    Some((t as f64 - s.live.now_ms as f64) / 60_000.0)
}

fn alerts_section(s: &Snapshot, span: f64) -> String {
    let mut html = String::from("<section id=\"alerts\"><h2>Alert rules</h2><table><tr><th>rule</th><th>condition</th><th>state</th></tr>");
    let mut strips = Vec::new();
    for view in &s.alerts {
        let r = &view.rule;
        let state = state_name(view.state);
        let name = escape(&r.name);
        let condition = format!("{} {} {} for {}", r.metric, serde_json::to_value(r.op).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(), r.threshold, humantime::format_duration(r.for_));
        let _ = write!(html, "<tr class=\"rule\" data-rule=\"{name}\" data-state=\"{state}\"><td>{name}</td><td><code>{}</code></td><td class=\"al-{state}\">{state}</td></tr>", escape(&condition));
        // The rule's state from each of its transitions to the next.
        let mut strip = Vec::new();
        let mut from = (-span, "inactive");
        for event in s.transitions.iter().filter(|e| e.rule == r.name) {
            if let Some(t) = minutes_of(s, &event.timestamp) {
                strip.push((from.0.max(-span), t.max(-span), from.1));
                from = (t, state_name(event.state));
            }
        }
        strip.push((from.0.max(-span), 0.0, from.1));
        strips.push(strip);
    }
    html.push_str("</table>");
    html.push_str(&state_strips(span, &strips));
    html.push_str("<h2>Transitions</h2><table><tr><th>time</th><th>rule</th><th>state</th><th>value</th></tr>");
    for e in s.transitions.iter().rev().take(12) {
        let value = e.value.map_or_else(|| "–".to_owned(), short_number);
        let state = state_name(e.state);
        let _ = write!(
            html,
            "<tr class=\"transition\" data-rule=\"{rule}\" data-state=\"{state}\" data-at=\"{at}\"><td>{at}</td><td>{rule}</td><td class=\"al-{state}\">{state}</td><td class=\"n\">{value}</td></tr>",
            rule = escape(&e.rule),
            at = escape(&e.timestamp),
        );
    }
    html.push_str("</table></section>");
    html
}

/// Every other observer's figures, generically: the documents' `metrics` (protocol
/// observers, by dotted path) and `observers` (record observers) maps.
fn observers_section(s: &Snapshot, span: f64) -> String {
    let mut keys: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for d in charted(s) {
        for (k, v) in &d.metrics {
            keys.entry(k.clone()).or_default().push((at(s, d), *v));
        }
        for (k, v) in &d.observers {
            keys.entry(k.clone()).or_default().push((at(s, d), *v as f64));
        }
    }
    let mut html = String::from("<section id=\"observers\"><h2>Other observers</h2>");
    if keys.is_empty() {
        html.push_str("<p class=\"empty\">no observer figure yet</p></section>");
        return html;
    }
    html.push_str("<table><tr><th>figure</th><th>last window</th><th>min</th><th>max</th></tr>");
    for (k, points) in &keys {
        let last = points.last().map_or(0.0, |p| p.1);
        let (min, max) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let _ = write!(
            html,
            "<tr class=\"figure\" data-key=\"{key}\"><td><code>{key}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            short_number(last),
            short_number(min),
            short_number(max),
            key = escape(k),
        );
    }
    html.push_str("</table>");
    // One chart per observer (the first segment of the path), at most 8 lines each.
    let mut by_observer: BTreeMap<&str, Vec<Series>> = BTreeMap::new();
    for (k, points) in &keys {
        let observer = k.split('.').next().unwrap_or(k);
        let lines = by_observer.entry(observer).or_default();
        if lines.len() < 8 {
            lines.push(Series { name: k.clone(), points: points.clone() });
        }
    }
    for (observer, series) in by_observer.iter().take(6) {
        let names: Vec<String> = series.iter().map(|x| x.name.clone()).collect();
        let _ = write!(html, "<h2><code>{}</code></h2>{}{}", escape(observer), legend(&names), line_chart("value", span, series));
    }
    html.push_str("</section>");
    html
}

fn profiles_section(s: &Snapshot) -> String {
    let mut html = String::from("<section id=\"profiles\"><h2>Profiles</h2>");
    if s.profiles.is_empty() {
        html.push_str("<p class=\"empty\">no profile report (yet, or profiles are off)</p></section>");
        return html;
    }
    html.push_str("<p><a href=\"profiles/\">all reports</a></p><ul>");
    for p in &s.profiles {
        let file = escape(&p.file);
        let _ = write!(html, "<li><a class=\"profile\" href=\"profiles/{file}\">{file}</a></li>");
    }
    html.push_str("</ul></section>");
    html
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(escape("<img src=x onerror=\"a('b')\">&"), "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;");
    }
}

//! The self-contained HTML report of a window profile: inline CSS and SVG, no script,
//! font or remote resource, so it renders offline. Every field name and value is
//! escaped: the data is untrusted.

use std::fmt::Write as _;

use super::field::{FieldProfile, LENGTH_BOUNDS};
use super::report::{FieldSummary, ProfileAlertKind};
use super::{WindowProfile, DISTINCT_STANDARD_ERROR, QUANTILE_RELATIVE_ERROR};

/// Escapes text for HTML element content and quoted attribute values (control
/// characters shown as `\u{..}`); the dashboard's page uses it too.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// A number for people: integers without decimals, others with up to 4 significant decimals.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".to_owned();
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let text = if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    };
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    trimmed.to_owned()
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0 %".to_owned();
    }
    format!("{:.1} %", 100.0 * part as f64 / whole as f64)
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#17324d;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.8;font-size:13px}
main{padding:18px 28px;max-width:1200px}
section.card{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:14px 18px;margin:0 0 16px}
h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
th{color:#5a6472;font-weight:500}td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:22px}.grid>div{min-width:260px}
.badge{display:inline-block;border-radius:3px;padding:1px 6px;font-size:11px;font-weight:600;color:#fff;background:#7a8594;margin-right:4px}
.MISSING{background:#c0392b}.EMPTY{background:#8e44ad}.CONSTANT{background:#d35400}.UNIQUE{background:#2c7be5}
.HIGH_CARDINALITY{background:#16a085}.IMBALANCE{background:#b7950b}.SKEWED{background:#6c5ce7}.MIXED_TYPES{background:#e84393}
.DRIFT{background:#34495e}
.type{font-size:12px;color:#5a6472;font-weight:400;margin-left:8px}
nav a{display:inline-block;margin:0 10px 4px 0;font-size:13px;color:#17324d}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
svg text{font-family:inherit;font-size:10px;fill:#1d2430}
footer{color:#5a6472;font-size:12px;padding:0 28px 24px}
";

/// Renders the self-contained HTML report of `profile`.
///
/// # Examples
/// ```
/// use tidewatch_operators::profile::{render_html, ProfileBuilder, ProfileConfig, WindowProfile};
/// let config = ProfileConfig::default();
/// let mut builder = ProfileBuilder::new(&config);
/// builder.observe(Some(br#"{"<script>":1}"#));
/// let html = render_html(&WindowProfile::new(0, 1_000, builder.finish(), &config));
/// assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
/// ```
pub fn render_html(profile: &WindowProfile) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!("Profile {} – {}", profile.window_start, profile.window_end);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<header><h1>{}</h1><p>tidewatch dataset profile · window {} ms · {} fields</p></header>\n<main>\n",
        escape(&title),
        escape(&title),
        profile.window_end_ms.saturating_sub(profile.window_start_ms),
        profile.summary.len()
    );
    overview(&mut h, profile);
    alerts(&mut h, profile);
    drift(&mut h, profile);
    let _ = write!(h, "<section class=\"card\" id=\"fields\"><h2>Fields</h2><nav>");
    for (i, name) in profile.summary.keys().enumerate() {
        let _ = write!(h, "<a href=\"#f{i}\">{}</a>", escape(name));
    }
    h.push_str("</nav></section>\n");
    let rows = profile.overview.rows();
    for (i, (name, summary)) in profile.summary.iter().enumerate() {
        field(&mut h, i, name, summary, profile.fields.get(name), rows, profile);
    }
    let _ = write!(
        h,
        "</main>\n<footer>Quantiles: DDSketch, within {:.0} % of the value at each rank. Distinct counts: HyperLogLog++, standard error {:.1} %. \
         Top values: Misra–Gries, counts exact unless an error bound is shown. Missing: rows without the key.</footer>\n</body></html>\n",
        100.0 * QUANTILE_RELATIVE_ERROR,
        100.0 * DISTINCT_STANDARD_ERROR
    );
    h
}

fn overview(h: &mut String, p: &WindowProfile) {
    let o = &p.overview;
    if o.skipped > 0 {
        let _ = writeln!(
            h,
            "<p class=\"note\" id=\"sampling\">Sampled under the observation budget: {} of {} records profiled ({}); \
             every count below is over the profiled records.</p>",
            o.records,
            o.offered(),
            pct(o.records, o.offered()),
        );
    }
    let cells = o.rows() * p.summary.len() as u64;
    let missing = p.missing_cells();
    let _ = write!(
        h,
        "<section class=\"card\" id=\"overview\"><h2>Overview</h2><div class=\"grid\"><div><table>\
         <tr><th>Records</th><td class=\"n\">{}</td></tr>\
         <tr><th>JSON objects</th><td class=\"n\">{}</td></tr>\
         <tr><th>JSON, not objects</th><td class=\"n\">{}</td></tr>\
         <tr><th>Not JSON (unparseable)</th><td class=\"n\">{}</td></tr>\
         <tr><th>Null values (tombstones)</th><td class=\"n\">{}</td></tr></table></div><div><table>\
         <tr><th>Fields</th><td class=\"n\">{}</td></tr>\
         <tr><th>Missing or null cells</th><td class=\"n\">{} ({})</td></tr>\
         <tr><th>Alerts</th><td class=\"n\">{}</td></tr>\
         <tr><th>Schema changes</th><td class=\"n\">{}</td></tr>\
         <tr><th>Values not profiled</th><td class=\"n\">{}</td></tr></table></div></div></section>",
        o.records,
        o.objects,
        o.not_object,
        o.unparseable,
        o.tombstones,
        p.summary.len(),
        missing,
        pct(missing, cells),
        p.alerts.len(),
        p.drift.len(),
        o.dropped_values + o.too_deep,
    );
    h.push('\n');
}

fn alerts(h: &mut String, p: &WindowProfile) {
    let _ = write!(h, "<section class=\"card\" id=\"alerts\"><h2>Alerts ({})</h2>", p.alerts.len());
    if p.alerts.is_empty() {
        h.push_str("<p>None.</p></section>\n");
        return;
    }
    let mut kinds: Vec<ProfileAlertKind> = p.alerts.iter().map(|a| a.kind).collect();
    kinds.sort();
    kinds.dedup();
    h.push_str("<p>");
    for kind in kinds {
        let n = p.alerts.iter().filter(|a| a.kind == kind).count();
        let _ = write!(h, "<span class=\"badge {0}\">{0} {n}</span>", kind.name());
    }
    h.push_str("</p><table>");
    let index: std::collections::BTreeMap<&String, usize> = p.summary.keys().enumerate().map(|(i, k)| (k, i)).collect();
    for a in &p.alerts {
        let anchor = index.get(&a.field).copied().unwrap_or(0);
        let _ = write!(
            h,
            "<tr><td><a href=\"#f{anchor}\"><code>{}</code></a></td><td><span class=\"badge {kind}\">{kind}</span></td><td>{}</td></tr>",
            escape(&a.field),
            escape(&a.message),
            kind = a.kind.name()
        );
    }
    h.push_str("</table></section>\n");
}

fn drift(h: &mut String, p: &WindowProfile) {
    let _ = write!(h, "<section class=\"card\" id=\"drift\"><h2>Schema drift since the previous window ({})</h2>", p.drift.len());
    if p.drift.is_empty() {
        h.push_str("<p>None.</p></section>\n");
        return;
    }
    h.push_str("<table><tr><th>Field</th><th>Change</th><th>From</th><th>To</th></tr>");
    for d in &p.drift {
        let kind = match d.kind {
            super::DriftKind::Appeared => "appeared",
            super::DriftKind::Vanished => "vanished",
            super::DriftKind::TypeChanged => "changed type",
        };
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td><span class=\"badge DRIFT\">{kind}</span></td><td>{}</td><td>{}</td></tr>",
            escape(&d.field),
            d.from.map_or("–", |t| t.name()),
            d.to.map_or("–", |t| t.name())
        );
    }
    h.push_str("</table></section>\n");
}

fn field(h: &mut String, i: usize, name: &str, s: &FieldSummary, state: Option<&FieldProfile>, rows: u64, p: &WindowProfile) {
    let _ = write!(
        h,
        "<section class=\"card field\" id=\"f{i}\"><h2><code>{}</code><span class=\"type\">{}</span></h2>",
        escape(name),
        s.dominant_type.map_or("–", |t| t.name())
    );
    let badges: Vec<&str> = p.alerts.iter().filter(|a| a.field == name).map(|a| a.kind.name()).collect();
    if !badges.is_empty() {
        h.push_str("<p>");
        for b in badges {
            let _ = write!(h, "<span class=\"badge {b}\">{b}</span>");
        }
        h.push_str("</p>");
    }
    h.push_str("<div class=\"grid\"><div><table>");
    let mut row = |label: &str, value: String| {
        let _ = write!(h, "<tr><th>{label}</th><td class=\"n\">{}</td></tr>", escape(&value));
    };
    row("Present", format!("{} ({})", s.present, pct(s.present, rows)));
    row("Missing", format!("{} ({})", s.missing, pct(s.missing, rows)));
    row("Null", format!("{} ({})", s.null, pct(s.null, rows)));
    row("Empty (\"\", [], {})", format!("{} ({})", s.empty, pct(s.empty, rows)));
    row("Distinct (est.)", format!("{} (±{:.1} %)", num(s.distinct), 100.0 * s.distinct_error));
    let types: Vec<String> = s.types.iter().map(|(t, n)| format!("{t} {n}")).collect();
    row("Types", types.join(", "));
    if s.numeric_count > 0 {
        row("Min", s.min.map_or_else(String::new, num));
        row("Max", s.max.map_or_else(String::new, num));
        row("Mean", s.mean.map_or_else(String::new, num));
        row("Std. dev.", s.stddev.map_or_else(|| "–".to_owned(), num));
        if let Some(q) = &s.quantiles {
            row("p1 / p5 / p25", format!("{} / {} / {}", num(q.p1), num(q.p5), num(q.p25)));
            row("p50 (median)", num(q.p50));
            row("p75 / p95 / p99", format!("{} / {} / {}", num(q.p75), num(q.p95), num(q.p99)));
        }
    }
    if let (Some(min), Some(max)) = (s.length_min, s.length_max) {
        row("Length min / mean / max", format!("{min} / {} / {max}", s.length_mean.map_or_else(String::new, num)));
    }
    if let (Some(min), Some(max)) = (&s.time_min, &s.time_max) {
        row("Earliest", min.clone());
        row("Latest", max.clone());
    }
    h.push_str("</table></div>");
    if let Some(state) = state {
        if let Some(svg) = numeric_histogram(state) {
            let _ = write!(h, "<div><h3>Histogram</h3>{svg}</div>");
        } else if s.length_min.is_some() {
            let _ = write!(h, "<div><h3>String lengths</h3>{}</div>", length_histogram(state));
        }
    }
    if !s.top.is_empty() {
        let _ = write!(h, "<div><h3>Top values</h3>{}", top_chart(s, rows));
        if s.top_error_bound > 0 {
            let _ = write!(h, "<p><small>counts may be up to {} low</small></p>", s.top_error_bound);
        }
        h.push_str("</div>");
    }
    h.push_str("</div></section>\n");
}

/// Bars of a histogram as SVG: `bars` are (label, count).
fn bars_svg(bars: &[(String, f64)], first: &str, last: &str) -> String {
    let (w, hgt) = (320.0, 120.0);
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let n = bars.len().max(1) as f64;
    let bw = w / n;
    let mut svg = format!("<svg width=\"{w}\" height=\"{}\" role=\"img\">", hgt + 16.0);
    for (i, (label, count)) in bars.iter().enumerate() {
        let bh = if max > 0.0 { count / max * hgt } else { 0.0 };
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#2c7be5\"><title>{}: {}</title></rect>",
            i as f64 * bw + 0.5,
            hgt - bh,
            (bw - 1.0).max(0.5),
            escape(label),
            num(count.round())
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"0\" y1=\"{hgt}\" x2=\"{w}\" y2=\"{hgt}\" stroke=\"#9aa4b1\"/><text x=\"0\" y=\"{}\">{}</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        hgt + 12.0,
        escape(first),
        hgt + 12.0,
        escape(last)
    );
    svg
}

/// A histogram of the numbers, read from the quantile sketch: 200 evenly spaced ranks
/// placed in 20 equal-width bins between min and max.
fn numeric_histogram(f: &FieldProfile) -> Option<String> {
    let q = f.quantiles.as_ref()?;
    let n = f.numeric.count;
    if n == 0 || q.count() == 0 {
        return None;
    }
    let (min, max) = (f.numeric.min, f.numeric.max);
    const BINS: usize = 20;
    const SAMPLES: usize = 200;
    let mut counts = [0.0f64; BINS];
    let width = (max - min) / BINS as f64;
    for i in 0..SAMPLES {
        let v = q.quantile((i as f64 + 0.5) / SAMPLES as f64).unwrap_or(min).clamp(min, max);
        let bin = if width > 0.0 { (((v - min) / width) as usize).min(BINS - 1) } else { 0 };
        counts[bin] += n as f64 / SAMPLES as f64;
    }
    let bars: Vec<(String, f64)> = if width > 0.0 {
        counts.iter().enumerate().map(|(i, c)| (format!("{} – {}", num(min + width * i as f64), num(min + width * (i + 1) as f64)), *c)).collect()
    } else {
        vec![(num(min), n as f64)]
    };
    Some(bars_svg(&bars, &num(min), &num(max)))
}

fn length_histogram(f: &FieldProfile) -> String {
    let l = &f.lengths;
    let first = l.buckets.iter().position(|c| *c > 0).unwrap_or(0);
    let last = l.buckets.iter().rposition(|c| *c > 0).unwrap_or(0);
    let label = |i: usize| -> String {
        let lo = if i == 0 { 0 } else { LENGTH_BOUNDS.get(i - 1).map_or(0, |b| b + 1) };
        match LENGTH_BOUNDS.get(i) {
            Some(hi) if *hi == lo => format!("{lo}"),
            Some(hi) => format!("{lo}–{hi}"),
            None => format!("> {}", LENGTH_BOUNDS.last().copied().unwrap_or(0)),
        }
    };
    let bars: Vec<(String, f64)> = (first..=last).map(|i| (format!("length {}", label(i)), l.buckets.get(i).copied().unwrap_or(0) as f64)).collect();
    bars_svg(&bars, &label(first), &label(last))
}

fn top_chart(s: &FieldSummary, rows: u64) -> String {
    let row_h = 18.0;
    let (w, label_w) = (360.0, 150.0);
    let max = s.top.iter().map(|c| c.count).max().unwrap_or(1).max(1) as f64;
    let mut svg = format!("<svg width=\"{w}\" height=\"{}\" role=\"img\">", row_h * s.top.len() as f64 + 2.0);
    for (i, c) in s.top.iter().enumerate() {
        let y = i as f64 * row_h;
        let shown: String = if c.value.chars().count() > 22 { format!("{}…", c.value.chars().take(21).collect::<String>()) } else { c.value.clone() };
        let bw = (w - label_w - 80.0) * c.count as f64 / max;
        let _ = write!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\"><title>{}</title>{}</text><rect x=\"{label_w}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"#16a085\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{} ({})</text>",
            label_w - 6.0,
            y + 13.0,
            escape(&c.value),
            escape(&shown),
            y + 3.0,
            row_h - 5.0,
            label_w + bw + 4.0,
            y + 13.0,
            c.count,
            pct(c.count, rows)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One report in the index page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// File name without extension (`.html` and `.json` exist beside each other).
    pub stem: String,
    /// Window start, RFC 3339, as shown.
    pub window_start: String,
    /// Window end, RFC 3339.
    pub window_end: String,
    /// Records in the window, when known.
    pub records: Option<u64>,
    /// Alerts of the window, when known.
    pub alerts: Option<usize>,
}

impl IndexEntry {
    /// The entry of `profile` written under `stem`.
    pub fn of(stem: &str, profile: &WindowProfile) -> IndexEntry {
        IndexEntry {
            stem: stem.to_owned(),
            window_start: profile.window_start.clone(),
            window_end: profile.window_end.clone(),
            records: Some(profile.overview.records),
            alerts: Some(profile.alerts.len()),
        }
    }
}

/// An index page listing reports, in the order given (newest first reads best).
pub fn render_index(title: &str, entries: &[IndexEntry]) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1>{}</h1><p>{} reports</p></header><main><section class=\"card\"><table>\
         <tr><th>Window start</th><th>Window end</th><th>Records</th><th>Alerts</th><th>JSON</th></tr>",
        escape(title),
        escape(title),
        entries.len()
    );
    let known = |n: Option<u64>| n.map_or_else(|| "–".to_owned(), |n| n.to_string());
    for e in entries {
        let stem = escape(&e.stem);
        let _ = write!(
            h,
            "<tr><td><a href=\"{stem}.html\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><a href=\"{stem}.json\">json</a></td></tr>",
            escape(&e.window_start),
            escape(&e.window_end),
            known(e.records),
            known(e.alerts.map(|a| a as u64)),
        );
    }
    h.push_str("</table></section></main></body></html>\n");
    h
}

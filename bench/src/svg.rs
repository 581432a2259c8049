//! Small standalone SVG charts for the benchmark results: horizontal bars and lines on a
//! logarithmic y axis. No dependencies; the files render in any browser.

use std::fmt::Write as _;

/// Colours of the series, in order (colour-blind friendly).
pub const PALETTE: &[&str] = &["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#882255", "#44AA99"];

/// One bar of a bar chart.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Shown left of the bar.
    pub label: String,
    /// Length of the bar.
    pub value: f64,
    /// Shown right of the bar (e.g. the value and its unit).
    pub note: String,
    /// Index into [`PALETTE`].
    pub colour: usize,
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// (x, y) points; y must be positive (log axis), others are skipped.
    pub points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`].
    pub colour: usize,
    /// Dashed rather than solid.
    pub dashed: bool,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn header(width: f64, height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        width / 2.0,
        escape(title)
    )
}

/// Horizontal bars, one row each, scaled to the largest value; `subtitle` under the title.
pub fn bars(title: &str, subtitle: &str, axis: &str, bars: &[Bar]) -> String {
    let (left, right, top, row) = (300.0, 190.0, 56.0, 26.0);
    let plot = 460.0;
    let width = left + plot + right;
    let height = top + row * bars.len() as f64 + 46.0;
    let max = bars.iter().map(|b| b.value).filter(|v| v.is_finite()).fold(0.0, f64::max).max(1e-9);
    let mut out = header(width, height, title);
    let _ = writeln!(out, "<text x=\"{}\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">{}</text>", width / 2.0, escape(subtitle));
    let step = nice_step(max / 5.0);
    let mut tick = 0.0;
    while tick <= max * 1.0001 {
        let x = left + plot * tick / max;
        let _ = writeln!(out, "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>", top + row * bars.len() as f64);
        let _ = writeln!(out, "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>", top + row * bars.len() as f64 + 14.0, human(tick));
        tick += step;
    }
    for (i, bar) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let w = if bar.value.is_finite() { plot * bar.value / max } else { 0.0 };
        let colour = PALETTE[bar.colour % PALETTE.len()];
        let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", left - 8.0, y + row * 0.62, escape(&bar.label));
        let _ = writeln!(out, "<rect x=\"{left}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>", y + 3.0, row - 6.0);
        let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", left + w + 6.0, y + row * 0.62, escape(&bar.note));
    }
    let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", left + plot / 2.0, height - 10.0, escape(axis));
    out.push_str("</svg>\n");
    out
}

/// Lines over a linear x axis and a logarithmic y axis, with a legend, and optionally a
/// horizontal reference line (`goal`: y and its label).
pub fn lines_log_y(title: &str, subtitle: &str, x_label: &str, y_label: &str, series: &[Series], goal: Option<(f64, &str)>) -> String {
    let (left, right, top, bottom) = (70.0, 300.0, 56.0, 50.0);
    let (plot_w, plot_h) = (520.0, 360.0);
    let width = left + plot_w + right;
    let height = top + plot_h + bottom;
    let points = || series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0);
    let x_max = points().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.05;
    let mut y_lo = points().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut y_hi = points().map(|p| p.1).fold(0.0, f64::max);
    if let Some((g, _)) = goal {
        y_lo = y_lo.min(g);
        y_hi = y_hi.max(g);
    }
    if !y_lo.is_finite() {
        (y_lo, y_hi) = (1.0, 10.0);
    }
    let (e_lo, e_hi) = (y_lo.log10().floor(), y_hi.log10().ceil().max(y_lo.log10().floor() + 1.0));
    let px = |x: f64| left + plot_w * x / x_max;
    let py = |y: f64| top + plot_h * (1.0 - (y.log10() - e_lo) / (e_hi - e_lo));
    let mut out = header(width, height, title);
    let _ = writeln!(out, "<text x=\"{}\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">{}</text>", left + plot_w / 2.0, escape(subtitle));
    let mut e = e_lo;
    while e <= e_hi + 1e-9 {
        let y = py(10f64.powf(e));
        let _ = writeln!(out, "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>", left + plot_w);
        let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>", left - 6.0, y + 4.0, human(10f64.powf(e)));
        e += 1.0;
    }
    let step = nice_step(x_max / 5.0);
    let mut tick = 0.0;
    while tick <= x_max {
        let x = px(tick);
        let _ = writeln!(out, "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>", top + plot_h);
        let _ = writeln!(out, "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>", top + plot_h + 16.0, human(tick));
        tick += step;
    }
    let _ = writeln!(out, "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#999\"/>");
    let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", left + plot_w / 2.0, height - 12.0, escape(x_label));
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">{}</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    if let Some((g, label)) = goal {
        let y = py(g);
        let _ = writeln!(out, "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#c00\" stroke-dasharray=\"2,3\"/>", left + plot_w);
        let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#c00\">{}</text>", left + plot_w - 4.0, y - 4.0, escape(label));
    }
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[s.colour % PALETTE.len()];
        let dash = if s.dashed { " stroke-dasharray=\"6,4\"" } else { "" };
        let pts: Vec<String> =
            s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0).map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        if !pts.is_empty() {
            let _ = writeln!(out, "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>", pts.join(" "));
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap_or_default();
                let _ = writeln!(out, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>");
            }
        }
        let ly = top + 10.0 + 18.0 * i as f64;
        let lx = left + plot_w + 16.0;
        let _ = writeln!(out, "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>", lx + 26.0);
        let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", lx + 32.0, ly + 4.0, escape(&s.name));
    }
    out.push_str("</svg>\n");
    out
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

/// 250000 → "250k", 0.1 → "0.1".
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed() {
        let b = bars("t", "s", "records/s", &[Bar { label: "a<b".into(), value: 3.0, note: "3".into(), colour: 0 }]);
        assert!(b.starts_with("<svg") && b.ends_with("</svg>\n") && b.contains("a&lt;b"));
        let l = lines_log_y("t", "s", "x", "y", &[Series { name: "p99".into(), points: vec![(1.0, 2.0), (2.0, 50.0)], colour: 1, dashed: true }], Some((20.0, "goal")));
        assert!(l.contains("polyline") && l.contains("goal"));
        assert_eq!(human(250_000.0), "250k");
        assert_eq!(nice_step(37.0), 50.0);
    }
}

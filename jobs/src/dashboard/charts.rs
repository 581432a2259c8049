//! The page's charts: SVG drawn on the server with plotters (which escapes every text
//! it writes, so names from the data stay text).

use plotters::prelude::*;

/// Width and height of a chart (px).
const SIZE: (u32, u32) = (620, 230);

/// One line of a chart: its name and its points (minutes relative to now, value).
#[derive(Debug)]
pub(super) struct Series {
    pub(super) name: String,
    pub(super) points: Vec<(f64, f64)>,
}

/// The colour of the `i`-th series (also used by the HTML legends).
pub(super) fn colour(i: usize) -> RGBColor {
    let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
    RGBColor(r, g, b)
}

/// `#rrggbb` of the `i`-th series.
pub(super) fn colour_hex(i: usize) -> String {
    let RGBColor(r, g, b) = colour(i);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// A line chart of `series` over the last `minutes`, as an `<svg>` element; a short
/// note instead while there is nothing to draw.
pub(super) fn line_chart(y_desc: &str, minutes: f64, series: &[Series]) -> String {
    if series.iter().all(|s| s.points.is_empty()) {
        return "<p class=\"empty\">no closed window yet</p>".to_owned();
    }
    let mut svg = String::new();
    let drawn = draw_lines(&mut svg, y_desc, minutes, series);
    match drawn {
        Ok(()) => svg,
        Err(error) => {
            tracing::debug!(%error, "a dashboard chart failed");
            "<p class=\"empty\">chart unavailable</p>".to_owned()
        }
    }
}

fn draw_lines(svg: &mut String, y_desc: &str, minutes: f64, series: &[Series]) -> Result<(), Box<dyn std::error::Error>> {
    let top = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0_f64, f64::max);
    let top = if top <= 0.0 { 1.0 } else { top * 1.1 };
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(-minutes..0.0, 0.0..top)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .x_desc("minutes ago")
        .y_desc(y_desc)
        .x_labels(7)
        .x_label_formatter(&|x| minutes_label(*x))
        .y_label_formatter(&|y| short_number(*y))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let style = colour(i).stroke_width(2);
        chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?;
    }
    root.present()?;
    Ok(())
}

/// A strip per alert rule: its state over the last `minutes` (grey inactive or resolved,
/// amber pending, red firing). `spans`: per rule, (from, to, state) in minutes.
pub(super) fn state_strips(minutes: f64, spans: &[Vec<(f64, f64, &'static str)>]) -> String {
    if spans.is_empty() {
        return "<p class=\"empty\">no alert rule</p>".to_owned();
    }
    let mut svg = String::new();
    match draw_strips(&mut svg, minutes, spans) {
        Ok(()) => svg,
        Err(error) => {
            tracing::debug!(%error, "the alert chart failed");
            "<p class=\"empty\">chart unavailable</p>".to_owned()
        }
    }
}

fn draw_strips(svg: &mut String, minutes: f64, spans: &[Vec<(f64, f64, &'static str)>]) -> Result<(), Box<dyn std::error::Error>> {
    let rows = spans.len();
    let height = 40 + 22 * u32::try_from(rows).unwrap_or(20).min(20);
    let root = SVGBackend::with_string(svg, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root).margin(8).x_label_area_size(24).y_label_area_size(56).build_cartesian_2d(-minutes..0.0, 0.0..rows as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .light_line_style(RGBColor(238, 238, 238))
        .x_labels(7)
        .x_label_formatter(&|x| minutes_label(*x))
        .draw()?;
    for (row, strip) in spans.iter().enumerate() {
        let y = (rows - 1 - row) as f64;
        chart.draw_series(strip.iter().map(|(from, to, state)| {
            let colour = match *state {
                "firing" => RGBColor(214, 39, 40),
                "pending" => RGBColor(255, 165, 0),
                _ => RGBColor(200, 200, 200),
            };
            Rectangle::new([(*from, y + 0.15), (*to, y + 0.85)], colour.filled())
        }))?;
    }
    root.present()?;
    Ok(())
}

/// Minutes ago, as an axis label: `2`, `1.5`, `0`.
fn minutes_label(x: f64) -> String {
    // Never `-0` at the right edge.
    let ago = if x > -1e-9 { 0.0 } else { -x };
    if (ago - ago.round()).abs() < 0.05 {
        format!("{ago:.0}")
    } else {
        format!("{ago:.1}")
    }
}

/// `1234567` as `1.2M`, `5300` as `5.3k`.
pub(super) fn short_number(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if abs >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if abs >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if abs >= 10.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

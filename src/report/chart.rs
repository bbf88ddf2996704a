//! Charts drawn with plotters, text from the DejaVu Sans file shipped in this
//! directory so that PNGs are identical on every machine.

use super::{Metric, ReportData, RunRow};
use crate::record::write_atomic;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Okabe–Ito colour-blind-safe palette (black last).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(86, 180, 233),
    RGBColor(204, 121, 167),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// Colour of the i-th scheme of a report; every chart uses this order.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font(FAMILY, style, FONT)
                .unwrap_or_else(|_| panic!("the shipped font is a valid TrueType file"));
        }
    });
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// A chart that can be drawn on any plotters backend.
trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>;
}

/// Writes `<name>.svg` and `<name>.png` of `chart`.
fn save_chart(
    out_dir: &Path,
    name: &str,
    size: (u32, u32),
    chart: &impl Chart,
) -> anyhow::Result<Vec<PathBuf>> {
    ensure_font();
    let svg_path = out_dir.join(format!("{name}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        chart.draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    write_atomic(&svg_path, svg.as_bytes())?;
    let png_path = out_dir.join(format!("{name}.png"));
    let tmp = out_dir.join(format!(".{name}.{}.tmp.png", std::process::id()));
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        chart.draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    std::fs::rename(&tmp, &png_path)?;
    Ok(vec![svg_path, png_path])
}

/// Mean and sample std of `metric` per evaluated length over the ok runs given.
fn curve(data: &ReportData, runs: &[&RunRow], metric: Metric) -> Vec<(f64, f64, f64)> {
    let mut lengths: Vec<u64> = data
        .eval
        .iter()
        .filter(|e| runs.iter().any(|r| r.ok && r.run_id == e.run_id))
        .map(|e| e.length)
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
        .into_iter()
        .map(|len| {
            let values: Vec<f64> = data
                .eval
                .iter()
                .filter(|e| e.length == len && runs.iter().any(|r| r.ok && r.run_id == e.run_id))
                .map(|e| metric.of(e))
                .collect();
            let cell = super::Cell::from_values(&values, values.len());
            (
                len as f64,
                cell.mean.unwrap_or(f64::NAN),
                cell.std.unwrap_or(0.0),
            )
        })
        .collect()
}

/// Exact match (perplexity on a log axis for language modelling) versus
/// length: one panel per task, one line per scheme with a ± std band, the
/// training range shaded.
pub fn accuracy_vs_length(data: &ReportData, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let tasks = data.tasks();
    let (rows, cols) = panel_grid(tasks.len());
    let width = 480 * cols as u32;
    let legend = legend_rows(&data.schemes(), width).len() as u32;
    save_chart(
        out_dir,
        "accuracy_vs_length",
        (width, 410 * rows as u32 + LEGEND_ROW * legend),
        &AccuracyChart(data),
    )
}

struct AccuracyChart<'a>(&'a ReportData);

impl Chart for AccuracyChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        draw_accuracy(root, self.0)
    }
}

/// One scheme's line in a panel: its palette index and (length, mean, std) points.
type Line = (usize, Vec<(f64, f64, f64)>);

fn draw_accuracy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let schemes = data.schemes();
    let tasks = data.tasks();
    let (width, height) = root.dim_in_pixel();
    let rows = legend_rows(&schemes, width);
    let (plots, legend) = root.split_vertically(height - LEGEND_ROW * rows.len() as u32);
    let panels = plots.split_evenly(panel_grid(tasks.len()));
    for (panel, task) in panels.iter().zip(&tasks) {
        let task_runs: Vec<&RunRow> = data.runs.iter().filter(|r| &r.task == task).collect();
        let first = task_runs[0];
        let lengths: Vec<f64> = data
            .eval
            .iter()
            .filter(|e| task_runs.iter().any(|r| r.run_id == e.run_id))
            .map(|e| e.length as f64)
            .chain([first.train_min as f64, first.train_max as f64])
            .collect();
        let lo = lengths.iter().cloned().fold(f64::INFINITY, f64::min) - 1.0;
        let hi = lengths.iter().cloned().fold(f64::NEG_INFINITY, f64::max) + 1.0;
        let lines: Vec<Line> = schemes
            .iter()
            .enumerate()
            .map(|(i, scheme)| {
                let runs: Vec<&RunRow> = task_runs
                    .iter()
                    .copied()
                    .filter(|r| &r.scheme == scheme)
                    .collect();
                (i, curve(data, &runs, first.metric))
            })
            .filter(|(_, points)| !points.is_empty())
            .collect();
        let mut builder = ChartBuilder::on(panel);
        builder
            .caption(task, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(52);
        match first.metric {
            Metric::ExactMatch => {
                let chart = builder
                    .build_cartesian_2d(lo..hi, 0f64..1.05)
                    .map_err(plot_err)?;
                draw_panel(chart, first, &lines, (0.0, 1.0), 1.03)?;
            }
            Metric::Perplexity => {
                let means = lines.iter().flat_map(|(_, p)| p.iter().map(|&(_, m, _)| m));
                let tops = lines
                    .iter()
                    .flat_map(|(_, p)| p.iter().map(|&(_, m, s)| m + s));
                let bottom = means.fold(f64::INFINITY, f64::min).max(1.0) / 1.1;
                let top = tops.fold(bottom * 1.5, f64::max) * 1.1;
                let y = (bottom..top)
                    .log_scale()
                    .with_key_points(log_ticks(bottom, top));
                let chart = builder.build_cartesian_2d(lo..hi, y).map_err(plot_err)?;
                let label_y = bottom * (top / bottom).powf(0.96);
                draw_panel(chart, first, &lines, (bottom, top), label_y)?;
            }
        }
    }
    draw_legend(&legend, &rows)
}

/// Axes, the shaded training range and one line per scheme; bands are
/// clipped to `limits`, the "train" label drawn at height `label_y`.
fn draw_panel<DB: DrawingBackend, Y>(
    mut chart: ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    task: &RunRow,
    lines: &[Line],
    limits: (f64, f64),
    label_y: f64,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let y_range = chart.y_range();
    chart
        .configure_mesh()
        .x_desc(format!("length ({})", task.length_unit))
        .y_desc(task.metric.label())
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|y| number_2(*y))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(230, 230, 230))
        .draw()
        .map_err(plot_err)?;
    let shade = RGBColor(200, 200, 200).mix(0.35);
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [
                (task.train_min as f64, y_range.start),
                (task.train_max as f64, y_range.end),
            ],
            shade.filled(),
        )))
        .map_err(plot_err)?;
    chart
        .draw_series(std::iter::once(Text::new(
            "train",
            (task.train_min as f64 + 0.2, label_y),
            (FAMILY, 14).into_font().color(&RGBColor(90, 90, 90)),
        )))
        .map_err(plot_err)?;
    let (floor, ceiling) = limits;
    for (i, points) in lines {
        let c = colour(*i);
        let mut band: Vec<(f64, f64)> = points
            .iter()
            .map(|&(x, m, s)| (x, (m + s).min(ceiling)))
            .collect();
        band.extend(
            points
                .iter()
                .rev()
                .map(|&(x, m, s)| (x, (m - s).max(floor))),
        );
        chart
            .draw_series(std::iter::once(Polygon::new(band, c.mix(0.18).filled())))
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(x, m, _)| (x, m)),
                c.stroke_width(2),
            ))
            .map_err(plot_err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, m, _)| Circle::new((x, m), 3, c.filled())),
            )
            .map_err(plot_err)?;
    }
    Ok(())
}

/// (rows, columns) of panels: at most three per row, so many tasks stay legible.
fn panel_grid(panels: usize) -> (usize, usize) {
    let cols = panels.clamp(1, 3);
    (panels.max(1).div_ceil(cols), cols)
}

/// Axis numbers: integers without a decimal point.
fn number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Tick values for a log axis over [bottom, top]: 1-2-5 steps per decade,
/// refined to 1-1.5-2-3-4-5-6-8 when the range is too narrow for four
/// ticks, and evenly spaced round numbers when even that gives fewer than three.
fn log_ticks(bottom: f64, top: f64) -> Vec<f64> {
    let decades = bottom.log10().floor() as i32..=top.log10().ceil() as i32;
    let within = |steps: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|d| steps.iter().map(move |s| s * 10f64.powi(d)))
            .filter(|v| (bottom..=top).contains(v))
            .collect()
    };
    let coarse = within(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 4 {
        return coarse;
    }
    let fine = within(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]);
    if fine.len() >= 3 {
        return fine;
    }
    // Narrow enough to be nearly linear: a 1-2-5 step giving about five ticks.
    let rough = (top - bottom) / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * magnitude);
    let first = (bottom / step).ceil() as i64;
    let last = (top / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Metric axis numbers: two decimals below 10 (accuracies, small
/// perplexities), integers above.
fn number_2(y: f64) -> String {
    if y.abs() >= 10.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.2}")
    }
}

const LEGEND_ROW: u32 = 28;

/// Legend entries (index, label, x offset) packed into rows of `width` pixels.
fn legend_rows(labels: &[String], width: u32) -> Vec<Vec<(usize, String, i32)>> {
    let mut rows: Vec<Vec<(usize, String, i32)>> = vec![Vec::new()];
    let mut x = 20;
    for (i, label) in labels.iter().enumerate() {
        let w = 56 + 9 * label.chars().count() as i32;
        if x + w > width as i32 && !rows.last().is_some_and(Vec::is_empty) {
            rows.push(Vec::new());
            x = 20;
        }
        rows.last_mut().expect("a row").push((i, label.clone(), x));
        x += w;
    }
    rows
}

/// The legend below the panels, so it never covers data.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[Vec<(usize, String, i32)>],
) -> anyhow::Result<()> {
    for (r, row) in rows.iter().enumerate() {
        let y = 14 + LEGEND_ROW as i32 * r as i32;
        for (i, label, x) in row {
            let c = colour(*i);
            area.draw(&PathElement::new(
                vec![(*x, y), (x + 28, y)],
                c.stroke_width(3),
            ))
            .map_err(plot_err)?;
            area.draw(&Circle::new((x + 14, y), 3, c.filled()))
                .map_err(plot_err)?;
            area.draw(&Text::new(
                label.clone(),
                (x + 36, y - 9),
                (FAMILY, 16).into_font(),
            ))
            .map_err(plot_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_cover_narrow_and_wide_ranges() {
        assert_eq!(log_ticks(9.0, 21.0), [10.0, 15.0, 20.0]);
        assert_eq!(log_ticks(10.8, 17.8), [12.0, 14.0, 16.0]);
        assert_eq!(
            log_ticks(2.5, 1200.0),
            [5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
    }
}

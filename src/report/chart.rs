//! Charts drawn with plotters, text from the DejaVu Sans file shipped in this
//! directory so that PNGs are identical on every machine.

use super::{Metric, ReportData, RunRow, Scale, StructureRow};
use crate::store::atomic::write_atomic;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
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
fn curve(data: &ReportData, runs: &[&RunRow], metric: Metric) -> Vec<Point> {
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
            mean_std(len as f64, &values)
        })
        .collect()
}

/// Exact match (perplexity on a log axis for language modelling) versus
/// length: one panel per task, one line per scheme with a ± std band, the
/// training range shaded.
pub fn accuracy_vs_length(data: &ReportData, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    save_chart(
        out_dir,
        "accuracy_vs_length",
        task_grid_size(data),
        &AccuracyChart(data),
    )
}

/// The size of a chart with one 480×410 panel per task and the legend below.
fn task_grid_size(data: &ReportData) -> (u32, u32) {
    let (rows, cols) = panel_grid(data.tasks().len());
    let width = 480 * cols as u32;
    let legend = legend_rows(&data.schemes(), width).len() as u32;
    (width, 410 * rows as u32 + LEGEND_ROW * legend)
}

/// Legend entries, packed in rows (see [`legend_rows`]).
type LegendRows = Vec<Vec<(usize, String, i32)>>;

/// One panel per task, the legend area below them and its rows.
type TaskGrid<DB> = (
    Vec<DrawingArea<DB, Shift>>,
    DrawingArea<DB, Shift>,
    LegendRows,
);

/// The chart builder of one task's panel: its caption and axis areas.
fn task_panel<'a, DB: DrawingBackend>(
    panel: &'a DrawingArea<DB, Shift>,
    task: &str,
) -> ChartBuilder<'a, 'static, DB> {
    let mut builder = ChartBuilder::on(panel);
    builder
        .caption(task, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(52);
    builder
}

/// A white chart split into one panel per task and the legend area below.
fn task_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
) -> anyhow::Result<TaskGrid<DB>> {
    root.fill(&WHITE).map_err(plot_err)?;
    let (width, height) = root.dim_in_pixel();
    let rows = legend_rows(&data.schemes(), width);
    let (plots, legend) = root.split_vertically(height - LEGEND_ROW * rows.len() as u32);
    Ok((
        plots.split_evenly(panel_grid(data.tasks().len())),
        legend,
        rows,
    ))
}

struct AccuracyChart<'a>(&'a ReportData);

impl Chart for AccuracyChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        draw_accuracy(root, self.0)
    }
}

/// A point of a line: x, the value, and the band's low and high ends.
type Point = (f64, f64, f64, f64);

/// One scheme's line in a panel: its palette index and points.
type Line = (usize, Vec<Point>);

fn draw_accuracy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
) -> anyhow::Result<()> {
    let (schemes, tasks) = (data.schemes(), data.tasks());
    let (panels, legend, rows) = task_grid(root, data)?;
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
        let mut builder = task_panel(panel, task);
        let x_desc = format!("length ({})", first.length_unit);
        let axes = (x_desc.as_str(), first.metric.label());
        let shade = |label_y: f64| Shade {
            from: first.train_min as f64,
            to: first.train_max as f64,
            label_y,
        };
        if first.metric == Metric::Perplexity {
            let (bottom, top) = log_range(&lines);
            let y = (bottom..top)
                .log_scale()
                .with_key_points(log_ticks(bottom, top));
            let chart = builder.build_cartesian_2d(lo..hi, y).map_err(plot_err)?;
            let label_y = bottom * (top / bottom).powf(0.96);
            draw_panel(chart, axes, Some(shade(label_y)), &lines, (bottom, top))?;
        } else {
            let chart = builder
                .build_cartesian_2d(lo..hi, 0f64..1.05)
                .map_err(plot_err)?;
            draw_panel(chart, axes, Some(shade(1.03)), &lines, (0.0, 1.0))?;
        }
    }
    draw_legend(&legend, &rows)
}

/// The training range of a panel: shaded, labelled "train" at height `label_y`.
struct Shade {
    from: f64,
    to: f64,
    label_y: f64,
}

/// Axes, an optional shaded training range and one line per scheme; bands
/// are clipped to `limits`.
fn draw_panel<DB: DrawingBackend, Y>(
    mut chart: ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    (x_desc, y_desc): (&str, &str),
    shade: Option<Shade>,
    lines: &[Line],
    limits: (f64, f64),
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let y_range = chart.y_range();
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|y| tick_label(*y))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(230, 230, 230))
        .draw()
        .map_err(plot_err)?;
    if let Some(shade) = shade {
        let grey = RGBColor(200, 200, 200).mix(0.35);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(shade.from, y_range.start), (shade.to, y_range.end)],
                grey.filled(),
            )))
            .map_err(plot_err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                "train",
                (shade.from + 0.2, shade.label_y),
                (FAMILY, 14).into_font().color(&RGBColor(90, 90, 90)),
            )))
            .map_err(plot_err)?;
    }
    let (floor, ceiling) = limits;
    for (i, points) in lines {
        let c = colour(*i);
        let mut band: Vec<(f64, f64)> = points
            .iter()
            .map(|&(x, _, _, hi)| (x, hi.min(ceiling)))
            .collect();
        band.extend(points.iter().rev().map(|&(x, _, lo, _)| (x, lo.max(floor))));
        chart
            .draw_series(std::iter::once(Polygon::new(band, c.mix(0.18).filled())))
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(x, m, _, _)| (x, m)),
                c.stroke_width(2),
            ))
            .map_err(plot_err)?;
        if points.len() <= 40 {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, m, _, _)| Circle::new((x, m), 3, c.filled())),
                )
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

/// The mean of `values` at x with a band of ± one sample std (none for a single value).
fn mean_std(x: f64, values: &[f64]) -> Point {
    match values.len() {
        0 => (x, f64::NAN, f64::NAN, f64::NAN),
        1 => (x, values[0], values[0], values[0]),
        _ => {
            let (m, s) = (
                super::stats::mean(values),
                super::stats::variance(values).sqrt(),
            );
            (x, m, m - s, m + s)
        }
    }
}

/// The mean of `values` at x with a min–max band (for log axes, where a
/// ± std band can reach below zero).
fn mean_min_max(x: f64, values: &[f64]) -> Point {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    (x, super::stats::mean(values), lo, hi)
}

/// A log axis over the lines' means and bands, with round ticks.
fn log_range(lines: &[Line]) -> (f64, f64) {
    let lows = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, m, lo, _)| if lo > 0.0 { lo } else { m }));
    let tops = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, _, _, hi)| hi));
    let bottom = lows
        .filter(|m| *m > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(1e300)
        / 1.1;
    let bottom = if bottom.is_finite() && bottom > 0.0 {
        bottom
    } else {
        1e-3
    };
    let top = tops.fold(bottom * 1.5, f64::max) * 1.1;
    (bottom, top)
}

/// Training loss versus step: one panel per task, one line per scheme (mean
/// over its ok runs, ± std band).
pub fn training_curves(
    data: &ReportData,
    scale: Scale,
    out_dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    save_chart(
        out_dir,
        "training_curves",
        task_grid_size(data),
        &CurvesChart(data, scale),
    )
}

struct CurvesChart<'a>(&'a ReportData, Scale);

impl Chart for CurvesChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let (data, scale) = (self.0, self.1);
        let (schemes, tasks) = (data.schemes(), data.tasks());
        let (panels, legend, rows) = task_grid(root, data)?;
        for (panel, task) in panels.iter().zip(&tasks) {
            let lines: Vec<Line> = schemes
                .iter()
                .enumerate()
                .map(|(i, scheme)| {
                    let ids: Vec<&str> = data
                        .runs
                        .iter()
                        .filter(|r| r.ok && &r.task == task && &r.scheme == scheme)
                        .map(|r| r.run_id.as_str())
                        .collect();
                    let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
                    for c in &data.curves {
                        if c.metric == "train_loss" && ids.contains(&c.run_id.as_str()) {
                            by_step.entry(c.step).or_default().push(c.value);
                        }
                    }
                    let points = by_step
                        .iter()
                        .map(|(&step, v)| match scale {
                            Scale::Log => mean_min_max(step as f64, v),
                            Scale::Linear => mean_std(step as f64, v),
                        })
                        .collect();
                    (i, points)
                })
                .filter(|(_, p): &Line| !p.is_empty())
                .collect();
            let steps = lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
            let hi = steps.fold(1.0, f64::max);
            let mut builder = task_panel(panel, task);
            let axes = ("step", "training loss (nats per token)");
            match scale {
                Scale::Log => {
                    let (bottom, top) = log_range(&lines);
                    let y = (bottom..top)
                        .log_scale()
                        .with_key_points(log_ticks(bottom, top));
                    let chart = builder.build_cartesian_2d(0.0..hi, y).map_err(plot_err)?;
                    draw_panel(chart, axes, None, &lines, (bottom, top))?;
                }
                Scale::Linear => {
                    let (_, top) = log_range(&lines);
                    let chart = builder
                        .build_cartesian_2d(0.0..hi, 0.0..top)
                        .map_err(plot_err)?;
                    draw_panel(chart, axes, None, &lines, (0.0, top))?;
                }
            }
        }
        draw_legend(&legend, &rows)
    }
}

/// Training tokens/s per scheme: mean over its ok runs, error bars ± std.
pub fn cost(data: &ReportData, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let width = (140 + 90 * data.schemes().len() as u32).max(480);
    let legend = legend_rows(&data.schemes(), width).len() as u32;
    save_chart(
        out_dir,
        "cost",
        (width, 380 + LEGEND_ROW * legend),
        &CostChart(data),
    )
}

struct CostChart<'a>(&'a ReportData);

impl Chart for CostChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let data = self.0;
        root.fill(&WHITE).map_err(plot_err)?;
        let schemes = data.schemes();
        let (width, height) = root.dim_in_pixel();
        let rows = legend_rows(&schemes, width);
        let (plot, legend) = root.split_vertically(height - LEGEND_ROW * rows.len() as u32);
        let bars: Vec<Point> = schemes
            .iter()
            .enumerate()
            .map(|(i, scheme)| {
                let v: Vec<f64> = data
                    .runs
                    .iter()
                    .filter(|r| r.ok && &r.scheme == scheme)
                    .map(|r| r.tokens_per_s)
                    .collect();
                mean_std(i as f64, &v)
            })
            .collect();
        let top = bars
            .iter()
            .map(|&(_, m, _, hi)| if m.is_finite() { hi } else { 0.0 })
            .fold(1.0, f64::max)
            * 1.15;
        let n = schemes.len() as f64;
        let mut chart = ChartBuilder::on(&plot)
            .caption("training throughput", (FAMILY, 22))
            .margin(12)
            .x_label_area_size(20)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..n - 0.5, 0.0..top)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc("training tokens/s (one thread per run)")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(230, 230, 230))
            .draw()
            .map_err(plot_err)?;
        for &(x, m, lo, hi) in bars.iter().filter(|b| b.1.is_finite()) {
            let c = colour(x as usize);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, m)],
                    c.filled(),
                )))
                .map_err(plot_err)?;
            if hi > lo {
                let lo = lo.max(0.0);
                let whisker = [
                    vec![(x, lo), (x, hi)],
                    vec![(x - 0.08, lo), (x + 0.08, lo)],
                    vec![(x - 0.08, hi), (x + 0.08, hi)],
                ];
                chart
                    .draw_series(
                        whisker
                            .into_iter()
                            .map(|p| PathElement::new(p, BLACK.stroke_width(2))),
                    )
                    .map_err(plot_err)?;
            }
        }
        draw_legend(&legend, &rows)
    }
}

/// One panel per scheme, from its first ok run with a position structure:
/// a heatmap of cosine similarities or of the score bias (first and last
/// head), or q·k versus offset for rotary schemes.
pub fn position_structure(data: &ReportData, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let schemes = data.schemes();
    let (rows, cols) = panel_grid(schemes.len());
    save_chart(
        out_dir,
        "position_structure",
        (480 * cols as u32, 400 * rows as u32),
        &StructureChart(data),
    )
}

struct StructureChart<'a>(&'a ReportData);

/// The structure rows of `scheme`'s first ok run that has any.
fn structure_of<'a>(data: &'a ReportData, scheme: &str) -> Vec<&'a StructureRow> {
    data.runs
        .iter()
        .filter(|r| r.ok && r.scheme == scheme)
        .map(|r| {
            data.structure
                .iter()
                .filter(|s| s.run_id == r.run_id)
                .collect::<Vec<_>>()
        })
        .find(|rows| !rows.is_empty())
        .unwrap_or_default()
}

impl Chart for StructureChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let data = self.0;
        root.fill(&WHITE).map_err(plot_err)?;
        let schemes = data.schemes();
        let panels = root.split_evenly(panel_grid(schemes.len()));
        for (index, (panel, scheme)) in panels.iter().zip(&schemes).enumerate() {
            let rows = structure_of(data, scheme);
            let Some(first) = rows.first() else {
                let (w, h) = panel.dim_in_pixel();
                panel
                    .draw(&Text::new(
                        format!("{scheme}: no static position structure"),
                        (20, h as i32 / 2),
                        (FAMILY, 16).into_font(),
                    ))
                    .map_err(plot_err)?;
                let _ = w;
                continue;
            };
            let mut names: Vec<&str> = Vec::new();
            for r in &rows {
                if !names.contains(&r.panel.as_str()) {
                    names.push(&r.panel);
                }
            }
            let kind = first.kind.as_str();
            let (title, sub) = panel.split_vertically(34);
            title
                .draw(&Text::new(
                    format!("{scheme}: {}", describe_kind(kind)),
                    (12, 8),
                    (FAMILY, 18).into_font(),
                ))
                .map_err(plot_err)?;
            if kind == "rotary" {
                let lines: Vec<Line> = names
                    .iter()
                    .enumerate()
                    .map(|(k, name)| {
                        let points = rows
                            .iter()
                            .filter(|r| r.panel == *name)
                            .filter_map(|r| r.value.map(|v| (r.i as f64, v, v, v)))
                            .collect();
                        // Head 0 in black, the last head in the scheme's
                        // colour (blue if that is black too).
                        let black = PALETTE.len() - 1;
                        let last = if index % PALETTE.len() == black {
                            0
                        } else {
                            index
                        };
                        (if k == 0 { black } else { last }, points)
                    })
                    .collect();
                let n = rows.iter().map(|r| r.i).max().unwrap_or(1) as f64;
                let mut builder = ChartBuilder::on(&sub);
                builder
                    .margin(12)
                    .x_label_area_size(42)
                    .y_label_area_size(52)
                    .caption(
                        format!("black: {}; coloured: {}", names[0], names[names.len() - 1]),
                        (FAMILY, 14),
                    );
                let chart = builder
                    .build_cartesian_2d(0.0..n, -1.05..1.05)
                    .map_err(plot_err)?;
                draw_panel(chart, ("offset i − j", "q·k"), None, &lines, (-1.0, 1.0))?;
            } else {
                let parts = sub.split_evenly((1, names.len()));
                for (part, name) in parts.iter().zip(&names) {
                    let cells: Vec<&&StructureRow> =
                        rows.iter().filter(|r| r.panel == *name).collect();
                    heatmap(part, name, &cells)?;
                }
            }
        }
        Ok(())
    }
}

fn describe_kind(kind: &str) -> &'static str {
    match kind {
        "cosine" => "cosine similarity of position vectors",
        "bias" => "score bias of query i on key j",
        "rotary" => "q·k of a fixed pair vs offset",
        _ => "position structure",
    }
}

/// Viridis (perceptually uniform, colour-blind safe) at t in [0, 1].
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let (k, f) = ((x.floor() as usize).min(STOPS.len() - 2), x - x.floor());
    let f = if x >= (STOPS.len() - 1) as f64 {
        1.0
    } else {
        f
    };
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// An n×n heatmap (row i from the top, column j from the left) with its value range in the caption.
fn heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    name: &str,
    cells: &[&&StructureRow],
) -> anyhow::Result<()> {
    let n = cells.iter().map(|c| c.i.max(c.j) + 1).max().unwrap_or(1) as f64;
    let values = cells.iter().filter_map(|c| c.value);
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{name} ({} to {})", tick_label(lo), tick_label(hi)),
            (FAMILY, 14),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(36)
        // y = −i puts row 0 at the top with round tick labels.
        .build_cartesian_2d(0.0..n, -n..0.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("j")
        .y_desc("i")
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 13))
        .x_labels(5)
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|y| number(-*y + 0.0))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(cells.iter().filter_map(|c| {
            let v = c.value?;
            let (x, y) = (c.j as f64, -(c.i as f64) - 1.0);
            Some(Rectangle::new(
                [(x, y), (x + 1.0, y + 1.0)],
                viridis((v - lo) / span).filled(),
            ))
        }))
        .map_err(plot_err)?;
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
    if top / bottom > 1e3 {
        // Many decades: one tick per power of ten keeps the labels apart.
        return within(&[1.0]);
    }
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

/// Metric axis numbers: at most two decimals without trailing zeros,
/// integers from 100, powers like `1e-3` below 0.01.
fn tick_label(y: f64) -> String {
    let y = y + 0.0; // no "-0"
    let a = y.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{y:.0}")
    } else if a >= 0.01 {
        let text = format!("{y:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{y:.0e}")
    }
}

const LEGEND_ROW: u32 = 28;

/// Legend entries (index, label, x offset) packed into rows of `width` pixels.
fn legend_rows(labels: &[String], width: u32) -> LegendRows {
    let mut rows: LegendRows = vec![Vec::new()];
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
        assert_eq!(log_ticks(2e-4, 3.0), [1e-3, 1e-2, 1e-1, 1.0]);
    }

    #[test]
    fn tick_labels_are_short() {
        let labels: Vec<String> = [0.0, -0.0, 0.5, 0.25, 1.0, 7.0, 12.5, 150.0, 0.001]
            .iter()
            .map(|&y| tick_label(y))
            .collect();
        assert_eq!(
            labels,
            ["0", "0", "0.5", "0.25", "1", "7", "12.5", "150", "1e-3"]
        );
        assert_eq!(
            log_ticks(2.5, 1200.0),
            [5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
    }
}

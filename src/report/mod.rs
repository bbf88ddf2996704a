//! Reports from the result frames alone: seed-aggregated tables (Markdown,
//! LaTeX) and charts (SVG, PNG) under `reports/<experiment>/`.

mod chart;
mod table;

use crate::record::write_atomic;
use crate::results::Frames;
use anyhow::Context;
use polars::prelude::{DataFrame, DataType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
pub use table::{Cell, Latex, Markdown, Table, TableFormat};

/// One run, as the report sees it.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: String,
    /// The scheme, followed by any other parameter that varies between its
    /// runs, e.g. `rope (fraction=0.25)`: one row per configuration.
    pub scheme: String,
    pub task: String,
    pub ok: bool,
    pub train_min: u64,
    pub train_max: u64,
    pub length_unit: String,
    pub metric: Metric,
}

/// One (run, length) evaluation.
#[derive(Debug, Clone)]
pub struct EvalRow {
    pub run_id: String,
    pub length: u64,
    pub exact_match: f64,
    pub perplexity: f64,
}

/// The headline metric of a task: exact match, or perplexity for language modelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    ExactMatch,
    Perplexity,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::ExactMatch, Metric::Perplexity];

    pub fn label(self) -> &'static str {
        match self {
            Metric::ExactMatch => "exact match",
            Metric::Perplexity => "perplexity",
        }
    }

    pub fn higher_is_better(self) -> bool {
        self == Metric::ExactMatch
    }

    pub fn of(self, e: &EvalRow) -> f64 {
        match self {
            Metric::ExactMatch => e.exact_match,
            Metric::Perplexity => e.perplexity,
        }
    }
}

/// The typed view of the frames used by tables and charts.
pub struct ReportData {
    pub runs: Vec<RunRow>,
    pub eval: Vec<EvalRow>,
}

fn strings(df: &DataFrame, name: &str) -> anyhow::Result<Vec<String>> {
    let col = df
        .column(name)
        .with_context(|| format!("column `{name}`"))?;
    let col = col.cast(&DataType::String)?;
    let ca = col.str()?;
    Ok((0..ca.len())
        .map(|i| ca.get(i).unwrap_or("").to_string())
        .collect())
}

fn u64s(df: &DataFrame, name: &str) -> anyhow::Result<Vec<u64>> {
    let col = df
        .column(name)
        .with_context(|| format!("column `{name}`"))?;
    let ca = col.u64()?;
    Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or(0)).collect())
}

/// A boolean column; all false when absent (frames written before it existed).
fn bools_or_false(df: &DataFrame, name: &str) -> anyhow::Result<Vec<bool>> {
    let Ok(col) = df.column(name) else {
        return Ok(vec![false; df.height()]);
    };
    let ca = col.bool()?;
    Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or(false)).collect())
}

fn f64s(df: &DataFrame, name: &str) -> anyhow::Result<Vec<f64>> {
    let col = df
        .column(name)
        .with_context(|| format!("column `{name}`"))?;
    let ca = col.f64()?;
    Ok((0..ca.len())
        .map(|i| ca.get(i).unwrap_or(f64::NAN))
        .collect())
}

impl ReportData {
    pub fn from_frames(frames: &Frames) -> anyhow::Result<Self> {
        let r = &frames.runs;
        let (ids, schemes, tasks) = (
            strings(r, "run_id")?,
            strings(r, "positional.scheme")?,
            strings(r, "task.name")?,
        );
        let (status, units) = (strings(r, "status")?, strings(r, "length_unit")?);
        let (mins, maxs) = (u64s(r, "train_min")?, u64s(r, "train_max")?);
        let language_model = bools_or_false(r, "language_model")?;
        let labels = row_labels(r, &schemes)?;
        let runs = (0..r.height())
            .map(|i| RunRow {
                run_id: ids[i].clone(),
                scheme: labels[i].clone(),
                task: tasks[i].clone(),
                ok: status[i] == "ok",
                train_min: mins[i],
                train_max: maxs[i],
                length_unit: units[i].clone(),
                metric: if language_model[i] {
                    Metric::Perplexity
                } else {
                    Metric::ExactMatch
                },
            })
            .collect();
        let e = &frames.eval;
        let (eids, lengths, em, loss) = (
            strings(e, "run_id")?,
            u64s(e, "length")?,
            f64s(e, "exact_match")?,
            f64s(e, "loss")?,
        );
        let eval = (0..e.height())
            .map(|i| EvalRow {
                run_id: eids[i].clone(),
                length: lengths[i],
                exact_match: em[i],
                perplexity: loss[i].exp(),
            })
            .collect();
        Ok(ReportData { runs, eval })
    }

    /// Distinct values in first-appearance (plan) order.
    fn distinct(&self, key: impl Fn(&RunRow) -> &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.runs {
            if !out.iter().any(|v| v == key(r)) {
                out.push(key(r).to_string());
            }
        }
        out
    }

    pub fn schemes(&self) -> Vec<String> {
        self.distinct(|r| &r.scheme)
    }

    pub fn tasks(&self) -> Vec<String> {
        self.distinct(|r| &r.task)
    }

    /// The tasks whose headline metric is `metric`.
    fn tasks_with(&self, metric: Metric) -> Vec<String> {
        let mut tasks = self.tasks();
        tasks.retain(|t| self.runs.iter().any(|r| &r.task == t && r.metric == metric));
        tasks
    }

    /// Mean headline metric of each ok run over the lengths `select` accepts.
    fn per_run(&self, select: impl Fn(&RunRow, u64) -> bool) -> BTreeMap<&str, f64> {
        let by_id: BTreeMap<&str, &RunRow> =
            self.runs.iter().map(|r| (r.run_id.as_str(), r)).collect();
        let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for e in &self.eval {
            if let Some(run) = by_id.get(e.run_id.as_str()) {
                if run.ok && select(run, e.length) {
                    let s = sums.entry(run.run_id.as_str()).or_default();
                    s.0 += run.metric.of(e);
                    s.1 += 1;
                }
            }
        }
        sums.into_iter()
            .map(|(k, (s, n))| (k, s / n as f64))
            .collect()
    }

    /// Scheme × task table of `metric` over the lengths `select` accepts,
    /// for the tasks whose headline metric it is.
    pub fn table(
        &self,
        title: &str,
        metric: Metric,
        select: impl Fn(&RunRow, u64) -> bool,
    ) -> Table {
        let per_run = self.per_run(select);
        let schemes = self.schemes();
        let tasks = self.tasks_with(metric);
        let rows = schemes
            .iter()
            .map(|scheme| {
                let cells = tasks
                    .iter()
                    .map(|task| {
                        let group: Vec<&RunRow> = self
                            .runs
                            .iter()
                            .filter(|r| &r.scheme == scheme && &r.task == task)
                            .collect();
                        let values: Vec<f64> = group
                            .iter()
                            .filter_map(|r| per_run.get(r.run_id.as_str()).copied())
                            .collect();
                        Cell::from_values(&values, group.len())
                    })
                    .collect();
                (scheme.clone(), cells)
            })
            // A scheme with no run on these tasks has no row.
            .filter(|(_, cells): &(String, Vec<Cell>)| cells.iter().any(|c| c.planned > 0))
            .collect();
        let mut table = Table {
            title: title.to_string(),
            row_header: "scheme".into(),
            columns: tasks,
            rows,
            notes: Vec::new(),
        };
        table.mark_best(metric.higher_is_better());
        table
    }
}

/// Labels each run by its scheme plus the parameters (dotted columns; task
/// options and evaluation settings excluded, as they vary with the task) that
/// differ between runs of that scheme.
fn row_labels(runs: &DataFrame, schemes: &[String]) -> anyhow::Result<Vec<String>> {
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    for name in runs.get_column_names() {
        let name = name.to_string();
        if name.contains('.')
            && name != "positional.scheme"
            && !name.starts_with("task.")
            && !name.starts_with("eval.")
        {
            let values = strings(runs, &name)?;
            params.push((name, values));
        }
    }
    let mut labels = schemes.to_vec();
    for scheme in schemes.iter().collect::<std::collections::BTreeSet<_>>() {
        let members: Vec<usize> = (0..schemes.len())
            .filter(|&i| &schemes[i] == scheme)
            .collect();
        let varying: Vec<&(String, Vec<String>)> = params
            .iter()
            .filter(|(_, v)| members.iter().any(|&i| v[i] != v[members[0]]))
            .collect();
        if varying.is_empty() {
            continue;
        }
        for &i in &members {
            // Section prefix dropped; unset options (null) left out.
            let parts: Vec<String> = varying
                .iter()
                .filter(|(_, v)| !v[i].is_empty())
                .map(|(name, v)| {
                    format!(
                        "{}={}",
                        name.split_once('.').map_or(name.as_str(), |(_, rest)| rest),
                        v[i]
                    )
                })
                .collect();
            if !parts.is_empty() {
                labels[i] = format!("{scheme} ({})", parts.join(", "));
            }
        }
    }
    Ok(labels)
}

/// Renders every table and chart of `frames` into `out_dir`; returns the files written.
pub fn render(frames: &Frames, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let data = ReportData::from_frames(frames)?;
    let mut tables = Vec::new();
    for metric in Metric::ALL {
        if !data.runs.iter().any(|r| r.metric == metric) {
            continue;
        }
        let (ood, id) = match metric {
            Metric::ExactMatch => (
                "Exact match beyond the training lengths (out of distribution)",
                "Exact match within the training lengths (in distribution)",
            ),
            Metric::Perplexity => (
                "Perplexity beyond the training context (out of distribution)",
                "Perplexity within the training context (in distribution)",
            ),
        };
        tables.push(data.table(ood, metric, |r, len| len > r.train_max));
        tables.push(data.table(id, metric, |r, len| {
            (r.train_min..=r.train_max).contains(&len)
        }));
    }
    let mut written = Vec::new();
    for format in [&Markdown as &dyn TableFormat, &Latex] {
        let text: Vec<String> = tables.iter().map(|t| format.render(t)).collect();
        let path = out_dir.join(format!("summary.{}", format.extension()));
        write_atomic(&path, text.join("\n").as_bytes())?;
        written.push(path);
    }
    written.extend(chart::accuracy_vs_length(&data, out_dir)?);
    let index = index_text(&written, out_dir);
    let index_path = out_dir.join("index.md");
    write_atomic(&index_path, index.as_bytes())?;
    written.push(index_path);
    Ok(written)
}

fn index_text(files: &[PathBuf], out_dir: &Path) -> String {
    let describe = |name: &str| {
        match name {
        "summary.md" => "Tables: exact match (perplexity for language modelling) out of and within the training lengths, mean ± std over seeds (n), best per column in bold.",
        "summary.tex" => "The same tables in LaTeX (booktabs).",
        n if n.starts_with("accuracy_vs_length") => "Exact match (perplexity, log scale, for language modelling) versus evaluation length, one line per scheme (band: ± std over seeds), one panel per task; shaded: training lengths.",
        _ => "",
    }
    };
    let mut out = String::from("# Report\n\n");
    for f in files {
        let name = f.strip_prefix(out_dir).unwrap_or(f).display().to_string();
        out.push_str(&format!("- [{name}]({name}): {}\n", describe(&name)));
    }
    out
}

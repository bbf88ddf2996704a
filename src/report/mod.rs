//! Reports from the result frames alone: seed-aggregated tables (Markdown,
//! LaTeX, CSV) and charts (SVG, PNG) under `reports/<experiment>/`, shaped by
//! the experiment's `report:` section.

mod chart;
mod config;
mod stats;
mod table;

use crate::options::{flat, UsageError};
use crate::store::atomic::write_atomic;
use crate::store::frames::Frames;
use crate::store::schema::{
    CELL_VALUE, CURVE_VALUE, EXACT_MATCH, GROUP_ID, I, J, KIND, LANGUAGE_MODEL, LENGTH,
    LENGTH_UNIT, LOSS, METRIC, PANEL, RUN_ID, SEED, STATUS, STEP, TOKEN_ACC, TRAIN_MAX, TRAIN_MIN,
    TRAIN_TOKENS_PER_S,
};
use anyhow::Context;
pub use config::{Bucket, MetricChoice, ReportConfig, Scale, LENGTH_BUCKET};
use polars::prelude::{Column, CsvWriter, DataFrame, DataType, SerWriter};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
pub use table::{Aggregate, Cell, Latex, Markdown, Spread, Table, TableFormat};

/// One run, as the report sees it.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: String,
    pub group_id: String,
    /// The scheme, followed by any other parameter that varies between its
    /// runs, e.g. `rope (fraction=0.25)`: one row per configuration.
    pub scheme: String,
    pub task: String,
    pub ok: bool,
    pub train_min: u64,
    pub train_max: u64,
    pub length_unit: String,
    pub metric: Metric,
    pub tokens_per_s: f64,
    /// Every dotted parameter and `seed`, as text.
    pub params: BTreeMap<String, String>,
}

/// One (run, length) evaluation.
#[derive(Debug, Clone)]
pub struct EvalRow {
    pub run_id: String,
    pub length: u64,
    pub exact_match: f64,
    pub token_acc: f64,
    pub loss: f64,
}

/// One logged training value.
#[derive(Debug, Clone)]
pub struct CurveRow {
    pub run_id: String,
    pub step: u64,
    pub metric: String,
    pub value: f64,
}

/// One cell of a run's position structure.
#[derive(Debug, Clone)]
pub struct StructureRow {
    pub run_id: String,
    pub kind: String,
    pub panel: String,
    pub i: u64,
    pub j: u64,
    pub value: Option<f64>,
}

/// A metric a table or chart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    ExactMatch,
    TokenAcc,
    Loss,
    Perplexity,
    TokensPerS,
}

impl Metric {
    pub fn label(self) -> &'static str {
        match self {
            Metric::ExactMatch => "exact match",
            Metric::TokenAcc => "token accuracy",
            Metric::Loss => "loss",
            Metric::Perplexity => "perplexity",
            Metric::TokensPerS => "training tokens/s",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::ExactMatch => "Exact match",
            Metric::TokenAcc => "Token accuracy",
            Metric::Loss => "Loss (nats per token)",
            Metric::Perplexity => "Perplexity",
            Metric::TokensPerS => "Training throughput (tokens/s)",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::ExactMatch | Metric::TokenAcc | Metric::TokensPerS
        )
    }

    fn decimals(self) -> usize {
        match self {
            Metric::TokensPerS => 0,
            _ => 2,
        }
    }

    /// The value at one evaluated length (not for tokens/s).
    pub fn of(self, e: &EvalRow) -> f64 {
        match self {
            Metric::ExactMatch => e.exact_match,
            Metric::TokenAcc => e.token_acc,
            Metric::Loss => e.loss,
            Metric::Perplexity => e.loss.exp(),
            Metric::TokensPerS => f64::NAN,
        }
    }

    fn chosen(choice: MetricChoice) -> Option<Metric> {
        match choice {
            MetricChoice::Headline => None,
            MetricChoice::ExactMatch => Some(Metric::ExactMatch),
            MetricChoice::TokenAcc => Some(Metric::TokenAcc),
            MetricChoice::Loss => Some(Metric::Loss),
            MetricChoice::Perplexity => Some(Metric::Perplexity),
            MetricChoice::TokensPerS => Some(Metric::TokensPerS),
        }
    }
}

/// The typed view of the frames used by tables and charts.
pub struct ReportData {
    pub runs: Vec<RunRow>,
    pub eval: Vec<EvalRow>,
    pub curves: Vec<CurveRow>,
    pub structure: Vec<StructureRow>,
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

fn opt_f64s(df: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<f64>>> {
    let col = df
        .column(name)
        .with_context(|| format!("column `{name}`"))?;
    let ca = col.f64()?;
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

/// Each run's parameters (dotted columns and `seed`) as text.
fn run_params(runs: &DataFrame) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    let mut params: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); runs.height()];
    for name in runs.get_column_names() {
        if name.contains('.') || name.as_str() == SEED.name {
            for (i, v) in strings(runs, name)?.into_iter().enumerate() {
                params[i].insert(name.to_string(), v);
            }
        }
    }
    Ok(params)
}

impl ReportData {
    pub fn from_frames(frames: &Frames) -> anyhow::Result<Self> {
        let r = &frames.runs;
        let (ids, groups, schemes, tasks) = (
            strings(r, RUN_ID.name)?,
            strings(r, GROUP_ID.name)?,
            strings(r, "positional.scheme")?,
            strings(r, "task.name")?,
        );
        let (status, units) = (strings(r, STATUS.name)?, strings(r, LENGTH_UNIT.name)?);
        let (mins, maxs) = (u64s(r, TRAIN_MIN.name)?, u64s(r, TRAIN_MAX.name)?);
        let language_model = bools_or_false(r, LANGUAGE_MODEL.name)?;
        let tokens_per_s = f64s(r, TRAIN_TOKENS_PER_S.name)?;
        let mut params = run_params(r)?;
        let labels = row_labels(&params, &schemes);
        let runs = (0..r.height())
            .map(|i| RunRow {
                run_id: ids[i].clone(),
                group_id: groups[i].clone(),
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
                tokens_per_s: tokens_per_s[i],
                params: std::mem::take(&mut params[i]),
            })
            .collect();
        let e = &frames.eval;
        let (eids, lengths, em, acc, loss) = (
            strings(e, RUN_ID.name)?,
            u64s(e, LENGTH.name)?,
            f64s(e, EXACT_MATCH.name)?,
            f64s(e, TOKEN_ACC.name)?,
            f64s(e, LOSS.name)?,
        );
        let eval = (0..e.height())
            .map(|i| EvalRow {
                run_id: eids[i].clone(),
                length: lengths[i],
                exact_match: em[i],
                token_acc: acc[i],
                loss: loss[i],
            })
            .collect();
        let c = &frames.curves;
        let (cids, steps, metrics, values) = (
            strings(c, RUN_ID.name)?,
            u64s(c, STEP.name)?,
            strings(c, METRIC.name)?,
            f64s(c, CURVE_VALUE.name)?,
        );
        let curves = (0..c.height())
            .map(|i| CurveRow {
                run_id: cids[i].clone(),
                step: steps[i],
                metric: metrics[i].clone(),
                value: values[i],
            })
            .collect();
        let p = &frames.positions;
        let (pids, kinds, panels, is, js, pvalues) = (
            strings(p, RUN_ID.name)?,
            strings(p, KIND.name)?,
            strings(p, PANEL.name)?,
            u64s(p, I.name)?,
            u64s(p, J.name)?,
            opt_f64s(p, CELL_VALUE.name)?,
        );
        let structure = (0..p.height())
            .map(|k| StructureRow {
                run_id: pids[k].clone(),
                kind: kinds[k].clone(),
                panel: panels[k].clone(),
                i: is[k],
                j: js[k],
                value: pvalues[k],
            })
            .collect();
        Ok(ReportData {
            runs,
            eval,
            curves,
            structure,
        })
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

    /// A run's value on an axis: scheme label, task, or any parameter.
    fn axis_value<'a>(run: &'a RunRow, key: &str) -> &'a str {
        match key {
            "positional.scheme" => &run.scheme,
            "task.name" => &run.task,
            _ => run.params.get(key).map_or("", String::as_str),
        }
    }

    /// A finished run's value: `metric` averaged over its evaluated lengths
    /// in `bucket` (`None` when it has none there), or its tokens/s.
    fn run_value(&self, run: &RunRow, metric: Metric, bucket: Option<Bucket>) -> Option<f64> {
        if metric == Metric::TokensPerS {
            return Some(run.tokens_per_s);
        }
        let bucket = bucket.unwrap_or(Bucket::All);
        let values: Vec<f64> = self
            .eval
            .iter()
            .filter(|e| {
                e.run_id == run.run_id && bucket.contains((run.train_min, run.train_max), e.length)
            })
            .map(|e| metric.of(e))
            .collect();
        (!values.is_empty()).then(|| stats::mean(&values))
    }

    /// Runs whose tasks share a headline metric, or all runs for a chosen
    /// metric: one entry per table family.
    fn metric_groups(&self, choice: MetricChoice) -> Vec<(Metric, Vec<&RunRow>)> {
        match Metric::chosen(choice) {
            Some(m) => vec![(m, self.runs.iter().collect())],
            None => [Metric::ExactMatch, Metric::Perplexity]
                .into_iter()
                .map(|m| (m, self.runs.iter().filter(|r| r.metric == m).collect()))
                .filter(|(_, runs): &(Metric, Vec<&RunRow>)| !runs.is_empty())
                .collect(),
        }
    }

    /// Every table the configuration asks for.
    pub fn tables(&self, cfg: &ReportConfig) -> anyhow::Result<Vec<Table>> {
        let seeds = self
            .distinct(|r| r.params.get(SEED.name).map_or("", String::as_str))
            .len();
        let mut tables = Vec::new();
        for (metric, runs) in self.metric_groups(cfg.metric) {
            let language_model = runs.iter().all(|r| r.metric == Metric::Perplexity);
            let by_bucket = cfg.rows == LENGTH_BUCKET || cfg.columns == LENGTH_BUCKET;
            let per_table: Vec<Option<Bucket>> = if metric == Metric::TokensPerS || by_bucket {
                vec![None]
            } else {
                cfg.buckets.iter().copied().map(Some).collect()
            };
            for bucket in per_table {
                let title = match bucket {
                    Some(b) => format!("{} {}", metric.title(), b.phrase(language_model)),
                    None if metric == Metric::TokensPerS => metric.title().to_string(),
                    None => format!("{} by length bucket", metric.title()),
                };
                let mut table = self.table(title, cfg, metric, &runs, bucket, seeds.max(1))?;
                if !table.rows.is_empty() {
                    table.finish();
                    tables.push(table);
                }
            }
        }
        Ok(tables)
    }

    /// One table of `metric` over `runs`, rows and columns from `cfg`.
    fn table(
        &self,
        title: String,
        cfg: &ReportConfig,
        metric: Metric,
        runs: &[&RunRow],
        bucket: Option<Bucket>,
        seeds: usize,
    ) -> anyhow::Result<Table> {
        let (row_axis, col_axis) = (axis(runs, &cfg.rows, cfg), axis(runs, &cfg.columns, cfg));
        let cell = |row: &AxisEntry, col: &AxisEntry| {
            let bucket = bucket.or(row.bucket).or(col.bucket);
            let members: Vec<&&RunRow> = runs
                .iter()
                .filter(|r| (row.test)(r) && (col.test)(r))
                .collect();
            // Runs that evaluated no length in the bucket are not part of the cell.
            let relevant: Vec<&&RunRow> = members
                .into_iter()
                .filter(|r| !r.ok || self.run_value(r, metric, bucket).is_some())
                .collect();
            let groups: BTreeSet<&str> = relevant.iter().map(|r| r.group_id.as_str()).collect();
            let values: Vec<f64> = relevant
                .iter()
                .filter(|r| r.ok)
                .filter_map(|r| self.run_value(r, metric, bucket))
                .collect();
            let planned = if groups.is_empty() {
                0
            } else {
                groups.len() * seeds
            };
            Cell::new(values, planned.max(relevant.len()), cfg.aggregate, cfg.ci)
        };
        let mut rows: Vec<(String, Vec<Cell>)> = row_axis
            .iter()
            .map(|row| {
                (
                    row.label.clone(),
                    col_axis.iter().map(|col| cell(row, col)).collect(),
                )
            })
            .collect();
        let keep_cols: Vec<bool> = (0..col_axis.len())
            .map(|c| rows.iter().any(|(_, cells)| cells[c].planned > 0))
            .collect();
        for (_, cells) in &mut rows {
            let mut c = 0;
            cells.retain(|_| {
                c += 1;
                keep_cols[c - 1]
            });
        }
        rows.retain(|(_, cells)| cells.iter().any(|c| c.planned > 0));
        let columns = col_axis
            .iter()
            .zip(&keep_cols)
            .filter(|(_, &keep)| keep)
            .map(|(c, _)| c.label.clone())
            .collect();
        let baseline = match &cfg.baseline {
            None => None,
            Some(base) => Some(resolve_baseline(base, &rows)?),
        };
        Ok(Table {
            title,
            row_header: if cfg.rows == "positional.scheme" {
                "scheme".into()
            } else {
                cfg.rows.clone()
            },
            columns,
            rows,
            decimals: metric.decimals(),
            aggregate: cfg.aggregate,
            higher_is_better: metric.higher_is_better(),
            baseline,
            rank: cfg.rank,
            mrr: Vec::new(),
        })
    }
}

/// One row or column: its label, which runs belong to it, and the length
/// bucket it stands for on a `length_bucket` axis.
struct AxisEntry<'a> {
    label: String,
    test: Box<dyn Fn(&RunRow) -> bool + 'a>,
    bucket: Option<Bucket>,
}

/// The entries of the axis `key`: buckets, or the key's values in plan order.
fn axis<'a>(runs: &[&RunRow], key: &'a str, cfg: &ReportConfig) -> Vec<AxisEntry<'a>> {
    if key == LENGTH_BUCKET {
        return cfg
            .buckets
            .iter()
            .map(|&b| AxisEntry {
                label: b.label(),
                test: Box::new(|_: &RunRow| true),
                bucket: Some(b),
            })
            .collect();
    }
    let mut values: Vec<String> = Vec::new();
    for r in runs {
        let v = ReportData::axis_value(r, key);
        if !values.iter().any(|x| x == v) {
            values.push(v.to_string());
        }
    }
    values
        .into_iter()
        .map(|v| AxisEntry {
            label: v.clone(),
            test: Box::new(move |r: &RunRow| ReportData::axis_value(r, key) == v),
            bucket: None,
        })
        .collect()
}

/// The row label `base` names: itself, or the one scheme label `base (…)`.
fn resolve_baseline(base: &str, rows: &[(String, Vec<Cell>)]) -> anyhow::Result<String> {
    if rows.iter().any(|(name, _)| name == base) {
        return Ok(base.to_string());
    }
    let prefixed: Vec<&String> = rows
        .iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(&format!("{base} (")))
        .collect();
    match prefixed.as_slice() {
        [one] => Ok(one.to_string()),
        _ => {
            let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
            anyhow::bail!(
                "report baseline `{base}` matches {} rows; valid: one of {}",
                prefixed.len(),
                names.join(", ")
            )
        }
    }
}

/// Labels each run by its scheme plus the parameters (dotted columns; task
/// options and evaluation settings excluded, as they vary with the task) that
/// differ between runs of that scheme.
fn row_labels(params: &[BTreeMap<String, String>], schemes: &[String]) -> Vec<String> {
    let labelled = |name: &str| {
        name.contains('.')
            && name != "positional.scheme"
            && !name.starts_with("task.")
            && !name.starts_with("eval.")
    };
    let rows: Vec<BTreeMap<String, String>> = params
        .iter()
        .map(|p| {
            p.iter()
                .filter(|(k, _)| labelled(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect();
    let mut labels = schemes.to_vec();
    for scheme in schemes.iter().collect::<BTreeSet<_>>() {
        let members: Vec<usize> = (0..schemes.len())
            .filter(|&i| &schemes[i] == scheme)
            .collect();
        let varying = flat::varying_keys(&members.iter().map(|&i| &rows[i]).collect::<Vec<_>>());
        for &i in &members {
            // Section prefix dropped; unset options (null) left out.
            let parts: Vec<String> = varying
                .iter()
                .filter(|name| !rows[i][*name].is_empty())
                .map(|name| {
                    let short = name.split_once('.').map_or(name.as_str(), |(_, rest)| rest);
                    format!("{short}={}", rows[i][name])
                })
                .collect();
            if !parts.is_empty() {
                labels[i] = format!("{scheme} ({})", parts.join(", "));
            }
        }
    }
    labels
}

/// Where `posembed run` keeps the experiment's report section, so that
/// `posembed report` works from the results directory alone.
pub const CONFIG_FILE: &str = "report.json";

/// The report section stored in a results directory (defaults if none).
pub fn load_config(results_dir: &Path) -> anyhow::Result<ReportConfig> {
    let path = results_dir.join(CONFIG_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ReportConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The stored report section of `results_dir` with command-line overrides
/// (key → YAML value) applied and checked against the frames' parameters.
/// An invalid override is a [`UsageError`] naming the flag and the valid choices.
pub fn configure(
    results_dir: &Path,
    overrides: &ReportOverrides,
    frames: &Frames,
) -> anyhow::Result<ReportConfig> {
    let stored = load_config(results_dir)?;
    let serde_json::Value::Object(mut map) = serde_json::to_value(&stored)? else {
        unreachable!("the report config is a map")
    };
    for (key, value) in overrides.values()? {
        map.insert(key.to_string(), serde_json::to_value(value)?);
    }
    let flag = |err: crate::options::FieldError| {
        let key = crate::options::path_string(&err.path);
        UsageError(format!("--{}: {}", key.replace('_', "-"), err.message))
    };
    let cfg: ReportConfig = crate::options::parse(&serde_yaml::to_value(&map)?).map_err(flag)?;
    let params = flat::values_by_parameter(&run_params(&frames.runs)?);
    cfg.check(&params).map_err(flag)?;
    Ok(cfg)
}

/// `posembed report`'s flags: each replaces one key of the stored `report:` section.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReportOverrides {
    /// Table rows: a parameter (e.g. positional.scheme, model.d_model, seed) or length_bucket.
    #[arg(long)]
    pub rows: Option<String>,
    /// Table columns: a parameter or length_bucket.
    #[arg(long)]
    pub columns: Option<String>,
    /// headline, exact_match, token_acc, loss, perplexity or tokens_per_s.
    #[arg(long)]
    pub metric: Option<String>,
    /// A YAML list of in_distribution, out_of_distribution, all or [min, max],
    /// e.g. '[out_of_distribution, [17, 32]]'.
    #[arg(long)]
    pub buckets: Option<String>,
    /// mean_std, max or median_iqr.
    #[arg(long)]
    pub aggregate: Option<String>,
    /// The row every other row is tested against (Welch's t-test).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Add 95% confidence intervals of the mean.
    #[arg(long)]
    pub ci: bool,
    /// Add each row's mean reciprocal rank over the columns.
    #[arg(long)]
    pub rank: bool,
    /// log or linear y axis of the training curves.
    #[arg(long)]
    pub loss_scale: Option<String>,
}

impl ReportOverrides {
    /// The given flags as (report key, YAML value).
    fn values(&self) -> Result<Vec<(&'static str, serde_yaml::Value)>, UsageError> {
        let text = |v: &Option<String>| v.clone().map(serde_yaml::Value::String);
        let flag = |on: bool| on.then_some(serde_yaml::Value::Bool(true));
        let buckets = match &self.buckets {
            None => None,
            Some(text) => Some(serde_yaml::from_str(text).map_err(|e| {
                UsageError(format!(
                    "--buckets: {e}; valid: a YAML list such as '[out_of_distribution, [17, 32]]'"
                ))
            })?),
        };
        Ok([
            ("rows", text(&self.rows)),
            ("columns", text(&self.columns)),
            ("metric", text(&self.metric)),
            ("aggregate", text(&self.aggregate)),
            ("baseline", text(&self.baseline)),
            ("loss_scale", text(&self.loss_scale)),
            ("ci", flag(self.ci)),
            ("rank", flag(self.rank)),
            ("buckets", buckets),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
    }
}

/// `reports/<name>` for a `results/<name>` directory.
pub fn default_dir(results_dir: &Path) -> PathBuf {
    let name = results_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    PathBuf::from("reports").join(name)
}

pub fn save_config(results_dir: &Path, cfg: &ReportConfig) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(cfg).expect("report config serializes");
    write_atomic(&results_dir.join(CONFIG_FILE), &json)
}

/// Renders every table and chart of `frames` into `out_dir`; returns the files written.
pub fn render(frames: &Frames, cfg: &ReportConfig, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let data = ReportData::from_frames(frames)?;
    let tables = data.tables(cfg)?;
    let mut written = Vec::new();
    for format in [&Markdown as &dyn TableFormat, &Latex] {
        let text: Vec<String> = tables.iter().map(|t| format.render(t)).collect();
        let path = out_dir.join(format!("summary.{}", format.extension()));
        write_atomic(&path, text.join("\n").as_bytes())?;
        written.push(path);
    }
    let csv_path = out_dir.join("summary.csv");
    write_atomic(&csv_path, &summary_csv(&tables)?)?;
    written.push(csv_path);
    written.extend(chart::accuracy_vs_length(&data, out_dir)?);
    written.extend(chart::training_curves(&data, cfg.loss_scale, out_dir)?);
    written.extend(chart::cost(&data, out_dir)?);
    written.extend(chart::position_structure(&data, out_dir)?);
    let index = index_text(&written, out_dir);
    let index_path = out_dir.join("index.md");
    write_atomic(&index_path, index.as_bytes())?;
    written.push(index_path);
    Ok(written)
}

/// Every cell of every table, one row each (tidy), as CSV.
fn summary_csv(tables: &[Table]) -> anyhow::Result<Vec<u8>> {
    let mut cols: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
    let mut nums: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    let mut counts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut best = Vec::new();
    for t in tables {
        for (r, (row, cells)) in t.rows.iter().enumerate() {
            for (column, cell) in t.columns.iter().zip(cells) {
                cols.entry("table").or_default().push(Some(t.title.clone()));
                cols.entry("row").or_default().push(Some(row.clone()));
                cols.entry("column").or_default().push(Some(column.clone()));
                let (std, q1, q3) = match cell.spread {
                    Spread::Std(s) => (Some(s), None, None),
                    Spread::Iqr(a, b) => (None, Some(a), Some(b)),
                    Spread::None => (None, None, None),
                };
                for (name, v) in [
                    ("value", cell.value),
                    ("std", std),
                    ("q1", q1),
                    ("q3", q3),
                    ("ci_low", cell.ci.map(|c| c.0)),
                    ("ci_high", cell.ci.map(|c| c.1)),
                    ("p_value", cell.p_value),
                ] {
                    nums.entry(name).or_default().push(v);
                }
                counts.entry("n").or_default().push(cell.n() as u64);
                counts
                    .entry("planned")
                    .or_default()
                    .push(cell.planned as u64);
                best.push(cell.best);
            }
            if let Some(&(mrr, top)) = t.mrr.get(r) {
                cols.entry("table").or_default().push(Some(t.title.clone()));
                cols.entry("row").or_default().push(Some(row.clone()));
                cols.entry("column").or_default().push(Some("MRR".into()));
                for name in ["std", "q1", "q3", "ci_low", "ci_high", "p_value"] {
                    nums.entry(name).or_default().push(None);
                }
                nums.entry("value").or_default().push(Some(mrr));
                let ranked = cells.iter().filter(|c| c.value.is_some()).count();
                counts.entry("n").or_default().push(ranked as u64);
                counts
                    .entry("planned")
                    .or_default()
                    .push(cells.len() as u64);
                best.push(top);
            }
        }
    }
    let height = best.len();
    let mut columns: Vec<Column> = Vec::new();
    for name in ["table", "row", "column"] {
        columns.push(Column::new(
            name.into(),
            cols.remove(name).unwrap_or_default(),
        ));
    }
    for name in ["value", "std", "q1", "q3", "ci_low", "ci_high"] {
        columns.push(Column::new(
            name.into(),
            nums.remove(name).unwrap_or_default(),
        ));
    }
    for name in ["n", "planned"] {
        columns.push(Column::new(
            name.into(),
            counts.remove(name).unwrap_or_default(),
        ));
    }
    columns.push(Column::new("best".into(), best));
    columns.push(Column::new(
        "p_value".into(),
        nums.remove("p_value").unwrap_or_default(),
    ));
    let mut df = DataFrame::new(height, columns)?;
    let mut out = Vec::new();
    CsvWriter::new(&mut out).finish(&mut df)?;
    Ok(out)
}

fn index_text(files: &[PathBuf], out_dir: &Path) -> String {
    let describe = |name: &str| {
        match name {
        "summary.md" => "Tables: exact match (perplexity for language modelling, or the metric the `report:` section chooses) out of and within the training lengths, one cell per row × column summarising the seeds (n), best per column in bold.",
        "summary.tex" => "The same tables in LaTeX (booktabs).",
        "summary.csv" => "Every table cell as one CSV row: value, spread, n, planned seeds, CI and p-value against the baseline (with `rank`, each row's MRR as column `MRR`, n = the columns it has a value in).",
        n if n.starts_with("accuracy_vs_length") => "Exact match (perplexity, log scale, for language modelling) versus evaluation length, one line per scheme (band: ± std over seeds), one panel per task; shaded: training lengths.",
        n if n.starts_with("training_curves") => "Training loss versus step, one line per scheme (mean over seeds, band: ± std), one panel per task.",
        n if n.starts_with("cost") => "Training throughput per scheme: mean tokens/s over its runs, error bars ± std.",
        n if n.starts_with("position_structure") => "What each trained scheme does with positions: cosine similarity of input position vectors, the score bias of the first and last head, or the q·k score of a fixed vector pair versus offset for rotary schemes.",
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

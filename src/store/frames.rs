//! Tidy polars frames built from run records, and their parquet/CSV files:
//! `runs` (one row per run, every resolved parameter its own column),
//! `eval` (run × length), `curves` (run × step × metric) and `positions`
//! (run × position-structure cell). Their columns are defined once, in
//! [`super::schema`].

use super::atomic::write_atomic;
use super::schema::*;
use crate::options::flat::flatten_value;
use crate::training::record::RunRecord;
use anyhow::Context;
use polars::prelude::{
    Column, CsvWriter, DataFrame, ParquetReader, ParquetWriter, SerReader, SerWriter,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub struct Frames {
    pub runs: DataFrame,
    pub eval: DataFrame,
    pub curves: DataFrame,
    pub positions: DataFrame,
}

/// Builds the four frames; rows follow the order of `records` (the plan order).
pub fn collect(records: &[RunRecord]) -> anyhow::Result<Frames> {
    Ok(Frames {
        runs: runs_frame(records)?,
        eval: eval_frame(records)?,
        curves: curves_frame(records)?,
        positions: positions_frame(records)?,
    })
}

fn str_col(name: &str, values: Vec<String>) -> Column {
    Column::new(name.into(), values)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn runs_frame(records: &[RunRecord]) -> anyhow::Result<DataFrame> {
    let mut columns = vec![
        str_col(
            RUN_ID.name,
            records.iter().map(|r| r.run_id.clone()).collect(),
        ),
        str_col(
            GROUP_ID.name,
            records.iter().map(|r| r.group_id.clone()).collect(),
        ),
        str_col(
            EXPERIMENT.name,
            records.iter().map(|r| r.experiment.clone()).collect(),
        ),
        Column::new(
            SEED.name.into(),
            records.iter().map(|r| r.seed).collect::<Vec<u64>>(),
        ),
    ];
    let flat: Vec<BTreeMap<String, Value>> =
        records.iter().map(|r| flatten_value(&r.config)).collect();
    let mut keys: Vec<&String> = flat.iter().flat_map(|f| f.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let values: Vec<Option<&Value>> = flat
            .iter()
            .map(|f| f.get(key).filter(|v| !v.is_null()))
            .collect();
        columns.push(json_column(key, &values));
    }
    let ood = |r: &RunRecord| {
        mean(
            r.eval
                .iter()
                .filter(|e| e.length > r.train_max)
                .map(|e| e.exact_match),
        )
    };
    let id = |r: &RunRecord| {
        mean(
            r.eval
                .iter()
                .filter(|e| (r.train_min..=r.train_max).contains(&e.length))
                .map(|e| e.exact_match),
        )
    };
    let opt_f64 = |name: &str, f: &dyn Fn(&RunRecord) -> Option<f64>| {
        Column::new(
            name.into(),
            records.iter().map(f).collect::<Vec<Option<f64>>>(),
        )
    };
    let opt_str = |name: &str, f: &dyn Fn(&RunRecord) -> Option<String>| {
        Column::new(
            name.into(),
            records.iter().map(f).collect::<Vec<Option<String>>>(),
        )
    };
    let u64_col = |name: &str, f: &dyn Fn(&RunRecord) -> u64| {
        Column::new(name.into(), records.iter().map(f).collect::<Vec<u64>>())
    };
    let f64_col = |name: &str, f: &dyn Fn(&RunRecord) -> f64| {
        Column::new(name.into(), records.iter().map(f).collect::<Vec<f64>>())
    };
    columns.extend([
        str_col(
            STATUS.name,
            records
                .iter()
                .map(|r| r.status.as_str().to_string())
                .collect(),
        ),
        Column::new(
            ERROR.name.into(),
            records
                .iter()
                .map(|r| r.error.clone())
                .collect::<Vec<Option<String>>>(),
        ),
        Column::new(
            DIVERGED_STEP.name.into(),
            records
                .iter()
                .map(|r| r.diverged_step.map(|s| s as u64))
                .collect::<Vec<Option<u64>>>(),
        ),
        u64_col(PARAMS.name, &|r| r.params as u64),
        u64_col(TRAIN_TOKENS.name, &|r| r.train_tokens as u64),
        f64_col(TRAIN_SECONDS.name, &|r| r.train_seconds),
        f64_col(TRAIN_TOKENS_PER_S.name, &|r| r.train_tokens_per_s),
        f64_col(WALL_TIME_S.name, &|r| r.wall_time_s),
        opt_f64(FINAL_TRAIN_LOSS.name, &|r| r.final_train_loss),
        str_col(
            LENGTH_UNIT.name,
            records.iter().map(|r| r.length_unit.clone()).collect(),
        ),
        Column::new(
            LANGUAGE_MODEL.name.into(),
            records
                .iter()
                .map(|r| r.language_model)
                .collect::<Vec<bool>>(),
        ),
        u64_col(TRAIN_MIN.name, &|r| r.train_min as u64),
        u64_col(TRAIN_MAX.name, &|r| r.train_max as u64),
        opt_f64(ID_EXACT_MATCH.name, &id),
        opt_f64(OOD_EXACT_MATCH.name, &ood),
        str_col(
            POSEMBED_VERSION.name,
            records
                .iter()
                .map(|r| r.provenance.posembed_version.clone())
                .collect(),
        ),
        opt_str(GIT_COMMIT.name, &|r| r.provenance.git_commit.clone()),
        Column::new(
            GIT_DIRTY.name.into(),
            records
                .iter()
                .map(|r| r.provenance.git_dirty)
                .collect::<Vec<Option<bool>>>(),
        ),
        opt_str(HOST.name, &|r| r.provenance.host.clone()),
        opt_str(RUSTC_VERSION.name, &|r| r.provenance.rustc_version.clone()),
        opt_str(CPU_MODEL.name, &|r| r.provenance.cpu_model.clone()),
        u64_col(THREADS.name, &|r| r.provenance.threads as u64),
        f64_col(STARTED_AT_UNIX.name, &|r| r.started_at_unix),
        f64_col(FINISHED_AT_UNIX.name, &|r| r.finished_at_unix),
    ]);
    Ok(DataFrame::new(records.len(), columns)?)
}

/// One parameter column: integers, floats, booleans or strings, whichever
/// holds every value; anything else as JSON text.
fn json_column(name: &str, values: &[Option<&Value>]) -> Column {
    let present = || values.iter().flatten();
    if present().all(|v| v.is_i64()) {
        Column::new(
            name.into(),
            values
                .iter()
                .map(|v| v.and_then(Value::as_i64))
                .collect::<Vec<_>>(),
        )
    } else if present().all(|v| v.is_number()) {
        Column::new(
            name.into(),
            values
                .iter()
                .map(|v| v.and_then(Value::as_f64))
                .collect::<Vec<_>>(),
        )
    } else if present().all(|v| v.is_boolean()) {
        Column::new(
            name.into(),
            values
                .iter()
                .map(|v| v.and_then(Value::as_bool))
                .collect::<Vec<_>>(),
        )
    } else {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Column::new(
            name.into(),
            values
                .iter()
                .map(|v| v.map(text))
                .collect::<Vec<Option<String>>>(),
        )
    }
}

/// One row per (run, length). Each row carries its task's length unit and
/// training range, so it can be read on its own; perplexity is exp(loss) over
/// the scored tokens, and language-modelling rows add bits per byte (their
/// tokens are bytes) and the last-quarter loss.
fn eval_frame(records: &[RunRecord]) -> anyhow::Result<DataFrame> {
    let rows: Vec<(&RunRecord, &crate::training::eval::EvalByLength)> = records
        .iter()
        .flat_map(|r| r.eval.iter().map(move |e| (r, e)))
        .collect();
    type Row<'a> = (&'a RunRecord, &'a crate::training::eval::EvalByLength);
    let u64_col = |name: &str, f: &dyn Fn(&Row) -> u64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<u64>>())
    };
    let f64_col = |name: &str, f: &dyn Fn(&Row) -> f64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<f64>>())
    };
    let opt_f64 = |name: &str, f: &dyn Fn(&Row) -> Option<f64>| {
        Column::new(
            name.into(),
            rows.iter().map(f).collect::<Vec<Option<f64>>>(),
        )
    };
    let columns = vec![
        str_col(
            RUN_ID.name,
            rows.iter().map(|(r, _)| r.run_id.clone()).collect(),
        ),
        u64_col(LENGTH.name, &|(_, e)| e.length as u64),
        str_col(
            LENGTH_UNIT.name,
            rows.iter().map(|(r, _)| r.length_unit.clone()).collect(),
        ),
        u64_col(TRAIN_MIN.name, &|(r, _)| r.train_min as u64),
        u64_col(TRAIN_MAX.name, &|(r, _)| r.train_max as u64),
        Column::new(
            IN_DISTRIBUTION.name.into(),
            rows.iter()
                .map(|(r, e)| (r.train_min..=r.train_max).contains(&e.length))
                .collect::<Vec<bool>>(),
        ),
        f64_col(TOKEN_ACC.name, &|(_, e)| e.token_acc),
        f64_col(EXACT_MATCH.name, &|(_, e)| e.exact_match),
        f64_col(LOSS.name, &|(_, e)| e.loss),
        f64_col(PERPLEXITY.name, &|(_, e)| e.loss.exp()),
        opt_f64(BITS_PER_BYTE.name, &|(r, e)| {
            r.language_model.then(|| e.loss / std::f64::consts::LN_2)
        }),
        opt_f64(LAST_QUARTER_LOSS.name, &|(_, e)| e.last_quarter_loss),
        u64_col(N.name, &|(_, e)| e.n as u64),
    ];
    Ok(DataFrame::new(rows.len(), columns)?)
}

fn curves_frame(records: &[RunRecord]) -> anyhow::Result<DataFrame> {
    let rows: Vec<(&RunRecord, &crate::training::train::CurvePoint)> = records
        .iter()
        .flat_map(|r| r.curves.iter().map(move |c| (r, c)))
        .collect();
    let columns = vec![
        str_col(
            RUN_ID.name,
            rows.iter().map(|(r, _)| r.run_id.clone()).collect(),
        ),
        Column::new(
            STEP.name.into(),
            rows.iter()
                .map(|(_, c)| c.step as u64)
                .collect::<Vec<u64>>(),
        ),
        str_col(
            METRIC.name,
            rows.iter().map(|(_, c)| c.metric.clone()).collect(),
        ),
        Column::new(
            CURVE_VALUE.name.into(),
            rows.iter().map(|(_, c)| c.value).collect::<Vec<f64>>(),
        ),
    ];
    Ok(DataFrame::new(rows.len(), columns)?)
}

/// Position structure: run × panel × (i, j) cell; curves have j = 0.
fn positions_frame(records: &[RunRecord]) -> anyhow::Result<DataFrame> {
    let mut run_id = Vec::new();
    let (mut kind, mut panel) = (Vec::new(), Vec::new());
    let (mut i_col, mut j_col, mut value) = (Vec::new(), Vec::new(), Vec::new());
    for r in records {
        let Some(s) = &r.position_structure else {
            continue;
        };
        for p in &s.panels {
            for (k, v) in p.values.iter().enumerate() {
                run_id.push(r.run_id.clone());
                kind.push(s.kind.clone());
                panel.push(p.label.clone());
                i_col.push((k / p.cols) as u64);
                j_col.push((k % p.cols) as u64);
                value.push(v.filter(|v| v.is_finite()));
            }
        }
    }
    let n = run_id.len();
    Ok(DataFrame::new(
        n,
        vec![
            str_col(RUN_ID.name, run_id),
            str_col(KIND.name, kind),
            str_col(PANEL.name, panel),
            Column::new(I.name.into(), i_col),
            Column::new(J.name.into(), j_col),
            Column::new(CELL_VALUE.name.into(), value),
        ],
    )?)
}

/// Writes `<dir>/{runs,eval,curves,positions}.{parquet,csv}`, each atomically.
pub fn write(frames: &mut Frames, dir: &Path) -> anyhow::Result<()> {
    for (name, df) in [
        (RUNS.name, &mut frames.runs),
        (EVAL.name, &mut frames.eval),
        (CURVES.name, &mut frames.curves),
        (POSITIONS.name, &mut frames.positions),
    ] {
        let mut parquet = Vec::new();
        ParquetWriter::new(&mut parquet)
            .finish(df)
            .with_context(|| format!("encoding {name}.parquet"))?;
        write_atomic(&dir.join(format!("{name}.parquet")), &parquet)?;
        let mut csv = Vec::new();
        CsvWriter::new(&mut csv)
            .finish(df)
            .with_context(|| format!("encoding {name}.csv"))?;
        write_atomic(&dir.join(format!("{name}.csv")), &csv)?;
    }
    Ok(())
}

/// Reads the frames written by [`write`].
pub fn read(dir: &Path) -> anyhow::Result<Frames> {
    let load = |name: &str| -> anyhow::Result<DataFrame> {
        let path = dir.join(format!("{name}.parquet"));
        if name == POSITIONS.name && !path.exists() {
            // Written by versions before the position-structure chart.
            return positions_frame(&[]);
        }
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        ParquetReader::new(file)
            .finish()
            .with_context(|| format!("reading {}", path.display()))
    };
    Ok(Frames {
        runs: load(RUNS.name)?,
        eval: load(EVAL.name)?,
        curves: load(CURVES.name)?,
        positions: load(POSITIONS.name)?,
    })
}

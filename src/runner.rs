//! The sweep: config → plan → runs in parallel (skipping complete ones) →
//! frames → report. One failing run never stops the others.

use crate::config;
use crate::plan::{self, RunSpec};
use crate::record::{self, Provenance, RunRecord, Status};
use crate::report;
use crate::results;
use crate::run;
use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Runs trained at once (one thread each).
    pub jobs: usize,
    /// Rerun runs that already have a record.
    pub force: bool,
    pub results_root: PathBuf,
    pub reports_root: PathBuf,
    pub max_runs: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            force: false,
            results_root: PathBuf::from("results"),
            reports_root: PathBuf::from("reports"),
            max_runs: config::DEFAULT_MAX_RUNS,
        }
    }
}

#[derive(Debug)]
pub struct SweepSummary {
    pub results_dir: PathBuf,
    pub reports_dir: PathBuf,
    pub planned: usize,
    pub skipped: usize,
    pub trained: usize,
    /// (run_id, status, error) of every run that did not finish ok.
    pub unsuccessful: Vec<(String, Status, String)>,
}

/// Live display: indicatif bars on a terminal, one line per event otherwise.
struct Display {
    bars: Option<(MultiProgress, ProgressBar)>,
    total: usize,
    done: Mutex<usize>,
}

impl Display {
    fn new(total: usize) -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} runs {msg} [{elapsed_precise}, eta {eta}]",
                )
                .expect("valid template"),
            );
            (multi, overall)
        });
        Display {
            bars,
            total,
            done: Mutex::new(0),
        }
    }

    fn run_bar(&self, spec: &RunSpec) -> Option<ProgressBar> {
        let (multi, _) = self.bars.as_ref()?;
        let bar = multi.add(ProgressBar::new(spec.config.train.steps as u64));
        bar.set_style(
            ProgressStyle::with_template("  {prefix} {bar:20} step {pos}/{len} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(format!(
            "{} {}/{}",
            spec.run_id, spec.config.positional.scheme, spec.config.task.name
        ));
        Some(bar)
    }

    fn finished(&self, record: &RunRecord) {
        let mut done = self.done.lock().expect("display lock");
        *done += 1;
        let line = format!(
            "[{}/{}] {} {}/{} seed {}: {} ({:.1} s, {:.0} tokens/s)",
            *done,
            self.total,
            record.run_id,
            record.config["positional"]["scheme"]
                .as_str()
                .unwrap_or("?"),
            record.config["task"]["name"].as_str().unwrap_or("?"),
            record.seed,
            record.error.as_deref().unwrap_or(record.status.as_str()),
            record.wall_time_s,
            record.train_tokens_per_s,
        );
        match &self.bars {
            Some((multi, overall)) => {
                overall.inc(1);
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn clear(&self) {
        if let Some((_, overall)) = &self.bars {
            overall.finish_and_clear();
        }
    }
}

/// Runs the experiment in `file`: trains every incomplete run, then writes the
/// frames and the report.
pub fn run_sweep(file: &Path, opts: &RunOptions) -> anyhow::Result<SweepSummary> {
    let spec = config::load(file, opts.max_runs)?;
    for warning in &spec.warnings {
        eprintln!("warning: {}: {warning}", file.display());
    }
    let runs = plan::expand(&spec);
    let results_dir = opts.results_root.join(&spec.name);
    let reports_dir = opts.reports_root.join(&spec.name);
    let mut todo = Vec::new();
    for run in &runs {
        let complete = !opts.force && record::load(&results_dir, &run.run_id)?.is_some();
        if !complete {
            todo.push(run);
        }
    }
    let skipped = runs.len() - todo.len();
    if skipped > 0 {
        eprintln!(
            "{skipped} of {} runs already complete in {}: skipped",
            runs.len(),
            results_dir.display()
        );
    }
    train_all(&todo, &results_dir, opts.jobs)?;
    let records = runs
        .iter()
        .map(|r| {
            record::load(&results_dir, &r.run_id)?
                .with_context(|| format!("record of run {} is missing", r.run_id))
        })
        .collect::<anyhow::Result<Vec<RunRecord>>>()?;
    let mut frames = results::collect(&records)?;
    results::write(&mut frames, &results_dir)?;
    report::render(&frames, &reports_dir)?;
    let unsuccessful = records
        .iter()
        .filter(|r| r.status != Status::Ok)
        .map(|r| {
            (
                r.run_id.clone(),
                r.status,
                r.error.clone().unwrap_or_default(),
            )
        })
        .collect();
    Ok(SweepSummary {
        results_dir,
        reports_dir,
        planned: runs.len(),
        skipped,
        trained: todo.len(),
        unsuccessful,
    })
}

/// Trains `runs` on a pool of `jobs` threads, saving each record as it completes.
fn train_all(runs: &[&RunSpec], results_dir: &Path, jobs: usize) -> anyhow::Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let provenance = Provenance::detect(jobs);
    let display = Display::new(runs.len());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .context("starting the run pool")?;
    let saved: Vec<anyhow::Result<()>> = pool.install(|| {
        runs.par_iter()
            .with_max_len(1)
            .map(|spec| {
                let bar = display.run_bar(spec);
                let record = run::execute(spec, &provenance, &mut |p| {
                    if let Some(bar) = &bar {
                        bar.set_position(p.step as u64);
                        bar.set_message(format!(
                            "loss {:.3}, {:.0} tokens/s",
                            p.loss, p.tokens_per_s
                        ));
                    }
                });
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                display.finished(&record);
                record::save(results_dir, &record)
            })
            .collect()
    });
    display.clear();
    saved.into_iter().collect()
}

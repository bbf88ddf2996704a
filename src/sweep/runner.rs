//! The sweep: config → plan → runs in parallel (skipping complete ones) →
//! frames → report. One failing run never stops the others; an interrupt
//! stops launching runs and still writes the frames of what completed.

use crate::experiment::{config, plan};
use crate::report;
use crate::store::{frames, records};
use crate::training::record::{Provenance, RunRecord, Status};
use crate::training::run;
use crate::training::spec::RunSpec;
use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Runs trained at once (one thread each).
    pub jobs: usize,
    /// Rerun runs that already have a record.
    pub force: bool,
    /// Rerun runs whose record says failed or diverged.
    pub rerun_failed: bool,
    /// Stop launching runs after the first failed or diverged one.
    pub fail_fast: bool,
    /// Train only this slice of the plan, into `<results>/<name>/shards/i-of-n/`.
    pub shard: Option<Shard>,
    pub results_root: PathBuf,
    pub reports_root: PathBuf,
    pub max_runs: usize,
    /// Raised by interrupts (or `fail_fast`): see [`Stop`].
    pub stop: Stop,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            force: false,
            rerun_failed: false,
            fail_fast: false,
            shard: None,
            results_root: PathBuf::from("results"),
            reports_root: PathBuf::from("reports"),
            max_runs: config::DEFAULT_MAX_RUNS,
            stop: Stop::default(),
        }
    }
}

/// Shard `index` of `count` (1-based): the runs whose plan index is
/// `index - 1` modulo `count`, so every run is in exactly one shard and
/// shards get a similar mix of configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn contains(&self, plan_index: usize) -> bool {
        plan_index % self.count == self.index - 1
    }

    /// The shard's experiment directory inside the experiment's results directory.
    pub fn dir(&self, experiment_dir: &Path) -> PathBuf {
        experiment_dir
            .join("shards")
            .join(format!("{}-of-{}", self.index, self.count))
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = || format!("`{s}` is not a shard; valid: i/n with 1 <= i <= n, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(invalid)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| invalid())?,
            n.trim().parse().map_err(|_| invalid())?,
        );
        if index == 0 || index > count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }
}

/// How far a sweep should wind down: 0 run everything, 1 launch no new runs
/// (first Ctrl-C, or `--fail-fast` after a failure), 2 also abandon running
/// runs (second Ctrl-C). Shared with the signal handler.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    level: Arc<AtomicUsize>,
    signalled: Arc<AtomicBool>,
}

impl Stop {
    pub fn level(&self) -> usize {
        self.level.load(Ordering::SeqCst)
    }

    /// Raises the level by one and returns the new level.
    pub fn escalate(&self) -> usize {
        self.level.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn drain(&self) {
        let _ = self
            .level
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether SIGINT or SIGTERM arrived.
    pub fn signalled(&self) -> bool {
        self.signalled.load(Ordering::SeqCst)
    }

    /// SIGINT/SIGTERM: the first stops launching runs, the second abandons
    /// the running ones, the third exits at once (status 130).
    pub fn listen_for_signals(&self) -> anyhow::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let stop = self.clone();
        std::thread::spawn(move || {
            for _ in signals.forever() {
                stop.signalled.store(true, Ordering::SeqCst);
                match stop.escalate() {
                    1 => eprintln!(
                        "\ninterrupted: no new runs will start; running runs finish (interrupt again to abandon them)"
                    ),
                    2 => eprintln!("\ninterrupted again: abandoning running runs"),
                    _ => std::process::exit(130),
                }
            }
        });
        Ok(())
    }
}

/// An exclusive lock on an experiment directory while a sweep or merge
/// writes it. It is an advisory `flock`, so the kernel releases it when the
/// process ends, even by `kill -9`: a lock is never stale.
pub struct ExperimentLock {
    _file: std::fs::File,
}

impl ExperimentLock {
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.rewind()?;
                write!(file, "{}", std::process::id())?;
                Ok(ExperimentLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                anyhow::bail!(
                    "{} is in use by another posembed process (pid {}); wait for it to finish, or write elsewhere with --results-dir",
                    dir.display(),
                    holder.trim()
                )
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

/// The panic payload that unwinds a run abandoned by a second interrupt.
struct Abandoned;

#[derive(Debug)]
pub struct SweepSummary {
    pub results_dir: PathBuf,
    /// `None` for a shard: shards are reported after `posembed merge`.
    pub reports_dir: Option<PathBuf>,
    /// Runs in the plan (in the shard, with `--shard`).
    pub planned: usize,
    pub skipped: usize,
    /// Runs trained and recorded by this invocation.
    pub trained: usize,
    /// Planned runs without a record at the end (interrupted or abandoned).
    pub incomplete: usize,
    /// The sweep stopped early: interrupted, or `--fail-fast` after a failure.
    pub stopped: bool,
    /// A signal stopped it.
    pub interrupted: bool,
    /// (run_id, status, error) of every run that did not finish ok.
    pub unsuccessful: Vec<(String, Status, String)>,
    /// Milliseconds spent outside training: planning, checking records,
    /// writing frames and the report.
    pub overhead_ms: f64,
}

impl SweepSummary {
    /// Every planned run has a record, and every record is ok.
    pub fn all_ok(&self) -> bool {
        self.unsuccessful.is_empty() && self.incomplete == 0
    }
}

impl std::fmt::Display for SweepSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let report = self
            .reports_dir
            .as_ref()
            .map_or("merge shards to report".to_string(), |d| {
                format!("report in {}", d.display())
            });
        writeln!(
            f,
            "{} runs planned, {} trained, {} skipped; results in {}, {report} ({:.0} ms outside training)",
            self.planned,
            self.trained,
            self.skipped,
            self.results_dir.display(),
            self.overhead_ms,
        )?;
        write_unsuccessful(f, &self.unsuccessful)?;
        if self.interrupted {
            writeln!(
                f,
                "interrupted: {} of {} runs have no record; run the same command again to resume",
                self.incomplete, self.planned
            )?;
        } else if self.stopped {
            writeln!(
                f,
                "--fail-fast: stopped with {} of {} runs not started; rerun to continue",
                self.incomplete, self.planned
            )?;
        }
        Ok(())
    }
}

fn write_unsuccessful(
    f: &mut std::fmt::Formatter<'_>,
    unsuccessful: &[(String, Status, String)],
) -> std::fmt::Result {
    if unsuccessful.is_empty() {
        return Ok(());
    }
    writeln!(f, "\n{} runs did not finish ok:", unsuccessful.len())?;
    for (id, status, error) in unsuccessful {
        writeln!(f, "  {id}  {:<8}  {error}", status.as_str())?;
    }
    Ok(())
}

/// Live display: indicatif bars on a terminal, one line per event otherwise.
struct Display {
    bars: Option<(MultiProgress, ProgressBar)>,
    total: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    done: usize,
    failed: usize,
    running: usize,
}

impl Display {
    fn new(total: usize, skipped: usize) -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} runs {msg} [{elapsed_precise}, eta {eta}]",
                )
                .expect("valid template"),
            );
            overall.set_message(format!("({skipped} skipped)"));
            (multi, overall)
        });
        Display {
            bars,
            total,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn started(&self, spec: &RunSpec) -> Option<ProgressBar> {
        self.update(|c| c.running += 1);
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

    fn update(&self, change: impl FnOnce(&mut Counts)) {
        let mut counts = self.counts.lock().expect("display lock");
        change(&mut counts);
        if let Some((_, overall)) = &self.bars {
            overall.set_message(format!(
                "({} running, {} failed)",
                counts.running, counts.failed
            ));
        }
    }

    fn finished(&self, record: &RunRecord) {
        let mut counts = self.counts.lock().expect("display lock");
        counts.done += 1;
        counts.running -= 1;
        counts.failed += usize::from(record.status != Status::Ok);
        let line = format!(
            "[{}/{}] {} {}/{} seed {}: {} ({:.1} s, {:.0} tokens/s)",
            counts.done,
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
                overall.set_message(format!(
                    "({} running, {} failed)",
                    counts.running, counts.failed
                ));
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn abandoned(&self, spec: &RunSpec) {
        self.update(|c| c.running -= 1);
        self.note(&format!("{} abandoned", spec.run_id));
    }

    fn note(&self, line: &str) {
        match &self.bars {
            Some((multi, _)) => {
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

/// Whether a stored record counts as done under `opts`; a corrupt record
/// never does (it is reported and the run retrained).
fn is_complete(dir: &Path, run_id: &str, opts: &RunOptions) -> bool {
    if opts.force {
        return false;
    }
    match records::load(dir, run_id) {
        Ok(Some(record)) => !(opts.rerun_failed && record.status != Status::Ok),
        Ok(None) => false,
        Err(err) => {
            eprintln!("warning: {err:#}; the run will be retrained");
            false
        }
    }
}

/// Runs the experiment in `file`: trains every incomplete run, then writes the
/// frames and (unless sharded) the report.
pub fn run_sweep(file: &Path, opts: &RunOptions) -> anyhow::Result<SweepSummary> {
    let clock = Instant::now();
    let spec = config::load(file, opts.max_runs)?;
    for warning in &spec.warnings {
        eprintln!("warning: {}: {warning}", file.display());
    }
    let mut runs = plan::expand(&spec);
    let mut results_dir = opts.results_root.join(&spec.name);
    if let Some(shard) = opts.shard {
        runs.retain(|r| shard.contains(r.plan_index));
        results_dir = shard.dir(&results_dir);
    }
    let _lock = ExperimentLock::acquire(&results_dir)?;
    report_plan_changes(&runs, &results_dir)?;
    let todo: Vec<&RunSpec> = runs
        .iter()
        .filter(|r| !is_complete(&results_dir, &r.run_id, opts))
        .collect();
    let skipped = runs.len() - todo.len();
    if skipped > 0 {
        eprintln!(
            "{skipped} of {} runs already complete in {}: skipped",
            runs.len(),
            results_dir.display()
        );
    }
    let training = Instant::now();
    let trained = train_all(&todo, &results_dir, opts, skipped)?;
    let training = training.elapsed();
    let mut records = Vec::new();
    for run in &runs {
        if let Some(record) = records::load(&results_dir, &run.run_id)? {
            records.push(record);
        }
    }
    let reports_dir = match opts.shard {
        Some(_) => None,
        None => Some(opts.reports_root.join(&spec.name)),
    };
    publish(&records, &results_dir, &spec.report, reports_dir.as_deref())?;
    Ok(SweepSummary {
        results_dir,
        reports_dir,
        planned: runs.len(),
        skipped,
        trained,
        incomplete: runs.len() - records.len(),
        stopped: opts.stop.level() > 0,
        interrupted: opts.stop.signalled(),
        unsuccessful: unsuccessful(&records),
        overhead_ms: (clock.elapsed() - training).as_secs_f64() * 1e3,
    })
}

/// (run_id, status, error) of every record that is not ok.
fn unsuccessful(records: &[RunRecord]) -> Vec<(String, Status, String)> {
    records
        .iter()
        .filter(|r| r.status != Status::Ok)
        .map(|r| {
            (
                r.run_id.clone(),
                r.status,
                r.error.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Says which planned runs are new and which stored runs the plan no longer
/// has (they are kept, and left out of the frames).
fn report_plan_changes(runs: &[RunSpec], dir: &Path) -> anyhow::Result<()> {
    let stored = records::stored_ids(dir)?;
    if stored.is_empty() {
        return Ok(());
    }
    let planned: BTreeSet<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    let new = planned.iter().filter(|id| !stored.contains(**id)).count();
    let stale: Vec<&String> = stored
        .iter()
        .filter(|id| !planned.contains(id.as_str()))
        .collect();
    if new > 0 {
        eprintln!(
            "the plan has {new} runs not stored in {} yet",
            dir.display()
        );
    }
    if !stale.is_empty() {
        let ids: Vec<&str> = stale.iter().map(|s| s.as_str()).collect();
        eprintln!(
            "{} stored runs are no longer in the plan (kept, left out of the frames): {}",
            stale.len(),
            ids.join(", ")
        );
    }
    Ok(())
}

/// Trains `runs` on a pool of `jobs` threads, saving each record as it
/// completes; stops launching runs once `opts.stop` is raised. Returns the
/// number of records saved.
fn train_all(
    runs: &[&RunSpec],
    results_dir: &Path,
    opts: &RunOptions,
    skipped: usize,
) -> anyhow::Result<usize> {
    if runs.is_empty() {
        return Ok(0);
    }
    let provenance = Provenance::detect(opts.jobs);
    let display = Display::new(runs.len() + skipped, skipped);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .context("starting the run pool")?;
    let stop = &opts.stop;
    let saved: Vec<anyhow::Result<bool>> = pool.install(|| {
        runs.par_iter()
            .with_max_len(1)
            .map(|spec| {
                if stop.level() > 0 {
                    return Ok(false);
                }
                let bar = display.started(spec);
                let record = run::execute(spec, &provenance, &mut |p| {
                    if stop.level() > 1 {
                        std::panic::resume_unwind(Box::new(Abandoned));
                    }
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
                if stop.level() > 1 && record.status == Status::Failed {
                    display.abandoned(spec);
                    return Ok(false);
                }
                display.finished(&record);
                if opts.fail_fast && record.status != Status::Ok {
                    stop.drain();
                    display.note("--fail-fast: no new runs will start");
                }
                let saved = records::save(results_dir, &record);
                if let Err(err) = &saved {
                    // A full or read-only disk fails every later run too.
                    stop.drain();
                    display.note(&format!(
                        "cannot save the record of {}: {err:#}; no new runs will start",
                        record.run_id
                    ));
                }
                saved.map(|()| true)
            })
            .collect()
    });
    display.clear();
    let saved = saved.into_iter().collect::<anyhow::Result<Vec<bool>>>()?;
    Ok(saved.into_iter().filter(|&s| s).count())
}

#[derive(Debug)]
pub struct MergeSummary {
    pub results_dir: PathBuf,
    pub reports_dir: PathBuf,
    /// Records in the merged directory.
    pub runs: usize,
    /// Runs found in more than one input (an ok record wins, else the first).
    pub duplicates: usize,
    pub unsuccessful: Vec<(String, Status, String)>,
}

/// Merges the run records of `dirs` (e.g. the shards of one experiment) into
/// one experiment directory (`into`, default `<results_root>/<experiment>`),
/// then writes its frames, in plan order, and its report. A corrupt record
/// or records of different experiments are errors: nothing is merged silently.
pub fn merge(
    dirs: &[PathBuf],
    into: Option<&Path>,
    results_root: &Path,
    reports_root: &Path,
) -> anyhow::Result<MergeSummary> {
    let mut chosen: std::collections::BTreeMap<String, RunRecord> = Default::default();
    let mut duplicates = 0;
    for dir in dirs {
        if !dir.is_dir() {
            eprintln!("warning: {} is not a directory: skipped", dir.display());
            continue;
        }
        for id in records::stored_ids(dir)? {
            let record = records::load(dir, &id)?.expect("listed records exist");
            match chosen.get(&id) {
                None => {
                    chosen.insert(id, record);
                }
                Some(kept) => {
                    duplicates += 1;
                    if kept.status != Status::Ok && record.status == Status::Ok {
                        chosen.insert(id, record);
                    }
                }
            }
        }
    }
    let experiments: BTreeSet<&str> = chosen.values().map(|r| r.experiment.as_str()).collect();
    let experiment = match experiments.len() {
        0 => anyhow::bail!("no run records found in {}", display_list(dirs)),
        1 => experiments.into_iter().next().expect("one name").to_string(),
        _ => anyhow::bail!(
            "the directories hold runs of different experiments ({}); merge one experiment at a time",
            experiments.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    let results_dir = into.map_or_else(|| results_root.join(&experiment), Path::to_path_buf);
    let _lock = ExperimentLock::acquire(&results_dir)?;
    for record in chosen.values() {
        if records::load(&results_dir, &record.run_id)
            .ok()
            .flatten()
            .as_ref()
            != Some(record)
        {
            records::save(&results_dir, record)?;
        }
    }
    let mut records = Vec::new();
    for id in records::stored_ids(&results_dir)? {
        records.push(records::load(&results_dir, &id)?.expect("listed records exist"));
    }
    records.sort_by(|a, b| (a.plan_index, &a.run_id).cmp(&(b.plan_index, &b.run_id)));
    // The report section travels with the shards; the first one found wins.
    let report_config = dirs
        .iter()
        .find(|d| d.join(report::CONFIG_FILE).exists())
        .map_or_else(
            || report::load_config(&results_dir),
            |d| report::load_config(d),
        )?;
    let reports_dir = reports_root.join(&experiment);
    publish(&records, &results_dir, &report_config, Some(&reports_dir))?;
    Ok(MergeSummary {
        results_dir,
        reports_dir,
        runs: records.len(),
        duplicates,
        unsuccessful: unsuccessful(&records),
    })
}

/// Writes the frames of `records` and the report section into
/// `results_dir`, and the report into `reports_dir` (none for a shard).
fn publish(
    records: &[RunRecord],
    results_dir: &Path,
    report_config: &report::ReportConfig,
    reports_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let mut frames = frames::collect(records)?;
    frames::write(&mut frames, results_dir)?;
    report::save_config(results_dir, report_config)?;
    if let Some(dir) = reports_dir {
        report::render(&frames, report_config, dir)?;
    }
    Ok(())
}

impl std::fmt::Display for MergeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} runs merged into {} ({} found in more than one directory), report in {}",
            self.runs,
            self.results_dir.display(),
            self.duplicates,
            self.reports_dir.display()
        )?;
        write_unsuccessful(f, &self.unsuccessful)
    }
}

fn display_list(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_cover_the_plan_once() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1", "a/b", "1/0", "-1/2"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("valid: i/n with 1 <= i <= n"), "{bad}: {err}");
        }
        for count in 1..6 {
            for plan_index in 0..23 {
                let owners = (1..=count)
                    .filter(|&index| Shard { index, count }.contains(plan_index))
                    .count();
                assert_eq!(owners, 1, "run {plan_index} of {count} shards");
            }
        }
    }

    #[test]
    fn stop_escalates_and_drain_only_starts_it() {
        let stop = Stop::default();
        stop.drain();
        assert_eq!(stop.level(), 1);
        stop.drain();
        assert_eq!(stop.level(), 1, "a second failure does not abandon runs");
        assert_eq!(stop.escalate(), 2);
    }
}

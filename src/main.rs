//! Command-line entry point: argument parsing and dispatch only.

use clap::{Parser, Subcommand};
use posembed::bench::{self, ReferenceModel};
use posembed::experiment::config::{self, ConfigError};
use posembed::experiment::plan;
use posembed::nn::Activation;
use posembed::store::frames as results;
use posembed::sweep::runner::{self, RunOptions, Shard, Stop};
use posembed::sweep::slurm::SlurmPlan;
use posembed::{positional, report, tasks};

#[derive(Clone, Copy, clap::ValueEnum)]
enum ActivationArg {
    Relu,
    Gelu,
}
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "posembed",
    version,
    about = "Positional-embedding ablations for Transformers: YAML sweep → training → tables and charts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train every run of an experiment file, then write results/<name>/ and reports/<name>/.
    /// Runs that already have a record are skipped, so an interrupted sweep resumes.
    Run {
        /// The experiment YAML file.
        file: PathBuf,
        /// Runs trained at once (default: number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Retrain runs that are already complete.
        #[arg(long)]
        force: bool,
        /// Retrain runs recorded as failed or diverged.
        #[arg(long)]
        rerun_failed: bool,
        /// Launch no new runs after the first failed or diverged one.
        #[arg(long)]
        fail_fast: bool,
        /// Train only shard i of n (1-based) into results/<name>/shards/i-of-n/;
        /// combine the shards with `posembed merge`.
        #[arg(long, value_name = "I/N")]
        shard: Option<Shard>,
        /// Where results/<name>/ goes.
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        /// Where reports/<name>/ goes.
        #[arg(long, default_value = "reports")]
        reports_dir: PathBuf,
        /// Refuse files that expand to more runs than this.
        #[arg(long, default_value_t = config::DEFAULT_MAX_RUNS)]
        max_runs: usize,
    },
    /// Merge run records of several results directories (e.g. shards) into one
    /// experiment directory, then write its frames and report.
    Merge {
        /// Results directories, e.g. results/NAME/shards/*.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The merged directory (default: results/<experiment>).
        #[arg(long)]
        into: Option<PathBuf>,
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        #[arg(long, default_value = "reports")]
        reports_dir: PathBuf,
    },
    /// Write sbatch scripts that run the experiment as a SLURM job array (one
    /// shard per task) plus a dependent merge-and-report job.
    Slurm {
        file: PathBuf,
        /// Array tasks, i.e. shards (default: one per run).
        #[arg(long)]
        array_size: Option<usize>,
        #[arg(long)]
        partition: Option<String>,
        /// Time limit per array task, in a format sbatch accepts (e.g. 02:00:00).
        #[arg(long)]
        time: Option<String>,
        /// CPUs per array task; runs of a shard train this many at once.
        #[arg(long, default_value_t = 1)]
        cpus_per_task: usize,
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        #[arg(long, default_value = "reports")]
        reports_dir: PathBuf,
        #[arg(long, default_value_t = config::DEFAULT_MAX_RUNS)]
        max_runs: usize,
    },
    /// Validate an experiment file and print its runs (run_id, seed, varying parameters) without training.
    Plan {
        file: PathBuf,
        #[arg(long, default_value_t = config::DEFAULT_MAX_RUNS)]
        max_runs: usize,
    },
    /// Re-render tables and charts from a results directory's parquet files.
    Report {
        /// A results/<name>/ directory.
        dir: PathBuf,
        /// Output directory (default: reports/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Table rows: a parameter (e.g. positional.scheme, model.d_model, seed) or length_bucket.
        #[arg(long)]
        rows: Option<String>,
        /// Table columns: a parameter or length_bucket.
        #[arg(long)]
        columns: Option<String>,
        /// headline, exact_match, token_acc, loss, perplexity or tokens_per_s.
        #[arg(long)]
        metric: Option<String>,
        /// A YAML list of in_distribution, out_of_distribution, all or [min, max],
        /// e.g. '[out_of_distribution, [17, 32]]'.
        #[arg(long)]
        buckets: Option<String>,
        /// mean_std, max or median_iqr.
        #[arg(long)]
        aggregate: Option<String>,
        /// The row every other row is tested against (Welch's t-test).
        #[arg(long)]
        baseline: Option<String>,
        /// Add 95% confidence intervals of the mean.
        #[arg(long)]
        ci: bool,
        /// Add each row's mean reciprocal rank over the columns.
        #[arg(long)]
        rank: bool,
        /// log or linear y axis of the training curves.
        #[arg(long)]
        loss_scale: Option<String>,
    },
    /// List the positional schemes with their options, defaults and citation.
    Schemes,
    /// Time training and evaluation steps of a reference model for each scheme (one thread each).
    Bench {
        /// s1: d_model 128, 2 layers, batch 32 × 64; s2: d_model 256, 4 layers, batch 16 × 128.
        #[arg(long, value_enum, default_value = "s1")]
        model: ReferenceModel,
        /// A scheme name or a YAML option map, e.g. '{scheme: rope, fraction: 0.25}';
        /// repeat for several (default: every scheme with default options).
        #[arg(long)]
        scheme: Vec<String>,
        /// Timed steps of each kind per scheme and repetition.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Interleaved repetitions; the table shows per-scheme medians.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        #[arg(long, value_enum, default_value = "relu")]
        activation: ActivationArg,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Instead of model steps, time whole sweeps through the runner:
        /// `--runs` identical small runs once per `--jobs` value.
        #[arg(long)]
        sweep: bool,
        /// With --sweep: runs per sweep.
        #[arg(long, default_value_t = 4)]
        runs: usize,
        /// With --sweep: training steps per run.
        #[arg(long, default_value_t = 300)]
        run_steps: usize,
        /// Model steps: copies trained side by side, one thread each, summed
        /// (default 1). With --sweep: the job counts to time (default 1,2).
        #[arg(long, value_delimiter = ',')]
        jobs: Vec<usize>,
    },
    /// List the tasks, or print one example of a task.
    Tasks {
        /// Print one example of this task (default options, its longest
        /// training length, a fixed seed) as readable input → output.
        #[arg(long, value_name = "NAME")]
        example: Option<String>,
    },
}

fn main() -> ExitCode {
    posembed::nn::kernels::keep_freed_memory();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            if let Some(config_error) = err.downcast_ref::<ConfigError>() {
                eprintln!("error: {config_error}");
                return ExitCode::from(2);
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            file,
            jobs,
            force,
            rerun_failed,
            fail_fast,
            shard,
            results_dir,
            reports_dir,
            max_runs,
        } => {
            let defaults = RunOptions::default();
            let stop = Stop::default();
            let interrupted = install_interrupt_handler(stop.clone())?;
            let opts = RunOptions {
                jobs: jobs.unwrap_or(defaults.jobs),
                force,
                rerun_failed,
                fail_fast,
                shard,
                results_root: results_dir,
                reports_root: reports_dir,
                max_runs,
                stop,
            };
            let summary = runner::run_sweep(&file, &opts)?;
            let report = summary
                .reports_dir
                .as_ref()
                .map_or("merge shards to report".to_string(), |d| {
                    format!("report in {}", d.display())
                });
            println!(
                "{} runs planned, {} trained, {} skipped; results in {}, {report} ({:.0} ms outside training)",
                summary.planned,
                summary.trained,
                summary.skipped,
                summary.results_dir.display(),
                summary.overhead_ms,
            );
            print_unsuccessful(&summary.unsuccessful);
            if interrupted.load(Ordering::SeqCst) {
                println!(
                    "interrupted: {} of {} runs have no record; run the same command again to resume",
                    summary.incomplete, summary.planned
                );
                return Ok(ExitCode::from(130));
            }
            if summary.stopped {
                println!(
                    "--fail-fast: stopped with {} of {} runs not started; rerun to continue",
                    summary.incomplete, summary.planned
                );
            }
            Ok(
                if summary.unsuccessful.is_empty() && summary.incomplete == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        Command::Merge {
            dirs,
            into,
            results_dir,
            reports_dir,
        } => {
            let summary = runner::merge(&dirs, into.as_deref(), &results_dir, &reports_dir)?;
            println!(
                "{} runs merged into {} ({} found in more than one directory), report in {}",
                summary.runs,
                summary.results_dir.display(),
                summary.duplicates,
                summary.reports_dir.display()
            );
            print_unsuccessful(&summary.unsuccessful);
            Ok(if summary.unsuccessful.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Slurm {
            file,
            array_size,
            partition,
            time,
            cpus_per_task,
            results_dir,
            reports_dir,
            max_runs,
        } => {
            let spec = config::load(&file, max_runs)?;
            let runs = plan::expand(&spec).len();
            let array_size = array_size.unwrap_or(runs);
            if array_size == 0 || array_size > runs || cpus_per_task == 0 {
                anyhow::bail!(
                    "--array-size {array_size} with {runs} runs and --cpus-per-task {cpus_per_task}; valid: 1 to {runs} array tasks, at least 1 CPU"
                );
            }
            let cwd = std::env::current_dir()?;
            let absolute = |p: &std::path::Path| cwd.join(p);
            let plan = SlurmPlan {
                experiment: spec.name.clone(),
                posembed: std::env::current_exe()?,
                file: absolute(&file),
                workdir: cwd.clone(),
                results_root: absolute(&results_dir),
                reports_root: absolute(&reports_dir),
                array_size,
                cpus_per_task,
                partition,
                time,
            };
            let dir = plan.dir();
            for script in plan.scripts() {
                let path = dir.join(script.name);
                posembed::store::atomic::write_atomic(&path, script.text.as_bytes())?;
                if script.name.ends_with(".sh") {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                }
            }
            println!(
                "{runs} runs in {array_size} array tasks; scripts in {}\nsubmit with: bash {}",
                dir.display(),
                dir.join("submit.sh").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { file, max_runs } => {
            let spec = config::load(&file, max_runs)?;
            for warning in &spec.warnings {
                eprintln!("warning: {}: {warning}", file.display());
            }
            print!("{}", plan::table(&plan::expand(&spec)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            dir,
            out,
            rows,
            columns,
            metric,
            buckets,
            aggregate,
            baseline,
            ci,
            rank,
            loss_scale,
        } => {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let out = out.unwrap_or_else(|| PathBuf::from("reports").join(name));
            let frames = results::read(&dir)?;
            let text = serde_yaml::Value::String;
            let mut overrides: Vec<(&str, serde_yaml::Value)> = [
                ("rows", rows.map(text)),
                ("columns", columns.map(text)),
                ("metric", metric.map(text)),
                ("aggregate", aggregate.map(text)),
                ("baseline", baseline.map(text)),
                ("loss_scale", loss_scale.map(text)),
                ("ci", ci.then_some(serde_yaml::Value::Bool(true))),
                ("rank", rank.then_some(serde_yaml::Value::Bool(true))),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            if let Some(buckets) = buckets {
                match serde_yaml::from_str(&buckets) {
                    Ok(value) => overrides.push(("buckets", value)),
                    Err(e) => {
                        eprintln!("error: --buckets: {e}; valid: a YAML list such as '[out_of_distribution, [17, 32]]'");
                        return Ok(ExitCode::from(2));
                    }
                }
            }
            let cfg = match report::configure(&dir, &overrides, &frames)? {
                Ok(cfg) => cfg,
                Err(message) => {
                    eprintln!("error: {message}");
                    return Ok(ExitCode::from(2));
                }
            };
            for path in report::render(&frames, &cfg, &out)? {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schemes => {
            for s in positional::SCHEMES {
                println!("{:<12} {}", s.name, s.summary);
                println!("{:<12} options (defaults): {}", "", (s.defaults)());
                println!("{:<12} {}", "", s.citation);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            model,
            scheme,
            steps,
            repeat,
            activation,
            json,
            sweep,
            runs,
            run_steps,
            jobs,
        } => {
            if sweep {
                let jobs = if jobs.is_empty() { vec![1, 2] } else { jobs };
                let results = bench::sweep_throughput(runs, run_steps, &jobs)?;
                if json {
                    for r in &results {
                        println!("{}", serde_json::to_string(r)?);
                    }
                } else {
                    print!("{}", bench::sweep_table(&results));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let names: Vec<String> = if scheme.is_empty() {
                positional::SCHEMES
                    .iter()
                    .map(|s| s.name.to_string())
                    .collect()
            } else {
                scheme
            };
            let activation = match activation {
                ActivationArg::Relu => Activation::Relu,
                ActivationArg::Gelu => Activation::Gelu,
            };
            // A bad --scheme is a usage error, like clap's: exit 2.
            let configs = match names
                .iter()
                .map(|name| bench::scheme_config(name, model))
                .collect::<anyhow::Result<Vec<_>>>()
            {
                Ok(configs) => configs,
                Err(err) => {
                    eprintln!("error: --scheme: {err:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            // Schemes alternate within each repetition so that drifts in machine
            // speed hit them alike; the table reports per-scheme medians.
            let jobs = match jobs.as_slice() {
                [] => 1,
                [one] if *one >= 1 => *one,
                [_] => {
                    eprintln!("error: --jobs: 0 copies; valid: a count of at least 1");
                    return Ok(ExitCode::from(2));
                }
                _ => {
                    eprintln!(
                        "error: --jobs: one count for model steps (a list only with --sweep)"
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            let mut repeats = Vec::new();
            for _ in 0..repeat.max(1) {
                let round: Vec<_> = names
                    .iter()
                    .zip(&configs)
                    .map(|(name, config)| {
                        bench::measure(model, config, name, steps, activation, jobs)
                    })
                    .collect();
                if json {
                    for result in &round {
                        println!("{}", serde_json::to_string(result)?);
                    }
                }
                repeats.push(round);
            }
            if !json {
                print!("{}", bench::table(&bench::medians(&repeats)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks { example: None } => {
            let width = tasks::TASKS.iter().map(|t| t.name.len()).max().unwrap_or(0);
            for t in tasks::TASKS {
                println!("{:<width$} {}", t.name, t.summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks {
            example: Some(name),
        } => match tasks::example_text(&name) {
            Ok(text) => {
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            Err(message) => {
                eprintln!("error: --example: {message}");
                Ok(ExitCode::from(2))
            }
        },
    }
}

fn print_unsuccessful(unsuccessful: &[(String, posembed::training::record::Status, String)]) {
    if unsuccessful.is_empty() {
        return;
    }
    println!("\n{} runs did not finish ok:", unsuccessful.len());
    for (id, status, error) in unsuccessful {
        println!("  {id}  {:<8}  {error}", status.as_str());
    }
}

/// SIGINT/SIGTERM: the first stops launching runs, the second abandons the
/// running ones, the third exits at once. Returns whether one arrived.
fn install_interrupt_handler(stop: Stop) -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let seen = interrupted.clone();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            seen.store(true, Ordering::SeqCst);
            match stop.escalate() {
                1 => eprintln!(
                    "\ninterrupted: no new runs will start; running runs finish (interrupt again to abandon them)"
                ),
                2 => eprintln!("\ninterrupted again: abandoning running runs"),
                _ => std::process::exit(130),
            }
        }
    });
    Ok(interrupted)
}

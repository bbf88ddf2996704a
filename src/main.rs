//! Command-line entry point: argument definitions and one small function
//! per subcommand; the work is done by the library's modules.

use clap::{Args, Parser, Subcommand};
use posembed::bench::{self, BenchRequest};
use posembed::experiment::config::{self, ConfigError};
use posembed::experiment::plan;
use posembed::options::{registry, UsageError};
use posembed::report::{self, ReportOverrides};
use posembed::store::frames;
use posembed::sweep::runner::{self, RunOptions, Shard, Stop};
use posembed::sweep::slurm::{SlurmPlan, SlurmRequest};
use posembed::{positional, tasks};
use std::path::PathBuf;
use std::process::ExitCode;

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
    Run(RunArgs),
    /// Merge run records of several results directories (e.g. shards) into one
    /// experiment directory, then write its frames and report.
    Merge(MergeArgs),
    /// Write sbatch scripts that run the experiment as a SLURM job array (one
    /// shard per task) plus a dependent merge-and-report job.
    Slurm(SlurmRequest),
    /// Validate an experiment file and print its runs (run_id, seed, varying parameters) without training.
    Plan(PlanArgs),
    /// Re-render tables and charts from a results directory's parquet files.
    Report(ReportArgs),
    /// List the positional schemes with their options, defaults and citation.
    Schemes,
    /// Time training and evaluation steps of a reference model for each scheme (one thread each).
    Bench(BenchRequest),
    /// List the tasks, or print one example of a task.
    Tasks(TasksArgs),
}

#[derive(Args)]
struct RunArgs {
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
}

#[derive(Args)]
struct MergeArgs {
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
}

#[derive(Args)]
struct PlanArgs {
    file: PathBuf,
    #[arg(long, default_value_t = config::DEFAULT_MAX_RUNS)]
    max_runs: usize,
}

#[derive(Args)]
struct ReportArgs {
    /// A results/<name>/ directory.
    dir: PathBuf,
    /// Output directory (default: reports/<name>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    overrides: ReportOverrides,
}

#[derive(Args)]
struct TasksArgs {
    /// Print one example of this task (default options, its longest
    /// training length, a fixed seed) as readable input → output.
    #[arg(long, value_name = "NAME")]
    example: Option<String>,
}

fn main() -> ExitCode {
    posembed::nn::kernels::keep_freed_memory();
    let outcome = match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Merge(args) => merge(args),
        Command::Slurm(args) => slurm(args),
        Command::Plan(args) => plan(args),
        Command::Report(args) => report(args),
        Command::Schemes => schemes(),
        Command::Bench(args) => bench(args),
        Command::Tasks(args) => tasks(args),
    };
    outcome.unwrap_or_else(|err| {
        // Bad input (the experiment file, a flag) exits 2, as clap's own errors do.
        if let Some(e) = err.downcast_ref::<ConfigError>() {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        if let Some(e) = err.downcast_ref::<UsageError>() {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        eprintln!("error: {err:#}");
        ExitCode::FAILURE
    })
}

type Outcome = anyhow::Result<ExitCode>;

fn run(args: RunArgs) -> Outcome {
    let stop = Stop::default();
    stop.listen_for_signals()?;
    let opts = RunOptions {
        jobs: args.jobs.unwrap_or(RunOptions::default().jobs),
        force: args.force,
        rerun_failed: args.rerun_failed,
        fail_fast: args.fail_fast,
        shard: args.shard,
        results_root: args.results_dir,
        reports_root: args.reports_dir,
        max_runs: args.max_runs,
        stop,
    };
    let summary = runner::run_sweep(&args.file, &opts)?;
    print!("{summary}");
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else if summary.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn merge(args: MergeArgs) -> Outcome {
    let summary = runner::merge(
        &args.dirs,
        args.into.as_deref(),
        &args.results_dir,
        &args.reports_dir,
    )?;
    print!("{summary}");
    Ok(exit_code(summary.unsuccessful.is_empty()))
}

fn slurm(request: SlurmRequest) -> Outcome {
    let plan = SlurmPlan::new(request)?;
    let dir = plan.write()?;
    println!(
        "{} runs in {} array tasks; scripts in {}\nsubmit with: bash {}",
        plan.runs,
        plan.array_size,
        dir.display(),
        dir.join("submit.sh").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn plan(args: PlanArgs) -> Outcome {
    let spec = config::load(&args.file, args.max_runs)?;
    for warning in &spec.warnings {
        eprintln!("warning: {}: {warning}", args.file.display());
    }
    print!("{}", plan::table(&plan::expand(&spec)));
    Ok(ExitCode::SUCCESS)
}

fn report(args: ReportArgs) -> Outcome {
    let out = args.out.unwrap_or_else(|| report::default_dir(&args.dir));
    let frames = frames::read(&args.dir)?;
    let cfg = report::configure(&args.dir, &args.overrides, &frames)?;
    for path in report::render(&frames, &cfg, &out)? {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn schemes() -> Outcome {
    print!("{}", registry::listing(positional::ENTRIES));
    Ok(ExitCode::SUCCESS)
}

fn bench(request: BenchRequest) -> Outcome {
    bench::run(&request)?;
    Ok(ExitCode::SUCCESS)
}

fn tasks(args: TasksArgs) -> Outcome {
    match args.example {
        Some(name) => print!("{}", tasks::example_text(&name)?),
        None => print!("{}", registry::listing(tasks::ENTRIES)),
    }
    Ok(ExitCode::SUCCESS)
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

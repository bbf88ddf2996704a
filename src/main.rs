//! Command-line entry point: argument parsing and dispatch only.

use clap::{Parser, Subcommand};
use posembed::bench::{self, ReferenceModel};
use posembed::config::{self, ConfigError};
use posembed::model::Activation;
use posembed::runner::{self, RunOptions};
use posembed::{plan, positional, report, results, tasks};

#[derive(Clone, Copy, clap::ValueEnum)]
enum ActivationArg {
    Relu,
    Gelu,
}
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
    Run {
        /// The experiment YAML file.
        file: PathBuf,
        /// Runs trained at once (default: number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Retrain runs that are already complete.
        #[arg(long)]
        force: bool,
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
            results_dir,
            reports_dir,
            max_runs,
        } => {
            let defaults = RunOptions::default();
            let opts = RunOptions {
                jobs: jobs.unwrap_or(defaults.jobs),
                force,
                results_root: results_dir,
                reports_root: reports_dir,
                max_runs,
            };
            let summary = runner::run_sweep(&file, &opts)?;
            println!(
                "{} runs planned, {} trained, {} skipped; results in {}, report in {}",
                summary.planned,
                summary.trained,
                summary.skipped,
                summary.results_dir.display(),
                summary.reports_dir.display()
            );
            if summary.unsuccessful.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            println!("\n{} runs did not finish ok:", summary.unsuccessful.len());
            for (id, status, error) in &summary.unsuccessful {
                println!("  {id}  {:<8}  {error}", status.as_str());
            }
            Ok(ExitCode::FAILURE)
        }
        Command::Plan { file, max_runs } => {
            let spec = config::load(&file, max_runs)?;
            for warning in &spec.warnings {
                eprintln!("warning: {}: {warning}", file.display());
            }
            print!("{}", plan::table(&plan::expand(&spec)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { dir, out } => {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let out = out.unwrap_or_else(|| PathBuf::from("reports").join(name));
            let frames = results::read(&dir)?;
            for path in report::render(&frames, &out)? {
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
        } => {
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
            let configs = names
                .iter()
                .map(|name| bench::scheme_config(name, model))
                .collect::<anyhow::Result<Vec<_>>>()?;
            // Schemes alternate within each repetition so that drifts in machine
            // speed hit them alike; the table reports per-scheme medians.
            let mut repeats = Vec::new();
            for _ in 0..repeat.max(1) {
                let round: Vec<_> = names
                    .iter()
                    .zip(&configs)
                    .map(|(name, config)| bench::measure(model, config, name, steps, activation))
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

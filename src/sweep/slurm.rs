//! `posembed slurm`: sbatch scripts that run an experiment as a job array,
//! one shard per array task, and a dependent job that merges the shards and
//! renders the report.

use crate::experiment::{config, plan};
use crate::options::UsageError;
use crate::store::atomic::write_atomic;
use std::path::{Path, PathBuf};

/// What `posembed slurm` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmRequest {
    /// The experiment YAML file.
    pub file: PathBuf,
    /// Array tasks, i.e. shards (default: one per run).
    #[arg(long)]
    pub array_size: Option<usize>,
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per array task, in a format sbatch accepts (e.g. 02:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per array task; runs of a shard train this many at once.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    #[arg(long, default_value = "reports")]
    pub reports_dir: PathBuf,
    #[arg(long, default_value_t = config::DEFAULT_MAX_RUNS)]
    pub max_runs: usize,
}

/// What the scripts run and how SLURM should schedule them. Paths are
/// absolute so that the jobs do not depend on where they start.
#[derive(Debug, Clone)]
pub struct SlurmPlan {
    pub experiment: String,
    /// Runs in the plan.
    pub runs: usize,
    pub posembed: PathBuf,
    pub file: PathBuf,
    pub workdir: PathBuf,
    pub results_root: PathBuf,
    pub reports_root: PathBuf,
    pub array_size: usize,
    pub cpus_per_task: usize,
    pub partition: Option<String>,
    pub time: Option<String>,
}

/// A script file and its contents.
pub struct Script {
    pub name: &'static str,
    pub text: String,
}

/// Single-quotes `path` for bash.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

impl SlurmPlan {
    /// Validates the experiment file and the request; paths become absolute.
    pub fn new(request: SlurmRequest) -> anyhow::Result<SlurmPlan> {
        let spec = config::load(&request.file, request.max_runs)?;
        let runs = plan::expand(&spec).len();
        let array_size = request.array_size.unwrap_or(runs);
        if array_size == 0 || array_size > runs || request.cpus_per_task == 0 {
            return Err(UsageError(format!(
                "--array-size {array_size} with {runs} runs and --cpus-per-task {}; valid: 1 to {runs} array tasks, at least 1 CPU",
                request.cpus_per_task
            ))
            .into());
        }
        let cwd = std::env::current_dir()?;
        Ok(SlurmPlan {
            experiment: spec.name,
            runs,
            posembed: std::env::current_exe()?,
            file: cwd.join(&request.file),
            results_root: cwd.join(&request.results_dir),
            reports_root: cwd.join(&request.reports_dir),
            workdir: cwd,
            array_size,
            cpus_per_task: request.cpus_per_task,
            partition: request.partition,
            time: request.time,
        })
    }

    /// Writes the scripts into [`SlurmPlan::dir`] and returns it.
    pub fn write(&self) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir();
        for script in self.scripts() {
            let path = dir.join(script.name);
            write_atomic(&path, script.text.as_bytes())?;
            if script.name.ends_with(".sh") {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        Ok(dir)
    }

    /// `<results>/<name>/slurm/`, where the scripts and job logs go.
    pub fn dir(&self) -> PathBuf {
        self.results_root.join(&self.experiment).join("slurm")
    }

    fn header(&self, job: &str, cpus: usize, log: &str) -> String {
        let mut out = format!(
            "#!/bin/bash\n#SBATCH --job-name={job}\n#SBATCH --cpus-per-task={cpus}\n#SBATCH --chdir={}\n#SBATCH --output={}\n",
            self.workdir.display(),
            self.dir().join("logs").join(log).display(),
        );
        if let Some(p) = &self.partition {
            out.push_str(&format!("#SBATCH --partition={p}\n"));
        }
        if let Some(t) = &self.time {
            out.push_str(&format!("#SBATCH --time={t}\n"));
        }
        out
    }

    /// `array.sbatch` (one shard per task), `merge.sbatch` (merge + report)
    /// and `submit.sh`, which submits the array and then the merge job with
    /// `afterany`, so that the report is written even when some runs failed.
    pub fn scripts(&self) -> Vec<Script> {
        let n = self.array_size;
        let name = format!("posembed-{}", self.experiment);
        let array = format!(
            "{}#SBATCH --array=1-{n}\nset -euo pipefail\n# One run per CPU; each run is single-threaded.\nexec {} run {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --jobs {} --results-dir {} --reports-dir {}\n",
            self.header(&name, self.cpus_per_task, "shard-%a.out"),
            quote(&self.posembed),
            quote(&self.file),
            self.cpus_per_task,
            quote(&self.results_root),
            quote(&self.reports_root),
        );
        let shards = self.results_root.join(&self.experiment).join("shards");
        let shard_dirs: Vec<String> = (1..=n)
            .map(|i| quote(&shards.join(format!("{i}-of-{n}"))))
            .collect();
        let merge = format!(
            "{}set -euo pipefail\nexec {} merge {} --into {} --reports-dir {}\n",
            self.header(&format!("{name}-merge"), 1, "merge.out"),
            quote(&self.posembed),
            shard_dirs.join(" "),
            quote(&self.results_root.join(&self.experiment)),
            quote(&self.reports_root),
        );
        let submit = "#!/bin/bash\n# Submits the shard array, then the merge job once every shard has ended.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\nmkdir -p logs\narray=$(sbatch --parsable array.sbatch)\narray=${array%%;*}\nmerge=$(sbatch --parsable --dependency=afterany:\"$array\" merge.sbatch)\necho \"submitted array job $array and merge job ${merge%%;*}\"\n".to_string();
        vec![
            Script {
                name: "array.sbatch",
                text: array,
            },
            Script {
                name: "merge.sbatch",
                text: merge,
            },
            Script {
                name: "submit.sh",
                text: submit,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> SlurmPlan {
        SlurmPlan {
            experiment: "sweep".into(),
            runs: 6,
            posembed: "/opt/posembed/bin/posembed".into(),
            file: "/home/r/exp's/sweep.yaml".into(),
            workdir: "/home/r".into(),
            results_root: "/home/r/results".into(),
            reports_root: "/home/r/reports".into(),
            array_size: 3,
            cpus_per_task: 2,
            partition: Some("cpu".into()),
            time: Some("02:00:00".into()),
        }
    }

    #[test]
    fn array_runs_one_shard_per_task() {
        let scripts = plan().scripts();
        let array = &scripts[0].text;
        for line in [
            "#SBATCH --array=1-3",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --partition=cpu",
            "#SBATCH --time=02:00:00",
            "#SBATCH --chdir=/home/r",
            "#SBATCH --output=/home/r/results/sweep/slurm/logs/shard-%a.out",
            "exec '/opt/posembed/bin/posembed' run '/home/r/exp'\\''s/sweep.yaml' --shard \"${SLURM_ARRAY_TASK_ID}/3\" --jobs 2",
        ] {
            assert!(array.contains(line), "`{line}` missing:\n{array}");
        }
        let merge = &scripts[1].text;
        assert!(merge.contains(
            "merge '/home/r/results/sweep/shards/1-of-3' '/home/r/results/sweep/shards/2-of-3' '/home/r/results/sweep/shards/3-of-3' --into '/home/r/results/sweep'"
        ), "{merge}");
        assert!(scripts[2].text.contains("--dependency=afterany:"));
    }
}

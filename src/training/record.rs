//! The per-run record: everything measured for one run. The store keeps it
//! as `results/<experiment>/runs/<run_id>/record.json`.

use super::eval::EvalByLength;
use super::train::CurvePoint;
use crate::model::PositionStructure;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Diverged,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Diverged => "diverged",
            Status::Failed => "failed",
        }
    }
}

/// Where and with what a run was produced (recorded, never hashed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub posembed_version: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub host: Option<String>,
    /// `rustc --version` of the compiler that built posembed.
    #[serde(default)]
    pub rustc_version: Option<String>,
    /// The first `model name` of /proc/cpuinfo.
    #[serde(default)]
    pub cpu_model: Option<String>,
    pub threads: usize,
}

impl Provenance {
    /// Reads the code version from the current directory's git checkout, if any.
    pub fn detect(threads: usize) -> Self {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let git_commit = git(&["rev-parse", "HEAD"]);
        let git_dirty = git_commit
            .as_ref()
            .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.is_empty());
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, name)| name.trim().to_string())
            });
        Provenance {
            posembed_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit,
            git_dirty,
            host,
            rustc_version: Some(env!("POSEMBED_RUSTC_VERSION").to_string())
                .filter(|v| !v.is_empty()),
            cpu_model,
            threads,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub group_id: String,
    pub experiment: String,
    pub seed: u64,
    /// Position in the plan that produced it; orders merged shards.
    #[serde(default)]
    pub plan_index: usize,
    /// The canonical resolved configuration.
    pub config: serde_json::Value,
    pub status: Status,
    pub error: Option<String>,
    pub diverged_step: Option<usize>,
    pub params: usize,
    pub train_tokens: usize,
    pub train_seconds: f64,
    pub train_tokens_per_s: f64,
    pub wall_time_s: f64,
    pub final_train_loss: Option<f64>,
    pub length_unit: String,
    /// The task is language modelling: every position scored, perplexity its metric.
    #[serde(default)]
    pub language_model: bool,
    /// The in-distribution lengths ([`crate::tasks::Task::seen_lengths`]).
    pub train_min: usize,
    pub train_max: usize,
    pub eval: Vec<EvalByLength>,
    pub curves: Vec<CurvePoint>,
    /// The trained scheme's position structure, for the report's chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_structure: Option<PositionStructure>,
    pub provenance: Provenance,
    pub started_at_unix: f64,
    pub finished_at_unix: f64,
}

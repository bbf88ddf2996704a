//! Helpers shared by the command-line tests. Each test crate uses a subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the posembed binary in `dir`.
pub fn posembed(dir: &Path, args: &[&str]) -> Output {
    posembed_env(dir, args, &[])
}

/// Runs the posembed binary in `dir` with extra environment variables.
pub fn posembed_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posembed"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("posembed runs")
}

/// stdout then stderr, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The run ids of `file` in plan order, from `posembed plan`.
pub fn run_ids(dir: &Path, file: &str) -> Vec<String> {
    let out = posembed(dir, &["plan", file]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| id.len() == 12)
        .map(String::from)
        .collect()
}

/// Complete records under `dir/results/<experiment>/runs/`.
pub fn records(dir: &Path, experiment: &str) -> usize {
    std::fs::read_dir(dir.join("results").join(experiment).join("runs"))
        .map(|d| {
            d.filter(|e| e.as_ref().unwrap().path().join("record.json").exists())
                .count()
        })
        .unwrap_or(0)
}

//! The sweep runner from the command line: crashes, interrupts, failures,
//! shards and merges, in temporary directories.

mod common;

use common::{posembed, posembed_env, text};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Six tiny runs (three schemes × two seeds), each well under a second.
const SWEEP: &str = "
name: sweep
seeds: [0, 1]
defaults:
  model: {d_model: 16, ff: 64, layers: 1, heads: 2}
  positional: {scheme: none}
  task: {name: copy, symbols: 4, train_lengths: [1, 4]}
  train: {steps: 150, batch_size: 8, lr: 3.0e-3, warmup: 5, log_every: 50}
  eval: {lengths: [2, 4, 6], samples: 16}
grid:
  positional.scheme: [none, alibi, rope]
";

/// An experiment directory with `yaml` written as sweep.yaml.
fn workspace(yaml: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sweep.yaml"), yaml).unwrap();
    tmp
}

/// An uninterrupted reference sweep's eval frame and summary table.
fn reference() -> (Vec<u8>, Vec<u8>) {
    let tmp = workspace(SWEEP);
    let out = posembed(tmp.path(), &["run", "sweep.yaml", "--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    (
        std::fs::read(tmp.path().join("results/sweep/eval.parquet")).unwrap(),
        std::fs::read(tmp.path().join("reports/sweep/summary.md")).unwrap(),
    )
}

/// Starts a sweep with one job and waits until `records` runs are stored.
fn start_and_wait_for(dir: &Path, records_wanted: usize) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_posembed"))
        .current_dir(dir)
        .args(["run", "sweep.yaml", "--jobs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while common::records(dir, "sweep") < records_wanted {
        assert!(Instant::now() < deadline, "no records appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_killed_sweep_resumes_to_identical_results() {
    let (eval, summary) = reference();
    let tmp = workspace(SWEEP);
    let mut child = start_and_wait_for(tmp.path(), 2);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let done = common::records(tmp.path(), "sweep");
    assert!(done < 6, "the sweep finished before the kill");
    let out = posembed(tmp.path(), &["run", "sweep.yaml", "--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{done} of 6 runs already complete")),
        "{}",
        text(&out)
    );
    let results = tmp.path().join("results/sweep");
    assert_eq!(eval, std::fs::read(results.join("eval.parquet")).unwrap());
    assert_eq!(
        summary,
        std::fs::read(tmp.path().join("reports/sweep/summary.md")).unwrap()
    );
}

#[test]
fn an_interrupt_finishes_running_runs_writes_frames_and_exits_130() {
    let tmp = workspace(SWEEP);
    let child = start_and_wait_for(tmp.path(), 1);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(130), "{log}");
    assert!(log.contains("no new runs will start"), "{log}");
    assert!(
        log.contains("run the same command again to resume"),
        "{log}"
    );
    let done = common::records(tmp.path(), "sweep");
    assert!((1..6).contains(&done), "{done} records");
    // The frames hold exactly the completed runs.
    let csv = std::fs::read_to_string(tmp.path().join("results/sweep/runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + done, "{csv}");
    let again = posembed(tmp.path(), &["run", "sweep.yaml"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(common::records(tmp.path(), "sweep"), 6);
}

#[test]
fn a_failing_run_is_recorded_and_the_others_complete() {
    let tmp = workspace(SWEEP);
    let ids = common::run_ids(tmp.path(), "sweep.yaml");
    assert_eq!(ids.len(), 6);
    let fail = [("POSEMBED_FAIL_RUN", ids[2].as_str())];
    let out = posembed_env(tmp.path(), &["run", "sweep.yaml", "--jobs", "2"], &fail);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("1 runs did not finish ok") && log.contains(&ids[2]),
        "{log}"
    );
    assert_eq!(
        common::records(tmp.path(), "sweep"),
        6,
        "the failure is recorded too"
    );
    let csv = std::fs::read_to_string(tmp.path().join("results/sweep/runs.csv")).unwrap();
    let failed: Vec<&str> = csv.lines().filter(|l| l.contains(",failed,")).collect();
    assert_eq!(failed.len(), 1, "{csv}");
    assert!(failed[0].starts_with(&ids[2]) && failed[0].contains("injected failure"));

    // A plain rerun keeps the failure; --rerun-failed retrains only it.
    let plain = posembed(tmp.path(), &["run", "sweep.yaml"]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(text(&plain).contains("6 of 6 runs already complete"));
    let rerun = posembed(tmp.path(), &["run", "sweep.yaml", "--rerun-failed"]);
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert!(text(&rerun).contains("5 of 6 runs already complete"));
}

#[test]
fn fail_fast_launches_nothing_after_a_failure() {
    let tmp = workspace(SWEEP);
    let ids = common::run_ids(tmp.path(), "sweep.yaml");
    let fail = [("POSEMBED_FAIL_RUN", ids[0].as_str())];
    let out = posembed_env(
        tmp.path(),
        &["run", "sweep.yaml", "--jobs", "1", "--fail-fast"],
        &fail,
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("--fail-fast"), "{log}");
    assert_eq!(common::records(tmp.path(), "sweep"), 1, "{log}");
}

#[test]
fn shards_merge_into_the_unsharded_results() {
    let (eval, summary) = reference();
    let tmp = workspace(SWEEP);
    let mut sizes = Vec::new();
    for shard in ["1/3", "2/3", "3/3"] {
        let out = posembed(
            tmp.path(),
            &["run", "sweep.yaml", "--shard", shard, "--jobs", "1"],
        );
        assert!(out.status.success(), "{}", text(&out));
        let dir = tmp
            .path()
            .join("results/sweep/shards")
            .join(shard.replace('/', "-of-"));
        sizes.push(std::fs::read_dir(dir.join("runs")).unwrap().count());
    }
    assert_eq!(sizes, [2, 2, 2], "every run in exactly one shard");
    assert!(
        !tmp.path().join("reports/sweep").exists(),
        "shards do not report"
    );
    let out = posembed(
        tmp.path(),
        &[
            "merge",
            "results/sweep/shards/1-of-3",
            "results/sweep/shards/2-of-3",
            "results/sweep/shards/3-of-3",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("6 runs merged into results/sweep"));
    assert_eq!(
        eval,
        std::fs::read(tmp.path().join("results/sweep/eval.parquet")).unwrap()
    );
    assert_eq!(
        summary,
        std::fs::read(tmp.path().join("reports/sweep/summary.md")).unwrap()
    );
    // The merged directory is an ordinary experiment directory: nothing to rerun.
    let rerun = posembed(tmp.path(), &["run", "sweep.yaml"]);
    assert!(text(&rerun).contains("6 of 6 runs already complete"));
}

#[test]
fn merge_refuses_corrupt_records_and_mixed_experiments() {
    let tmp = workspace(SWEEP);
    let out = posembed(tmp.path(), &["run", "sweep.yaml", "--shard", "1/3"]);
    assert!(out.status.success(), "{}", text(&out));
    let other = workspace(&SWEEP.replace("name: sweep", "name: other"));
    let out = posembed(other.path(), &["run", "sweep.yaml", "--shard", "2/3"]);
    assert!(out.status.success(), "{}", text(&out));
    let a = tmp.path().join("results/sweep/shards/1-of-3");
    let b = other.path().join("results/other/shards/2-of-3");
    let out = posembed(
        tmp.path(),
        &["merge", a.to_str().unwrap(), b.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("different experiments (other, sweep)"),
        "{}",
        text(&out)
    );

    let id = std::fs::read_dir(a.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let record = a.join("runs").join(&id).join("record.json");
    let bytes = std::fs::read(&record).unwrap();
    std::fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
    let out = posembed(tmp.path(), &["merge", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("is corrupt"), "{}", text(&out));
}

#[test]
fn a_changed_plan_names_new_and_dropped_runs() {
    let tmp = workspace(SWEEP);
    let out = posembed(tmp.path(), &["run", "sweep.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    let old = common::run_ids(tmp.path(), "sweep.yaml");
    std::fs::write(
        tmp.path().join("sweep.yaml"),
        SWEEP.replace("[none, alibi, rope]", "[none, alibi, sinusoidal]"),
    )
    .unwrap();
    let out = posembed(tmp.path(), &["run", "sweep.yaml"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("the plan has 2 runs not stored"), "{log}");
    assert!(
        log.contains("2 stored runs are no longer in the plan (kept")
            && log.contains(&old[4])
            && log.contains(&old[5]),
        "{log}"
    );
    assert_eq!(
        common::records(tmp.path(), "sweep"),
        8,
        "old records are kept"
    );
    let csv = std::fs::read_to_string(tmp.path().join("results/sweep/runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "frames hold the plan only");
}

#[test]
fn slurm_writes_an_array_and_a_dependent_merge() {
    let tmp = workspace(SWEEP);
    let out = posembed(
        tmp.path(),
        &[
            "slurm",
            "sweep.yaml",
            "--array-size",
            "3",
            "--time",
            "00:10:00",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let dir = tmp.path().join("results/sweep/slurm");
    let array = std::fs::read_to_string(dir.join("array.sbatch")).unwrap();
    assert!(
        array.contains("#SBATCH --array=1-3")
            && array.contains("--shard \"${SLURM_ARRAY_TASK_ID}/3\"")
    );
    assert!(array.contains("#SBATCH --time=00:10:00"));
    let merge = std::fs::read_to_string(dir.join("merge.sbatch")).unwrap();
    assert!(merge.contains("shards/3-of-3"));
    let bad = posembed(tmp.path(), &["slurm", "sweep.yaml", "--array-size", "7"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(
        text(&bad).contains("valid: 1 to 6 array tasks"),
        "{}",
        text(&bad)
    );
}

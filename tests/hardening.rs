//! Hostile input and faults: bad files get one-line located errors and exit
//! 2 with nothing written; concurrent sweeps, corrupt records and failed
//! writes never corrupt an experiment.

mod common;

use common::{posembed, text};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "seeds: [0]
defaults:
  model: {d_model: 16, ff: 64, layers: 1, heads: 2}
  task: {name: copy, symbols: 4, train_lengths: [1, 4]}
  positional: {scheme: none}
  train: {steps: 150, batch_size: 8, lr: 3.0e-3, warmup: 5, log_every: 50}
  eval: {lengths: [2, 4, 6], samples: 16}
";

fn sweep_yaml() -> String {
    let base = BASE.replace("seeds: [0]", "seeds: [0, 1]");
    format!("name: sweep\n{base}grid:\n  positional.scheme: [none, alibi, rope]\n")
}

#[test]
fn hostile_files_get_one_located_line_and_exit_2() {
    let long = "a".repeat(5000);
    let bomb = "grid:\n  a: &a [x, x, x, x, x, x, x, x, x]\n  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "empty"),
        ("tabs", format!("name: t\n\t{BASE}"), "tab"),
        ("duplicate key", format!("name: t\nname: u\n{BASE}"), "duplicate"),
        ("alias bomb", format!("name: t\n{BASE}{bomb}"), "aliases expand too much"),
        ("zero size", format!("name: t\n{BASE}").replace("layers: 1", "layers: 0"), "valid"),
        ("negative steps", format!("name: t\n{BASE}").replace("steps: 150", "steps: -5"), "valid: a whole number"),
        ("lr zero", format!("name: t\n{BASE}").replace("lr: 3.0e-3", "lr: 0"), "valid: a finite number > 0"),
        ("lr nan", format!("name: t\n{BASE}").replace("lr: 3.0e-3", "lr: .nan"), "valid: a finite number > 0"),
        ("lr inf", format!("name: t\n{BASE}").replace("lr: 3.0e-3", "lr: .inf"), "valid: a finite number > 0"),
        ("min > max", format!("name: t\n{BASE}").replace("[1, 4]", "[4, 1]"), "1 <= min <= max"),
        ("long name", format!("name: {long}\n{BASE}"), "valid: 1 to 100"),
        ("slash", format!("name: a/b\n{BASE}"), "valid: 1 to 100"),
        ("dot dot", format!("name: ..\n{BASE}"), "valid: 1 to 100"),
        ("absolute", format!("name: /etc\n{BASE}"), "valid: 1 to 100"),
        ("unsafe chars", format!("name: \"a b*\"\n{BASE}"), "valid: 1 to 100"),
        ("text dir", format!("name: t\n{BASE}").replace("{name: copy, symbols: 4, train_lengths: [1, 4]}", "{name: text, path: /tmp}"), "not a regular file"),
        ("too many runs", format!("name: t\n{BASE}grid:\n  train.lr: [1.0e-3, 2.0e-3, 3.0e-3]\n  model.layers: [1, 2, 3, 4]\n"), "--max-runs"),
    ];
    for (what, yaml, fragment) in cases {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("x.yaml"), &yaml).unwrap();
        let out = posembed(tmp.path(), &["run", "x.yaml", "--max-runs", "10"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        let line = stderr.trim_end();
        assert!(line.starts_with("error: x.yaml:"), "{what}: {line}");
        let location: Vec<&str> = line["error: x.yaml:".len()..].splitn(3, ':').collect();
        assert!(
            location[0].parse::<usize>().is_ok() && location[1].parse::<usize>().is_ok(),
            "{what}: no line:column in {line}"
        );
        assert!(
            line.contains(fragment),
            "{what}: `{fragment}` missing: {line}"
        );
        assert!(line.len() < 400, "{what}: {} characters", line.len());
        assert!(!line.contains("panicked"), "{what}: {line}");
        let written: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(written.len(), 1, "{what}: only x.yaml, nothing written");
    }
}

#[test]
fn a_second_sweep_on_the_same_experiment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sweep.yaml"), sweep_yaml()).unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_posembed"))
        .current_dir(tmp.path())
        .args(["run", "sweep.yaml", "--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::records(tmp.path(), "sweep") < 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = posembed(tmp.path(), &["run", "sweep.yaml"]);
    let log = text(&second);
    assert_eq!(second.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "is in use by another posembed process (pid {})",
            first.id()
        )),
        "{log}"
    );
    // kill -9 releases the lock: the sweep then resumes.
    first.kill().unwrap();
    first.wait().unwrap();
    let resumed = posembed(tmp.path(), &["run", "sweep.yaml"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(common::records(tmp.path(), "sweep"), 6);
}

#[test]
fn a_corrupt_record_is_reported_and_retrained() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sweep.yaml"), sweep_yaml()).unwrap();
    assert!(posembed(tmp.path(), &["run", "sweep.yaml"])
        .status
        .success());
    let eval = std::fs::read(tmp.path().join("results/sweep/eval.parquet")).unwrap();
    let runs = tmp.path().join("results/sweep/runs");
    let victim = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = victim.join("record.json");
    let bytes = std::fs::read(&record).unwrap();
    std::fs::write(&record, &bytes[..bytes.len() / 3]).unwrap();
    let out = posembed(tmp.path(), &["run", "sweep.yaml"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("is corrupt") && log.contains("will be retrained"),
        "{log}"
    );
    assert!(log.contains("5 of 6 runs already complete"), "{log}");
    assert_eq!(
        eval,
        std::fs::read(tmp.path().join("results/sweep/eval.parquet")).unwrap()
    );
}

#[test]
fn a_failed_write_stops_the_sweep_cleanly_and_a_rerun_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sweep.yaml"), sweep_yaml()).unwrap();
    let ids = common::run_ids(tmp.path(), "sweep.yaml");
    // The third run's record directory is blocked by a file: its save fails
    // as on a full or read-only disk.
    let runs = tmp.path().join("results/sweep/runs");
    std::fs::create_dir_all(&runs).unwrap();
    let blocker = runs.join(&ids[2]);
    std::fs::write(&blocker, "").unwrap();
    let out = posembed(tmp.path(), &["run", "sweep.yaml", "--jobs", "1"]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("results/sweep/runs/{}", ids[2])),
        "{log}"
    );
    assert!(log.contains("no new runs will start"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(
        common::records(tmp.path(), "sweep"),
        2,
        "the runs before it are kept"
    );
    std::fs::remove_file(&blocker).unwrap();
    let again = posembed(tmp.path(), &["run", "sweep.yaml"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("2 of 6 runs already complete"));
    assert_eq!(common::records(tmp.path(), "sweep"), 6);
}

//! The command line from YAML to report, in a temporary directory.

mod common;

use common::posembed;
use polars::prelude::*;
use posembed::store::schema;
use std::path::Path;

const EXPERIMENT: &str = "
name: e2e
seeds: [0, 1]
defaults:
  model: {d_model: 16, ff: 64, layers: 1, heads: 2}
  positional: {scheme: none}
  task: {name: copy, symbols: 4, train_lengths: [1, 3]}
  train: {steps: 30, batch_size: 8, lr: 3.0e-3, warmup: 5, log_every: 10}
  eval: {lengths: [2, 3, 5], samples: 16}
grid:
  positional.scheme: [none, learned]
";

fn columns(path: &Path) -> (DataFrame, Vec<String>) {
    let df = ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap();
    let names = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    (df, names)
}

/// Every frame has exactly the schema's columns, in its order, with its
/// types, and no nulls where the schema allows none; the runs frame's
/// parameter columns (dotted names) stand where the schema puts them.
fn assert_frames_follow_the_schema(results: &Path) {
    for frame in schema::FRAMES {
        let (df, names) = columns(&results.join(format!("{}.parquet", frame.name)));
        assert!(df.height() > 0, "{}: empty", frame.name);
        let mut expected = Vec::new();
        for c in frame.columns {
            match c.kind {
                schema::Kind::Parameters => {
                    let params: Vec<&String> = names.iter().filter(|n| n.contains('.')).collect();
                    assert!(!params.is_empty(), "{}: no parameter columns", frame.name);
                    expected.extend(params.into_iter().cloned());
                }
                _ => expected.push(c.name.to_string()),
            }
        }
        assert_eq!(names, expected, "{}: columns", frame.name);
        for c in frame.columns {
            let Some(dtype) = c.dtype() else { continue };
            let col = df.column(c.name).unwrap();
            assert_eq!(col.dtype(), &dtype, "{}.{}: type", frame.name, c.name);
            if !c.nullable {
                assert_eq!(col.null_count(), 0, "{}.{}: nulls", frame.name, c.name);
            }
        }
    }
}

#[test]
fn readme_documents_the_schema() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains(&schema::markdown()),
        "README's \"Results schema\" differs from store::schema::markdown():\n{}",
        schema::markdown()
    );
}

#[test]
fn run_writes_frames_and_a_report_that_agree() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("e2e.yaml"), EXPERIMENT).unwrap();
    let out = posembed(tmp.path(), &["run", "e2e.yaml", "--jobs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let results = tmp.path().join("results/e2e");
    let (runs, names) = columns(&results.join("runs.parquet"));
    assert_eq!(runs.height(), 4);
    for col in [
        "run_id",
        "group_id",
        "seed",
        "model.d_model",
        "positional.scheme",
        "positional.max_positions",
        "task.name",
        "task.train_lengths",
        "train.lr",
        "eval.lengths",
        "status",
        "error",
        "wall_time_s",
        "train_tokens_per_s",
        "params",
        "ood_exact_match",
        "git_commit",
    ] {
        assert!(
            names.iter().any(|n| n == col),
            "runs.parquet lacks {col}: {names:?}"
        );
    }
    let (eval, names) = columns(&results.join("eval.parquet"));
    assert_eq!(
        names,
        [
            "run_id",
            "length",
            "length_unit",
            "train_min",
            "train_max",
            "in_distribution",
            "token_acc",
            "exact_match",
            "loss",
            "perplexity",
            "bits_per_byte",
            "last_quarter_loss",
            "n"
        ]
    );
    assert_eq!(eval.height(), 4 * 3);
    let (_, names) = columns(&results.join("curves.parquet"));
    assert_eq!(names, ["run_id", "step", "metric", "value"]);
    assert_frames_follow_the_schema(&results);
    for f in ["runs.csv", "eval.csv", "curves.csv"] {
        assert!(results.join(f).exists(), "{f}");
    }

    // The out-of-distribution cell (length 5) of each scheme equals the mean over
    // its seeds of the eval frame's exact match.
    let summary = std::fs::read_to_string(tmp.path().join("reports/e2e/summary.md")).unwrap();
    let run_ids = runs.column("run_id").unwrap().str().unwrap().clone();
    let schemes = runs
        .column("positional.scheme")
        .unwrap()
        .str()
        .unwrap()
        .clone();
    let eval_ids = eval.column("run_id").unwrap().str().unwrap().clone();
    let lengths = eval.column("length").unwrap().u64().unwrap().clone();
    let em = eval.column("exact_match").unwrap().f64().unwrap().clone();
    for scheme in ["none", "learned"] {
        let ids: Vec<&str> = (0..runs.height())
            .filter(|&i| schemes.get(i) == Some(scheme))
            .map(|i| run_ids.get(i).unwrap())
            .collect();
        let values: Vec<f64> = (0..eval.height())
            .filter(|&i| lengths.get(i) == Some(5) && ids.contains(&eval_ids.get(i).unwrap()))
            .map(|i| em.get(i).unwrap())
            .collect();
        assert_eq!(values.len(), 2);
        let mean = (values[0] + values[1]) / 2.0;
        let line = summary
            .lines()
            .find(|l| l.starts_with(&format!("| {scheme} |")))
            .unwrap();
        assert!(
            line.contains(&format!("{mean:.2} ±")),
            "{scheme}: {mean:.2} not in `{line}`"
        );
    }
    for f in [
        "summary.tex",
        "accuracy_vs_length.svg",
        "accuracy_vs_length.png",
        "index.md",
    ] {
        let meta = std::fs::metadata(tmp.path().join("reports/e2e").join(f)).unwrap();
        assert!(meta.len() > 100, "{f} is nearly empty");
    }

    // Running again skips every run and leaves the eval frame byte-identical.
    let before = std::fs::read(results.join("eval.parquet")).unwrap();
    let again = posembed(tmp.path(), &["run", "e2e.yaml"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("4 of 4 runs already complete"));
    assert_eq!(before, std::fs::read(results.join("eval.parquet")).unwrap());

    // The report re-renders from the parquet files alone, identically.
    let table = std::fs::read(tmp.path().join("reports/e2e/summary.md")).unwrap();
    let rerender = posembed(tmp.path(), &["report", "results/e2e", "--out", "again"]);
    assert!(
        rerender.status.success(),
        "{}",
        String::from_utf8_lossy(&rerender.stderr)
    );
    assert_eq!(
        table,
        std::fs::read(tmp.path().join("again/summary.md")).unwrap()
    );
}

#[test]
fn jobs_do_not_change_results() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("e2e.yaml"), EXPERIMENT).unwrap();
    let one = posembed(
        tmp.path(),
        &[
            "run",
            "e2e.yaml",
            "--jobs",
            "1",
            "--results-dir",
            "r1",
            "--reports-dir",
            "p1",
        ],
    );
    let two = posembed(
        tmp.path(),
        &[
            "run",
            "e2e.yaml",
            "--jobs",
            "2",
            "--results-dir",
            "r2",
            "--reports-dir",
            "p2",
        ],
    );
    assert!(one.status.success() && two.status.success());
    for f in ["eval.parquet", "curves.parquet"] {
        let a = std::fs::read(tmp.path().join("r1/e2e").join(f)).unwrap();
        let b = std::fs::read(tmp.path().join("r2/e2e").join(f)).unwrap();
        assert_eq!(a, b, "{f} differs between --jobs 1 and --jobs 2");
    }
}

#[test]
fn invalid_config_exits_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.yaml"),
        EXPERIMENT.replace("d_model: 16", "d_model: 17"),
    )
    .unwrap();
    let out = posembed(tmp.path(), &["run", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:5:") && stderr.contains("model.d_model"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!tmp.path().join("results").exists());
    assert!(!tmp.path().join("reports").exists());
}

#[test]
fn plan_prints_varying_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("e2e.yaml"), EXPERIMENT).unwrap();
    let out = posembed(tmp.path(), &["plan", "e2e.yaml"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("run_id")
            && header.contains("seed")
            && header.contains("positional.scheme"),
        "{text}"
    );
    assert!(!header.contains("model.d_model"));
    assert!(text.contains("4 runs"));
    assert!(!tmp.path().join("results").exists());
}

#[test]
fn listings_describe_every_scheme_and_task() {
    let tmp = tempfile::tempdir().unwrap();
    let schemes = String::from_utf8(posembed(tmp.path(), &["schemes"]).stdout).unwrap();
    for name in ["none", "sinusoidal", "learned", "alibi", "rope"] {
        assert!(
            schemes.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{schemes}"
        );
    }
    let tasks = String::from_utf8(posembed(tmp.path(), &["tasks"]).stdout).unwrap();
    for name in [
        "copy",
        "reverse",
        "duplicate",
        "sort",
        "odds_first",
        "addition",
        "parity",
        "associative_recall",
    ] {
        assert!(
            tasks.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{tasks}"
        );
    }
}

#[test]
fn tasks_example_prints_input_and_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = posembed(tmp.path(), &["tasks", "--example", "sort"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("x: ")).unwrap();
    let (x, y) = line
        .strip_prefix("x: ")
        .unwrap()
        .split_once("  ->  y: ")
        .unwrap();
    let mut sorted: Vec<usize> = x.split(' ').map(|s| s.parse().unwrap()).collect();
    assert_eq!(sorted.len(), 16, "the training max of sort: {text}");
    sorted.sort_unstable();
    let y: Vec<usize> = y.split(' ').map(|s| s.parse().unwrap()).collect();
    assert_eq!(y, sorted);

    let out = posembed(tmp.path(), &["tasks", "--example", "sotr"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown task `sotr`") && err.contains("associative_recall"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

const TEXT: &str = "
name: lm
seeds: [0]
defaults:
  model: {d_model: 16, ff: 64, layers: 1, heads: 2}
  positional: {scheme: none}
  task: {name: text, path: corpus.txt, train_context: 16}
  train: {steps: 20, batch_size: 8, lr: 3.0e-3, warmup: 5, log_every: 10}
  eval: {lengths: [8, 16, 32], samples: 4}
grid:
  positional.scheme: [none, alibi]
";

#[test]
fn text_runs_report_perplexity_by_context() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus: String = (0..400)
        .map(|i| format!("line {i}: the quick brown fox\n"))
        .collect();
    std::fs::write(tmp.path().join("corpus.txt"), &corpus).unwrap();
    std::fs::write(tmp.path().join("lm.yaml"), TEXT).unwrap();
    let out = posembed(tmp.path(), &["run", "lm.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (eval, _) = columns(&tmp.path().join("results/lm/eval.parquet"));
    assert_eq!(eval.height(), 2 * 3);
    let f = |name: &str| -> Vec<f64> {
        let col = eval.column(name).unwrap().f64().unwrap().clone();
        (0..col.len()).map(|i| col.get(i).unwrap()).collect()
    };
    let (loss, ppl, bpb, last) = (
        f("loss"),
        f("perplexity"),
        f("bits_per_byte"),
        f("last_quarter_loss"),
    );
    for i in 0..eval.height() {
        assert!((ppl[i] - loss[i].exp()).abs() < 1e-9 * ppl[i]);
        assert!((bpb[i] - loss[i] / std::f64::consts::LN_2).abs() < 1e-12);
        assert!(
            last[i].is_finite() && loss[i] < 260f64.ln(),
            "row {i}: {}",
            loss[i]
        );
    }
    // The same validation bytes at every length: 4 windows of the longest (32)
    // are 128 predicted bytes, 16 windows of 8 and 8 of 16.
    let n = eval.column("n").unwrap().u64().unwrap().clone();
    let n: Vec<u64> = (0..n.len()).map(|i| n.get(i).unwrap()).collect();
    assert_eq!(n, [16, 8, 4, 16, 8, 4]);
    let units = eval.column("length_unit").unwrap().str().unwrap().clone();
    assert!((0..units.len()).all(|i| units.get(i) == Some("bytes")));
    let ids = eval
        .column("in_distribution")
        .unwrap()
        .bool()
        .unwrap()
        .clone();
    assert_eq!(
        (0..ids.len())
            .map(|i| ids.get(i).unwrap())
            .collect::<Vec<_>>(),
        [true, true, false, true, true, false]
    );

    let summary = std::fs::read_to_string(tmp.path().join("reports/lm/summary.md")).unwrap();
    assert!(
        summary.contains("### Perplexity beyond the training context"),
        "{summary}"
    );
    assert!(!summary.contains("Exact match"), "{summary}");
    let svg =
        std::fs::read_to_string(tmp.path().join("reports/lm/accuracy_vs_length.svg")).unwrap();
    assert!(svg.contains("perplexity") && svg.contains("length (bytes)"));
}

#[test]
fn text_too_small_for_an_eval_context_names_path_and_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("corpus.txt"), "x".repeat(300)).unwrap();
    std::fs::write(
        tmp.path().join("lm.yaml"),
        TEXT.replace("[8, 16, 32]", "[8, 16, 64]"),
    )
    .unwrap();
    let out = posembed(tmp.path(), &["run", "lm.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lm.yaml:9:")
            && stderr.contains("length 64")
            && stderr.contains("`corpus.txt` is 30 of its 300 bytes")
            && stderr.contains("valid: lengths <= 29"),
        "{stderr}"
    );
    assert!(!tmp.path().join("results").exists());
}

#[test]
fn every_shipped_experiment_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = posembed(&dir, &["plan", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} experiment files found");
}

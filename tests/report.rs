//! Reports from the command line: the `report:` section and flags, seed
//! statistics, LaTeX that compiles, and stable charts.

mod common;

use common::{posembed_env as posembed, text};
use std::path::Path;
use std::process::Command;

const SWEEP: &str = "
name: rep
seeds: [0, 1]
defaults:
  model: {d_model: 16, ff: 64, layers: 1, heads: 2}
  positional: {scheme: none}
  task: {name: copy, symbols: 4, train_lengths: [1, 4]}
  train: {steps: 80, batch_size: 8, lr: 3.0e-3, warmup: 5, log_every: 20}
  eval: {lengths: [2, 4, 6], samples: 16}
grid:
  positional.scheme: [none, alibi, rope]
";

/// Runs `yaml` in a fresh directory; `fail` names a run to fail.
fn sweep(yaml: &str, fail: Option<usize>) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("rep.yaml"), yaml).unwrap();
    let ids = common::run_ids(tmp.path(), "rep.yaml");
    let env: Vec<(&str, &str)> = fail
        .map(|i| ("POSEMBED_FAIL_RUN", ids[i].as_str()))
        .into_iter()
        .collect();
    let out = posembed(tmp.path(), &["run", "rep.yaml", "--jobs", "2"], &env);
    assert_eq!(
        out.status.code(),
        Some(if fail.is_some() { 1 } else { 0 }),
        "{}",
        text(&out)
    );
    tmp
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// (run_id, length, exact_match) rows of eval.csv.
fn eval_rows(dir: &Path) -> Vec<(String, u64, f64)> {
    let csv = read(dir, "results/rep/eval.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (id, len, em) = (col("run_id"), col("length"), col("exact_match"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[id].to_string(),
                f[len].parse().unwrap(),
                f[em].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_failed_seed_is_marked_and_left_out_of_the_cell() {
    // Run 3 is alibi's seed 1; one table over all lengths.
    let tmp = sweep(&format!("{SWEEP}report: {{buckets: [all]}}\n"), Some(3));
    let summary = read(tmp.path(), "reports/rep/summary.md");
    let runs = read(tmp.path(), "results/rep/runs.csv");
    let alibi_ok: Vec<&str> = runs
        .lines()
        .filter(|l| l.contains(",alibi,") && l.contains(",ok,"))
        .map(|l| &l[..12])
        .collect();
    assert_eq!(alibi_ok.len(), 1);
    // The cell is the remaining seed's mean over lengths 2, 4 and 6.
    let values: Vec<f64> = eval_rows(tmp.path())
        .into_iter()
        .filter(|(id, _, _)| id == alibi_ok[0])
        .map(|(_, _, em)| em)
        .collect();
    assert_eq!(values.len(), 3);
    let mean = values.iter().sum::<f64>() / 3.0;
    let line = summary
        .lines()
        .find(|l| l.starts_with("| alibi |"))
        .unwrap();
    let cell = line.replace("**", "");
    assert!(
        cell.contains(&format!("| {mean:.2} (n=1/2)† |")),
        "{mean:.2}: {line}"
    );
    let none = summary.lines().find(|l| l.starts_with("| none |")).unwrap();
    assert!(none.contains(" ± ") && none.contains("(n=2) |"), "{none}");
    assert!(summary.contains("† fewer seeds than planned"), "{summary}");
    let tex = read(tmp.path(), "reports/rep/summary.tex");
    assert!(tex.contains("(1/2)$^\\dagger$"), "{tex}");
}

#[test]
fn flags_choose_rows_columns_metric_and_aggregate() {
    let tmp = sweep(SWEEP, None);
    let out = posembed(
        tmp.path(),
        &[
            "report",
            "results/rep",
            "--rows",
            "positional.scheme",
            "--columns",
            "length_bucket",
            "--metric",
            "token_acc",
            "--aggregate",
            "median_iqr",
            "--buckets",
            "[in_distribution, [5, 6]]",
            "--rank",
            "--out",
            "flags",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let md = read(tmp.path(), "flags/summary.md");
    assert!(md.contains("### Token accuracy by length bucket"), "{md}");
    assert!(
        md.contains("| scheme | in distribution | lengths 5–6 | MRR |"),
        "{md}"
    );
    // One MRR per scheme, each the mean of 1/rank over two columns.
    let mrr: Vec<f64> = md
        .lines()
        .filter(|l| {
            l.starts_with("| none |") || l.starts_with("| alibi |") || l.starts_with("| rope |")
        })
        .map(|l| {
            l.trim_end_matches(" |")
                .rsplit("| ")
                .next()
                .unwrap()
                .replace("**", "")
        })
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(mrr.len(), 3, "{md}");
    let possible = [1.0, 0.75, 2.0 / 3.0, 0.5, 5.0 / 12.0, 1.0 / 3.0];
    assert!(
        mrr.iter()
            .all(|m| possible.iter().any(|p| (p - m).abs() < 0.006)),
        "{mrr:?}"
    );
    assert!(md.contains("MRR: mean over the columns of 1/rank"), "{md}");
    assert!(
        md.contains("Cells: median [first quartile, third quartile]"),
        "{md}"
    );
    let csv = read(tmp.path(), "flags/summary.csv");
    assert!(
        csv.starts_with("table,row,column,value,std,q1,q3,ci_low,ci_high,n,planned,best,p_value")
    );
    assert_eq!(csv.lines().count(), 1 + 3 * 2 + 3, "{csv}");
    assert_eq!(
        csv.lines().filter(|l| l.contains(",MRR,")).count(),
        3,
        "{csv}"
    );

    let bad = posembed(
        tmp.path(),
        &["report", "results/rep", "--metric", "acc"],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("--metric") && text(&bad).contains("exact_match"),
        "{}",
        text(&bad)
    );
    let bad = posembed(
        tmp.path(),
        &["report", "results/rep", "--rows", "model.dmodel"],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("did you mean `model.d_model`"),
        "{}",
        text(&bad)
    );
}

#[test]
fn the_report_section_is_kept_with_the_results() {
    let yaml = format!("{SWEEP}report: {{baseline: none, ci: true, aggregate: mean_std}}\n");
    let tmp = sweep(&yaml, None);
    let md = read(tmp.path(), "reports/rep/summary.md");
    assert!(md.contains("CI: 95% t-interval of the mean."), "{md}");
    assert!(md.contains("differs from `none` at p < 0.05"), "{md}");
    assert!(tmp.path().join("results/rep/report.json").exists());
    let out = posembed(
        tmp.path(),
        &["report", "results/rep", "--out", "again"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(md, read(tmp.path(), "again/summary.md"));

    let bad = yaml.replace("baseline: none", "baseline: nope");
    std::fs::write(tmp.path().join("bad.yaml"), bad).unwrap();
    let out = posembed(tmp.path(), &["plan", "bad.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("bad.yaml:12:") && text(&out).contains("valid: none, alibi, rope"),
        "{}",
        text(&out)
    );
}

#[test]
fn latex_tables_compile_with_pdflatex() {
    let available = Command::new("pdflatex").arg("--version").output().is_ok();
    if !available {
        eprintln!("pdflatex not installed: skipped");
        return;
    }
    // Underscores in the row header and † marks must survive pdflatex.
    let yaml =
        format!("{SWEEP}report: {{rows: model.d_model, columns: positional.scheme, ci: true}}\n");
    let tmp = sweep(&yaml, Some(0));
    let dir = tmp.path().join("reports/rep");
    std::fs::write(
        dir.join("doc.tex"),
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{summary.tex}\n\\end{document}\n",
    )
    .unwrap();
    let out = Command::new("pdflatex")
        .current_dir(&dir)
        .args(["-interaction=nonstopmode", "-halt-on-error", "doc.tex"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.join("doc.pdf").exists());
    assert!(read(&dir, "summary.tex").contains("model.d\\_model"));
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(&bytes[1..4], b"PNG");
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn charts_are_complete_and_identical_on_rerender() {
    let tmp = sweep(SWEEP, None);
    let out = posembed(
        tmp.path(),
        &["report", "results/rep", "--out", "again"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    for (chart, size) in [
        ("accuracy_vs_length", (480, 438)),
        ("training_curves", (480, 438)),
        ("cost", (480, 408)),
        ("position_structure", (1440, 400)),
    ] {
        let first = std::fs::read(tmp.path().join(format!("reports/rep/{chart}.png"))).unwrap();
        let second = std::fs::read(tmp.path().join(format!("again/{chart}.png"))).unwrap();
        assert_eq!(png_size(&first), size, "{chart}");
        assert!(first == second, "{chart}.png differs between renders");
        let svg = read(tmp.path(), &format!("reports/rep/{chart}.svg"));
        for scheme in ["none", "alibi", "rope"] {
            assert!(svg.contains(scheme), "{chart}.svg lacks {scheme}");
        }
    }
    let index = read(tmp.path(), "reports/rep/index.md");
    for f in [
        "summary.csv",
        "training_curves.png",
        "cost.svg",
        "position_structure.png",
    ] {
        assert!(index.contains(&format!("[{f}]({f}): ")), "{index}");
    }
}

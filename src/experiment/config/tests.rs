use super::*;

const BASE: &str = "name: t
seeds: [0]
defaults:
  model: {d_model: 16, ff: 64, layers: 1, heads: 2}
  positional: {scheme: sinusoidal}
  task: {name: copy, symbols: 4, train_lengths: [1, 4]}
  train: {steps: 10, warmup: 2}
  eval: {lengths: [2, 4, 8], samples: 8}
";

fn err(text: &str) -> ConfigError {
    parse(text, Path::new("exp.yaml"), DEFAULT_MAX_RUNS).expect_err("config should be rejected")
}

/// Asserts the error points at `line` and its message contains every fragment.
fn check(e: &ConfigError, line: usize, fragments: &[&str]) {
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("exp.yaml:{line}:")),
        "wrong line: {shown}"
    );
    for f in fragments {
        assert!(shown.contains(f), "`{f}` missing from: {shown}");
    }
}

#[test]
fn base_config_is_valid() {
    let spec = parse(BASE, Path::new("exp.yaml"), DEFAULT_MAX_RUNS).unwrap();
    assert_eq!(spec.variants.len(), 1);
    assert_eq!(
        spec.variants[0].positional.options["base"],
        serde_json::json!(10000.0)
    );
}

#[test]
fn unknown_key_in_a_section() {
    let e = err(&BASE.replace("layers: 1", "layres: 1"));
    check(
        &e,
        4,
        &[
            "model.layres",
            "unknown key `layres`",
            "d_model, ff, layers",
            "did you mean `layers`",
        ],
    );
}

#[test]
fn unknown_top_level_key() {
    let e = err(&format!("{BASE}gird: {{}}\n"));
    check(
        &e,
        9,
        &["unknown key `gird`", "grid", "did you mean `grid`"],
    );
}

#[test]
fn wrong_type() {
    let e = err(&BASE.replace("steps: 10", "steps: ten"));
    check(&e, 7, &["train.steps", "invalid type"]);
}

#[test]
fn unknown_scheme_with_suggestion() {
    let e = err(&BASE.replace("scheme: sinusoidal", "scheme: sinusodal"));
    check(
        &e,
        5,
        &[
            "positional.scheme",
            "unknown scheme `sinusodal`",
            "none, sinusoidal, learned",
            "did you mean `sinusoidal`",
        ],
    );
}

#[test]
fn unknown_task_with_suggestion() {
    let e = err(&BASE.replace("name: copy", "name: cpy"));
    check(
        &e,
        6,
        &[
            "task.name",
            "unknown task `cpy`",
            "copy, reverse",
            "did you mean `copy`",
        ],
    );
}

#[test]
fn unsupported_d_model() {
    let e = err(&BASE.replace("d_model: 16", "d_model: 48"));
    check(
        &e,
        4,
        &["model.d_model", "48", "valid: 16, 32, 64, 128, 256"],
    );
}

#[test]
fn unsupported_ff() {
    let e = err(&BASE.replace("ff: 64", "ff: 100"));
    check(&e, 4, &["model.ff", "valid: 64"]);
}

#[test]
fn heads_must_divide_d_model() {
    let e = err(&BASE.replace("heads: 2", "heads: 3"));
    check(
        &e,
        4,
        &[
            "model.heads",
            "do not divide d_model 16",
            "valid: 1, 2, 4, 8, 16",
        ],
    );
}

#[test]
fn learned_past_max_positions() {
    // Eval length 8 → 2·8 + 2 = 18 input tokens → positions up to 17.
    let e = err(&BASE.replace("scheme: sinusoidal", "scheme: learned, max_positions: 10"));
    check(
        &e,
        5,
        &[
            "positional.max_positions",
            "up to 17",
            "max_positions >= 18",
        ],
    );
}

#[test]
fn option_not_taken_by_scheme() {
    let e = err(&BASE.replace("scheme: sinusoidal", "scheme: none, base: 100"));
    check(
        &e,
        5,
        &["positional.base", "unknown key `base`", "scheme `none`"],
    );
}

#[test]
fn grid_value_error_points_at_the_grid_entry() {
    let text = format!("{BASE}grid:\n  positional.scheme: [none, alibi, lerned]\n");
    let e = err(&text);
    check(
        &e,
        10,
        &[
            "positional.scheme",
            "unknown scheme `lerned`",
            "did you mean `learned`",
            "[in run positional.scheme=lerned]",
        ],
    );
}

#[test]
fn grid_key_must_name_a_section() {
    let e = err(&format!("{BASE}grid:\n  positonal.scheme: [none]\n"));
    check(&e, 10, &["positonal.scheme", "did you mean `positional`"]);
}

#[test]
fn combination_error_names_the_run() {
    // learned with a short table is fine alone (eval ≤ 8) but not with eval length 40.
    let text = BASE.replace("scheme: sinusoidal", "scheme: learned, max_positions: 20")
        + "grid:\n  eval.lengths: [[2, 4, 8], [2, 40]]\n";
    let e = err(&text);
    check(&e, 5, &["max_positions", "[in run eval.lengths=[2,40]]"]);
}

#[test]
fn bad_experiment_name() {
    for name in ["../escape", "/abs", "a/b", ".hidden", ""] {
        let e = err(&BASE.replace("name: t", &format!("name: '{name}'")));
        check(&e, 1, &["cannot be a directory name"]);
    }
}

#[test]
fn too_many_runs() {
    let text = format!("{BASE}grid:\n  train.lr: [0.1, 0.2, 0.3]\n  train.steps: [1, 2, 3, 4]\n");
    let e = parse(&text, Path::new("exp.yaml"), 10).unwrap_err();
    check(&e, 9, &["12 runs", "--max-runs"]);
}

#[test]
fn empty_file_and_syntax_error() {
    check(&err(""), 1, &["empty"]);
    let e = err("name: t\ndefaults: {model: [\n");
    assert!(e.to_string().starts_with("exp.yaml:"), "{e}");
}

#[test]
fn exclude_that_matches_nothing_warns() {
    let text = format!("{BASE}grid:\n  positional.scheme: [none, sinusoidal]\nexclude:\n  - {{positional.scheme: rope}}\n");
    let spec = parse(&text, Path::new("exp.yaml"), DEFAULT_MAX_RUNS).unwrap();
    assert_eq!(spec.variants.len(), 2);
    assert!(spec
        .warnings
        .iter()
        .any(|w| w.contains("exclude[0] matches no grid point")));
}

#[test]
fn randomized_needs_a_scheme_that_reads_positions() {
    let e = err(&BASE.replace(
        "scheme: sinusoidal",
        "scheme: none, randomized: {max_position: 64}",
    ));
    check(&e, 5, &["positional.randomized", "reads no positions"]);
}

#[test]
fn randomized_range_must_hold_the_sequences_and_fit_a_learned_table() {
    // Longest sequence: eval length 8 → 18 input tokens.
    let e = err(&BASE.replace(
        "scheme: sinusoidal",
        "scheme: rope, randomized: {max_position: 10}",
    ));
    check(
        &e,
        5,
        &[
            "positional.randomized.max_position",
            "valid: 18 <= max_position",
        ],
    );
    let e = err(&BASE.replace(
        "scheme: sinusoidal",
        "scheme: learned, max_positions: 64, randomized: {max_position: 100}",
    ));
    check(
        &e,
        5,
        &[
            "positional.max_positions",
            "up to 99",
            "max_positions >= 100",
        ],
    );
    let ok = BASE.replace(
        "scheme: sinusoidal",
        "scheme: learned, max_positions: 100, randomized: {max_position: 100}",
    );
    let spec = parse(&ok, Path::new("exp.yaml"), DEFAULT_MAX_RUNS).unwrap();
    assert_eq!(
        spec.variants[0]
            .positional
            .randomized
            .as_ref()
            .unwrap()
            .max_position,
        100
    );
}

#[test]
fn scheme_options_are_validated() {
    let e = err(&BASE.replace(
        "scheme: sinusoidal",
        "scheme: multiscale, bases: [10, 100, 1000]",
    ));
    check(&e, 5, &["positional.bases", "3 bases cannot split 2 heads"]);
    let e = err(&BASE.replace("scheme: sinusoidal", "scheme: rope, pairing: zigzag"));
    check(
        &e,
        5,
        &[
            "positional.pairing",
            "unknown value `zigzag`",
            "interleaved, halves",
        ],
    );
    let e = err(&BASE.replace("scheme: sinusoidal", "scheme: alibi, heads: 3"));
    check(&e, 5, &["positional.heads", "valid: `all` or 1 to 2"]);
    let e = err(&BASE.replace("scheme: sinusoidal", "scheme: sinusoidal, position_dims: 4"));
    check(
        &e,
        5,
        &["positional.position_dims", "only to `fusion: concat`"],
    );
    let e = err(&BASE.replace(
        "scheme: sinusoidal",
        "scheme: dynamic_dim, from: 0.9, to: 0.5",
    ));
    check(&e, 5, &["positional.from", "0 < from <= to <= 1"]);
}

#[test]
fn position_loss_options() {
    let ok = BASE.replace(
        "train: {steps: 10, warmup: 2}",
        "train: {steps: 10, warmup: 2, position_loss: {kind: probe, weight: 0.1, buckets: 8}}",
    );
    let spec = parse(&ok, Path::new("exp.yaml"), DEFAULT_MAX_RUNS).unwrap();
    assert!(matches!(
        spec.variants[0].train.position_loss,
        Some(crate::training::train::PositionLoss::Probe {
            buckets: 8,
            max_distance: 128,
            ..
        })
    ));
    let e = err(&BASE.replace(
        "train: {steps: 10, warmup: 2}",
        "train: {steps: 10, warmup: 2, position_loss: {kind: wat}}",
    ));
    check(
        &e,
        7,
        &[
            "train.position_loss",
            "unknown value `wat`",
            "weighted, probe",
        ],
    );
    let e = err(&BASE.replace(
        "train: {steps: 10, warmup: 2}",
        "train: {steps: 10, warmup: 2, position_loss: {kind: weighted, alpha: -1}}",
    ));
    check(
        &e,
        7,
        &["train.position_loss.alpha", "valid: a finite number >= 0"],
    );
}

#[test]
fn eval_length_beyond_associative_recall_keys() {
    // Keys are distinct within an example: 8 keys allow at most 8 pairs.
    let text = BASE
        .replace(
            "name: copy, symbols: 4, train_lengths: [1, 4]",
            "name: associative_recall, keys: 8, train_lengths: [1, 4]",
        )
        .replace("lengths: [2, 4, 8]", "lengths: [2, 8, 12]");
    let e = err(&text);
    check(
        &e,
        8,
        &[
            "eval.lengths[2]",
            "length 12 exceeds what task `associative_recall` can generate (keys = 8)",
            "valid: lengths <= 8",
        ],
    );
    // Length 8 itself is fine.
    let ok = text.replace("lengths: [2, 8, 12]", "lengths: [2, 8]");
    parse(&ok, Path::new("exp.yaml"), DEFAULT_MAX_RUNS).unwrap();
}

#[test]
fn eval_length_check_names_the_run_that_sets_the_task() {
    let text = BASE.replace("lengths: [2, 4, 8]", "lengths: [2, 4, 20]")
        + "grid:\n  task:\n    - {name: copy, symbols: 4, train_lengths: [1, 4]}\n    - {name: associative_recall, keys: 16, train_lengths: [1, 4]}\n";
    let e = err(&text);
    check(
        &e,
        8,
        &[
            "eval.lengths[2]",
            "(keys = 16); valid: lengths <= 16",
            "[in run task=",
        ],
    );
}

#[test]
fn associative_recall_train_lengths_beyond_keys() {
    let e = err(&BASE.replace(
        "name: copy, symbols: 4, train_lengths: [1, 4]",
        "name: associative_recall, keys: 3, train_lengths: [1, 4]",
    ));
    check(
        &e,
        6,
        &[
            "task.train_lengths",
            "keys = 3",
            "max <= 3",
            "task `associative_recall`",
        ],
    );
}

#[test]
fn non_utf8_file_points_at_the_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, b"name: t\nseeds: [0]\n# caf\xe9\n").unwrap();
    let e = load(&path, DEFAULT_MAX_RUNS).unwrap_err();
    assert_eq!((e.location.line, e.location.column), (3, 6), "{e}");
    assert!(e.message.contains("not valid UTF-8"), "{e}");
    let missing = load(&dir.path().join("missing.yaml"), DEFAULT_MAX_RUNS).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot read the experiment file"),
        "{missing}"
    );
}

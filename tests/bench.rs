//! `posembed bench` from the command line: the JSON fields the throughput
//! issue names, side-by-side copies, and a misused flag. Speeds themselves
//! are not asserted (they belong to benchmarks, not tests).

mod common;

use common::{posembed, text};

#[test]
fn json_lines_carry_throughput_memory_and_the_matmul_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let out = posembed(
        tmp.path(),
        &[
            "bench", "--model", "s1", "--scheme", "none", "--scheme", "alibi", "--steps", "1",
            "--repeat", "1", "--jobs", "2", "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", text(&out));
    for (line, scheme) in lines.iter().zip(["none", "alibi"]) {
        assert_eq!(line["model"], "s1");
        assert_eq!(line["scheme"], scheme);
        assert_eq!(line["jobs"], 2);
        for key in [
            "train_tokens_per_s",
            "eval_tokens_per_s",
            "matmul_gflops",
            "reference_gflops",
        ] {
            assert!(line[key].as_f64().unwrap() > 0.0, "{line}");
        }
        let share = line["matmul_share"].as_f64().unwrap();
        assert!(share > 0.0 && share < 1.5, "{line}");
        assert!(line["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{line}");
    }
}

#[test]
fn a_list_of_job_counts_needs_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let out = posembed(tmp.path(), &["bench", "--scheme", "none", "--jobs", "1,2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--jobs"), "{}", text(&out));
    let out = posembed(tmp.path(), &["bench", "--scheme", "none", "--jobs", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("at least 1"), "{}", text(&out));
}

#[test]
fn a_bad_scheme_is_a_usage_error_naming_the_key_and_the_valid_range() {
    let tmp = tempfile::tempdir().unwrap();
    let out = posembed(
        tmp.path(),
        &[
            "bench",
            "--scheme",
            "{scheme: rope, fraction: 2}",
            "--steps",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for part in [
        "--scheme",
        "fraction",
        "more than the 32 head dims",
        "<= fraction <= 1",
    ] {
        assert!(text(&out).contains(part), "{part}: {}", text(&out));
    }
    let out = posembed(tmp.path(), &["bench", "--scheme", "nope", "--steps", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("rope"),
        "lists the schemes: {}",
        text(&out)
    );
}

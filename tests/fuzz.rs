//! Property test of the YAML loader and planner: mutated experiment files and
//! arbitrary text never panic, every rejection is one located line, and every
//! accepted file plans without panicking.
//!
//! `cargo test --release` runs a few thousand cases from a fixed seed.
//! `POSEMBED_FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture`
//! fuzzes for ten minutes with fresh seeds; with `POSEMBED_FUZZ_CORPUS=DIR`
//! it also saves one input per new kind of error to DIR. The committed
//! corpus, `tests/fuzz_corpus/`, is replayed by every run.

use posembed::experiment::{config, plan};
use posembed::tasks;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAX_RUNS: usize = 500;

/// Tokens that have broken parsers: odd numbers, YAML syntax, paths.
const DICTIONARY: &[&str] = &[
    "-1",
    "0",
    "1",
    "-0",
    "1e309",
    "-1e309",
    "1e-400",
    ".nan",
    ".inf",
    "-.inf",
    "NaN",
    "99999999999999999999999",
    "18446744073709551615",
    "4294967296",
    "0x10",
    "0o7",
    "1.5",
    "~",
    "null",
    "true",
    "[]",
    "{}",
    "[[",
    "]]",
    "{",
    "}",
    ":",
    "- ",
    "&a",
    "*a",
    "<<: *a",
    "!!binary",
    "!!str",
    "\"\"",
    "'",
    "\"\\u0000\"",
    "\t",
    "#",
    "|",
    ">",
    "?",
    ",",
    "%YAML",
    "---",
    "...",
    "randomized",
    "fusion",
    "concat",
    "path",
    "/dev/zero",
    "/dev/stdin",
    "/tmp",
    "..",
    "/",
    "d_model",
    "heads",
    "lengths",
    "train_lengths",
    "max_positions",
    "position_loss",
    "positional.scheme",
    "task.name",
    "grid",
    "include",
    "exclude",
    "report",
    "length_bucket",
];

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = Vec::new();
    for dir in ["experiments", "tests/fuzz_corpus"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths {
            if let Ok(bytes) = std::fs::read(&p) {
                texts.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    texts
}

/// One random edit of `text` (or of a splice of it with `other`).
/// The dictionary plus every registered scheme and task name, so that a new
/// one is fuzzed without being listed here.
fn dictionary() -> Vec<&'static str> {
    let mut words = DICTIONARY.to_vec();
    words.extend(posembed::positional::names());
    words.extend(posembed::tasks::names());
    words
}

fn mutate(text: &str, other: &str, rng: &mut ChaCha8Rng) -> String {
    let dictionary = dictionary();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let at = rng.gen_range(0..lines.len());
    match rng.gen_range(0..9) {
        0 => {
            // Replace one token of a line with a dictionary entry.
            let words: Vec<&str> = lines[at]
                .split_inclusive([' ', ',', '[', ']', '{', '}', ':'])
                .collect();
            if !words.is_empty() {
                let k = rng.gen_range(0..words.len());
                let token = dictionary[rng.gen_range(0..dictionary.len())];
                let mut line: String = words[..k].concat();
                line.push_str(token);
                line.push_str(&words[k + 1..].concat());
                lines[at] = line;
            }
        }
        1 => {
            lines.remove(at);
        }
        2 => {
            let copy = lines[at].clone();
            lines.insert(at, copy);
        }
        3 => {
            let b = rng.gen_range(0..lines.len());
            lines.swap(at, b);
        }
        4 => {
            let indent = " ".repeat(rng.gen_range(0..6));
            lines[at] = format!("{indent}{}", lines[at].trim_start());
        }
        5 => {
            let donor: Vec<&str> = other.lines().collect();
            if !donor.is_empty() {
                let line = donor[rng.gen_range(0..donor.len())];
                lines.insert(at, line.to_string());
            }
        }
        6 => {
            // A number grown huge or negative.
            lines[at] = lines[at]
                .chars()
                .map(|c| {
                    if c.is_ascii_digit() && rng.gen_bool(0.3) {
                        ['9', '0', '-'][rng.gen_range(0..3)]
                    } else {
                        c
                    }
                })
                .collect();
        }
        7 => {
            let len = rng.gen_range(0..40);
            let junk: String = (0..len)
                .map(|_| rng.gen_range(0x20u8..0x7f) as char)
                .collect();
            let cut = rng.gen_range(0..=lines[at].len());
            if lines[at].is_char_boundary(cut) {
                lines[at].insert_str(cut, &junk);
            }
        }
        _ => {
            lines[at].push_str(&"x".repeat(rng.gen_range(100..3000)));
        }
    }
    lines.join("\n")
}

/// Arbitrary bytes, as the loader would see them after UTF-8 checking.
fn noise(rng: &mut ChaCha8Rng) -> String {
    let len = rng.gen_range(0..300);
    let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Checks one input; returns the kind of error, if any (for the corpus).
fn check(text: &str) -> Option<String> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        config::parse(text, Path::new("fuzz.yaml"), MAX_RUNS)
    }));
    let parsed = result.unwrap_or_else(|_| panic!("config::parse panicked on:\n{text}"));
    match parsed {
        Err(err) => {
            let line = err.to_string();
            assert!(
                !line.contains('\n'),
                "multi-line error {line:?} for:\n{text}"
            );
            let rest = line
                .strip_prefix("fuzz.yaml:")
                .unwrap_or_else(|| panic!("unlocated error {line:?} for:\n{text}"));
            let mut parts = rest.splitn(3, ':');
            let (l, c) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(
                l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok(),
                "no line:column in {line:?} for:\n{text}"
            );
            // The kind: the key and the first word of the message, digits dropped.
            let message = parts.next().unwrap_or("").trim();
            let kind: String = message
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .take(40)
                .collect();
            Some(kind)
        }
        Ok(spec) => {
            let runs = catch_unwind(AssertUnwindSafe(|| plan::expand(&spec)))
                .unwrap_or_else(|_| panic!("plan::expand panicked on:\n{text}"));
            assert!(runs.len() <= MAX_RUNS);
            for run in runs.iter().take(3) {
                catch_unwind(AssertUnwindSafe(|| tasks::build(&run.config.task)))
                    .unwrap_or_else(|_| panic!("tasks::build panicked on:\n{text}"));
            }
            None
        }
    }
}

#[test]
fn the_loader_never_panics_and_always_locates_its_errors() {
    let seeds = seeds();
    assert!(seeds.len() >= 3, "no seed files");
    let budget = std::env::var("POSEMBED_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let corpus = std::env::var("POSEMBED_FUZZ_CORPUS")
        .ok()
        .map(PathBuf::from);
    let mut rng = match budget {
        Some(_) => ChaCha8Rng::from_entropy(),
        None => ChaCha8Rng::seed_from_u64(2026),
    };
    let deadline = budget.map(|s| Instant::now() + Duration::from_secs(s));
    let mut kinds = BTreeSet::new();
    let mut executions = 0u64;
    for text in &seeds {
        check(text);
    }
    loop {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            None if executions >= 3000 => break,
            _ => {}
        }
        let text = if rng.gen_bool(0.05) {
            noise(&mut rng)
        } else {
            let mut text = seeds[rng.gen_range(0..seeds.len())].clone();
            let other = &seeds[rng.gen_range(0..seeds.len())];
            for _ in 0..rng.gen_range(1..4) {
                text = mutate(&text, other, &mut rng);
            }
            text
        };
        executions += 1;
        if let Some(kind) = check(&text) {
            if kinds.insert(kind) {
                if let Some(dir) = &corpus {
                    std::fs::create_dir_all(dir).unwrap();
                    std::fs::write(dir.join(format!("case_{:03}.yaml", kinds.len())), &text)
                        .unwrap();
                }
            }
        }
    }
    eprintln!(
        "fuzz: {executions} executions, {} kinds of error",
        kinds.len()
    );
    assert!(
        kinds.len() >= 10,
        "the mutations reach too few errors: {kinds:?}"
    );
}

//! Typed option parsing shared by every stage that reads YAML fragments:
//! field paths for error locations, serde with path tracking, did-you-mean.

pub mod flat;
pub mod locations;
pub mod registry;
pub mod seeds;

use serde::de::DeserializeOwned;
use std::fmt;

/// A bad command-line argument. The binary exits with status 2 for it, as
/// for clap's own usage errors and for a bad experiment file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// One step of a path into a YAML document or a resolved run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Key(k) => write!(f, "{k}"),
            Seg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Formats a path as `task.train_lengths[1]`.
pub fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Splits a dotted key (`positional.scheme`) into path segments.
pub fn dotted(key: &str) -> Vec<Seg> {
    key.split('.').map(|k| Seg::Key(k.to_string())).collect()
}

/// An invalid option: where it is (relative to the fragment being parsed) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub path: Vec<Seg>,
    pub message: String,
}

impl FieldError {
    pub fn new(path: &[&str], message: impl Into<String>) -> Self {
        FieldError {
            path: path.iter().map(|k| Seg::Key(k.to_string())).collect(),
            message: message.into(),
        }
    }

    /// Prepends `prefix` to the path: errors bubble up from fragments to the run.
    pub fn within(mut self, prefix: &[Seg]) -> Self {
        let mut path = prefix.to_vec();
        path.append(&mut self.path);
        self.path = path;
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", path_string(&self.path), self.message)
    }
}

/// Deserializes `value` into `T`, reporting the failing field's path and a
/// did-you-mean for unknown keys and variants.
pub fn parse<T: DeserializeOwned>(value: &serde_yaml::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value.clone()).map_err(|err| {
        let mut path = Vec::new();
        for seg in err.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => path.push(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => path.push(Seg::Index(*index)),
                _ => {}
            }
        }
        let raw = err.into_inner().to_string();
        let (message, unknown_key) = explain_serde_message(&raw);
        if let Some(key) = unknown_key.map(Seg::Key) {
            if path.last() != Some(&key) {
                path.push(key);
            }
        }
        FieldError { path, message }
    })
}

/// Rewrites serde's messages into ours; returns the unknown key, if that was the problem.
fn explain_serde_message(raw: &str) -> (String, Option<String>) {
    // serde: "unknown field `x`, expected one of `a`, `b`" / "expected `a` or `b`"
    for (prefix, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
            let choices: Vec<String> = tail
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            let choices_ref: Vec<&str> = choices.iter().map(String::as_str).collect();
            let message = unknown_choice(what, name, &choices_ref);
            let key = (what == "key").then(|| name.to_string());
            return (message, key);
        }
    }
    // serde: "invalid value: integer `-5`, expected usize" (or u64, u32 …)
    let unsigned = ["usize", "u64", "u32", "u16", "u8"]
        .iter()
        .any(|t| raw.ends_with(&format!("expected {t}")));
    if unsigned {
        return (format!("{raw}; valid: a whole number >= 0"), None);
    }
    (raw.to_string(), None)
}

/// "unknown scheme `sinusodal`; valid: a, b, c (did you mean `sinusoidal`?)"
pub fn unknown_choice(what: &str, name: &str, choices: &[&str]) -> String {
    let valid = if choices.is_empty() {
        "none are taken here".to_string()
    } else {
        choices.join(", ")
    };
    let mut message = format!("unknown {what} `{name}`; valid: {valid}");
    if let Some(best) = did_you_mean(name, choices) {
        message.push_str(&format!(" (did you mean `{best}`?)"));
    }
    message
}

/// The closest choice by edit distance, if it is close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, choices: &[&'a str]) -> Option<&'a str> {
    choices
        .iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Opts {
        fraction: f64,
        base: f64,
    }

    #[test]
    fn unknown_key_gets_path_choices_and_suggestion() {
        let v: serde_yaml::Value = serde_yaml::from_str("{fractoin: 0.5, base: 1}").unwrap();
        let err = parse::<Opts>(&v).unwrap_err();
        assert_eq!(err.path, vec![Seg::Key("fractoin".into())]);
        assert!(
            err.message.contains("valid: fraction, base"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("did you mean `fraction`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn did_you_mean_rejects_far_names() {
        assert_eq!(did_you_mean("zzzzzz", &["copy", "reverse"]), None);
        assert_eq!(
            did_you_mean("revrse", &["copy", "reverse"]),
            Some("reverse")
        );
    }
}

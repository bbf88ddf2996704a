//! The plan: validated variants × seeds, each with a stable identity.
//! `run_id` hashes the canonical run (sorted keys, seed included);
//! `group_id` hashes it without the seed (the unit of aggregation).

use crate::config::{ExperimentSpec, RunConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub experiment: String,
    pub run_id: String,
    pub group_id: String,
    pub seed: u64,
    /// Position in the plan, which orders frames and assigns shards.
    pub plan_index: usize,
    pub config: RunConfig,
}

/// Variant-major order: all seeds of the first variant, then the next.
pub fn expand(spec: &ExperimentSpec) -> Vec<RunSpec> {
    spec.variants
        .iter()
        .flat_map(|config| {
            let group_id = hash_id(&canonical(config, None));
            spec.seeds.iter().map(move |&seed| RunSpec {
                experiment: spec.name.clone(),
                run_id: hash_id(&canonical(config, Some(seed))),
                group_id: group_id.clone(),
                seed,
                plan_index: 0,
                config: config.clone(),
            })
        })
        .enumerate()
        .map(|(plan_index, run)| RunSpec { plan_index, ..run })
        .collect()
}

/// Canonical JSON: keys sorted at every level, numbers as serde_json prints them.
pub fn canonical(config: &RunConfig, seed: Option<u64>) -> String {
    let mut value = serde_json::to_value(config).expect("run config serializes");
    if let (Some(seed), Value::Object(map)) = (seed, &mut value) {
        map.insert("seed".into(), Value::from(seed));
    }
    let mut out = String::new();
    write_sorted(&value, &mut out);
    out
}

fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("string"));
                out.push(':');
                write_sorted(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// First 12 hex digits of SHA-256.
pub fn hash_id(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Every parameter as a dotted column name (`model.d_model`, `positional.base`).
/// Lists are kept as JSON text so each parameter is one cell.
pub fn flatten(config: &RunConfig) -> BTreeMap<String, Value> {
    flatten_value(&serde_json::to_value(config).expect("run config serializes"))
}

/// [`flatten`] for a configuration already in JSON form (as stored in records).
pub fn flatten_value(config: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::Array(_) => {
                out.insert(prefix.to_string(), Value::String(value.to_string()));
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", config, &mut out);
    out
}

/// Parameter columns whose value differs between runs, in sorted order.
pub fn varying_parameters(runs: &[RunSpec]) -> Vec<String> {
    let flat: Vec<BTreeMap<String, Value>> = runs.iter().map(|r| flatten(&r.config)).collect();
    let mut keys: Vec<String> = flat.iter().flat_map(|f| f.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| flat.iter().any(|f| f.get(k) != flat[0].get(k)))
        .collect()
}

/// A cell of the plan table.
pub fn display_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The `posembed plan` table: run_id, seed and every varying parameter.
pub fn table(runs: &[RunSpec]) -> String {
    let varying = varying_parameters(runs);
    let mut header = vec!["run_id".to_string(), "seed".to_string()];
    header.extend(varying.iter().cloned());
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let flat = flatten(&r.config);
            let mut row = vec![r.run_id.clone(), r.seed.to_string()];
            row.extend(varying.iter().map(|k| display_value(flat.get(k))));
            row
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&header);
    for row in &rows {
        out.push_str(&line(row));
    }
    out.push_str(&format!("{} runs\n", runs.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    const YAML: &str = "
name: t
seeds: [0, 1, 2]
defaults:
  model: {d_model: 16, ff: 64, layers: 1, heads: 2}
  positional: {scheme: none}
  task: {name: copy, symbols: 4, train_lengths: [1, 4]}
  train: {steps: 10, warmup: 2}
  eval: {lengths: [2, 4, 6], samples: 8}
grid:
  positional.scheme: [none, sinusoidal, learned]
  task.name: [copy, reverse]
exclude:
  - {positional.scheme: learned, task.name: reverse}
include:
  - {positional: {scheme: rope, fraction: 0.5}, task.name: reverse}
";

    fn spec() -> ExperimentSpec {
        config::parse(YAML, Path::new("t.yaml"), 1000).unwrap()
    }

    #[test]
    fn expansion_counts_with_include_and_exclude() {
        let spec = spec();
        // 3 schemes × 2 tasks − 1 excluded + 1 included = 6 variants, × 3 seeds.
        assert_eq!(spec.variants.len(), 6);
        let runs = expand(&spec);
        assert_eq!(runs.len(), 18);
        assert!(!runs
            .iter()
            .any(|r| r.config.positional.scheme == "learned" && r.config.task.name == "reverse"));
        assert!(runs.iter().any(|r| r.config.positional.scheme == "rope"));
        let mut ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 18, "run ids are unique");
    }

    #[test]
    fn group_id_is_shared_across_seeds_only() {
        let runs = expand(&spec());
        for chunk in runs.chunks(3) {
            assert!(chunk.iter().all(|r| r.group_id == chunk[0].group_id));
            assert_ne!(chunk[0].run_id, chunk[1].run_id);
        }
        assert_ne!(runs[0].group_id, runs[3].group_id);
    }

    #[test]
    fn run_id_is_pinned() {
        // Changing this id means every stored result would be rerun: only
        // change it deliberately (new defaults, new canonical form).
        let runs = expand(&spec());
        assert_eq!(runs[0].seed, 0);
        assert_eq!(runs[0].run_id, "5e552ee33a03");
    }

    #[test]
    fn canonical_form_ignores_spelling() {
        let a = config::parse(
            &YAML.replace("steps: 10,", "steps: 10, lr: 0.001,"),
            Path::new("a"),
            1000,
        )
        .unwrap();
        let b = config::parse(
            &YAML.replace("steps: 10,", "lr: 1.0e-3, steps: 10,"),
            Path::new("b"),
            1000,
        )
        .unwrap();
        assert_eq!(expand(&a)[0].run_id, expand(&b)[0].run_id);
    }

    #[test]
    fn varying_parameters_lists_the_grid() {
        let runs = expand(&spec());
        let varying = varying_parameters(&runs);
        assert!(varying.contains(&"positional.scheme".to_string()));
        assert!(varying.contains(&"task.name".to_string()));
        assert!(varying.contains(&"positional.fraction".to_string()));
        assert!(!varying.contains(&"model.d_model".to_string()));
    }
}

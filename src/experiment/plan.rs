//! The plan: validated variants × seeds, each with a stable identity.
//! `run_id` hashes the canonical run (sorted keys, seed included);
//! `group_id` hashes it without the seed (the unit of aggregation).

use super::config::ExperimentSpec;
use crate::options::flat::{display_value, flatten_value, varying_keys};
use crate::training::spec::{canonical, hash_id, RunConfig, RunSpec};
use serde_json::Value;
use std::collections::BTreeMap;

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

/// Every parameter as a dotted column name (`model.d_model`, `positional.base`).
/// Lists are kept as JSON text so each parameter is one cell.
pub fn flatten(config: &RunConfig) -> BTreeMap<String, Value> {
    flatten_value(&serde_json::to_value(config).expect("run config serializes"))
}

/// Parameter columns whose value differs between runs, in sorted order.
pub fn varying_parameters(runs: &[RunSpec]) -> Vec<String> {
    let flat: Vec<BTreeMap<String, Value>> = runs.iter().map(|r| flatten(&r.config)).collect();
    varying_keys(&flat.iter().collect::<Vec<_>>())
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
    use crate::experiment::config;
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

//! What one run is: its resolved configuration and its identity.
//! `run_id` hashes the canonical run (sorted keys, seed included);
//! `group_id` hashes it without the seed (the unit of aggregation).

use super::eval::EvalConfig;
use super::train::TrainConfig;
use crate::model::ModelConfig;
use crate::positional::PositionalConfig;
use crate::tasks::TaskConfig;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Everything a run needs, fully resolved; serialised, this is its canonical form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub positional: PositionalConfig,
    pub task: TaskConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
}

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

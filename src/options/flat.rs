//! Parameters as flat dotted columns (`model.d_model`, `positional.base`).

use serde_json::Value;
use std::collections::BTreeMap;

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

/// A cell of the plan table.
pub fn display_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(other) => text(other),
    }
}

/// A parameter value as text: strings as they are, anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Each parameter's distinct values in first-appearance order, over rows
/// that map parameter names to values as text.
pub fn values_by_parameter<'a>(
    rows: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        for (key, value) in row {
            let values = out.entry(key.clone()).or_default();
            if !values.contains(value) {
                values.push(value.clone());
            }
        }
    }
    out
}

/// The keys whose value differs between `rows` (a key missing from a row
/// differs from any value), in sorted order.
pub fn varying_keys<V: PartialEq>(rows: &[&BTreeMap<String, V>]) -> Vec<String> {
    let mut keys: Vec<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| rows.iter().any(|r| r.get(*k) != rows[0].get(*k)))
        .cloned()
        .collect()
}

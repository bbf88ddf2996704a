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
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

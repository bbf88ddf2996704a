//! One registry mechanism for everything a YAML file chooses by name
//! (positional schemes, tasks): each entry is a type implementing
//! [`Registered`] plus its module's definition trait, listed once in that
//! module's `registry!` line. The macro gives the listing (`ENTRIES`, of
//! [`Entry`]), `names()`, and a dispatch from a name to the type through a
//! `Visitor`, so that generic builders (`build::<D, Dev>`) work too.

use super::{unknown_choice, FieldError};
use serde::{de::DeserializeOwned, Serialize};

/// A choice a YAML file names: a scheme or a task.
pub trait Registered {
    const NAME: &'static str;
    /// One line: what it is.
    const SUMMARY: &'static str;
    /// Where it comes from (paper, benchmark).
    const CITATION: &'static str;
    /// Its options; `Default` gives the documented defaults.
    type Options: DeserializeOwned + Serialize + Default;
}

/// What a listing shows of one registered choice.
pub struct Entry {
    pub name: &'static str,
    pub summary: &'static str,
    pub citation: &'static str,
    /// The options with their defaults, as JSON.
    pub defaults: fn() -> serde_json::Value,
}

impl Entry {
    pub const fn of<T: Registered>() -> Entry {
        Entry {
            name: T::NAME,
            summary: T::SUMMARY,
            citation: T::CITATION,
            defaults: defaults::<T>,
        }
    }
}

/// `posembed schemes` / `posembed tasks`: each entry's name and summary,
/// its options with defaults, and its citation.
pub fn listing(entries: &[Entry]) -> String {
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!("{:<width$} {}\n", e.name, e.summary));
        out.push_str(&format!(
            "{:<width$} options (defaults): {}\n",
            "",
            (e.defaults)()
        ));
        out.push_str(&format!("{:<width$} {}\n", "", e.citation));
    }
    out
}

fn defaults<T: Registered>() -> serde_json::Value {
    serde_json::to_value(T::Options::default()).expect("defaults serialize")
}

/// Parses `T`'s options and returns them with their canonical form (every
/// default filled in), a JSON map.
pub fn canonical<T: Registered>(
    options: &serde_yaml::Value,
) -> Result<(T::Options, serde_json::Map<String, serde_json::Value>), FieldError> {
    let parsed: T::Options = super::parse(options)?;
    match serde_json::to_value(&parsed) {
        Ok(serde_json::Value::Object(map)) => Ok((parsed, map)),
        _ => unreachable!("options serialize to a map"),
    }
}

/// Options back from their canonical form (validated when loaded).
pub fn from_canonical<T: Registered>(
    options: &serde_json::Map<String, serde_json::Value>,
) -> T::Options {
    serde_json::from_value(serde_json::Value::Object(options.clone()))
        .expect("canonical options were validated when loaded")
}

/// Splits a `{<key>: name, option: value, …}` map into the chosen name and
/// the remaining options, or says what is wrong (`what`: "scheme", "task").
pub fn split_choice(
    value: &serde_yaml::Value,
    key: &str,
    what: &str,
    names: &[&str],
) -> Result<(String, serde_yaml::Mapping), FieldError> {
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(FieldError::new(
            &[],
            format!("expected a map with `{key}` and its options"),
        ));
    };
    let name = match map.get(key) {
        Some(serde_yaml::Value::String(name)) => name.clone(),
        Some(_) => {
            return Err(FieldError::new(
                &[key],
                format!("expected a {what} name (a string)"),
            ))
        }
        None => {
            return Err(FieldError::new(
                &[],
                format!("missing key `{key}`; valid {what}s: {}", names.join(", ")),
            ))
        }
    };
    if !names.contains(&name.as_str()) {
        return Err(FieldError::new(&[key], unknown_choice(what, &name, names)));
    }
    let mut rest = map.clone();
    rest.remove(key);
    Ok((name, rest))
}

/// Declares a registry in the calling module: `ENTRIES` (the listing, in
/// order), `names()`, a `Visitor` trait whose `visit::<T>` gets the chosen
/// type with the module's definition trait as its bound, and
/// `visit(name, visitor)`, which dispatches a name to its type.
#[macro_export]
macro_rules! registry {
    ($def:path => $($entry:ty),* $(,)?) => {
        /// Every entry, in listing order.
        pub const ENTRIES: &[$crate::options::registry::Entry] =
            &[$($crate::options::registry::Entry::of::<$entry>()),*];

        /// Every name, in listing order.
        pub fn names() -> Vec<&'static str> {
            ENTRIES.iter().map(|e| e.name).collect()
        }

        /// Receives the type registered under a name.
        pub trait Visitor {
            type Output;
            fn visit<T: $def>(self) -> Self::Output;
        }

        /// Calls `visitor` with the type registered as `name`, if any.
        pub fn visit<V: Visitor>(name: &str, visitor: V) -> Option<V::Output> {
            $(if name == <$entry as $crate::options::registry::Registered>::NAME {
                return Some(visitor.visit::<$entry>());
            })*
            None
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_choice_names_the_problem() {
        let names = ["copy", "reverse"];
        let v: serde_yaml::Value = serde_yaml::from_str("{name: revrese, symbols: 4}").unwrap();
        let err = split_choice(&v, "name", "task", &names).unwrap_err();
        assert_eq!(err.path, vec![super::super::Seg::Key("name".into())]);
        assert!(
            err.message.contains("did you mean `reverse`"),
            "{}",
            err.message
        );
        let v: serde_yaml::Value = serde_yaml::from_str("{symbols: 4}").unwrap();
        let err = split_choice(&v, "name", "task", &names).unwrap_err();
        assert!(
            err.message.contains("missing key `name`"),
            "{}",
            err.message
        );
        let v: serde_yaml::Value = serde_yaml::from_str("{name: copy, symbols: 4}").unwrap();
        let (name, rest) = split_choice(&v, "name", "task", &names).unwrap();
        assert_eq!(name, "copy");
        assert_eq!(rest.len(), 1);
    }
}

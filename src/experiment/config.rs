//! The experiment file: YAML schema, expansion of defaults ⊕ grid ⊕ include −
//! exclude into validated run configurations, and `file:line:column` errors.

use crate::model::ModelConfig;
use crate::options::locations::{Location, Locations};
use crate::options::{self, dotted, flat, path_string, FieldError, Seg};
use crate::positional::{self, SchemeContext};
use crate::report::ReportConfig;
use crate::tasks;
use crate::training::eval::EvalConfig;
use crate::training::spec::RunConfig;
use crate::training::train::TrainConfig;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The sections of a run, in resolution order.
pub const SECTIONS: &[&str] = &["model", "positional", "task", "train", "eval"];

/// Default ceiling on the number of runs a file may expand to.
pub const DEFAULT_MAX_RUNS: usize = 10_000;

/// A bad experiment file: where, and what is wrong and valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// One line: values quoted from the file may hold newlines or other
    /// control characters, which are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message: String = self
            .message
            .chars()
            .map(|c| match c {
                '\n' => "\\n".to_string(),
                '\r' => "\\r".to_string(),
                '\t' => "\\t".to_string(),
                c if c.is_control() => c.escape_unicode().to_string(),
                c => c.to_string(),
            })
            .collect();
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.location.line,
            self.location.column,
            message
        )
    }
}

impl std::error::Error for ConfigError {}

/// A validated experiment: its runs before seeds are applied.
#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    pub name: String,
    /// Free text from the file's `description`.
    pub description: Option<String>,
    pub source: PathBuf,
    pub seeds: Vec<u64>,
    pub variants: Vec<RunConfig>,
    /// The `report:` section (defaults when absent).
    pub report: ReportConfig,
    /// Non-fatal remarks (an exclude that matched nothing, duplicate variants).
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "default_seeds")]
    seeds: Vec<u64>,
    #[serde(default)]
    defaults: Mapping,
    #[serde(default)]
    grid: Mapping,
    #[serde(default)]
    include: Vec<Mapping>,
    #[serde(default)]
    exclude: Vec<Mapping>,
    #[serde(default)]
    report: Option<Value>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One replacement of the subtree at `target` (a path into the run) by
/// `value`, written at `source` (a path into the document).
#[derive(Clone)]
struct Override {
    target: Vec<Seg>,
    source: Vec<Seg>,
    value: Value,
}

struct Document {
    file: PathBuf,
    locations: Locations,
}

impl Document {
    fn error_at(&self, doc_path: &[Seg], message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            location: self
                .locations
                .find(doc_path)
                .unwrap_or(Location { line: 1, column: 1 }),
            message: message.into(),
        }
    }

    /// Maps an error in a resolved run back to the text that set the value.
    fn locate(&self, err: FieldError, overrides: &[Override]) -> ConfigError {
        let p = &err.path;
        let origin = overrides.iter().rev().find_map(|o| {
            if p.starts_with(&o.target) {
                let mut doc = o.source.clone();
                doc.extend_from_slice(&p[o.target.len()..]);
                Some(doc)
            } else if o.target.starts_with(p) {
                Some(o.source.clone())
            } else {
                None
            }
        });
        let doc_path = origin.unwrap_or_else(|| {
            let mut doc = vec![Seg::Key("defaults".into())];
            doc.extend_from_slice(p);
            doc
        });
        let mut message = format!("{}: {}", path_string(p), err.message);
        if !overrides.is_empty() {
            let labels: Vec<String> = overrides
                .iter()
                .map(|o| format!("{}={}", path_string(&o.target), short(&o.value)))
                .collect();
            message.push_str(&format!(" [in run {}]", labels.join(", ")));
        }
        self.error_at(&doc_path, message)
    }
}

/// A one-line rendering of a YAML value for messages.
fn short(value: &Value) -> String {
    // JSON is YAML's flow style: one line for maps and lists too.
    let text = match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    if text.len() > 60 {
        format!(
            "{}…",
            &text[..text.char_indices().nth(57).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}

/// Reads and validates an experiment file. Nothing is trained or written.
pub fn load(path: &Path, max_runs: usize) -> Result<ExperimentSpec, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        location: Location { line: 1, column: 1 },
        message: format!("cannot read the experiment file: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        ConfigError {
            file: path.to_path_buf(),
            location: Location { line, column },
            message: "the file is not valid UTF-8; valid: a UTF-8 YAML text".into(),
        }
    })?;
    parse(&text, path, max_runs)
}

/// Validates an experiment given as text (`file` names it in errors).
pub fn parse(text: &str, file: &Path, max_runs: usize) -> Result<ExperimentSpec, ConfigError> {
    let doc = Document {
        file: file.to_path_buf(),
        locations: Locations::index(text),
    };
    if text.trim().is_empty() {
        return Err(doc.error_at(&[], "the file is empty; valid: a map with `name`, `seeds`, `defaults`, `grid`, `include`, `exclude`"));
    }
    let raw: ExperimentFile = serde_yaml::from_str(text).map_err(|e| {
        let location = e
            .location()
            .map(|l| Location {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or(Location { line: 1, column: 1 });
        let message = explain_top_level(&e.to_string());
        ConfigError {
            file: file.to_path_buf(),
            location,
            message,
        }
    })?;
    check_name(&doc, &raw.name)?;
    check_seeds(&doc, &raw.seeds)?;
    check_sections(&doc, &raw.defaults)?;
    let axes = grid_axes(&doc, &raw.grid)?;
    let points: usize = axes.iter().map(|a| a.len()).product::<usize>() + raw.include.len();
    let runs = points.saturating_mul(raw.seeds.len());
    if runs > max_runs {
        return Err(doc.error_at(
            &[Seg::Key("grid".into())],
            format!("the grid expands to {runs} runs, more than the limit of {max_runs}; valid: a smaller grid, or raise the limit with --max-runs"),
        ));
    }
    let defaults = Value::Mapping(raw.defaults.clone());
    let excludes = parse_excludes(&doc, &raw.exclude)?;
    let mut warnings = Vec::new();
    let mut excluded_by = vec![0usize; excludes.len()];
    let mut variants: Vec<RunConfig> = Vec::new();
    let mut push = |config: RunConfig, warnings: &mut Vec<String>, what: String| {
        if variants.contains(&config) {
            warnings.push(format!("{what} duplicates an earlier run; kept once"));
        } else {
            variants.push(config);
        }
    };
    for overrides in cartesian(&axes) {
        let config = resolve(&doc, &defaults, &overrides)?;
        let canonical = serde_json::to_value(&config).expect("run config serializes");
        let hits: Vec<usize> = (0..excludes.len())
            .filter(|&i| {
                excludes[i]
                    .iter()
                    .all(|(path, v)| json_at(&canonical, path).is_some_and(|c| same_value(c, v)))
            })
            .collect();
        for &i in &hits {
            excluded_by[i] += 1;
        }
        if hits.is_empty() {
            push(config, &mut warnings, "a grid point".into());
        }
    }
    for (i, include) in raw.include.iter().enumerate() {
        let overrides: Vec<Override> = include
            .iter()
            .map(|(k, v)| {
                let key = key_string(&doc, &[Seg::Key("include".into()), Seg::Index(i)], k)?;
                let target = dotted(&key);
                check_target(
                    &doc,
                    &target,
                    &[
                        Seg::Key("include".into()),
                        Seg::Index(i),
                        Seg::Key(key.clone()),
                    ],
                )?;
                Ok(Override {
                    target,
                    source: vec![Seg::Key("include".into()), Seg::Index(i), Seg::Key(key)],
                    value: v.clone(),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let config = resolve(&doc, &defaults, &overrides)?;
        push(config, &mut warnings, format!("include[{i}]"));
    }
    for (i, count) in excluded_by.iter().enumerate() {
        if *count == 0 {
            warnings.push(format!("exclude[{i}] matches no grid point"));
        }
    }
    let report = parse_report(&doc, raw.report.as_ref(), &variants, &raw.seeds)?;
    Ok(ExperimentSpec {
        name: raw.name,
        description: raw.description,
        source: file.to_path_buf(),
        seeds: raw.seeds,
        variants,
        report,
        warnings,
    })
}

/// Parses and checks the `report:` section against the runs' parameters.
fn parse_report(
    doc: &Document,
    value: Option<&Value>,
    variants: &[RunConfig],
    seeds: &[u64],
) -> Result<ReportConfig, ConfigError> {
    let Some(value) = value else {
        return Ok(ReportConfig::default());
    };
    let rows: Vec<BTreeMap<String, String>> = variants
        .iter()
        .map(|variant| {
            let canonical = serde_json::to_value(variant).expect("run config serializes");
            flat::flatten_value(&canonical)
                .into_iter()
                .map(|(key, v)| (key, flat::text(&v)))
                .collect()
        })
        .collect();
    let mut params = flat::values_by_parameter(&rows);
    params.insert("seed".into(), seeds.iter().map(|s| s.to_string()).collect());
    let located = |err: FieldError| {
        let mut at = vec![Seg::Key("report".into())];
        at.extend_from_slice(&err.path);
        doc.error_at(&at, format!("{}: {}", path_string(&at), err.message))
    };
    let report: ReportConfig = options::parse(value).map_err(located)?;
    report.check(&params).map_err(located)?;
    Ok(report)
}

/// Adds the valid top-level keys and a suggestion to serde's message.
fn explain_top_level(raw: &str) -> String {
    let head = raw.split(" at line ").next().unwrap_or(raw);
    if head.starts_with("unknown field `") {
        let name = head.split('`').nth(1).unwrap_or("");
        return options::unknown_choice(
            "key",
            name,
            &[
                "name",
                "description",
                "seeds",
                "defaults",
                "grid",
                "include",
                "exclude",
                "report",
            ],
        );
    }
    if head.starts_with("repetition limit exceeded") || head.starts_with("recursion limit exceeded")
    {
        return format!("{head}: the YAML aliases expand too much (an alias bomb?); valid: a file whose aliases expand to a reasonable size");
    }
    if head.starts_with("missing field `name`") {
        return "missing key `name` (the experiment name, used for results/<name>/)".into();
    }
    head.to_string()
}

/// Experiment names become directory names under results/ and reports/.
fn check_name(doc: &Document, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(doc.error_at(
            &[Seg::Key("name".into())],
            format!("name `{}` cannot be a directory name; valid: 1 to 100 of A-Z a-z 0-9 _ - . not starting with `.`", short(&Value::String(name.to_string()))),
        ))
    }
}

fn check_seeds(doc: &Document, seeds: &[u64]) -> Result<(), ConfigError> {
    let at = |i: usize| vec![Seg::Key("seeds".into()), Seg::Index(i)];
    if seeds.is_empty() {
        return Err(doc.error_at(
            &at(0),
            "seeds is empty; valid: a list of non-negative integers",
        ));
    }
    for (i, s) in seeds.iter().enumerate() {
        if seeds[..i].contains(s) {
            return Err(doc.error_at(
                &at(i),
                format!("seed {s} is listed twice; valid: distinct seeds"),
            ));
        }
    }
    Ok(())
}

fn check_sections(doc: &Document, defaults: &Mapping) -> Result<(), ConfigError> {
    for (k, v) in defaults {
        let key = key_string(doc, &[Seg::Key("defaults".into())], k)?;
        let at = [Seg::Key("defaults".into()), Seg::Key(key.clone())];
        if !SECTIONS.contains(&key.as_str()) {
            return Err(doc.error_at(
                &at,
                format!(
                    "defaults: {}",
                    options::unknown_choice("section", &key, SECTIONS)
                ),
            ));
        }
        if !v.is_mapping() {
            return Err(doc.error_at(&at, format!("defaults.{key}: expected a map of options")));
        }
    }
    Ok(())
}

fn key_string(doc: &Document, at: &[Seg], key: &Value) -> Result<String, ConfigError> {
    match key {
        Value::String(s) => Ok(s.clone()),
        other => Err(doc.error_at(
            at,
            format!("key {} is not a string; valid: option names", short(other)),
        )),
    }
}

/// A dotted key must start with a section name.
fn check_target(doc: &Document, target: &[Seg], at: &[Seg]) -> Result<(), ConfigError> {
    let first = match target.first() {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    if SECTIONS.contains(&first)
        && target
            .iter()
            .all(|s| !matches!(s, Seg::Key(k) if k.is_empty()))
    {
        Ok(())
    } else {
        Err(doc.error_at(
            at,
            format!(
                "key `{}` does not start with a section; {}",
                path_string(target),
                options::unknown_choice("section", first, SECTIONS)
            ),
        ))
    }
}

/// Each grid key with its list of values, in file order.
fn grid_axes(doc: &Document, grid: &Mapping) -> Result<Vec<Vec<Override>>, ConfigError> {
    let mut axes = Vec::new();
    for (k, values) in grid {
        let key = key_string(doc, &[Seg::Key("grid".into())], k)?;
        let at = vec![Seg::Key("grid".into()), Seg::Key(key.clone())];
        let target = dotted(&key);
        check_target(doc, &target, &at)?;
        let Value::Sequence(values) = values else {
            return Err(doc.error_at(
                &at,
                format!("grid.{key}: expected a list of values to sweep"),
            ));
        };
        if values.is_empty() {
            return Err(doc.error_at(
                &at,
                format!("grid.{key}: the list is empty; valid: one or more values"),
            ));
        }
        axes.push(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut source = at.clone();
                    source.push(Seg::Index(i));
                    Override {
                        target: target.clone(),
                        source,
                        value: v.clone(),
                    }
                })
                .collect(),
        );
    }
    Ok(axes)
}

/// Every combination of one value per axis; the last axis varies fastest.
fn cartesian(axes: &[Vec<Override>]) -> Vec<Vec<Override>> {
    axes.iter().fold(vec![Vec::new()], |acc, axis| {
        acc.into_iter()
            .flat_map(|prefix| {
                axis.iter().map(move |o| {
                    let mut next = prefix.clone();
                    next.push(o.clone());
                    next
                })
            })
            .collect()
    })
}

fn parse_excludes(doc: &Document, excludes: &[Mapping]) -> Result<Vec<ExcludeRule>, ConfigError> {
    excludes
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            rule.iter()
                .map(|(k, v)| {
                    let at = vec![Seg::Key("exclude".into()), Seg::Index(i)];
                    let key = key_string(doc, &at, k)?;
                    let target = dotted(&key);
                    let mut key_at = at.clone();
                    key_at.push(Seg::Key(key));
                    check_target(doc, &target, &key_at)?;
                    let value = serde_json::to_value(v)
                        .map_err(|e| doc.error_at(&key_at, e.to_string()))?;
                    Ok((target, value))
                })
                .collect()
        })
        .collect()
}

/// (path, value) pairs that must all match for a grid point to be excluded.
type ExcludeRule = Vec<(Vec<Seg>, serde_json::Value)>;

fn json_at<'a>(value: &'a serde_json::Value, path: &[Seg]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

/// Equality with numbers compared by value (1 == 1.0).
fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn set_path(root: &mut Value, path: &[Seg], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *root = value;
        return;
    };
    let mut node = root;
    for seg in parents {
        let Seg::Key(k) = seg else {
            unreachable!("override paths are dotted keys")
        };
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let map = node.as_mapping_mut().expect("just made a mapping");
        node = map
            .entry(Value::String(k.clone()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    let Seg::Key(k) = last else {
        unreachable!("override paths are dotted keys")
    };
    if !node.is_mapping() {
        *node = Value::Mapping(Mapping::new());
    }
    node.as_mapping_mut()
        .expect("just made a mapping")
        .insert(Value::String(k.clone()), value);
}

/// Applies `overrides` to the defaults and validates the result.
fn resolve(
    doc: &Document,
    defaults: &Value,
    overrides: &[Override],
) -> Result<RunConfig, ConfigError> {
    let mut merged = defaults.clone();
    for o in overrides {
        set_path(&mut merged, &o.target, o.value.clone());
    }
    resolve_sections(&merged).map_err(|e| doc.locate(e, overrides))
}

fn section<'a>(merged: &'a Value, name: &str) -> std::borrow::Cow<'a, Value> {
    match merged.get(name) {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(Value::Mapping(Mapping::new())),
    }
}

fn within(name: &str) -> impl Fn(FieldError) -> FieldError + '_ {
    move |e| e.within(&[Seg::Key(name.into())])
}

fn resolve_sections(merged: &Value) -> Result<RunConfig, FieldError> {
    if let Value::Mapping(map) = merged {
        for k in map.keys() {
            let key = k.as_str().unwrap_or("");
            if !SECTIONS.contains(&key) {
                return Err(FieldError::new(
                    &[key],
                    options::unknown_choice("section", key, SECTIONS),
                ));
            }
        }
    }
    let model: ModelConfig = options::parse(&section(merged, "model")).map_err(within("model"))?;
    model.validate().map_err(within("model"))?;
    let task_value = section(merged, "task");
    if task_value.as_mapping().is_some_and(|m| m.is_empty()) {
        return Err(FieldError::new(
            &["task", "name"],
            format!("no task given; valid: {}", tasks::names().join(", ")),
        ));
    }
    let (task, built) = tasks::parse(&task_value).map_err(within("task"))?;
    let train: TrainConfig = options::parse(&section(merged, "train")).map_err(within("train"))?;
    train.validate().map_err(within("train"))?;
    let eval: EvalConfig = options::parse(&section(merged, "eval")).map_err(within("eval"))?;
    eval.validate().map_err(within("eval"))?;
    if let Some(max) = built.max_length() {
        if let Some(i) = eval.lengths.iter().position(|&len| len > max) {
            let reason = built
                .max_length_reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return Err(FieldError {
                path: vec![
                    Seg::Key("eval".into()),
                    Seg::Key("lengths".into()),
                    Seg::Index(i),
                ],
                message: format!(
                    "length {} exceeds what task `{}` can generate{reason}; valid: lengths <= {max}",
                    eval.lengths[i], task.name
                ),
            });
        }
    }
    let (_, train_max) = built.train_lengths();
    let longest = eval
        .lengths
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(train_max);
    let ctx = SchemeContext {
        d_model: model.d_model,
        heads: model.heads,
        max_position: built.input_len(longest) - 1,
    };
    let Some(positional_value) = merged.get("positional") else {
        return Err(FieldError::new(
            &["positional", "scheme"],
            format!(
                "no positional scheme given; valid: {}",
                positional::names().join(", ")
            ),
        ));
    };
    let positional = positional::parse(positional_value, &ctx).map_err(within("positional"))?;
    Ok(RunConfig {
        model,
        positional,
        task,
        train,
        eval,
    })
}

#[cfg(test)]
mod tests;

//! The `report:` section: what the tables show and how seeds are summarised.

use super::table::Aggregate;
use crate::options::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The axis key that stands for the length buckets.
pub const LENGTH_BUCKET: &str = "length_bucket";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// A parameter (dotted, e.g. `positional.scheme`, `model.d_model`, `seed`) or `length_bucket`.
    pub rows: String,
    pub columns: String,
    pub metric: MetricChoice,
    /// One table per bucket, unless `rows` or `columns` is `length_bucket`.
    pub buckets: Vec<Bucket>,
    pub aggregate: Aggregate,
    /// A row label (for scheme rows, a scheme name) every other row is tested against.
    pub baseline: Option<String>,
    /// Add 95% t-intervals of the mean (with `aggregate: mean_std`).
    pub ci: bool,
    /// Add a mean-reciprocal-rank column: each row's rank in every column
    /// (1 = best; ties share the better rank), 1/rank averaged over columns.
    pub rank: bool,
    /// The y axis of the training-curve chart.
    pub loss_scale: Scale,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            rows: "positional.scheme".into(),
            columns: "task.name".into(),
            metric: MetricChoice::Headline,
            buckets: vec![Bucket::OutOfDistribution, Bucket::InDistribution],
            aggregate: Aggregate::MeanStd,
            baseline: None,
            ci: false,
            rank: false,
            loss_scale: Scale::Log,
        }
    }
}

/// The metric of a table: the task's headline metric (exact match, or
/// perplexity for language modelling) or one metric for every column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricChoice {
    #[default]
    Headline,
    ExactMatch,
    TokenAcc,
    Loss,
    Perplexity,
    TokensPerS,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    #[default]
    Log,
    Linear,
}

/// Which evaluation lengths a value averages over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BucketSpec", into = "BucketSpec")]
pub enum Bucket {
    InDistribution,
    OutOfDistribution,
    All,
    /// Inclusive [min, max].
    Range(u64, u64),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BucketSpec {
    Name(String),
    Range([u64; 2]),
}

const BUCKET_CHOICES: &str = "in_distribution, out_of_distribution, all, or [min, max]";

impl TryFrom<BucketSpec> for Bucket {
    type Error = String;
    fn try_from(spec: BucketSpec) -> Result<Self, String> {
        match spec {
            BucketSpec::Name(n) => match n.as_str() {
                "in_distribution" => Ok(Bucket::InDistribution),
                "out_of_distribution" => Ok(Bucket::OutOfDistribution),
                "all" => Ok(Bucket::All),
                _ => Err(format!("unknown bucket `{n}`; valid: {BUCKET_CHOICES}")),
            },
            BucketSpec::Range([a, b]) if a <= b => Ok(Bucket::Range(a, b)),
            BucketSpec::Range([a, b]) => Err(format!(
                "[{a}, {b}] is not a range; valid: {BUCKET_CHOICES} with min <= max"
            )),
        }
    }
}

impl From<Bucket> for BucketSpec {
    fn from(b: Bucket) -> Self {
        match b {
            Bucket::InDistribution => BucketSpec::Name("in_distribution".into()),
            Bucket::OutOfDistribution => BucketSpec::Name("out_of_distribution".into()),
            Bucket::All => BucketSpec::Name("all".into()),
            Bucket::Range(a, b) => BucketSpec::Range([a, b]),
        }
    }
}

impl Bucket {
    /// Whether `length` falls in the bucket for a run whose in-distribution
    /// lengths are `seen`.
    pub fn contains(self, seen: (u64, u64), length: u64) -> bool {
        match self {
            Bucket::InDistribution => (seen.0..=seen.1).contains(&length),
            Bucket::OutOfDistribution => length > seen.1,
            Bucket::All => true,
            Bucket::Range(a, b) => (a..=b).contains(&length),
        }
    }

    /// A column or row label.
    pub fn label(self) -> String {
        match self {
            Bucket::InDistribution => "in distribution".into(),
            Bucket::OutOfDistribution => "out of distribution".into(),
            Bucket::All => "all lengths".into(),
            Bucket::Range(a, b) => format!("lengths {a}–{b}"),
        }
    }

    /// The end of a table title, e.g. "beyond the training lengths (out of distribution)".
    pub fn phrase(self, language_model: bool) -> String {
        let what = if language_model { "context" } else { "lengths" };
        match self {
            Bucket::InDistribution => format!("within the training {what} (in distribution)"),
            Bucket::OutOfDistribution => {
                format!("beyond the training {what} (out of distribution)")
            }
            Bucket::All => "over all evaluated lengths".into(),
            Bucket::Range(a, b) => format!("at lengths {a}–{b}"),
        }
    }
}

impl ReportConfig {
    /// Checks the axes and the baseline against the experiment's parameters
    /// (dotted name → the values its runs take).
    pub fn check(&self, params: &BTreeMap<String, Vec<String>>) -> Result<(), FieldError> {
        let names: Vec<&str> = params
            .keys()
            .map(String::as_str)
            .chain([LENGTH_BUCKET])
            .collect();
        for (field, key) in [("rows", &self.rows), ("columns", &self.columns)] {
            if !names.contains(&key.as_str()) {
                return Err(FieldError::new(
                    &[field],
                    crate::options::unknown_choice("parameter", key, &names),
                ));
            }
        }
        if self.rows == self.columns {
            return Err(FieldError::new(
                &["columns"],
                format!(
                    "`{}` is also the rows; valid: a different parameter",
                    self.columns
                ),
            ));
        }
        let by_bucket = self.rows == LENGTH_BUCKET || self.columns == LENGTH_BUCKET;
        if self.metric == MetricChoice::TokensPerS && by_bucket {
            return Err(FieldError::new(
                &["metric"],
                "tokens_per_s is one number per run, not per length; valid: rows and columns other than length_bucket",
            ));
        }
        if self.buckets.is_empty() {
            return Err(FieldError::new(
                &["buckets"],
                format!("empty; valid: a list of {BUCKET_CHOICES}"),
            ));
        }
        if self.ci && self.aggregate != Aggregate::MeanStd {
            return Err(FieldError::new(
                &["ci"],
                "confidence intervals are of the mean; valid: ci with aggregate: mean_std",
            ));
        }
        if let (Some(base), Some(values)) = (&self.baseline, params.get(&self.rows)) {
            if !values.contains(base) {
                let choices: Vec<&str> = values.iter().map(String::as_str).collect();
                return Err(FieldError::new(
                    &["baseline"],
                    format!(
                        "`{base}` is not a value of the rows ({}); valid: {}",
                        self.rows,
                        choices.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([
            (
                "positional.scheme".into(),
                vec!["none".into(), "rope".into()],
            ),
            ("task.name".into(), vec!["copy".into()]),
            ("seed".into(), vec!["0".into(), "1".into()]),
        ])
    }

    fn parse(yaml: &str) -> Result<ReportConfig, FieldError> {
        let config: ReportConfig = crate::options::parse(&serde_yaml::from_str(yaml).unwrap())?;
        config.check(&params()).map(|()| config)
    }

    #[test]
    fn defaults_and_buckets_parse() {
        let c = parse("{}").unwrap();
        assert_eq!(c, ReportConfig::default());
        let c = parse("{rows: positional.scheme, columns: length_bucket, buckets: [in_distribution, [17, 32]], aggregate: median_iqr, baseline: none}").unwrap();
        assert_eq!(
            c.buckets,
            vec![Bucket::InDistribution, Bucket::Range(17, 32)]
        );
        assert_eq!(c.aggregate, Aggregate::MedianIqr);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ReportConfig>(&json).unwrap(), c);
    }

    #[test]
    fn bad_sections_name_the_key_and_the_choices() {
        let err = parse("{rows: positional.shceme}").unwrap_err();
        assert!(
            err.message.contains("did you mean `positional.scheme`"),
            "{err}"
        );
        let err = parse("{buckets: [ood]}").unwrap_err();
        assert!(err.message.contains("unknown bucket `ood`"), "{err}");
        let err = parse("{buckets: [[9, 3]]}").unwrap_err();
        assert!(err.message.contains("min <= max"), "{err}");
        let err = parse("{baseline: alibi}").unwrap_err();
        assert!(err.message.contains("valid: none, rope"), "{err}");
        let err = parse("{aggregate: max, ci: true}").unwrap_err();
        assert_eq!(err.path, vec![crate::options::Seg::Key("ci".into())]);
        let err = parse("{metric: tokens_per_s, columns: length_bucket}").unwrap_err();
        assert!(err.message.contains("one number per run"), "{err}");
        let err = parse("{metric: accuracy}").unwrap_err();
        assert!(err.message.contains("exact_match"), "{err}");
    }
}

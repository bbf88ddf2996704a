//! Tasks: seeded generators of `BOS x SEP y EOS` sequences, one file per task.
//!
//! # Adding a task
//!
//! Write `src/tasks/<name>.rs` with a unit struct implementing
//! [`Registered`](crate::options::registry::Registered) (name, summary,
//! citation, options with defaults) and [`TaskDef`] (`build`), and a
//! [`Task`] (vocabulary size, training range, length unit, example
//! generator, input length; optionally `max_length` with
//! `max_length_reason`, so that config validation rejects evaluation
//! lengths the task cannot generate, `describe` for `posembed tasks
//! --example`, `seen_lengths` when the in-distribution range differs from
//! the training lengths, and `eval_examples` plus `language_model` for a
//! task that scores fixed data rather than fresh draws, as `text` does).
//! Then add `mod <name>;` below and the type to the `registry!` line. Each
//! task file tests its generator against an independent recomputation of
//! the answer; `posembed tasks` and the YAML parser pick it up from the
//! registry.

mod addition;
mod associative_recall;
mod copy;
mod duplicate;
mod odds_first;
mod parity;
mod reverse;
mod sort;
mod text;

use crate::options::registry::{self, Registered};
use crate::options::{self, FieldError, UsageError};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Padding (never a target), begin, separator and end tokens; task symbols follow.
pub const PAD: usize = 0;
pub const BOS: usize = 1;
pub const SEP: usize = 2;
pub const EOS: usize = 3;
pub const FIRST_SYMBOL: usize = 4;

/// One instance: the full token sequence and where the answer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub tokens: Vec<usize>,
    /// Index in `tokens` of the first answer token; the loss covers
    /// `tokens[answer_start..]` (answer and EOS).
    pub answer_start: usize,
}

impl Example {
    /// `BOS x SEP y EOS` with symbol ids offset past the special tokens.
    pub fn seq2seq(x: &[usize], y: &[usize]) -> Self {
        let mut tokens = Vec::with_capacity(x.len() + y.len() + 3);
        tokens.push(BOS);
        tokens.extend(x.iter().map(|s| s + FIRST_SYMBOL));
        tokens.push(SEP);
        tokens.extend(y.iter().map(|s| s + FIRST_SYMBOL));
        tokens.push(EOS);
        Example {
            tokens,
            answer_start: x.len() + 2,
        }
    }

    /// The answer symbols (without EOS), as task symbol ids.
    pub fn answer(&self) -> Vec<usize> {
        self.tokens[self.answer_start..self.tokens.len() - 1]
            .iter()
            .map(|t| t - FIRST_SYMBOL)
            .collect()
    }

    /// The input symbols, as task symbol ids.
    pub fn input(&self) -> Vec<usize> {
        self.tokens[1..self.answer_start - 1]
            .iter()
            .map(|t| t - FIRST_SYMBOL)
            .collect()
    }
}

/// A built task: generates examples of a given length in its natural unit.
pub trait Task: Send + Sync {
    fn vocab_size(&self) -> usize;
    /// Inclusive range of training lengths.
    fn train_lengths(&self) -> (usize, usize);
    /// Inclusive range of evaluation lengths that are in distribution: by
    /// default the training lengths. Reports shade it and split tables by it.
    fn seen_lengths(&self) -> (usize, usize) {
        self.train_lengths()
    }
    /// What a length counts (symbols, digits, pairs, bytes).
    fn length_unit(&self) -> &'static str;
    fn example(&self, length: usize, rng: &mut ChaCha8Rng) -> Example;
    /// Number of tokens fed to the model (all but the last) for an instance of `length`.
    fn input_len(&self, length: usize) -> usize;
    /// The longest length this task can generate (`None`: unbounded). Config
    /// validation rejects evaluation lengths above it, and `build` rejects
    /// training ranges above it.
    fn max_length(&self) -> Option<usize> {
        None
    }
    /// Why [`Task::max_length`] is what it is, e.g. `keys = 16`, for error messages.
    fn max_length_reason(&self) -> Option<String> {
        None
    }
    /// The examples scored at evaluation length `length`: by default
    /// `samples` fresh draws. `longest` is the longest evaluation length, for
    /// tasks that score the same data at every length (`text`).
    fn eval_examples(
        &self,
        length: usize,
        samples: usize,
        _longest: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Example> {
        (0..samples).map(|_| self.example(length, rng)).collect()
    }
    /// Language modelling (every position scored): evaluation adds bits per
    /// token and last-quarter loss, and reports show perplexity rather than
    /// exact match.
    fn language_model(&self) -> bool {
        false
    }
    /// Readable input and answer of `example`, for `posembed tasks --example`.
    /// The default prints the task symbol ids separated by spaces.
    fn describe(&self, example: &Example) -> (String, String) {
        (join(example.input()), join(example.answer()))
    }
}

/// Items separated by single spaces.
pub fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A task, registered once in the `registry!` line below.
pub trait TaskDef: Registered {
    fn build(options: Self::Options) -> Result<Box<dyn Task>, FieldError>;
}

/// A validated task choice with its options in canonical form (defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskConfig {
    pub name: String,
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// Options shared by the symbol-sequence tasks (copy, reverse, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SymbolOptions {
    /// Alphabet size.
    pub symbols: usize,
    /// Inclusive [min, max] number of input symbols during training.
    pub train_lengths: [usize; 2],
}

impl Default for SymbolOptions {
    fn default() -> Self {
        SymbolOptions {
            symbols: 16,
            train_lengths: [1, 16],
        }
    }
}

impl SymbolOptions {
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(2..=200).contains(&self.symbols) {
            return Err(FieldError::new(
                &["symbols"],
                format!("{} symbols is out of range; valid: 2 to 200", self.symbols),
            ));
        }
        check_length_range(self.train_lengths)
    }

    pub fn random_symbols(&self, length: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        (0..length)
            .map(|_| rng.gen_range(0..self.symbols as u32) as usize)
            .collect()
    }
}

/// A task over random symbol strings whose answer is a function of the input
/// (copy, reverse, duplicate, sort, odds_first); length counts input symbols.
pub struct SymbolTask {
    options: SymbolOptions,
    answer: fn(&[usize]) -> Vec<usize>,
    /// Answer length for an input of length n.
    answer_len: fn(usize) -> usize,
}

impl SymbolTask {
    pub fn boxed(
        options: SymbolOptions,
        answer: fn(&[usize]) -> Vec<usize>,
        answer_len: fn(usize) -> usize,
    ) -> Result<Box<dyn Task>, FieldError> {
        options.validate()?;
        Ok(Box::new(SymbolTask {
            options,
            answer,
            answer_len,
        }))
    }
}

impl Task for SymbolTask {
    fn vocab_size(&self) -> usize {
        FIRST_SYMBOL + self.options.symbols
    }
    fn train_lengths(&self) -> (usize, usize) {
        (self.options.train_lengths[0], self.options.train_lengths[1])
    }
    fn length_unit(&self) -> &'static str {
        "symbols"
    }
    fn example(&self, length: usize, rng: &mut ChaCha8Rng) -> Example {
        let x = self.options.random_symbols(length, rng);
        Example::seq2seq(&x, &(self.answer)(&x))
    }
    /// BOS, n symbols, SEP, the answer, EOS: all but the last are fed.
    fn input_len(&self, length: usize) -> usize {
        length + (self.answer_len)(length) + 2
    }
}

/// `[min, max]` with 1 <= min <= max.
pub fn check_length_range(range: [usize; 2]) -> Result<(), FieldError> {
    let [min, max] = range;
    if min == 0 || min > max {
        return Err(FieldError::new(
            &["train_lengths"],
            format!("[{min}, {max}] is not a length range; valid: [min, max] with 1 <= min <= max"),
        ));
    }
    Ok(())
}

/// Canonical options and the task built from them.
type BuiltTask = (serde_json::Map<String, serde_json::Value>, Box<dyn Task>);

crate::registry!(TaskDef =>
    copy::Copy,
    reverse::Reverse,
    duplicate::Duplicate,
    sort::Sort,
    odds_first::OddsFirst,
    addition::Addition,
    parity::Parity,
    associative_recall::AssociativeRecall,
    text::Text,
);

/// Parses a task's options and builds it.
struct Build<'a>(&'a serde_yaml::Value);
impl Visitor for Build<'_> {
    type Output = Result<BuiltTask, FieldError>;
    fn visit<T: TaskDef>(self) -> Self::Output {
        let (parsed, canonical) = registry::canonical::<T>(self.0)?;
        Ok((canonical, T::build(parsed)?))
    }
}

/// Parses a `task:` map (`name` plus that task's options) and builds the task.
pub fn parse(value: &serde_yaml::Value) -> Result<(TaskConfig, Box<dyn Task>), FieldError> {
    let (name, rest) = registry::split_choice(value, "name", "task", &names())?;
    match visit(&name, Build(&serde_yaml::Value::Mapping(rest))).expect("a registered name") {
        Err(err) => Err(FieldError {
            message: format!("{} (task `{name}`)", err.message),
            ..err
        }),
        Ok((options, task)) => Ok((TaskConfig { name, options }, task)),
    }
}

/// Rebuilds a task from its canonical configuration.
pub fn build(config: &TaskConfig) -> Box<dyn Task> {
    let value = serde_yaml::to_value(&config.options).expect("canonical options are plain data");
    match visit(&config.name, Build(&value)) {
        Some(Ok((_, task))) => task,
        _ => panic!("task config `{}` was validated when loaded", config.name),
    }
}

/// Seed of the example printed by `posembed tasks --example`.
pub const EXAMPLE_SEED: u64 = 0;

/// One example of task `name` with default options, at its longest training
/// length, from a fixed seed: a header line and `x: …  ->  y: …`.
/// An unknown name is an error listing the valid names.
pub fn example_text(name: &str) -> Result<String, UsageError> {
    let empty = serde_yaml::Value::Mapping(serde_yaml::Mapping::new());
    let task = match visit(name, Build(&empty)) {
        None => {
            let message = options::unknown_choice("task", name, &names());
            return Err(UsageError(format!("--example: {message}")));
        }
        Some(Err(err)) => return Err(UsageError(format!("--example: task `{name}`: {err}"))),
        Some(Ok((_, task))) => task,
    };
    let (_, length) = task.train_lengths();
    let mut rng = crate::options::seeds::stream(EXAMPLE_SEED, "tasks/example");
    let example = task.example(length, &mut rng);
    let (x, y) = task.describe(&example);
    Ok(format!(
        "{name}, length {length} ({}), default options:\nx: {x}  ->  y: {y}\n",
        task.length_unit()
    ))
}

/// Helpers shared by the task files' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use rand::SeedableRng;

    pub fn yaml(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    /// Builds a task from a YAML `task:` map, panicking on invalid options.
    pub fn task(map: &str) -> Box<dyn Task> {
        match parse(&yaml(map)) {
            Ok((_, task)) => task,
            Err(err) => panic!("{map}: {err}"),
        }
    }

    /// The error for an invalid `task:` map.
    pub fn rejected(map: &str) -> FieldError {
        match parse(&yaml(map)) {
            Ok(_) => panic!("{map} should be rejected"),
            Err(err) => err,
        }
    }

    /// Asserts `map` is rejected at `option` with a message containing every fragment.
    pub fn assert_rejected(map: &str, option: &str, fragments: &[&str]) {
        let err = rejected(map);
        assert_eq!(
            err.path,
            vec![crate::options::Seg::Key(option.into())],
            "{map}: {err}"
        );
        for f in fragments {
            assert!(err.message.contains(f), "`{f}` missing from: {err}");
        }
    }

    /// Generic checks: `input_len(length) + 1` tokens, BOS … SEP … EOS framing,
    /// every token inside the vocabulary, and the same seed giving the same examples.
    pub fn check_shape_and_determinism(task: &dyn Task, lengths: &[usize]) {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        for &len in lengths {
            for _ in 0..20 {
                let ex = task.example(len, &mut rng);
                assert_eq!(task.input_len(len) + 1, ex.tokens.len(), "length {len}");
                assert_eq!(ex.tokens[0], BOS);
                assert_eq!(ex.tokens[ex.answer_start - 1], SEP);
                assert_eq!(*ex.tokens.last().unwrap(), EOS);
                assert!(ex.tokens.iter().all(|&t| t < task.vocab_size()));
                let specials = ex.tokens.iter().filter(|&&t| t < FIRST_SYMBOL).count();
                assert_eq!(specials, 3, "only BOS, SEP and EOS are special");
            }
        }
        let mut a = ChaCha8Rng::seed_from_u64(5);
        let mut b = ChaCha8Rng::seed_from_u64(5);
        let first: Vec<Example> = lengths.iter().map(|&l| task.example(l, &mut a)).collect();
        let second: Vec<Example> = lengths.iter().map(|&l| task.example(l, &mut b)).collect();
        assert_eq!(first, second);
        let mut c = ChaCha8Rng::seed_from_u64(6);
        let third: Vec<Example> = lengths.iter().map(|&l| task.example(l, &mut c)).collect();
        assert_ne!(
            first, third,
            "a different seed should give different examples"
        );
    }

    /// `count` examples at each length from a fixed seed.
    pub fn examples(task: &dyn Task, lengths: &[usize], count: usize) -> Vec<(usize, Example)> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        lengths
            .iter()
            .flat_map(|&len| (0..count).map(move |_| len))
            .map(|len| (len, task.example(len, &mut rng)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn yaml(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn unknown_task_name_suggests() {
        let err = parse(&yaml("{name: revrse}")).err().unwrap();
        assert!(
            err.message.contains("did you mean `reverse`"),
            "{}",
            err.message
        );
        assert!(err.message.contains("copy, reverse"), "{}", err.message);
    }

    #[test]
    fn option_not_taken_names_task() {
        let err = parse(&yaml("{name: copy, base: 10}")).err().unwrap();
        assert!(err.message.contains("task `copy`"), "{}", err.message);
        assert_eq!(err.path, vec![crate::options::Seg::Key("base".into())]);
    }

    #[test]
    fn copy_and_reverse_answers_are_correct() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for name in ["copy", "reverse"] {
            let (_, task) = parse(&yaml(&format!("{{name: {name}, symbols: 5}}"))).unwrap();
            for len in 1..10 {
                let ex = task.example(len, &mut rng);
                assert_eq!(ex.tokens.len(), task.input_len(len) + 1);
                let mut expect = ex.input();
                if name == "reverse" {
                    expect.reverse();
                }
                assert_eq!(ex.answer(), expect);
                assert!(ex.input().iter().all(|&s| s < 5));
                assert_eq!(*ex.tokens.last().unwrap(), EOS);
            }
        }
    }

    #[test]
    fn every_task_prints_an_example() {
        for name in names() {
            let text = example_text(name).unwrap();
            let line = text.lines().nth(1).unwrap();
            assert!(
                line.starts_with("x: ") && line.contains("  ->  y: "),
                "{text}"
            );
            assert_eq!(text, example_text(name).unwrap(), "fixed seed");
        }
        let text = example_text("addition").unwrap();
        assert!(
            text.contains("length 8 (digits)") && text.contains(" + "),
            "{text}"
        );
        let text = example_text("associative_recall").unwrap();
        assert!(text.contains("? k") && text.contains("y: v"), "{text}");
    }

    #[test]
    fn example_of_unknown_task_lists_names() {
        let err = example_text("srot").unwrap_err().0;
        assert!(err.contains("unknown task `srot`"), "{err}");
        assert!(
            err.contains(
                "copy, reverse, duplicate, sort, odds_first, addition, parity, associative_recall, text"
            ),
            "{err}"
        );
        assert!(err.contains("did you mean `sort`"), "{err}");
    }

    #[test]
    fn only_recall_and_text_are_bounded() {
        for name in names() {
            let (_, task) = parse(&yaml(&format!("{{name: {name}}}"))).unwrap();
            let expect = match name {
                "associative_recall" => Some(16),
                // A tenth of Tiny Shakespeare's 1115394 bytes, less the last target.
                "text" => Some(111_538),
                _ => None,
            };
            assert_eq!(task.max_length(), expect, "{name}");
            let (min, max) = task.train_lengths();
            assert!(min >= 1 && min <= max && max <= task.max_length().unwrap_or(usize::MAX));
        }
    }

    #[test]
    fn same_seed_same_examples() {
        let (_, task) = parse(&yaml("{name: copy}")).unwrap();
        let mut a = ChaCha8Rng::seed_from_u64(9);
        let mut b = ChaCha8Rng::seed_from_u64(9);
        for len in [3, 7, 16] {
            assert_eq!(task.example(len, &mut a), task.example(len, &mut b));
        }
    }
}

//! `associative_recall`: `length` key-value pairs k1 v1 … kn vn, then a query
//! key (one of the keys present) → its value, one answer symbol.
//!
//! Keys are distinct within an example, so `length` cannot exceed `keys`:
//! [`Task::max_length`] is `keys`, the training range is checked against it
//! here and evaluation lengths by the config validation. Task symbols: keys
//! 0..keys, then values keys..keys + values (disjoint ranges).

use super::{check_length_range, Example, Task, TaskDef, FIRST_SYMBOL};
use crate::options::registry::Registered;
use crate::options::FieldError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub struct AssociativeRecall;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssociativeRecallOptions {
    /// Number of distinct keys (also the longest possible length).
    pub keys: usize,
    /// Number of distinct values.
    pub values: usize,
    /// Inclusive [min, max] number of pairs during training; max <= keys.
    pub train_lengths: [usize; 2],
}

impl Default for AssociativeRecallOptions {
    fn default() -> Self {
        AssociativeRecallOptions {
            keys: 16,
            values: 16,
            train_lengths: [1, 8],
        }
    }
}

impl Registered for AssociativeRecall {
    const NAME: &'static str = "associative_recall";
    const SUMMARY: &'static str =
        "k1 v1 … kn vn, then a query key → its value (distinct keys; length in pairs, at most `keys`)";
    const CITATION: &'static str =
        "Ba et al. 2016, Using Fast Weights to Attend to the Recent Past (associative retrieval)";
    type Options = AssociativeRecallOptions;
}

impl TaskDef for AssociativeRecall {
    fn build(options: AssociativeRecallOptions) -> Result<Box<dyn Task>, FieldError> {
        for (name, count) in [("keys", options.keys), ("values", options.values)] {
            if !(2..=200).contains(&count) {
                return Err(FieldError::new(
                    &[name],
                    format!("{count} {name} is out of range; valid: 2 to 200"),
                ));
            }
        }
        check_length_range(options.train_lengths)?;
        let [min, max] = options.train_lengths;
        if max > options.keys {
            return Err(FieldError::new(
                &["train_lengths"],
                format!(
                    "[{min}, {max}] needs {max} distinct keys per example but keys = {keys}; valid: [min, max] with 1 <= min <= max <= {keys}",
                    keys = options.keys
                ),
            ));
        }
        Ok(Box::new(AssociativeRecallTask(options)))
    }
}

struct AssociativeRecallTask(AssociativeRecallOptions);

impl Task for AssociativeRecallTask {
    fn vocab_size(&self) -> usize {
        FIRST_SYMBOL + self.0.keys + self.0.values
    }
    fn train_lengths(&self) -> (usize, usize) {
        (self.0.train_lengths[0], self.0.train_lengths[1])
    }
    /// Key-value pairs before the query.
    fn length_unit(&self) -> &'static str {
        "pairs"
    }
    /// Keys are distinct, so at most `keys` pairs.
    fn max_length(&self) -> Option<usize> {
        Some(self.0.keys)
    }
    fn max_length_reason(&self) -> Option<String> {
        Some(format!("keys = {}", self.0.keys))
    }
    /// Panics if `length` exceeds `keys` (validation rules that out).
    fn example(&self, length: usize, rng: &mut ChaCha8Rng) -> Example {
        let (keys, values) = (self.0.keys, self.0.values);
        assert!(
            length <= keys,
            "associative_recall: {length} pairs need distinct keys but keys = {keys}"
        );
        // Partial Fisher-Yates: the first `length` entries are distinct keys.
        let mut pool: Vec<usize> = (0..keys).collect();
        for i in 0..length {
            let j = rng.gen_range(i as u32..keys as u32) as usize;
            pool.swap(i, j);
        }
        let mut x = Vec::with_capacity(2 * length + 1);
        let mut chosen = Vec::with_capacity(length);
        for &key in &pool[..length] {
            let value = keys + rng.gen_range(0..values as u32) as usize;
            x.extend([key, value]);
            chosen.push(value);
        }
        let q = rng.gen_range(0..length as u32) as usize;
        x.push(pool[q]);
        Example::seq2seq(&x, &[chosen[q]])
    }
    /// BOS, 2n pair symbols, the query, SEP, the value, EOS: 2n + 5 tokens.
    fn input_len(&self, length: usize) -> usize {
        2 * length + 4
    }
    /// Keys as `k<i>`, values as `v<j>`, the query after `?`.
    fn describe(&self, example: &Example) -> (String, String) {
        let keys = self.0.keys;
        let show = |s: usize| {
            if s < keys {
                format!("k{s}")
            } else {
                format!("v{}", s - keys)
            }
        };
        let x = example.input();
        let mut parts: Vec<String> = x[..x.len().saturating_sub(1)]
            .iter()
            .map(|&s| show(s))
            .collect();
        if let Some(&query) = x.last() {
            parts.push(format!("? {}", show(query)));
        }
        let y: Vec<String> = example.answer().into_iter().map(show).collect();
        (parts.join(" "), y.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use crate::tasks::testing::*;

    #[test]
    fn answer_is_the_value_of_the_query_key() {
        let task = task("{name: associative_recall, keys: 10, values: 7, train_lengths: [1, 10]}");
        let mut query_slots = [0usize; 10];
        for (len, ex) in examples(task.as_ref(), &[1, 2, 5, 9, 10], 40) {
            let x = ex.input();
            assert_eq!(x.len(), 2 * len + 1);
            let (pairs, query) = (&x[..2 * len], x[2 * len]);
            let mut found = None;
            for (slot, pair) in pairs.chunks(2).enumerate() {
                let (k, v) = (pair[0], pair[1]);
                assert!(k < 10, "keys come first: {x:?}");
                assert!((10..17).contains(&v), "values follow the keys: {x:?}");
                assert!(
                    pairs.chunks(2).filter(|p| p[0] == k).count() == 1,
                    "duplicate key in {x:?}"
                );
                if k == query {
                    found = Some(v);
                    query_slots[slot] += 1;
                }
            }
            let value = found.expect("the query is one of the keys");
            assert_eq!(ex.answer(), vec![value]);
        }
        // The query is not always the first or the last pair.
        assert!(
            query_slots.iter().filter(|&&n| n > 0).count() >= 5,
            "{query_slots:?}"
        );
    }

    #[test]
    fn length_equal_to_keys_uses_every_key() {
        let task = task("{name: associative_recall, keys: 6, train_lengths: [1, 6]}");
        for (_, ex) in examples(task.as_ref(), &[6], 10) {
            let mut keys: Vec<usize> = ex.input()[..12].iter().step_by(2).copied().collect();
            keys.sort_unstable();
            assert_eq!(keys, [0, 1, 2, 3, 4, 5]);
        }
    }

    #[test]
    fn shape_determinism_and_limits() {
        let task = task("{name: associative_recall}");
        check_shape_and_determinism(task.as_ref(), &[1, 3, 8, 16]);
        assert_eq!(task.vocab_size(), 4 + 16 + 16);
        assert_eq!(task.max_length(), Some(16));
        assert_eq!(task.max_length_reason().as_deref(), Some("keys = 16"));
    }

    #[test]
    #[should_panic(expected = "keys = 4")]
    fn longer_than_keys_panics() {
        let task = task("{name: associative_recall, keys: 4, train_lengths: [1, 4]}");
        examples(task.as_ref(), &[5], 1);
    }

    #[test]
    fn describe_names_keys_and_values() {
        let task = task("{name: associative_recall, keys: 4, values: 3, train_lengths: [1, 2]}");
        // k2 v0, k0 v2; query k0 → v2.
        let ex = crate::tasks::Example::seq2seq(&[2, 4, 0, 6, 0], &[6]);
        assert_eq!(
            task.describe(&ex),
            ("k2 v0 k0 v2 ? k0".to_string(), "v2".to_string())
        );
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert_rejected(
            "{name: associative_recall, keys: 1, train_lengths: [1, 1]}",
            "keys",
            &["1 keys", "valid: 2 to 200", "task `associative_recall`"],
        );
        assert_rejected(
            "{name: associative_recall, values: 300}",
            "values",
            &["300 values", "valid: 2 to 200"],
        );
        assert_rejected(
            "{name: associative_recall, keys: 8, train_lengths: [1, 12]}",
            "train_lengths",
            &[
                "[1, 12]",
                "keys = 8",
                "valid: [min, max] with 1 <= min <= max <= 8",
            ],
        );
        assert_rejected(
            "{name: associative_recall, train_lengths: [0, 4]}",
            "train_lengths",
            &["[0, 4]", "valid: [min, max] with 1 <= min <= max"],
        );
        assert_rejected(
            "{name: associative_recall, symbols: 16}",
            "symbols",
            &[
                "unknown key `symbols`",
                "valid: keys, values, train_lengths",
            ],
        );
    }
}

//! `parity`: random bits → the number of ones mod 2, one answer symbol.

use super::{check_length_range, Example, Task, TaskDef, FIRST_SYMBOL};
use crate::options::registry::Registered;
use crate::options::FieldError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub struct Parity;

/// The alphabet is fixed at two symbols (0 and 1), so there is no `symbols` option.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParityOptions {
    /// Inclusive [min, max] number of bits during training.
    pub train_lengths: [usize; 2],
}

impl Default for ParityOptions {
    fn default() -> Self {
        ParityOptions {
            train_lengths: [1, 16],
        }
    }
}

impl Registered for Parity {
    const NAME: &'static str = "parity";
    const SUMMARY: &'static str = "random bits → number of ones mod 2, one symbol (length in bits)";
    const CITATION: &'static str =
        "Delétang et al. 2023, Neural Networks and the Chomsky Hierarchy (parity_check)";
    type Options = ParityOptions;
}

impl TaskDef for Parity {
    fn build(options: ParityOptions) -> Result<Box<dyn Task>, FieldError> {
        check_length_range(options.train_lengths)?;
        Ok(Box::new(ParityTask(options)))
    }
}

struct ParityTask(ParityOptions);

impl Task for ParityTask {
    fn vocab_size(&self) -> usize {
        FIRST_SYMBOL + 2
    }
    fn train_lengths(&self) -> (usize, usize) {
        (self.0.train_lengths[0], self.0.train_lengths[1])
    }
    /// Input bits (the answer is one symbol).
    fn length_unit(&self) -> &'static str {
        "bits"
    }
    fn example(&self, length: usize, rng: &mut ChaCha8Rng) -> Example {
        let bits: Vec<usize> = (0..length)
            .map(|_| rng.gen_range(0..2u32) as usize)
            .collect();
        let parity = bits.iter().fold(0, |p, &b| p ^ b);
        Example::seq2seq(&bits, &[parity])
    }
    /// BOS, n bits, SEP, the parity, EOS: n + 4 tokens.
    fn input_len(&self, length: usize) -> usize {
        length + 3
    }
}

#[cfg(test)]
mod tests {
    use crate::tasks::testing::*;

    #[test]
    fn answer_is_the_count_of_ones_mod_2() {
        let task = task("{name: parity}");
        let mut answers = [0usize; 2];
        for (len, ex) in examples(task.as_ref(), &[1, 2, 3, 16, 17, 64], 30) {
            let bits = ex.input();
            assert_eq!(bits.len(), len);
            assert!(bits.iter().all(|&b| b <= 1));
            let ones = bits.iter().filter(|&&b| b == 1).count();
            assert_eq!(ex.answer(), vec![ones % 2], "{bits:?}");
            answers[ones % 2] += 1;
        }
        assert!(answers[0] > 0 && answers[1] > 0, "{answers:?}");
    }

    #[test]
    fn shape_and_determinism() {
        let task = task("{name: parity}");
        check_shape_and_determinism(task.as_ref(), &[1, 5, 16, 40]);
        assert_eq!(task.vocab_size(), 6);
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert_rejected(
            "{name: parity, train_lengths: [0, 16]}",
            "train_lengths",
            &[
                "[0, 16]",
                "valid: [min, max] with 1 <= min <= max",
                "task `parity`",
            ],
        );
        assert_rejected(
            "{name: parity, symbols: 4}",
            "symbols",
            &["unknown key `symbols`", "valid: train_lengths"],
        );
    }
}

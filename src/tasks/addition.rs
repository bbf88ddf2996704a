//! `addition`: two little-endian numbers of `length` digits in base `base`,
//! separated by a plus token → their little-endian sum, always `length + 1`
//! digits (the last is the carry, 0 or 1), so the answer length is fixed.
//!
//! Task symbols: digits 0..base, then PLUS = base. Digits are uniform, so
//! leading (most significant) zeros occur.

use super::{check_length_range, join, Example, Task, TaskDef, FIRST_SYMBOL};
use crate::options::registry::Registered;
use crate::options::FieldError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub struct Addition;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdditionOptions {
    /// Number base, 2 to 16.
    pub base: usize,
    /// Inclusive [min, max] digits per operand during training.
    pub train_lengths: [usize; 2],
}

impl Default for AdditionOptions {
    fn default() -> Self {
        AdditionOptions {
            base: 10,
            train_lengths: [1, 8],
        }
    }
}

impl Registered for Addition {
    const NAME: &'static str = "addition";
    const SUMMARY: &'static str =
        "a + b, little-endian digits → the sum, length + 1 digits (length in digits per operand)";
    const CITATION: &'static str = "Kazemnejad et al. 2023, The Impact of Positional Encoding on Length Generalization in Transformers";
    type Options = AdditionOptions;
}

impl TaskDef for Addition {
    fn build(options: AdditionOptions) -> Result<Box<dyn Task>, FieldError> {
        if !(2..=16).contains(&options.base) {
            return Err(FieldError::new(
                &["base"],
                format!("base {} is out of range; valid: 2 to 16", options.base),
            ));
        }
        check_length_range(options.train_lengths)?;
        Ok(Box::new(AdditionTask(options)))
    }
}

struct AdditionTask(AdditionOptions);

impl AdditionTask {
    fn plus(&self) -> usize {
        self.0.base
    }
}

impl Task for AdditionTask {
    /// Specials, `base` digits, the plus token.
    fn vocab_size(&self) -> usize {
        FIRST_SYMBOL + self.0.base + 1
    }
    fn train_lengths(&self) -> (usize, usize) {
        (self.0.train_lengths[0], self.0.train_lengths[1])
    }
    /// Digits per operand (the answer has one more).
    fn length_unit(&self) -> &'static str {
        "digits"
    }
    fn example(&self, length: usize, rng: &mut ChaCha8Rng) -> Example {
        let base = self.0.base;
        let mut digit = || rng.gen_range(0..base as u32) as usize;
        let a: Vec<usize> = (0..length).map(|_| digit()).collect();
        let b: Vec<usize> = (0..length).map(|_| digit()).collect();
        let mut sum = Vec::with_capacity(length + 1);
        let mut carry = 0;
        for (da, db) in a.iter().zip(&b) {
            let s = da + db + carry;
            sum.push(s % base);
            carry = s / base;
        }
        sum.push(carry);
        let mut x = a;
        x.push(self.plus());
        x.extend(b);
        Example::seq2seq(&x, &sum)
    }
    /// BOS, n digits, plus, n digits, SEP, n + 1 digits, EOS: 3n + 5 tokens.
    fn input_len(&self, length: usize) -> usize {
        3 * length + 4
    }
    /// Digits as 0-9a-f, the plus token as `+`; least significant digit first.
    fn describe(&self, example: &Example) -> (String, String) {
        let show = |symbols: Vec<usize>| {
            join(symbols.into_iter().map(|s| {
                if s == self.plus() {
                    '+'
                } else {
                    char::from_digit(s as u32, self.0.base as u32).unwrap_or('?')
                }
            }))
        };
        (show(example.input()), show(example.answer()))
    }
}

#[cfg(test)]
mod tests {
    use crate::tasks::testing::*;

    /// Little-endian digits → integer (only for lengths that fit in u128).
    fn value(digits: &[usize], base: u128) -> u128 {
        digits
            .iter()
            .rev()
            .fold(0u128, |acc, &d| acc * base + d as u128)
    }

    #[test]
    fn answer_is_the_sum() {
        for base in [2usize, 3, 10, 16] {
            let task = task(&format!("{{name: addition, base: {base}}}"));
            // Lengths whose sums fit in u128: base^(n + 1) <= 2^128.
            let longest = (1..)
                .take_while(|&n| (base as f64).powi(n as i32 + 1) < 2f64.powi(127))
                .last()
                .unwrap();
            let lengths: Vec<usize> = (1..=12).chain([longest]).collect();
            let (mut carries, mut leading_zeros) = (0, 0);
            for (len, ex) in examples(task.as_ref(), &lengths, 20) {
                let x = ex.input();
                let y = ex.answer();
                assert_eq!(x.len(), 2 * len + 1);
                assert_eq!(x[len], base, "the plus token sits between the operands");
                let (a, b) = (&x[..len], &x[len + 1..]);
                assert!(a.iter().chain(b).all(|&d| d < base));
                assert_eq!(y.len(), len + 1, "always length + 1 digits");
                assert!(y.iter().all(|&d| d < base));
                assert!(y[len] <= 1, "the last digit is the carry");
                let b128 = base as u128;
                assert_eq!(
                    value(&y, b128),
                    value(a, b128) + value(b, b128),
                    "{x:?} → {y:?}"
                );
                carries += usize::from(y[len] == 1);
                leading_zeros += usize::from(a[len - 1] == 0);
            }
            assert!(carries > 0 && leading_zeros > 0, "base {base}");
        }
    }

    #[test]
    fn describe_shows_digits_and_plus() {
        let task = task("{name: addition, base: 16}");
        // 0xf + 0x1 (one digit each) = 0x10 → little-endian "0 1".
        let ex = crate::tasks::Example::seq2seq(&[15, 16, 1], &[0, 1]);
        assert_eq!(task.describe(&ex), ("f + 1".to_string(), "0 1".to_string()));
    }

    #[test]
    fn shape_and_determinism() {
        check_shape_and_determinism(task("{name: addition}").as_ref(), &[1, 2, 8, 20]);
        check_shape_and_determinism(task("{name: addition, base: 2}").as_ref(), &[3, 9, 40]);
        assert_eq!(task("{name: addition, base: 7}").vocab_size(), 4 + 7 + 1);
    }

    #[test]
    fn invalid_options_are_rejected() {
        for base in [0, 1, 17, 100] {
            assert_rejected(
                &format!("{{name: addition, base: {base}}}"),
                "base",
                &[&format!("base {base}"), "valid: 2 to 16", "task `addition`"],
            );
        }
        assert_rejected(
            "{name: addition, train_lengths: [4, 2]}",
            "train_lengths",
            &["[4, 2]", "valid: [min, max] with 1 <= min <= max"],
        );
        assert_rejected(
            "{name: addition, symbols: 10}",
            "symbols",
            &["unknown key `symbols`", "valid: base, train_lengths"],
        );
    }
}

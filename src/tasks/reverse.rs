//! `reverse`: random symbols → the same symbols in reverse order.

use super::{Example, SymbolOptions, Task, TaskDef, FIRST_SYMBOL};
use crate::options::FieldError;
use rand_chacha::ChaCha8Rng;

pub struct Reverse;

impl TaskDef for Reverse {
    const NAME: &'static str = "reverse";
    const SUMMARY: &'static str = "random symbols → the symbols reversed (length in symbols)";
    type Options = SymbolOptions;
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        options.validate()?;
        Ok(Box::new(ReverseTask(options)))
    }
}

struct ReverseTask(SymbolOptions);

impl Task for ReverseTask {
    fn vocab_size(&self) -> usize {
        FIRST_SYMBOL + self.0.symbols
    }
    fn train_lengths(&self) -> (usize, usize) {
        (self.0.train_lengths[0], self.0.train_lengths[1])
    }
    fn length_unit(&self) -> &'static str {
        "symbols"
    }
    fn example(&self, length: usize, rng: &mut ChaCha8Rng) -> Example {
        let x = self.0.random_symbols(length, rng);
        let y: Vec<usize> = x.iter().rev().copied().collect();
        Example::seq2seq(&x, &y)
    }
    fn input_len(&self, length: usize) -> usize {
        2 * length + 2
    }
}

//! `copy`: random symbols → the same symbols.

use super::{Example, SymbolOptions, Task, TaskDef, FIRST_SYMBOL};
use crate::options::FieldError;
use rand_chacha::ChaCha8Rng;

pub struct Copy;

impl TaskDef for Copy {
    const NAME: &'static str = "copy";
    const SUMMARY: &'static str = "random symbols → the same symbols (length in symbols)";
    type Options = SymbolOptions;
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        options.validate()?;
        Ok(Box::new(CopyTask(options)))
    }
}

struct CopyTask(SymbolOptions);

impl Task for CopyTask {
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
        Example::seq2seq(&x, &x)
    }
    fn input_len(&self, length: usize) -> usize {
        2 * length + 2
    }
}

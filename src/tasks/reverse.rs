//! `reverse`: random symbols → the same symbols in reverse order.

use super::{SymbolOptions, SymbolTask, Task, TaskDef};
use crate::options::registry::Registered;
use crate::options::FieldError;

pub struct Reverse;

impl Registered for Reverse {
    const NAME: &'static str = "reverse";
    const SUMMARY: &'static str = "random symbols → the symbols reversed (length in symbols)";
    const CITATION: &'static str =
        "Delétang et al. 2023, Neural Networks and the Chomsky Hierarchy (reverse_string)";
    type Options = SymbolOptions;
}

impl TaskDef for Reverse {
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        SymbolTask::boxed(options, |x| x.iter().rev().copied().collect(), |n| n)
    }
}

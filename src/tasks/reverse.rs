//! `reverse`: random symbols → the same symbols in reverse order.

use super::{SymbolOptions, SymbolTask, Task, TaskDef};
use crate::options::FieldError;

pub struct Reverse;

impl TaskDef for Reverse {
    const NAME: &'static str = "reverse";
    const SUMMARY: &'static str = "random symbols → the symbols reversed (length in symbols)";
    type Options = SymbolOptions;
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        SymbolTask::boxed(options, |x| x.iter().rev().copied().collect(), |n| n)
    }
}

//! `copy`: random symbols → the same symbols.

use super::{SymbolOptions, SymbolTask, Task, TaskDef};
use crate::options::FieldError;

pub struct Copy;

impl TaskDef for Copy {
    const NAME: &'static str = "copy";
    const SUMMARY: &'static str = "random symbols → the same symbols (length in symbols)";
    type Options = SymbolOptions;
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        SymbolTask::boxed(options, |x| x.to_vec(), |n| n)
    }
}

//! `copy`: random symbols → the same symbols.

use super::{SymbolOptions, SymbolTask, Task, TaskDef};
use crate::options::registry::Registered;
use crate::options::FieldError;

pub struct Copy;

impl Registered for Copy {
    const NAME: &'static str = "copy";
    const SUMMARY: &'static str = "random symbols → the same symbols (length in symbols)";
    const CITATION: &'static str =
        "Graves et al. 2014, Neural Turing Machines (copy task); Kazemnejad et al. 2023";
    type Options = SymbolOptions;
}

impl TaskDef for Copy {
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        SymbolTask::boxed(options, |x| x.to_vec(), |n| n)
    }
}

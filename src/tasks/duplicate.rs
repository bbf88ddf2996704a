//! `duplicate`: a random word w → ww (length in symbols of w).

use super::{SymbolOptions, SymbolTask, Task, TaskDef};
use crate::options::registry::Registered;
use crate::options::FieldError;

pub struct Duplicate;

impl Registered for Duplicate {
    const NAME: &'static str = "duplicate";
    const SUMMARY: &'static str = "random symbols w → ww, w twice (length in symbols of w)";
    const CITATION: &'static str =
        "Delétang et al. 2023, Neural Networks and the Chomsky Hierarchy (duplicate_string)";
    type Options = SymbolOptions;
}

impl TaskDef for Duplicate {
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        SymbolTask::boxed(options, |w| [w, w].concat(), |n| 2 * n)
    }
}

#[cfg(test)]
mod tests {
    use crate::tasks::testing::*;

    #[test]
    fn answer_is_the_input_twice() {
        let task = task("{name: duplicate, symbols: 5}");
        for (len, ex) in examples(task.as_ref(), &[1, 2, 7, 16, 40], 10) {
            let (x, y) = (ex.input(), ex.answer());
            assert_eq!(x.len(), len);
            assert_eq!(y.len(), 2 * len);
            for i in 0..len {
                assert_eq!(y[i], x[i]);
                assert_eq!(y[len + i], x[i]);
            }
            assert!(x.iter().all(|&s| s < 5));
        }
    }

    #[test]
    fn shape_and_determinism() {
        check_shape_and_determinism(task("{name: duplicate}").as_ref(), &[1, 3, 8, 16, 33]);
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert_rejected(
            "{name: duplicate, symbols: 1}",
            "symbols",
            &["1 symbols", "valid: 2 to 200", "task `duplicate`"],
        );
        assert_rejected(
            "{name: duplicate, train_lengths: [0, 4]}",
            "train_lengths",
            &["[0, 4]", "valid: [min, max] with 1 <= min <= max"],
        );
        assert_rejected(
            "{name: duplicate, base: 10}",
            "base",
            &["unknown key `base`", "valid: symbols, train_lengths"],
        );
    }
}

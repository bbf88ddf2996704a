//! `sort`: random symbols → the same symbols in ascending order.

use super::{SymbolOptions, SymbolTask, Task, TaskDef};
use crate::options::registry::Registered;
use crate::options::FieldError;

pub struct Sort;

impl Registered for Sort {
    const NAME: &'static str = "sort";
    const SUMMARY: &'static str =
        "random symbols → the symbols sorted ascending (length in symbols)";
    const CITATION: &'static str =
        "Delétang et al. 2023, Neural Networks and the Chomsky Hierarchy (bucket_sort)";
    type Options = SymbolOptions;
}

impl TaskDef for Sort {
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        SymbolTask::boxed(options, sorted, |n| n)
    }
}

fn sorted(x: &[usize]) -> Vec<usize> {
    let mut y = x.to_vec();
    y.sort_unstable();
    y
}

#[cfg(test)]
mod tests {
    use crate::tasks::testing::*;

    #[test]
    fn answer_is_the_input_sorted() {
        let task = task("{name: sort, symbols: 6}");
        for (len, ex) in examples(task.as_ref(), &[1, 2, 5, 16, 50], 10) {
            let (x, y) = (ex.input(), ex.answer());
            assert_eq!(x.len(), len);
            // Non-decreasing, and the same multiset (counted per symbol).
            assert!(y.windows(2).all(|w| w[0] <= w[1]), "{y:?}");
            for s in 0..6 {
                let count = |v: &[usize]| v.iter().filter(|&&t| t == s).count();
                assert_eq!(count(&x), count(&y), "symbol {s} in {x:?} → {y:?}");
            }
            assert_eq!(x.len(), y.len());
        }
    }

    #[test]
    fn shape_and_determinism() {
        check_shape_and_determinism(task("{name: sort}").as_ref(), &[1, 4, 16, 30]);
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert_rejected(
            "{name: sort, symbols: 500}",
            "symbols",
            &["500 symbols", "valid: 2 to 200", "task `sort`"],
        );
        assert_rejected(
            "{name: sort, train_lengths: [9, 3]}",
            "train_lengths",
            &["[9, 3]", "valid: [min, max] with 1 <= min <= max"],
        );
    }
}

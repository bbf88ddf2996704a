//! `odds_first`: t1 t2 … tn → the odd-indexed tokens t1 t3 … then the
//! even-indexed ones t2 t4 … (1-based indices).

use super::{SymbolOptions, SymbolTask, Task, TaskDef};
use crate::options::registry::Registered;
use crate::options::FieldError;

pub struct OddsFirst;

impl Registered for OddsFirst {
    const NAME: &'static str = "odds_first";
    const SUMMARY: &'static str =
        "t1 t2 … tn → t1 t3 … then t2 t4 … (odd positions first; length in symbols)";
    const CITATION: &'static str =
        "Delétang et al. 2023, Neural Networks and the Chomsky Hierarchy (odds_first)";
    type Options = SymbolOptions;
}

impl TaskDef for OddsFirst {
    fn build(options: SymbolOptions) -> Result<Box<dyn Task>, FieldError> {
        SymbolTask::boxed(options, odds_first, |n| n)
    }
}

/// t1 t3 … then t2 t4 …: 0-based even indices are the 1-based odd positions.
fn odds_first(x: &[usize]) -> Vec<usize> {
    x.iter()
        .step_by(2)
        .chain(x.iter().skip(1).step_by(2))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::odds_first;
    use crate::tasks::testing::*;

    #[test]
    fn answer_has_odd_positions_then_even_ones() {
        let task = task("{name: odds_first, symbols: 50}");
        for (len, ex) in examples(task.as_ref(), &[1, 2, 3, 8, 15, 40], 10) {
            let (x, y) = (ex.input(), ex.answer());
            assert_eq!(x.len(), len);
            let mut odd = Vec::new();
            let mut even = Vec::new();
            for (i, &t) in x.iter().enumerate() {
                let position = i + 1;
                if position % 2 == 1 {
                    odd.push(t);
                } else {
                    even.push(t);
                }
            }
            assert_eq!(y[..odd.len()], odd[..]);
            assert_eq!(y[odd.len()..], even[..]);
            assert_eq!(odd.len(), len.div_ceil(2));
        }
    }

    #[test]
    fn worked_examples() {
        assert_eq!(odds_first(&[1, 2, 3, 4, 5]), [1, 3, 5, 2, 4]);
        assert_eq!(odds_first(&[1, 2, 3, 4]), [1, 3, 2, 4]);
        assert_eq!(odds_first(&[7]), [7]);
    }

    #[test]
    fn shape_and_determinism() {
        check_shape_and_determinism(task("{name: odds_first}").as_ref(), &[1, 2, 9, 16, 31]);
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert_rejected(
            "{name: odds_first, symbols: 0}",
            "symbols",
            &["0 symbols", "valid: 2 to 200", "task `odds_first`"],
        );
        assert_rejected(
            "{name: odds_first, train_lengths: [0, 0]}",
            "train_lengths",
            &["[0, 0]", "valid: [min, max] with 1 <= min <= max"],
        );
    }
}

//! The `randomized` modifier (Ruoss et al. 2023): each sequence sees a sorted
//! random subset of [0, L) as its positions instead of 0..n, so that
//! positions seen in training cover those needed at longer test lengths.
//! Training draws from the run's `positions` stream, evaluation from the
//! evaluation stream of (eval.seed, length).

use super::SchemeContext;
use crate::nn::hooks::Positions;
use crate::options::FieldError;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Randomized {
    /// L: positions are drawn from [0, L).
    pub max_position: usize,
}

impl Randomized {
    /// `ctx.max_position` is the largest index a plain run would use.
    pub fn check(&self, ctx: &SchemeContext) -> Result<(), FieldError> {
        let needed = ctx.max_position + 1;
        if self.max_position < needed || self.max_position > 1 << 20 {
            return Err(FieldError::new(
                &["randomized", "max_position"],
                format!(
                    "L = {} cannot hold the longest sequence ({needed} tokens); valid: {needed} <= max_position <= 1048576",
                    self.max_position
                ),
            ));
        }
        Ok(())
    }

    /// One sorted subset of `seq` distinct positions per row.
    pub fn positions(&self, batch: usize, seq: usize, rng: &mut ChaCha8Rng) -> Positions {
        let mut values = Vec::with_capacity(batch * seq);
        for _ in 0..batch {
            let mut row = rand::seq::index::sample(rng, self.max_position, seq).into_vec();
            row.sort_unstable();
            values.extend(row);
        }
        Positions { batch, seq, values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn positions_are_increasing_in_range_and_reproducible() {
        let r = Randomized { max_position: 50 };
        let a = r.positions(8, 20, &mut ChaCha8Rng::seed_from_u64(4));
        for b in 0..8 {
            let row = a.row(b);
            assert!(row.windows(2).all(|w| w[0] < w[1]), "{row:?}");
            assert!(row.iter().all(|&p| p < 50));
        }
        assert_eq!(a, r.positions(8, 20, &mut ChaCha8Rng::seed_from_u64(4)));
        assert_ne!(a, r.positions(8, 20, &mut ChaCha8Rng::seed_from_u64(5)));
        // Rows differ from each other.
        assert_ne!(a.row(0), a.row(1));
    }

    #[test]
    fn rejects_a_range_shorter_than_the_sequences() {
        let ctx = SchemeContext {
            d_model: 16,
            heads: 2,
            max_position: 39,
        };
        assert!(Randomized { max_position: 40 }.check(&ctx).is_ok());
        let err = Randomized { max_position: 39 }.check(&ctx).unwrap_err();
        assert!(
            err.message.contains("valid: 40 <= max_position"),
            "{}",
            err.message
        );
    }
}

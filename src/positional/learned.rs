//! `learned`: a trainable vector per absolute position, added to the token embeddings.
//! A position at or beyond `max_positions` is a configuration error, never a wrap.

use super::{BuildContext, OTape, PositionalLayer, Positions, SchemeContext, SchemeDef};
use crate::model::param::{Param, ParamVisitor};
use crate::options::FieldError;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Learned;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnedOptions {
    pub max_positions: usize,
}

impl Default for LearnedOptions {
    fn default() -> Self {
        LearnedOptions {
            max_positions: 1024,
        }
    }
}

/// Initial scale: the RMS of a sinusoid entry, so learned and sinusoidal start alike.
const INIT_STD: f32 = std::f32::consts::FRAC_1_SQRT_2;

impl SchemeDef for Learned {
    const NAME: &'static str = "learned";
    const SUMMARY: &'static str = "trainable absolute position vectors added to token embeddings";
    const CITATION: &'static str = "Gehring et al. 2017; Vaswani et al. 2017 Table 3 (E)";
    type Options = LearnedOptions;
    fn check(options: &LearnedOptions, ctx: &SchemeContext) -> Result<(), FieldError> {
        if options.max_positions == 0 || options.max_positions > 1 << 20 {
            return Err(FieldError::new(
                &["max_positions"],
                format!(
                    "{} is out of range; valid: 1 to 1048576",
                    options.max_positions
                ),
            ));
        }
        if ctx.max_position >= options.max_positions {
            return Err(FieldError::new(
                &["max_positions"],
                format!(
                    "this run uses positions up to {} (longest train or eval sequence) but max_positions is {}; \
                     valid: max_positions >= {}, or shorter eval.lengths",
                    ctx.max_position,
                    options.max_positions,
                    ctx.max_position + 1
                ),
            ));
        }
        Ok(())
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: LearnedOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        let table = Param::normal(
            &ctx.dev,
            (options.max_positions, Const::<D>),
            INIT_STD,
            false,
            ctx.rng,
        );
        Box::new(LearnedLayer {
            table,
            dev: ctx.dev,
        })
    }
}

pub(crate) struct LearnedLayer<const D: usize, Dev: Device<f32>> {
    /// (max_positions, D)
    pub(crate) table: Param<(usize, Const<D>), Dev>,
    dev: Dev,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for LearnedLayer<D, Dev> {
    fn input(
        &self,
        pos: &Positions,
    ) -> Option<Tensor<(usize, usize, Const<D>), f32, Dev, OTape<Dev>>> {
        let index = self
            .dev
            .tensor_from_vec(pos.values.clone(), (pos.batch, pos.seq));
        Some(self.table.on::<OTape<Dev>>().gather(index))
    }
    fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        f(&mut self.table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn only_used_rows_receive_gradient() {
        let dev: Cpu = Default::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let table = Param::normal(&dev, (6, Const::<4>), 1.0, false, &mut rng);
        let layer = LearnedLayer::<4, Cpu> {
            table,
            dev: dev.clone(),
        };
        let pos = Positions {
            batch: 2,
            seq: 2,
            values: vec![0, 2, 0, 3],
        };
        let out = PositionalLayer::<4, Cpu>::input(&layer, &pos).unwrap();
        let grads = out.sum().backward();
        let g = grads.get(&layer.table.value).as_vec();
        for (row, chunk) in g.chunks(4).enumerate() {
            let expect = match row {
                0 => 2.0, // used twice
                2 | 3 => 1.0,
                _ => 0.0,
            };
            assert!(chunk.iter().all(|&x| x == expect), "row {row}: {chunk:?}");
        }
    }

    #[test]
    fn rejects_positions_past_the_table() {
        let ctx = SchemeContext {
            d_model: 8,
            heads: 2,
            max_position: 64,
        };
        let err = Learned::check(&LearnedOptions { max_positions: 64 }, &ctx).unwrap_err();
        assert!(
            err.message.contains("max_positions >= 65"),
            "{}",
            err.message
        );
        assert!(Learned::check(&LearnedOptions { max_positions: 65 }, &ctx).is_ok());
    }
}

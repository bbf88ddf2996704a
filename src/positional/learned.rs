//! `learned`: a trainable vector per absolute position, added to (or
//! concatenated with) the token embeddings. A position at or beyond
//! `max_positions` is a configuration error, never a wrap.

use super::fusion::{self, Fusion};
use super::{BuildContext, SchemeContext, SchemeDef};
use crate::nn::hooks::{Embedded, InputLayout, OTape, PositionalLayer, Positions};
use crate::nn::param::{Param, ParamVisitor};
use crate::options::registry::Registered;
use crate::options::FieldError;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Learned;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnedOptions {
    pub max_positions: usize,
    pub fusion: Fusion,
    /// Position dims for `fusion: concat` (default d_model / 2).
    pub position_dims: Option<usize>,
}

impl Default for LearnedOptions {
    fn default() -> Self {
        LearnedOptions {
            max_positions: 1024,
            fusion: Fusion::Add,
            position_dims: None,
        }
    }
}

/// Initial scale: the RMS of a sinusoid entry, so learned and sinusoidal start alike.
const INIT_STD: f32 = std::f32::consts::FRAC_1_SQRT_2;

impl Registered for Learned {
    const NAME: &'static str = "learned";
    const SUMMARY: &'static str =
        "trainable absolute position vectors added to (or concatenated with) token embeddings";
    const CITATION: &'static str = "Gehring et al. 2017; Vaswani et al. 2017 Table 3 (E)";
    type Options = LearnedOptions;
}

impl SchemeDef for Learned {
    const EXAMPLES: &'static [&'static str] = &["{}", "{fusion: concat}"];
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
                    "this run uses positions up to {} (longest train or eval sequence, or randomized.max_position - 1) \
                     but max_positions is {}; valid: max_positions >= {}, or shorter eval.lengths",
                    ctx.max_position,
                    options.max_positions,
                    ctx.max_position + 1
                ),
            ));
        }
        fusion::position_dims(options.fusion, options.position_dims, ctx.d_model).map(|_| ())
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: LearnedOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        let dims =
            fusion::position_dims(options.fusion, options.position_dims, D).expect("checked");
        let table = Param::normal(
            &ctx.dev,
            (options.max_positions, dims),
            INIT_STD,
            false,
            ctx.rng,
        );
        let placement = (dims < D).then(|| {
            let placement = fusion::place(identity(dims), dims, D);
            ctx.dev.tensor_from_vec(placement, (dims, Const::<D>))
        });
        Box::new(LearnedLayer {
            table,
            placement,
            layout: fusion::layout(options.fusion, dims, D),
            dev: ctx.dev,
        })
    }
}

fn identity(n: usize) -> Vec<f32> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 1.0;
    }
    m
}

pub(crate) struct LearnedLayer<const D: usize, Dev: Device<f32>> {
    /// (max_positions, position dims)
    pub(crate) table: Param<(usize, usize), Dev>,
    /// (position dims, D): moves a concatenated table's rows to the last
    /// dims. None for `add`, whose rows are already D wide: multiplying them
    /// by the identity took about 13% of an S1 step.
    placement: Option<Tensor<(usize, Const<D>), f32, Dev>>,
    layout: InputLayout,
    dev: Dev,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for LearnedLayer<D, Dev> {
    fn input(&self, pos: &Positions) -> Option<Embedded<D, Dev>> {
        let (b, s) = (pos.batch, pos.seq);
        let index = self.dev.tensor_from_vec(pos.values.clone(), (b * s,));
        let rows = self.table.on::<OTape<Dev>>().gather(index); // (b·s, dims)
        let shape = (b, s, Const::<D>);
        Some(match &self.placement {
            Some(placement) => rows.matmul(placement.clone()).reshape_like(&shape),
            None => rows.reshape_like(&shape),
        })
    }
    fn input_layout(&self) -> InputLayout {
        self.layout
    }
    fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        f(&mut self.table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn layer(options: LearnedOptions) -> Box<dyn PositionalLayer<4, Cpu>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        Learned::build::<4, Cpu>(
            options,
            BuildContext {
                dev: Default::default(),
                heads: 1,
                layers: 1,
                rng: &mut rng,
            },
        )
    }

    #[test]
    fn only_used_rows_receive_gradient() {
        let dev: Cpu = Default::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let table = Param::normal(&dev, (6, 4), 1.0, false, &mut rng);
        let layer = LearnedLayer::<4, Cpu> {
            table,
            placement: None,
            layout: InputLayout::Add,
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
    fn add_gives_the_table_rows_as_the_identity_placement_did() {
        let dev: Cpu = Default::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let table = Param::normal(&dev, (6, 4), 1.0, false, &mut rng);
        let rows = table.value.as_vec();
        let layer = |placement| LearnedLayer::<4, Cpu> {
            table: Param {
                value: table.value.clone(),
                decay: false,
            },
            placement,
            layout: InputLayout::Add,
            dev: dev.clone(),
        };
        let identity = dev.tensor_from_vec(identity(4), (4, Const::<4>));
        let pos = Positions {
            batch: 1,
            seq: 3,
            values: vec![5, 0, 2],
        };
        let skipped = layer(None).input(&pos).unwrap().as_vec();
        let multiplied = layer(Some(identity)).input(&pos).unwrap().as_vec();
        let expected: Vec<f32> = [5, 0, 2]
            .iter()
            .flat_map(|&p| rows[p * 4..(p + 1) * 4].to_vec())
            .collect();
        assert_eq!(skipped, expected);
        assert_eq!(multiplied, expected);
    }

    #[test]
    fn concat_fills_only_the_last_dims() {
        let l = layer(LearnedOptions {
            max_positions: 8,
            fusion: Fusion::Concat,
            position_dims: Some(2),
        });
        assert_eq!(l.input_layout(), InputLayout::Concat { token_dims: 2 });
        let out = l.input(&Positions::contiguous(1, 3)).unwrap().as_vec();
        for row in out.chunks(4) {
            assert_eq!(&row[..2], &[0.0, 0.0]);
            assert!(row[2] != 0.0 && row[3] != 0.0);
        }
    }

    #[test]
    fn rejects_positions_past_the_table() {
        let ctx = SchemeContext {
            d_model: 8,
            heads: 2,
            max_position: 64,
        };
        let opts = |m| LearnedOptions {
            max_positions: m,
            ..Default::default()
        };
        let err = Learned::check(&opts(64), &ctx).unwrap_err();
        assert!(
            err.message.contains("max_positions >= 65"),
            "{}",
            err.message
        );
        assert!(Learned::check(&opts(65), &ctx).is_ok());
    }
}

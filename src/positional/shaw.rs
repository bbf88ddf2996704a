//! `shaw`: learned relative position vectors (Shaw et al. 2018). The score of
//! query i for key j gains q_i · a^K[clip(j − i, −k, k)] / √d_head; with
//! `values: true` the output gains Σ_j α_ij a^V[clip(j − i, −k, k)]. One
//! table of 2k+1 vectors per layer, shared across heads, as in the paper.

use super::{BuildContext, Memo, SchemeContext, SchemeDef};
use crate::nn::hooks::{Heads, OTape, PositionalLayer, Positions, Scores};
use crate::nn::param::{Param, ParamVisitor};
use crate::options::registry::Registered;
use crate::options::FieldError;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Shaw;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShawOptions {
    pub max_distance: usize,
    pub values: bool,
}

impl Default for ShawOptions {
    fn default() -> Self {
        ShawOptions {
            max_distance: 16,
            values: false,
        }
    }
}

impl Registered for Shaw {
    const NAME: &'static str = "shaw";
    const SUMMARY: &'static str = "learned key-relative vectors a[clip(j-i, -k, k)] dotted with queries (optional value term)";
    const CITATION: &'static str =
        "Shaw et al. 2018, Self-Attention with Relative Position Representations";
    type Options = ShawOptions;
}

impl SchemeDef for Shaw {
    const EXAMPLES: &'static [&'static str] = &["{max_distance: 2, values: true}"];
    fn check(o: &ShawOptions, _: &SchemeContext) -> Result<(), FieldError> {
        if !(1..=4096).contains(&o.max_distance) {
            return Err(FieldError::new(
                &["max_distance"],
                format!("{}; valid: 1 to 4096", o.max_distance),
            ));
        }
        Ok(())
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: ShawOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        let rows = 2 * options.max_distance + 1;
        let head_dim = D / ctx.heads;
        let std = (head_dim as f32).powf(-0.5);
        let mut table = || Param::normal(&ctx.dev, (rows, head_dim), std, false, ctx.rng);
        let keys = (0..ctx.layers).map(|_| table()).collect();
        let values = if options.values {
            (0..ctx.layers).map(|_| table()).collect()
        } else {
            Vec::new()
        };
        Box::new(ShawLayer {
            max_distance: options.max_distance,
            keys,
            values,
            dev: ctx.dev,
            memo: Memo::default(),
        })
    }
}

/// Row of the table for query position `i` and key position `j`.
pub fn relative_index(i: usize, j: usize, k: usize) -> usize {
    ((j as i64 - i as i64).clamp(-(k as i64), k as i64) + k as i64) as usize
}

pub(crate) struct ShawLayer<Dev: Device<f32>> {
    max_distance: usize,
    /// Per layer: (2k+1, head_dim).
    pub(crate) keys: Vec<Param<(usize, usize), Dev>>,
    pub(crate) values: Vec<Param<(usize, usize), Dev>>,
    dev: Dev,
    /// The table-row index of the last positions seen.
    memo: Memo<Positions, Tensor<(usize,), usize, Dev>>,
}

impl<Dev: Device<f32>> ShawLayer<Dev> {
    /// (batch·seq·seq,) table rows, row-major over (batch, query, key).
    fn index(&self, pos: &Positions) -> Tensor<(usize,), usize, Dev> {
        self.memo.get_or(pos, || self.build_index(pos))
    }

    fn build_index(&self, pos: &Positions) -> Tensor<(usize,), usize, Dev> {
        let s = pos.seq;
        let mut out = Vec::with_capacity(pos.batch * s * s);
        for b in 0..pos.batch {
            let p = pos.row(b);
            for i in 0..s {
                for j in 0..s {
                    out.push(relative_index(p[i], p[j], self.max_distance));
                }
            }
        }
        self.dev.tensor_from_vec(out, (pos.batch * s * s,))
    }

    /// (batch·seq, seq, head_dim): the relative vector of every (query, key) pair.
    fn gathered(
        &self,
        table: &Param<(usize, usize), Dev>,
        pos: &Positions,
    ) -> Tensor<(usize, usize, usize), f32, Dev, OTape<Dev>> {
        let (b, s) = (pos.batch, pos.seq);
        let dh = table.value.shape().1;
        table
            .on::<OTape<Dev>>()
            .gather(self.index(pos))
            .reshape_like(&(b * s, s, dh))
    }
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for ShawLayer<Dev> {
    fn query_bias(
        &self,
        layer: usize,
        queries: Heads<Dev, OTape<Dev>>,
        pos: &Positions,
    ) -> Option<Scores<Dev, OTape<Dev>>> {
        let (b, h, s, dh) = *queries.shape();
        let rel = self
            .gathered(&self.keys[layer], pos)
            .permute::<_, Axes3<0, 2, 1>>(); // (b·s, dh, s)
        let q = queries
            .permute::<_, Axes4<0, 2, 1, 3>>()
            .reshape_like(&(b * s, h, dh)); // (b·s, h, dh)
        let bias = q.matmul(rel) * (1.0 / (dh as f32).sqrt()); // (b·s, h, s)
        Some(
            bias.reshape_like(&(b, s, h, s))
                .permute::<_, Axes4<0, 2, 1, 3>>(),
        )
    }

    fn taps_attention(&self, _layer: usize) -> bool {
        true
    }

    fn value_bias(
        &self,
        layer: usize,
        weights: Scores<Dev, OTape<Dev>>,
        pos: &Positions,
    ) -> Option<Heads<Dev, OTape<Dev>>> {
        let table = self.values.get(layer)?;
        let (b, h, s, _) = *weights.shape();
        let dh = table.value.shape().1;
        let rel = self.gathered(table, pos); // (b·s, s, dh)
        let w = weights
            .permute::<_, Axes4<0, 2, 1, 3>>()
            .reshape_like(&(b * s, h, s)); // (b·s, h, s)
        let out = w.matmul(rel); // (b·s, h, dh)
        Some(
            out.reshape_like(&(b, s, h, dh))
                .permute::<_, Axes4<0, 2, 1, 3>>(),
        )
    }

    fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
            f(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_beyond_k_share_a_vector() {
        let k = 2;
        assert_eq!(relative_index(5, 5, k), 2);
        assert_eq!(relative_index(5, 4, k), 1);
        assert_eq!(relative_index(5, 3, k), 0);
        assert_eq!(relative_index(9, 0, k), 0);
        assert_eq!(relative_index(5, 6, k), 3);
        assert_eq!(relative_index(0, 9, k), 4);
    }
}

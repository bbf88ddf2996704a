//! Causal multi-head self-attention with positional hooks: score biases
//! (fixed, learned or query-dependent), a value-side term and a q/k rotation,
//! all supplied by the positional scheme.

use super::layers::{Act, Linear};
use super::param::ParamVisitor;
use super::ModelTape;
use crate::positional::{Heads, PositionalLayer, Positions, Rotation};
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;

/// Per-forward inputs shared by every layer.
pub struct AttentionContext<'a, const D: usize, Dev: Device<f32>> {
    pub heads: usize,
    /// (seq, seq): 0 where key j ≤ query i, a large negative number above.
    /// Finite, so a fully masked row cannot produce NaN.
    pub causal_mask: Tensor<(usize, usize), f32, Dev>,
    pub rotation: Option<Rotation<Dev>>,
    pub position: &'a dyn PositionalLayer<D, Dev>,
    pub positions: &'a Positions,
    /// Dropout probability on attention weights; 0 at evaluation.
    pub dropout: f32,
}

pub const MASKED: f32 = -1e9;

/// (seq, seq) additive causal mask, row-major.
pub fn causal_mask(seq: usize) -> Vec<f32> {
    let mut mask = vec![0.0; seq * seq];
    for i in 0..seq {
        for j in i + 1..seq {
            mask[i * seq + j] = MASKED;
        }
    }
    mask
}

pub struct Attention<const D: usize, Dev: Device<f32>> {
    q: Linear<D, D, Dev>,
    k: Linear<D, D, Dev>,
    v: Linear<D, D, Dev>,
    out: Linear<D, D, Dev>,
}

impl<const D: usize, Dev: Device<f32>> Attention<D, Dev> {
    pub fn new(dev: &Dev, std: f32, out_std: f32, rng: &mut ChaCha8Rng) -> Self {
        Attention {
            q: Linear::new(dev, std, rng),
            k: Linear::new(dev, std, rng),
            v: Linear::new(dev, std, rng),
            out: Linear::new(dev, out_std, rng),
        }
    }

    pub fn forward<T: ModelTape<Dev>>(
        &self,
        x: Act<D, Dev, T>,
        layer: usize,
        ctx: &AttentionContext<D, Dev>,
    ) -> Act<D, Dev, T> {
        let (b, s, _) = *x.shape();
        let (h, dh) = (ctx.heads, D / ctx.heads);
        let (position, pos) = (ctx.position, ctx.positions);
        let q = split_heads(self.q.forward(x.retaped::<T>()), h); // (b, h, s, dh)
        let k = split_heads(self.k.forward(x.retaped::<T>()), h); // (b, h, s, dh)
        let v = split_heads(self.v.forward(x), h); // (b, h, s, dh)
        let (q, k) = match &ctx.rotation {
            Some(rotation) => (rotation.apply(q), rotation.apply(k)),
            None => (q, k),
        };
        let query_bias = position.query_bias(layer, T::lend(q.retaped::<T>()), pos);
        let mut scores = q.matmul(k.permute::<_, Axes4<0, 1, 3, 2>>()) * (1.0 / (dh as f32).sqrt()); // (b, h, s, s)
        for bias in [position.score_bias(layer, pos, h), query_bias]
            .into_iter()
            .flatten()
        {
            scores = scores + T::adopt(bias);
        }
        let scores = scores
            + ctx
                .causal_mask
                .clone()
                .broadcast_like::<_, Axes2<0, 1>>(&(b, h, s, s));
        let weights = scores.softmax::<Axis<3>>();
        let weights = if ctx.dropout > 0.0 {
            weights.dropout(ctx.dropout)
        } else {
            weights
        };
        let value_bias = position.value_bias(layer, T::lend(weights.retaped::<T>()), pos);
        let mut mixed = weights.matmul(v); // (b, h, s, dh)
        if let Some(extra) = value_bias {
            mixed = mixed + T::adopt(extra);
        }
        let merged = mixed
            .permute::<_, Axes4<0, 2, 1, 3>>()
            .reshape_like(&(b, s, Const::<D>)); // (b, s, D)
        self.out.forward(merged)
    }

    pub fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        self.q.visit_params(f);
        self.k.visit_params(f);
        self.v.visit_params(f);
        self.out.visit_params(f);
    }
}

/// (b, s, D) → (b, h, s, D/h)
fn split_heads<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Act<D, Dev, T>,
    heads: usize,
) -> Heads<Dev, T> {
    let (b, s, _) = *x.shape();
    x.reshape_like(&(b, s, heads, D / heads))
        .permute::<_, Axes4<0, 2, 1, 3>>()
}

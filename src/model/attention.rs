//! Causal multi-head self-attention with positional hooks: score biases
//! (fixed, learned or query-dependent), a value-side term and a q/k rotation,
//! all supplied by the positional scheme.

use super::layers::Linear;
use super::ModelTape;
use crate::nn::hooks::{PositionalLayer, Positions, ScoreBias};
use crate::nn::kernels::{compose, AttentionParams, AttentionSpec, Kernels, NormParams};
use crate::nn::param::ParamVisitor;
use crate::nn::rotation::Rotation;
use crate::nn::Act;
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

impl<const D: usize, Dev: Device<f32>> AttentionContext<'_, D, Dev> {
    pub fn spec(&self) -> AttentionSpec<'_, Dev> {
        AttentionSpec {
            heads: self.heads,
            rotation: self.rotation.as_ref(),
            causal_mask: &self.causal_mask,
            dropout: self.dropout,
        }
    }

    /// The scheme's fixed, learned or bucketed score bias of `layer`.
    pub fn score_bias<T: ModelTape<Dev>>(&self, layer: usize) -> Option<ScoreBias<Dev, T>> {
        let bias = self
            .position
            .score_bias(layer, self.positions, self.heads)?;
        Some(match bias {
            ScoreBias::Fixed(bias) => ScoreBias::Fixed(bias),
            ScoreBias::Trained(bias) => ScoreBias::Trained(T::adopt(bias)),
            ScoreBias::Bucketed(bias) => ScoreBias::Bucketed(bias.map_tape(T::adopt)),
        })
    }

    /// Whether `layer` can run as the fused sublayer: no dropout, and no hook
    /// that needs the queries or the weights as tensors.
    pub fn fusable(&self, layer: usize) -> bool {
        self.dropout == 0.0 && !self.position.taps_attention(layer)
    }
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

impl<const D: usize, Dev: Kernels> Attention<D, Dev> {
    pub fn new(dev: &Dev, std: f32, out_std: f32, rng: &mut ChaCha8Rng) -> Self {
        Attention {
            q: Linear::new(dev, std, rng),
            k: Linear::new(dev, std, rng),
            v: Linear::new(dev, std, rng),
            out: Linear::new(dev, out_std, rng),
        }
    }

    /// Attention composed from dfdx ops with every positional hook (Shaw's
    /// query and value terms need the queries and the weights as tensors);
    /// `x` is the normalised input. Returns the output projection.
    pub fn forward<T: ModelTape<Dev>>(
        &self,
        x: Act<D, Dev, T>,
        layer: usize,
        ctx: &AttentionContext<D, Dev>,
    ) -> Act<D, Dev, T> {
        let (position, pos, spec) = (ctx.position, ctx.positions, ctx.spec());
        let q = self.q.forward(x.retaped::<T>()); // (b, s, D)
        let k = self.k.forward(x.retaped::<T>()); // (b, s, D)
        let v = self.v.forward(x); // (b, s, D)
        let q = compose::rotate(compose::split_heads(q, ctx.heads), &spec); // (b, h, s, dh)
        let k = compose::rotate(compose::split_heads(k, ctx.heads), &spec); // (b, h, s, dh)
        let query_bias = position.query_bias(layer, T::lend(q.retaped::<T>()), pos);
        let bias = [
            ctx.score_bias(layer).map(ScoreBias::into_tensor),
            query_bias.map(T::adopt),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| a + b); // (b, h, s, s)
        let weights = compose::attention_weights(q, k, bias, &spec); // (b, h, s, s)
        let value_bias = position.value_bias(layer, T::lend(weights.retaped::<T>()), pos);
        let mut mixed = weights.matmul(compose::split_heads(v, ctx.heads)); // (b, h, s, dh)
        if let Some(extra) = value_bias {
            mixed = mixed + T::adopt(extra);
        }
        self.out.forward(compose::merge_heads(mixed))
    }

    /// The weights of the fused sublayer, with the LayerNorm before it.
    pub fn params<'a>(&'a self, norm: NormParams<'a, D, Dev>) -> AttentionParams<'a, D, Dev> {
        AttentionParams {
            norm,
            q: self.q.params(),
            k: self.k.params(),
            v: self.v.params(),
            out: self.out.params(),
        }
    }

    pub fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        self.q.visit_params(f);
        self.k.visit_params(f);
        self.v.visit_params(f);
        self.out.visit_params(f);
    }
}

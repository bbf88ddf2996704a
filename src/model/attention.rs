//! The pre-LN causal self-attention sublayer, x + attention(ln(x)), with the
//! positional hooks: score biases (fixed, learned, bucketed or
//! query-dependent), a value-side term and a q/k rotation, all supplied by
//! the positional scheme.
//!
//! [`composed`] is the reference: dfdx ops, every hook, what CUDA runs. On
//! the CPU a layer whose scheme needs neither the queries nor the weights as
//! tensors, without dropout, runs the same computation as one fused op
//! (`nn::kernels`' `attention_sublayer`), which `model::sublayer_tests`
//! checks against [`composed`].

use super::layers::{dropout, LayerNorm, Linear};
use super::ModelTape;
use crate::nn::hooks::{Heads, PositionalLayer, Positions, ScoreBias, Scores};
use crate::nn::kernels::{AttentionParams, AttentionSpec, Kernels};
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
    /// Dropout probability on attention weights and residual branches; 0 at evaluation.
    pub dropout: f32,
}

impl<const D: usize, Dev: Device<f32>> AttentionContext<'_, D, Dev> {
    /// What the fused attention needs besides weights and bias.
    pub fn spec(&self) -> AttentionSpec<'_, Dev> {
        AttentionSpec {
            heads: self.heads,
            rotation: self.rotation.as_ref(),
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

    /// Whether `layer` runs as fused sublayers where the device has them: no
    /// dropout, and no hook that needs the queries or the weights as tensors.
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

/// LayerNorm, then multi-head attention with q, k, v and output projections.
pub struct Attention<const D: usize, Dev: Device<f32>> {
    norm: LayerNorm<D, Dev>,
    q: Linear<D, D, Dev>,
    k: Linear<D, D, Dev>,
    v: Linear<D, D, Dev>,
    out: Linear<D, D, Dev>,
}

impl<const D: usize, Dev: Kernels> Attention<D, Dev> {
    pub fn new(dev: &Dev, std: f32, out_std: f32, rng: &mut ChaCha8Rng) -> Self {
        Attention {
            norm: LayerNorm::new(dev),
            q: Linear::new(dev, std, rng),
            k: Linear::new(dev, std, rng),
            v: Linear::new(dev, std, rng),
            out: Linear::new(dev, out_std, rng),
        }
    }

    /// x + attention(ln(x)): (b, s, D) → (b, s, D).
    pub fn forward<T: ModelTape<Dev>>(
        &self,
        x: Act<D, Dev, T>,
        layer: usize,
        ctx: &AttentionContext<D, Dev>,
    ) -> Act<D, Dev, T> {
        let params = self.params();
        if Dev::FUSED_SUBLAYERS && ctx.fusable(layer) {
            return Dev::attention_sublayer(x, &params, ctx.score_bias(layer), &ctx.spec());
        }
        composed(x, &params, layer, ctx)
    }

    pub fn params(&self) -> AttentionParams<'_, D, Dev> {
        AttentionParams {
            norm: self.norm.params(),
            q: self.q.params(),
            k: self.k.params(),
            v: self.v.params(),
            out: self.out.params(),
        }
    }

    pub fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        self.norm.visit_params(f);
        self.q.visit_params(f);
        self.k.visit_params(f);
        self.v.visit_params(f);
        self.out.visit_params(f);
    }
}

/// x + attention(ln(x)) composed from dfdx ops with every positional hook
/// (Shaw's query and value terms need the queries and the weights as
/// tensors): the reference.
pub fn composed<const D: usize, Dev: Kernels, T: ModelTape<Dev>>(
    x: Act<D, Dev, T>,
    p: &AttentionParams<D, Dev>,
    layer: usize,
    ctx: &AttentionContext<D, Dev>,
) -> Act<D, Dev, T> {
    let (position, pos) = (ctx.position, ctx.positions);
    let h = p.norm.forward(x.retaped::<T>()); // (b, s, D)
    let q = p.q.forward(h.retaped::<T>()); // (b, s, D)
    let k = p.k.forward(h.retaped::<T>()); // (b, s, D)
    let v = p.v.forward(h); // (b, s, D)
    let q = rotate(split_heads(q, ctx.heads), ctx); // (b, h, s, dh)
    let k = rotate(split_heads(k, ctx.heads), ctx); // (b, h, s, dh)
    let query_bias = position.query_bias(layer, T::lend(q.retaped::<T>()), pos);
    let bias = [
        ctx.score_bias(layer).map(ScoreBias::into_tensor),
        query_bias.map(T::adopt),
    ]
    .into_iter()
    .flatten()
    .reduce(|a, b| a + b); // (b, h, s, s)
    let weights = attention_weights(q, k, bias, ctx); // (b, h, s, s)
    let value_bias = position.value_bias(layer, T::lend(weights.retaped::<T>()), pos);
    let mut mixed = weights.matmul(split_heads(v, ctx.heads)); // (b, h, s, dh)
    if let Some(extra) = value_bias {
        mixed = mixed + T::adopt(extra);
    }
    let out = p.out.forward(merge_heads(mixed)); // (b, s, D)
    x + dropout(out, ctx.dropout)
}

fn rotate<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Heads<Dev, T>,
    ctx: &AttentionContext<D, Dev>,
) -> Heads<Dev, T> {
    match &ctx.rotation {
        Some(rotation) => rotation.apply(x),
        None => x,
    }
}

/// softmax(q·kᵀ/√dh + bias + causal mask) with dropout: (b, h, s, s).
fn attention_weights<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    q: Heads<Dev, T>,
    k: Heads<Dev, T>,
    bias: Option<Scores<Dev, T>>,
    ctx: &AttentionContext<D, Dev>,
) -> Scores<Dev, T> {
    let (b, h, s, dh) = *q.shape();
    let mut scores = q.matmul(k.permute::<_, Axes4<0, 1, 3, 2>>()) * (1.0 / (dh as f32).sqrt());
    if let Some(bias) = bias {
        scores = scores + bias;
    }
    let scores = scores
        + ctx
            .causal_mask
            .clone()
            .broadcast_like::<_, Axes2<0, 1>>(&(b, h, s, s));
    dropout(scores.softmax::<Axis<3>>(), ctx.dropout)
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

/// (b, h, s, dh) → (b, s, h·dh)
fn merge_heads<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Heads<Dev, T>,
) -> Act<D, Dev, T> {
    let (b, _, s, _) = *x.shape();
    x.permute::<_, Axes4<0, 2, 1, 3>>()
        .reshape_like(&(b, s, Const::<D>))
}

//! The kernels as compositions of dfdx ops: what runs on CUDA, what the
//! attention hooks that need the weights (Shaw's value term) build on, and
//! the reference the fused CPU kernels are tested against.

use super::{AttentionParams, AttentionSpec, FeedForwardParams, LinearParams, NormParams};
use crate::nn::hooks::{Heads, ScoreBias, Scores};
use crate::nn::{Act, Activation};
use dfdx::prelude::*;

pub fn linear<O: Dim, const I: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Tensor<(usize, Const<I>), f32, Dev, T>,
    weight: &Tensor<(O, Const<I>), f32, Dev>,
    bias: Option<&Tensor<(O,), f32, Dev>>,
    activation: Option<Activation>,
) -> Tensor<(usize, O), f32, Dev, T> {
    let y = x.matmul(weight.retaped::<T>().permute()); // (rows, O)
    let y = match bias {
        Some(bias) => {
            let shape = *y.shape();
            y + bias.retaped::<T>().broadcast_like::<_, Axis<0>>(&shape)
        }
        None => y,
    };
    match activation {
        Some(Activation::Relu) => y.relu(),
        Some(Activation::Gelu) => y.fast_gelu(),
        None => y,
    }
}

pub fn layer_norm<const W: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Tensor<(usize, Const<W>), f32, Dev, T>,
    norm: &NormParams<W, Dev>,
) -> Tensor<(usize, Const<W>), f32, Dev, T> {
    let shape = *x.shape();
    let x = x.normalize::<Axis<1>>(super::layer_norm::EPS);
    x * norm.gain.retaped::<T>().broadcast_like(&shape)
        + norm.bias.retaped::<T>().broadcast_like(&shape)
}

/// A linear layer on (b, s, I) activations.
fn dense<const I: usize, const O: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Act<I, Dev, T>,
    p: &LinearParams<I, O, Dev>,
    activation: Option<Activation>,
) -> Act<O, Dev, T> {
    let (b, s, _) = *x.shape();
    let rows = x.reshape_like(&(b * s, Const::<I>));
    linear(rows, p.weight, Some(p.bias), activation).reshape_like(&(b, s, Const::<O>))
}

/// LayerNorm on (b, s, W) activations.
fn norm<const W: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Act<W, Dev, T>,
    p: &NormParams<W, Dev>,
) -> Act<W, Dev, T> {
    let (b, s, _) = *x.shape();
    layer_norm(x.reshape_like(&(b * s, Const::<W>)), p).reshape_like(&(b, s, Const::<W>))
}

pub fn attention_sublayer<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Act<D, Dev, T>,
    params: &AttentionParams<D, Dev>,
    bias: Option<ScoreBias<Dev, T>>,
    spec: &AttentionSpec<Dev>,
) -> Act<D, Dev, T> {
    let bias = bias.map(ScoreBias::into_tensor);
    let h = norm(x.retaped::<T>(), &params.norm);
    let q = dense(h.retaped::<T>(), &params.q, None);
    let k = dense(h.retaped::<T>(), &params.k, None);
    let v = dense(h, &params.v, None);
    x + dense(attention(q, k, v, bias, spec), &params.out, None)
}

pub fn feed_forward_sublayer<
    const D: usize,
    const F: usize,
    Dev: Device<f32>,
    T: Tape<f32, Dev>,
>(
    x: Act<D, Dev, T>,
    params: &FeedForwardParams<D, F, Dev>,
) -> Act<D, Dev, T> {
    let h = dense(
        norm(x.retaped::<T>(), &params.norm),
        &params.expand,
        Some(params.activation),
    );
    x + dense(h, &params.contract, None)
}

pub fn attention<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    q: Act<D, Dev, T>,
    k: Act<D, Dev, T>,
    v: Act<D, Dev, T>,
    bias: Option<Scores<Dev, T>>,
    spec: &AttentionSpec<Dev>,
) -> Act<D, Dev, T> {
    let q = rotate(split_heads(q, spec.heads), spec); // (b, h, s, dh)
    let k = rotate(split_heads(k, spec.heads), spec); // (b, h, s, dh)
    let weights = attention_weights(q, k, bias, spec); // (b, h, s, s)
    merge_heads(weights.matmul(split_heads(v, spec.heads)))
}

pub fn rotate<Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Heads<Dev, T>,
    spec: &AttentionSpec<Dev>,
) -> Heads<Dev, T> {
    match spec.rotation {
        Some(rotation) => rotation.apply(x),
        None => x,
    }
}

/// softmax(q·kᵀ/√dh + bias + causal mask) with dropout: (b, h, s, s).
pub fn attention_weights<Dev: Device<f32>, T: Tape<f32, Dev>>(
    q: Heads<Dev, T>,
    k: Heads<Dev, T>,
    bias: Option<Scores<Dev, T>>,
    spec: &AttentionSpec<Dev>,
) -> Scores<Dev, T> {
    let (b, h, s, dh) = *q.shape();
    let mut scores = q.matmul(k.permute::<_, Axes4<0, 1, 3, 2>>()) * (1.0 / (dh as f32).sqrt());
    if let Some(bias) = bias {
        scores = scores + bias;
    }
    let scores = scores
        + spec
            .causal_mask
            .clone()
            .broadcast_like::<_, Axes2<0, 1>>(&(b, h, s, s));
    let weights = scores.softmax::<Axis<3>>();
    if spec.dropout > 0.0 {
        weights.dropout(spec.dropout)
    } else {
        weights
    }
}

/// (b, s, D) → (b, h, s, D/h)
pub fn split_heads<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Act<D, Dev, T>,
    heads: usize,
) -> Heads<Dev, T> {
    let (b, s, _) = *x.shape();
    x.reshape_like(&(b, s, heads, D / heads))
        .permute::<_, Axes4<0, 2, 1, 3>>()
}

/// (b, h, s, dh) → (b, s, h·dh)
pub fn merge_heads<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Heads<Dev, T>,
) -> Act<D, Dev, T> {
    let (b, _, s, _) = *x.shape();
    x.permute::<_, Axes4<0, 2, 1, 3>>()
        .reshape_like(&(b, s, Const::<D>))
}

pub fn target_log_probs<Dev: Device<f32>, T: Tape<f32, Dev>>(
    logits: Tensor<(usize, usize), f32, Dev, T>,
    targets: &[usize],
) -> Tensor<(usize,), f32, Dev, T> {
    let rows = logits.shape().0;
    let targets = logits.device().tensor_from_vec(targets.to_vec(), (rows,));
    logits.log_softmax::<Axis<1>>().select(targets)
}

pub fn embed<const D: usize, Dev: Device<f32>, T: Tape<f32, Dev>>(
    table: &Tensor<(usize, Const<D>), f32, Dev>,
    ids: &[usize],
    shape: (usize, usize),
    tape: T,
) -> Act<D, Dev, T> {
    let ids = table.device().tensor_from_vec(ids.to_vec(), shape);
    table.clone().put_tape(tape).gather(ids)
}

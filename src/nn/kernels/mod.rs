//! The model's compute kernels. [`Kernels`] names the operations the model
//! is built from: linear layers, LayerNorm, embedding lookup and the loss,
//! each defaulting to a composition of dfdx ops ([`compose`], what CUDA
//! runs), and whole pre-LN sublayers (attention, feed-forward), which only
//! the CPU fuses. The CPU overrides them with fused forward and backward
//! passes on host arrays, recorded on dfdx's tape as custom ops; the
//! sublayers' readable reference is the model's own composition
//! (`model::attention::composed`, `model::feed_forward::composed`), and the fused versions are
//! tested against it bit for bit where they must agree and to 1e-4 elsewhere
//! (`model::sublayer_tests`). dfdx 0.13's CPU kernels are scalar and strided, its matrix
//! products use an older gemm, and every op boundary costs an allocation,
//! a zeroed gradient and (for a custom op) a copy of its input; a fused
//! sublayer has one boundary and calls gemm 0.19.

mod activation;
mod allocator;
mod attention;
mod bucketed;
pub mod compose;
mod cross_entropy;
mod layer_norm;
mod linear;
pub mod matmul;
mod reduce;
mod simd;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use allocator::keep_freed_memory;
pub use attention::query_blocks;

use super::hooks::ScoreBias;
use super::rotation::Rotation;
use super::{Act, Activation};
use dfdx::prelude::*;
use std::sync::Arc;

/// What the fused attention needs besides its weights and the score bias.
pub struct AttentionSpec<'a, Dev: Device<f32>> {
    pub heads: usize,
    pub rotation: Option<&'a Rotation<Dev>>,
}

/// A linear layer's parameters: y = x Wᵀ + b with W (O, I).
pub struct LinearParams<'a, const I: usize, const O: usize, Dev: Device<f32>> {
    pub weight: &'a Tensor<(Const<O>, Const<I>), f32, Dev>,
    pub bias: &'a Tensor<(Const<O>,), f32, Dev>,
}

/// A LayerNorm's gain and bias.
pub struct NormParams<'a, const W: usize, Dev: Device<f32>> {
    pub gain: &'a Tensor<(Const<W>,), f32, Dev>,
    pub bias: &'a Tensor<(Const<W>,), f32, Dev>,
}

/// x + out(attention(q(ln x), k(ln x), v(ln x))).
pub struct AttentionParams<'a, const D: usize, Dev: Device<f32>> {
    pub norm: NormParams<'a, D, Dev>,
    pub q: LinearParams<'a, D, D, Dev>,
    pub k: LinearParams<'a, D, D, Dev>,
    pub v: LinearParams<'a, D, D, Dev>,
    pub out: LinearParams<'a, D, D, Dev>,
}

/// x + contract(act(expand(ln x))).
pub struct FeedForwardParams<'a, const D: usize, const F: usize, Dev: Device<f32>> {
    pub norm: NormParams<'a, D, Dev>,
    pub expand: LinearParams<'a, D, F, Dev>,
    pub contract: LinearParams<'a, F, D, Dev>,
    pub activation: Activation,
}

impl<const I: usize, const O: usize, Dev: Kernels> LinearParams<'_, I, O, Dev> {
    /// x Wᵀ + b on (b, s, I) activations: (b, s, O).
    pub fn forward<T: Tape<f32, Dev>>(&self, x: Act<I, Dev, T>) -> Act<O, Dev, T> {
        self.apply(x, None)
    }

    /// act(x Wᵀ + b), as one fused op on the CPU.
    pub fn forward_activated<T: Tape<f32, Dev>>(
        &self,
        x: Act<I, Dev, T>,
        activation: Activation,
    ) -> Act<O, Dev, T> {
        self.apply(x, Some(activation))
    }

    fn apply<T: Tape<f32, Dev>>(
        &self,
        x: Act<I, Dev, T>,
        activation: Option<Activation>,
    ) -> Act<O, Dev, T> {
        let (b, s, _) = *x.shape();
        // (b·s, I) × (I, O): one large product instead of b small ones.
        let rows = x.reshape_like(&(b * s, Const::<I>));
        Dev::linear(rows, self.weight, Some(self.bias), activation)
            .reshape_like(&(b, s, Const::<O>))
    }
}

impl<const W: usize, Dev: Kernels> NormParams<'_, W, Dev> {
    /// LayerNorm of (b, s, W) activations.
    pub fn forward<T: Tape<f32, Dev>>(&self, x: Act<W, Dev, T>) -> Act<W, Dev, T> {
        let (b, s, _) = *x.shape();
        let rows = x.reshape_like(&(b * s, Const::<W>));
        Dev::layer_norm(rows, self).reshape_like(&(b, s, Const::<W>))
    }
}

pub trait Kernels: Device<f32> {
    /// Whether this device implements the fused sublayers
    /// ([`Kernels::attention_sublayer`], [`Kernels::feed_forward_sublayer`]).
    /// Where it does not (CUDA), the model runs its composed reference.
    const FUSED_SUBLAYERS: bool = false;

    /// act(x Wᵀ + b): (rows, I) → (rows, O).
    fn linear<O: Dim, const I: usize, T: Tape<f32, Self>>(
        x: Tensor<(usize, Const<I>), f32, Self, T>,
        weight: &Tensor<(O, Const<I>), f32, Self>,
        bias: Option<&Tensor<(O,), f32, Self>>,
        activation: Option<Activation>,
    ) -> Tensor<(usize, O), f32, Self, T> {
        compose::linear(x, weight, bias, activation)
    }

    /// Rows of `table` (vocab, D) picked by `ids`, row-major (b, s): (b, s, D),
    /// recorded on `tape`.
    fn embed<const D: usize, T: Tape<f32, Self>>(
        table: &Tensor<(usize, Const<D>), f32, Self>,
        ids: &[usize],
        shape: (usize, usize),
        tape: T,
    ) -> Act<D, Self, T> {
        compose::embed(table, ids, shape, tape)
    }

    /// LayerNorm of each row with gain and bias.
    fn layer_norm<const W: usize, T: Tape<f32, Self>>(
        x: Tensor<(usize, Const<W>), f32, Self, T>,
        norm: &NormParams<W, Self>,
    ) -> Tensor<(usize, Const<W>), f32, Self, T> {
        compose::layer_norm(x, norm)
    }

    /// The pre-LN causal self-attention sublayer with its residual, on
    /// (b, s, D) rows, with an optional score bias (of (b, h, s, s) scores),
    /// without dropout, as one op. Only called where `FUSED_SUBLAYERS`.
    fn attention_sublayer<const D: usize, T: Tape<f32, Self>>(
        _x: Act<D, Self, T>,
        _params: &AttentionParams<D, Self>,
        _bias: Option<ScoreBias<Self, T>>,
        _spec: &AttentionSpec<Self>,
    ) -> Act<D, Self, T> {
        unreachable!("the fused attention is only called where FUSED_SUBLAYERS is true")
    }

    /// The pre-LN feed-forward sublayer with its residual, on (b, s, D)
    /// rows, without dropout, as one op. Only called where `FUSED_SUBLAYERS`.
    fn feed_forward_sublayer<const D: usize, const F: usize, T: Tape<f32, Self>>(
        _x: Act<D, Self, T>,
        _params: &FeedForwardParams<D, F, Self>,
    ) -> Act<D, Self, T> {
        unreachable!("the fused feed-forward is only called where FUSED_SUBLAYERS is true")
    }

    /// log p(target) of every row: logits (rows, classes) → (rows,).
    fn target_log_probs<T: Tape<f32, Self>>(
        logits: Tensor<(usize, usize), f32, Self, T>,
        targets: &[usize],
    ) -> Tensor<(usize,), f32, Self, T> {
        compose::target_log_probs(logits, targets)
    }
}

#[cfg(feature = "cuda")]
impl Kernels for Cuda {}

/// The contiguous data of `t`, copied out (dfdx keeps its buffers private).
fn host<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut data = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut data);
    data
}

/// Moves the finished gradient of `t` out of `grads`: every consumer of an
/// op's output has run its backward before the op's own backward runs.
fn take_grad<S: Shape>(
    grads: &mut Gradients<f32, Cpu>,
    t: &Tensor<S, f32, Cpu>,
) -> Result<Vec<f32>, CpuError> {
    Ok(std::mem::take(&mut **grads.get_or_alloc_mut(t)?))
}

/// The gradient of `t`, to accumulate into. Parameters are reached one at a
/// time, so a tensor passed in two roles still sums both contributions.
fn grad_of<'g, S: Shape>(
    grads: &'g mut Gradients<f32, Cpu>,
    t: &Tensor<S, f32, Cpu>,
) -> Result<&'g mut [f32], CpuError> {
    Ok(grads.get_or_alloc_mut(t)?.as_mut_slice())
}

/// Where a trained score bias's gradient goes.
enum BiasGrad {
    /// The (batch, heads, seq, seq) bias tensor itself.
    Scores(Tensor<(usize, usize, usize, usize), f32, Cpu>),
    /// A (buckets, heads) table, through the bucket of every (query, key) pair.
    Table {
        table: Tensor<(usize, usize), f32, Cpu>,
        buckets: Arc<[usize]>,
    },
}

/// Host copies of a linear layer's parameters, and the tensors their gradients belong to.
struct HostLinear<const I: usize, const O: usize> {
    weight: Vec<f32>,
    bias: Vec<f32>,
    weight_tensor: Tensor<(Const<O>, Const<I>), f32, Cpu>,
    bias_tensor: Tensor<(Const<O>,), f32, Cpu>,
}

impl<const I: usize, const O: usize> HostLinear<I, O> {
    fn new(p: &LinearParams<I, O, Cpu>) -> Self {
        HostLinear {
            weight: host(p.weight),
            bias: host(p.bias),
            weight_tensor: p.weight.clone(),
            bias_tensor: p.bias.clone(),
        }
    }

    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        linear::forward(x, &self.weight, Some(&self.bias), rows, I, O)
    }

    fn forward_residual(&self, x: &[f32], residual: &[f32], rows: usize) -> Vec<f32> {
        linear::forward_residual(x, &self.weight, &self.bias, residual, rows, I, O)
    }

    /// Accumulates dW and db from the output gradient `dy` and the input
    /// `x`, and returns the input's gradient dy W.
    fn backward(
        &self,
        dy: &[f32],
        x: &[f32],
        rows: usize,
        grads: &mut Gradients<f32, Cpu>,
    ) -> Result<Vec<f32>, CpuError> {
        self.param_grads(dy, x, rows, grads)?;
        Ok(linear::input_grad(dy, &self.weight, rows, I, O))
    }

    /// Accumulates dW and db from the output gradient `dy` and the input `x`.
    fn param_grads(
        &self,
        dy: &[f32],
        x: &[f32],
        rows: usize,
        grads: &mut Gradients<f32, Cpu>,
    ) -> Result<(), CpuError> {
        linear::backward_weight(dy, x, grad_of(grads, &self.weight_tensor)?, rows, I, O);
        linear::backward_bias(dy, grad_of(grads, &self.bias_tensor)?, O);
        Ok(())
    }
}

/// Host copies of a LayerNorm's parameters, and their tensors.
struct HostNorm<const W: usize> {
    gain: Vec<f32>,
    bias: Vec<f32>,
    gain_tensor: Tensor<(Const<W>,), f32, Cpu>,
    bias_tensor: Tensor<(Const<W>,), f32, Cpu>,
}

impl<const W: usize> HostNorm<W> {
    fn new(p: &NormParams<W, Cpu>) -> Self {
        HostNorm {
            gain: host(p.gain),
            bias: host(p.bias),
            gain_tensor: p.gain.clone(),
            bias_tensor: p.bias.clone(),
        }
    }

    fn forward(&self, x: &[f32]) -> (Vec<f32>, layer_norm::Saved) {
        layer_norm::forward(x, &self.gain, &self.bias, W)
    }

    /// dx += LN'ᵀ dy, and the gain and bias gradients.
    fn backward(
        &self,
        dy: &[f32],
        saved: &layer_norm::Saved,
        dx: &mut [f32],
        grads: &mut Gradients<f32, Cpu>,
    ) -> Result<(), CpuError> {
        let (mut dgain, mut dbias) = (vec![0.0; W], vec![0.0; W]);
        layer_norm::backward(dy, &self.gain, saved, W, dx, &mut dgain, &mut dbias);
        add(grad_of(grads, &self.gain_tensor)?, &dgain);
        add(grad_of(grads, &self.bias_tensor)?, &dbias);
        Ok(())
    }
}

/// The end of a pre-LN sublayer's backward: x's gradient gets dy through the
/// residual, then the LayerNorm's share of dh, the gradient of its output.
fn residual_backward<const D: usize>(
    grads: &mut Gradients<f32, Cpu>,
    x: &Act<D, Cpu, NoneTape>,
    dy: &[f32],
    dh: &[f32],
    norm: &HostNorm<D>,
    normed: &layer_norm::Saved,
) -> Result<(), CpuError> {
    let mut dx = take_grad(grads, x)?;
    add(&mut dx, dy);
    norm.backward(dh, normed, &mut dx, grads)?;
    **grads.get_or_alloc_mut(x)? = dx;
    Ok(())
}

fn add(acc: &mut [f32], delta: &[f32]) {
    simd::vectorized(
        #[inline(always)]
        || {
            for (a, d) in acc.iter_mut().zip(delta) {
                *a += d;
            }
        },
    )
}

impl Kernels for Cpu {
    const FUSED_SUBLAYERS: bool = true;

    fn embed<const D: usize, T: Tape<f32, Self>>(
        table: &Tensor<(usize, Const<D>), f32, Self>,
        ids: &[usize],
        (b, s): (usize, usize),
        mut tape: T,
    ) -> Act<D, Self, T> {
        let rows = host(table);
        let mut y = Vec::with_capacity(ids.len() * D);
        for &id in ids {
            y.extend_from_slice(&rows[id * D..(id + 1) * D]);
        }
        let y = table.device().tensor_from_vec(y, (b, s, Const::<D>));
        let (out, table, ids) = (y.clone(), table.clone(), ids.to_vec());
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &out)?;
            let dtable = grad_of(grads, &table)?;
            for (&id, row) in ids.iter().zip(dy.chunks_exact(D)) {
                add(&mut dtable[id * D..(id + 1) * D], row);
            }
            Ok(())
        });
        y.put_tape(tape)
    }

    fn linear<O: Dim, const I: usize, T: Tape<f32, Self>>(
        x: Tensor<(usize, Const<I>), f32, Self, T>,
        weight: &Tensor<(O, Const<I>), f32, Self>,
        bias: Option<&Tensor<(O,), f32, Self>>,
        activation: Option<Activation>,
    ) -> Tensor<(usize, O), f32, Self, T> {
        let (x, mut tape) = x.contiguous().split_tape();
        let (rows, o) = (x.shape().0, weight.shape().0);
        let (xs, ws) = (host(&x), host(weight));
        let bs = bias.map(host);
        let y = linear::forward(&xs, &ws, bs.as_deref(), rows, I, o.size());
        let (y, saved) = match activation {
            Some(act) => {
                let (y, saved) = activation::forward(y, act);
                (y, Some(saved))
            }
            None => (y, None),
        };
        let y = x.device().tensor_from_vec(y, (rows, o));
        let (out, weight, bias) = (y.clone(), weight.clone(), bias.cloned());
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &out)?;
            let dy = match &saved {
                Some(saved) => activation::backward(dy, &host(&out), saved),
                None => dy,
            };
            let o = o.size();
            linear::backward_input(&dy, &ws, grad_of(grads, &x)?, rows, I, o);
            linear::backward_weight(&dy, &xs, grad_of(grads, &weight)?, rows, I, o);
            if let Some(bias) = &bias {
                linear::backward_bias(&dy, grad_of(grads, bias)?, o);
            }
            Ok(())
        });
        y.put_tape(tape)
    }

    fn layer_norm<const W: usize, T: Tape<f32, Self>>(
        x: Tensor<(usize, Const<W>), f32, Self, T>,
        norm: &NormParams<W, Self>,
    ) -> Tensor<(usize, Const<W>), f32, Self, T> {
        let (x, mut tape) = x.contiguous().split_tape();
        let norm = HostNorm::new(norm);
        let (y, saved) = norm.forward(&host(&x));
        let y = x.device().tensor_from_vec(y, *x.shape());
        let out = y.clone();
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &out)?;
            let mut dx = take_grad(grads, &x)?;
            norm.backward(&dy, &saved, &mut dx, grads)?;
            **grads.get_or_alloc_mut(&x)? = dx;
            Ok(())
        });
        y.put_tape(tape)
    }

    fn attention_sublayer<const D: usize, T: Tape<f32, Self>>(
        x: Act<D, Self, T>,
        params: &AttentionParams<D, Self>,
        bias: Option<ScoreBias<Self, T>>,
        spec: &AttentionSpec<Self>,
    ) -> Act<D, Self, T> {
        let (x, mut tape) = x.contiguous().split_tape();
        let (b, s, _) = *x.shape();
        // A trained bias joins the tape and gets a gradient; a fixed one needs neither.
        let (bias, bias_grad) = match bias {
            None => (None, None),
            Some(ScoreBias::Fixed(bias)) => (Some(host(&bias.contiguous())), None),
            Some(ScoreBias::Trained(bias)) => {
                let (bias, bias_tape) = bias.contiguous().split_tape();
                tape = std::mem::take(&mut tape).merge(bias_tape);
                (Some(host(&bias)), Some(BiasGrad::Scores(bias)))
            }
            Some(ScoreBias::Bucketed(bias)) => {
                let (table, table_tape) = bias.table.contiguous().split_tape();
                tape = std::mem::take(&mut tape).merge(table_tape);
                assert_eq!(table.shape().1, spec.heads, "one bias column per head");
                assert_eq!((bias.batch, bias.seq), (b, s), "bias shape");
                let buckets = bias.buckets;
                assert_eq!(buckets.len(), b * s * s, "one bucket per (query, key) pair");
                let full = bucketed::expand(&host(&table), &buckets, spec.heads, s);
                (Some(full), Some(BiasGrad::Table { table, buckets }))
            }
        };
        let (rows, g) = (
            b * s,
            attention::Geometry {
                batch: b,
                seq: s,
                heads: spec.heads,
                head_dim: D / spec.heads,
            },
        );
        let rotation = spec.rotation.map(|r| r.table.clone());
        let (norm, q, k, v, out) = (
            HostNorm::new(&params.norm),
            HostLinear::new(&params.q),
            HostLinear::new(&params.k),
            HostLinear::new(&params.v),
            HostLinear::new(&params.out),
        );
        let xs = host(&x);
        let (h, normed) = norm.forward(&xs); // (b·s, D)
        let (qs, ks, vs) = (
            q.forward(&h, rows),
            k.forward(&h, rows),
            v.forward(&h, rows),
        );
        let (mixed, attended) =
            attention::forward(&qs, &ks, &vs, bias.as_deref(), rotation.as_deref(), g);
        let y = out.forward_residual(&mixed, &xs, rows);
        drop((xs, bias));
        let y = x.device().tensor_from_vec(y, *x.shape());
        let output = y.clone();
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &output)?;
            let dmixed = out.backward(&dy, &mixed, rows, grads)?;
            let mut dfull = Vec::new(); // a bucketed bias's (b, h, s, s) gradient
            let dbias = match &bias_grad {
                Some(BiasGrad::Scores(bias)) => Some(grad_of(grads, bias)?),
                Some(BiasGrad::Table { .. }) => {
                    dfull = vec![0.0; b * g.heads * s * s];
                    Some(dfull.as_mut_slice())
                }
                None => None,
            };
            let attention::Grads { dq, dk, dv } = attention::backward(
                &dmixed,
                &qs,
                &ks,
                &vs,
                rotation.as_deref(),
                &attended,
                g,
                dbias,
            );
            if let Some(BiasGrad::Table { table, buckets }) = &bias_grad {
                let dtable = grad_of(grads, table)?;
                bucketed::scatter(&dfull, buckets, g.heads, s, dtable);
            }
            let mut dh = linear::input_grad(&dq, &q.weight, rows, D, D);
            linear::backward_input(&dk, &k.weight, &mut dh, rows, D, D);
            linear::backward_input(&dv, &v.weight, &mut dh, rows, D, D);
            for (layer, d) in [(&q, &dq), (&k, &dk), (&v, &dv)] {
                layer.param_grads(d, &h, rows, grads)?;
            }
            residual_backward(grads, &x, &dy, &dh, &norm, &normed)
        });
        y.put_tape(tape)
    }

    fn feed_forward_sublayer<const D: usize, const F: usize, T: Tape<f32, Self>>(
        x: Act<D, Self, T>,
        params: &FeedForwardParams<D, F, Self>,
    ) -> Act<D, Self, T> {
        let (x, mut tape) = x.contiguous().split_tape();
        let (b, s, _) = *x.shape();
        let rows = b * s;
        let (norm, expand, contract, act) = (
            HostNorm::new(&params.norm),
            HostLinear::new(&params.expand),
            HostLinear::new(&params.contract),
            params.activation,
        );
        let xs = host(&x);
        let (h, normed) = norm.forward(&xs); // (b·s, D)
        let pre = expand.forward(&h, rows); // (b·s, F)
        let (hidden, saved) = activation::forward(pre, act); // (b·s, F)
        let y = contract.forward_residual(&hidden, &xs, rows);
        drop(xs);
        let y = x.device().tensor_from_vec(y, *x.shape());
        let output = y.clone();
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &output)?;
            let dhidden = contract.backward(&dy, &hidden, rows, grads)?;
            let dpre = activation::backward(dhidden, &hidden, &saved);
            let dh = expand.backward(&dpre, &h, rows, grads)?;
            residual_backward(grads, &x, &dy, &dh, &norm, &normed)
        });
        y.put_tape(tape)
    }

    fn target_log_probs<T: Tape<f32, Self>>(
        logits: Tensor<(usize, usize), f32, Self, T>,
        targets: &[usize],
    ) -> Tensor<(usize,), f32, Self, T> {
        let (logits, mut tape) = logits.contiguous().split_tape();
        let (rows, classes) = *logits.shape();
        let targets = targets.to_vec();
        let (picked, probs) = cross_entropy::forward(&host(&logits), &targets, classes);
        let y = logits.device().tensor_from_vec(picked, (rows,));
        let out = y.clone();
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &out)?;
            cross_entropy::backward(&dy, &probs, &targets, classes, grad_of(grads, &logits)?);
            Ok(())
        });
        y.put_tape(tape)
    }
}

//! The kernels as compositions of dfdx ops: what runs on CUDA, and the
//! reference the fused CPU kernels are tested against.

use super::NormParams;
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

//! Test support for kernel tests here and in the model: random tensors,
//! gradients of a probed output, and tolerances.

use super::{LinearParams, NormParams};
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub(crate) fn random<S: Shape>(dev: &Cpu, shape: S, r: &mut ChaCha8Rng) -> Tensor<S, f32, Cpu> {
    let data = (0..shape.num_elements())
        .map(|_| r.gen_range(-1.5f32..1.5))
        .collect();
    dev.tensor_from_vec(data, shape)
}

pub(crate) type Grads = Gradients<f32, Cpu>;

/// Backward of Σ out ⊙ probe, so that every output element gets its own gradient.
pub(crate) fn backward<S: Shape>(
    out: Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>,
    probe: &Tensor<S, f32, Cpu>,
) -> Grads {
    (out * probe.clone()).sum().backward()
}

/// Elementwise agreement to 1e-4 of the larger of 1 and the vector's largest
/// magnitude: f32 rounding in long sums (and LayerNorm's cancellations)
/// stays well inside it; a wrong term does not.
pub(crate) fn assert_close(fused: &[f32], composed: &[f32], what: &str) {
    assert_eq!(fused.len(), composed.len(), "{what}: lengths");
    let scale = composed.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in fused.iter().zip(composed).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale,
            "{what}[{i}]: fused {a} vs composed {b} (scale {scale})"
        );
    }
}

pub(crate) fn assert_grads_equal<S: Shape>(
    a: &Grads,
    b: &Grads,
    t: &Tensor<S, f32, Cpu>,
    what: &str,
) {
    assert_eq!(a.get(t).as_vec(), b.get(t).as_vec(), "{what}");
}

pub(crate) fn assert_grads_close<S: Shape>(
    fused: &Grads,
    composed: &Grads,
    t: &Tensor<S, f32, Cpu>,
    what: &str,
) {
    assert_close(&fused.get(t).as_vec(), &composed.get(t).as_vec(), what);
}

/// Random parameters of one linear layer.
pub(crate) struct Dense<const I: usize, const O: usize> {
    pub(crate) weight: Tensor<(Const<O>, Const<I>), f32, Cpu>,
    pub(crate) bias: Tensor<(Const<O>,), f32, Cpu>,
}

impl<const I: usize, const O: usize> Dense<I, O> {
    pub(crate) fn new(dev: &Cpu, r: &mut ChaCha8Rng) -> Self {
        // Uniform(±1.5/√I): activations keep unit scale, as with a trained model's weights.
        let weight = random(dev, (Const, Const), r) * (1.0 / (I as f32).sqrt());
        Dense {
            weight,
            bias: random(dev, (Const,), r),
        }
    }
    pub(crate) fn params(&self) -> LinearParams<'_, I, O, Cpu> {
        LinearParams {
            weight: &self.weight,
            bias: &self.bias,
        }
    }
    pub(crate) fn check(&self, fused: &Grads, composed: &Grads, what: &str) {
        assert_grads_close(fused, composed, &self.weight, &format!("{what}: dW"));
        assert_grads_close(fused, composed, &self.bias, &format!("{what}: db"));
    }
}

/// Random LayerNorm parameters (gain around 1).
pub(crate) struct Norm<const W: usize> {
    pub(crate) gain: Tensor<(Const<W>,), f32, Cpu>,
    pub(crate) bias: Tensor<(Const<W>,), f32, Cpu>,
}

impl<const W: usize> Norm<W> {
    pub(crate) fn new(dev: &Cpu, r: &mut ChaCha8Rng) -> Self {
        let gain = (0..W).map(|_| r.gen_range(0.5f32..1.5)).collect();
        Norm {
            gain: dev.tensor_from_vec(gain, (Const,)),
            bias: random(dev, (Const,), r),
        }
    }
    pub(crate) fn params(&self) -> NormParams<'_, W, Cpu> {
        NormParams {
            gain: &self.gain,
            bias: &self.bias,
        }
    }
    pub(crate) fn check(&self, fused: &Grads, composed: &Grads, what: &str) {
        assert_grads_close(fused, composed, &self.gain, &format!("{what}: dgain"));
        assert_grads_close(fused, composed, &self.bias, &format!("{what}: dbias"));
    }
}

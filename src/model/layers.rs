//! Linear and LayerNorm with compile-time widths, and dropout.

use crate::nn::kernels::{Kernels, LinearParams, NormParams};
use crate::nn::param::{Param, ParamVisitor};
use crate::nn::{Act, Activation};
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;

/// y = x Wᵀ + b.
pub struct Linear<const I: usize, const O: usize, Dev: Device<f32>> {
    weight: Param<(Const<O>, Const<I>), Dev>,
    bias: Param<(Const<O>,), Dev>,
}

impl<const I: usize, const O: usize, Dev: Kernels> Linear<I, O, Dev> {
    pub fn new(dev: &Dev, std: f32, rng: &mut ChaCha8Rng) -> Self {
        Linear {
            weight: Param::normal(dev, (Const, Const), std, true, rng),
            bias: Param::filled(dev, (Const,), 0.0),
        }
    }

    /// (b, s, I) → (b, s, O).
    pub fn forward<T: Tape<f32, Dev>>(&self, x: Act<I, Dev, T>) -> Act<O, Dev, T> {
        self.params().forward(x)
    }

    /// act(x Wᵀ + b), as one fused op on the CPU.
    pub fn forward_activated<T: Tape<f32, Dev>>(
        &self,
        x: Act<I, Dev, T>,
        activation: Activation,
    ) -> Act<O, Dev, T> {
        self.params().forward_activated(x, activation)
    }

    pub fn params(&self) -> LinearParams<'_, I, O, Dev> {
        LinearParams {
            weight: &self.weight.value,
            bias: &self.bias.value,
        }
    }

    pub fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        f(&mut self.weight);
        f(&mut self.bias);
    }
}

/// LayerNorm over the last axis with learned gain and bias.
pub struct LayerNorm<const W: usize, Dev: Device<f32>> {
    gain: Param<(Const<W>,), Dev>,
    bias: Param<(Const<W>,), Dev>,
}

impl<const W: usize, Dev: Kernels> LayerNorm<W, Dev> {
    pub fn new(dev: &Dev) -> Self {
        LayerNorm {
            gain: Param::filled(dev, (Const,), 1.0),
            bias: Param::filled(dev, (Const,), 0.0),
        }
    }

    pub fn forward<T: Tape<f32, Dev>>(&self, x: Act<W, Dev, T>) -> Act<W, Dev, T> {
        self.params().forward(x)
    }

    pub fn params(&self) -> NormParams<'_, W, Dev> {
        NormParams {
            gain: &self.gain.value,
            bias: &self.bias.value,
        }
    }

    pub fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        f(&mut self.gain);
        f(&mut self.bias);
    }
}

/// Dropout with probability `p` (none at 0, so evaluation draws nothing).
pub fn dropout<S: Shape, Dev: Device<f32>, T: Tape<f32, Dev>>(
    x: Tensor<S, f32, Dev, T>,
    p: f32,
) -> Tensor<S, f32, Dev, T> {
    if p > 0.0 {
        x.dropout(p)
    } else {
        x
    }
}

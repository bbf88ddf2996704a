//! Linear and LayerNorm with compile-time widths.

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

    pub fn params(&self) -> LinearParams<'_, I, O, Dev> {
        LinearParams {
            weight: &self.weight.value,
            bias: &self.bias.value,
        }
    }

    fn apply<T: Tape<f32, Dev>>(
        &self,
        x: Act<I, Dev, T>,
        activation: Option<Activation>,
    ) -> Act<O, Dev, T> {
        let (b, s, _) = *x.shape();
        // (b·s, I) × (I, O): one large product instead of b small ones.
        let rows = x.reshape_like(&(b * s, Const::<I>));
        Dev::linear(rows, &self.weight.value, Some(&self.bias.value), activation)
            .reshape_like(&(b, s, Const::<O>))
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
        let (b, s, _) = *x.shape();
        let rows = x.reshape_like(&(b * s, Const::<W>));
        Dev::layer_norm(rows, &self.params()).reshape_like(&(b, s, Const::<W>))
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

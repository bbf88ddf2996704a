//! The pre-LN feed-forward sublayer, x + contract(act(expand(ln(x)))).
//! [`composed`] is the reference (dfdx ops, what CUDA runs); the CPU runs
//! it as one fused op, checked against [`composed`] in
//! `model::sublayer_tests`.

use super::layers::{dropout, LayerNorm, Linear};
use crate::nn::kernels::{FeedForwardParams, Kernels};
use crate::nn::param::ParamVisitor;
use crate::nn::{Act, Activation};
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;

pub struct FeedForward<const D: usize, const F: usize, Dev: Device<f32>> {
    norm: LayerNorm<D, Dev>,
    expand: Linear<D, F, Dev>,
    contract: Linear<F, D, Dev>,
    activation: Activation,
}

impl<const D: usize, const F: usize, Dev: Kernels> FeedForward<D, F, Dev> {
    pub fn new(
        dev: &Dev,
        std: f32,
        out_std: f32,
        activation: Activation,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        FeedForward {
            norm: LayerNorm::new(dev),
            expand: Linear::new(dev, std, rng),
            contract: Linear::new(dev, out_std, rng),
            activation,
        }
    }

    /// x + ff(ln(x)): (b, s, D) → (b, s, D); `fuse` where the device can.
    pub fn forward<T: Tape<f32, Dev>>(
        &self,
        x: Act<D, Dev, T>,
        fuse: bool,
        p_drop: f32,
    ) -> Act<D, Dev, T> {
        let params = self.params();
        if Dev::FUSED_SUBLAYERS && fuse {
            return Dev::feed_forward_sublayer(x, &params);
        }
        composed(x, &params, p_drop)
    }

    pub fn params(&self) -> FeedForwardParams<'_, D, F, Dev> {
        FeedForwardParams {
            norm: self.norm.params(),
            expand: self.expand.params(),
            contract: self.contract.params(),
            activation: self.activation,
        }
    }

    pub fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        self.norm.visit_params(f);
        self.expand.visit_params(f);
        self.contract.visit_params(f);
    }
}

/// x + contract(act(expand(ln(x)))) from dfdx ops, with dropout on the
/// hidden layer and the residual branch: the reference.
pub fn composed<const D: usize, const F: usize, Dev: Kernels, T: Tape<f32, Dev>>(
    x: Act<D, Dev, T>,
    p: &FeedForwardParams<D, F, Dev>,
    p_drop: f32,
) -> Act<D, Dev, T> {
    let h = p.norm.forward(x.retaped::<T>()); // (b, s, D)
    let h = p.expand.forward_activated(h, p.activation); // (b, s, F)
    let h = p.contract.forward(dropout(h, p_drop)); // (b, s, D)
    x + dropout(h, p_drop)
}

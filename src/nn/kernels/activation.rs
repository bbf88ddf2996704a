//! ReLU and tanh-GELU (the formula of dfdx's `fast_gelu`), elementwise and
//! in place: the feed-forward sublayer's widest arrays are not copied.

use super::simd::vectorized;
use crate::nn::Activation;

const KAPPA: f32 = 0.044715;
/// √(2/π)
const BETA: f32 = 0.797_884_6;

/// What the backward pass needs besides the activation's output.
pub enum Saved {
    /// ReLU's derivative is 1 where its output is positive: nothing more.
    Relu,
    /// GELU's derivative needs its input.
    Gelu(Vec<f32>),
}

/// act(x), computed in x's buffer where the input is not needed later.
pub fn forward(mut x: Vec<f32>, activation: Activation) -> (Vec<f32>, Saved) {
    match activation {
        Activation::Relu => {
            vectorized(
                #[inline(always)]
                || x.iter_mut().for_each(|v| *v = v.max(0.0)),
            );
            (x, Saved::Relu)
        }
        Activation::Gelu => {
            let y = vectorized(
                #[inline(always)]
                || {
                    x.iter()
                        .map(|&v| 0.5 * v * (1.0 + (BETA * (v + KAPPA * v * v * v)).tanh()))
                        .collect()
                },
            );
            (y, Saved::Gelu(x))
        }
    }
}

/// dy · act'(x), in dy's buffer, given the forward output `y`.
pub fn backward(mut dy: Vec<f32>, y: &[f32], saved: &Saved) -> Vec<f32> {
    match saved {
        Saved::Relu => vectorized(
            #[inline(always)]
            || {
                for (g, &out) in dy.iter_mut().zip(y) {
                    if out <= 0.0 {
                        *g = 0.0;
                    }
                }
            },
        ),
        Saved::Gelu(x) => vectorized(
            #[inline(always)]
            || {
                for (g, &v) in dy.iter_mut().zip(x) {
                    let t = (BETA * (v + KAPPA * v * v * v)).tanh();
                    let inner = BETA * (1.0 + 3.0 * KAPPA * v * v);
                    *g *= 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * inner;
                }
            },
        ),
    }
    dy
}

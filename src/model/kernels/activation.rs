//! ReLU and tanh-GELU (the formula of dfdx's `fast_gelu`), elementwise.

use crate::model::Activation;

const KAPPA: f32 = 0.044715;
/// √(2/π)
const BETA: f32 = 0.797_884_6;

pub fn forward(x: &[f32], activation: Activation) -> Vec<f32> {
    match activation {
        Activation::Relu => x.iter().map(|&v| v.max(0.0)).collect(),
        Activation::Gelu => x
            .iter()
            .map(|&v| 0.5 * v * (1.0 + (BETA * (v + KAPPA * v * v * v)).tanh()))
            .collect(),
    }
}

/// dy · act'(x)
pub fn backward(x: &[f32], dy: &[f32], activation: Activation) -> Vec<f32> {
    let pairs = x.iter().zip(dy);
    match activation {
        Activation::Relu => pairs
            .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
            .collect(),
        Activation::Gelu => pairs
            .map(|(&v, &g)| {
                let t = (BETA * (v + KAPPA * v * v * v)).tanh();
                let inner = BETA * (1.0 + 3.0 * KAPPA * v * v);
                g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * inner)
            })
            .collect(),
    }
}

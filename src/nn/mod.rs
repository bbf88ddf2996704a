//! Neural-network primitives below the model: trainable parameters, the
//! vocabulary of positional hooks, q/k rotations and the compute kernels.

pub mod hooks;
pub mod kernels;
pub mod param;
pub mod rotation;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

/// Rows of activations: (batch, seq, width) with runtime batch and seq.
pub type Act<const W: usize, Dev, T> = Tensor<(usize, usize, Const<W>), f32, Dev, T>;

/// The feed-forward nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Gelu,
}

impl std::str::FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "relu" => Ok(Activation::Relu),
            "gelu" => Ok(Activation::Gelu),
            _ => Err(format!("`{s}`; valid: relu, gelu")),
        }
    }
}

//! Test support for tests here and in later stages: a tiny seeded model.

use super::{ModelConfig, Transformer};
use crate::nn::Activation;
use crate::positional::{self, PositionalConfig};
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A scheme for the tiny test models (d_model 16, 2 heads).
pub(crate) fn scheme(yaml: &str) -> PositionalConfig {
    let ctx = positional::SchemeContext {
        d_model: 16,
        heads: 2,
        max_position: 100,
    };
    positional::parse(&serde_yaml::from_str(yaml).unwrap(), &ctx).unwrap()
}

/// A 2-layer, d_model 16 decoder over 9 tokens, seeded.
pub(crate) fn tiny_model(positional: &PositionalConfig) -> Transformer<16, 64, Cpu> {
    let dev: Cpu = Default::default();
    let config = ModelConfig {
        d_model: 16,
        ff: 64,
        layers: 2,
        heads: 2,
        activation: Activation::Gelu,
        ..Default::default()
    };
    Transformer::new(
        &dev,
        &config,
        positional,
        9,
        None,
        &mut ChaCha8Rng::seed_from_u64(0),
    )
}

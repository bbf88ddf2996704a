//! Decoder-only pre-LayerNorm Transformer with compile-time widths
//! (`d_model` = D, `ff` = F) and runtime batch, sequence, layers and heads.

pub mod attention;
pub mod feed_forward;
pub mod layers;
mod structure;
pub use structure::{PositionStructure, StructurePanel};

use crate::nn::hooks::{InputLayout, OTape, PositionalLayer, Positions};
use crate::nn::kernels::Kernels;
use crate::nn::param::{Param, ParamVisitor};
use crate::nn::{Act, Activation};
use crate::options::FieldError;
use crate::positional::{self, BuildContext, PositionalConfig};
use attention::{causal_mask, Attention, AttentionContext};
use dfdx::prelude::*;
use feed_forward::FeedForward;
use layers::LayerNorm;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The (d_model, ff) pairs compiled in. Each entry is one monomorphised model.
pub const WIDTHS: &[(usize, usize)] = &[(16, 64), (32, 128), (64, 256), (128, 512), (256, 1024)];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub d_model: usize,
    pub ff: usize,
    pub layers: usize,
    pub heads: usize,
    pub dropout: f64,
    pub activation: Activation,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            d_model: 64,
            ff: 256,
            layers: 2,
            heads: 4,
            dropout: 0.0,
            activation: Activation::Relu,
        }
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        let d_models: Vec<String> = WIDTHS.iter().map(|(d, _)| d.to_string()).collect();
        let Some(&(_, ff)) = WIDTHS.iter().find(|(d, _)| *d == self.d_model) else {
            return Err(FieldError::new(
                &["d_model"],
                format!(
                    "d_model {} is not compiled in; valid: {}",
                    self.d_model,
                    d_models.join(", ")
                ),
            ));
        };
        if self.ff != ff {
            return Err(FieldError::new(
                &["ff"],
                format!(
                    "ff {} is not compiled in for d_model {}; valid: {ff}",
                    self.ff, self.d_model
                ),
            ));
        }
        if !(1..=64).contains(&self.layers) {
            return Err(FieldError::new(
                &["layers"],
                format!("{} layers; valid: 1 to 64", self.layers),
            ));
        }
        if self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            let valid: Vec<String> = (1..=self.d_model)
                .filter(|h| self.d_model.is_multiple_of(*h))
                .map(|h| h.to_string())
                .collect();
            return Err(FieldError::new(
                &["heads"],
                format!(
                    "{} heads do not divide d_model {}; valid: {}",
                    self.heads,
                    self.d_model,
                    valid.join(", ")
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(FieldError::new(
                &["dropout"],
                format!("{}; valid: 0 <= dropout < 1", self.dropout),
            ));
        }
        Ok(())
    }
}

/// Calls back with the compile-time widths of a validated config.
pub trait WithWidths {
    type Output;
    fn run<const D: usize, const F: usize>(self) -> Self::Output;
}

pub fn with_widths<V: WithWidths>(config: &ModelConfig, visitor: V) -> V::Output {
    match (config.d_model, config.ff) {
        (16, 64) => visitor.run::<16, 64>(),
        (32, 128) => visitor.run::<32, 128>(),
        (64, 256) => visitor.run::<64, 256>(),
        (128, 512) => visitor.run::<128, 512>(),
        (256, 1024) => visitor.run::<256, 1024>(),
        (d, f) => unreachable!("widths ({d}, {f}) were validated against WIDTHS"),
    }
}

/// The tapes a forward pass can run on: `OwnedTape` when training, `NoneTape`
/// at evaluation. Positional hooks always return owned-tape tensors; `adopt`
/// moves them onto this tape.
pub trait ModelTape<Dev: Device<f32>>: Tape<f32, Dev> {
    fn adopt<S: Shape>(t: Tensor<S, f32, Dev, OTape<Dev>>) -> Tensor<S, f32, Dev, Self>;
    /// The reverse of `adopt`: a tensor of this tape handed to a hook.
    fn lend<S: Shape>(t: Tensor<S, f32, Dev, Self>) -> Tensor<S, f32, Dev, OTape<Dev>>;
}

impl<Dev: Device<f32>> ModelTape<Dev> for OwnedTape<f32, Dev> {
    fn adopt<S: Shape>(t: Tensor<S, f32, Dev, OTape<Dev>>) -> Tensor<S, f32, Dev, Self> {
        t
    }
    fn lend<S: Shape>(t: Tensor<S, f32, Dev, Self>) -> Tensor<S, f32, Dev, OTape<Dev>> {
        t
    }
}

impl<Dev: Device<f32>> ModelTape<Dev> for NoneTape {
    fn adopt<S: Shape>(t: Tensor<S, f32, Dev, OTape<Dev>>) -> Tensor<S, f32, Dev, Self> {
        t.split_tape().0
    }
    fn lend<S: Shape>(t: Tensor<S, f32, Dev, Self>) -> Tensor<S, f32, Dev, OTape<Dev>> {
        t.put_tape(OwnedTape::default())
    }
}

/// Pre-LN block: x + attention(ln(x)), then x + ff(ln(x)).
pub struct Block<const D: usize, const F: usize, Dev: Device<f32>> {
    attention: Attention<D, Dev>,
    feed_forward: FeedForward<D, F, Dev>,
}

impl<const D: usize, const F: usize, Dev: Kernels> Block<D, F, Dev> {
    fn new(dev: &Dev, config: &ModelConfig, rng: &mut ChaCha8Rng) -> Self {
        // GPT-2 init: N(0, 0.02), residual projections scaled by 1/√(2·layers).
        let out_std = INIT_STD / (2.0 * config.layers as f32).sqrt();
        Block {
            attention: Attention::new(dev, INIT_STD, out_std, rng),
            feed_forward: FeedForward::new(dev, INIT_STD, out_std, config.activation, rng),
        }
    }

    fn forward<T: ModelTape<Dev>>(
        &self,
        x: Act<D, Dev, T>,
        layer: usize,
        ctx: &AttentionContext<D, Dev>,
    ) -> Act<D, Dev, T> {
        let x = self.attention.forward(x, layer, ctx); // (b, s, D)
                                                       // Fused exactly when the layer's attention is, so results stay bit-identical.
        self.feed_forward
            .forward(x, ctx.fusable(layer), ctx.dropout)
    }

    fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        self.attention.visit_params(f);
        self.feed_forward.visit_params(f);
    }
}

const INIT_STD: f32 = 0.02;

/// One token batch: ids and positions, both row-major (batch, seq).
pub struct TokenBatch<'a> {
    pub tokens: &'a [usize],
    pub positions: &'a Positions,
}

pub struct Transformer<const D: usize, const F: usize, Dev: Device<f32>> {
    config: ModelConfig,
    vocab: usize,
    /// (vocab, D)
    token_embedding: Param<(usize, Const<D>), Dev>,
    position: Box<dyn PositionalLayer<D, Dev>>,
    blocks: Vec<Block<D, F, Dev>>,
    ln_final: LayerNorm<D, Dev>,
    /// (vocab, D)
    unembedding: Param<(usize, Const<D>), Dev>,
    /// (buckets, D): the position probe of `position_loss: probe`.
    probe: Option<Param<(usize, Const<D>), Dev>>,
    dev: Dev,
}

impl<const D: usize, const F: usize, Dev: Kernels> Transformer<D, F, Dev> {
    pub fn new(
        dev: &Dev,
        config: &ModelConfig,
        positional: &PositionalConfig,
        vocab: usize,
        probe_buckets: Option<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        // N(0, 1) token embeddings: the same scale as the sinusoids added to them.
        let token_embedding = Param::normal(dev, (vocab, Const::<D>), 1.0, false, rng);
        let blocks = (0..config.layers)
            .map(|_| Block::new(dev, config, rng))
            .collect();
        let unembedding = Param::normal(dev, (vocab, Const::<D>), INIT_STD, true, rng);
        let position = positional::build::<D, Dev>(
            positional,
            BuildContext {
                dev: dev.clone(),
                heads: config.heads,
                layers: config.layers,
                rng,
            },
        );
        let probe = probe_buckets.map(|n| Param::normal(dev, (n, Const::<D>), INIT_STD, true, rng));
        Transformer {
            config: config.clone(),
            vocab,
            token_embedding,
            position,
            blocks,
            ln_final: LayerNorm::new(dev),
            unembedding,
            probe,
            dev: dev.clone(),
        }
    }

    /// Logits (batch, seq, vocab). `train` enables dropout.
    pub fn forward<T: ModelTape<Dev>>(
        &self,
        batch: &TokenBatch,
        tape: T,
        train: bool,
    ) -> Tensor<(usize, usize, usize), f32, Dev, T> {
        let (b, s) = (batch.positions.batch, batch.positions.seq);
        let hidden = self.hidden(batch, tape, train); // (b·s, D)
        let logits = Dev::linear(hidden, &self.unembedding.value, None, None); // (b·s, vocab)
        logits.reshape_like(&(b, s, self.vocab))
    }

    /// Logits (batch, seq, vocab) and, with a probe, position-bucket logits (batch·seq, buckets).
    pub fn forward_with_probe<T: ModelTape<Dev>>(
        &self,
        batch: &TokenBatch,
        tape: T,
        train: bool,
    ) -> ProbedLogits<Dev, T> {
        let (b, s) = (batch.positions.batch, batch.positions.seq);
        let hidden = self.hidden(batch, tape, train); // (b·s, D)
        let probe = self
            .probe
            .as_ref()
            .map(|p| Dev::linear(hidden.retaped::<T>(), &p.value, None, None));
        let logits = Dev::linear(hidden, &self.unembedding.value, None, None); // (b·s, vocab)
        (logits.reshape_like(&(b, s, self.vocab)), probe)
    }

    /// Final hidden states after the last LayerNorm: (batch·seq, D).
    fn hidden<T: ModelTape<Dev>>(
        &self,
        batch: &TokenBatch,
        tape: T,
        train: bool,
    ) -> Tensor<(usize, Const<D>), f32, Dev, T> {
        let pos = batch.positions;
        let (b, s) = (pos.batch, pos.seq);
        let heads = self.config.heads;
        let x = Dev::embed(&self.token_embedding.value, batch.tokens, (b, s), tape); // (b, s, D)
        let x = match self.position.input_layout() {
            InputLayout::Add => x,
            // Concat: the token part keeps only its first dims; position fills the rest.
            InputLayout::Concat { token_dims } => {
                let keep: Vec<f32> = (0..D)
                    .map(|d| if d < token_dims { 1.0 } else { 0.0 })
                    .collect();
                x * self
                    .dev
                    .tensor_from_vec(keep, (Const::<D>,))
                    .broadcast_like(&(b, s, Const::<D>))
            }
        };
        let mut x = match self.position.input(pos) {
            Some(p) => x + T::adopt(p),
            None => x,
        };
        let ctx = AttentionContext {
            heads,
            causal_mask: self.dev.tensor_from_vec(causal_mask(s), (s, s)),
            rotation: self.position.rotation(pos, heads, D / heads),
            position: self.position.as_ref(),
            positions: pos,
            dropout: if train {
                self.config.dropout as f32
            } else {
                0.0
            },
        };
        for (layer, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, layer, &ctx);
        }
        self.ln_final.forward(x).reshape_like(&(b * s, Const::<D>))
    }

    /// Every trainable tensor, in a fixed order.
    pub fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        f(&mut self.token_embedding);
        self.position.visit_params(f);
        for block in &mut self.blocks {
            block.visit_params(f);
        }
        self.ln_final.visit_params(f);
        f(&mut self.unembedding);
        if let Some(probe) = &mut self.probe {
            f(probe);
        }
    }

    /// A fresh tape whose gradients hold an entry for every parameter, so
    /// that unused ones read as zero after `backward`.
    pub fn training_tape(&mut self) -> OwnedTape<f32, Dev> {
        let mut grads = Gradients::leaky();
        self.visit_params(&mut |p| p.track(&mut grads));
        let start: Tensor<Rank0, f32, Dev> = self.dev.zeros();
        start.traced(grads).split_tape().1
    }

    /// Tells the positional scheme how far training is; returns what it schedules.
    pub fn set_progress(&mut self, fraction: f64) -> Vec<(String, f64)> {
        self.position.set_progress(fraction)
    }

    pub fn num_params(&mut self) -> usize {
        let mut n = 0;
        self.visit_params(&mut |p| n += p.numel());
        n
    }

    pub fn device(&self) -> &Dev {
        &self.dev
    }
}

/// Logits and the optional probe logits of [`Transformer::forward_with_probe`].
pub type ProbedLogits<Dev, T> = (
    Tensor<(usize, usize, usize), f32, Dev, T>,
    Option<Tensor<(usize, usize), f32, Dev, T>>,
);

/// log p(target) of every row: logits (rows, classes) → (rows,).
pub fn target_log_probs<Dev: Kernels, T: Tape<f32, Dev>>(
    logits: Tensor<(usize, usize), f32, Dev, T>,
    targets: &[usize],
) -> Tensor<(usize,), f32, Dev, T> {
    Dev::target_log_probs(logits, targets)
}

/// −Σ weights · log_probs: a mean cross-entropy when the weights sum to 1.
pub fn weighted_nll<Dev: Device<f32>, T: Tape<f32, Dev>>(
    dev: &Dev,
    log_probs: Tensor<(usize,), f32, Dev, T>,
    weights: &[f32],
) -> Tensor<Rank0, f32, Dev, T> {
    let rows = log_probs.shape().0;
    (log_probs * dev.tensor_from_vec(weights.to_vec(), (rows,)))
        .sum()
        .negate()
}

#[cfg(test)]
mod sublayer_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

//! The vocabulary through which position enters a model: the positions of
//! a batch, the hooks a positional scheme implements ([`PositionalLayer`]),
//! and what they return (input vectors, score biases, q/k rotations).

use super::param::ParamVisitor;
use super::rotation::Rotation;
use dfdx::prelude::*;
use std::sync::Arc;

/// Owned tape: hooks return tensors on it and the model adopts them into its own.
pub type OTape<Dev> = OwnedTape<f32, Dev>;
/// (batch, heads, query, key) scores or biases.
pub type Scores<Dev, T> = Tensor<(usize, usize, usize, usize), f32, Dev, T>;

/// A scheme's score bias. A fixed one (ALiBi) is off the tape, so the fused
/// CPU attention skips its (batch, heads, seq, seq) gradient (the composed
/// path still computes one and drops it); a trained one (built from
/// parameters) is on the tape and gets it. A bucketed one (T5's) is a
/// trained table read through a bucket per (query, key) pair: the fused CPU
/// attention reads the table and scatters its gradient itself instead of
/// going through dfdx's gather, permute and copies of a (batch, heads, seq,
/// seq) tensor, which took about 10% of an S1 step.
pub enum ScoreBias<Dev: Device<f32>, T = OTape<Dev>> {
    Fixed(Scores<Dev, NoneTape>),
    Trained(Scores<Dev, T>),
    Bucketed(BucketedBias<Dev, T>),
}

/// bias[b, h, i, j] = table[buckets[(b·seq + i)·seq + j], h].
pub struct BucketedBias<Dev: Device<f32>, T> {
    /// (buckets, heads)
    pub table: Tensor<(usize, usize), f32, Dev, T>,
    /// (batch·seq·seq,): the bucket of every (query, key) pair, row-major,
    /// on the host, where the fused CPU attention reads it.
    pub buckets: Arc<[usize]>,
    pub batch: usize,
    pub seq: usize,
}

impl<Dev: Device<f32>, T: Tape<f32, Dev>> BucketedBias<Dev, T> {
    /// The same bias on another tape.
    pub fn map_tape<U>(
        self,
        f: impl FnOnce(Tensor<(usize, usize), f32, Dev, T>) -> Tensor<(usize, usize), f32, Dev, U>,
    ) -> BucketedBias<Dev, U> {
        BucketedBias {
            table: f(self.table),
            buckets: self.buckets,
            batch: self.batch,
            seq: self.seq,
        }
    }

    /// The (batch, heads, seq, seq) bias as one tensor.
    pub fn into_scores(self) -> Scores<Dev, T> {
        let (b, s, heads) = (self.batch, self.seq, self.table.shape().1);
        let index = self
            .table
            .device()
            .tensor_from_vec(self.buckets.to_vec(), (b * s * s,));
        self.table
            .gather(index) // (b·s·s, heads)
            .reshape_like(&(b, s, s, heads))
            .permute::<_, Axes4<0, 3, 1, 2>>()
    }
}

impl<Dev: Device<f32>, T: Tape<f32, Dev>> ScoreBias<Dev, T> {
    /// The bias as one tensor on tape `T`, for the composed attention.
    pub fn into_tensor(self) -> Scores<Dev, T> {
        match self {
            ScoreBias::Fixed(bias) => bias.retaped(),
            ScoreBias::Trained(bias) => bias,
            ScoreBias::Bucketed(bias) => bias.into_scores(),
        }
    }
}
/// (batch, seq, D) input vectors on the owned tape.
pub type Embedded<const D: usize, Dev> = Tensor<(usize, usize, Const<D>), f32, Dev, OTape<Dev>>;
/// (batch, heads, seq, head_dim) queries, keys or values.
pub type Heads<Dev, T> = Tensor<(usize, usize, usize, usize), f32, Dev, T>;

/// The integer position of every token of a batch, row-major (batch, seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    pub batch: usize,
    pub seq: usize,
    pub values: Vec<usize>,
}

impl Positions {
    /// Positions 0..seq in every row.
    pub fn contiguous(batch: usize, seq: usize) -> Self {
        let values = (0..batch).flat_map(|_| 0..seq).collect();
        Positions { batch, seq, values }
    }

    pub fn row(&self, b: usize) -> &[usize] {
        &self.values[b * self.seq..(b + 1) * self.seq]
    }
}

/// Where a scheme's position signal enters the model. Every hook has a
/// neutral default, so a scheme implements only the ones it uses.
pub trait PositionalLayer<const D: usize, Dev: Device<f32>> {
    /// Added to the token embeddings: (batch, seq, D).
    fn input(&self, _pos: &Positions) -> Option<Embedded<D, Dev>> {
        None
    }
    /// Added to the scaled attention scores of `layer`: (batch, heads, seq, seq).
    fn score_bias(&self, _layer: usize, _pos: &Positions, _heads: usize) -> Option<ScoreBias<Dev>> {
        None
    }
    /// Added to the scaled scores of `layer`, computed from the (unscaled)
    /// queries (batch, heads, seq, head_dim): Shaw et al.'s key-side term.
    fn query_bias(
        &self,
        _layer: usize,
        _queries: Heads<Dev, OTape<Dev>>,
        _pos: &Positions,
    ) -> Option<Scores<Dev, OTape<Dev>>> {
        None
    }
    /// Added to the attention output of `layer` (batch, heads, seq, head_dim),
    /// computed from the attention weights: Shaw et al.'s value-side term.
    fn value_bias(
        &self,
        _layer: usize,
        _weights: Scores<Dev, OTape<Dev>>,
        _pos: &Positions,
    ) -> Option<Heads<Dev, OTape<Dev>>> {
        None
    }
    /// Whether `query_bias` or `value_bias` contributes to `layer`: its
    /// attention then runs composed from dfdx ops, as the fused sublayer
    /// has neither hook.
    fn taps_attention(&self, _layer: usize) -> bool {
        false
    }
    /// Rotation applied to queries and keys in every layer.
    fn rotation(&self, _pos: &Positions, _heads: usize, _head_dim: usize) -> Option<Rotation<Dev>> {
        None
    }
    /// How token and position share the input vector (concat fusion
    /// reserves the last dims for position).
    fn input_layout(&self) -> InputLayout {
        InputLayout::Add
    }
    /// Training progress in [0, 1]; returns the scheduled quantities to log
    /// as curves (name, value). Evaluation runs after `set_progress(1.0)`.
    fn set_progress(&mut self, _fraction: f64) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Trainable tensors, in a fixed order.
    fn visit_params(&mut self, _f: &mut ParamVisitor<Dev>) {}
}

/// The model-side consequence of a fusion choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputLayout {
    /// Token embeddings use all d_model dims.
    Add,
    /// Token embeddings use only the first `token_dims` dims.
    Concat { token_dims: usize },
}

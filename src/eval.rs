//! Evaluation by length: token accuracy, exact match and loss on the answer
//! tokens (answer and EOS) of `samples` fresh sequences per length, drawn
//! from an evaluation stream that depends on `eval.seed` and the length only.

use crate::model::Transformer;
use crate::options::FieldError;
use crate::positional::PositionalConfig;
use crate::seeds::stream;
use crate::tasks::{Example, Task};
use crate::train::Batch;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Lengths in the task's unit (symbols for copy).
    pub lengths: Vec<usize>,
    pub samples: usize,
    pub batch_size: usize,
    /// Seed of the evaluation stream, independent of the training seeds.
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            lengths: vec![8, 16, 24, 32],
            samples: 256,
            batch_size: 64,
            seed: 1234,
        }
    }
}

impl EvalConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.lengths.is_empty() {
            return Err(FieldError::new(
                &["lengths"],
                "empty; valid: a list of lengths >= 1",
            ));
        }
        for (i, &len) in self.lengths.iter().enumerate() {
            if !(1..=100_000).contains(&len) {
                return Err(FieldError {
                    path: vec![
                        crate::options::Seg::Key("lengths".into()),
                        crate::options::Seg::Index(i),
                    ],
                    message: format!("length {len}; valid: 1 to 100000"),
                });
            }
            if self.lengths[..i].contains(&len) {
                return Err(FieldError {
                    path: vec![
                        crate::options::Seg::Key("lengths".into()),
                        crate::options::Seg::Index(i),
                    ],
                    message: format!("length {len} is listed twice; valid: distinct lengths"),
                });
            }
        }
        if !(1..=1_000_000).contains(&self.samples) {
            return Err(FieldError::new(
                &["samples"],
                format!("{}; valid: 1 to 1000000", self.samples),
            ));
        }
        if !(1..=65_536).contains(&self.batch_size) {
            return Err(FieldError::new(
                &["batch_size"],
                format!("{}; valid: 1 to 65536", self.batch_size),
            ));
        }
        Ok(())
    }
}

/// Metrics at one evaluation length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalByLength {
    pub length: usize,
    /// Fraction of answer tokens (answer and EOS) predicted correctly by argmax.
    pub token_acc: f64,
    /// Fraction of sequences with every answer token correct (teacher forced,
    /// which equals greedy decoding for these deterministic tasks).
    pub exact_match: f64,
    /// Mean cross-entropy (nats) per answer token.
    pub loss: f64,
    pub n: usize,
}

/// Running totals for one length.
#[derive(Default)]
struct Tally {
    correct_tokens: usize,
    tokens: usize,
    exact: usize,
    sequences: usize,
    nll: f64,
}

impl Tally {
    /// Scores one batch given its logits (batch, seq, vocab), row-major.
    fn add(&mut self, batch: &Batch, examples: &[Example], logits: &[f32], vocab: usize) {
        let seq = batch.positions.seq;
        for (row, ex) in examples.iter().enumerate() {
            let mut all_correct = true;
            for t in ex.answer_start - 1..ex.tokens.len() - 1 {
                let at = row * seq + t;
                let scores = &logits[at * vocab..(at + 1) * vocab];
                let target = batch.targets[at];
                let (best, _) =
                    scores
                        .iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                            if v > bv {
                                (i, v)
                            } else {
                                (bi, bv)
                            }
                        });
                let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let log_sum = max
                    + scores
                        .iter()
                        .map(|&v| (v as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                self.nll += log_sum - scores[target] as f64;
                self.tokens += 1;
                if best == target {
                    self.correct_tokens += 1;
                } else {
                    all_correct = false;
                }
            }
            self.sequences += 1;
            self.exact += usize::from(all_correct);
        }
    }

    fn finish(&self, length: usize) -> EvalByLength {
        EvalByLength {
            length,
            token_acc: self.correct_tokens as f64 / self.tokens as f64,
            exact_match: self.exact as f64 / self.sequences as f64,
            loss: self.nll / self.tokens as f64,
            n: self.sequences,
        }
    }
}

/// Evaluates `model` at every configured length. Randomized schemes draw
/// their positions from a stream of (eval.seed, length) of their own, so the
/// sequences are the same as for every other scheme.
pub fn evaluate<const D: usize, const F: usize, Dev: Device<f32>>(
    model: &Transformer<D, F, Dev>,
    task: &dyn Task,
    positional: &PositionalConfig,
    cfg: &EvalConfig,
) -> Vec<EvalByLength> {
    cfg.lengths
        .iter()
        .map(|&length| {
            let mut rng = stream(cfg.seed, &format!("eval/{length}"));
            let mut positions_rng = stream(cfg.seed, &format!("eval-positions/{length}"));
            let mut tally = Tally::default();
            let mut remaining = cfg.samples;
            while remaining > 0 {
                let n = remaining.min(cfg.batch_size);
                remaining -= n;
                let examples: Vec<Example> =
                    (0..n).map(|_| task.example(length, &mut rng)).collect();
                let batch = Batch::from_examples(&examples);
                let (b, s) = (batch.positions.batch, batch.positions.seq);
                let batch = batch.with_positions(positional.positions(b, s, &mut positions_rng));
                let logits = model.forward(&batch.input(), NoneTape, false);
                let vocab = logits.shape().2;
                tally.add(&batch, &examples, &logits.as_vec(), vocab);
            }
            tally.finish(length)
        })
        .collect()
}

//! Evaluation by length: token accuracy, exact match and loss on the answer
//! tokens (answer and EOS) of `samples` fresh sequences per length, drawn
//! from an evaluation stream that depends on `eval.seed` and the length only.
//! Language-modelling tasks choose their own examples (validation windows)
//! and also get the loss on the last quarter of each window.

use super::batch::Batch;
use crate::model::Transformer;
use crate::nn::kernels::Kernels;
use crate::options::seeds::stream;
use crate::options::FieldError;
use crate::positional::PositionalConfig;
use crate::tasks::{Example, Task};
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
    /// Language modelling only: mean cross-entropy (nats) over the last
    /// quarter of each window's positions, where long-range context matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_quarter_loss: Option<f64>,
    /// Sequences scored.
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
    last_quarter_tokens: usize,
    last_quarter_nll: f64,
}

impl Tally {
    /// Scores one batch given its logits (batch, seq, vocab), row-major.
    fn add(&mut self, batch: &Batch, examples: &[Example], logits: &[f32], vocab: usize) {
        let seq = batch.positions.seq;
        for (row, ex) in examples.iter().enumerate() {
            let mut all_correct = true;
            let scored = ex.answer_start - 1..ex.tokens.len() - 1;
            let last_quarter = scored.end - scored.len().div_ceil(4);
            for t in scored {
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
                let nll = log_sum - scores[target] as f64;
                self.nll += nll;
                self.tokens += 1;
                if t >= last_quarter {
                    self.last_quarter_nll += nll;
                    self.last_quarter_tokens += 1;
                }
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

    fn finish(&self, length: usize, language_model: bool) -> EvalByLength {
        EvalByLength {
            length,
            token_acc: self.correct_tokens as f64 / self.tokens as f64,
            exact_match: self.exact as f64 / self.sequences as f64,
            loss: self.nll / self.tokens as f64,
            last_quarter_loss: language_model
                .then(|| self.last_quarter_nll / self.last_quarter_tokens as f64),
            n: self.sequences,
        }
    }
}

/// Evaluates `model` at every configured length. Randomized schemes draw
/// their positions from a stream of (eval.seed, length) of their own, so the
/// sequences are the same as for every other scheme.
pub fn evaluate<const D: usize, const F: usize, Dev: Kernels>(
    model: &Transformer<D, F, Dev>,
    task: &dyn Task,
    positional: &PositionalConfig,
    cfg: &EvalConfig,
) -> Vec<EvalByLength> {
    let longest = cfg.lengths.iter().copied().max().unwrap_or(0);
    cfg.lengths
        .iter()
        .map(|&length| {
            let mut rng = stream(cfg.seed, &format!("eval/{length}"));
            let mut positions_rng = stream(cfg.seed, &format!("eval-positions/{length}"));
            let examples = task.eval_examples(length, cfg.samples, longest, &mut rng);
            let mut tally = Tally::default();
            for chunk in examples.chunks(cfg.batch_size) {
                let batch = Batch::from_examples(chunk);
                let (b, s) = (batch.positions.batch, batch.positions.seq);
                let batch = batch.with_positions(positional.positions(b, s, &mut positions_rng));
                let logits = model.forward(&batch.input(), NoneTape, false);
                let vocab = logits.shape().2;
                tally.add(&batch, chunk, &logits.as_vec(), vocab);
            }
            tally.finish(length, task.language_model())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_quarter_covers_the_last_quarter_of_scored_positions() {
        // A text-like example: 8 inputs, all scored, vocabulary 5 + FIRST_SYMBOL.
        let tokens: Vec<usize> = (0..9).map(|t| 4 + t % 5).collect();
        let examples = [Example {
            tokens,
            answer_start: 1,
        }];
        let batch = Batch::from_examples(&examples);
        let vocab = 9;
        // Logits: the target gets t (position index), everything else 0, so the
        // loss at position t is ln(8 + e^t) - t.
        let mut logits = vec![0f32; 8 * vocab];
        for t in 0..8 {
            logits[t * vocab + batch.targets[t]] = t as f32;
        }
        let nll = |t: usize| (8.0 + (t as f64).exp()).ln() - t as f64;
        let mut tally = Tally::default();
        tally.add(&batch, &examples, &logits, vocab);
        let e = tally.finish(8, true);
        let all = (0..8).map(nll).sum::<f64>() / 8.0;
        let last = (nll(6) + nll(7)) / 2.0;
        assert!((e.loss - all).abs() < 1e-6, "{} vs {all}", e.loss);
        assert!((e.last_quarter_loss.unwrap() - last).abs() < 1e-6);
        assert_eq!((e.token_acc, e.n), (7.0 / 8.0, 1), "position 0 ties at 0");
        assert_eq!(tally.finish(8, false).last_quarter_loss, None);
    }
}

//! A padded batch of examples, as training and evaluation feed it to the model.

use crate::model::TokenBatch;
use crate::nn::hooks::Positions;
use crate::tasks::{Example, PAD};

/// A padded batch ready for the model: inputs, next-token targets and loss
/// weights, all row-major (batch, seq).
pub struct Batch {
    pub tokens: Vec<usize>,
    pub targets: Vec<usize>,
    /// Loss weight of each target: 1/(number of answer tokens) on answer
    /// tokens (answer and EOS), 0 on the prompt and padding.
    pub weights: Vec<f32>,
    /// The weights actually optimised when they differ from `weights`
    /// (`position_loss: weighted`), also summing to 1.
    pub position_weights: Option<Vec<f32>>,
    pub positions: Positions,
    /// Non-padding input tokens.
    pub real_tokens: usize,
}

impl Batch {
    /// Right-pads to the longest example; the causal mask keeps padding from
    /// affecting earlier positions.
    pub fn from_examples(examples: &[Example]) -> Self {
        let seq = examples
            .iter()
            .map(|e| e.tokens.len() - 1)
            .max()
            .unwrap_or(0);
        let n = examples.len() * seq;
        let (mut tokens, mut targets, mut weights) = (vec![PAD; n], vec![PAD; n], vec![0f32; n]);
        let mut real_tokens = 0;
        let mut answer_tokens = 0usize;
        for (row, ex) in examples.iter().enumerate() {
            let len = ex.tokens.len() - 1;
            real_tokens += len;
            for t in 0..len {
                tokens[row * seq + t] = ex.tokens[t];
                targets[row * seq + t] = ex.tokens[t + 1];
                if t + 1 >= ex.answer_start {
                    weights[row * seq + t] = 1.0;
                    answer_tokens += 1;
                }
            }
        }
        let scale = 1.0 / answer_tokens.max(1) as f32;
        weights.iter_mut().for_each(|w| *w *= scale);
        Batch {
            tokens,
            targets,
            weights,
            position_weights: None,
            positions: Positions::contiguous(examples.len(), seq),
            real_tokens,
        }
    }

    /// Weighs answer token i of n in each row by 1 + alpha·i/n, normalised
    /// over the batch (`position_loss: weighted`).
    pub fn position_weighted(self, alpha: f64) -> Self {
        if alpha == 0.0 {
            return self;
        }
        let seq = self.positions.seq;
        let mut out = vec![0f32; self.weights.len()];
        for (row, chunk) in self.weights.chunks(seq.max(1)).enumerate() {
            let n = chunk.iter().filter(|&&w| w > 0.0).count();
            let mut i = 0;
            for (t, &w) in chunk.iter().enumerate() {
                if w > 0.0 {
                    out[row * seq + t] = (1.0 + alpha * i as f64 / n as f64) as f32;
                    i += 1;
                }
            }
        }
        let total: f32 = out.iter().sum();
        out.iter_mut()
            .for_each(|w| *w /= total.max(f32::MIN_POSITIVE));
        Batch {
            position_weights: Some(out),
            ..self
        }
    }

    /// The weights of the optimised loss.
    pub fn objective_weights(&self) -> &[f32] {
        self.position_weights.as_deref().unwrap_or(&self.weights)
    }

    /// Replaces the default 0..seq positions (randomized schemes).
    pub fn with_positions(self, positions: Positions) -> Self {
        assert_eq!(
            (positions.batch, positions.seq),
            (self.positions.batch, self.positions.seq)
        );
        Batch { positions, ..self }
    }

    pub fn input(&self) -> TokenBatch<'_> {
        TokenBatch {
            tokens: &self.tokens,
            positions: &self.positions,
        }
    }
}

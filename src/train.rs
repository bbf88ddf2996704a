//! Training: batches from the task's data stream, AdamW with decoupled weight
//! decay, linear warmup then cosine decay, global gradient-norm clipping,
//! divergence detection, and the logged curves.

use crate::model::{weighted_cross_entropy, TokenBatch, Transformer};
use crate::options::FieldError;
use crate::positional::{PositionalConfig, Positions};
use crate::tasks::{Example, Task, PAD};
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warmup, then cosine decay to `min_lr_ratio`·lr at the last step.
    Cosine,
    /// Linear warmup, then constant.
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup: usize,
    pub schedule: Schedule,
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip; `null` disables clipping.
    pub clip: Option<f64>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub log_every: usize,
    pub device: DeviceKind,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1000,
            batch_size: 32,
            lr: 1e-3,
            warmup: 100,
            schedule: Schedule::Cosine,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            clip: Some(1.0),
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            log_every: 50,
            device: DeviceKind::Cpu,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(FieldError::new(
                    &[key],
                    format!("{v}; valid: a finite number > 0"),
                ))
            }
        };
        if !(1..=10_000_000).contains(&self.steps) {
            return Err(FieldError::new(
                &["steps"],
                format!("{}; valid: 1 to 10000000", self.steps),
            ));
        }
        if !(1..=65_536).contains(&self.batch_size) {
            return Err(FieldError::new(
                &["batch_size"],
                format!("{}; valid: 1 to 65536", self.batch_size),
            ));
        }
        positive("lr", self.lr)?;
        positive("eps", self.eps)?;
        if self.warmup > self.steps {
            return Err(FieldError::new(
                &["warmup"],
                format!(
                    "{} warmup steps exceed the {} training steps; valid: 0 to {}",
                    self.warmup, self.steps, self.steps
                ),
            ));
        }
        for (key, v) in [
            ("min_lr_ratio", self.min_lr_ratio),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
        ] {
            if !(0.0..=1.0).contains(&v) || (key != "min_lr_ratio" && v == 1.0) {
                return Err(FieldError::new(
                    &[key],
                    format!("{v}; valid: 0 <= {key} < 1"),
                ));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(FieldError::new(
                &["weight_decay"],
                format!("{}; valid: a finite number >= 0", self.weight_decay),
            ));
        }
        if let Some(clip) = self.clip {
            positive("clip", clip)?;
        }
        if self.log_every == 0 {
            return Err(FieldError::new(&["log_every"], "0; valid: an integer >= 1"));
        }
        if self.device == DeviceKind::Cuda && !cfg!(feature = "cuda") {
            return Err(FieldError::new(
                &["device"],
                "`cuda` needs posembed built with `--features cuda`; valid in this build: cpu",
            ));
        }
        Ok(())
    }

    /// Learning rate at 0-based `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = (self.steps - self.warmup).max(1) as f64;
                let t = ((step - self.warmup) as f64 / span).min(1.0);
                let floor = self.lr * self.min_lr_ratio;
                floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// A padded batch ready for the model: inputs, next-token targets and loss
/// weights, all row-major (batch, seq).
pub struct Batch {
    pub tokens: Vec<usize>,
    pub targets: Vec<usize>,
    /// Loss weight of each target: 1/(number of answer tokens) on answer
    /// tokens (answer and EOS), 0 on the prompt and padding.
    pub weights: Vec<f32>,
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
            positions: Positions::contiguous(examples.len(), seq),
            real_tokens,
        }
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

/// The random streams training draws from.
pub struct TrainStreams {
    pub data: ChaCha8Rng,
    /// Positions of randomized schemes.
    pub positions: ChaCha8Rng,
}

/// A training batch: lengths uniform over the task's training range.
pub fn sample_batch(
    task: &dyn Task,
    positional: &PositionalConfig,
    batch_size: usize,
    streams: &mut TrainStreams,
) -> Batch {
    let (min, max) = task.train_lengths();
    let rng = &mut streams.data;
    let examples: Vec<Example> = (0..batch_size)
        .map(|_| {
            let length = rng.gen_range(min as u32..=max as u32) as usize;
            task.example(length, rng)
        })
        .collect();
    let batch = Batch::from_examples(&examples);
    let (b, s) = (batch.positions.batch, batch.positions.seq);
    batch.with_positions(positional.positions(b, s, &mut streams.positions))
}

/// AdamW (Loshchilov & Hutter 2019) with decoupled weight decay on the
/// parameters marked `decay`. State is kept on the host, in visit order.
pub struct AdamW {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl AdamW {
    pub fn new() -> Self {
        AdamW {
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
        }
    }

    /// One update with gradients scaled by `grad_scale` (the clipping factor).
    pub fn step<const D: usize, const F: usize, Dev: Device<f32>>(
        &mut self,
        model: &mut Transformer<D, F, Dev>,
        grads: &Gradients<f32, Dev>,
        cfg: &TrainConfig,
        lr: f64,
        grad_scale: f32,
    ) {
        self.t += 1;
        let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
        let bias1 = 1.0 - b1.powi(self.t);
        let bias2 = 1.0 - b2.powi(self.t);
        let (lr, eps, wd) = (lr as f32, cfg.eps as f32, cfg.weight_decay as f32);
        let mut index = 0;
        model.visit_params(&mut |p| {
            if self.m.len() <= index {
                self.m.push(vec![0.0; p.numel()]);
                self.v.push(vec![0.0; p.numel()]);
            }
            let (m, v) = (&mut self.m[index], &mut self.v[index]);
            let g = p.grad(grads);
            let mut w = p.values();
            let decay = if p.decays() { 1.0 - lr * wd } else { 1.0 };
            for i in 0..w.len() {
                let gi = g[i] * grad_scale;
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let update = (m[i] / bias1) / ((v[i] / bias2).sqrt() + eps);
                w[i] = w[i] * decay - lr * update;
            }
            p.set_values(&w);
            index += 1;
        });
    }
}

impl Default for AdamW {
    fn default() -> Self {
        Self::new()
    }
}

/// Global L2 norm of all parameter gradients.
pub fn grad_norm<const D: usize, const F: usize, Dev: Device<f32>>(
    model: &mut Transformer<D, F, Dev>,
    grads: &Gradients<f32, Dev>,
) -> f64 {
    let mut sum = 0f64;
    model.visit_params(&mut |p| {
        sum += p
            .grad(grads)
            .iter()
            .map(|&g| (g as f64) * (g as f64))
            .sum::<f64>();
    });
    sum.sqrt()
}

/// One point of a logged curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub step: usize,
    pub metric: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrainOutcome {
    Completed,
    /// Loss or gradient norm became NaN or infinite at `step`.
    Diverged {
        step: usize,
        reason: String,
    },
}

pub struct TrainReport {
    pub outcome: TrainOutcome,
    pub curves: Vec<CurvePoint>,
    pub tokens: usize,
    pub seconds: f64,
    pub final_loss: f64,
}

/// Live status for progress displays.
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    pub tokens_per_s: f64,
}

/// One optimisation step; returns (loss, pre-clip gradient norm).
pub fn train_step<const D: usize, const F: usize, Dev: Device<f32>>(
    model: &mut Transformer<D, F, Dev>,
    opt: &mut AdamW,
    batch: &Batch,
    cfg: &TrainConfig,
    lr: f64,
) -> (f64, f64) {
    let dev = model.device().clone();
    let mut grads = Gradients::leaky();
    model.visit_params(&mut |p| p.track(&mut grads));
    let start: Tensor<Rank0, f32, Dev> = dev.zeros();
    let (_, tape) = start.traced(grads).split_tape();
    let logits = model.forward(&batch.input(), tape, true);
    let loss = weighted_cross_entropy(&dev, logits, &batch.targets, &batch.weights);
    let loss_value = loss.as_vec()[0] as f64;
    let grads = loss.backward();
    let norm = grad_norm(model, &grads);
    if loss_value.is_finite() && norm.is_finite() {
        let scale = match cfg.clip {
            Some(clip) if norm > clip => (clip / norm) as f32,
            _ => 1.0,
        };
        opt.step(model, &grads, cfg, lr, scale);
    }
    (loss_value, norm)
}

/// Trains `model` on `task` for `cfg.steps` steps. Leaves the positional
/// scheme at its final schedule (`set_progress(1.0)`), ready for evaluation.
pub fn train<const D: usize, const F: usize, Dev: Device<f32>>(
    model: &mut Transformer<D, F, Dev>,
    task: &dyn Task,
    positional: &PositionalConfig,
    cfg: &TrainConfig,
    streams: &mut TrainStreams,
    progress: &mut dyn FnMut(Progress),
) -> TrainReport {
    let mut opt = AdamW::new();
    let mut curves = Vec::new();
    let (mut tokens, mut window_loss, mut window_norm, mut window) = (0usize, 0f64, 0f64, 0usize);
    let mut final_loss = f64::NAN;
    let start = Instant::now();
    for step in 0..cfg.steps {
        let scheduled = model.set_progress(step as f64 / cfg.steps as f64);
        let batch = sample_batch(task, positional, cfg.batch_size, streams);
        let lr = cfg.lr_at(step);
        let (loss, norm) = train_step(model, &mut opt, &batch, cfg, lr);
        if !loss.is_finite() || !norm.is_finite() {
            let reason = format!("loss {loss}, gradient norm {norm} at step {step}");
            return TrainReport {
                outcome: TrainOutcome::Diverged { step, reason },
                curves,
                tokens,
                seconds: start.elapsed().as_secs_f64(),
                final_loss: loss,
            };
        }
        tokens += batch.real_tokens;
        final_loss = loss;
        window_loss += loss;
        window_norm += norm;
        window += 1;
        let last = step + 1 == cfg.steps;
        if (step + 1) % cfg.log_every == 0 || last {
            let step_no = step + 1;
            let logged = [
                ("train_loss".to_string(), window_loss / window as f64),
                ("grad_norm".to_string(), window_norm / window as f64),
                ("lr".to_string(), lr),
            ];
            for (metric, value) in logged.into_iter().chain(scheduled) {
                curves.push(CurvePoint {
                    step: step_no,
                    metric,
                    value,
                });
            }
            progress(Progress {
                step: step_no,
                steps: cfg.steps,
                loss: window_loss / window as f64,
                tokens_per_s: tokens as f64 / start.elapsed().as_secs_f64().max(1e-9),
            });
            (window_loss, window_norm, window) = (0.0, 0.0, 0);
        }
    }
    model.set_progress(1.0);
    TrainReport {
        outcome: TrainOutcome::Completed,
        curves,
        tokens,
        seconds: start.elapsed().as_secs_f64(),
        final_loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_floor() {
        let cfg = TrainConfig {
            steps: 110,
            warmup: 10,
            lr: 1.0,
            min_lr_ratio: 0.1,
            ..Default::default()
        };
        assert!((cfg.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(60) - 0.55).abs() < 1e-12);
        assert!((cfg.lr_at(110) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn batch_weights_cover_answers_only_and_sum_to_one() {
        let a = Example::seq2seq(&[1, 2], &[1, 2]); // BOS 1 2 SEP 1 2 EOS
        let b = Example::seq2seq(&[3], &[3]); // BOS 3 SEP 3 EOS
        let batch = Batch::from_examples(&[a, b]);
        assert_eq!(batch.positions.seq, 6);
        let total: f32 = batch.weights.iter().sum();
        assert!((total - 1.0).abs() < 1e-6);
        // Row 0 predicts answers at inputs 3, 4, 5 (targets 1, 2, EOS); row 1 at 2, 3.
        let on: Vec<usize> = (0..12).filter(|&i| batch.weights[i] > 0.0).collect();
        assert_eq!(on, vec![3, 4, 5, 8, 9]);
        assert_eq!(&batch.tokens[6..12], &[1, 7, 2, 7, PAD, PAD]);
        assert_eq!(batch.real_tokens, 10);
    }
}

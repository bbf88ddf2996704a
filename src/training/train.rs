//! Training: batches from the task's data stream, AdamW with decoupled weight
//! decay, linear warmup then cosine decay, global gradient-norm clipping,
//! divergence detection, and the logged curves.

use super::batch::Batch;
use crate::model::{target_log_probs, weighted_nll, Transformer};
use crate::nn::kernels::Kernels;
use crate::options::FieldError;
use crate::positional::{log_bucket, PositionalConfig};
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
    /// An optional position-sensitive term in the loss (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_loss: Option<PositionLoss>,
}

/// Position-sensitive training objectives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PositionLoss {
    /// Answer token i of n (0-based, EOS included) weighs 1 + alpha·i/n; the
    /// weights are normalised to sum to 1 over the batch.
    Weighted { alpha: f64 },
    /// An auxiliary linear head on the final hidden states predicts each
    /// token's position bucket (log-spaced as T5's, up to `max_distance`);
    /// its mean cross-entropy over real tokens is added with `weight`.
    Probe {
        weight: f64,
        buckets: usize,
        #[serde(default = "default_probe_distance")]
        max_distance: usize,
    },
}

fn default_probe_distance() -> usize {
    128
}

impl PositionLoss {
    /// Buckets of the probe head, if this objective has one.
    pub fn probe_buckets(config: &Option<PositionLoss>) -> Option<usize> {
        match config {
            Some(PositionLoss::Probe { buckets, .. }) => Some(*buckets),
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), FieldError> {
        let at = |key: &str| FieldError::new(&["position_loss", key], "");
        match *self {
            PositionLoss::Weighted { alpha } if !(alpha.is_finite() && alpha >= 0.0) => Err(FieldError {
                message: format!("alpha {alpha}; valid: a finite number >= 0"),
                ..at("alpha")
            }),
            PositionLoss::Probe { weight, .. } if !(weight.is_finite() && weight > 0.0) => Err(FieldError {
                message: format!("weight {weight}; valid: a finite number > 0"),
                ..at("weight")
            }),
            PositionLoss::Probe { buckets, max_distance, .. } if buckets < 2 || max_distance <= buckets / 2 => {
                Err(FieldError {
                    message: format!(
                        "{buckets} buckets up to distance {max_distance}; valid: buckets >= 2 and max_distance > buckets / 2"
                    ),
                    ..at("buckets")
                })
            }
            _ => Ok(()),
        }
    }

    /// The weighting alpha (0 when not weighted).
    fn alpha(config: &Option<PositionLoss>) -> f64 {
        match config {
            Some(PositionLoss::Weighted { alpha }) => *alpha,
            _ => 0.0,
        }
    }
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
            position_loss: None,
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
        if let Some(position_loss) = &self.position_loss {
            position_loss.validate()?;
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
    position_loss: &Option<PositionLoss>,
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
    let batch =
        Batch::from_examples(&examples).position_weighted(PositionLoss::alpha(position_loss));
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

    /// One update with `grads` (from [`host_grads`]) scaled by `grad_scale`
    /// (the clipping factor).
    pub fn step<const D: usize, const F: usize, Dev: Kernels>(
        &mut self,
        model: &mut Transformer<D, F, Dev>,
        grads: &[Vec<f32>],
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
            let (m, v, g) = (&mut self.m[index], &mut self.v[index], &grads[index]);
            assert_eq!(
                g.len(),
                p.numel(),
                "gradient {index} does not fit its parameter"
            );
            let mut w = p.values();
            let decay = if p.decays() { 1.0 - lr * wd } else { 1.0 };
            // Zipped iterators: no bounds checks, so the loop vectorizes.
            for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                let g = g * grad_scale;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let update = (*m / bias1) / ((*v / bias2).sqrt() + eps);
                *w = *w * decay - lr * update;
            }
            p.set_values(&w);
            index += 1;
        });
        assert_eq!(index, grads.len(), "one gradient per parameter");
    }
}

impl Default for AdamW {
    fn default() -> Self {
        Self::new()
    }
}

/// Every parameter's gradient on the host, in visit order: copied out of
/// dfdx once for both the norm and the update.
pub fn host_grads<const D: usize, const F: usize, Dev: Kernels>(
    model: &mut Transformer<D, F, Dev>,
    grads: &Gradients<f32, Dev>,
) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    model.visit_params(&mut |p| out.push(p.grad(grads)));
    out
}

/// Global L2 norm of all parameter gradients.
pub fn grad_norm(grads: &[Vec<f32>]) -> f64 {
    grads
        .iter()
        .map(|g| g.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>())
        .sum::<f64>()
        .sqrt()
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

/// Means of the metrics logged since the last curve point, in first-seen order.
#[derive(Default)]
struct Window {
    sums: Vec<(String, f64, usize)>,
}

impl Window {
    fn add(&mut self, name: &str, value: f64) {
        match self.sums.iter_mut().find(|(n, _, _)| n == name) {
            Some((_, sum, count)) => {
                *sum += value;
                *count += 1;
            }
            None => self.sums.push((name.to_string(), value, 1)),
        }
    }

    fn mean(&self, name: &str) -> f64 {
        self.sums
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(f64::NAN, |(_, sum, count)| sum / *count as f64)
    }

    fn drain(&mut self) -> impl Iterator<Item = (String, f64)> + '_ {
        self.sums
            .drain(..)
            .map(|(name, sum, count)| (name, sum / count as f64))
    }
}

/// Live status for progress displays, reported after every step.
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    /// Mean training loss of the last logged window (NaN before the first).
    pub loss: f64,
    pub tokens_per_s: f64,
}

/// What one optimisation step measured.
pub struct StepStats {
    /// The optimised loss (answer cross-entropy, reweighted and plus the probe term if any).
    pub loss: f64,
    /// Plain mean cross-entropy over answer tokens, comparable across runs.
    pub answer_loss: f64,
    /// Mean cross-entropy of the position probe, if any.
    pub probe_loss: Option<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// One optimisation step (skipped when the loss or gradient is not finite).
pub fn train_step<const D: usize, const F: usize, Dev: Kernels>(
    model: &mut Transformer<D, F, Dev>,
    opt: &mut AdamW,
    batch: &Batch,
    cfg: &TrainConfig,
    lr: f64,
) -> StepStats {
    let dev = model.device().clone();
    let tape = model.training_tape();
    let (logits, probe_logits) = model.forward_with_probe(&batch.input(), tape, true);
    let (b, s, v) = *logits.shape();
    let log_probs = target_log_probs(logits.reshape_like(&(b * s, v)), &batch.targets); // (b·s,)
    let answer_loss = -dot(&log_probs.as_vec(), &batch.weights);
    let mut loss = weighted_nll(&dev, log_probs, batch.objective_weights());
    let mut probe_loss = None;
    if let (
        Some(probe_logits),
        Some(PositionLoss::Probe {
            weight,
            buckets,
            max_distance,
        }),
    ) = (probe_logits, &cfg.position_loss)
    {
        let (targets, weights) = probe_targets(batch, *buckets, *max_distance);
        let term = weighted_nll(&dev, target_log_probs(probe_logits, &targets), &weights);
        probe_loss = Some(term.as_vec()[0] as f64);
        loss = loss + term * (*weight as f32);
    }
    let loss_value = loss.as_vec()[0] as f64;
    let grads = host_grads(model, &loss.backward());
    let grad_norm = grad_norm(&grads);
    if loss_value.is_finite() && grad_norm.is_finite() {
        let scale = match cfg.clip {
            Some(clip) if grad_norm > clip => (clip / grad_norm) as f32,
            _ => 1.0,
        };
        opt.step(model, &grads, cfg, lr, scale);
    }
    StepStats {
        loss: loss_value,
        answer_loss,
        probe_loss,
        grad_norm,
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The probe's target (the log-spaced bucket of each token's position) and
/// weight (1 / real tokens on real tokens, 0 on padding).
pub fn probe_targets(batch: &Batch, buckets: usize, max_distance: usize) -> (Vec<usize>, Vec<f32>) {
    let targets = batch
        .positions
        .values
        .iter()
        .map(|&p| log_bucket(p, buckets, max_distance))
        .collect();
    let real = 1.0 / batch.real_tokens.max(1) as f32;
    let weights = batch
        .tokens
        .iter()
        .map(|&t| if t == PAD { 0.0 } else { real })
        .collect();
    (targets, weights)
}

/// Trains `model` on `task` for `cfg.steps` steps. Leaves the positional
/// scheme at its final schedule (`set_progress(1.0)`), ready for evaluation.
pub fn train<const D: usize, const F: usize, Dev: Kernels>(
    model: &mut Transformer<D, F, Dev>,
    task: &dyn Task,
    positional: &PositionalConfig,
    cfg: &TrainConfig,
    streams: &mut TrainStreams,
    progress: &mut dyn FnMut(Progress),
) -> TrainReport {
    let mut opt = AdamW::new();
    let mut curves = Vec::new();
    let mut window = Window::default();
    let (mut tokens, mut final_loss) = (0usize, f64::NAN);
    let mut logged_loss = f64::NAN;
    let start = Instant::now();
    for step in 0..cfg.steps {
        let scheduled = model.set_progress(step as f64 / cfg.steps as f64);
        let batch = sample_batch(
            task,
            positional,
            &cfg.position_loss,
            cfg.batch_size,
            streams,
        );
        let lr = cfg.lr_at(step);
        let stats = train_step(model, &mut opt, &batch, cfg, lr);
        if !stats.loss.is_finite() || !stats.grad_norm.is_finite() {
            let reason = format!(
                "loss {}, gradient norm {} at step {step}",
                stats.loss, stats.grad_norm
            );
            return TrainReport {
                outcome: TrainOutcome::Diverged { step, reason },
                curves,
                tokens,
                seconds: start.elapsed().as_secs_f64(),
                final_loss: stats.loss,
            };
        }
        tokens += batch.real_tokens;
        final_loss = stats.answer_loss;
        window.add("train_loss", stats.answer_loss);
        window.add("grad_norm", stats.grad_norm);
        if batch.position_weights.is_some() {
            window.add("position_loss", stats.loss);
        }
        if let Some(probe) = stats.probe_loss {
            window.add("probe_loss", probe);
        }
        if (step + 1) % cfg.log_every == 0 || step + 1 == cfg.steps {
            let step_no = step + 1;
            logged_loss = window.mean("train_loss");
            let logged = window
                .drain()
                .chain([("lr".to_string(), lr)])
                .chain(scheduled);
            curves.extend(logged.map(|(metric, value)| CurvePoint {
                step: step_no,
                metric,
                value,
            }));
        }
        // Every step, so that a display stays live and an interrupt is seen promptly.
        progress(Progress {
            step: step + 1,
            steps: cfg.steps,
            loss: logged_loss,
            tokens_per_s: tokens as f64 / start.elapsed().as_secs_f64().max(1e-9),
        });
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
    fn grad_norm_is_the_l2_norm_over_all_parameters() {
        assert_eq!(grad_norm(&[vec![3.0, 4.0], vec![], vec![12.0]]), 13.0);
    }

    /// AdamW's first moments after t steps of a constant gradient g are
    /// (1 − β^t) g, so with bias correction every step moves a weight by
    /// lr · g / (|g| + eps), plus lr · wd · w on decayed parameters only.
    #[test]
    fn adamw_steps_match_the_bias_corrected_update() {
        use crate::model::testing::{scheme, tiny_model};
        let mut model = tiny_model(&scheme("{scheme: none}"));
        let mut before = Vec::new();
        model.visit_params(&mut |p| before.push((p.values(), p.decays())));
        // Distinct per parameter, so a mix-up between equal shapes shows.
        let grads: Vec<Vec<f32>> = (before.iter().enumerate())
            .map(|(p, (w, _))| (0..w.len()).map(|i| (i + p) as f32 * 0.25 - 3.4).collect())
            .collect();
        let cfg = TrainConfig {
            weight_decay: 0.1,
            ..TrainConfig::default()
        };
        let (lr, scale) = (0.01, 0.5);
        let mut opt = AdamW::new();
        for _ in 0..2 {
            opt.step(&mut model, &grads, &cfg, lr, scale);
        }
        let mut after = Vec::new();
        model.visit_params(&mut |p| after.push(p.values()));
        assert!(before.iter().any(|(_, decays)| *decays) && before.iter().any(|(_, d)| !d));
        for (((w0, decays), g), w2) in before.iter().zip(&grads).zip(&after) {
            for ((&w0, &g), &w2) in w0.iter().zip(g).zip(w2) {
                let (mut w, g) = (w0 as f64, g as f64 * scale as f64);
                for _ in 0..2 {
                    let decay = if *decays {
                        1.0 - lr * cfg.weight_decay
                    } else {
                        1.0
                    };
                    w = w * decay - lr * g / (g.abs() + cfg.eps);
                }
                assert!(
                    (w2 as f64 - w).abs() < 1e-6,
                    "{w2} vs {w} (decays {decays})"
                );
            }
        }
    }

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
    fn position_weights_grow_along_the_answer_and_sum_to_one() {
        let a = Example::seq2seq(&[1, 2, 3], &[1, 2, 3]); // answer: 1 2 3 EOS (n = 4)
        let b = Example::seq2seq(&[3], &[3]); // answer: 3 EOS (n = 2)
        let batch = Batch::from_examples(&[a, b]).position_weighted(2.0);
        let w = batch.objective_weights();
        let total: f32 = w.iter().sum();
        assert!((total - 1.0).abs() < 1e-6);
        // Row 0: 1 + 2·i/4 for i = 0..3 → 1, 1.5, 2, 2.5; row 1: 1, 2. Sum 10.
        let row0: Vec<f32> = w[..8].iter().copied().filter(|&x| x > 0.0).collect();
        let expect = [1.0, 1.5, 2.0, 2.5].map(|x| x / 10.0);
        for (got, want) in row0.iter().zip(expect) {
            assert!((got - want).abs() < 1e-7, "{row0:?}");
        }
        // The plain weights are untouched: uniform over the 6 answer tokens.
        assert!(batch
            .weights
            .iter()
            .filter(|&&x| x > 0.0)
            .all(|&x| (x - 1.0 / 6.0).abs() < 1e-7));
    }

    #[test]
    fn probe_targets_are_log_buckets_of_real_tokens() {
        let batch = Batch::from_examples(&[
            Example::seq2seq(&[1, 2], &[1, 2]),
            Example::seq2seq(&[3], &[3]),
        ]);
        let (targets, weights) = probe_targets(&batch, 4, 8);
        // Positions 0..5 → buckets 0, 1, 2, 2, 3, 3 (exact below 2, log-spaced to 8).
        assert_eq!(&targets[..6], &[0, 1, 2, 2, 3, 3]);
        assert_eq!(
            weights.iter().filter(|&&w| w > 0.0).count(),
            batch.real_tokens
        );
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

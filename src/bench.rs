//! `posembed bench`: training and evaluation throughput of the reference
//! decoders for each positional scheme, on random tokens.
//!
//! S1: d_model 128, 2 layers, ff 512, 4 heads, vocab 64, batch 32 × 64.
//! S2: d_model 256, 4 layers, ff 1024, 4 heads, vocab 64, batch 16 × 128.

use crate::model::{with_widths, Activation, ModelConfig, TokenBatch, Transformer, WithWidths};
use crate::positional::{self, PositionalConfig, SchemeContext};
use crate::seeds::stream;
use crate::train::{train_step, AdamW, Batch, TrainConfig};
use dfdx::prelude::*;
use rand::Rng;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceModel {
    S1,
    S2,
}

impl ReferenceModel {
    fn config(self, activation: Activation) -> (ModelConfig, usize, usize) {
        let (d_model, layers, batch, seq) = match self {
            ReferenceModel::S1 => (128, 2, 32, 64),
            ReferenceModel::S2 => (256, 4, 16, 128),
        };
        let model = ModelConfig {
            d_model,
            ff: 4 * d_model,
            layers,
            heads: 4,
            dropout: 0.0,
            activation,
        };
        (model, batch, seq)
    }
}

pub const VOCAB: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub model: ReferenceModel,
    pub scheme: String,
    pub train_tokens_per_s: f64,
    pub eval_tokens_per_s: f64,
    /// Peak resident memory of this process so far (VmHWM), if readable.
    pub peak_rss_bytes: Option<u64>,
}

/// The process's peak resident set size from /proc (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses a scheme given as a name or a YAML option map (`{scheme: rope, fraction: 0.25}`).
pub fn scheme_config(text: &str, model: ReferenceModel) -> anyhow::Result<PositionalConfig> {
    let value: serde_yaml::Value = if text.trim_start().starts_with('{') {
        serde_yaml::from_str(text)?
    } else {
        serde_yaml::from_str(&format!("{{scheme: {text}}}"))?
    };
    let (config, _, seq) = model.config(Activation::Relu);
    let ctx = SchemeContext {
        d_model: config.d_model,
        heads: config.heads,
        max_position: seq - 1,
    };
    positional::parse(&value, &ctx).map_err(|e| anyhow::anyhow!("scheme `{text}`: {e}"))
}

struct Measure<'a> {
    config: ModelConfig,
    positional: &'a PositionalConfig,
    batch: usize,
    seq: usize,
    steps: usize,
}

impl WithWidths for Measure<'_> {
    type Output = (f64, f64);
    fn run<const D: usize, const F: usize>(self) -> (f64, f64) {
        let dev = Cpu::seed_from_u64(0);
        let mut rng = stream(0, "bench");
        let mut model = Transformer::<D, F, Cpu>::new(
            &dev,
            &self.config,
            self.positional,
            VOCAB,
            None,
            &mut rng,
        );
        let n = self.batch * self.seq;
        let tokens: Vec<usize> = (0..n)
            .map(|_| rng.gen_range(0..VOCAB as u32) as usize)
            .collect();
        let targets: Vec<usize> = (0..n)
            .map(|_| rng.gen_range(0..VOCAB as u32) as usize)
            .collect();
        let batch = Batch {
            tokens,
            targets,
            weights: vec![1.0 / n as f32; n],
            position_weights: None,
            positions: positional::Positions::contiguous(self.batch, self.seq),
            real_tokens: n,
        };
        let cfg = TrainConfig::default();
        let mut opt = AdamW::new();
        // One untimed step of each kind warms caches and allocators.
        train_step(&mut model, &mut opt, &batch, &cfg, 1e-4);
        let clock = Instant::now();
        for _ in 0..self.steps {
            train_step(&mut model, &mut opt, &batch, &cfg, 1e-4);
        }
        let train = (n * self.steps) as f64 / clock.elapsed().as_secs_f64();
        let input = TokenBatch {
            tokens: &batch.tokens,
            positions: &batch.positions,
        };
        let _ = model.forward(&input, NoneTape, false).as_vec();
        let clock = Instant::now();
        for _ in 0..self.steps {
            let _ = model.forward(&input, NoneTape, false).as_vec();
        }
        let eval = (n * self.steps) as f64 / clock.elapsed().as_secs_f64();
        (train, eval)
    }
}

/// Times `steps` training and evaluation steps of `model` with `scheme` on one thread.
pub fn measure(
    model: ReferenceModel,
    scheme: &PositionalConfig,
    label: &str,
    steps: usize,
    activation: Activation,
) -> BenchResult {
    let (config, batch, seq) = model.config(activation);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a thread pool");
    let (train, eval) = pool.install(|| {
        with_widths(
            &config.clone(),
            Measure {
                config,
                positional: scheme,
                batch,
                seq,
                steps,
            },
        )
    });
    BenchResult {
        model,
        scheme: label.to_string(),
        train_tokens_per_s: train,
        eval_tokens_per_s: eval,
        peak_rss_bytes: peak_rss_bytes(),
    }
}

/// The per-scheme medians of interleaved repetitions (each a list in scheme order).
pub fn medians(repeats: &[Vec<BenchResult>]) -> Vec<BenchResult> {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (0..repeats[0].len())
        .map(|i| BenchResult {
            train_tokens_per_s: median(repeats.iter().map(|r| r[i].train_tokens_per_s).collect()),
            eval_tokens_per_s: median(repeats.iter().map(|r| r[i].eval_tokens_per_s).collect()),
            peak_rss_bytes: repeats.iter().filter_map(|r| r[i].peak_rss_bytes).max(),
            ..repeats[0][i].clone()
        })
        .collect()
}

/// A table with the ratio of each scheme to the first (`none` by default).
pub fn table(results: &[BenchResult]) -> String {
    let mut out = format!(
        "{:<36} {:>14} {:>10} {:>14} {:>10}\n",
        "scheme", "train tok/s", "vs first", "eval tok/s", "vs first"
    );
    let (t0, e0) = results
        .first()
        .map_or((1.0, 1.0), |r| (r.train_tokens_per_s, r.eval_tokens_per_s));
    for r in results {
        out.push_str(&format!(
            "{:<36} {:>14.0} {:>10.2} {:>14.0} {:>10.2}\n",
            r.scheme,
            r.train_tokens_per_s,
            r.train_tokens_per_s / t0,
            r.eval_tokens_per_s,
            r.eval_tokens_per_s / e0
        ));
    }
    out
}

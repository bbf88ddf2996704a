//! `posembed bench`: training and evaluation throughput of the reference
//! decoders for each positional scheme, on random tokens.
//!
//! S1: d_model 128, 2 layers, ff 512, 4 heads, vocab 64, batch 32 × 64.
//! S2: d_model 256, 4 layers, ff 1024, 4 heads, vocab 64, batch 16 × 128.

use crate::model::{with_widths, ModelConfig, TokenBatch, Transformer, WithWidths};
use crate::nn::kernels::matmul::{matmul, Mat, MatMut};
use crate::nn::kernels::query_blocks;
use crate::nn::Activation;
use crate::options::seeds::stream;
use crate::options::UsageError;
use crate::positional::{self, PositionalConfig, SchemeContext};
use crate::training::batch::Batch;
use crate::training::train::{train_step, AdamW, TrainConfig};
use dfdx::prelude::*;
use rand::Rng;
use serde::Serialize;
use std::time::Instant;

/// What `posembed bench` was asked to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchRequest {
    /// s1: d_model 128, 2 layers, batch 32 × 64; s2: d_model 256, 4 layers, batch 16 × 128.
    #[arg(long, value_enum, default_value = "s1")]
    pub model: ReferenceModel,
    /// A scheme name or a YAML option map, e.g. '{scheme: rope, fraction: 0.25}';
    /// repeat for several (default: every scheme with default options).
    #[arg(long = "scheme")]
    pub schemes: Vec<String>,
    /// Timed steps of each kind per scheme and repetition.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Interleaved repetitions; the table shows per-scheme medians.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// relu or gelu.
    #[arg(long, default_value = "relu")]
    pub activation: Activation,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Instead of model steps, time whole sweeps through the runner:
    /// `--runs` identical small runs once per `--jobs` value.
    #[arg(long)]
    pub sweep: bool,
    /// With --sweep: runs per sweep.
    #[arg(long, default_value_t = 4)]
    pub runs: usize,
    /// With --sweep: training steps per run.
    #[arg(long, default_value_t = 300)]
    pub run_steps: usize,
    /// Model steps: copies trained side by side, one thread each, summed
    /// (default 1). With --sweep: the job counts to time (default 1,2).
    #[arg(long, value_delimiter = ',')]
    pub jobs: Vec<usize>,
}

/// Runs the measurements of `request`, printing a table (or JSON lines)
/// to stdout. A bad `--scheme` or `--jobs` is a [`UsageError`].
pub fn run(request: &BenchRequest) -> anyhow::Result<()> {
    if request.sweep {
        let jobs = match request.jobs.as_slice() {
            [] => vec![1, 2],
            jobs => jobs.to_vec(),
        };
        let results = sweep_throughput(request.runs, request.run_steps, &jobs)?;
        if request.json {
            for r in &results {
                println!("{}", serde_json::to_string(r)?);
            }
        } else {
            print!("{}", sweep_table(&results));
        }
        return Ok(());
    }
    let names: Vec<String> = if request.schemes.is_empty() {
        positional::names().iter().map(|s| s.to_string()).collect()
    } else {
        request.schemes.clone()
    };
    let configs = names
        .iter()
        .map(|name| scheme_config(name, request.model))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|err| UsageError(format!("--scheme: {err:#}")))?;
    let jobs = match request.jobs.as_slice() {
        [] => 1,
        [one] if *one >= 1 => *one,
        [_] => {
            return Err(UsageError("--jobs: 0 copies; valid: a count of at least 1".into()).into())
        }
        _ => {
            return Err(UsageError(
                "--jobs: one count for model steps (a list only with --sweep)".into(),
            )
            .into())
        }
    };
    // Schemes alternate within each repetition so that drifts in machine
    // speed hit them alike; the table reports per-scheme medians.
    let mut repeats = Vec::new();
    for _ in 0..request.repeat.max(1) {
        let round: Vec<_> = names
            .iter()
            .zip(&configs)
            .map(|(name, config)| {
                measure(
                    request.model,
                    config,
                    name,
                    request.steps,
                    request.activation,
                    jobs,
                )
            })
            .collect();
        if request.json {
            for result in &round {
                println!("{}", serde_json::to_string(result)?);
            }
        }
        repeats.push(round);
    }
    if !request.json {
        print!("{}", table(&medians(&repeats)));
    }
    Ok(())
}

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
    /// Copies trained side by side, one thread each; the tokens/s below are
    /// their sum.
    pub jobs: usize,
    pub train_tokens_per_s: f64,
    pub eval_tokens_per_s: f64,
    /// The matrix products of one training step (forward and backward
    /// shapes), replayed alone, as a share of the step's time (mean over
    /// the copies).
    pub matmul_share: f64,
    /// The rate of those replayed products, GFLOP/s per copy (mean).
    pub matmul_gflops: f64,
    /// A well-shaped product alone (2048 × 256 by 256 × 256, the shape of
    /// S2's projections), GFLOP/s per copy: what one core's sgemm reaches
    /// at this moment, the ceiling `matmul_gflops` is read against.
    pub reference_gflops: f64,
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

/// Tokens/s of training and evaluation, and the step's matrix products.
struct Throughput {
    train: f64,
    eval: f64,
    matmul_share: f64,
    matmul_gflops: f64,
    reference_gflops: f64,
}

impl WithWidths for Measure<'_> {
    type Output = Throughput;
    fn run<const D: usize, const F: usize>(self) -> Throughput {
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
            positions: crate::nn::hooks::Positions::contiguous(self.batch, self.seq),
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
        let step_s = clock.elapsed().as_secs_f64() / self.steps as f64;
        let train = n as f64 / step_s;
        let products = replay_matmuls(&self.config, D, F, self.batch, self.seq, self.steps);
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
        Throughput {
            train,
            eval,
            matmul_share: products.seconds / step_s,
            matmul_gflops: products.flops / products.seconds / 1e9,
            reference_gflops: reference_gflops(),
        }
    }
}

/// Seconds and floating-point operations of one step's products.
struct Products {
    seconds: f64,
    flops: f64,
}

/// dst (+)= a · b, counting its 2mnk operations into `flops`.
fn counted(flops: &mut f64, dst: MatMut, a: Mat, b: Mat, accumulate: bool) {
    *flops += 2.0 * (a.rows * a.cols * b.cols) as f64;
    matmul(dst, a, b, accumulate);
}

/// A (rows, cols) view with row stride `rs` of `data`.
fn strided(data: &mut [f32], (rows, cols, rs): (usize, usize, usize)) -> MatMut<'_> {
    MatMut::strided(data, rows, cols, rs)
}

/// `len` values uniform in [−1, 1).
fn uniform(rng: &mut impl Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// A 2048 × 256 by 256 × 256 product, repeated for about 0.2 s: GFLOP/s.
fn reference_gflops() -> f64 {
    let (m, k, n) = (2048, 256, 256);
    let mut r = stream(2, "bench reference");
    let (a, b, mut c) = (
        uniform(&mut r, m * k),
        uniform(&mut r, k * n),
        vec![0.0; m * n],
    );
    let mut product = || {
        matmul(
            MatMut::new(&mut c, m, n),
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            false,
        )
    };
    product();
    let (clock, mut repeats) = (Instant::now(), 0);
    while clock.elapsed().as_secs_f64() < 0.2 {
        product();
        repeats += 1;
    }
    2.0 * (m * k * n * repeats) as f64 / clock.elapsed().as_secs_f64() / 1e9
}

/// The matrix products a training step performs, run alone with the fused
/// kernels' layouts on random operands (time: mean over `steps` replays):
/// for each linear layer y = xWᵀ its forward and the two
/// backward products (dx = dy·W, dW = dyᵀ·x), the unembedding likewise, and
/// for attention per (batch, head) and causal query block the scores, the
/// weighted sum and their four backward products, on head blocks read in
/// place (keys and values transposed where they are the right operand).
fn replay_matmuls(
    config: &ModelConfig,
    d: usize,
    f: usize,
    batch: usize,
    seq: usize,
    steps: usize,
) -> Products {
    let (rows, dh) = (batch * seq, d / config.heads);
    let widest = d.max(f).max(VOCAB);
    let mut r = stream(1, "bench replay");
    let mut random = |len: usize| uniform(&mut r, len);
    let (x, w, dy) = (
        random(rows * widest),
        random(widest * widest),
        random(rows * widest),
    );
    let (heads, weights) = (random(seq * d), random(seq * seq));
    // A key or value head block transposed to (head_dim, seq), as attention keeps it.
    let transposed = random(dh * seq);
    let (mut out, mut scores) = (vec![0.0; rows * widest], vec![0.0; seq * seq]);
    let mut dw = vec![0.0; widest * widest];
    let mut linears = vec![(d, VOCAB)];
    for _ in 0..config.layers {
        linears.extend([(d, d), (d, d), (d, d), (d, d), (d, f), (f, d)]);
    }
    let mut replay = |flops: &mut f64| {
        for &(i, o) in &linears {
            counted(
                flops,
                MatMut::new(&mut out, rows, o),
                Mat::new(&x, rows, i),
                Mat::new(&w, o, i).t(),
                true,
            );
            counted(
                flops,
                MatMut::new(&mut out, rows, i),
                Mat::new(&dy, rows, o),
                Mat::new(&w, o, i),
                true,
            );
            if o <= i {
                counted(
                    flops,
                    MatMut::new(&mut dw, o, i),
                    Mat::new(&dy, rows, o).t(),
                    Mat::new(&x, rows, i),
                    true,
                );
            } else {
                // Tall weights: dWᵀ = xᵀ·dy, as linear::backward_weight does.
                counted(
                    flops,
                    MatMut::new(&mut dw, i, o),
                    Mat::new(&x, rows, i).t(),
                    Mat::new(&dy, rows, o),
                    false,
                );
            }
        }
        for _ in 0..config.layers * batch * config.heads {
            for rows in query_blocks(seq) {
                let (n, keys) = (rows.len(), rows.end);
                let (q, k) = (
                    Mat::strided(&heads, n, dh, d),
                    Mat::strided(&heads, keys, dh, d),
                );
                let (p, pt) = (
                    Mat::strided(&weights, n, keys, seq),
                    Mat::strided(&weights, seq - rows.start, n, seq).t(),
                );
                let kt = Mat::strided(&transposed, dh, keys, seq);
                let tail = Mat::strided(&heads, seq - rows.start, dh, d);
                // (rows, cols, row stride) of a score block and of a head block.
                let (block, head) = ((n, keys, seq), (n, dh, d));
                // Forward: the scores q·kᵀ, the weighted sum p·v.
                counted(flops, strided(&mut scores, block), q, kt, false);
                counted(flops, strided(&mut out, head), p, k, false);
                // Backward: dp = dy·vᵀ, dq = ds·k, dv = pᵀ·dy, dk = dsᵀ·q.
                counted(flops, strided(&mut scores, block), q, kt, false);
                counted(flops, strided(&mut out, head), p, k, true);
                counted(flops, strided(&mut out, head), pt, tail, true);
                counted(flops, strided(&mut out, head), pt, tail, true);
            }
        }
    };
    let mut flops = 0.0;
    replay(&mut flops);
    let clock = Instant::now();
    for _ in 0..steps {
        replay(&mut 0.0);
    }
    Products {
        seconds: clock.elapsed().as_secs_f64() / steps as f64,
        flops,
    }
}

/// Times `steps` training and evaluation steps of `model` with `scheme`,
/// `jobs` copies side by side, each on its own thread (as `posembed run
/// --jobs` trains runs: one thread per run).
pub fn measure(
    model: ReferenceModel,
    scheme: &PositionalConfig,
    label: &str,
    steps: usize,
    activation: Activation,
    jobs: usize,
) -> BenchResult {
    let (config, batch, seq) = model.config(activation);
    let copy = || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a thread pool");
        pool.install(|| {
            with_widths(
                &config.clone(),
                Measure {
                    config: config.clone(),
                    positional: scheme,
                    batch,
                    seq,
                    steps,
                },
            )
        })
    };
    let copies: Vec<Throughput> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs.max(1)).map(|_| scope.spawn(copy)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread"))
            .collect()
    });
    BenchResult {
        model,
        scheme: label.to_string(),
        jobs: copies.len(),
        train_tokens_per_s: copies.iter().map(|c| c.train).sum(),
        eval_tokens_per_s: copies.iter().map(|c| c.eval).sum(),
        matmul_share: mean(copies.iter().map(|c| c.matmul_share)),
        matmul_gflops: mean(copies.iter().map(|c| c.matmul_gflops)),
        reference_gflops: mean(copies.iter().map(|c| c.reference_gflops)),
        peak_rss_bytes: peak_rss_bytes(),
    }
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len() as f64;
    values.sum::<f64>() / n
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
            matmul_share: median(repeats.iter().map(|r| r[i].matmul_share).collect()),
            matmul_gflops: median(repeats.iter().map(|r| r[i].matmul_gflops).collect()),
            reference_gflops: median(repeats.iter().map(|r| r[i].reference_gflops).collect()),
            peak_rss_bytes: repeats.iter().filter_map(|r| r[i].peak_rss_bytes).max(),
            ..repeats[0][i].clone()
        })
        .collect()
}

/// A table with the ratio of each scheme to the first (`none` by default).
pub fn table(results: &[BenchResult]) -> String {
    let mut out = format!(
        "{:<36} {:>5} {:>14} {:>10} {:>14} {:>10} {:>8} {:>14}\n",
        "scheme",
        "jobs",
        "train tok/s",
        "vs first",
        "eval tok/s",
        "vs first",
        "matmul",
        "GFLOP/s (ref)"
    );
    let (t0, e0) = results
        .first()
        .map_or((1.0, 1.0), |r| (r.train_tokens_per_s, r.eval_tokens_per_s));
    for r in results {
        out.push_str(&format!(
            "{:<36} {:>5} {:>14.0} {:>10.2} {:>14.0} {:>10.2} {:>7.0}% {:>7.0} ({:>4.0})\n",
            r.scheme,
            r.jobs,
            r.train_tokens_per_s,
            r.train_tokens_per_s / t0,
            r.eval_tokens_per_s,
            r.eval_tokens_per_s / e0,
            100.0 * r.matmul_share,
            r.matmul_gflops,
            r.reference_gflops
        ));
    }
    out
}

/// One sweep of identical runs (seeds differ) through the runner.
#[derive(Debug, Clone, Serialize)]
pub struct SweepBench {
    pub jobs: usize,
    pub runs: usize,
    pub wall_s: f64,
    /// Training tokens of all runs over the sweep's wall time.
    pub train_tokens_per_s: f64,
    /// Wall time not spent inside runs (planning, records, frames, report)
    /// per run: (wall − Σ run wall time / jobs) / runs.
    pub overhead_ms_per_run: f64,
}

/// Times `posembed run` on `runs` identical small runs (d_model 32, 2 layers,
/// `copy`, `steps` steps) once per entry of `jobs`, in a scratch directory.
pub fn sweep_throughput(
    runs: usize,
    steps: usize,
    jobs: &[usize],
) -> anyhow::Result<Vec<SweepBench>> {
    let seeds: Vec<String> = (0..runs).map(|s| s.to_string()).collect();
    let yaml = format!(
        "name: bench_sweep\nseeds: [{}]\ndefaults:\n  model: {{d_model: 32, ff: 128, layers: 2, heads: 4}}\n  positional: {{scheme: rope}}\n  task: {{name: copy, symbols: 8, train_lengths: [1, 16]}}\n  train: {{steps: {steps}, batch_size: 32, warmup: 20, log_every: 50}}\n  eval: {{lengths: [8, 16, 32], samples: 64}}\n",
        seeds.join(", ")
    );
    let scratch = std::env::temp_dir().join(format!("posembed-bench-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let file = scratch.join("bench_sweep.yaml");
    std::fs::write(&file, yaml)?;
    let mut out = Vec::new();
    for &j in jobs {
        let opts = crate::sweep::runner::RunOptions {
            jobs: j,
            force: true,
            results_root: scratch.join("results"),
            reports_root: scratch.join("reports"),
            ..Default::default()
        };
        let clock = Instant::now();
        let summary = crate::sweep::runner::run_sweep(&file, &opts)?;
        let wall_s = clock.elapsed().as_secs_f64();
        let mut tokens = 0usize;
        let mut run_wall = 0.0;
        for id in crate::store::records::stored_ids(&summary.results_dir)? {
            let record = crate::store::records::load(&summary.results_dir, &id)?.expect("listed");
            tokens += record.train_tokens;
            run_wall += record.wall_time_s;
        }
        out.push(SweepBench {
            jobs: j,
            runs,
            wall_s,
            train_tokens_per_s: tokens as f64 / wall_s,
            overhead_ms_per_run: (wall_s - run_wall / j as f64).max(0.0) * 1e3 / runs as f64,
        });
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(out)
}

/// The sweep table, with each row's throughput relative to the first.
pub fn sweep_table(results: &[SweepBench]) -> String {
    let mut out = format!(
        "{:>5} {:>5} {:>9} {:>16} {:>10} {:>18}\n",
        "jobs", "runs", "wall s", "train tok/s", "vs first", "overhead ms/run"
    );
    let first = results.first().map_or(1.0, |r| r.train_tokens_per_s);
    for r in results {
        out.push_str(&format!(
            "{:>5} {:>5} {:>9.2} {:>16.0} {:>10.2} {:>18.1}\n",
            r.jobs,
            r.runs,
            r.wall_s,
            r.train_tokens_per_s,
            r.train_tokens_per_s / first,
            r.overhead_ms_per_run
        ));
    }
    out
}

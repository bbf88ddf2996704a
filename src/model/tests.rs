use super::attention::{self, causal_mask, Attention, AttentionContext};
use super::testing::{scheme, tiny_model};
use super::*;
use crate::nn::hooks::{Positions, ScoreBias};
use crate::nn::rotation::Rotation;
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random(n: usize, r: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

/// Mean cross-entropy over the tokens with nonzero `weights` (weights sum to 1).
/// logits: (batch, seq, vocab); targets and weights: row-major (batch, seq).
fn weighted_cross_entropy<Dev: Kernels, T: Tape<f32, Dev>>(
    dev: &Dev,
    logits: Tensor<(usize, usize, usize), f32, Dev, T>,
    targets: &[usize],
    weights: &[f32],
) -> Tensor<Rank0, f32, Dev, T> {
    let (b, s, v) = *logits.shape();
    weighted_nll(
        dev,
        target_log_probs(logits.reshape_like(&(b * s, v)), targets),
        weights,
    )
}

#[test]
fn causal_mask_blocks_the_future() {
    for yaml in positional::examples() {
        let model = tiny_model(&scheme(&yaml));
        let pos = Positions::contiguous(1, 8);
        let a = vec![1, 4, 5, 6, 2, 4, 5, 6];
        let mut b = a.clone();
        b[5] = 8;
        let run = |tokens: &Vec<usize>| {
            model
                .forward(
                    &TokenBatch {
                        tokens,
                        positions: &pos,
                    },
                    NoneTape,
                    false,
                )
                .as_vec()
        };
        let (la, lb) = (run(&a), run(&b));
        let vocab = 9;
        assert_eq!(
            &la[..5 * vocab],
            &lb[..5 * vocab],
            "{yaml}: earlier logits changed"
        );
        assert_ne!(
            &la[5 * vocab..],
            &lb[5 * vocab..],
            "{yaml}: the changed token had no effect"
        );
    }
}

#[test]
fn positions_change_the_output_of_every_scheme_that_reads_them() {
    for yaml in positional::examples() {
        let model = tiny_model(&scheme(&yaml));
        let tokens = vec![1, 4, 5, 6, 2, 4];
        let run = |values: Vec<usize>| {
            let pos = Positions {
                batch: 1,
                seq: 6,
                values,
            };
            model
                .forward(
                    &TokenBatch {
                        tokens: &tokens,
                        positions: &pos,
                    },
                    NoneTape,
                    false,
                )
                .as_vec()
        };
        let (plain, shifted) = (run(vec![0, 1, 2, 3, 4, 5]), run(vec![0, 2, 4, 6, 8, 10]));
        if !positional::reads_positions(&scheme(&yaml).scheme) {
            assert_eq!(plain, shifted, "{yaml} reads no positions");
        } else {
            assert_ne!(plain, shifted, "{yaml} ignores positions");
        }
    }
}

/// A test scheme: a score bias on the tape (a leaf, so its gradient can be
/// checked) and a rotation.
struct BiasAndRotation {
    bias: Tensor<(usize, usize, usize, usize), f32, Cpu>,
    rotation: PositionalConfig,
}

impl PositionalLayer<8, Cpu> for BiasAndRotation {
    fn score_bias(&self, _: usize, _: &Positions, _: usize) -> Option<ScoreBias<Cpu>> {
        Some(ScoreBias::Trained(self.bias.retaped()))
    }
    fn rotation(&self, pos: &Positions, heads: usize, head_dim: usize) -> Option<Rotation<Cpu>> {
        let mut r = rng(1);
        let ctx = BuildContext {
            dev: Cpu::default(),
            heads,
            layers: 1,
            rng: &mut r,
        };
        positional::build::<8, Cpu>(&self.rotation, ctx).rotation(pos, heads, head_dim)
    }
}

fn close(analytic: f32, numeric: f64, what: &str) {
    assert!(
        (analytic as f64 - numeric).abs() < 2e-3 + 1e-2 * numeric.abs(),
        "{what}: analytic {analytic} vs numeric {numeric}"
    );
}

/// The attention sublayer on `x`: the composed reference, or (on the CPU)
/// the fused op the model runs where it can.
fn sublayer<T: ModelTape<Cpu>>(
    attn: &Attention<8, Cpu>,
    x: Tensor<(usize, usize, Const<8>), f32, Cpu, T>,
    ctx: &AttentionContext<8, Cpu>,
    fused: bool,
) -> Tensor<(usize, usize, Const<8>), f32, Cpu, T> {
    if fused {
        assert!(ctx.fusable(0));
        attn.forward(x, 0, ctx)
    } else {
        attention::composed(x, &attn.params(), 0, ctx)
    }
}

#[test]
fn composed_attention_gradients_match_finite_differences() {
    attention_gradients_match_finite_differences(false);
}

#[test]
fn fused_attention_gradients_match_finite_differences() {
    attention_gradients_match_finite_differences(true);
}

fn attention_gradients_match_finite_differences(fused: bool) {
    let dev: Cpu = Default::default();
    let mut r = rng(7);
    let mut attn = Attention::<8, Cpu>::new(&dev, 0.4, 0.4, &mut r);
    let (b, s, h) = (2, 3, 2);
    let x_data = random(b * s * 8, &mut r);
    let bias_data = random(b * h * s * s, &mut r);
    let w = dev.tensor_from_vec(random(b * s * 8, &mut r), (b, s, Const::<8>));
    let pos = Positions::contiguous(b, s);
    let rope = scheme("{scheme: rope, base: 10}");
    let hooks = |bias: &[f32]| BiasAndRotation {
        bias: dev.tensor_from_vec(bias.to_vec(), (b, h, s, s)),
        rotation: rope.clone(),
    };
    let ctx = |layer: &BiasAndRotation| -> Option<Rotation<Cpu>> { layer.rotation(&pos, h, 4) };
    let loss = |attn: &Attention<8, Cpu>, x: &[f32], bias: &[f32]| -> f64 {
        let layer = hooks(bias);
        let c = AttentionContext {
            heads: h,
            causal_mask: dev.tensor_from_vec(causal_mask(s), (s, s)),
            rotation: ctx(&layer),
            position: &layer,
            positions: &pos,
            dropout: 0.0,
        };
        let x = dev.tensor_from_vec(x.to_vec(), (b, s, Const::<8>));
        let out: Tensor<(usize, usize, Const<8>), f32, Cpu> = sublayer(attn, x, &c, fused);
        let total: Tensor<Rank0, f32, Cpu> = (out * w.clone()).sum();
        total.array() as f64
    };

    // Analytic gradients.
    let layer = hooks(&bias_data);
    let c = AttentionContext {
        heads: h,
        causal_mask: dev.tensor_from_vec(causal_mask(s), (s, s)),
        rotation: ctx(&layer),
        position: &layer,
        positions: &pos,
        dropout: 0.0,
    };
    let x = dev.tensor_from_vec(x_data.clone(), (b, s, Const::<8>));
    let out = sublayer(&attn, x.leaky_trace(), &c, fused);
    let grads = (out * w.clone()).sum().backward();
    let (gx, gbias) = (grads.get(&x).as_vec(), grads.get(&layer.bias).as_vec());
    let mut gparams = Vec::new();
    attn.visit_params(&mut |p| gparams.push(p.grad(&grads)));

    let eps = 1e-2f32;
    for i in (0..x_data.len()).step_by(5) {
        let (mut plus, mut minus) = (x_data.clone(), x_data.clone());
        plus[i] += eps;
        minus[i] -= eps;
        let numeric =
            (loss(&attn, &plus, &bias_data) - loss(&attn, &minus, &bias_data)) / (2.0 * eps as f64);
        close(gx[i], numeric, &format!("x[{i}]"));
    }
    for i in (0..bias_data.len()).step_by(3) {
        let (mut plus, mut minus) = (bias_data.clone(), bias_data.clone());
        plus[i] += eps;
        minus[i] -= eps;
        let numeric =
            (loss(&attn, &x_data, &plus) - loss(&attn, &x_data, &minus)) / (2.0 * eps as f64);
        close(gbias[i], numeric, &format!("bias[{i}]"));
    }
    for (p_index, grad) in gparams.iter().enumerate() {
        for i in (0..grad.len()).step_by(grad.len() / 4 + 1) {
            let mut eval_with = |delta: f32| {
                nudge(&mut |f| attn.visit_params(f), p_index, i, delta);
                loss(&attn, &x_data, &bias_data)
            };
            let plus = eval_with(eps);
            let minus = eval_with(-2.0 * eps);
            eval_with(eps);
            close(
                grad[i],
                (plus - minus) / (2.0 * eps as f64),
                &format!("param {p_index}[{i}]"),
            );
        }
    }
}

/// Adds `delta` to entry `i` of the `index`-th parameter visited.
fn nudge(visit: &mut dyn FnMut(&mut ParamVisitor<Cpu>), index: usize, i: usize, delta: f32) {
    let mut k = 0;
    visit(&mut |p| {
        if k == index {
            let mut v = p.values();
            v[i] += delta;
            p.set_values(&v);
        }
        k += 1;
    });
}

fn batch_loss(
    model: &Transformer<16, 64, Cpu>,
    tokens: &[usize],
    targets: &[usize],
    weights: &[f32],
    pos: &Positions,
) -> f64 {
    let dev = model.device().clone();
    let logits = model.forward(
        &TokenBatch {
            tokens,
            positions: pos,
        },
        NoneTape,
        false,
    );
    weighted_cross_entropy(&dev, logits, targets, weights).array() as f64
}

/// Gradients of the weighted cross-entropy of one batch, every parameter tracked.
fn loss_gradients(
    model: &mut Transformer<16, 64, Cpu>,
    tokens: &[usize],
    targets: &[usize],
    weights: &[f32],
    pos: &Positions,
) -> Gradients<f32, Cpu> {
    let dev = model.device().clone();
    let tape = model.training_tape();
    let logits = model.forward(
        &TokenBatch {
            tokens,
            positions: pos,
        },
        tape,
        false,
    );
    weighted_cross_entropy(&dev, logits, targets, weights).backward()
}

/// Finite-difference check of every positional parameter through the whole model.
#[test]
fn scheme_parameter_gradients_match_finite_differences() {
    let learned_yaml = [
        "{scheme: learned}",
        "{scheme: learned, fusion: concat, position_dims: 4}",
        "{scheme: t5, buckets: 4, max_distance: 8}",
        "{scheme: t5, buckets: 4, max_distance: 8, shared_across_layers: false}",
        "{scheme: shaw, max_distance: 2}",
        "{scheme: shaw, max_distance: 2, values: true}",
    ];
    let tokens = vec![1, 4, 5, 6, 2, 4, 5, 1, 7, 8, 2, 7];
    let targets = vec![4, 5, 6, 2, 4, 5, 6, 7, 8, 2, 7, 8];
    let weights = vec![1.0 / 12.0; 12];
    for yaml in learned_yaml {
        let mut model = tiny_model(&scheme(yaml));
        // Randomized-looking positions exercise clipping and every bucket.
        let pos = Positions {
            batch: 2,
            seq: 6,
            values: vec![0, 1, 3, 4, 7, 9, 0, 2, 3, 5, 6, 8],
        };
        let grads = loss_gradients(&mut model, &tokens, &targets, &weights, &pos);
        let mut analytic = Vec::new();
        model.visit_params(&mut |p| analytic.push(p.grad(&grads)));
        // Parameter 0 is the token embedding; the scheme's follow it.
        let mut counts = Vec::new();
        model.position.visit_params(&mut |p| counts.push(p.numel()));
        assert!(!counts.is_empty(), "{yaml} has no parameters");
        let eps = 1e-2f32;
        for (k, &len) in counts.iter().enumerate() {
            let index = 1 + k;
            let mut checked = 0;
            for i in (0..len).step_by(len / 6 + 1) {
                let mut eval_with = |delta: f32| {
                    nudge(&mut |f| model.visit_params(f), index, i, delta);
                    batch_loss(&model, &tokens, &targets, &weights, &pos)
                };
                let plus = eval_with(eps);
                let minus = eval_with(-2.0 * eps);
                eval_with(eps);
                close(
                    analytic[index][i],
                    (plus - minus) / (2.0 * eps as f64),
                    &format!("{yaml} param {k}[{i}]"),
                );
                checked += 1;
            }
            assert!(checked > 0);
            assert!(
                analytic[index].iter().any(|&g| g != 0.0),
                "{yaml}: param {k} got no gradient"
            );
        }
    }
}

#[test]
fn shaw_future_distances_get_zero_gradient() {
    let mut model = tiny_model(&scheme("{scheme: shaw, max_distance: 3}"));
    let pos = Positions::contiguous(1, 6);
    let grads = loss_gradients(
        &mut model,
        &[1, 4, 5, 6, 2, 4],
        &[4, 5, 6, 2, 4, 5],
        &[1.0 / 6.0; 6],
        &pos,
    );
    let mut layer0 = Vec::new();
    let mut k = 0;
    model.position.visit_params(&mut |p| {
        if k == 0 {
            layer0 = p.grad(&grads);
        }
        k += 1;
    });
    // Rows 0..=3 are distances −3..0 (past and present), rows 4..=6 the future.
    let head_dim = 8;
    for (row, g) in layer0.chunks(head_dim).enumerate() {
        if row > 3 {
            assert!(g.iter().all(|&x| x == 0.0), "future row {row}: {g:?}");
        } else {
            assert!(
                g.iter().any(|&x| x != 0.0),
                "past row {row} has no gradient"
            );
        }
    }
}

#[test]
fn learned_models_count_their_parameters() {
    let mut none = tiny_model(&scheme("{scheme: none}"));
    let mut learned = tiny_model(&scheme("{scheme: learned, max_positions: 128}"));
    assert_eq!(learned.num_params() - none.num_params(), 128 * 16);
}

#[test]
fn probe_gradient_reaches_the_embeddings() {
    let dev: Cpu = Default::default();
    let config = ModelConfig {
        d_model: 16,
        ff: 64,
        layers: 1,
        heads: 2,
        ..Default::default()
    };
    let mut model = Transformer::<16, 64, Cpu>::new(
        &dev,
        &config,
        &scheme("{scheme: learned, max_positions: 128}"),
        9,
        Some(4),
        &mut rng(0),
    );
    let pos = Positions::contiguous(1, 6);
    let tokens = vec![1, 4, 5, 6, 2, 4];
    let tape = model.training_tape();
    let (logits, probe) = model.forward_with_probe(
        &TokenBatch {
            tokens: &tokens,
            positions: &pos,
        },
        tape,
        true,
    );
    // The probe loss alone (the logits, which carry the tape, enter with weight 0).
    let probe_loss = weighted_nll(
        &dev,
        target_log_probs(probe.unwrap(), &[0, 1, 2, 2, 3, 3]),
        &[1.0 / 6.0; 6],
    );
    let loss = logits.sum() * 0.0 + probe_loss;
    let grads = loss.backward();
    let mut norms = Vec::new();
    model.visit_params(&mut |p| norms.push(p.grad(&grads).iter().map(|g| g.abs()).sum::<f32>()));
    assert!(norms[0] > 0.0, "token embedding got no probe gradient");
    assert!(
        norms[1] > 0.0,
        "learned position table got no probe gradient"
    );
    assert!(*norms.last().unwrap() > 0.0, "probe head got no gradient");
}

#[test]
fn position_structure_reads_each_kind_of_scheme() {
    let kind = |yaml: &str| {
        tiny_model(&scheme(yaml))
            .position_structure(6)
            .map(|s| s.kind)
    };
    assert_eq!(kind("{scheme: none}"), None);
    assert_eq!(
        kind("{scheme: shaw}"),
        None,
        "query-dependent: no static structure"
    );
    assert_eq!(kind("{scheme: learned}").as_deref(), Some("cosine"));
    assert_eq!(kind("{scheme: t5}").as_deref(), Some("bias"));
    assert_eq!(
        kind("{scheme: multiscale, bases: [10, 1000]}").as_deref(),
        Some("rotary")
    );
}

#[test]
fn alibi_structure_is_the_bias_matrix_of_the_first_and_last_head() {
    // Two heads: slopes 2^-4 and 2^-8; bias −m·(i − j) for j ≤ i.
    let s = tiny_model(&scheme("{scheme: alibi}"))
        .position_structure(4)
        .unwrap();
    assert_eq!(s.panels.len(), 2);
    for (panel, m) in s.panels.iter().zip([2f64.powi(-4), 2f64.powi(-8)]) {
        for i in 0..4 {
            for j in 0..4 {
                match panel.values[i * 4 + j] {
                    None => assert!(j > i, "{i},{j} masked"),
                    Some(v) => assert!((v + m * (i - j) as f64).abs() < 1e-6, "{i},{j}: {v}"),
                }
            }
        }
    }
}

#[test]
fn sinusoidal_structure_depends_only_on_the_offset_and_rope_decays_from_one() {
    let n = 8;
    let s = tiny_model(&scheme("{scheme: sinusoidal}"))
        .position_structure(n)
        .unwrap();
    let m: Vec<f64> = s.panels[0].values.iter().map(|v| v.unwrap()).collect();
    for i in 0..n {
        assert!((m[i * n + i] - 1.0).abs() < 1e-6);
        for j in 0..n {
            // Toeplitz: cos(i, j) = cos(i + 1, j + 1).
            if i + 1 < n && j + 1 < n {
                assert!((m[i * n + j] - m[(i + 1) * n + j + 1]).abs() < 1e-5);
            }
        }
    }
    // RoPE over all 8 head dims (4 pairs, θ_k = 10000^(−2k/8)): the unit
    // all-ones vector pair scores Σ_k cos(o·θ_k) / 4 at offset o.
    let r = tiny_model(&scheme("{scheme: rope}"))
        .position_structure(n)
        .unwrap();
    for o in 0..n {
        let expect = (0..4)
            .map(|k| (o as f64 * 10000f64.powf(-2.0 * k as f64 / 8.0)).cos())
            .sum::<f64>()
            / 4.0;
        assert!(
            (r.panels[0].values[o].unwrap() - expect).abs() < 1e-5,
            "offset {o}"
        );
    }
}

/// With dropout, layers leave the fused sublayers for the composed dfdx ops
/// (dropout draws from the device's RNG): training forwards then drop
/// (they differ from evaluation, which runs fused) and are reproducible
/// from the device seed.
#[test]
fn dropout_takes_the_composed_path_reproducibly() {
    let config = ModelConfig {
        d_model: 16,
        ff: 64,
        layers: 2,
        heads: 2,
        dropout: 0.3,
        ..Default::default()
    };
    let positional = scheme("{scheme: rope}");
    let pos = Positions::contiguous(2, 5);
    let tokens = vec![1, 4, 5, 6, 2, 3, 3, 8, 0, 7];
    let batch = TokenBatch {
        tokens: &tokens,
        positions: &pos,
    };
    let forward = |train: bool| {
        let dev = Cpu::seed_from_u64(3);
        let model =
            Transformer::<16, 64, Cpu>::new(&dev, &config, &positional, 9, None, &mut rng(0));
        model.forward(&batch, NoneTape, train).as_vec()
    };
    assert_eq!(forward(true), forward(true), "same device seed, same drops");
    assert_ne!(
        forward(true),
        forward(false),
        "training drops, evaluation does not"
    );
}

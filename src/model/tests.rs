use super::attention::{causal_mask, Attention, AttentionContext};
use super::*;
use crate::positional::{Positions, Scores};
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random(n: usize, r: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

fn scheme(yaml: &str) -> PositionalConfig {
    let ctx = positional::SchemeContext {
        d_model: 16,
        heads: 2,
        max_position: 100,
    };
    positional::parse(&serde_yaml::from_str(yaml).unwrap(), &ctx).unwrap()
}

fn tiny_model(positional: &PositionalConfig) -> Transformer<16, 64, Cpu> {
    let dev: Cpu = Default::default();
    let config = ModelConfig {
        d_model: 16,
        ff: 64,
        layers: 2,
        heads: 2,
        ..Default::default()
    };
    Transformer::new(&dev, &config, positional, 9, &mut rng(0))
}

#[test]
fn causal_mask_blocks_the_future() {
    for yaml in [
        "{scheme: none}",
        "{scheme: sinusoidal}",
        "{scheme: learned}",
        "{scheme: alibi}",
        "{scheme: rope}",
    ] {
        let model = tiny_model(&scheme(yaml));
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
fn attention_gradients_match_finite_differences() {
    let dev: Cpu = Default::default();
    let mut r = rng(7);
    let mut attn = Attention::<8, Cpu>::new(&dev, 0.4, 0.4, &mut r);
    let (b, s, h) = (2, 3, 2);
    let x_data = random(b * s * 8, &mut r);
    let bias_data = random(b * h * s * s, &mut r);
    let w = dev.tensor_from_vec(random(b * s * 8, &mut r), (b, s, Const::<8>));
    let pos = Positions::contiguous(b, s);
    let rope = positional::build::<8, Cpu>(
        &scheme("{scheme: rope, base: 10}"),
        positional::BuildContext {
            dev: dev.clone(),
            heads: h,
            layers: 1,
            rng: &mut r,
        },
    );
    let ctx = AttentionContext {
        heads: h,
        causal_mask: dev.tensor_from_vec(causal_mask(s), (s, s)),
        rotation: rope.rotation(&pos, h, 4),
        dropout: 0.0,
    };
    let bias_of = |data: &[f32]| -> Scores<Cpu, OTape<Cpu>> {
        dev.tensor_from_vec(data.to_vec(), (b, h, s, s)).retaped()
    };
    let loss = |attn: &Attention<8, Cpu>, x: &[f32], bias: &[f32]| -> f64 {
        let x = dev.tensor_from_vec(x.to_vec(), (b, s, Const::<8>));
        let out: Tensor<(usize, usize, Const<8>), f32, Cpu> =
            attn.forward(x, Some(bias_of(bias)), &ctx);
        let total: Tensor<Rank0, f32, Cpu> = (out * w.clone()).sum();
        total.array() as f64
    };

    // Analytic gradients.
    let x = dev.tensor_from_vec(x_data.clone(), (b, s, Const::<8>));
    let bias = dev.tensor_from_vec(bias_data.clone(), (b, h, s, s));
    let out = attn.forward(x.leaky_trace(), Some(bias.leaky_trace()), &ctx);
    let grads = (out * w.clone()).sum().backward();
    let (gx, gbias) = (grads.get(&x).as_vec(), grads.get(&bias).as_vec());
    let mut gparams = Vec::new();
    attn.visit_params(&mut |p| gparams.push(p.grad(&grads)));

    let eps = 1e-2f32;
    let close = |analytic: f32, numeric: f64, what: &str| {
        assert!(
            (analytic as f64 - numeric).abs() < 2e-3 + 1e-2 * numeric.abs(),
            "{what}: analytic {analytic} vs numeric {numeric}"
        );
    };
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
    // Every parameter tensor: a few coordinates each.
    for (p_index, grad) in gparams.iter().enumerate() {
        for i in (0..grad.len()).step_by(grad.len() / 4 + 1) {
            let mut eval_with = |delta: f32| {
                let mut k = 0;
                attn.visit_params(&mut |p| {
                    if k == p_index {
                        let mut v = p.values();
                        v[i] += delta;
                        p.set_values(&v);
                    }
                    k += 1;
                });
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

#[test]
fn learned_and_sinusoidal_models_count_their_parameters() {
    let mut none = tiny_model(&scheme("{scheme: none}"));
    let mut learned = tiny_model(&scheme("{scheme: learned, max_positions: 128}"));
    assert_eq!(learned.num_params() - none.num_params(), 128 * 16);
}

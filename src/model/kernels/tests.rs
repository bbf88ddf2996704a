//! Every fused CPU kernel against its dfdx composition: forward values and
//! the gradients of every input, on several shapes including odd sizes.

use super::*;
use crate::model::attention::causal_mask;
use crate::positional::{self, BucketedBias, BuildContext, Positions, SchemeContext};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random<S: Shape>(dev: &Cpu, shape: S, r: &mut ChaCha8Rng) -> Tensor<S, f32, Cpu> {
    let data = (0..shape.num_elements())
        .map(|_| r.gen_range(-1.5f32..1.5))
        .collect();
    dev.tensor_from_vec(data, shape)
}

type Grads = Gradients<f32, Cpu>;

/// Backward of Σ out ⊙ probe, so that every output element gets its own gradient.
fn backward<S: Shape>(
    out: Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>,
    probe: &Tensor<S, f32, Cpu>,
) -> Grads {
    (out * probe.clone()).sum().backward()
}

/// Elementwise agreement to 1e-4 of the larger of 1 and the vector's largest
/// magnitude: f32 rounding in long sums (and LayerNorm's cancellations)
/// stays well inside it; a wrong term does not.
fn assert_close(fused: &[f32], composed: &[f32], what: &str) {
    assert_eq!(fused.len(), composed.len(), "{what}: lengths");
    let scale = composed.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in fused.iter().zip(composed).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale,
            "{what}[{i}]: fused {a} vs composed {b} (scale {scale})"
        );
    }
}

fn assert_grads_equal<S: Shape>(a: &Grads, b: &Grads, t: &Tensor<S, f32, Cpu>, what: &str) {
    assert_eq!(a.get(t).as_vec(), b.get(t).as_vec(), "{what}");
}

fn assert_grads_close<S: Shape>(
    fused: &Grads,
    composed: &Grads,
    t: &Tensor<S, f32, Cpu>,
    what: &str,
) {
    assert_close(&fused.get(t).as_vec(), &composed.get(t).as_vec(), what);
}

fn check_linear<O: Dim, const I: usize>(
    rows: usize,
    o: O,
    bias: bool,
    activation: Option<Activation>,
    seed: u64,
) {
    let (dev, mut r) = (Cpu::default(), ChaCha8Rng::seed_from_u64(seed));
    let x = random(&dev, (rows, Const::<I>), &mut r);
    let w = random(&dev, (o, Const::<I>), &mut r);
    let b = random(&dev, (o,), &mut r);
    let probe = random(&dev, (rows, o), &mut r);
    let b_used = bias.then_some(&b);
    let fused = <Cpu as Kernels>::linear(x.clone().leaky_traced(), &w, b_used, activation);
    let composed = compose::linear(x.clone().leaky_traced(), &w, b_used, activation);
    assert_close(&fused.as_vec(), &composed.as_vec(), "linear output");
    let (gf, gc) = (backward(fused, &probe), backward(composed, &probe));
    assert_grads_close(&gf, &gc, &x, "linear dx");
    assert_grads_close(&gf, &gc, &w, "linear dW");
    if bias {
        assert_grads_close(&gf, &gc, &b, "linear db");
    }
}

#[test]
fn linear_matches_composition() {
    check_linear::<Const<7>, 5>(1, Const, true, None, 1);
    check_linear::<Const<7>, 5>(13, Const, true, None, 2);
    check_linear::<usize, 16>(33, 3, false, None, 3);
    check_linear::<Const<64>, 32>(70, Const, true, None, 4);
}

#[test]
fn activated_linear_matches_composition() {
    check_linear::<Const<7>, 5>(9, Const, true, Some(Activation::Relu), 5);
    check_linear::<Const<64>, 16>(31, Const, true, Some(Activation::Relu), 6);
    check_linear::<Const<7>, 5>(9, Const, true, Some(Activation::Gelu), 7);
    check_linear::<usize, 16>(20, 11, false, Some(Activation::Gelu), 8);
}

fn check_layer_norm<const W: usize>(rows: usize, seed: u64) {
    let (dev, mut r) = (Cpu::default(), ChaCha8Rng::seed_from_u64(seed));
    let x = random(&dev, (rows, Const::<W>), &mut r);
    let gain = random(&dev, (Const::<W>,), &mut r);
    let bias = random(&dev, (Const::<W>,), &mut r);
    let probe = random(&dev, (rows, Const::<W>), &mut r);
    let norm = NormParams {
        gain: &gain,
        bias: &bias,
    };
    let fused = <Cpu as Kernels>::layer_norm(x.clone().leaky_traced(), &norm);
    let composed = compose::layer_norm(x.clone().leaky_traced(), &norm);
    assert_close(&fused.as_vec(), &composed.as_vec(), "layer_norm output");
    let (gf, gc) = (backward(fused, &probe), backward(composed, &probe));
    assert_grads_close(&gf, &gc, &x, "layer_norm dx");
    assert_grads_close(&gf, &gc, &gain, "layer_norm dgain");
    assert_grads_close(&gf, &gc, &bias, "layer_norm dbias");
}

#[test]
fn layer_norm_matches_composition() {
    check_layer_norm::<5>(1, 1);
    check_layer_norm::<5>(9, 2);
    check_layer_norm::<16>(31, 3);
    check_layer_norm::<128>(4, 4);
}

/// The rotation a scheme gives for `heads` heads of `D / heads` dims.
fn rotation<const D: usize>(yaml: &str, pos: &Positions, heads: usize) -> Option<Rotation<Cpu>> {
    let ctx = SchemeContext {
        d_model: D,
        heads,
        max_position: 100,
    };
    let config = positional::parse(&serde_yaml::from_str(yaml).unwrap(), &ctx).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(0);
    let build = BuildContext {
        dev: Cpu::default(),
        heads,
        layers: 1,
        rng: &mut r,
    };
    positional::build::<D, Cpu>(&config, build).rotation(pos, heads, D / heads)
}

/// Random parameters of one linear layer.
struct Dense<const I: usize, const O: usize> {
    weight: Tensor<(Const<O>, Const<I>), f32, Cpu>,
    bias: Tensor<(Const<O>,), f32, Cpu>,
}

impl<const I: usize, const O: usize> Dense<I, O> {
    fn new(dev: &Cpu, r: &mut ChaCha8Rng) -> Self {
        // Uniform(±1.5/√I): activations keep unit scale, as with a trained model's weights.
        let weight = random(dev, (Const, Const), r) * (1.0 / (I as f32).sqrt());
        Dense {
            weight,
            bias: random(dev, (Const,), r),
        }
    }
    fn params(&self) -> LinearParams<'_, I, O, Cpu> {
        LinearParams {
            weight: &self.weight,
            bias: &self.bias,
        }
    }
    fn check(&self, fused: &Grads, composed: &Grads, what: &str) {
        assert_grads_close(fused, composed, &self.weight, &format!("{what}: dW"));
        assert_grads_close(fused, composed, &self.bias, &format!("{what}: db"));
    }
}

/// Random LayerNorm parameters (gain around 1).
struct Norm<const W: usize> {
    gain: Tensor<(Const<W>,), f32, Cpu>,
    bias: Tensor<(Const<W>,), f32, Cpu>,
}

impl<const W: usize> Norm<W> {
    fn new(dev: &Cpu, r: &mut ChaCha8Rng) -> Self {
        let gain = (0..W).map(|_| r.gen_range(0.5f32..1.5)).collect();
        Norm {
            gain: dev.tensor_from_vec(gain, (Const,)),
            bias: random(dev, (Const,), r),
        }
    }
    fn params(&self) -> NormParams<'_, W, Cpu> {
        NormParams {
            gain: &self.gain,
            bias: &self.bias,
        }
    }
    fn check(&self, fused: &Grads, composed: &Grads, what: &str) {
        assert_grads_close(fused, composed, &self.gain, &format!("{what}: dgain"));
        assert_grads_close(fused, composed, &self.bias, &format!("{what}: dbias"));
    }
}

/// Which score bias an attention case adds.
#[derive(Clone, Copy, PartialEq)]
enum Bias {
    None,
    /// A trained (batch, heads, seq, seq) tensor.
    Full,
    /// A fixed (batch, heads, seq, seq) tensor, off the tape (ALiBi's kind).
    Fixed,
    /// One (heads, seq, seq) tensor broadcast over the batch, as a strided view.
    Broadcast,
    /// A trained (buckets, heads) table read through a bucket per pair (T5's kind).
    Bucketed,
}

fn check_attention_sublayer<const D: usize>(
    batch: usize,
    seq: usize,
    heads: usize,
    scheme: &str,
    bias: Bias,
    seed: u64,
) {
    let (dev, mut r) = (Cpu::default(), ChaCha8Rng::seed_from_u64(seed));
    let shape = (batch, seq, Const::<D>);
    let x = random(&dev, shape, &mut r);
    let norm = Norm::<D>::new(&dev, &mut r);
    let [q, k, v, out] = [(); 4].map(|_| Dense::<D, D>::new(&dev, &mut r));
    let params = AttentionParams {
        norm: norm.params(),
        q: q.params(),
        k: k.params(),
        v: v.params(),
        out: out.params(),
    };
    let scores = (batch, heads, seq, seq);
    let full = random(&dev, scores, &mut r);
    let shared = random(&dev, (heads, seq, seq), &mut r);
    let probe = random(&dev, shape, &mut r);
    let table = random(&dev, (5, heads), &mut r);
    let index: Vec<usize> = (0..batch * seq * seq).map(|_| r.gen_range(0..5)).collect();
    let pos = Positions {
        batch,
        seq,
        values: (0..batch * seq).map(|i| i % seq + 3 * (i / seq)).collect(),
    };
    let rotation = rotation::<D>(scheme, &pos, heads);
    let mask = dev.tensor_from_vec(causal_mask(seq), (seq, seq));
    let spec = AttentionSpec {
        heads,
        rotation: rotation.as_ref(),
        causal_mask: &mask,
        dropout: 0.0,
    };
    // `expanded`: a bucketed bias as the (b, h, s, s) tensor it stands for.
    let run = |fused: bool, expanded: bool| {
        let bucketed = || BucketedBias {
            table: table.clone().leaky_traced(),
            buckets: index.clone().into(),
            batch,
            seq,
        };
        let bias = match bias {
            Bias::None => None,
            Bias::Full => Some(ScoreBias::Trained(full.clone().leaky_traced())),
            Bias::Fixed => Some(ScoreBias::Fixed(full.clone())),
            Bias::Broadcast => Some(ScoreBias::Trained(
                shared
                    .clone()
                    .leaky_traced()
                    .broadcast_like::<_, Axis<0>>(&scores),
            )),
            Bias::Bucketed if expanded => Some(ScoreBias::Trained(bucketed().into_scores())),
            Bias::Bucketed => Some(ScoreBias::Bucketed(bucketed())),
        };
        let x = x.clone().leaky_traced();
        let y = if fused {
            <Cpu as Kernels>::attention_sublayer(x, &params, bias, &spec)
        } else {
            compose::attention_sublayer(x, &params, bias, &spec)
        };
        (y.as_vec(), backward(y, &probe))
    };
    let ((yf, gf), (yc, gc)) = (run(true, false), run(false, false));
    let case = format!("{scheme} b{batch} s{seq} h{heads} D{D}");
    assert_close(&yf, &yc, &format!("{case}: output"));
    assert_grads_close(&gf, &gc, &x, &format!("{case}: dx"));
    norm.check(&gf, &gc, &format!("{case}: norm"));
    for (layer, name) in [(&q, "q"), (&k, "k"), (&v, "v"), (&out, "out")] {
        layer.check(&gf, &gc, &format!("{case}: {name}"));
    }
    match bias {
        Bias::None | Bias::Fixed => {}
        Bias::Full => assert_grads_close(&gf, &gc, &full, &format!("{case}: dbias")),
        Bias::Broadcast => assert_grads_close(&gf, &gc, &shared, &format!("{case}: dbias")),
        Bias::Bucketed => {
            assert_grads_close(&gf, &gc, &table, &format!("{case}: dtable"));
            // Reading the table directly changes no bit against the fused
            // kernel on the expanded tensor (what T5 ran before).
            let (ye, ge) = run(true, true);
            assert_eq!(yf, ye, "{case}: output, bucketed vs expanded");
            let what = format!("{case}: bucketed vs expanded");
            assert_grads_equal(&gf, &ge, &table, &format!("{what}: dtable"));
            assert_grads_equal(&gf, &ge, &x, &format!("{what}: dx"));
            assert_grads_equal(&gf, &ge, &norm.gain, &format!("{what}: dgain"));
            for (layer, name) in [(&q, "q"), (&k, "k"), (&v, "v"), (&out, "out")] {
                assert_grads_equal(&gf, &ge, &layer.weight, &format!("{what}: d{name}"));
            }
        }
    }
}

#[test]
fn attention_sublayer_matches_composition() {
    check_attention_sublayer::<6>(1, 1, 2, "{scheme: none}", Bias::None, 1);
    check_attention_sublayer::<6>(2, 5, 3, "{scheme: none}", Bias::Full, 2);
    check_attention_sublayer::<12>(3, 9, 2, "{scheme: alibi}", Bias::Broadcast, 3);
    check_attention_sublayer::<12>(2, 7, 3, "{scheme: rope}", Bias::None, 4);
    check_attention_sublayer::<12>(3, 10, 4, "{scheme: none}", Bias::Fixed, 8);
    check_attention_sublayer::<12>(3, 9, 4, "{scheme: none}", Bias::Bucketed, 9);
    check_attention_sublayer::<8>(1, 13, 2, "{scheme: rope}", Bias::Bucketed, 10);
    check_attention_sublayer::<16>(
        2,
        6,
        2,
        "{scheme: rope, pairing: halves, fraction: 0.5}",
        Bias::Full,
        5,
    );
    check_attention_sublayer::<16>(
        1,
        11,
        4,
        "{scheme: multiscale, bases: [10, 1000]}",
        Bias::None,
        6,
    );
    check_attention_sublayer::<32>(
        2,
        17,
        4,
        "{scheme: rope, fraction: 0.25}",
        Bias::Broadcast,
        7,
    );
}

fn check_feed_forward_sublayer<const D: usize, const F: usize>(
    rows: (usize, usize),
    activation: Activation,
    seed: u64,
) {
    let (dev, mut r) = (Cpu::default(), ChaCha8Rng::seed_from_u64(seed));
    let shape = (rows.0, rows.1, Const::<D>);
    let x = random(&dev, shape, &mut r);
    let norm = Norm::<D>::new(&dev, &mut r);
    let (expand, contract) = (
        Dense::<D, F>::new(&dev, &mut r),
        Dense::<F, D>::new(&dev, &mut r),
    );
    let params = FeedForwardParams {
        norm: norm.params(),
        expand: expand.params(),
        contract: contract.params(),
        activation,
    };
    let probe = random(&dev, shape, &mut r);
    let fused = <Cpu as Kernels>::feed_forward_sublayer(x.clone().leaky_traced(), &params);
    let composed = compose::feed_forward_sublayer(x.clone().leaky_traced(), &params);
    let case = format!("{activation:?} {rows:?} D{D} F{F}");
    assert_close(
        &fused.as_vec(),
        &composed.as_vec(),
        &format!("{case}: output"),
    );
    let (gf, gc) = (backward(fused, &probe), backward(composed, &probe));
    assert_grads_close(&gf, &gc, &x, &format!("{case}: dx"));
    norm.check(&gf, &gc, &format!("{case}: norm"));
    expand.check(&gf, &gc, &format!("{case}: expand"));
    contract.check(&gf, &gc, &format!("{case}: contract"));
}

#[test]
fn feed_forward_sublayer_matches_composition() {
    check_feed_forward_sublayer::<5, 7>((1, 1), Activation::Relu, 1);
    check_feed_forward_sublayer::<5, 7>((3, 4), Activation::Gelu, 2);
    check_feed_forward_sublayer::<16, 64>((2, 9), Activation::Relu, 3);
    check_feed_forward_sublayer::<32, 24>((1, 13), Activation::Gelu, 4);
}

/// Changing the last position's input leaves every earlier output of the
/// fused attention sublayer bit-identical: no query sees a later key.
#[test]
fn fused_attention_is_causal() {
    let (dev, mut r) = (Cpu::default(), ChaCha8Rng::seed_from_u64(9));
    let (b, s) = (2, 6);
    let x = random(&dev, (b, s, Const::<8>), &mut r);
    let norm = Norm::<8>::new(&dev, &mut r);
    let [q, k, v, out] = [(); 4].map(|_| Dense::<8, 8>::new(&dev, &mut r));
    let params = AttentionParams {
        norm: norm.params(),
        q: q.params(),
        k: k.params(),
        v: v.params(),
        out: out.params(),
    };
    let mask = dev.tensor_from_vec(causal_mask(s), (s, s));
    let spec = AttentionSpec {
        heads: 2,
        rotation: None,
        causal_mask: &mask,
        dropout: 0.0,
    };
    let run = |x: Vec<f32>| {
        let x = dev.tensor_from_vec(x, (b, s, Const::<8>));
        <Cpu as Kernels>::attention_sublayer(x, &params, None, &spec).as_vec()
    };
    let before = run(x.as_vec());
    let mut changed = x.as_vec();
    for bi in 0..b {
        for c in 0..8 {
            changed[(bi * s + s - 1) * 8 + c] += 3.0;
        }
    }
    let after = run(changed);
    for bi in 0..b {
        let rows = bi * s * 8..(bi * s + s - 1) * 8;
        assert_eq!(before[rows.clone()], after[rows], "batch {bi}");
        let last = (bi * s + s - 1) * 8..(bi + 1) * s * 8;
        assert_ne!(
            before[last.clone()],
            after[last],
            "the last position changed"
        );
    }
}

#[test]
fn embedding_matches_composition() {
    let (dev, mut r) = (Cpu::default(), ChaCha8Rng::seed_from_u64(12));
    let table = random(&dev, (9, Const::<5>), &mut r);
    // Repeated ids: their gradients must add up.
    let ids = [3, 0, 8, 3, 3, 1, 0];
    let probe = random(&dev, (1, 7, Const::<5>), &mut r);
    let tape = || OwnedTape::<f32, Cpu>::default();
    let fused = <Cpu as Kernels>::embed(&table, &ids, (1, 7), tape());
    let composed = compose::embed(&table, &ids, (1, 7), tape());
    assert_close(&fused.as_vec(), &composed.as_vec(), "embedding");
    let (gf, gc) = (backward(fused, &probe), backward(composed, &probe));
    assert_grads_close(&gf, &gc, &table, "dtable");
}
#[test]
fn target_log_probs_match_composition() {
    for (rows, classes, seed) in [(1, 2, 1), (7, 5, 2), (33, 64, 3)] {
        let (dev, mut r) = (Cpu::default(), ChaCha8Rng::seed_from_u64(seed));
        let logits = random(&dev, (rows, classes), &mut r);
        let targets: Vec<usize> = (0..rows).map(|_| r.gen_range(0..classes)).collect();
        let probe = random(&dev, (rows,), &mut r);
        let fused = <Cpu as Kernels>::target_log_probs(logits.clone().leaky_traced(), &targets);
        let composed = compose::target_log_probs(logits.clone().leaky_traced(), &targets);
        assert_close(&fused.as_vec(), &composed.as_vec(), "log p(target)");
        let (gf, gc) = (backward(fused, &probe), backward(composed, &probe));
        assert_grads_close(&gf, &gc, &logits, "dlogits");
    }
}

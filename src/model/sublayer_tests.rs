//! The fused CPU sublayers against the model's composed references
//! ([`attention::composed`], [`feed_forward::composed`]): forward values and
//! the gradients of every input, on several shapes including odd sizes.

use super::attention::{self, causal_mask, AttentionContext};
use super::feed_forward;
use crate::nn::hooks::{BucketedBias, PositionalLayer, Positions, ScoreBias};
use crate::nn::kernels::testing::{
    assert_close, assert_grads_close, assert_grads_equal, backward, random, Dense, Norm,
};
use crate::nn::kernels::{AttentionParams, AttentionSpec, FeedForwardParams, Kernels};
use crate::nn::rotation::Rotation;
use crate::nn::Activation;
use crate::positional::{self, BuildContext, SchemeContext};
use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

/// A positional layer that hands the attention one given score bias.
struct GivenBias<'a>(&'a dyn Fn() -> Option<ScoreBias<Cpu>>);

impl<const D: usize> PositionalLayer<D, Cpu> for GivenBias<'_> {
    fn score_bias(&self, _layer: usize, _pos: &Positions, _heads: usize) -> Option<ScoreBias<Cpu>> {
        (self.0)()
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
    // `expanded`: a bucketed bias as the (b, h, s, s) tensor it stands for.
    let run = |fused: bool, expanded: bool| {
        let bucketed = || BucketedBias {
            table: table.clone().leaky_traced(),
            buckets: index.clone().into(),
            batch,
            seq,
        };
        let make = || match bias {
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
        let given = GivenBias(&make);
        let ctx = AttentionContext {
            heads,
            causal_mask: mask.clone(),
            rotation: rotation.clone(),
            position: &given,
            positions: &pos,
            dropout: 0.0,
        };
        let x = x.clone().leaky_traced();
        let y = if fused {
            <Cpu as Kernels>::attention_sublayer(x, &params, ctx.score_bias(0), &ctx.spec())
        } else {
            attention::composed(x, &params, 0, &ctx)
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
    let composed = feed_forward::composed(x.clone().leaky_traced(), &params, 0.0);
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
    let spec = AttentionSpec {
        heads: 2,
        rotation: None,
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

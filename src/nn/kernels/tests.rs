//! Every fused CPU kernel against its dfdx composition: forward values and
//! the gradients of every input, on several shapes including odd sizes.

use super::testing::{assert_close, assert_grads_close, backward, random};
use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

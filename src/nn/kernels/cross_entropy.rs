//! log p(target) of each row of logits: the log-softmax picked at the target.

use super::reduce;
use super::simd::{exp, vectorized};

/// logits: (rows, classes) → (log p(target) per row, softmax rows for backward).
pub fn forward(logits: &[f32], targets: &[usize], classes: usize) -> (Vec<f32>, Vec<f32>) {
    vectorized(
        #[inline(always)]
        || {
            let mut probs = vec![0.0; logits.len()];
            let mut picked = Vec::with_capacity(targets.len());
            let rows = logits
                .chunks_exact(classes)
                .zip(probs.chunks_exact_mut(classes));
            for ((row, p), &t) in rows.zip(targets) {
                let max = reduce::max(row);
                for (p, &z) in p.iter_mut().zip(row) {
                    *p = exp(z - max);
                }
                let sum = reduce::sum(p);
                for p in p.iter_mut() {
                    *p /= sum;
                }
                picked.push(row[t] - max - sum.ln());
            }
            (picked, probs)
        },
    )
}

/// dlogits += dout · (onehot(target) − softmax), row by row.
pub fn backward(
    dout: &[f32],
    probs: &[f32],
    targets: &[usize],
    classes: usize,
    dlogits: &mut [f32],
) {
    vectorized(
        #[inline(always)]
        || {
            for (r, (&g, &t)) in dout.iter().zip(targets).enumerate() {
                let (p, d) = (
                    &probs[r * classes..(r + 1) * classes],
                    &mut dlogits[r * classes..(r + 1) * classes],
                );
                for (d, &p) in d.iter_mut().zip(p) {
                    *d -= g * p;
                }
                d[t] += g;
            }
        },
    )
}

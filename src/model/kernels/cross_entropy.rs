//! log p(target) of each row of logits: the log-softmax picked at the target.

use super::reduce;

/// logits: (rows, classes) → (log p(target) per row, softmax rows for backward).
pub fn forward(logits: &[f32], targets: &[usize], classes: usize) -> (Vec<f32>, Vec<f32>) {
    let mut probs = vec![0.0; logits.len()];
    let picked = targets
        .iter()
        .enumerate()
        .map(|(r, &t)| {
            let (row, p) = (
                &logits[r * classes..(r + 1) * classes],
                &mut probs[r * classes..(r + 1) * classes],
            );
            let max = reduce::max(row);
            for (p, &z) in p.iter_mut().zip(row) {
                *p = (z - max).exp();
            }
            let sum = reduce::sum(p);
            for p in p.iter_mut() {
                *p /= sum;
            }
            row[t] - max - sum.ln()
        })
        .collect();
    (picked, probs)
}

/// dlogits += dout · (onehot(target) − softmax), row by row.
pub fn backward(
    dout: &[f32],
    probs: &[f32],
    targets: &[usize],
    classes: usize,
    dlogits: &mut [f32],
) {
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
}

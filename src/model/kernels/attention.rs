//! Causal attention fused per (batch, head): rotate q and k, scores
//! q·kᵀ/√dh + bias, softmax over keys j ≤ i, weighted sum of values; and the
//! backward of all of it. Queries, keys, values and the output are (batch,
//! seq, heads·head_dim) rows, so heads are column blocks read in place.

use super::matmul::{matmul, Mat, MatMut};
use super::reduce;
use crate::positional::RotationTable;

#[derive(Clone, Copy)]
pub struct Geometry {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl Geometry {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Offset of head `h`'s first element in batch element `b` of a (batch, seq, width) array.
    fn head(&self, b: usize, h: usize) -> usize {
        b * self.seq * self.width() + h * self.head_dim
    }
    /// Offset of the (seq, seq) score block of (b, h).
    fn block(&self, b: usize, h: usize) -> usize {
        (b * self.heads + h) * self.seq * self.seq
    }
}

/// What the backward pass needs besides the inputs.
pub struct Saved {
    /// Attention weights (batch, heads, seq, seq); zero above the diagonal.
    pub probs: Vec<f32>,
    /// Rotated queries and keys (batch, seq, width), when there is a rotation.
    pub rotated: Option<(Vec<f32>, Vec<f32>)>,
}

/// x ↦ x ⊙ cos + (x · pairs) ⊙ sin on every head vector of a (batch, seq, width) array.
fn rotate(x: &[f32], table: &RotationTable, g: Geometry) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for_each_head_vector(g, table, |at, cos, sin| {
        let (xv, ov) = (&x[at..at + g.head_dim], &mut out[at..at + g.head_dim]);
        for c in 0..g.head_dim {
            ov[c] = xv[c] * cos[c];
        }
        for &(a, b) in &table.pairs {
            ov[a] += -xv[b] * sin[a];
            ov[b] += xv[a] * sin[b];
        }
    });
    out
}

/// dx += dy ⊙ cos + (dy ⊙ sin) · pairsᵀ: the transpose of [`rotate`].
fn rotate_backward(dy: &[f32], table: &RotationTable, g: Geometry, dx: &mut [f32]) {
    for_each_head_vector(g, table, |at, cos, sin| {
        let (gv, dv) = (&dy[at..at + g.head_dim], &mut dx[at..at + g.head_dim]);
        for c in 0..g.head_dim {
            dv[c] += gv[c] * cos[c];
        }
        for &(a, b) in &table.pairs {
            dv[a] += gv[b] * sin[b];
            dv[b] -= gv[a] * sin[a];
        }
    });
}

/// Calls `f(offset, cos, sin)` for every (batch, seq, head) vector.
fn for_each_head_vector(
    g: Geometry,
    table: &RotationTable,
    mut f: impl FnMut(usize, &[f32], &[f32]),
) {
    let dh = g.head_dim;
    for b in 0..g.batch {
        for t in 0..g.seq {
            for h in 0..g.heads {
                let group = if table.groups == 1 { 0 } else { h };
                let angle = ((b * table.groups + group) * g.seq + t) * dh;
                let at = (b * g.seq + t) * g.width() + h * dh;
                f(
                    at,
                    &table.cos[angle..angle + dh],
                    &table.sin[angle..angle + dh],
                );
            }
        }
    }
}

/// One head's (seq, head_dim) block of a (batch, seq, width) array.
fn head<'a>(x: &'a [f32], g: Geometry, b: usize, h: usize) -> Mat<'a> {
    Mat::strided(&x[g.head(b, h)..], g.seq, g.head_dim, g.width())
}

fn head_mut<'a>(x: &'a mut [f32], g: Geometry, b: usize, h: usize) -> MatMut<'a> {
    MatMut::strided(&mut x[g.head(b, h)..], g.seq, g.head_dim, g.width())
}

/// Returns the output (batch, seq, width) and what backward needs.
pub fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    rotation: Option<&RotationTable>,
    g: Geometry,
) -> (Vec<f32>, Saved) {
    let s = g.seq;
    let scale = 1.0 / (g.head_dim as f32).sqrt();
    let rotated = rotation.map(|table| (rotate(q, table, g), rotate(k, table, g)));
    let (q, k) = match &rotated {
        Some((q, k)) => (q.as_slice(), k.as_slice()),
        None => (q, k),
    };
    let mut out = vec![0.0; q.len()];
    let mut probs = vec![0.0; g.batch * g.heads * s * s];
    for b in 0..g.batch {
        for h in 0..g.heads {
            let block = g.block(b, h);
            let p = &mut probs[block..block + s * s];
            matmul(
                MatMut::new(p, s, s),
                head(q, g, b, h),
                head(k, g, b, h).t(),
                false,
            );
            for i in 0..s {
                let row = &mut p[i * s..(i + 1) * s];
                let (visible, future) = row.split_at_mut(i + 1);
                for (j, z) in visible.iter_mut().enumerate() {
                    *z = *z * scale + bias.map_or(0.0, |bias| bias[block + i * s + j]);
                }
                softmax(visible);
                future.fill(0.0);
            }
            matmul(
                head_mut(&mut out, g, b, h),
                Mat::new(p, s, s),
                head(v, g, b, h),
                false,
            );
        }
    }
    (out, Saved { probs, rotated })
}

fn softmax(row: &mut [f32]) {
    let max = reduce::max(row);
    for z in row.iter_mut() {
        *z = (*z - max).exp();
    }
    let inv = 1.0 / reduce::sum(row);
    for z in row.iter_mut() {
        *z *= inv;
    }
}

/// Gradients of the forward inputs; `dbias` only when the bias is trained.
pub struct Grads<'a> {
    pub dq: &'a mut [f32],
    pub dk: &'a mut [f32],
    pub dv: &'a mut [f32],
    pub dbias: Option<&'a mut [f32]>,
}

/// Accumulates the gradients of q, k, v (and bias) given the output's `dout`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rotation: Option<&RotationTable>,
    saved: &Saved,
    g: Geometry,
    grads: Grads,
) {
    let (q, k) = match &saved.rotated {
        Some((q, k)) => (q.as_slice(), k.as_slice()),
        None => (q, k),
    };
    let Grads { dq, dk, dv, dbias } = grads;
    match rotation {
        // Gradients w.r.t. the rotated q and k first, then through the rotation.
        Some(table) => {
            let (mut dqr, mut dkr) = (vec![0.0; q.len()], vec![0.0; k.len()]);
            heads_backward(
                dout,
                q,
                k,
                v,
                &saved.probs,
                g,
                &mut dqr,
                &mut dkr,
                dv,
                dbias,
            );
            rotate_backward(&dqr, table, g, dq);
            rotate_backward(&dkr, table, g, dk);
        }
        None => heads_backward(dout, q, k, v, &saved.probs, g, dq, dk, dv, dbias),
    }
}

/// The per-(batch, head) backward, given the queries and keys the scores used.
#[allow(clippy::too_many_arguments)]
fn heads_backward(
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    g: Geometry,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    mut dbias: Option<&mut [f32]>,
) {
    let s = g.seq;
    let scale = 1.0 / (g.head_dim as f32).sqrt();
    let mut dp = vec![0.0; s * s];
    for b in 0..g.batch {
        for h in 0..g.heads {
            let block = g.block(b, h);
            let p = &probs[block..block + s * s];
            let dy = head(dout, g, b, h);
            matmul(MatMut::new(&mut dp, s, s), dy, head(v, g, b, h).t(), false);
            matmul(head_mut(dv, g, b, h), Mat::new(p, s, s).t(), dy, true);
            // Softmax backward, row by row: ds = p ⊙ (dp − Σ_j p dp).
            for i in 0..s {
                let (pr, dr) = (&p[i * s..i * s + i + 1], &mut dp[i * s..(i + 1) * s]);
                let dot = reduce::dot(pr, &dr[..=i]);
                for (d, &pij) in dr.iter_mut().zip(pr) {
                    *d = pij * (*d - dot);
                }
                dr[i + 1..].fill(0.0);
            }
            if let Some(dbias) = dbias.as_deref_mut() {
                for (d, &ds) in dbias[block..block + s * s].iter_mut().zip(&dp) {
                    *d += ds;
                }
            }
            for d in dp.iter_mut() {
                *d *= scale;
            }
            matmul(
                head_mut(dq, g, b, h),
                Mat::new(&dp, s, s),
                head(k, g, b, h),
                true,
            );
            matmul(
                head_mut(dk, g, b, h),
                Mat::new(&dp, s, s).t(),
                head(q, g, b, h),
                true,
            );
        }
    }
}

//! Causal attention fused per (batch, head): rotate q and k, scores
//! q·kᵀ/√dh + bias, softmax over keys j ≤ i, weighted sum of values; and the
//! backward of all of it. Queries, keys, values and the output are (batch,
//! seq, heads·head_dim) rows, so heads are column blocks read in place.

use super::matmul::{matmul, Mat, MatMut, Unwritten};
use super::reduce;
use super::simd::{exp, vectorized};
use crate::nn::rotation::RotationTable;
use std::ops::Range;

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
    vectorized(
        #[inline(always)]
        || {
            for_each_head_vector(g, table, |at, cos, sin| {
                let (xv, ov) = (&x[at..at + g.head_dim], &mut out[at..at + g.head_dim]);
                for c in 0..g.head_dim {
                    ov[c] = xv[c] * cos[c];
                }
                for &(a, b) in &table.pairs {
                    ov[a] += -xv[b] * sin[a];
                    ov[b] += xv[a] * sin[b];
                }
            })
        },
    );
    out
}

/// dy ⊙ cos + (dy ⊙ sin) · pairsᵀ: the transpose of [`rotate`].
fn rotate_backward(dy: &[f32], table: &RotationTable, g: Geometry) -> Vec<f32> {
    let mut dx = vec![0.0; dy.len()];
    vectorized(
        #[inline(always)]
        || {
            for_each_head_vector(g, table, |at, cos, sin| {
                let (gv, dv) = (&dy[at..at + g.head_dim], &mut dx[at..at + g.head_dim]);
                for c in 0..g.head_dim {
                    dv[c] = gv[c] * cos[c];
                }
                for &(a, b) in &table.pairs {
                    dv[a] += gv[b] * sin[b];
                    dv[b] -= gv[a] * sin[a];
                }
            })
        },
    );
    dx
}

/// Calls `f(offset, cos, sin)` for every (batch, seq, head) vector.
#[inline(always)]
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

/// Rows `rows` of head `h`'s (seq, head_dim) block of a (batch, seq, width) array.
fn head(x: &[f32], g: Geometry, b: usize, h: usize, rows: Range<usize>) -> Mat<'_> {
    let at = g.head(b, h) + rows.start * g.width();
    Mat::strided(&x[at..], rows.len(), g.head_dim, g.width())
}

/// Rows `rows` of head `h`'s column block of an output array, as [`head`]
/// reads inputs. Each (b, h, query block) writes its own such block, and
/// together they tile the array.
fn head_out(x: &mut Unwritten, g: Geometry, b: usize, h: usize, rows: Range<usize>) -> MatMut<'_> {
    let at = g.head(b, h) + rows.start * g.width();
    x.view(at, rows.len(), g.head_dim, g.width())
}

/// A (batch, seq, width) array written head block by head block through [`head_out`].
fn head_array(g: Geometry) -> Unwritten {
    Unwritten::new(g.batch * g.seq * g.width())
}

/// Head `h`'s (seq, head_dim) block of batch element `b`, transposed into
/// `out` (head_dim, seq): gemm runs q·kᵀ 2–3× faster on these small shapes
/// with a row-major right operand than with a transposed view.
fn transpose_head(x: &[f32], g: Geometry, b: usize, h: usize, out: &mut [f32]) {
    let at = g.head(b, h);
    for t in 0..g.seq {
        let row = &x[at + t * g.width()..at + t * g.width() + g.head_dim];
        for (c, &v) in row.iter().enumerate() {
            out[c * g.seq + t] = v;
        }
    }
}

/// Columns `keys` of a row-major (head_dim, seq) transposed head block.
fn keys_of(t: &[f32], g: Geometry, keys: Range<usize>) -> Mat<'_> {
    Mat::strided(&t[keys.start..], g.head_dim, keys.len(), g.seq)
}

/// Rows `rows`, columns `cols` of a row-major (seq, seq) block.
fn square(p: &[f32], seq: usize, rows: Range<usize>, cols: Range<usize>) -> Mat<'_> {
    Mat::strided(
        &p[rows.start * seq + cols.start..],
        rows.len(),
        cols.len(),
        seq,
    )
}

fn square_mut(p: &mut [f32], seq: usize, rows: Range<usize>, cols: Range<usize>) -> MatMut<'_> {
    MatMut::strided(
        &mut p[rows.start * seq + cols.start..],
        rows.len(),
        cols.len(),
        seq,
    )
}

/// Causal attention touches only keys j ≤ i: queries go in blocks of
/// `BLOCK` rows, each against the keys up to its last row, which skips
/// 40–45% of the score and weighted-sum work at 64–128 positions.
const BLOCK: usize = 16;

/// The query blocks of a sequence: (rows, visible keys 0..rows.end).
pub fn query_blocks(seq: usize) -> impl Iterator<Item = Range<usize>> {
    (0..seq)
        .step_by(BLOCK)
        .map(move |i| i..(i + BLOCK).min(seq))
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
    vectorized(
        #[inline(always)]
        || {
            let s = g.seq;
            let scale = 1.0 / (g.head_dim as f32).sqrt();
            let rotated = rotation.map(|table| (rotate(q, table, g), rotate(k, table, g)));
            let (q, k) = match &rotated {
                Some((q, k)) => (q.as_slice(), k.as_slice()),
                None => (q, k),
            };
            let mut out = head_array(g);
            // Zero where j > i; blocks never write past their last visible key.
            let mut probs = vec![0.0; g.batch * g.heads * s * s];
            let mut kt = vec![0.0; g.head_dim * s];
            for b in 0..g.batch {
                for h in 0..g.heads {
                    let block = g.block(b, h);
                    let p = &mut probs[block..block + s * s];
                    transpose_head(k, g, b, h, &mut kt);
                    for rows in query_blocks(s) {
                        let keys = 0..rows.end;
                        matmul(
                            square_mut(p, s, rows.clone(), keys.clone()),
                            head(q, g, b, h, rows.clone()),
                            keys_of(&kt, g, keys.clone()),
                            false,
                        );
                        for i in rows.clone() {
                            let row = &mut p[i * s..i * s + rows.end];
                            let (visible, future) = row.split_at_mut(i + 1);
                            match bias {
                                Some(bias) => {
                                    for (z, &b) in visible.iter_mut().zip(&bias[block + i * s..]) {
                                        *z = *z * scale + b;
                                    }
                                }
                                None => visible.iter_mut().for_each(|z| *z *= scale),
                            }
                            // The whole block row keeps the loops at full vector
                            // width; e^−∞ makes the future keys' weights exactly 0.
                            future.fill(f32::NEG_INFINITY);
                            softmax(row);
                        }
                        matmul(
                            head_out(&mut out, g, b, h, rows.clone()),
                            square(p, s, rows.clone(), keys.clone()),
                            head(v, g, b, h, keys),
                            false,
                        );
                    }
                }
            }
            // SAFETY: the query blocks of every (b, h) tile the array (`head_out`).
            let out = unsafe { out.assume_written() };
            (out, Saved { probs, rotated })
        },
    )
}

#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = reduce::max(row);
    for z in row.iter_mut() {
        *z = exp(*z - max);
    }
    let inv = 1.0 / reduce::sum(row);
    for z in row.iter_mut() {
        *z *= inv;
    }
}

/// Gradients of the queries, keys and values (batch, seq, width).
pub struct Grads {
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
}

/// The gradients of q, k and v given the output's `dout`; the bias's
/// gradient is added to `dbias` when the bias is trained.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rotation: Option<&RotationTable>,
    saved: &Saved,
    g: Geometry,
    dbias: Option<&mut [f32]>,
) -> Grads {
    let (q, k) = match &saved.rotated {
        Some((q, k)) => (q.as_slice(), k.as_slice()),
        None => (q, k),
    };
    let grads = heads_backward(dout, q, k, v, &saved.probs, g, dbias);
    match rotation {
        // Those were the gradients of the rotated q and k: rotate them back.
        Some(table) => Grads {
            dq: rotate_backward(&grads.dq, table, g),
            dk: rotate_backward(&grads.dk, table, g),
            dv: grads.dv,
        },
        None => grads,
    }
}

/// The per-(batch, head) backward, given the queries and keys the scores used.
fn heads_backward(
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    g: Geometry,
    mut dbias: Option<&mut [f32]>,
) -> Grads {
    vectorized(
        #[inline(always)]
        || {
            let s = g.seq;
            let scale = 1.0 / (g.head_dim as f32).sqrt();
            let (mut dq, mut dk, mut dv) = (head_array(g), head_array(g), head_array(g));
            // Entries past a block's last visible key are never written: they stay 0.
            let mut ds = vec![0.0; s * s];
            let mut vt = vec![0.0; g.head_dim * s];
            for b in 0..g.batch {
                for h in 0..g.heads {
                    let block = g.block(b, h);
                    let p = &probs[block..block + s * s];
                    transpose_head(v, g, b, h, &mut vt);
                    for rows in query_blocks(s) {
                        let keys = 0..rows.end;
                        // dp = dy·vᵀ, then the softmax backward row by row: ds = p ⊙ (dp − Σ_j p dp).
                        matmul(
                            square_mut(&mut ds, s, rows.clone(), keys.clone()),
                            head(dout, g, b, h, rows.clone()),
                            keys_of(&vt, g, keys.clone()),
                            false,
                        );
                        for i in rows.clone() {
                            // Whole block rows, as in the forward pass: p is 0 past i, so ds is too.
                            let span = i * s..i * s + rows.end;
                            let (pr, dr) = (&p[span.clone()], &mut ds[span]);
                            let dot = reduce::dot(pr, dr);
                            for (d, &pij) in dr.iter_mut().zip(pr) {
                                *d = pij * (*d - dot);
                            }
                        }
                    }
                    if let Some(dbias) = dbias.as_deref_mut() {
                        for (d, &g) in dbias[block..block + s * s].iter_mut().zip(&ds) {
                            *d += g;
                        }
                    }
                    for d in ds.iter_mut() {
                        *d *= scale;
                    }
                    for rows in query_blocks(s) {
                        // dq = ds·k over the visible keys.
                        let keys = 0..rows.end;
                        matmul(
                            head_out(&mut dq, g, b, h, rows.clone()),
                            square(&ds, s, rows.clone(), keys.clone()),
                            head(k, g, b, h, keys),
                            false,
                        );
                        // For these rows as keys, the queries that see them are rows.start..s:
                        // dv = pᵀ·dy and dk = dsᵀ·q.
                        let queries = rows.start..s;
                        matmul(
                            head_out(&mut dv, g, b, h, rows.clone()),
                            square(p, s, queries.clone(), rows.clone()).t(),
                            head(dout, g, b, h, queries.clone()),
                            false,
                        );
                        matmul(
                            head_out(&mut dk, g, b, h, rows.clone()),
                            square(&ds, s, queries.clone(), rows.clone()).t(),
                            head(q, g, b, h, queries),
                            false,
                        );
                    }
                }
            }
            // SAFETY: the query blocks of every (b, h) tile each array (`head_out`).
            unsafe {
                Grads {
                    dq: dq.assume_written(),
                    dk: dk.assume_written(),
                    dv: dv.assume_written(),
                }
            }
        },
    )
}

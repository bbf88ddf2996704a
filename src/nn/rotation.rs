//! Rotations of queries and keys, as dfdx tensors (for the composed attention)
//! and as host arrays (for the fused CPU attention).

use super::hooks::{Heads, Positions};
use dfdx::prelude::*;
use std::sync::Arc;

/// Two dims rotated together by angle p·theta.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotatedPair {
    pub a: usize,
    pub b: usize,
    pub theta: f64,
}

/// Fixed tensors that rotate (batch, heads, seq, head_dim) queries and keys:
/// x ↦ x ⊙ cos + (x · pairs) ⊙ sin.
#[derive(Clone)]
pub struct Rotation<Dev: Device<f32>> {
    /// (batch, heads, seq, head_dim); heads may be a broadcast axis.
    pub cos: Heads<Dev, NoneTape>,
    /// (batch, heads, seq, head_dim)
    pub sin: Heads<Dev, NoneTape>,
    /// (head_dim, head_dim) signed permutation: (x · pairs)[a] = −x[b], [b] = x[a] for each pair (a, b).
    pub pairs: Tensor<(usize, usize), f32, Dev>,
    /// The same rotation as host arrays, for the fused CPU attention.
    pub table: Arc<RotationTable>,
}

/// A rotation as plain arrays: cos and sin are (batch, groups, seq, head_dim)
/// with one group shared by all heads or one per head; `pairs` lists (a, b).
pub struct RotationTable {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub groups: usize,
    pub pairs: Vec<(usize, usize)>,
}

impl<Dev: Device<f32>> Rotation<Dev> {
    /// Builds the rotation of `pairs_per_head[h]` for each head (one entry: shared by all heads).
    /// Every head must rotate the same (a, b) pairs; only the angles may differ.
    pub fn new(
        dev: &Dev,
        pos: &Positions,
        heads: usize,
        head_dim: usize,
        pairs_per_head: &[Vec<RotatedPair>],
    ) -> Self {
        let mut matrix = vec![0.0; head_dim * head_dim];
        for p in &pairs_per_head[0] {
            matrix[p.b * head_dim + p.a] = -1.0;
            matrix[p.a * head_dim + p.b] = 1.0;
        }
        let (b, s) = (pos.batch, pos.seq);
        let groups = pairs_per_head.len();
        let n = b * groups * s * head_dim;
        let (mut cos, mut sin) = (vec![1.0f32; n], vec![0.0f32; n]);
        for bi in 0..b {
            for (g, pairs) in pairs_per_head.iter().enumerate() {
                for (t, &p) in pos.row(bi).iter().enumerate() {
                    let base = ((bi * groups + g) * s + t) * head_dim;
                    for pair in pairs {
                        let angle = p as f64 * pair.theta;
                        let (c, sn) = (angle.cos() as f32, angle.sin() as f32);
                        cos[base + pair.a] = c;
                        cos[base + pair.b] = c;
                        sin[base + pair.a] = sn;
                        sin[base + pair.b] = sn;
                    }
                }
            }
        }
        let shape = (b, heads, s, head_dim);
        let table = Arc::new(RotationTable {
            cos: cos.clone(),
            sin: sin.clone(),
            groups,
            pairs: pairs_per_head[0].iter().map(|p| (p.a, p.b)).collect(),
        });
        let (cos, sin) = if groups == 1 {
            let c = dev.tensor_from_vec(cos, (b, s, head_dim));
            let sn = dev.tensor_from_vec(sin, (b, s, head_dim));
            (
                c.broadcast_like::<_, Axis<1>>(&shape),
                sn.broadcast_like::<_, Axis<1>>(&shape),
            )
        } else {
            assert_eq!(groups, heads, "one pair list per head");
            (
                dev.tensor_from_vec(cos, shape),
                dev.tensor_from_vec(sin, shape),
            )
        };
        Rotation {
            cos,
            sin,
            pairs: dev.tensor_from_vec(matrix, (head_dim, head_dim)),
            table,
        }
    }

    /// q or k: (batch, heads, seq, head_dim).
    pub fn apply<T: Tape<f32, Dev>>(&self, x: Heads<Dev, T>) -> Heads<Dev, T> {
        let shape = *x.shape();
        let (b, h, s, dh) = shape;
        // A product with a signed permutation, not slices: dfdx's CPU slice backward is wrong.
        let partner = x
            .retaped::<T>()
            .reshape_like(&(b * h * s, dh))
            .matmul(self.pairs.clone())
            .reshape_like(&shape);
        x * self.cos.clone() + partner * self.sin.clone()
    }
}

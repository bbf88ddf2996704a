//! `rope`: rotary position embedding (Su et al. 2021). Queries and keys are
//! rotated pairwise by p·θ_i with θ_i = base^(−2i/r) over the first
//! r = fraction·head_dim dims; the rest pass through unchanged (GPT-NeoX
//! `rotary_pct`). Pairing `interleaved` rotates (2i, 2i+1) (RoFormer, GPT-J);
//! `halves` rotates (i, i + r/2) (GPT-NeoX `rotate_half`).

use super::{BuildContext, PositionalLayer, Positions, SchemeContext, SchemeDef};
use crate::options::FieldError;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Rope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    Interleaved,
    Halves,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RopeOptions {
    pub base: f64,
    pub fraction: f64,
    pub pairing: Pairing,
}

impl Default for RopeOptions {
    fn default() -> Self {
        RopeOptions {
            base: 10000.0,
            fraction: 1.0,
            pairing: Pairing::Interleaved,
        }
    }
}

impl SchemeDef for Rope {
    const NAME: &'static str = "rope";
    const SUMMARY: &'static str =
        "rotary: rotate q/k pairs by p*theta_i over the first fraction*head_dim dims";
    const CITATION: &'static str =
        "Su et al. 2021, RoFormer; partial rotary as GPT-NeoX (Black et al. 2022)";
    type Options = RopeOptions;
    fn check(options: &RopeOptions, ctx: &SchemeContext) -> Result<(), FieldError> {
        if !(options.base.is_finite() && options.base > 1.0) {
            return Err(FieldError::new(
                &["base"],
                format!(
                    "base {} is invalid; valid: a finite number > 1",
                    options.base
                ),
            ));
        }
        let head_dim = ctx.d_model / ctx.heads;
        if !(options.fraction > 0.0 && options.fraction <= 1.0)
            || rotary_dims(options.fraction, head_dim) < 2
        {
            return Err(FieldError::new(
                &["fraction"],
                format!(
                    "fraction {} rotates fewer than 2 of the {head_dim} head dims; valid: 2/{head_dim} <= fraction <= 1",
                    options.fraction
                ),
            ));
        }
        Ok(())
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: RopeOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        Box::new(RopeLayer {
            options,
            dev: ctx.dev,
        })
    }
}

/// r: the rotated dims, rounded down to an even count.
pub fn rotary_dims(fraction: f64, head_dim: usize) -> usize {
    ((fraction * head_dim as f64).floor() as usize) & !1
}

/// Fixed tensors that rotate (batch, heads, seq, head_dim) queries and keys:
/// x ↦ x ⊙ cos + (x · pairs) ⊙ sin.
pub struct Rotation<Dev: Device<f32>> {
    /// (batch, seq, head_dim)
    pub cos: Tensor<(usize, usize, usize), f32, Dev>,
    /// (batch, seq, head_dim)
    pub sin: Tensor<(usize, usize, usize), f32, Dev>,
    /// (head_dim, head_dim) signed permutation: (x · pairs)[a] = −x[b], [b] = x[a] for each pair (a, b).
    pub pairs: Tensor<(usize, usize), f32, Dev>,
}

impl<Dev: Device<f32>> Rotation<Dev> {
    /// q or k: (batch, heads, seq, head_dim).
    pub fn apply<T: Tape<f32, Dev>>(
        &self,
        x: Tensor<(usize, usize, usize, usize), f32, Dev, T>,
    ) -> Tensor<(usize, usize, usize, usize), f32, Dev, T> {
        let shape = *x.shape();
        let (b, h, s, dh) = shape;
        // A product with a signed permutation, not slices: dfdx's CPU slice backward is wrong.
        let partner = x
            .retaped::<T>()
            .reshape_like(&(b * h * s, dh))
            .matmul(self.pairs.clone())
            .reshape_like(&shape);
        x * self.cos.clone().broadcast_like::<_, Axis<1>>(&shape)
            + partner * self.sin.clone().broadcast_like::<_, Axis<1>>(&shape)
    }
}

/// The (a, b) index pairs rotated together and the frequency index of each.
pub fn pairs(pairing: Pairing, r: usize) -> Vec<(usize, usize)> {
    match pairing {
        Pairing::Interleaved => (0..r / 2).map(|i| (2 * i, 2 * i + 1)).collect(),
        Pairing::Halves => (0..r / 2).map(|i| (i, i + r / 2)).collect(),
    }
}

/// Host-side rotation tables: (cos, sin) of shape (batch, seq, head_dim) and
/// the (head_dim, head_dim) pair matrix.
pub fn tables(
    options: &RopeOptions,
    pos: &Positions,
    head_dim: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let r = rotary_dims(options.fraction, head_dim);
    let pairs = pairs(options.pairing, r);
    let mut matrix = vec![0.0; head_dim * head_dim];
    for &(a, b) in &pairs {
        matrix[b * head_dim + a] = -1.0;
        matrix[a * head_dim + b] = 1.0;
    }
    let mut cos = Vec::with_capacity(pos.values.len() * head_dim);
    let mut sin = Vec::with_capacity(pos.values.len() * head_dim);
    let mut angle_of_dim = vec![None; head_dim];
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let theta = options.base.powf(-2.0 * i as f64 / r as f64);
        angle_of_dim[a] = Some(theta);
        angle_of_dim[b] = Some(theta);
    }
    for &p in &pos.values {
        for theta in &angle_of_dim {
            match theta {
                Some(theta) => {
                    let angle = p as f64 * theta;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
                None => {
                    cos.push(1.0);
                    sin.push(0.0);
                }
            }
        }
    }
    (cos, sin, matrix)
}

struct RopeLayer<Dev> {
    options: RopeOptions,
    dev: Dev,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for RopeLayer<Dev> {
    fn rotation(&self, pos: &Positions, _heads: usize, head_dim: usize) -> Option<Rotation<Dev>> {
        let (cos, sin, pairs) = tables(&self.options, pos, head_dim);
        let shape = (pos.batch, pos.seq, head_dim);
        Some(Rotation {
            cos: self.dev.tensor_from_vec(cos, shape),
            sin: self.dev.tensor_from_vec(sin, shape),
            pairs: self.dev.tensor_from_vec(pairs, (head_dim, head_dim)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotate(options: &RopeOptions, p: usize, x: &[f32]) -> Vec<f32> {
        let dev: Cpu = Default::default();
        let pos = Positions {
            batch: 1,
            seq: 1,
            values: vec![p],
        };
        let dh = x.len();
        let layer = RopeLayer {
            options: options.clone(),
            dev: dev.clone(),
        };
        let rot = PositionalLayer::<8, Cpu>::rotation(&layer, &pos, 1, dh).unwrap();
        rot.apply(dev.tensor_from_vec(x.to_vec(), (1, 1, 1, dh)))
            .as_vec()
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    const Q: [f32; 8] = [0.3, -1.2, 0.7, 0.1, -0.4, 0.9, 1.5, -0.6];
    const K: [f32; 8] = [1.1, 0.2, -0.5, 0.8, 0.6, -1.0, 0.3, 0.4];

    #[test]
    fn scores_depend_only_on_offset() {
        for pairing in [Pairing::Interleaved, Pairing::Halves] {
            let o = RopeOptions {
                pairing,
                base: 100.0,
                ..Default::default()
            };
            for offset in [0usize, 1, 3, 7] {
                let reference = dot(&rotate(&o, offset, &Q), &rotate(&o, 0, &K));
                for start in [1usize, 5, 20] {
                    let s = dot(&rotate(&o, start + offset, &Q), &rotate(&o, start, &K));
                    assert!(
                        (s - reference).abs() < 1e-4,
                        "{pairing:?} offset {offset} start {start}: {s} vs {reference}"
                    );
                }
            }
        }
    }

    #[test]
    fn partial_rotary_leaves_other_dims_bit_identical() {
        let o = RopeOptions {
            fraction: 0.5,
            ..Default::default()
        };
        let out = rotate(&o, 7, &Q);
        assert_eq!(&out[4..], &Q[4..]);
        assert_ne!(&out[..4], &Q[..4]);
    }

    #[test]
    fn pairings_agree_after_permutation() {
        // Interleaved on x equals halves on x permuted so that pair (2i, 2i+1) lands at (i, i + r/2).
        let inter = RopeOptions {
            pairing: Pairing::Interleaved,
            ..Default::default()
        };
        let halves = RopeOptions {
            pairing: Pairing::Halves,
            ..Default::default()
        };
        let perm = [0, 2, 4, 6, 1, 3, 5, 7];
        let permuted: Vec<f32> = perm.iter().map(|&i| Q[i]).collect();
        let a = rotate(&inter, 5, &Q);
        let b = rotate(&halves, 5, &permuted);
        for (k, &i) in perm.iter().enumerate() {
            assert!((b[k] - a[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn rotation_gradient_is_exact_despite_reuse() {
        // x feeds both the cos and the partner path; a slice-based rotate-half would
        // assign instead of accumulate here (dfdx CPU slice backward).
        let dev: Cpu = Default::default();
        let o = RopeOptions::default();
        let pos = Positions::contiguous(1, 2);
        let layer = RopeLayer {
            options: o,
            dev: dev.clone(),
        };
        let rot = PositionalLayer::<8, Cpu>::rotation(&layer, &pos, 1, 4).unwrap();
        let x = dev.tensor_from_vec(
            vec![0.5, -1.0, 2.0, 0.25, 1.0, 0.3, -0.7, 0.9],
            (1, 1, 2, 4),
        );
        let w = dev.tensor_from_vec(vec![1.0, 2.0, -1.0, 0.5, -2.0, 1.5, 0.3, 1.0], (1, 1, 2, 4));
        let grads = (rot.apply(x.leaky_trace()) * w.clone()).sum().backward();
        let g = grads.get(&x).as_vec();
        // d/dx of Σ w ⊙ R x is Rᵀ w: rotate w by the negative angle.
        let (cos, sin, _) = tables(&RopeOptions::default(), &pos, 4);
        let wv = w.as_vec();
        for t in 0..2 {
            for (a, b) in [(0, 1), (2, 3)] {
                let (ia, ib) = (t * 4 + a, t * 4 + b);
                let ga = wv[ia] * cos[ia] + wv[ib] * sin[ib];
                let gb = wv[ib] * cos[ib] - wv[ia] * sin[ia];
                assert!((g[ia] - ga).abs() < 1e-6 && (g[ib] - gb).abs() < 1e-6);
            }
        }
    }
}

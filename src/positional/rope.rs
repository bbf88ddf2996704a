//! `rope`: rotary position embedding (Su et al. 2021). Queries and keys are
//! rotated pairwise by p·θ_i with θ_i = base^(−2i/r) over the first
//! r = fraction·head_dim dims; the rest pass through unchanged (GPT-NeoX
//! `rotary_pct`). Pairing `interleaved` rotates (2i, 2i+1) (RoFormer, GPT-J);
//! `halves` rotates (i, i + r/2) (GPT-NeoX `rotate_half`).
//! Also the shared machinery of every rotary scheme (multiscale, dynamic_dim).

use super::sinusoidal::check_base;
use super::{BuildContext, Memo, SchemeContext, SchemeDef};
use crate::nn::hooks::{PositionalLayer, Positions};
use crate::nn::rotation::{RotatedPair, Rotation};
use crate::options::registry::Registered;
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

impl Registered for Rope {
    const NAME: &'static str = "rope";
    const SUMMARY: &'static str = "rotary: rotate q/k pairs by p*theta_i, theta_i = base^(-2i/r), over the first r = fraction*head_dim dims";
    const CITATION: &'static str =
        "Su et al. 2021, RoFormer; partial rotary as GPT-NeoX (Black et al. 2022)";
    type Options = RopeOptions;
}

impl SchemeDef for Rope {
    const EXAMPLES: &'static [&'static str] = &["{fraction: 0.5}"];
    fn check(options: &RopeOptions, ctx: &SchemeContext) -> Result<(), FieldError> {
        check_base(options.base)?;
        let head_dim = ctx.d_model / ctx.heads;
        if !(options.fraction > 0.0 && options.fraction <= 1.0)
            || rotary_dims(options.fraction, head_dim) < 2
        {
            return Err(FieldError::new(
                &["fraction"],
                format!(
                    "fraction {} {}; valid: 2/{head_dim} <= fraction <= 1",
                    options.fraction,
                    if options.fraction > 1.0 {
                        format!("asks for more than the {head_dim} head dims")
                    } else {
                        format!("rotates fewer than 2 of the {head_dim} head dims")
                    }
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
            memo: Memo::default(),
        })
    }
}

/// r: the rotated dims, rounded down to an even count.
pub fn rotary_dims(fraction: f64, head_dim: usize) -> usize {
    ((fraction * head_dim as f64).floor() as usize) & !1
}

/// The pairs of the first `r` dims with θ_i = base^(−2i/r).
pub fn rotary_pairs(pairing: Pairing, r: usize, base: f64) -> Vec<RotatedPair> {
    (0..r / 2)
        .map(|i| {
            let (a, b) = match pairing {
                Pairing::Interleaved => (2 * i, 2 * i + 1),
                Pairing::Halves => (i, i + r / 2),
            };
            RotatedPair {
                a,
                b,
                theta: base.powf(-2.0 * i as f64 / r as f64),
            }
        })
        .collect()
}

struct RopeLayer<Dev: Device<f32>> {
    options: RopeOptions,
    dev: Dev,
    /// The rotation of the last (positions, heads, head_dim) seen.
    memo: Memo<(Positions, usize, usize), Rotation<Dev>>,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for RopeLayer<Dev> {
    fn rotation(&self, pos: &Positions, heads: usize, head_dim: usize) -> Option<Rotation<Dev>> {
        let key = (pos.clone(), heads, head_dim);
        Some(
            self.memo
                .get_or(&key, || self.build_rotation(pos, heads, head_dim)),
        )
    }
}

impl<Dev: Device<f32>> RopeLayer<Dev> {
    fn build_rotation(&self, pos: &Positions, heads: usize, head_dim: usize) -> Rotation<Dev> {
        let o = &self.options;
        let pairs = rotary_pairs(o.pairing, rotary_dims(o.fraction, head_dim), o.base);
        Rotation::new(&self.dev, pos, heads, head_dim, &[pairs])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Rotates one head vector `x` placed at position `p`.
    pub(crate) fn rotate(
        layer: &dyn PositionalLayer<8, Cpu>,
        heads: usize,
        head: usize,
        p: usize,
        x: &[f32],
    ) -> Vec<f32> {
        let dev: Cpu = Default::default();
        let pos = Positions {
            batch: 1,
            seq: 1,
            values: vec![p],
        };
        let dh = x.len();
        let rot = layer.rotation(&pos, heads, dh).unwrap();
        let mut data = vec![0.0; heads * dh];
        data[head * dh..(head + 1) * dh].copy_from_slice(x);
        let out = rot
            .apply(dev.tensor_from_vec(data, (1, heads, 1, dh)))
            .as_vec();
        out[head * dh..(head + 1) * dh].to_vec()
    }

    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    pub(crate) const Q: [f32; 8] = [0.3, -1.2, 0.7, 0.1, -0.4, 0.9, 1.5, -0.6];
    pub(crate) const K: [f32; 8] = [1.1, 0.2, -0.5, 0.8, 0.6, -1.0, 0.3, 0.4];

    fn layer(options: RopeOptions) -> RopeLayer<Cpu> {
        RopeLayer {
            options,
            dev: Default::default(),
            memo: Memo::default(),
        }
    }

    /// q_i · k_j after rotation depends only on i − j.
    pub(crate) fn assert_relative(layer: &dyn PositionalLayer<8, Cpu>, heads: usize, head: usize) {
        for offset in [0usize, 1, 3, 7] {
            let reference = dot(
                &rotate(layer, heads, head, offset, &Q),
                &rotate(layer, heads, head, 0, &K),
            );
            for start in [1usize, 5, 20] {
                let s = dot(
                    &rotate(layer, heads, head, start + offset, &Q),
                    &rotate(layer, heads, head, start, &K),
                );
                assert!(
                    (s - reference).abs() < 1e-4,
                    "head {head} offset {offset} start {start}: {s} vs {reference}"
                );
            }
        }
    }

    #[test]
    fn scores_depend_only_on_offset() {
        for pairing in [Pairing::Interleaved, Pairing::Halves] {
            assert_relative(
                &layer(RopeOptions {
                    pairing,
                    base: 100.0,
                    ..Default::default()
                }),
                1,
                0,
            );
        }
    }

    #[test]
    fn partial_rotary_leaves_other_dims_bit_identical() {
        let out = rotate(
            &layer(RopeOptions {
                fraction: 0.5,
                ..Default::default()
            }),
            1,
            0,
            7,
            &Q,
        );
        assert_eq!(&out[4..], &Q[4..]);
        assert_ne!(&out[..4], &Q[..4]);
    }

    #[test]
    fn partial_rotary_uses_r_in_the_exponent() {
        let pairs = rotary_pairs(Pairing::Interleaved, 4, 10000.0);
        assert_eq!(pairs[1].theta, 10000f64.powf(-0.5));
    }

    #[test]
    fn pairings_agree_after_permutation() {
        // Interleaved on x equals halves on x permuted so that pair (2i, 2i+1) lands at (i, i + r/2).
        let inter = layer(RopeOptions {
            pairing: Pairing::Interleaved,
            ..Default::default()
        });
        let halves = layer(RopeOptions {
            pairing: Pairing::Halves,
            ..Default::default()
        });
        let perm = [0, 2, 4, 6, 1, 3, 5, 7];
        let permuted: Vec<f32> = perm.iter().map(|&i| Q[i]).collect();
        let a = rotate(&inter, 1, 0, 5, &Q);
        let b = rotate(&halves, 1, 0, 5, &permuted);
        for (k, &i) in perm.iter().enumerate() {
            assert!((b[k] - a[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn rotation_gradient_is_exact_despite_reuse() {
        // x feeds both the cos and the partner path; a slice-based rotate-half would
        // assign instead of accumulate here (dfdx CPU slice backward).
        let dev: Cpu = Default::default();
        let pos = Positions::contiguous(1, 2);
        let pairs = rotary_pairs(Pairing::Interleaved, 4, 10000.0);
        let rot = Rotation::new(&dev, &pos, 1, 4, std::slice::from_ref(&pairs));
        let x = dev.tensor_from_vec(
            vec![0.5, -1.0, 2.0, 0.25, 1.0, 0.3, -0.7, 0.9],
            (1, 1, 2, 4),
        );
        let w = dev.tensor_from_vec(vec![1.0, 2.0, -1.0, 0.5, -2.0, 1.5, 0.3, 1.0], (1, 1, 2, 4));
        let grads = (rot.apply(x.leaky_trace()) * w.clone()).sum().backward();
        let g = grads.get(&x).as_vec();
        // d/dx of Σ w ⊙ R x is Rᵀ w: rotate w by the negative angle.
        let wv = w.as_vec();
        for t in 0..2 {
            for p in &pairs {
                let (c, s) = (
                    (t as f64 * p.theta).cos() as f32,
                    (t as f64 * p.theta).sin() as f32,
                );
                let (ia, ib) = (t * 4 + p.a, t * 4 + p.b);
                let ga = wv[ia] * c + wv[ib] * s;
                let gb = wv[ib] * c - wv[ia] * s;
                assert!((g[ia] - ga).abs() < 1e-6 && (g[ib] - gb).abs() < 1e-6);
            }
        }
    }
}

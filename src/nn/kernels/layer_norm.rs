//! LayerNorm over rows of width w: y = (x − mean) / √(var + eps) · gain + bias,
//! with the biased variance, as dfdx's `normalize`.

use super::reduce;
use super::simd::vectorized;

pub const EPS: f32 = 1e-5;

/// What the backward pass needs: the normalised rows and 1/√(var + eps) per row.
pub struct Saved {
    pub normalized: Vec<f32>,
    pub inv_std: Vec<f32>,
}

pub fn forward(x: &[f32], gain: &[f32], bias: &[f32], w: usize) -> (Vec<f32>, Saved) {
    vectorized(
        #[inline(always)]
        || {
            let (mut y, mut normalized) =
                (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
            let mut inv_std = Vec::with_capacity(x.len() / w);
            for xr in x.chunks_exact(w) {
                let mean = reduce::sum(xr) / w as f32;
                let var = reduce::squared_deviation(xr, mean) / w as f32;
                let inv = 1.0 / (var + EPS).sqrt();
                let start = normalized.len();
                normalized.extend(xr.iter().map(|v| (v - mean) * inv));
                let scaled = normalized[start..].iter().zip(gain).zip(bias);
                y.extend(scaled.map(|((n, g), b)| n * g + b));
                inv_std.push(inv);
            }
            (
                y,
                Saved {
                    normalized,
                    inv_std,
                },
            )
        },
    )
}

/// dx += rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂)) with ĝ = dy · gain; dgain += Σ dy x̂; dbias += Σ dy.
pub fn backward(
    dy: &[f32],
    gain: &[f32],
    saved: &Saved,
    w: usize,
    dx: &mut [f32],
    dgain: &mut [f32],
    dbias: &mut [f32],
) {
    vectorized(
        #[inline(always)]
        || {
            let mut g = vec![0.0; w];
            let rows = dy.chunks_exact(w).zip(&saved.inv_std);
            let rows = rows.zip(saved.normalized.chunks_exact(w).zip(dx.chunks_exact_mut(w)));
            for ((dyr, &inv), (nr, dxr)) in rows {
                let columns = g.iter_mut().zip(dyr).zip(nr).zip(gain);
                for ((((g, &d), &n), &gain), (dg, db)) in
                    columns.zip(dgain.iter_mut().zip(dbias.iter_mut()))
                {
                    *g = d * gain;
                    *dg += d * n;
                    *db += d;
                }
                let mean_g = reduce::sum(&g) / w as f32;
                let mean_gn = reduce::dot(&g, nr) / w as f32;
                for ((dx, &g), &n) in dxr.iter_mut().zip(&g).zip(nr) {
                    *dx += inv * (g - mean_g - n * mean_gn);
                }
            }
        },
    )
}

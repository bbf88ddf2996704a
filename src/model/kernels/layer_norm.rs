//! LayerNorm over rows of width w: y = (x − mean) / √(var + eps) · gain + bias,
//! with the biased variance, as dfdx's `normalize`.

use super::reduce;

pub const EPS: f32 = 1e-5;

/// What the backward pass needs: the normalised rows and 1/√(var + eps) per row.
pub struct Saved {
    pub normalized: Vec<f32>,
    pub inv_std: Vec<f32>,
}

pub fn forward(x: &[f32], gain: &[f32], bias: &[f32], w: usize) -> (Vec<f32>, Saved) {
    let (mut y, mut normalized) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    let inv_std = x
        .chunks_exact(w)
        .map(|xr| {
            let mean = reduce::sum(xr) / w as f32;
            let var = reduce::squared_deviation(xr, mean) / w as f32;
            let inv = 1.0 / (var + EPS).sqrt();
            let start = normalized.len();
            normalized.extend(xr.iter().map(|v| (v - mean) * inv));
            y.extend(
                normalized[start..]
                    .iter()
                    .zip(gain)
                    .zip(bias)
                    .map(|((n, g), b)| n * g + b),
            );
            inv
        })
        .collect();
    (
        y,
        Saved {
            normalized,
            inv_std,
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
    let mut g = vec![0.0; w];
    for (r, &inv) in saved.inv_std.iter().enumerate() {
        let (dyr, nr) = (
            &dy[r * w..(r + 1) * w],
            &saved.normalized[r * w..(r + 1) * w],
        );
        for c in 0..w {
            g[c] = dyr[c] * gain[c];
            dgain[c] += dyr[c] * nr[c];
            dbias[c] += dyr[c];
        }
        let mean_g = reduce::sum(&g) / w as f32;
        let mean_gn = reduce::dot(&g, nr) / w as f32;
        for (c, d) in dx[r * w..(r + 1) * w].iter_mut().enumerate() {
            *d += inv * (g[c] - mean_g - nr[c] * mean_gn);
        }
    }
}

//! y = x Wᵀ + b over rows: three matrix products and a column sum.

use super::matmul::{matmul, product, Mat, MatMut};
use super::simd::vectorized;

/// x: (rows, i), w: (o, i), bias: (o,) → y: (rows, o).
pub fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    i: usize,
    o: usize,
) -> Vec<f32> {
    match bias {
        Some(bias) => plus_product(bias.repeat(rows), x, w, rows, i, o),
        None => product(Mat::new(x, rows, i), Mat::new(w, o, i).t()),
    }
}

/// residual + x Wᵀ + b: a pre-LN sublayer's output.
pub fn forward_residual(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    residual: &[f32],
    rows: usize,
    i: usize,
    o: usize,
) -> Vec<f32> {
    let mut y = residual.to_vec();
    vectorized(
        #[inline(always)]
        || {
            for row in y.chunks_exact_mut(o) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        },
    );
    plus_product(y, x, w, rows, i, o)
}

/// y + x Wᵀ
fn plus_product(
    mut y: Vec<f32>,
    x: &[f32],
    w: &[f32],
    rows: usize,
    i: usize,
    o: usize,
) -> Vec<f32> {
    matmul(
        MatMut::new(&mut y, rows, o),
        Mat::new(x, rows, i),
        Mat::new(w, o, i).t(),
        true,
    );
    y
}

/// dy W: the gradient of the input, as a new array.
pub fn input_grad(dy: &[f32], w: &[f32], rows: usize, i: usize, o: usize) -> Vec<f32> {
    product(Mat::new(dy, rows, o), Mat::new(w, o, i))
}

/// dx += dy W
pub fn backward_input(dy: &[f32], w: &[f32], dx: &mut [f32], rows: usize, i: usize, o: usize) {
    matmul(
        MatMut::new(dx, rows, i),
        Mat::new(dy, rows, o),
        Mat::new(w, o, i),
        true,
    );
}

/// dW += dyᵀ x. gemm 0.19 runs these long-k products 2–3× faster into a
/// wide row-major destination than into a tall one (measured: 30 vs 80
/// GFLOP/s at 512 × 128), so a tall dW (o > i) is computed as dWᵀ = xᵀ dy
/// and added transposed.
pub fn backward_weight(dy: &[f32], x: &[f32], dw: &mut [f32], rows: usize, i: usize, o: usize) {
    if o <= i {
        matmul(
            MatMut::new(dw, o, i),
            Mat::new(dy, rows, o).t(),
            Mat::new(x, rows, i),
            true,
        );
        return;
    }
    let dwt = product(Mat::new(x, rows, i).t(), Mat::new(dy, rows, o));
    vectorized(
        #[inline(always)]
        || {
            for (r, row) in dw.chunks_exact_mut(i).enumerate() {
                for (d, t) in row.iter_mut().zip(dwt[r..].iter().step_by(o)) {
                    *d += t;
                }
            }
        },
    )
}

/// db += Σ_rows dy
pub fn backward_bias(dy: &[f32], db: &mut [f32], o: usize) {
    vectorized(
        #[inline(always)]
        || {
            for row in dy.chunks_exact(o) {
                for (d, g) in db.iter_mut().zip(row) {
                    *d += g;
                }
            }
        },
    )
}

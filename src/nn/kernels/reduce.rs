//! Sums in 16 independent lanes. A plain `iter().sum()` over f32 is one
//! dependent chain of additions (the compiler may not reorder them); lanes
//! let it use vector registers. The order is fixed, so results stay
//! bit-reproducible.

const LANES: usize = 16;

/// Σ f(a_i, b_i). Whole chunks are fixed-size arrays, so the lane loop has
/// no bounds checks and compiles to one vector operation per chunk.
#[inline(always)]
fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let ((ac, at), (bc, bt)) = (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
    let tail: f32 = at.iter().zip(bt).map(|(&x, &y)| f(x, y)).sum();
    for (x, y) in ac.iter().zip(bc) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    lanes(x, x, |v, _| v)
}

#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| x * y)
}

/// Σ (x − c)²
#[inline(always)]
pub fn squared_deviation(x: &[f32], c: f32) -> f32 {
    lanes(x, x, |v, _| (v - c) * (v - c))
}

#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let (chunks, tail) = x.as_chunks::<LANES>();
    let tail = tail.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for l in 0..LANES {
            acc[l] = acc[l].max(c[l]);
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_agree_with_plain_sums() {
        for n in [0, 1, 15, 16, 17, 50, 128] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 3 % 5) as f32) - 2.0).collect();
            let close = |x: f32, y: f32| {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "n {n}: {x} vs {y}")
            };
            close(sum(&a), a.iter().sum());
            close(dot(&a, &b), a.iter().zip(&b).map(|(x, y)| x * y).sum());
            close(
                squared_deviation(&a, 0.5),
                a.iter().map(|x| (x - 0.5) * (x - 0.5)).sum(),
            );
            assert_eq!(max(&a), a.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)));
        }
    }
}

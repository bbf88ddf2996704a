//! Elementwise kernels compiled for the CPU they run on. The crate builds
//! for baseline x86-64 (SSE2, 4 lanes); [`vectorized`] runs a closure
//! compiled for AVX-512 or AVX2 + FMA when the CPU has them, picked at run
//! time as gemm does. Results do not depend on the choice: Rust never fuses
//! a multiply and an add on its own, and the kernels' reductions fix their
//! order in the source (see `reduce`), so only the lane width changes.

/// Runs `f` with the best instruction set available. Code is compiled for
/// it only where it is inlined into the dispatching function, so callers
/// mark the closure `#[inline(always)]` (LLVM otherwise keeps large
/// closures out of line, at the baseline) and so are the helpers it calls.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that n · LN2_HI is exact for |n| ≤ 128 (Cody–Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: adding and subtracting it rounds an f32 to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// Beyond these, eˣ is not a normal f32.
const MAX_ARG: f32 = 88.37;
const MIN_ARG: f32 = -87.33;

/// eˣ without branches or calls, so loops over it vectorize (libm's `expf`
/// is a scalar call). Cephes' expf: x = n ln 2 + r with |r| ≤ ln 2 / 2,
/// eʳ by a degree-7 polynomial, times 2ⁿ built from its bits. Within 2
/// ulp of `f32::exp` for normal results; 0 below −87.33 (where eˣ is
/// subnormal), ∞ above 88.37, NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // clamp keeps NaN as NaN.
    let c = x.clamp(MIN_ARG, MAX_ARG);
    let n = (c * LOG2_E + ROUND) - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * (r * r) + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < MIN_ARG {
        0.0
    } else if x > MAX_ARG {
        f32::INFINITY
    } else {
        er * two_n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> i64 {
        (a.to_bits() as i64 - b.to_bits() as i64).abs()
    }

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        let mut worst = (0, 0.0);
        // Every 97th f32 bit pattern between the limits, both signs.
        for bits in (0..0x7f80_0000u32).step_by(97) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                if !(MIN_ARG..=MAX_ARG).contains(&x) {
                    continue;
                }
                let e = ulps(exp(x), x.exp());
                if e > worst.0 {
                    worst = (e, x);
                }
            }
        }
        assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn exp_limits() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(MAX_ARG).is_finite());
        assert!(exp(MIN_ARG) > 0.0);
    }

    #[test]
    fn vectorized_loops_match_scalar_ones() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 7.0).collect();
        let fast: Vec<f32> = vectorized(
            #[inline(always)]
            || x.iter().map(|&v| exp(v)).collect(),
        );
        let plain: Vec<f32> = x.iter().map(|&v| exp(v)).collect();
        assert_eq!(fast, plain);
    }
}

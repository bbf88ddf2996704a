//! `alibi`: a fixed per-head linear penalty −m_h·(i − j) on the attention score
//! of query i for key j ≤ i (Press et al. 2022). Not scaled by 1/√d.

use super::{
    constant, BuildContext, NoOptions, OTape, PositionalLayer, Positions, SchemeDef, Scores,
};
use dfdx::prelude::*;

pub struct Alibi;

impl SchemeDef for Alibi {
    const NAME: &'static str = "alibi";
    const SUMMARY: &'static str =
        "fixed per-head linear bias -m_h*(i-j) on attention scores, geometric slopes";
    const CITATION: &'static str = "Press et al. 2022, Train Short, Test Long (ALiBi)";
    type Options = NoOptions;
    fn build<const D: usize, Dev: Device<f32>>(
        _: NoOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        Box::new(AlibiLayer {
            slopes: slopes(ctx.heads),
            dev: ctx.dev,
        })
    }
}

/// The reference recipe: 2^(−8k/H) for k = 1..H when H is a power of two;
/// otherwise the list for the nearest lower power of two, then every other
/// slope of the list for twice that power.
pub fn slopes(heads: usize) -> Vec<f64> {
    fn power_of_two(n: usize) -> Vec<f64> {
        (1..=n)
            .map(|k| 2f64.powf(-8.0 * k as f64 / n as f64))
            .collect()
    }
    if heads.is_power_of_two() {
        return power_of_two(heads);
    }
    let lower = 1 << heads.ilog2();
    let mut out = power_of_two(lower);
    out.extend(slopes(2 * lower).into_iter().step_by(2).take(heads - lower));
    out
}

/// Row-major (batch, heads, seq, seq) bias; future keys (masked anyway) get 0.
pub fn bias(slopes: &[f64], pos: &Positions) -> Vec<f32> {
    let (b, h, s) = (pos.batch, slopes.len(), pos.seq);
    let mut out = vec![0.0; b * h * s * s];
    for bi in 0..b {
        let p = pos.row(bi);
        for (hi, m) in slopes.iter().enumerate() {
            let base = (bi * h + hi) * s * s;
            for i in 0..s {
                for j in 0..=i {
                    out[base + i * s + j] = (-m * (p[i] as f64 - p[j] as f64)) as f32;
                }
            }
        }
    }
    out
}

struct AlibiLayer<Dev> {
    slopes: Vec<f64>,
    dev: Dev,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for AlibiLayer<Dev> {
    fn score_bias(
        &self,
        _layer: usize,
        pos: &Positions,
        heads: usize,
    ) -> Option<Scores<Dev, OTape<Dev>>> {
        let shape = (pos.batch, heads, pos.seq, pos.seq);
        Some(constant(&self.dev, bias(&self.slopes, pos), shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_follow_the_reference_recipe() {
        let four: Vec<f64> = vec![0.25, 0.0625, 0.015625, 0.00390625];
        assert_eq!(slopes(4), four);
        // 6 heads: the 4-head list, then slopes 1 and 3 of the 8-head list.
        let eight: Vec<f64> = (1..=8).map(|k| 2f64.powf(-(k as f64))).collect();
        let mut six = four.clone();
        six.extend([eight[0], eight[2]]);
        assert_eq!(slopes(6), six);
    }

    #[test]
    fn bias_matrix_equals_hand_written_one() {
        let pos = Positions::contiguous(1, 3);
        let got = bias(&slopes(4), &pos);
        // Head 0 (m = 1/4) and head 3 (m = 1/256), rows i, columns j.
        let head0 = [0.0, 0.0, 0.0, -0.25, 0.0, 0.0, -0.5, -0.25, 0.0];
        let m3 = 1.0 / 256.0;
        let head3 = [0.0, 0.0, 0.0, -m3, 0.0, 0.0, -2.0 * m3, -m3, 0.0];
        assert_eq!(&got[0..9], &head0.map(|x: f64| x as f32));
        assert_eq!(&got[27..36], &head3.map(|x: f64| x as f32));
    }

    #[test]
    fn nearer_keys_score_higher() {
        let pos = Positions::contiguous(1, 6);
        let got = bias(&slopes(2), &pos);
        let row5 = &got[5 * 6..6 * 6];
        assert!(row5.windows(2).all(|w| w[0] < w[1]), "{row5:?}");
    }
}

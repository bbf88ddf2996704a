//! `alibi`: a fixed per-head linear penalty −m_h·(i − j) on the attention score
//! of query i for key j ≤ i (Press et al. 2022). Not scaled by 1/√d.

use super::{BuildContext, Memo, SchemeContext, SchemeDef};
use crate::nn::hooks::{PositionalLayer, Positions, ScoreBias, Scores};
use crate::options::registry::Registered;
use crate::options::FieldError;
use dfdx::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub struct Alibi;

/// `all` heads, or only the first `n` (the rest unbiased).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BiasedHeads {
    #[default]
    All,
    First(usize),
}

impl Serialize for BiasedHeads {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BiasedHeads::All => s.serialize_str("all"),
            BiasedHeads::First(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for BiasedHeads {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Word(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected `all` or a number of heads"))?
        {
            Raw::Count(n) => Ok(BiasedHeads::First(n as usize)),
            Raw::Word(w) if w == "all" => Ok(BiasedHeads::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "`{w}`; valid: `all` or a number of heads"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlibiOptions {
    pub heads: BiasedHeads,
}

impl Registered for Alibi {
    const NAME: &'static str = "alibi";
    const SUMMARY: &'static str =
        "fixed per-head linear bias -m_h*(i-j) on attention scores, geometric slopes";
    const CITATION: &'static str = "Press et al. 2022, Train Short, Test Long (ALiBi)";
    type Options = AlibiOptions;
}

impl SchemeDef for Alibi {
    fn check(o: &AlibiOptions, ctx: &SchemeContext) -> Result<(), FieldError> {
        match o.heads {
            BiasedHeads::First(n) if n == 0 || n > ctx.heads => Err(FieldError::new(
                &["heads"],
                format!(
                    "{n} biased heads out of {}; valid: `all` or 1 to {}",
                    ctx.heads, ctx.heads
                ),
            )),
            _ => Ok(()),
        }
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: AlibiOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        let biased = match options.heads {
            BiasedHeads::All => ctx.heads,
            BiasedHeads::First(n) => n,
        };
        let mut all = slopes(biased);
        all.resize(ctx.heads, 0.0);
        Box::new(AlibiLayer {
            slopes: all,
            dev: ctx.dev,
            memo: Memo::default(),
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

struct AlibiLayer<Dev: Device<f32>> {
    slopes: Vec<f64>,
    dev: Dev,
    /// The bias of the last positions seen: the same in every layer and step.
    memo: Memo<Positions, Scores<Dev, NoneTape>>,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for AlibiLayer<Dev> {
    fn score_bias(&self, _layer: usize, pos: &Positions, heads: usize) -> Option<ScoreBias<Dev>> {
        let shape = (pos.batch, heads, pos.seq, pos.seq);
        let bias = self.memo.get_or(pos, || {
            self.dev.tensor_from_vec(bias(&self.slopes, pos), shape)
        });
        Some(ScoreBias::Fixed(bias))
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
    fn six_head_bias_matrix_equals_hand_written_one() {
        // 6 heads: slopes 1/4, 1/16, 1/64, 1/256 (4-head list), then 1/2 and 1/8 (8-head list, every other).
        let pos = Positions::contiguous(1, 3);
        let got = bias(&slopes(6), &pos);
        let matrix =
            |m: f64| [0.0, 0.0, 0.0, -m, 0.0, 0.0, -2.0 * m, -m, 0.0].map(|x: f64| x as f32);
        for (head, m) in [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
            .into_iter()
            .enumerate()
        {
            assert_eq!(&got[head * 9..(head + 1) * 9], &matrix(m), "head {head}");
        }
    }

    #[test]
    fn partial_heads_leave_the_rest_unbiased() {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let ctx = BuildContext {
            dev: Cpu::default(),
            heads: 4,
            layers: 1,
            rng: &mut rng,
        };
        let layer = Alibi::build::<8, Cpu>(
            AlibiOptions {
                heads: BiasedHeads::First(2),
            },
            ctx,
        );
        let bias = layer
            .score_bias(0, &Positions::contiguous(1, 3), 4)
            .unwrap()
            .into_tensor()
            .as_vec();
        // Heads 0 and 1 use the 2-head slopes 1/16 and 1/256; heads 2 and 3 are zero.
        assert_eq!(bias[3], -1.0 / 16.0);
        assert_eq!(bias[9 + 3], -1.0 / 256.0);
        assert!(bias[18..].iter().all(|&x| x == 0.0));
        let parsed: AlibiOptions = serde_yaml::from_str("{heads: all}").unwrap();
        assert_eq!(parsed.heads, BiasedHeads::All);
        assert!(serde_yaml::from_str::<AlibiOptions>("{heads: some}").is_err());
    }

    #[test]
    fn nearer_keys_score_higher() {
        let pos = Positions::contiguous(1, 6);
        let got = bias(&slopes(2), &pos);
        let row5 = &got[5 * 6..6 * 6];
        assert!(row5.windows(2).all(|w| w[0] < w[1]), "{row5:?}");
    }
}

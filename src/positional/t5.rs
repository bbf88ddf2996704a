//! `t5`: a learned scalar per (bucket, head) added to the attention score of
//! query i for key j, by the bucket of the distance n = max(i − j, 0): exact
//! for n < B/2, log-spaced up to `max_distance`, the last bucket beyond
//! (Raffel et al. 2020, causal variant). Shared across layers by default, as T5.

use super::{BuildContext, Memo, SchemeContext, SchemeDef};
use crate::nn::hooks::{BucketedBias, OTape, PositionalLayer, Positions, ScoreBias};
use crate::nn::param::{Param, ParamVisitor};
use crate::options::registry::Registered;
use crate::options::FieldError;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub struct T5;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct T5Options {
    pub buckets: usize,
    pub max_distance: usize,
    pub shared_across_layers: bool,
}

impl Default for T5Options {
    fn default() -> Self {
        T5Options {
            buckets: 32,
            max_distance: 128,
            shared_across_layers: true,
        }
    }
}

/// T5's causal bucket of distance `n` (query minus key position).
pub fn bucket(n: usize, buckets: usize, max_distance: usize) -> usize {
    let exact = buckets / 2;
    if n < exact {
        return n;
    }
    let log_ratio = (n as f64 / exact as f64).ln() / (max_distance as f64 / exact as f64).ln();
    (exact + (log_ratio * (buckets - exact) as f64) as usize).min(buckets - 1)
}

impl Registered for T5 {
    const NAME: &'static str = "t5";
    const SUMMARY: &'static str =
        "learned per-head scalar bias by log-spaced bucket of the query-key distance";
    const CITATION: &'static str =
        "Raffel et al. 2020, Exploring the Limits of Transfer Learning (T5)";
    type Options = T5Options;
}

impl SchemeDef for T5 {
    const EXAMPLES: &'static [&'static str] = &[
        "{buckets: 8, max_distance: 16}",
        "{shared_across_layers: false}",
    ];
    fn check(o: &T5Options, _: &SchemeContext) -> Result<(), FieldError> {
        if !(2..=4096).contains(&o.buckets) {
            return Err(FieldError::new(
                &["buckets"],
                format!("{}; valid: 2 to 4096", o.buckets),
            ));
        }
        if o.max_distance <= o.buckets / 2 {
            return Err(FieldError::new(
                &["max_distance"],
                format!(
                    "{} must exceed the {} exact buckets; valid: max_distance > buckets / 2",
                    o.max_distance,
                    o.buckets / 2
                ),
            ));
        }
        Ok(())
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: T5Options,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        let tables = if options.shared_across_layers {
            1
        } else {
            ctx.layers
        };
        // HF T5's initialisation scale.
        let std = (D as f32).powf(-0.5);
        let tables = (0..tables)
            .map(|_| Param::normal(&ctx.dev, (options.buckets, ctx.heads), std, false, ctx.rng))
            .collect();
        Box::new(T5Layer {
            options,
            tables,
            memo: Memo::default(),
        })
    }
}

struct T5Layer<Dev: Device<f32>> {
    options: T5Options,
    /// One (buckets, heads) table, or one per layer.
    tables: Vec<Param<(usize, usize), Dev>>,
    /// The buckets of the last positions seen.
    memo: Memo<Positions, Arc<[usize]>>,
}

impl<Dev: Device<f32>> T5Layer<Dev> {
    /// (batch·seq·seq,) bucket of every (query, key) pair, row-major.
    fn buckets(&self, pos: &Positions) -> Vec<usize> {
        let s = pos.seq;
        let mut out = Vec::with_capacity(pos.batch * s * s);
        for b in 0..pos.batch {
            let p = pos.row(b);
            for i in 0..s {
                for j in 0..s {
                    out.push(bucket(
                        p[i].saturating_sub(p[j]),
                        self.options.buckets,
                        self.options.max_distance,
                    ));
                }
            }
        }
        out
    }
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for T5Layer<Dev> {
    fn score_bias(&self, layer: usize, pos: &Positions, heads: usize) -> Option<ScoreBias<Dev>> {
        let table = &self.tables[layer % self.tables.len()];
        assert_eq!(table.value.shape().1, heads, "one table column per head");
        Some(ScoreBias::Bucketed(BucketedBias {
            table: table.on::<OTape<Dev>>(),
            buckets: self.memo.get_or(pos, || self.buckets(pos).into()),
            batch: pos.batch,
            seq: pos.seq,
        }))
    }
    fn visit_params(&mut self, f: &mut ParamVisitor<Dev>) {
        for t in &mut self.tables {
            f(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_a_hand_computed_table() {
        // B = 32, D = 128: exact below 16, then bucket 16 + m from n >= 16·8^(m/16).
        let ranges: [(usize, usize, usize); 16] = [
            (16, 18, 16),
            (19, 20, 17),
            (21, 23, 18),
            (24, 26, 19),
            (27, 30, 20),
            (31, 34, 21),
            (35, 39, 22),
            (40, 45, 23),
            (46, 51, 24),
            (52, 58, 25),
            (59, 66, 26),
            (67, 76, 27),
            (77, 86, 28),
            (87, 98, 29),
            (99, 112, 30),
            (113, 300, 31),
        ];
        for n in 0..=300 {
            let expect = if n < 16 {
                n
            } else {
                ranges
                    .iter()
                    .find(|(lo, hi, _)| (*lo..=*hi).contains(&n))
                    .unwrap()
                    .2
            };
            assert_eq!(bucket(n, 32, 128), expect, "distance {n}");
        }
    }

    #[test]
    fn bias_reads_the_table_by_bucket_and_head() {
        let dev: Cpu = Default::default();
        let table = dev.tensor_from_vec((0..8).map(|x| x as f32).collect(), (4, 2));
        let layer = T5Layer {
            options: T5Options {
                buckets: 4,
                max_distance: 4,
                shared_across_layers: true,
            },
            tables: vec![Param {
                value: table,
                decay: false,
            }],
            memo: Memo::default(),
        };
        let bias =
            PositionalLayer::<4, Cpu>::score_bias(&layer, 0, &Positions::contiguous(1, 4), 2)
                .unwrap()
                .into_tensor()
                .as_vec();
        // Buckets of distance 0..3 with B = 4, D = 4: 0, 1, 2 (log-spaced), 3 (capped).
        let b: Vec<usize> = (0..4).map(|n| bucket(n, 4, 4)).collect();
        assert_eq!(b, vec![0, 1, 2, 3]);
        // Head 1, query 3, key 0: distance 3 → table[3][1] = 7; key 3: table[0][1] = 1.
        assert_eq!(bias[16 + 3 * 4], 7.0);
        assert_eq!(bias[16 + 3 * 4 + 3], 1.0);
        // Head 0, query 2, key 1: table[1][0] = 2.
        assert_eq!(bias[2 * 4 + 1], 2.0);
    }
}

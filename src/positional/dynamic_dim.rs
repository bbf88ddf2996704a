//! `dynamic_dim`: the position signal is confined to the first k(t) of its
//! frequency pairs, highest frequencies first; k grows linearly from `from`
//! to `to` (fractions of all pairs) over the first `over` fraction of
//! training, then holds; evaluation uses the final k. `inner: rope` rotates
//! q/k with the full-head schedule θ_i = base^(−2i/head_dim) (the static case
//! is p-RoPE); `inner: sinusoidal` zeroes the inactive sinusoid pairs.

use super::fusion::{self, Fusion};
use super::rope::{rotary_pairs, Pairing};
use super::sinusoidal::{check_base, sinusoid_table};
use super::{constant, BuildContext, SchemeContext, SchemeDef};
use crate::nn::hooks::{Embedded, InputLayout, PositionalLayer, Positions};
use crate::nn::rotation::Rotation;
use crate::options::registry::Registered;
use crate::options::FieldError;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

pub struct DynamicDim;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inner {
    Rope,
    Sinusoidal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicDimOptions {
    pub inner: Inner,
    pub from: f64,
    pub to: f64,
    pub over: f64,
    pub base: f64,
    /// Only with `inner: sinusoidal`.
    pub fusion: Fusion,
    pub position_dims: Option<usize>,
}

impl Default for DynamicDimOptions {
    fn default() -> Self {
        DynamicDimOptions {
            inner: Inner::Rope,
            from: 0.25,
            to: 1.0,
            over: 0.5,
            base: 10000.0,
            fusion: Fusion::Add,
            position_dims: None,
        }
    }
}

impl DynamicDimOptions {
    /// The active fraction of frequency pairs at training progress `t` ∈ [0, 1].
    pub fn fraction_at(&self, t: f64) -> f64 {
        let ramp = if self.over > 0.0 {
            (t / self.over).min(1.0)
        } else {
            1.0
        };
        self.from + (self.to - self.from) * ramp
    }
}

/// Active pairs out of `pairs` for fraction `k` (at least one).
fn active_pairs(k: f64, pairs: usize) -> usize {
    ((k * pairs as f64).round() as usize).clamp(1, pairs)
}

impl Registered for DynamicDim {
    const NAME: &'static str = "dynamic_dim";
    const SUMMARY: &'static str = "position only in the first k(t) frequency pairs, k grown from `from` to `to` over the first `over` of training";
    const CITATION: &'static str =
        "dynamically adjusted embedding dimension; static case = p-RoPE (Barbero et al. 2025)";
    type Options = DynamicDimOptions;
}

impl SchemeDef for DynamicDim {
    const EXAMPLES: &'static [&'static str] = &["{inner: sinusoidal}", "{}"];
    fn check(o: &DynamicDimOptions, ctx: &SchemeContext) -> Result<(), FieldError> {
        check_base(o.base)?;
        if !(o.from > 0.0 && o.from <= o.to && o.to <= 1.0) {
            return Err(FieldError::new(
                &["from"],
                format!(
                    "from {} and to {} are not a growth range; valid: 0 < from <= to <= 1",
                    o.from, o.to
                ),
            ));
        }
        if !(0.0..=1.0).contains(&o.over) {
            return Err(FieldError::new(
                &["over"],
                format!("{}; valid: 0 <= over <= 1 (a fraction of training)", o.over),
            ));
        }
        match o.inner {
            Inner::Sinusoidal => fusion::position_dims(o.fusion, o.position_dims, ctx.d_model).map(|_| ()),
            Inner::Rope if o.fusion != Fusion::Add || o.position_dims.is_some() => Err(FieldError::new(
                &["fusion"],
                "fusion and position_dims apply to `inner: sinusoidal` only; valid: remove them, or inner: sinusoidal",
            )),
            Inner::Rope => Ok(()),
        }
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: DynamicDimOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        let dims = match options.inner {
            Inner::Rope => D,
            Inner::Sinusoidal => {
                fusion::position_dims(options.fusion, options.position_dims, D).expect("checked")
            }
        };
        Box::new(DynamicDimLayer {
            fraction: options.fraction_at(0.0),
            layout: fusion::layout(options.fusion, dims, D),
            dims,
            options,
            dev: ctx.dev,
        })
    }
}

struct DynamicDimLayer<Dev> {
    options: DynamicDimOptions,
    /// The current k as a fraction of all frequency pairs.
    fraction: f64,
    dims: usize,
    layout: InputLayout,
    dev: Dev,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for DynamicDimLayer<Dev> {
    fn input(&self, pos: &Positions) -> Option<Embedded<D, Dev>> {
        if self.options.inner != Inner::Sinusoidal {
            return None;
        }
        let mut table = sinusoid_table(&pos.values, self.dims, self.options.base);
        let keep = 2 * active_pairs(self.fraction, self.dims / 2);
        for row in table.chunks_mut(self.dims) {
            row[keep..].iter_mut().for_each(|x| *x = 0.0);
        }
        let table = fusion::place(table, self.dims, D);
        Some(constant(&self.dev, table, (pos.batch, pos.seq, Const::<D>)))
    }

    fn rotation(&self, pos: &Positions, heads: usize, head_dim: usize) -> Option<Rotation<Dev>> {
        if self.options.inner != Inner::Rope {
            return None;
        }
        let mut pairs = rotary_pairs(Pairing::Interleaved, head_dim, self.options.base);
        pairs.truncate(active_pairs(self.fraction, head_dim / 2));
        Some(Rotation::new(&self.dev, pos, heads, head_dim, &[pairs]))
    }

    fn input_layout(&self) -> InputLayout {
        self.layout
    }

    fn set_progress(&mut self, fraction: f64) -> Vec<(String, f64)> {
        self.fraction = self.options.fraction_at(fraction);
        vec![("dynamic_dim.k".into(), self.fraction)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positional::rope::tests::{assert_relative, rotate, Q};

    #[test]
    fn schedule_grows_then_holds() {
        let o = DynamicDimOptions {
            from: 0.25,
            to: 1.0,
            over: 0.5,
            ..Default::default()
        };
        assert_eq!(o.fraction_at(0.0), 0.25);
        assert_eq!(o.fraction_at(0.25), 0.625);
        assert_eq!(o.fraction_at(0.5), 1.0);
        assert_eq!(o.fraction_at(0.9), 1.0);
    }

    #[test]
    fn inactive_pairs_are_left_unrotated_and_scores_stay_relative() {
        let mut layer = DynamicDimLayer {
            options: DynamicDimOptions::default(),
            fraction: 0.25,
            dims: 8,
            layout: InputLayout::Add,
            dev: Cpu::default(),
        };
        // 8 head dims = 4 pairs; k = 0.25 → only pair (0, 1) rotates.
        let out = rotate(&layer, 1, 0, 5, &Q);
        assert_eq!(&out[2..], &Q[2..]);
        assert_relative(&layer, 1, 0);
        let logged = PositionalLayer::<8, Cpu>::set_progress(&mut layer, 1.0);
        assert_eq!(logged, vec![("dynamic_dim.k".to_string(), 1.0)]);
        assert_ne!(&rotate(&layer, 1, 0, 5, &Q)[6..], &Q[6..]);
    }
}

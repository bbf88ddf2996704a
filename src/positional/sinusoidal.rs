//! `sinusoidal`: fixed vectors added to (or concatenated with) the token
//! embeddings (Vaswani et al. 2017), interleaved layout:
//! PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(p / base^(2i/d)),
//! with d the dims given to position (d_model, or position_dims for concat).

use super::fusion::{self, Fusion};
use super::{constant, BuildContext, Memo, SchemeContext, SchemeDef};
use crate::nn::hooks::{Embedded, InputLayout, PositionalLayer, Positions};
use crate::options::registry::Registered;
use crate::options::FieldError;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Sinusoidal;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinusoidalOptions {
    pub base: f64,
    pub fusion: Fusion,
    /// Position dims for `fusion: concat` (default d_model / 2).
    pub position_dims: Option<usize>,
}

impl Default for SinusoidalOptions {
    fn default() -> Self {
        SinusoidalOptions {
            base: 10000.0,
            fusion: Fusion::Add,
            position_dims: None,
        }
    }
}

/// `base` must be a finite number above 1.
pub fn check_base(base: f64) -> Result<(), FieldError> {
    if base.is_finite() && base > 1.0 {
        Ok(())
    } else {
        Err(FieldError::new(
            &["base"],
            format!("base {base} is invalid; valid: a finite number > 1"),
        ))
    }
}

impl Registered for Sinusoidal {
    const NAME: &'static str = "sinusoidal";
    const SUMMARY: &'static str = "fixed sin/cos vectors added to (or concatenated with) token embeddings; interleaved: sin at 2i, cos at 2i+1";
    const CITATION: &'static str = "Vaswani et al. 2017, Attention Is All You Need";
    type Options = SinusoidalOptions;
}

impl SchemeDef for Sinusoidal {
    const EXAMPLES: &'static [&'static str] = &["{}", "{fusion: concat, position_dims: 6}"];
    fn check(options: &SinusoidalOptions, ctx: &SchemeContext) -> Result<(), FieldError> {
        check_base(options.base)?;
        fusion::position_dims(options.fusion, options.position_dims, ctx.d_model).map(|_| ())
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: SinusoidalOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        let dims =
            fusion::position_dims(options.fusion, options.position_dims, D).expect("checked");
        Box::new(SinusoidalLayer {
            base: options.base,
            dims,
            layout: fusion::layout(options.fusion, dims, D),
            dev: ctx.dev,
            memo: Memo::default(),
        })
    }
}

/// Row-major (positions.len(), dims) table of sinusoids.
pub fn sinusoid_table(positions: &[usize], dims: usize, base: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(positions.len() * dims);
    for &p in positions {
        for k in 0..dims {
            let i = (k / 2) as f64;
            let angle = p as f64 / base.powf(2.0 * i / dims as f64);
            out.push(if k % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    out
}

struct SinusoidalLayer<Dev> {
    base: f64,
    dims: usize,
    layout: InputLayout,
    dev: Dev,
    /// The (batch, seq, D) table of the last positions seen.
    memo: Memo<Positions, Vec<f32>>,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for SinusoidalLayer<Dev> {
    fn input(&self, pos: &Positions) -> Option<Embedded<D, Dev>> {
        let table = self.memo.get_or(pos, || {
            fusion::place(
                sinusoid_table(&pos.values, self.dims, self.base),
                self.dims,
                D,
            )
        });
        Some(constant(&self.dev, table, (pos.batch, pos.seq, Const::<D>)))
    }
    fn input_layout(&self) -> InputLayout {
        self.layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_entries() {
        let d = 8;
        let t = sinusoid_table(&[0, 1, 5], d, 10000.0);
        let at = |row: usize, k: usize| t[row * d + k];
        // Position 0: sin 0 = 0 at even dims, cos 0 = 1 at odd dims.
        for k in 0..d {
            assert_eq!(at(0, k), if k % 2 == 0 { 0.0 } else { 1.0 });
        }
        // Position 1, i = 0: sin(1), cos(1).
        assert!((at(1, 0) - 0.841_470_96).abs() < 1e-6);
        assert!((at(1, 1) - 0.540_302_3).abs() < 1e-6);
        // Position 5, dims 2,3 (i = 1): angle = 5 / 10000^(2/8) = 0.5.
        assert!((at(2, 2) - 0.479_425_55).abs() < 1e-6);
        assert!((at(2, 3) - 0.877_582_6).abs() < 1e-6);
        // Position 5, dims 6,7 (i = 3): angle = 5 / 10000^(6/8) = 0.005.
        assert!((at(2, 6) - 0.004_999_979).abs() < 1e-6);
    }

    #[test]
    fn concat_places_position_in_the_last_dims() {
        let placed = fusion::place(sinusoid_table(&[3], 4, 10000.0), 4, 8);
        assert_eq!(&placed[..4], &[0.0; 4]);
        assert_eq!(&placed[4..], &sinusoid_table(&[3], 4, 10000.0)[..]);
    }
}

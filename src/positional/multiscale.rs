//! `multiscale`: rotary embedding whose heads are split evenly into groups,
//! group g rotating with base `bases[g]`: small bases resolve local order,
//! large ones near-global order.

use super::rope::{rotary_pairs, Pairing};
use super::sinusoidal::check_base;
use super::{BuildContext, Memo, SchemeContext, SchemeDef};
use crate::nn::hooks::{PositionalLayer, Positions};
use crate::nn::rotation::Rotation;
use crate::options::registry::Registered;
use crate::options::{FieldError, Seg};
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Multiscale;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiscaleOptions {
    pub bases: Vec<f64>,
    pub pairing: Pairing,
}

impl Default for MultiscaleOptions {
    fn default() -> Self {
        MultiscaleOptions {
            bases: vec![10.0, 100.0, 1000.0, 10000.0],
            pairing: Pairing::Interleaved,
        }
    }
}

impl Registered for Multiscale {
    const NAME: &'static str = "multiscale";
    const SUMMARY: &'static str =
        "rotary with head groups of different bases (local to near-global order)";
    const CITATION: &'static str = "multi-scale rotary heads; rotary as Su et al. 2021";
    type Options = MultiscaleOptions;
}

impl SchemeDef for Multiscale {
    const EXAMPLES: &'static [&'static str] = &["{bases: [10, 1000]}"];
    fn check(options: &MultiscaleOptions, ctx: &SchemeContext) -> Result<(), FieldError> {
        let n = options.bases.len();
        if n == 0 || !ctx.heads.is_multiple_of(n) {
            return Err(FieldError::new(
                &["bases"],
                format!("{n} bases cannot split {} heads evenly; valid: a list whose length divides the head count", ctx.heads),
            ));
        }
        for (i, &base) in options.bases.iter().enumerate() {
            check_base(base).map_err(|e| FieldError {
                path: vec![Seg::Key("bases".into()), Seg::Index(i)],
                ..e
            })?;
        }
        Ok(())
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: MultiscaleOptions,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        Box::new(MultiscaleLayer {
            options,
            dev: ctx.dev,
            memo: Memo::default(),
        })
    }
}

struct MultiscaleLayer<Dev: Device<f32>> {
    options: MultiscaleOptions,
    dev: Dev,
    /// The rotation of the last (positions, heads, head_dim) seen.
    memo: Memo<(Positions, usize, usize), Rotation<Dev>>,
}

impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for MultiscaleLayer<Dev> {
    fn rotation(&self, pos: &Positions, heads: usize, head_dim: usize) -> Option<Rotation<Dev>> {
        let key = (pos.clone(), heads, head_dim);
        Some(
            self.memo
                .get_or(&key, || self.build_rotation(pos, heads, head_dim)),
        )
    }
}

impl<Dev: Device<f32>> MultiscaleLayer<Dev> {
    fn build_rotation(&self, pos: &Positions, heads: usize, head_dim: usize) -> Rotation<Dev> {
        let per_group = heads / self.options.bases.len();
        let per_head: Vec<_> = (0..heads)
            .map(|h| {
                rotary_pairs(
                    self.options.pairing,
                    head_dim,
                    self.options.bases[h / per_group],
                )
            })
            .collect();
        Rotation::new(&self.dev, pos, heads, head_dim, &per_head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positional::rope::tests::{assert_relative, rotate, Q};

    #[test]
    fn every_head_group_is_relative_and_groups_differ() {
        let layer = MultiscaleLayer {
            options: MultiscaleOptions {
                bases: vec![10.0, 10000.0],
                ..Default::default()
            },
            dev: Cpu::default(),
            memo: Memo::default(),
        };
        for head in 0..4 {
            assert_relative(&layer, 4, head);
        }
        assert_eq!(rotate(&layer, 4, 0, 9, &Q), rotate(&layer, 4, 1, 9, &Q));
        assert_ne!(rotate(&layer, 4, 1, 9, &Q), rotate(&layer, 4, 2, 9, &Q));
    }

    #[test]
    fn bases_must_divide_heads() {
        let ctx = SchemeContext {
            d_model: 16,
            heads: 4,
            max_position: 10,
        };
        let three = MultiscaleOptions {
            bases: vec![10.0, 100.0, 1000.0],
            ..Default::default()
        };
        let err = Multiscale::check(&three, &ctx).unwrap_err();
        assert!(
            err.message.contains("3 bases cannot split 4 heads"),
            "{}",
            err.message
        );
    }
}

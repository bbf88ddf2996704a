//! `none` (NoPE): no positional signal; order is visible only through the causal mask.

use super::{BuildContext, NoOptions, SchemeDef};
use crate::nn::hooks::PositionalLayer;
use crate::options::registry::Registered;
use dfdx::prelude::*;

pub struct NoPosition;

struct NoLayer;
impl<const D: usize, Dev: Device<f32>> PositionalLayer<D, Dev> for NoLayer {}

impl Registered for NoPosition {
    const NAME: &'static str = "none";
    const SUMMARY: &'static str =
        "no positional signal (NoPE); order comes only from the causal mask";
    const CITATION: &'static str = "Kazemnejad et al. 2023, The Impact of Positional Encoding on Length Generalization in Transformers";
    type Options = NoOptions;
}

impl SchemeDef for NoPosition {
    const READS_POSITIONS: bool = false;
    fn build<const D: usize, Dev: Device<f32>>(
        _: NoOptions,
        _: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>> {
        Box::new(NoLayer)
    }
}

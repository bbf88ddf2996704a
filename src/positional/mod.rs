//! Positional schemes, one file each. Each implements the hooks of
//! [`crate::nn::hooks::PositionalLayer`] through which position enters the
//! model: input vectors, attention-score biases, q/k rotations.
//!
//! # Adding a scheme
//!
//! 1. Write `src/positional/<name>.rs` with a unit struct implementing
//!    [`Registered`](crate::options::registry::Registered) (`NAME`,
//!    `SUMMARY`, `CITATION`, an `Options` struct with
//!    `#[serde(deny_unknown_fields, default)]`) and [`SchemeDef`]: optional
//!    `check` for run-dependent validation (it sees d_model, heads and the
//!    largest position the run will use), `READS_POSITIONS` (false only if
//!    `randomized` makes no sense), `EXAMPLES` (option maps the shared
//!    model tests run; default: the defaults), and `build`, which returns a
//!    `PositionalLayer`.
//! 2. Implement only the hooks the scheme uses: `input` (added to token
//!    embeddings), `input_layout` (concat fusion), `score_bias` (added to
//!    attention scores, per layer: `ScoreBias::Fixed` for a constant such
//!    as ALiBi's, which the fused CPU attention then gives no gradient,
//!    `ScoreBias::Trained` for one built from parameters,
//!    `ScoreBias::Bucketed` for a trained (buckets, heads) table read
//!    through a bucket per (query, key) pair, such as T5's, which the fused
//!    CPU attention reads and scatters gradients into directly),
//!    `query_bias` and `value_bias` (Shaw-style terms computed from queries
//!    or attention weights; a scheme that implements either must also
//!    return true from `taps_attention`, which routes its attention through
//!    the composed reference in `model::attention`, since the fused CPU
//!    sublayer has no such hooks), `rotation` (applied to q and k),
//!    `set_progress` (training-time schedules, logged as curves) and
//!    `visit_params` (its trainable tensors). Fixed tables can be memoised
//!    with [`Memo`] so that they are rebuilt only when the positions change.
//! 3. Add `mod <name>;` below and the type to the `registry!` line.
//!
//! The YAML parser, validation with did-you-mean, `posembed schemes`, run
//! ids, frames and the shared model tests (causality, positions, every
//! example) pick it up from there.

mod alibi;
mod dynamic_dim;
mod fusion;
mod learned;
mod multiscale;
mod none;
mod randomized;
mod rope;
mod shaw;
mod sinusoidal;
mod t5;

use crate::nn::hooks::{OTape, PositionalLayer, Positions};
use crate::options::registry::{self, Registered};
use crate::options::{self, FieldError};
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use fusion::Fusion;
pub use randomized::Randomized;
/// T5's log-spaced distance buckets, also used by the position probe.
pub use t5::bucket as log_bucket;

/// What a scheme may need to know to accept a run.
#[derive(Debug, Clone)]
pub struct SchemeContext {
    pub d_model: usize,
    pub heads: usize,
    /// The largest position index any training or evaluation sequence uses.
    pub max_position: usize,
}

/// What a scheme gets to build its layer.
pub struct BuildContext<'a, Dev> {
    pub dev: Dev,
    pub heads: usize,
    pub layers: usize,
    /// The run's weight-initialisation stream.
    pub rng: &'a mut ChaCha8Rng,
}

/// A positional scheme, registered once in the `registry!` line below.
pub trait SchemeDef: Registered {
    /// Whether the scheme reads integer positions (and so takes `randomized`).
    const READS_POSITIONS: bool = true;
    /// Option maps (without `scheme`) that exercise the scheme's variants;
    /// the shared model tests run every scheme with each.
    const EXAMPLES: &'static [&'static str] = &["{}"];
    /// Rejects options this run cannot use (paths relative to `positional`).
    fn check(_options: &Self::Options, _ctx: &SchemeContext) -> Result<(), FieldError> {
        Ok(())
    }
    fn build<const D: usize, Dev: Device<f32>>(
        options: Self::Options,
        ctx: BuildContext<'_, Dev>,
    ) -> Box<dyn PositionalLayer<D, Dev>>;
}

/// A validated scheme choice with its options in canonical form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionalConfig {
    pub scheme: String,
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Random sorted positions instead of 0..n (Ruoss et al. 2023).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub randomized: Option<Randomized>,
}

impl PositionalConfig {
    /// The positions of a (batch, seq) batch: 0..seq in every row, or a
    /// sorted random subset of [0, L) per row when randomized.
    pub fn positions(&self, batch: usize, seq: usize, rng: &mut ChaCha8Rng) -> Positions {
        match &self.randomized {
            None => Positions::contiguous(batch, seq),
            Some(r) => r.positions(batch, seq, rng),
        }
    }
}

crate::registry!(SchemeDef =>
    none::NoPosition,
    sinusoidal::Sinusoidal,
    learned::Learned,
    shaw::Shaw,
    t5::T5,
    alibi::Alibi,
    rope::Rope,
    multiscale::Multiscale,
    dynamic_dim::DynamicDim,
);

/// Parses and checks a `positional:` map (`scheme` plus that scheme's options).
pub fn parse(
    value: &serde_yaml::Value,
    ctx: &SchemeContext,
) -> Result<PositionalConfig, FieldError> {
    let (scheme, mut rest) = registry::split_choice(value, "scheme", "scheme", &names())?;
    let randomized = match rest.remove("randomized") {
        None | Some(serde_yaml::Value::Null) => None,
        Some(value) => {
            if !reads_positions(&scheme) {
                return Err(FieldError::new(
                    &["randomized"],
                    format!("scheme `{scheme}` reads no positions, so it cannot randomize them; valid: a scheme other than none"),
                ));
            }
            let r: Randomized = options::parse(&value)
                .map_err(|e| e.within(&[crate::options::Seg::Key("randomized".into())]))?;
            r.check(ctx)?;
            Some(r)
        }
    };
    let ctx = SchemeContext {
        max_position: randomized
            .as_ref()
            .map_or(ctx.max_position, |r| r.max_position - 1),
        ..ctx.clone()
    };
    let options = serde_yaml::Value::Mapping(rest);
    match visit(
        &scheme,
        Canonical {
            options: &options,
            ctx: &ctx,
        },
    )
    .expect("a registered name")
    {
        Err(err) => Err(FieldError {
            message: format!("{} (scheme `{scheme}`)", err.message),
            ..err
        }),
        Ok(options) => Ok(PositionalConfig {
            scheme,
            options,
            randomized,
        }),
    }
}

/// Builds the positional layer of a validated configuration.
pub fn build<const D: usize, Dev: Device<f32>>(
    config: &PositionalConfig,
    ctx: BuildContext<'_, Dev>,
) -> Box<dyn PositionalLayer<D, Dev>> {
    visit(&config.scheme, Build::<D, Dev> { config, ctx })
        .unwrap_or_else(|| unreachable!("scheme `{}` was validated when loaded", config.scheme))
}

/// Every scheme's [`SchemeDef::EXAMPLES`] as full `positional:` maps, in
/// listing order: what the shared tests run.
pub fn examples() -> Vec<String> {
    names()
        .into_iter()
        .flat_map(|name| {
            let options = visit(name, Examples).expect("a registered name");
            options.iter().map(move |o| {
                let rest = o
                    .trim()
                    .trim_start_matches('{')
                    .trim_end_matches('}')
                    .trim();
                if rest.is_empty() {
                    format!("{{scheme: {name}}}")
                } else {
                    format!("{{scheme: {name}, {rest}}}")
                }
            })
        })
        .collect()
}

/// Whether scheme `name` reads integer positions ([`SchemeDef::READS_POSITIONS`]).
pub fn reads_positions(name: &str) -> bool {
    visit(name, ReadsPositions).expect("a registered name")
}

struct ReadsPositions;
impl Visitor for ReadsPositions {
    type Output = bool;
    fn visit<T: SchemeDef>(self) -> bool {
        T::READS_POSITIONS
    }
}

struct Examples;
impl Visitor for Examples {
    type Output = &'static [&'static str];
    fn visit<T: SchemeDef>(self) -> Self::Output {
        T::EXAMPLES
    }
}

struct Canonical<'a> {
    options: &'a serde_yaml::Value,
    ctx: &'a SchemeContext,
}
impl Visitor for Canonical<'_> {
    type Output = Result<serde_json::Map<String, serde_json::Value>, FieldError>;
    fn visit<T: SchemeDef>(self) -> Self::Output {
        let (parsed, canonical) = registry::canonical::<T>(self.options)?;
        T::check(&parsed, self.ctx)?;
        Ok(canonical)
    }
}

struct Build<'a, 'r, const D: usize, Dev> {
    config: &'a PositionalConfig,
    ctx: BuildContext<'r, Dev>,
}
impl<const D: usize, Dev: Device<f32>> Visitor for Build<'_, '_, D, Dev> {
    type Output = Box<dyn PositionalLayer<D, Dev>>;
    fn visit<T: SchemeDef>(self) -> Self::Output {
        T::build::<D, Dev>(
            registry::from_canonical::<T>(&self.config.options),
            self.ctx,
        )
    }
}

/// The last value computed for a key: fixed tables (sinusoids, ALiBi biases,
/// rotations) are rebuilt only when the positions change, not every step.
pub struct Memo<K, V> {
    last: std::cell::RefCell<Option<(K, V)>>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            last: std::cell::RefCell::new(None),
        }
    }
}

impl<K: PartialEq + Clone, V: Clone> Memo<K, V> {
    pub fn get_or(&self, key: &K, compute: impl FnOnce() -> V) -> V {
        let mut last = self.last.borrow_mut();
        match &*last {
            Some((k, v)) if k == key => v.clone(),
            _ => {
                let v = compute();
                *last = Some((key.clone(), v.clone()));
                v
            }
        }
    }
}

/// Options struct for schemes that take none.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// A constant (untrainable) tensor on the owned tape, ready to be adopted by the model.
pub fn constant<S: Shape, Dev: Device<f32>>(
    dev: &Dev,
    data: Vec<f32>,
    shape: S,
) -> Tensor<S, f32, Dev, OTape<Dev>> {
    dev.tensor_from_vec(data, shape).retaped::<OTape<Dev>>()
}

//! Positional schemes, one file each. Each implements the hooks of
//! [`crate::nn::hooks::PositionalLayer`] through which position enters the
//! model: input vectors, attention-score biases, q/k rotations.
//!
//! Adding a scheme: write `positional/<name>.rs` with a [`SchemeDef`] and add
//! its type to the `registry!` line below.

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
use crate::options::{self, FieldError};
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde::{de::DeserializeOwned, Serialize};

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

/// Compile-time description of a scheme, registered once in `registry!`.
pub trait SchemeDef {
    const NAME: &'static str;
    const SUMMARY: &'static str;
    const CITATION: &'static str;
    type Options: DeserializeOwned + Serialize + Default;
    /// Whether the scheme reads integer positions (and so takes `randomized`).
    const READS_POSITIONS: bool = true;
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

/// For `posembed schemes`.
pub struct SchemeInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub citation: &'static str,
    pub defaults: fn() -> serde_json::Value,
    pub reads_positions: bool,
}

fn canonical<T: SchemeDef>(
    options: &serde_yaml::Value,
    ctx: &SchemeContext,
) -> Result<serde_json::Map<String, serde_json::Value>, FieldError> {
    let parsed: T::Options = options::parse(options)?;
    T::check(&parsed, ctx)?;
    match serde_json::to_value(&parsed) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => unreachable!("scheme options serialize to a map"),
    }
}

fn defaults<T: SchemeDef>() -> serde_json::Value {
    serde_json::to_value(T::Options::default()).expect("defaults serialize")
}

fn build_with<T: SchemeDef, const D: usize, Dev: Device<f32>>(
    config: &PositionalConfig,
    ctx: BuildContext<'_, Dev>,
) -> Box<dyn PositionalLayer<D, Dev>> {
    let options: T::Options =
        serde_json::from_value(serde_json::Value::Object(config.options.clone()))
            .expect("canonical options were validated when loaded");
    T::build::<D, Dev>(options, ctx)
}

macro_rules! registry {
    ($($def:ty),* $(,)?) => {
        /// Every scheme, in the order `posembed schemes` lists them.
        pub const SCHEMES: &[SchemeInfo] = &[$(SchemeInfo {
            name: <$def>::NAME,
            summary: <$def>::SUMMARY,
            citation: <$def>::CITATION,
            defaults: defaults::<$def>,
            reads_positions: <$def>::READS_POSITIONS,
        }),*];

        fn canonical_named(
            name: &str,
            options: &serde_yaml::Value,
            ctx: &SchemeContext,
        ) -> Option<Result<serde_json::Map<String, serde_json::Value>, FieldError>> {
            $(if name == <$def>::NAME {
                return Some(canonical::<$def>(options, ctx));
            })*
            None
        }

        /// Builds the positional layer of a validated configuration.
        pub fn build<const D: usize, Dev: Device<f32>>(
            config: &PositionalConfig,
            ctx: BuildContext<'_, Dev>,
        ) -> Box<dyn PositionalLayer<D, Dev>> {
            $(if config.scheme == <$def>::NAME {
                return build_with::<$def, D, Dev>(config, ctx);
            })*
            unreachable!("scheme `{}` was validated when loaded", config.scheme)
        }
    };
}

registry!(
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

pub fn names() -> Vec<&'static str> {
    SCHEMES.iter().map(|s| s.name).collect()
}

/// Parses and checks a `positional:` map (`scheme` plus that scheme's options).
pub fn parse(
    value: &serde_yaml::Value,
    ctx: &SchemeContext,
) -> Result<PositionalConfig, FieldError> {
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(FieldError::new(
            &[],
            "expected a map with `scheme` and its options",
        ));
    };
    let scheme = match map.get("scheme") {
        Some(serde_yaml::Value::String(name)) => name.clone(),
        Some(_) => {
            return Err(FieldError::new(
                &["scheme"],
                "expected a scheme name (a string)",
            ))
        }
        None => {
            return Err(FieldError::new(
                &[],
                format!(
                    "missing key `scheme`; valid schemes: {}",
                    names().join(", ")
                ),
            ))
        }
    };
    let mut rest = map.clone();
    rest.remove("scheme");
    let randomized = match rest.remove("randomized") {
        None | Some(serde_yaml::Value::Null) => None,
        Some(value) => {
            let info = SCHEMES.iter().find(|s| s.name == scheme);
            if info.is_some_and(|s| !s.reads_positions) {
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
    let ctx = &SchemeContext {
        max_position: randomized
            .as_ref()
            .map_or(ctx.max_position, |r| r.max_position - 1),
        ..ctx.clone()
    };
    match canonical_named(&scheme, &serde_yaml::Value::Mapping(rest), ctx) {
        None => Err(FieldError::new(
            &["scheme"],
            options::unknown_choice("scheme", &scheme, &names()),
        )),
        Some(Err(err)) => Err(FieldError {
            message: format!("{} (scheme `{scheme}`)", err.message),
            ..err
        }),
        Some(Ok(options)) => Ok(PositionalConfig {
            scheme,
            options,
            randomized,
        }),
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

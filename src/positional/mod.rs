//! Positional schemes, one file each, and the hooks through which position
//! enters the model: input vectors, attention-score biases, q/k rotations.
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

use crate::model::param::ParamVisitor;
use crate::options::{self, FieldError};
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;

pub use fusion::{Fusion, InputLayout};
pub use randomized::Randomized;
pub use rope::{Rotation, RotationTable};
/// T5's log-spaced distance buckets, also used by the position probe.
pub use t5::bucket as log_bucket;

/// Owned tape: hooks return tensors on it and the model adopts them into its own.
pub type OTape<Dev> = OwnedTape<f32, Dev>;
/// (batch, heads, query, key) scores or biases.
pub type Scores<Dev, T> = Tensor<(usize, usize, usize, usize), f32, Dev, T>;

/// A scheme's score bias. A fixed one (ALiBi) is off the tape, so the fused
/// CPU attention skips its (batch, heads, seq, seq) gradient (the composed
/// path still computes one and drops it); a trained one (built from
/// parameters) is on the tape and gets it. A bucketed one (T5's) is a
/// trained table read through a bucket per (query, key) pair: the fused CPU
/// attention reads the table and scatters its gradient itself instead of
/// going through dfdx's gather, permute and copies of a (batch, heads, seq,
/// seq) tensor, which took about 10% of an S1 step.
pub enum ScoreBias<Dev: Device<f32>, T = OTape<Dev>> {
    Fixed(Scores<Dev, NoneTape>),
    Trained(Scores<Dev, T>),
    Bucketed(BucketedBias<Dev, T>),
}

/// bias[b, h, i, j] = table[buckets[(b·seq + i)·seq + j], h].
pub struct BucketedBias<Dev: Device<f32>, T> {
    /// (buckets, heads)
    pub table: Tensor<(usize, usize), f32, Dev, T>,
    /// (batch·seq·seq,): the bucket of every (query, key) pair, row-major,
    /// on the host, where the fused CPU attention reads it.
    pub buckets: Arc<[usize]>,
    pub batch: usize,
    pub seq: usize,
}

impl<Dev: Device<f32>, T: Tape<f32, Dev>> BucketedBias<Dev, T> {
    /// The same bias on another tape.
    pub fn map_tape<U>(
        self,
        f: impl FnOnce(Tensor<(usize, usize), f32, Dev, T>) -> Tensor<(usize, usize), f32, Dev, U>,
    ) -> BucketedBias<Dev, U> {
        BucketedBias {
            table: f(self.table),
            buckets: self.buckets,
            batch: self.batch,
            seq: self.seq,
        }
    }

    /// The (batch, heads, seq, seq) bias as one tensor.
    pub fn into_scores(self) -> Scores<Dev, T> {
        let (b, s, heads) = (self.batch, self.seq, self.table.shape().1);
        let index = self
            .table
            .device()
            .tensor_from_vec(self.buckets.to_vec(), (b * s * s,));
        self.table
            .gather(index) // (b·s·s, heads)
            .reshape_like(&(b, s, s, heads))
            .permute::<_, Axes4<0, 3, 1, 2>>()
    }
}

impl<Dev: Device<f32>, T: Tape<f32, Dev>> ScoreBias<Dev, T> {
    /// The bias as one tensor on tape `T`, for the composed attention.
    pub fn into_tensor(self) -> Scores<Dev, T> {
        match self {
            ScoreBias::Fixed(bias) => bias.retaped(),
            ScoreBias::Trained(bias) => bias,
            ScoreBias::Bucketed(bias) => bias.into_scores(),
        }
    }
}
/// (batch, seq, D) input vectors on the owned tape.
pub type Embedded<const D: usize, Dev> = Tensor<(usize, usize, Const<D>), f32, Dev, OTape<Dev>>;
/// (batch, heads, seq, head_dim) queries, keys or values.
pub type Heads<Dev, T> = Tensor<(usize, usize, usize, usize), f32, Dev, T>;

/// The integer position of every token of a batch, row-major (batch, seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    pub batch: usize,
    pub seq: usize,
    pub values: Vec<usize>,
}

impl Positions {
    /// Positions 0..seq in every row.
    pub fn contiguous(batch: usize, seq: usize) -> Self {
        let values = (0..batch).flat_map(|_| 0..seq).collect();
        Positions { batch, seq, values }
    }

    pub fn row(&self, b: usize) -> &[usize] {
        &self.values[b * self.seq..(b + 1) * self.seq]
    }
}

/// Where a scheme's position signal enters the model. Every hook has a
/// neutral default, so a scheme implements only the ones it uses.
pub trait PositionalLayer<const D: usize, Dev: Device<f32>> {
    /// Added to the token embeddings: (batch, seq, D).
    fn input(&self, _pos: &Positions) -> Option<Embedded<D, Dev>> {
        None
    }
    /// Added to the scaled attention scores of `layer`: (batch, heads, seq, seq).
    fn score_bias(&self, _layer: usize, _pos: &Positions, _heads: usize) -> Option<ScoreBias<Dev>> {
        None
    }
    /// Added to the scaled scores of `layer`, computed from the (unscaled)
    /// queries (batch, heads, seq, head_dim): Shaw et al.'s key-side term.
    fn query_bias(
        &self,
        _layer: usize,
        _queries: Heads<Dev, OTape<Dev>>,
        _pos: &Positions,
    ) -> Option<Scores<Dev, OTape<Dev>>> {
        None
    }
    /// Added to the attention output of `layer` (batch, heads, seq, head_dim),
    /// computed from the attention weights: Shaw et al.'s value-side term.
    fn value_bias(
        &self,
        _layer: usize,
        _weights: Scores<Dev, OTape<Dev>>,
        _pos: &Positions,
    ) -> Option<Heads<Dev, OTape<Dev>>> {
        None
    }
    /// Whether `query_bias` or `value_bias` contributes to `layer`: its
    /// attention then runs composed from dfdx ops, as the fused sublayer
    /// has neither hook.
    fn taps_attention(&self, _layer: usize) -> bool {
        false
    }
    /// Rotation applied to queries and keys in every layer.
    fn rotation(&self, _pos: &Positions, _heads: usize, _head_dim: usize) -> Option<Rotation<Dev>> {
        None
    }
    /// How token and position share the input vector (concat fusion
    /// reserves the last dims for position).
    fn input_layout(&self) -> InputLayout {
        InputLayout::Add
    }
    /// Training progress in [0, 1]; returns the scheduled quantities to log
    /// as curves (name, value). Evaluation runs after `set_progress(1.0)`.
    fn set_progress(&mut self, _fraction: f64) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Trainable tensors, in a fixed order.
    fn visit_params(&mut self, _f: &mut ParamVisitor<Dev>) {}
}

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

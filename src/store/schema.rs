//! The frames' schema, in one place: every frame, every column, its type and
//! what it means. The frame writers build their columns from these
//! definitions, the report reads them through the same names, tests check
//! the written files against them, and README's "Results schema" is
//! [`markdown`]'s output.

use polars::prelude::DataType;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// An unsigned integer (u64).
    Count,
    /// A float (f64).
    Real,
    Flag,
    /// One column per resolved parameter (`model.d_model`, `positional.base`):
    /// i64 if every value is an integer, f64 if all are numbers, bool if all
    /// are booleans, else text; lists as JSON text; null where a run lacks the
    /// key (another scheme's option).
    Parameters,
}

pub struct ColumnDef {
    pub name: &'static str,
    pub kind: Kind,
    /// Whether the column may hold nulls.
    pub nullable: bool,
    pub meaning: &'static str,
}

impl ColumnDef {
    /// The polars type the column is written with (`None` for the parameter columns).
    pub fn dtype(&self) -> Option<DataType> {
        match self.kind {
            Kind::Text => Some(DataType::String),
            Kind::Count => Some(DataType::UInt64),
            Kind::Real => Some(DataType::Float64),
            Kind::Flag => Some(DataType::Boolean),
            Kind::Parameters => None,
        }
    }

    fn type_name(&self) -> String {
        let base = match self.kind {
            Kind::Text => "string",
            Kind::Count => "u64",
            Kind::Real => "f64",
            Kind::Flag => "bool",
            Kind::Parameters => "i64, f64, bool or string",
        };
        if self.nullable {
            format!("{base}, nullable")
        } else {
            base.to_string()
        }
    }
}

/// One frame: `<name>.parquet` and `<name>.csv` in `results/<experiment>/`.
pub struct FrameDef {
    pub name: &'static str,
    /// What one row is.
    pub row: &'static str,
    pub columns: &'static [ColumnDef],
}

const fn column(name: &'static str, kind: Kind, meaning: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        kind,
        nullable: false,
        meaning,
    }
}

const fn nullable(name: &'static str, kind: Kind, meaning: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        kind,
        nullable: true,
        meaning,
    }
}

use Kind::{Count, Flag, Parameters, Real, Text};

pub const RUN_ID: ColumnDef = column(
    "run_id",
    Text,
    "the first 12 hex digits of SHA-256 over the canonical resolved run, seed included",
);
pub const GROUP_ID: ColumnDef = column(
    "group_id",
    Text,
    "the same hash without the seed: the unit seeds are aggregated over",
);
pub const EXPERIMENT: ColumnDef = column("experiment", Text, "the experiment's `name`");
pub const SEED: ColumnDef = column("seed", Count, "the run's seed");
pub const PARAMETERS: ColumnDef = column(
    "<section>.<option>",
    Parameters,
    "one column per resolved parameter (dotted path, defaults filled in, sorted by name), e.g. `model.d_model`, `positional.scheme`, `task.train_lengths`",
);
pub const STATUS: ColumnDef = column("status", Text, "`ok`, `diverged` or `failed`");
pub const ERROR: ColumnDef = nullable(
    "error",
    Text,
    "the failure message (`diverged: loss …, gradient norm … at step N` for a divergence)",
);
pub const DIVERGED_STEP: ColumnDef =
    nullable("diverged_step", Count, "the step that went non-finite");
pub const PARAMS: ColumnDef = column("params", Count, "trainable parameters");
pub const TRAIN_TOKENS: ColumnDef = column(
    "train_tokens",
    Count,
    "input tokens trained on, padding excluded",
);
pub const TRAIN_SECONDS: ColumnDef = column("train_seconds", Real, "time in the training loop");
pub const TRAIN_TOKENS_PER_S: ColumnDef = column(
    "train_tokens_per_s",
    Real,
    "`train_tokens` / `train_seconds` (one thread)",
);
pub const WALL_TIME_S: ColumnDef = column(
    "wall_time_s",
    Real,
    "the whole run (build, training, evaluation)",
);
pub const FINAL_TRAIN_LOSS: ColumnDef = nullable(
    "final_train_loss",
    Real,
    "the last step's training loss over answer tokens; null if non-finite or failed",
);
pub const LENGTH_UNIT: ColumnDef = column(
    "length_unit",
    Text,
    "the task's unit (`symbols`, `digits`, `bits`, `pairs`, `bytes`)",
);
pub const LANGUAGE_MODEL: ColumnDef = column(
    "language_model",
    Flag,
    "true for language modelling (`text`): every position scored, perplexity the metric",
);
pub const TRAIN_MIN: ColumnDef = column("train_min", Count, "the shortest in-distribution length");
pub const TRAIN_MAX: ColumnDef = column("train_max", Count, "the longest in-distribution length");
pub const ID_EXACT_MATCH: ColumnDef = nullable(
    "id_exact_match",
    Real,
    "mean `exact_match` over the evaluated lengths within [`train_min`, `train_max`]; null if there are none",
);
pub const OOD_EXACT_MATCH: ColumnDef = nullable(
    "ood_exact_match",
    Real,
    "mean `exact_match` over the evaluated lengths above `train_max`; null if there are none",
);
pub const POSEMBED_VERSION: ColumnDef = column("posembed_version", Text, "the crate version");
pub const GIT_COMMIT: ColumnDef =
    nullable("git_commit", Text, "HEAD of the checkout it ran in, if any");
pub const GIT_DIRTY: ColumnDef = nullable(
    "git_dirty",
    Flag,
    "whether tracked files differed from HEAD",
);
pub const HOST: ColumnDef = nullable("host", Text, "`/etc/hostname`");
pub const RUSTC_VERSION: ColumnDef = nullable(
    "rustc_version",
    Text,
    "`rustc --version` of the compiler that built posembed",
);
pub const CPU_MODEL: ColumnDef = nullable(
    "cpu_model",
    Text,
    "the first `model name` of `/proc/cpuinfo`",
);
pub const THREADS: ColumnDef = column(
    "threads",
    Count,
    "the `--jobs` of the sweep that trained it",
);
pub const STARTED_AT_UNIX: ColumnDef = column(
    "started_at_unix",
    Real,
    "Unix time in seconds at the run's start",
);
pub const FINISHED_AT_UNIX: ColumnDef = column(
    "finished_at_unix",
    Real,
    "Unix time in seconds at the run's end",
);

pub const LENGTH: ColumnDef = column("length", Count, "the evaluation length, in `length_unit`");
pub const IN_DISTRIBUTION: ColumnDef = column(
    "in_distribution",
    Flag,
    "`train_min` ≤ `length` ≤ `train_max`",
);
pub const TOKEN_ACC: ColumnDef =
    column("token_acc", Real, "fraction of answer tokens (answer and EOS) predicted correctly by argmax under teacher forcing");
pub const EXACT_MATCH: ColumnDef = column(
    "exact_match",
    Real,
    "fraction of sequences with every answer token correct (equal to greedy decoding for these deterministic tasks)",
);
pub const LOSS: ColumnDef = column(
    "loss",
    Real,
    "mean cross-entropy in nats per answer token (per byte for `text`)",
);
pub const PERPLEXITY: ColumnDef = column("perplexity", Real, "exp(`loss`)");
pub const BITS_PER_BYTE: ColumnDef = nullable(
    "bits_per_byte",
    Real,
    "language modelling only: `loss` / ln 2",
);
pub const LAST_QUARTER_LOSS: ColumnDef = nullable(
    "last_quarter_loss",
    Real,
    "language modelling only: the loss over the last quarter of each window's positions",
);
pub const N: ColumnDef = column("n", Count, "sequences scored (windows for `text`)");

pub const STEP: ColumnDef = column(
    "step",
    Count,
    "the step count, every `train.log_every` steps and at the last step",
);
pub const METRIC: ColumnDef = column(
    "metric",
    Text,
    "`train_loss`, `grad_norm` (global, before clipping), `lr`; `position_loss` or `probe_loss` with `train.position_loss`; a scheme's schedule (`dynamic_dim.k`)",
);
pub const CURVE_VALUE: ColumnDef = column("value", Real, "losses and `grad_norm`: the mean over the steps since the previous point; `lr` and schedules: the value at that step");

pub const KIND: ColumnDef = column(
    "kind",
    Text,
    "`cosine` (input schemes: cosine similarity of the trained position vectors of i and j), `bias` (ALiBi, T5: the first layer's score bias of query i on key j), `rotary` (rotary schemes: the q·k score of a fixed unit vector pair at offset i)",
);
pub const PANEL: ColumnDef = column(
    "panel",
    Text,
    "`position vectors` (cosine), or `head 0` and the last head, `head <H−1>` (bias, rotary)",
);
pub const I: ColumnDef = column("i", Count, "the cell's row");
pub const J: ColumnDef = column("j", Count, "the cell's column; 0 for rotary curves");
pub const CELL_VALUE: ColumnDef = nullable(
    "value",
    Real,
    "null for masked cells (keys after the query) and non-finite values",
);

pub const RUNS: FrameDef = FrameDef {
    name: "runs",
    row: "run",
    columns: &[
        RUN_ID,
        GROUP_ID,
        EXPERIMENT,
        SEED,
        PARAMETERS,
        STATUS,
        ERROR,
        DIVERGED_STEP,
        PARAMS,
        TRAIN_TOKENS,
        TRAIN_SECONDS,
        TRAIN_TOKENS_PER_S,
        WALL_TIME_S,
        FINAL_TRAIN_LOSS,
        LENGTH_UNIT,
        LANGUAGE_MODEL,
        TRAIN_MIN,
        TRAIN_MAX,
        ID_EXACT_MATCH,
        OOD_EXACT_MATCH,
        POSEMBED_VERSION,
        GIT_COMMIT,
        GIT_DIRTY,
        HOST,
        RUSTC_VERSION,
        CPU_MODEL,
        THREADS,
        STARTED_AT_UNIX,
        FINISHED_AT_UNIX,
    ],
};

pub const EVAL: FrameDef = FrameDef {
    name: "eval",
    row: "run × evaluated length (none for failed or diverged runs)",
    columns: &[
        RUN_ID,
        LENGTH,
        LENGTH_UNIT,
        TRAIN_MIN,
        TRAIN_MAX,
        IN_DISTRIBUTION,
        TOKEN_ACC,
        EXACT_MATCH,
        LOSS,
        PERPLEXITY,
        BITS_PER_BYTE,
        LAST_QUARTER_LOSS,
        N,
    ],
};

pub const CURVES: FrameDef = FrameDef {
    name: "curves",
    row: "run × logged step × metric",
    columns: &[RUN_ID, STEP, METRIC, CURVE_VALUE],
};

pub const POSITIONS: FrameDef = FrameDef {
    name: "positions",
    row: "run × panel × cell, for completed runs whose scheme has a static position structure (not NoPE, not Shaw), over the first n ≤ 32 positions",
    columns: &[RUN_ID, KIND, PANEL, I, J, CELL_VALUE],
};

/// Every frame, in the order they are written.
pub const FRAMES: [&FrameDef; 4] = [&RUNS, &EVAL, &CURVES, &POSITIONS];

/// The schema as Markdown tables, one per frame (README's "Results schema").
pub fn markdown() -> String {
    let mut out = String::new();
    for frame in FRAMES {
        out.push_str(&format!(
            "`{}.parquet` (and `.csv`), one row per {}:\n\n| column | type | meaning |\n|---|---|---|\n",
            frame.name, frame.row
        ));
        for c in frame.columns {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                c.name,
                c.type_name(),
                c.meaning
            ));
        }
        out.push('\n');
    }
    out
}

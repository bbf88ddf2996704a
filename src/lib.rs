//! posembed: a research harness for positional-embedding ablations.
//!
//! The pipeline runs one way: [`experiment`] (YAML → runs) → [`training`]
//! (tasks, model, train, eval) → [`store`] (records, frames) → [`report`],
//! with [`sweep`] driving many runs. The modules below are layers: each
//! uses only the modules above it (`tests/layers.rs` checks this), so the
//! dependency graph has no cycles.

/// Typed YAML options, file locations, parameter columns, seeded streams.
pub mod options;

/// Neural-network primitives: parameters, positional hooks, rotations, kernels.
pub mod nn;

/// Positional schemes, one file each.
pub mod positional;
/// Tasks, one file each.
pub mod tasks;

/// The Transformer with compile-time widths.
pub mod model;

/// One run: its specification, training, evaluation and record.
pub mod training;

/// Records and frames on disk.
pub mod store;

/// Tables and charts from the frames.
pub mod report;

/// The experiment file and its plan (it reads every stage's options).
pub mod experiment;

/// Sweeps: the parallel runner, merge, SLURM.
pub mod sweep;

/// Throughput measurements (`posembed bench`).
pub mod bench;

//! posembed: a research harness for positional-embedding ablations.
//!
//! The pipeline runs one way: [`config`] → [`plan`] → [`run`] (tasks, model,
//! train, eval) → [`results`] → [`report`], with [`runner`] driving sweeps.

pub mod bench;
pub mod config;
pub mod eval;
pub mod locations;
pub mod model;
pub mod options;
pub mod plan;
pub mod positional;
pub mod record;
pub mod report;
pub mod results;
pub mod run;
pub mod runner;
pub mod seeds;
pub mod slurm;
pub mod tasks;
pub mod train;

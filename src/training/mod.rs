//! One run, trained and evaluated: its specification and identity
//! ([`spec`]), batches of examples ([`batch`]), the training loop ([`train`]), evaluation by length
//! ([`eval`]), the pipeline that runs them ([`run`]) and what it records
//! ([`record`]).

pub mod batch;
pub mod eval;
pub mod record;
pub mod run;
pub mod spec;
pub mod train;

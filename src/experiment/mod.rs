//! The experiment file: YAML parsing and validation ([`config`]) and its
//! expansion into runs ([`plan`]). It reads every stage's options, so it
//! sits above them in the dependency order.

pub mod config;
pub mod plan;

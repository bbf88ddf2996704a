//! Sweeps: the parallel runner with resume and shards ([`runner`]) and
//! SLURM job arrays ([`slurm`]).

pub mod runner;
pub mod slurm;

//! What is kept on disk: run records ([`records`]), the tidy frames built
//! from them ([`frames`]), and whole-file writes ([`atomic`]).

pub mod atomic;
pub mod frames;
pub mod records;

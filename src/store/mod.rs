//! What is kept on disk: run records ([`records`]), the tidy frames built
//! from them ([`frames`]) and their columns ([`schema`]), and whole-file
//! writes ([`atomic`]).

pub mod atomic;
pub mod frames;
pub mod records;
pub mod schema;

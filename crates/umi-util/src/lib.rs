//! Helpers every umi crate shares, kept in one leaf crate (no dependencies) so that the model,
//! data, tools and training crates spell each of them once:
//!
//! - [`SplitMix64`]: the seeded random stream behind LoRA initialisation, sampling, random test
//!   weights, the order of training batches and preference pairs, and self-rewarding's candidate
//!   seeds; it gives the same numbers on every platform, so the browser reproduces native runs;
//! - [`write_atomically`]: a file is replaced whole or not at all (checkpoints, adapters, reports,
//!   the demo tool server's state).
#![warn(missing_docs)]

mod fs;
mod rng;

pub use fs::write_atomically;
pub use rng::SplitMix64;

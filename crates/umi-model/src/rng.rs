//! The seeded random stream (splitmix64) shared by every umi crate: [`umi_util::SplitMix64`].

pub use umi_util::SplitMix64;

//! The model worker (the `umi-worker` binary, a dedicated worker): the GPU, the model store, the
//! agent runs and fine-tuning, driven by the page's messages.

pub mod adapters;
pub mod engine;
pub mod gpu;
pub mod judge;
pub mod run;
pub mod scope;
pub mod shipped;
pub mod store;
pub mod train;

/// Prompt tokens per prefill chunk in agent runs: small enough that a software adapter reports
/// progress and honours Stop within a second or two on the default model, large enough that a
/// real GPU loses little to the extra passes (each chunk ends with a one-value read that waits
/// for it). The load's speed measurement prefills one chunk of this size.
pub const PREFILL_CHUNK: usize = 32;

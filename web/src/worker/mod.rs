//! The model worker (the `umi-worker` binary, a dedicated worker): the GPU, the model store, the
//! agent runs and fine-tuning, driven by the page's messages.

pub mod engine;
pub mod gpu;
pub mod run;
pub mod scope;
pub mod shipped;
pub mod store;
pub mod train;

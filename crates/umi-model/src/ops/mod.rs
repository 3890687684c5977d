//! Fused tensor operations of [`crate::llama`] and [`crate::LoraLinear`], with kernels of their
//! own on the CPU backend (flex) and burn's composed operations elsewhere (wgpu / WebGPU):
//!
//! - [`softmax_causal`] / [`softmax_last`]: attention probabilities, the causal mask an index
//!   bound;
//! - [`swiglu`]: the MLP's `silu(gate) ⊙ up`;
//! - [`dropout`]: LoRA's input dropout, its mask drawn on the host.
//!
//! Each CPU kernel is a burn backend extension (`#[backend_extension(Flex, Autodiff)]`) with an
//! autodiff node of its own, so training differentiates the fused form instead of the pieces.

mod dropout;
#[cfg(feature = "flex")]
mod host;
#[cfg(feature = "flex")]
pub mod simd;
mod softmax;
mod swiglu;

pub use dropout::dropout;
pub use softmax::{Causal, softmax_causal, softmax_last};
pub use swiglu::swiglu;

//! Fused tensor operations of [`crate::llama`] and [`crate::LoraLinear`], with kernels of their
//! own on the CPU backend (flex) and burn's composed operations elsewhere (wgpu / WebGPU):
//!
//! - [`attention`]: `softmax(q · kᵀ) · v` of a few new positions over the cached ones (decoding);
//!   [`attention_with_prefix`] the same for sequences continuing one shared prompt (sampling);
//! - [`softmax_causal`] / [`softmax_last`]: attention probabilities, the causal mask an index
//!   bound;
//! - [`swiglu`]: the MLP's `silu(gate) ⊙ up`;
//! - [`rope`]: the rotary position embedding of queries and keys;
//! - [`rms_norm`]: the layers' root-mean-square norm;
//! - [`dropout`]: LoRA's input dropout, its mask drawn on the host;
//! - [`matmul_weight`]: a decode step's few rows times an f32 weight, on all threads;
//! - [`lora_add`]: a LoRA adapter's share of a projection while training;
//! - [`linear_cross_entropy`]: the LM head and the training loss, without a logits tensor.
//!
//! Each CPU kernel is a burn backend extension (`#[backend_extension(Flex, Autodiff)]`) with an
//! autodiff node of its own, so training differentiates the fused form instead of the pieces.

mod attention;
pub mod awake;
mod causal_attention;
mod cross_entropy;
mod dropout;
#[cfg(feature = "flex")]
pub(crate) mod host;
mod lora;
mod matvec;
mod rms_norm;
mod rope;
pub mod simd;
mod softmax;
mod swiglu;

/// `f` of `x`'s values as f32, row-major, on the host: read in place on the CPU backend (no
/// copy for a dense f32 tensor that autodiff does not track: [`host::flex_float`]), read back
/// through `into_data` otherwise. For host kernels over a decode step's few rows (the
/// quantized products, the LM head's logits).
///
/// # Panics
///
/// If the values cannot be read as f32 (a device read-back that fails).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn host_values<const D: usize, R>(
    x: burn::tensor::Tensor<D>,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    #[cfg(feature = "flex")]
    if let Some(t) = host::flex_float(&x) {
        drop(x);
        let t = host::dense_f32(t);
        return f(host::values(&t));
    }
    let data = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 after convert");
    f(&data)
}

pub use attention::{attention, attention_with_prefix};
pub use cross_entropy::linear_cross_entropy;
pub use dropout::dropout;
pub use lora::lora_add;
pub use matvec::{WeightLayout, matmul_weight};
pub use rms_norm::rms_norm;
pub use rope::rope;
pub use softmax::{Causal, softmax_causal, softmax_last};
pub use swiglu::swiglu;

/// The largest absolute difference between two tensors' values (the kernels' tests).
#[cfg(all(test, feature = "flex"))]
fn max_abs_diff<const D: usize>(a: burn::tensor::Tensor<D>, b: burn::tensor::Tensor<D>) -> f32 {
    let (a, b) = (a.into_data(), b.into_data());
    a.as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(b.as_slice::<f32>().unwrap())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

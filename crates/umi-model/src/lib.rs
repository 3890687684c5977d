//! Llama for umi on burn: the model every α-UMi role (planner, caller, summarizer) runs on.
//!
//! - [`LlamaConfig`]: hyperparameters with Hugging Face `config.json` names;
//! - [`Llama`]: RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU MLP, optional tied
//!   embeddings, [`KvCache`]; projections are [`LoraLinear`]s with a slot for LoRA adapters;
//!   [`Llama::named_params`] names every parameter as Hugging Face and PEFT files do;
//! - [`load_model`]: Hugging Face safetensors folders and GGUF v3 files (quantized types
//!   dequantized at load), with their tokenizer ([`Tokenizer`]) and chat template;
//! - [`generate`]: greedy or seeded temperature/top-p decoding with streaming.
//!
//! The architecture follows `transformers`' `modeling_llama.py`; GGUF conventions follow
//! llama.cpp (`convert_hf_to_gguf.py`, `ggml-quants.c`).
#![warn(missing_docs)]

mod cache;
mod chat;
mod config;
mod device;
mod error;
mod generate;
mod linear;
mod llama;
mod load;
mod lora;
pub mod ops;
mod params;
#[cfg(not(target_family = "wasm"))]
pub mod qmatmul;
mod rng;
mod rope;
mod tokenizer;
pub mod weights;

pub use burn::tensor::Device;
pub use cache::{KvCache, PrefixCache};
pub use chat::{ChatMessage, ChatRole, ChatTemplate, SMOLLM_DEFAULT_SYSTEM};
pub use config::{LlamaConfig, TokenIds};
#[cfg(feature = "wgpu")]
pub use device::wgpu_device_async;
pub use device::{Backend, GpuInfo};
pub use error::{Error, Result};
pub use generate::{
    FinishReason, GenerationConfig, GenerationOutput, Progress, RaggedBatch, Sampler, TextStream,
    argmax, generate, generate_cached, generate_many, next_token_logits, next_token_logits_batch,
    sample_each,
};
#[cfg(not(target_family = "wasm"))]
pub use linear::QUANTIZED_MAX_ROWS;
pub use linear::{LoraAdapter, LoraLinear};
pub use llama::{Attention, DecoderLayer, Llama, Mlp, RmsNorm};
#[cfg(not(target_family = "wasm"))]
pub use load::load_model_quantized;
pub use load::{
    LoadedModel, load_gguf_bytes, load_hf_files, load_hf_folder, load_model, load_model_in,
};
#[cfg(not(target_family = "wasm"))]
pub use lora::merge_lora_quantized;
pub use lora::{
    AdapterSet, LoraConfig, PeftFiles, attach_lora, convert_peft_f16, hf_state_dict, load_peft,
    merge_lora, peft_files, peft_from_bytes, peft_state_dict, peft_state_dict_async, read_peft,
    save_hf, save_hf_tokenizer, save_peft,
};
pub use params::ParamRef;
pub use rng::SplitMix64;
pub use rope::RotaryEmbedding;
pub use tokenizer::Tokenizer;
pub use weights::{LoadProgress, QFormat, WeightDtype};

/// Re-exported so downstream crates use the same burn.
pub use burn;

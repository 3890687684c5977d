//! GLPFT training (Shen et al. 2024, §3.2): one backbone fine-tuned on whole trajectories
//! (global), then copies specialised per role (local). The same loop serves both, natively and
//! on wasm32 (no `burn-train`: it is not wasm-ready), in full fine-tuning or LoRA.
//!
//! - [`TrainConfig`]: learning rate, epochs, warm-up ratio, weight decay, batch size, gradient
//!   accumulation, clipping, seed, optional [`LoraConfig`]; presets from GLPFT's README;
//! - [`causal_lm_loss`]: mean token cross-entropy over unmasked target tokens (shifted by one, as
//!   Hugging Face's `ForCausalLMLoss`);
//! - [`cosine_lr`]: linear warm-up then cosine decay to 0 (`get_cosine_schedule_with_warmup`);
//! - [`Trainer`]: AdamW (burn-optim, same update as `torch.optim.AdamW`), global-norm gradient
//!   clipping (`clip_grad_norm_`), accumulation, and checkpoints (PEFT adapter or HF folder +
//!   optimizer state + progress) written atomically and resumed after a kill.
#![warn(missing_docs)]

mod checkpoint;
mod loss;
mod trainer;

pub use checkpoint::{Checkpoint, TrainerState, latest_checkpoint};
pub use loss::causal_lm_loss;
pub use trainer::{StepStats, TrainConfig, Trainer, cosine_lr};
pub use umi_model::LoraConfig;

/// Everything that stops training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Model loading or saving failed.
    #[error(transparent)]
    Model(#[from] umi_model::Error),
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The settings or the data cannot train.
    #[error("{0}")]
    Invalid(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

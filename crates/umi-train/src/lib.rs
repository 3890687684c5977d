//! GLPFT training (Shen et al. 2024, §3.2): one backbone fine-tuned on whole trajectories
//! (global), then copies specialised per role (local). The same loop serves both, natively and
//! on wasm32 (no `burn-train`: it is not wasm-ready), in full fine-tuning or LoRA.
//!
//! - [`TrainConfig`]: learning rate, epochs, warm-up ratio, weight decay, batch size, gradient
//!   accumulation, clipping, seed, optional [`LoraConfig`]; presets from GLPFT's README;
//! - [`causal_lm_loss`]: mean token cross-entropy over unmasked target tokens (shifted by one, as
//!   Hugging Face's `ForCausalLMLoss`); [`causal_lm_loss_from_hidden`], the same from hidden
//!   states with the LM head run only where a target is predicted; [`batch_loss`], the same
//!   for a micro-batch whose rows share a prompt prefix (the tool documentation of α-UMi
//!   prompts), computed once for all rows (what the [`Trainer`] uses);
//! - [`cosine_lr`]: linear warm-up then cosine decay to 0 (`get_cosine_schedule_with_warmup`);
//! - [`Trainer`]: AdamW (burn-optim, same update as `torch.optim.AdamW`), global-norm gradient
//!   clipping (`clip_grad_norm_`), accumulation, and (natively) checkpoints (PEFT adapter or HF
//!   folder + optimizer state + progress) written atomically and resumed after a kill;
//! - [`Trainer::dpo_step`]: step-level DPO on preference pairs ([`PairExample`], [`DpoConfig`]),
//!   the training half of process-based self-rewarding (Zhang et al. 2025), with TRL's losses
//!   and metrics; [`completion_logps`] scores several completions of one prompt computed once;
//!   [`prepare_pairs`], [`PreparedPairs::score_reference`] and [`check_reference`] make pair rows
//!   ready (the one path of `umi train dpo` and the web app's Fine-tune panel);
//! - [`tokenize_examples`], [`epoch_steps`], [`TrainerState::next_step_batches`]: the batches
//!   of each step;
//! - [`FineTuneRun`]: a run as one value (trainer, state, [`Objective`]: SFT samples or DPO
//!   pairs) advanced a step at a time, what `umi train` and the web app's Fine-tune panel drive.
//!
//! A step is `async` ([`Trainer::train_step`]): it reads the loss back from the device, which
//! WebGPU in a browser only allows asynchronously. Native callers use `pollster::block_on`; the
//! web app awaits it in its worker. Checkpoint files (`std::fs`) are native-only.
#![warn(missing_docs)]

mod checkpoint;
mod data;
mod dpo;
mod loss;
mod run;
mod trainer;

pub use checkpoint::{Checkpoint, TrainerState};
#[cfg(not(target_family = "wasm"))]
pub use checkpoint::{latest_checkpoint, read_checkpoint};
pub use data::{epoch_steps, steps_per_epoch, tokenize_examples};
pub use dpo::{
    DpoConfig, DpoLoss, DpoStats, PairExample, PreparedPairs, ReferenceTolerance,
    adapter_lora_config, check_reference, completion_logps, dpo_loss, pair_epoch_steps, pair_logps,
    pair_tokens, prepare_pairs,
};
pub use loss::{
    MAX_ATTENTION_SCORES, MIN_SHARED_PREFIX, batch_hidden, batch_loss, causal_lm_loss,
    causal_lm_loss_from_hidden, shared_prefix_len, split_rows,
};
pub use run::{FineTuneRun, Objective};
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
    /// A value could not be read back from the device.
    #[error("reading back from the device failed: {0}")]
    Read(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

//! The settings and metrics of step-level DPO, apart from the step itself (`dpo/mod.rs`), so
//! that the trainer's step record and checkpoints can name them without depending on it.

use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// The preference loss of one pair, from its implicit reward difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum DpoLoss {
    /// `−log σ(β((π⁺ − ρ⁺) − (π⁻ − ρ⁻)))`: DPO (TRL `"sigmoid"`), the default.
    Sigmoid,
    /// As `Sigmoid` with each log-ratio divided by its completion's token count (TRL
    /// `"sigmoid_norm"`): less pull towards longer steps.
    SigmoidNorm,
    /// Robust DPO (TRL `"robust"`) for noisy preferences, such as a small model judging itself:
    /// `(−(1 − ε) log σ(βδ) + ε log σ(−βδ)) / (1 − 2ε)`, `ε` the share of pairs assumed flipped.
    Robust {
        /// `ε`, in `[0, 0.5)`.
        label_smoothing: f64,
    },
}

/// Step-DPO settings (psrlm-design.md §2.10; defaults are TRL's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpoConfig {
    /// `β`, the strength of the pull towards the reference (TRL default 0.1).
    pub beta: f64,
    /// The loss.
    pub loss: DpoLoss,
    /// Weight of an added SFT term, the mean negative log-likelihood of the chosen steps' tokens
    /// (TRL `loss_type=["sigmoid", "sft"]`); 0 (the default) turns it off.
    pub sft_weight: f64,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss: DpoLoss::Sigmoid,
            sft_weight: 0.0,
        }
    }
}

impl DpoConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] naming the bad value: `beta` not positive and finite,
    /// `label_smoothing` outside `[0, 0.5)`, `sft_weight` negative or not finite.
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(TrainError::Invalid(format!(
                "DPO beta must be a positive number, got {}",
                self.beta
            )));
        }
        if let DpoLoss::Robust { label_smoothing } = self.loss
            && !(0.0..0.5).contains(&label_smoothing)
        {
            return Err(TrainError::Invalid(format!(
                "the robust DPO loss needs label smoothing in [0, 0.5), got {label_smoothing}"
            )));
        }
        if !(self.sft_weight.is_finite() && self.sft_weight >= 0.0) {
            return Err(TrainError::Invalid(format!(
                "the SFT weight must be 0 or more, got {}",
                self.sft_weight
            )));
        }
        Ok(())
    }
}

/// What a DPO step measured, averaged over its pairs (TRL's metric names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpoStats {
    /// `β (π⁺ − ρ⁺)` [`rewards/chosen`].
    pub rewards_chosen: f64,
    /// `β (π⁻ − ρ⁻)` [`rewards/rejected`].
    pub rewards_rejected: f64,
    /// Chosen minus rejected reward [`rewards/margins`].
    pub rewards_margin: f64,
    /// Share of pairs whose chosen reward is higher [`rewards/accuracies`].
    pub rewards_accuracy: f64,
    /// Policy `Σ log π(chosen)` [`logps/chosen`], nats.
    pub logps_chosen: f64,
    /// Policy `Σ log π(rejected)` [`logps/rejected`], nats.
    pub logps_rejected: f64,
}

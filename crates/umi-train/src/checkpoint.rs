//! Checkpoints: `checkpoint-NNNNNN/` folders holding the weights people can use elsewhere (a
//! PEFT adapter in `adapter/`, or a Hugging Face folder in `model/`), the optimizer state
//! (`optimizer.bpk`, burn-pack) and the progress (`trainer_state.json`). Each is written under a
//! temporary name and renamed when complete, so a kill never leaves a half checkpoint that a
//! resume would load. Files are native-only (`std::fs`); the progress ([`TrainerState`]) is
//! shared with the browser, which keeps a run in memory and its adapter in the Cache API.

#[cfg(not(target_family = "wasm"))]
use std::path::Path;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::trainer::{StepStats, TrainConfig};
#[cfg(not(target_family = "wasm"))]
use crate::{Result, TrainError, trainer::Trainer};

/// Progress saved with a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Optimizer steps planned.
    pub total_steps: usize,
    /// Epoch in progress (from 0).
    pub epoch: usize,
    /// Optimizer steps done within `epoch` (the batch order of an epoch is a function of the
    /// seed and the epoch, so a resume skips exactly these).
    pub steps_in_epoch: usize,
    /// The settings of the run.
    pub config: TrainConfig,
    /// Every step so far (the loss curve).
    pub history: Vec<StepStats>,
}

/// A complete checkpoint on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Its folder.
    pub dir: PathBuf,
    /// Its progress.
    pub state: TrainerState,
}

impl Checkpoint {
    /// The PEFT adapter folder (LoRA runs).
    pub fn adapter_dir(&self) -> PathBuf {
        self.dir.join("adapter")
    }

    /// The Hugging Face model folder (full fine-tuning runs).
    pub fn model_dir(&self) -> PathBuf {
        self.dir.join("model")
    }
}

#[cfg(not(target_family = "wasm"))]
fn err(path: &Path, message: impl ToString) -> TrainError {
    TrainError::Checkpoint {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The newest complete checkpoint in `out_dir` (highest step), if any. Folders without a
/// readable `trainer_state.json` are ignored (with a warning on stderr): they are not complete.
#[cfg(not(target_family = "wasm"))]
pub fn latest_checkpoint(out_dir: &Path) -> Option<Checkpoint> {
    let mut best: Option<Checkpoint> = None;
    for entry in std::fs::read_dir(out_dir).ok()?.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("checkpoint-") else {
            continue;
        };
        if n.parse::<usize>().is_err() {
            continue;
        }
        let state = std::fs::read_to_string(dir.join("trainer_state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<TrainerState>(&t).ok());
        let Some(state) = state else {
            eprintln!(
                "warning: {} has no readable trainer_state.json; ignoring it",
                dir.display()
            );
            continue;
        };
        if best.as_ref().is_none_or(|b| state.step > b.state.step) {
            best = Some(Checkpoint { dir, state });
        }
    }
    best
}

#[cfg(not(target_family = "wasm"))]
impl Trainer {
    /// Writes `checkpoint-{step:06}/` under `out_dir` atomically and returns it.
    ///
    /// # Errors
    ///
    /// [`TrainError::Checkpoint`] when a file cannot be written (the previous checkpoints stay).
    pub fn save_checkpoint(&self, out_dir: &Path, state: &TrainerState) -> Result<Checkpoint> {
        let final_dir = out_dir.join(format!("checkpoint-{:06}", state.step));
        let tmp = out_dir.join(format!(".checkpoint-{:06}.partial", state.step));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| err(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| err(&tmp, e))?;
        let model = self.inference_model();
        match &self.config.lora {
            Some(lora) => umi_model::save_peft(&model, lora, &tmp.join("adapter"))?,
            None => umi_model::save_hf(&model, &tmp.join("model"))?,
        }
        self.optimizer()
            .save(tmp.join("optimizer.bpk"))
            .map_err(|e| err(&tmp, format!("saving the optimizer state: {e:?}")))?;
        let json = serde_json::to_string_pretty(state).expect("state serialises");
        std::fs::write(tmp.join("trainer_state.json"), json).map_err(|e| err(&tmp, e))?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| err(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| err(&final_dir, e))?;
        Ok(Checkpoint {
            dir: final_dir,
            state: state.clone(),
        })
    }

    /// Restores the optimizer state of `checkpoint` (the weights are loaded by the caller, with
    /// the base model, before building the trainer) and the step counter.
    ///
    /// # Errors
    ///
    /// [`TrainError::Checkpoint`] when `optimizer.bpk` cannot be read.
    pub fn resume_from(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let path = checkpoint.dir.join("optimizer.bpk");
        let fresh = burn::optim::AdamWConfig::new().init();
        let current = std::mem::replace(self.optimizer_mut(), fresh);
        let loaded = current
            .load(&path)
            .map_err(|e| err(&path, format!("loading the optimizer state: {e:?}")))?;
        self.set_optimizer(loaded);
        self.step = checkpoint.state.step;
        Ok(())
    }
}

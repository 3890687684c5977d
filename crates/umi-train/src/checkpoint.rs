//! Checkpoints: `checkpoint-NNNNNN/` folders holding the weights people can use elsewhere (a
//! PEFT adapter in `adapter/`, or a Hugging Face folder in `model/`), the optimizer state
//! (`optimizer.bpk`, burn-pack) and the progress (`trainer_state.json`). Each is written under a
//! temporary name and renamed when complete, so a kill never leaves a half checkpoint that a
//! resume would load; a resume also checks the files and skips any incomplete folder. Files are
//! native-only (`std::fs`); the progress ([`TrainerState`]) is shared with the browser, which
//! keeps a run in memory and its adapter in the Cache API.

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
    /// The DPO settings of a DPO run ([`crate::Trainer::dpo_step`]); `None` for SFT. A resume
    /// must use the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<crate::dpo::settings::DpoConfig>,
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

/// The newest complete checkpoint in `out_dir` (highest step), if any. A `checkpoint-N` folder
/// that is not complete (see [`read_checkpoint`]) is skipped with a warning on stderr, and so
/// are the temporary folders of an interrupted save (`.checkpoint-N.partial`, `.checkpoint-N.old`):
/// the newest complete one is returned instead. A complete `.checkpoint-N.old` without its
/// `checkpoint-N` (a kill between a save's two renames) is renamed back first.
#[cfg(not(target_family = "wasm"))]
pub fn latest_checkpoint(out_dir: &Path) -> Option<Checkpoint> {
    // A kill between a save's two renames leaves the previous complete copy of a step as
    // `.checkpoint-N.old` and no `checkpoint-N`: put it back.
    for entry in std::fs::read_dir(out_dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(step) = name
            .strip_prefix(".checkpoint-")
            .and_then(|n| n.strip_suffix(".old"))
        else {
            continue;
        };
        let target = out_dir.join(format!("checkpoint-{step}"));
        if !target.exists()
            && read_checkpoint(&entry.path()).is_ok()
            && std::fs::rename(entry.path(), &target).is_ok()
        {
            eprintln!(
                "warning: {} was restored from an interrupted save",
                target.display()
            );
        }
    }
    let mut best: Option<Checkpoint> = None;
    for entry in std::fs::read_dir(out_dir).ok()?.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".checkpoint-") {
            eprintln!(
                "warning: {} is left from an interrupted save; ignoring it",
                dir.display()
            );
            continue;
        }
        let Some(n) = name.strip_prefix("checkpoint-") else {
            continue;
        };
        if n.parse::<usize>().is_err() {
            continue;
        }
        let checkpoint = match read_checkpoint(&dir) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                eprintln!("warning: {e}; ignoring it");
                continue;
            }
        };
        if best
            .as_ref()
            .is_none_or(|b| checkpoint.state.step > b.state.step)
        {
            best = Some(checkpoint);
        }
    }
    best
}

/// The checkpoint in `dir` if it is complete: a readable `trainer_state.json`, `optimizer.bpk`,
/// and the weights (`adapter/adapter_config.json` + `adapter/adapter_model.safetensors` for LoRA
/// runs, `model/config.json` + `model/model.safetensors` otherwise), none of them empty.
///
/// # Errors
///
/// [`TrainError::Checkpoint`] naming the folder and the first missing or unreadable file.
#[cfg(not(target_family = "wasm"))]
pub fn read_checkpoint(dir: &Path) -> Result<Checkpoint> {
    let path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| err(&path, e))?;
    let weights = match state.config.lora {
        Some(_) => [
            "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors",
        ],
        None => ["model/config.json", "model/model.safetensors"],
    };
    for file in weights.iter().chain(&["optimizer.bpk"]) {
        let path = dir.join(file);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() > 0 => {}
            Ok(_) => {
                return Err(err(
                    &path,
                    "empty or not a file: the checkpoint is incomplete",
                ));
            }
            Err(e) => return Err(err(&path, format!("{e}: the checkpoint is incomplete"))),
        }
    }
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
    })
}

#[cfg(not(target_family = "wasm"))]
impl Trainer {
    /// Writes `checkpoint-{step:06}/` under `out_dir` and returns it. The files go to a temporary
    /// sibling folder first, which replaces the old checkpoint of the same step (if any) only
    /// once complete, so a kill at any moment leaves every complete checkpoint in place under
    /// some name. A complete checkpoint of the same state already there is kept as it is (a
    /// step is not saved twice).
    ///
    /// # Errors
    ///
    /// [`TrainError::Checkpoint`] when a file cannot be written (the previous checkpoints stay).
    pub fn save_checkpoint(&self, out_dir: &Path, state: &TrainerState) -> Result<Checkpoint> {
        let final_dir = out_dir.join(format!("checkpoint-{:06}", state.step));
        let json = serde_json::to_string_pretty(state).expect("state serialises");
        if let Ok(existing) = read_checkpoint(&final_dir)
            && std::fs::read_to_string(final_dir.join("trainer_state.json"))
                .is_ok_and(|t| t == json)
        {
            return Ok(existing);
        }
        let tmp = out_dir.join(format!(".checkpoint-{:06}.partial", state.step));
        let old = out_dir.join(format!(".checkpoint-{:06}.old", state.step));
        for leftover in [&tmp, &old] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover).map_err(|e| err(leftover, e))?;
            }
        }
        std::fs::create_dir_all(&tmp).map_err(|e| err(&tmp, e))?;
        let model = self.inference_model();
        match &self.config.lora {
            Some(lora) => umi_model::save_peft(&model, lora, None, &tmp.join("adapter"))?,
            None => umi_model::save_hf(&model, &tmp.join("model"))?,
        }
        self.optimizer()
            .save(tmp.join("optimizer.bpk"))
            .map_err(|e| err(&tmp, format!("saving the optimizer state: {e:?}")))?;
        std::fs::write(tmp.join("trainer_state.json"), json).map_err(|e| err(&tmp, e))?;
        // Renames only: the old folder is set aside whole and deleted once the new one is in.
        if final_dir.exists() {
            std::fs::rename(&final_dir, &old).map_err(|e| err(&final_dir, e))?;
        }
        if let Err(e) = std::fs::rename(&tmp, &final_dir) {
            let _ = std::fs::rename(&old, &final_dir); // put the old one back, if it was set aside
            return Err(err(&final_dir, e));
        }
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| err(&old, e))?;
        }
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

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;
    use umi_model::LoraConfig;

    fn lora_config() -> TrainConfig {
        TrainConfig {
            lora: Some(LoraConfig {
                r: 2,
                lora_alpha: 4.0,
                lora_dropout: 0.0,
                target_modules: vec!["q_proj".into()],
            }),
            ..TrainConfig::default()
        }
    }

    fn temp_out(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("umi-ck-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The files of a complete LoRA checkpoint at `step` (placeholder contents).
    fn fake_checkpoint(dir: &Path, step: usize) {
        std::fs::create_dir_all(dir.join("adapter")).unwrap();
        let mut state = TrainerState::new(lora_config(), 20);
        state.step = step;
        std::fs::write(
            dir.join("trainer_state.json"),
            serde_json::to_string(&state).unwrap(),
        )
        .unwrap();
        for file in [
            "optimizer.bpk",
            "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors",
        ] {
            std::fs::write(dir.join(file), "x").unwrap();
        }
    }

    #[test]
    fn resume_skips_incomplete_checkpoints_and_temporary_folders() {
        let out = temp_out("latest");
        fake_checkpoint(&out.join("checkpoint-000005"), 5);
        // newer, but each incomplete in its own way
        fake_checkpoint(&out.join("checkpoint-000010"), 10);
        std::fs::remove_file(out.join("checkpoint-000010/adapter/adapter_model.safetensors"))
            .unwrap();
        fake_checkpoint(&out.join("checkpoint-000011"), 11);
        std::fs::write(out.join("checkpoint-000011/optimizer.bpk"), "").unwrap();
        fake_checkpoint(&out.join("checkpoint-000012"), 12);
        std::fs::remove_file(out.join("checkpoint-000012/trainer_state.json")).unwrap();
        fake_checkpoint(&out.join(".checkpoint-000015.partial"), 15);
        // a stale copy beside its complete replacement stays ignored
        fake_checkpoint(&out.join(".checkpoint-000005.old"), 4);

        let latest = latest_checkpoint(&out).expect("checkpoint-000005 is complete");
        assert_eq!(latest.state.step, 5);
        assert_eq!(latest.dir, out.join("checkpoint-000005"));

        // killed between the two renames of a save: the old complete copy comes back
        fake_checkpoint(&out.join(".checkpoint-000015.old"), 15);
        let latest = latest_checkpoint(&out).expect("the .old copy is complete");
        assert_eq!(latest.state.step, 15);
        assert_eq!(latest.dir, out.join("checkpoint-000015"));
        assert!(!out.join(".checkpoint-000015.old").exists());
        assert!(out.join(".checkpoint-000015.partial").exists());
        let e = read_checkpoint(&out.join("checkpoint-000010"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("adapter_model.safetensors"), "{e}");
        assert!(read_checkpoint(&out.join("checkpoint-000011")).is_err());
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn saving_the_same_step_twice_leaves_one_complete_checkpoint() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let device = umi_model::Device::flex();
        let loaded =
            umi_model::load_model(&root.join("assets/tiny/gguf/tiny-f32.gguf"), &device).unwrap();
        let trainer = Trainer::new(loaded.model, lora_config(), 20, &device).unwrap();
        let out = temp_out("twice");
        let mut state = TrainerState::new(lora_config(), 20);
        state.step = 3;
        let first = trainer.save_checkpoint(&out, &state).unwrap();
        // a file only the first save has: it survives if that folder is kept, not rewritten
        let marker = first.dir.join("marker");
        std::fs::write(&marker, "first").unwrap();
        let second = trainer.save_checkpoint(&out, &state).unwrap();
        assert_eq!(second, first);
        assert!(marker.exists(), "the complete checkpoint was written again");
        assert_eq!(read_checkpoint(&second.dir).unwrap().state, state);

        // an incomplete or different checkpoint of the step is replaced by a complete one
        std::fs::remove_file(first.dir.join("optimizer.bpk")).unwrap();
        trainer.save_checkpoint(&out, &state).unwrap();
        assert!(!marker.exists());
        assert_eq!(read_checkpoint(&first.dir).unwrap().state, state);
        state.epoch = 1;
        trainer.save_checkpoint(&out, &state).unwrap();
        assert_eq!(latest_checkpoint(&out).unwrap().state, state);
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["checkpoint-000003"], "no temporary folder is left");
        std::fs::remove_dir_all(&out).unwrap();
    }
}

//! A fine-tuning run as one value: the [`Trainer`], its [`TrainerState`] (the one step counter,
//! the epoch order and the loss history) and what each step trains on. `umi train
//! global|local|dpo` and the web app's Fine-tune panel both drive a [`FineTuneRun`] one step at
//! a time and only render what it reports.

use umi_data::batch::TrainingExample;
use umi_data::samples::RoleSample;
use umi_model::Tokenizer;

use crate::dpo::{DpoConfig, PairExample};
use crate::{Result, StepStats, TrainConfig, TrainError, Trainer, TrainerState};

/// What a run's steps train on.
#[derive(Debug, Clone)]
pub enum Objective {
    /// Supervised fine-tuning (GLPFT's global and local stages): next-token loss on the target
    /// tokens of tokenized role samples, batches padded with `pad`.
    Sft {
        /// The tokenized samples.
        examples: Vec<TrainingExample>,
        /// The padding id (the tokenizer's EOS; padding is masked out of the loss).
        pad: u32,
    },
    /// Step-level DPO on preference pairs (process-based self-rewarding).
    Dpo {
        /// The pairs, with their reference log-probabilities.
        pairs: Vec<PairExample>,
        /// β, the loss and the SFT weight.
        config: DpoConfig,
    },
}

impl Objective {
    /// Supervised fine-tuning on `samples`, tokenized as `umi train` does: cut to
    /// `config.max_len` or the model's context (`max_positions`), whichever is shorter, with
    /// the tokenizer's first EOS id as padding.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] when no sample is given, the tokenizer has no EOS token or a
    /// sample does not tokenize.
    pub fn sft(
        samples: &[RoleSample],
        tokenizer: &Tokenizer,
        max_positions: usize,
        config: &TrainConfig,
    ) -> Result<Self> {
        if samples.is_empty() {
            return Err(TrainError::Invalid("no training samples".into()));
        }
        let examples =
            crate::tokenize_examples(samples, tokenizer, config.max_len.min(max_positions))?;
        // tokenize_examples checked there is an EOS id
        let pad = tokenizer.eos_ids()[0];
        Ok(Objective::Sft { examples, pad })
    }

    /// Training examples (SFT) or pairs (DPO).
    pub fn len(&self) -> usize {
        match self {
            Objective::Sft { examples, .. } => examples.len(),
            Objective::Dpo { pairs, .. } => pairs.len(),
        }
    }

    /// Whether there is nothing to train on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Optimizer steps in one epoch under `config`'s batch size and accumulation.
    pub fn steps_per_epoch(&self, config: &TrainConfig) -> usize {
        match self {
            Objective::Sft { examples, .. } => crate::steps_per_epoch(examples.len(), config),
            Objective::Dpo { pairs, .. } => pairs
                .len()
                .div_ceil((config.batch_size * config.gradient_accumulation_steps).max(1)),
        }
    }

    /// Optimizer steps of a run on this objective: `max_steps` when given (Hugging Face's
    /// `max_steps`), else `config.epochs` epochs of [`Objective::steps_per_epoch`]. `umi train`
    /// and the web app's Fine-tune panel both plan their runs with it.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] when that makes no step (`max_steps` 0, or no example).
    pub fn total_steps(&self, config: &TrainConfig, max_steps: Option<usize>) -> Result<usize> {
        let steps = max_steps.unwrap_or(self.steps_per_epoch(config) * config.epochs);
        if steps == 0 {
            return Err(TrainError::Invalid(match max_steps {
                Some(_) => "the number of steps must be positive".into(),
                None => format!(
                    "{} epochs of {} examples make no optimizer step",
                    config.epochs,
                    self.len()
                ),
            }));
        }
        Ok(steps)
    }

    /// The tokenized samples of an SFT objective.
    pub fn examples(&self) -> Option<&[TrainingExample]> {
        match self {
            Objective::Sft { examples, .. } => Some(examples),
            Objective::Dpo { .. } => None,
        }
    }

    /// The pairs of a DPO objective.
    pub fn pairs(&self) -> Option<&[PairExample]> {
        match self {
            Objective::Sft { .. } => None,
            Objective::Dpo { pairs, .. } => Some(pairs),
        }
    }

    /// The DPO settings of a DPO objective.
    pub fn dpo(&self) -> Option<&DpoConfig> {
        match self {
            Objective::Sft { .. } => None,
            Objective::Dpo { config, .. } => Some(config),
        }
    }
}

/// A fine-tuning run: trainer, state and objective, advanced by [`FineTuneRun::step`].
pub struct FineTuneRun {
    /// The model, optimizer and schedule.
    pub trainer: Trainer,
    /// Progress: the step counter, the epoch order, the history of [`StepStats`].
    pub state: TrainerState,
    objective: Objective,
}

impl FineTuneRun {
    /// A run of `trainer` on `objective` from `state` ([`TrainerState::new`] for a fresh run,
    /// a checkpoint's state to continue one).
    pub fn new(trainer: Trainer, state: TrainerState, objective: Objective) -> Self {
        Self {
            trainer,
            state,
            objective,
        }
    }

    /// What the run trains on.
    pub fn objective(&self) -> &Objective {
        &self.objective
    }

    /// Runs the next optimizer step on the state's next batches (SFT) or pairs (DPO) and
    /// records it in the state; async because the loss is read back from the device.
    ///
    /// # Errors
    ///
    /// The trainer's errors: no target token, a non-finite loss, a device failure.
    pub async fn step(&mut self) -> Result<StepStats> {
        let stats = match &self.objective {
            Objective::Sft { examples, pad } => {
                let group = self.state.next_step_batches(examples, *pad);
                self.trainer.train_step(&group).await?
            }
            Objective::Dpo { pairs, config } => {
                let step: Vec<PairExample> = self
                    .state
                    .next_step_pairs(pairs.len())
                    .into_iter()
                    .map(|i| pairs[i].clone())
                    .collect();
                self.trainer.dpo_step(&step, config).await?
            }
        };
        self.state.record(stats);
        Ok(stats)
    }

    /// Whether every planned step is done.
    pub fn is_done(&self) -> bool {
        self.state.is_done()
    }

    /// Writes a checkpoint of the current step under `out` (see [`Trainer::save_checkpoint`]).
    ///
    /// # Errors
    ///
    /// [`TrainError::Checkpoint`] when it cannot be written.
    #[cfg(not(target_family = "wasm"))]
    pub fn save_checkpoint(&self, out: &std::path::Path) -> Result<crate::Checkpoint> {
        self.trainer.save_checkpoint(out, &self.state)
    }
}

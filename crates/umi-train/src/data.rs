//! From role samples to the micro-batches of each optimizer step: the part of a run that
//! `umi train` and the web app's fine-tuning share, so both feed the trainer the same batches
//! in the same order for the same data and settings.

use umi_data::RoleSample;
use umi_data::batch::{Batch, TrainingExample, length_bucketed_batches, tokenize_sample};
use umi_model::Tokenizer;

use crate::checkpoint::TrainerState;
use crate::trainer::{StepStats, TrainConfig};
use crate::{Result, TrainError};

/// Tokenizes `samples` as GLPFT's `preprocess()` does ([`tokenize_sample`]: `"system: "` +
/// input with BOS, target + EOS, loss on the target only), each cut to its last `max_len`
/// tokens.
///
/// # Errors
///
/// [`TrainError::Invalid`] when the tokenizer has no EOS token or fails on a sample.
pub fn tokenize_examples(
    samples: &[RoleSample],
    tokenizer: &Tokenizer,
    max_len: usize,
) -> Result<Vec<TrainingExample>> {
    let eos = *tokenizer
        .eos_ids()
        .first()
        .ok_or_else(|| TrainError::Invalid("the tokenizer has no EOS token".into()))?;
    let mut failed = None;
    let mut encode = |text: &str, bos: bool| -> Vec<u32> {
        tokenizer.encode(text, bos).unwrap_or_else(|e| {
            failed.get_or_insert(e.to_string());
            Vec::new()
        })
    };
    let examples = samples
        .iter()
        .map(|s| tokenize_sample(s, &mut encode, eos, max_len))
        .collect();
    match failed {
        Some(e) => Err(TrainError::Invalid(format!(
            "tokenizing the samples failed: {e}"
        ))),
        None => Ok(examples),
    }
}

/// Optimizer steps in one epoch over `examples` examples: `⌈⌈examples / batch_size⌉ /
/// gradient_accumulation_steps⌉`.
pub fn steps_per_epoch(examples: usize, config: &TrainConfig) -> usize {
    examples
        .div_ceil(config.batch_size.max(1))
        .div_ceil(config.gradient_accumulation_steps.max(1))
}

/// The micro-batches of every optimizer step of `epoch`, in training order: length-bucketed
/// batches of [`TrainConfig::batch_size`] right-padded with `pad_id`, shuffled with seed
/// `config.seed + epoch`, grouped by [`TrainConfig::gradient_accumulation_steps`].
pub fn epoch_steps(
    examples: &[TrainingExample],
    config: &TrainConfig,
    pad_id: u32,
    epoch: usize,
) -> Vec<Vec<Batch>> {
    let batches = length_bucketed_batches(
        examples,
        config.batch_size,
        pad_id,
        config.seed + epoch as u64,
    );
    batches
        .chunks(config.gradient_accumulation_steps.max(1))
        .map(<[Batch]>::to_vec)
        .collect()
}

impl TrainerState {
    /// A run at its start: step 0 of `total_steps`, epoch 0, no history.
    pub fn new(config: TrainConfig, total_steps: usize) -> Self {
        Self {
            step: 0,
            total_steps,
            epoch: 0,
            steps_in_epoch: 0,
            config,
            history: Vec::new(),
            dpo: None,
        }
    }

    /// The micro-batches of the next optimizer step ([`epoch_steps`] of the epoch in
    /// progress, after the `steps_in_epoch` already done), moving on to the next epoch when
    /// this one is done. Empty when there are no examples.
    pub fn next_step_batches(&mut self, examples: &[TrainingExample], pad_id: u32) -> Vec<Batch> {
        if examples.is_empty() {
            return Vec::new();
        }
        loop {
            let mut steps = epoch_steps(examples, &self.config, pad_id, self.epoch);
            if self.steps_in_epoch < steps.len() {
                return steps.swap_remove(self.steps_in_epoch);
            }
            self.epoch += 1;
            self.steps_in_epoch = 0;
        }
    }

    /// Records a finished step (from the batches [`TrainerState::next_step_batches`] gave).
    pub fn record(&mut self, stats: StepStats) {
        self.step = stats.step;
        self.steps_in_epoch += 1;
        self.history.push(stats);
    }

    /// Whether every planned step is done.
    pub fn is_done(&self) -> bool {
        self.step >= self.total_steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(len: usize, id: u32) -> TrainingExample {
        TrainingExample {
            input_ids: vec![id; len],
            labels: vec![i64::from(id); len],
        }
    }

    #[test]
    fn next_step_batches_walks_the_epochs_in_order_and_resumes_mid_epoch() {
        let examples: Vec<_> = (0..5).map(|i| example(3 + i as usize, i)).collect();
        let config = TrainConfig {
            batch_size: 1,
            gradient_accumulation_steps: 2,
            ..TrainConfig::default()
        };
        assert_eq!(steps_per_epoch(examples.len(), &config), 3);
        let expected: Vec<Vec<Batch>> = (0..3)
            .flat_map(|epoch| epoch_steps(&examples, &config, 0, epoch))
            .collect();
        assert_eq!(expected.len(), 9);
        let mut state = TrainerState::new(config.clone(), 9);
        let mut got = Vec::new();
        for step in 0..9 {
            if step == 4 {
                // a resume: the saved progress alone gives the same next batches
                let saved = serde_json::to_string(&state).unwrap();
                state = serde_json::from_str(&saved).unwrap();
            }
            got.push(state.next_step_batches(&examples, 0));
            state.record(StepStats {
                step: step + 1,
                loss: 1.0,
                grad_norm: 1.0,
                learning_rate: 0.0,
                target_tokens: 1,
                tokens: 1,
                dpo: None,
            });
        }
        assert_eq!(got, expected);
        assert!(state.is_done());
        assert_eq!(state.epoch, 2);
        assert!(
            TrainerState::new(config, 1)
                .next_step_batches(&[], 0)
                .is_empty()
        );
    }
}

//! Pairs made ready for a DPO run, the one way `umi train dpo`, `umi reward export` and the web
//! app's Fine-tune panel go (psrlm-design.md §2.10 and §6 "What runs in the browser"): rows
//! tokenized and cut by [`prepare_pairs`](super::prepare_pairs), the reference log-probabilities
//! that are missing computed ([`PreparedPairs::score_reference`]) or, where nothing may be
//! computed (the browser), required ([`PreparedPairs::with_recorded_reference`]), and the
//! recorded ones checked against the adapter the policy starts from ([`check_reference`]), whose
//! LoRA settings [`adapter_lora_config`] reads back.

use burn::tensor::Device;
use umi_model::{AdapterSet, Llama, LoraConfig};

use super::{PairExample, PreparedPairs, pair_logps};
use crate::{Result, TrainConfig, TrainError, TrainerState};

/// How far a pair's recorded reference log-probabilities may be from the starting adapter's own
/// before a run stops ([`check_reference`]): `nats` plus `nats_per_token` for each token of the
/// completion (f32 rounding differs token by token between backends, and the log-probability
/// is a sum over the tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceTolerance {
    /// Allowed whatever the length.
    pub nats: f64,
    /// Allowed per completion token.
    pub nats_per_token: f64,
}

impl ReferenceTolerance {
    /// Log-probabilities recorded on the backend that checks them (`umi train dpo` on pairs it
    /// or `umi reward export` scored natively): 1e-3 nats.
    pub const SAME_BACKEND: Self = Self {
        nats: 1e-3,
        nats_per_token: 0.0,
    };
    /// Log-probabilities recorded on another backend (the web app on WebGPU training on pairs
    /// scored natively on the CPU): 1e-3 nats plus 2e-4 per token. The browser test measured
    /// 1.8e-3 nats on a 30-odd-token step of the tiny fixture (SwiftShader against CPU), over the
    /// flat 1e-3; another adapter or prompt differs by far more.
    pub const CROSS_BACKEND: Self = Self {
        nats: 1e-3,
        nats_per_token: 2e-4,
    };

    /// The allowed difference for a completion of `tokens` tokens, in nats.
    pub fn nats_for(&self, tokens: usize) -> f64 {
        self.nats + self.nats_per_token * tokens as f64
    }
}

impl TrainConfig {
    /// `umi train dpo`'s defaults (psrlm-design.md §2.10), also the web app's DPO runs: lr 2e-5,
    /// 1 epoch, warm-up 0.1, no weight decay, 1 pair per micro-batch × 8 micro-batches per
    /// optimizer step, clipping at 1.0, prompt + step cut to 1,536 tokens, seed 42, no LoRA
    /// settings (set `lora` for the adapters).
    pub fn dpo() -> Self {
        Self {
            learning_rate: 2e-5,
            epochs: 1,
            warmup_ratio: 0.1,
            weight_decay: 0.0,
            batch_size: 1,
            gradient_accumulation_steps: 8,
            max_grad_norm: 1.0,
            max_len: 1536,
            seed: 42,
            lora: None,
            ..Self::default()
        }
    }
}

impl PreparedPairs {
    /// Checks that some pair is left.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] ("no pair is left to train on") when every row was dropped.
    pub fn ensure_some(&self) -> Result<()> {
        if self.pairs.is_empty() {
            return Err(TrainError::Invalid("no pair is left to train on".into()));
        }
        Ok(())
    }

    /// Indices of the pairs whose reference log-probabilities must be computed: every pair with
    /// `recompute`, else those [`PreparedPairs::needs_reference`] marks (none recorded, or the
    /// prompt was cut).
    pub fn to_score(&self, recompute: bool) -> Vec<usize> {
        (0..self.pairs.len())
            .filter(|&i| recompute || self.needs_reference.get(i).copied().unwrap_or(true))
            .collect()
    }

    /// Computes the reference log-probabilities of the pairs at `indices` under `reference`
    /// (the reference adapter installed, off the autodiff graph, [`pair_logps`]) and stores
    /// them in the pairs; `progress` is called after each pair.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] for an index out of range or a pair the model cannot score;
    /// [`TrainError::Read`] if the device fails.
    pub async fn score_reference(
        &mut self,
        reference: &Llama,
        indices: &[usize],
        device: &Device,
        mut progress: impl FnMut(),
    ) -> Result<()> {
        let count = self.pairs.len();
        for &i in indices {
            let pair = self
                .pairs
                .get_mut(i)
                .ok_or_else(|| TrainError::Invalid(format!("no pair {i} to score (of {count})")))?;
            let (chosen, rejected) = pair_logps(reference, pair, device).await?;
            (pair.ref_chosen_logps, pair.ref_rejected_logps) = (chosen, rejected);
            if let Some(flag) = self.needs_reference.get_mut(i) {
                *flag = false;
            }
            progress();
        }
        Ok(())
    }

    /// The pairs, for a run that does not compute reference log-probabilities (the web app,
    /// psrlm-design.md §6): every pair must carry them for its prompt as cut to `max_len`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] when no pair is left, or naming the first pair without them,
    /// with the command that makes such a file (`umi reward export --recompute-ref`).
    pub fn with_recorded_reference(self, max_len: usize) -> Result<Vec<PairExample>> {
        self.ensure_some()?;
        if let Some(i) = self.needs_reference.iter().position(|&n| n) {
            let missing = self.needs_reference.iter().filter(|&&n| n).count();
            return Err(TrainError::Invalid(format!(
                "pair {} ({missing} of {} pairs) has no reference log-probabilities for its prompt (none recorded, or the prompt was cut to fit max length {max_len}); they are not computed here: make the file with `umi reward export --recompute-ref --max-len {max_len} --adapter <the adapter training starts from>`",
                self.pairs[i].id,
                self.pairs.len()
            )));
        }
        Ok(self.pairs)
    }
}

/// Checks that the recorded reference log-probabilities of the pairs the first optimizer step
/// of `state` takes belong to `model` (the adapter the policy starts from, so policy =
/// reference at step 0) within `tolerance`. `adapter` names that adapter and `remedy` says what
/// to do, both in the error.
///
/// # Errors
///
/// [`TrainError::Invalid`] naming the first pair that differs and by how much; the errors of
/// [`pair_logps`].
pub async fn check_reference(
    model: &Llama,
    pairs: &[PairExample],
    state: &TrainerState,
    device: &Device,
    tolerance: ReferenceTolerance,
    adapter: &str,
    remedy: &str,
) -> Result<()> {
    for i in state.clone().next_step_pairs(pairs.len()) {
        let pair = &pairs[i];
        let (c, r) = pair_logps(model, pair, device).await?;
        for (got, recorded, tokens) in [
            (c, pair.ref_chosen_logps, pair.chosen_ids.len()),
            (r, pair.ref_rejected_logps, pair.rejected_ids.len()),
        ] {
            let gap = (got - recorded).abs();
            // a NaN is a mismatch too
            if gap.is_nan() || gap > tolerance.nats_for(tokens) {
                return Err(TrainError::Invalid(format!(
                    "pair {}: its recorded reference log-probs differ from {adapter}'s by {gap:.4} nats, so they were made with another adapter or prompt; {remedy}",
                    pair.id
                )));
            }
        }
    }
    Ok(())
}

/// The LoRA settings of `set` (adapters installed in a model, e.g. a role's shipped or imported
/// adapter that a run continues): the rank from `A`'s `[in, r]` shape, `lora_alpha` from the
/// scaling (`alpha / r`), the dropout, and the target modules from the projections' names in
/// first-seen order. `None` for an empty set.
pub fn adapter_lora_config(set: &AdapterSet) -> Option<LoraConfig> {
    let (_, first) = set.adapters.first()?;
    let r = first.a.val().dims()[1];
    let mut target_modules: Vec<String> = Vec::new();
    for (name, _) in &set.adapters {
        let leaf = name.rsplit('.').next().unwrap_or(name);
        if !target_modules.iter().any(|m| m == leaf) {
            target_modules.push(leaf.to_string());
        }
    }
    Some(LoraConfig {
        r,
        lora_alpha: first.scaling * r as f64,
        lora_dropout: first.dropout,
        target_modules,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use umi_data::preference::PreferencePair;

    use super::*;
    use crate::prepare_pairs;

    /// Runs `future` to completion on this thread (the CPU backend's reads are ready at once).
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn pairs_are_scored_required_and_checked_against_the_starting_adapter() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let device = umi_model::Device::flex();
        let loaded =
            umi_model::load_model(&root.join("assets/tiny/gguf/tiny-f32.gguf"), &device).unwrap();
        let ids = |id: &str, prompt: Vec<u32>, refs: Option<f64>| PreferencePair {
            id: id.into(),
            prompt_ids: Some(prompt),
            chosen_ids: Some(vec![7, 9, 2]),
            rejected_ids: Some(vec![8, 2]),
            ref_chosen_logps: refs,
            ref_rejected_logps: refs,
            ..PreferencePair::default()
        };
        let rows = vec![
            ids("a", vec![1, 5, 6, 11], None),
            ids("b", vec![1, 12, 13], Some(-1.0)),
            ids("long", (1..40).collect(), Some(-1.0)),
        ];
        let mut prepared = prepare_pairs(&rows, &loaded.tokenizer, "planner", 16, 8).unwrap();
        prepared.ensure_some().unwrap();
        assert_eq!(
            prepared.to_score(false),
            [0, 2],
            "none recorded, and a cut prompt"
        );
        assert_eq!(prepared.to_score(true), [0, 1, 2]);

        // the browser computes nothing: the first pair without them is named, with the command
        let err = prepared
            .clone()
            .with_recorded_reference(16)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pair a (2 of 3 pairs)")
                && err.contains("umi reward export --recompute-ref --max-len 16"),
            "{err}"
        );

        // scored with the model itself: the pairs now pass the starting-adapter check
        let all = prepared.to_score(true);
        let mut calls = 0;
        block_on(prepared.score_reference(&loaded.model, &all, &device, || calls += 1)).unwrap();
        assert_eq!(calls, 3);
        assert!(prepared.pairs.iter().all(|p| p.ref_chosen_logps < 0.0));
        assert!(prepared.pairs[0].ref_chosen_logps < prepared.pairs[0].ref_rejected_logps);
        let pairs = prepared.with_recorded_reference(16).unwrap();
        let config = TrainConfig {
            gradient_accumulation_steps: 2,
            ..TrainConfig::dpo()
        };
        let state = TrainerState::new(config, 4);
        let check = |pairs: &[PairExample]| {
            block_on(check_reference(
                &loaded.model,
                pairs,
                &state,
                &device,
                ReferenceTolerance::SAME_BACKEND,
                "the tiny model",
                "fix it",
            ))
        };
        check(&pairs).unwrap();

        // a pair of the first step recorded with another adapter is caught, one of a later
        // step is not looked at
        let first = state.clone().next_step_pairs(pairs.len());
        assert_eq!(first.len(), 2);
        let later = (0..3).find(|i| !first.contains(i)).unwrap();
        let mut off = pairs.clone();
        off[later].ref_rejected_logps -= 0.5;
        check(&off).unwrap();
        off[first[1]].ref_rejected_logps -= 2e-3;
        let err = check(&off).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "pair {}: its recorded reference log-probs differ from the tiny model's by 0.0020 nats, so they were made with another adapter or prompt; fix it",
                pairs[first[1]].id
            )
        );
        // another backend's rounding: 1e-3 nats plus 2e-4 per token (the rejected step has 2)
        assert_eq!(ReferenceTolerance::CROSS_BACKEND.nats_for(2), 1.4e-3);
        let cross = block_on(check_reference(
            &loaded.model,
            &off,
            &state,
            &device,
            ReferenceTolerance::CROSS_BACKEND,
            "the tiny model",
            "fix it",
        ));
        assert!(cross.is_err(), "2e-3 nats on a 2-token step is over 1.4e-3");
        off[first[1]].ref_rejected_logps += 1e-3;
        block_on(check_reference(
            &loaded.model,
            &off,
            &state,
            &device,
            ReferenceTolerance::CROSS_BACKEND,
            "the tiny model",
            "fix it",
        ))
        .unwrap();
        let mut nan = pairs;
        nan[first[0]].ref_chosen_logps = f64::NAN;
        assert!(
            check(&nan).is_err(),
            "NaN reference log-probs pass the check"
        );
    }

    #[test]
    fn installed_adapters_give_back_their_lora_settings() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let device = umi_model::Device::flex();
        let mut model =
            umi_model::load_model(&root.join("assets/tiny/gguf/tiny-f32.gguf"), &device)
                .unwrap()
                .model;
        assert_eq!(adapter_lora_config(&model.clone().take_adapters()), None);
        let config = LoraConfig {
            r: 3,
            lora_alpha: 12.0,
            lora_dropout: 0.1,
            target_modules: vec!["v_proj".into(), "q_proj".into(), "down_proj".into()],
        };
        umi_model::attach_lora(&mut model, &config, 1, &device).unwrap();
        let got = adapter_lora_config(&model.take_adapters()).unwrap();
        assert_eq!((got.r, got.lora_alpha, got.lora_dropout), (3, 12.0, 0.1));
        let mut modules = got.target_modules.clone();
        modules.sort();
        assert_eq!(modules, ["down_proj", "q_proj", "v_proj"]);
    }
}

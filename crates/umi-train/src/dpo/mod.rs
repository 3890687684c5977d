//! Step-level DPO (Rafailov et al. 2023, applied per step as in "Process-based Self-Rewarding
//! Language Models", Zhang et al. 2025): the objective that trains a role's adapter on pairs of
//! one better and one worse next step for the same prompt. The formulas are TRL's
//! (`DPOTrainer`, `loss_type` "sigmoid", "sigmoid_norm", "robust" and "sft"); the specification
//! is `../shared/docs/psrlm-design.md` §2.10.

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use umi_model::Llama;

use crate::trainer::{StepStats, Trainer};
use crate::{Result, TrainError};

mod ready;
pub(crate) mod settings;
pub use ready::{ReferenceTolerance, adapter_lora_config, check_reference};
pub use settings::{DpoConfig, DpoLoss, DpoStats};

/// One preference pair as token ids, with the reference model's log-probabilities of both
/// completions (recorded when the pair was mined, psrlm-design.md §3.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairExample {
    /// Where the pair came from (named in errors).
    pub id: String,
    /// The prompt, BOS included: the role prompt up to the step.
    pub prompt_ids: Vec<u32>,
    /// The better step's tokens, EOS included.
    pub chosen_ids: Vec<u32>,
    /// The worse step's tokens, EOS included.
    pub rejected_ids: Vec<u32>,
    /// `Σ log π_ref(chosen | prompt)`, in nats.
    pub ref_chosen_logps: f64,
    /// `Σ log π_ref(rejected | prompt)`, in nats.
    pub ref_rejected_logps: f64,
}

impl PairExample {
    /// Checks that the pair can be scored by a model with `max_positions` positions.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] naming the pair: an empty prompt or completion, a longer sequence
    /// than the model takes, or reference log-probabilities that are not finite and ≤ 0.
    pub fn validate(&self, max_positions: usize) -> Result<()> {
        let bad = |what: String| Err(TrainError::Invalid(format!("pair {}: {what}", self.id)));
        if self.prompt_ids.is_empty() {
            return bad("the prompt has no token".into());
        }
        for (name, ids, reference) in [
            ("chosen", &self.chosen_ids, self.ref_chosen_logps),
            ("rejected", &self.rejected_ids, self.ref_rejected_logps),
        ] {
            if ids.is_empty() {
                return bad(format!("the {name} completion has no token"));
            }
            let len = self.prompt_ids.len() + ids.len();
            if len > max_positions {
                return bad(format!(
                    "prompt + {name} completion is {len} tokens, more than the model's {max_positions} positions (truncate the prompt)"
                ));
            }
            if !(reference.is_finite() && reference <= 0.0) {
                return bad(format!(
                    "the reference log-probability of the {name} completion is {reference}, not a finite number ≤ 0"
                ));
            }
        }
        Ok(())
    }
}

impl DpoStats {
    /// The metrics of `pairs` given the policy's log-probabilities (`policy[2k]` chosen,
    /// `policy[2k + 1]` rejected, for pair `k`).
    ///
    /// # Panics
    ///
    /// If `policy` does not hold two values per pair.
    pub fn of(pairs: &[PairExample], policy: &[f64], beta: f64) -> Self {
        assert_eq!(policy.len(), 2 * pairs.len(), "two log-probs per pair");
        let k = pairs.len().max(1) as f64;
        let mut s = Self {
            rewards_chosen: 0.0,
            rewards_rejected: 0.0,
            rewards_margin: 0.0,
            rewards_accuracy: 0.0,
            logps_chosen: 0.0,
            logps_rejected: 0.0,
        };
        for (pair, lp) in pairs.iter().zip(policy.chunks_exact(2)) {
            let chosen = beta * (lp[0] - pair.ref_chosen_logps);
            let rejected = beta * (lp[1] - pair.ref_rejected_logps);
            s.rewards_chosen += chosen / k;
            s.rewards_rejected += rejected / k;
            s.rewards_margin += (chosen - rejected) / k;
            s.rewards_accuracy += f64::from(u8::from(chosen > rejected)) / k;
            s.logps_chosen += lp[0] / k;
            s.logps_rejected += lp[1] / k;
        }
        s
    }
}

/// `Σ_t log π(c_t | prompt, c_<t)` for each completion `c`, with the prompt computed once:
/// its keys and values are repeated for every completion (a [`umi_model::KvCache`] shared by
/// all), the completions run as one right-padded batch, and the LM head runs only at the rows
/// that predict a completion token (the last prompt position and each completion's own
/// positions but its last). Under autodiff the gradients of all completions flow into the one
/// prompt computation. Equal (to float rounding) to scoring each prompt + completion sequence
/// alone, as TRL does, with `P + Σ|c|` tokens instead of `n·P + Σ|c|`.
///
/// # Shapes
///
/// - prompt: `P ≥ 1` token ids; completions: `n` non-empty id lists
/// - output: `[n]`, nats (≤ 0)
///
/// # Errors
///
/// [`TrainError::Invalid`] for an empty prompt, no or an empty completion, or more positions
/// than the model takes.
pub fn completion_logps(
    model: &Llama,
    prompt: &[u32],
    completions: &[&[u32]],
    device: &Device,
) -> Result<Tensor<1>> {
    let longest = completions.iter().map(|c| c.len()).max().unwrap_or(0);
    if prompt.is_empty() || completions.is_empty() || completions.iter().any(|c| c.is_empty()) {
        return Err(TrainError::Invalid(
            "scoring completions needs a prompt and non-empty completions".into(),
        ));
    }
    if prompt.len() + longest > model.max_positions() {
        return Err(TrainError::Invalid(format!(
            "prompt ({}) + completion ({longest}) tokens exceed the model's {} positions",
            prompt.len(),
            model.max_positions()
        )));
    }
    let ids = |v: &[u32]| v.iter().map(|&t| i64::from(t)).collect::<Vec<_>>();
    let (n, p) = (completions.len(), prompt.len());
    let mut cache = model.new_cache();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids(prompt), [1, p]), device);
    let hidden_prompt = model.forward_hidden(input, &mut cache); // [1, P, d]
    let d = hidden_prompt.dims()[2];
    let last = hidden_prompt.narrow(1, p - 1, 1).reshape([1, d]); // predicts every c_0
    // Row 0 is the last prompt position; row 1 + i·(longest − 1) + t is completion i's position t.
    let hidden = if longest > 1 {
        for layer in &mut cache {
            layer.repeat_batch(n);
        }
        let mut rows = Vec::with_capacity(n * (longest - 1));
        for c in completions {
            let mut row = ids(&c[..c.len() - 1]);
            row.resize(longest - 1, 0); // right padding: never read, and causal attention keeps it out of real rows
            rows.extend(row);
        }
        let input = Tensor::<2, Int>::from_data(TensorData::new(rows, [n, longest - 1]), device);
        let hidden_completions = model
            .forward_hidden(input, &mut cache)
            .reshape([n * (longest - 1), d]);
        Tensor::cat(vec![last, hidden_completions], 0)
    } else {
        last
    };
    let mut picked = Vec::new();
    let mut targets = Vec::new();
    let mut segment = Vec::new(); // [n, Σ|c|] 0/1: which rows sum into which completion
    let total: usize = completions.iter().map(|c| c.len()).sum();
    for (i, c) in completions.iter().enumerate() {
        let mut mask = vec![0.0f32; total];
        for (t, &token) in c.iter().enumerate() {
            mask[picked.len()] = 1.0;
            picked.push(if t == 0 {
                0
            } else {
                (1 + i * (longest - 1) + t - 1) as i64
            });
            targets.push(i64::from(token));
        }
        segment.extend(mask);
    }
    let picked = Tensor::<1, Int>::from_data(TensorData::new(picked, [total]), device);
    let logits = model.logits(hidden.select(0, picked).reshape([1, total, d]));
    let vocab = logits.dims()[2];
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [total, 1]), device);
    let token_logps = log_softmax(logits.reshape([total, vocab]), 1).gather(1, targets); // [Σ|c|, 1]
    let segment = Tensor::<2>::from_data(TensorData::new(segment, [n, total]), device);
    Ok(segment.matmul(token_logps).reshape([n]))
}

/// Number of tokens `completion_logps` runs through the model for one pair, against TRL's
/// two full sequences: `(P + |c⁺| − 1 + |c⁻| − 1 padded to the longer, 2P + |c⁺| + |c⁻|)`.
pub fn pair_tokens(pair: &PairExample) -> (usize, usize) {
    let p = pair.prompt_ids.len();
    let (c, r) = (pair.chosen_ids.len(), pair.rejected_ids.len());
    (p + 2 * (c.max(r) - 1), 2 * p + c + r)
}

/// One pair's share of the step loss: `l(z) / K` plus its share of the SFT term,
/// `−α · π⁺ / N⁺` (`N⁺` the chosen tokens of the whole step), so the shares of a step's `K`
/// pairs sum to TRL's loss of the step as one batch.
///
/// # Shapes
///
/// - policy: `[2]` (chosen, rejected), nats; output: `[1]`
fn pair_loss(
    policy: Tensor<1>,
    pair: &PairExample,
    config: &DpoConfig,
    pairs: usize,
    chosen_tokens: usize,
) -> Tensor<1> {
    let chosen = policy.clone().narrow(0, 0, 1);
    let rejected = policy.narrow(0, 1, 1);
    let mut chosen_ratio = chosen.clone().sub_scalar(pair.ref_chosen_logps);
    let mut rejected_ratio = rejected.sub_scalar(pair.ref_rejected_logps);
    if config.loss == DpoLoss::SigmoidNorm {
        chosen_ratio = chosen_ratio.div_scalar(pair.chosen_ids.len() as f64);
        rejected_ratio = rejected_ratio.div_scalar(pair.rejected_ids.len() as f64);
    }
    let z = (chosen_ratio - rejected_ratio).mul_scalar(config.beta);
    let loss = match config.loss {
        DpoLoss::Sigmoid | DpoLoss::SigmoidNorm => log_sigmoid(z).neg(),
        DpoLoss::Robust { label_smoothing: e } => (log_sigmoid(z.clone()).mul_scalar(-(1.0 - e))
            + log_sigmoid(z.neg()).mul_scalar(e))
        .div_scalar(1.0 - 2.0 * e),
    };
    let loss = loss.div_scalar(pairs as f64);
    if config.sft_weight > 0.0 {
        loss + chosen.mul_scalar(-config.sft_weight / chosen_tokens.max(1) as f64)
    } else {
        loss
    }
}

/// The step loss of `pairs` as one batch (mean over pairs, plus the SFT term when weighted),
/// from the policy log-probabilities (`policy[2k]` chosen and `policy[2k + 1]` rejected for pair
/// `k`) and the pairs' reference log-probabilities. TRL's `DPOTrainer` loss for the same batch.
///
/// # Shapes
///
/// - policy: `[2K]`, nats; output: `[1]`
///
/// # Panics
///
/// If `policy` does not hold two values per pair, or `pairs` is empty.
pub fn dpo_loss(policy: Tensor<1>, pairs: &[PairExample], config: &DpoConfig) -> Tensor<1> {
    assert_eq!(policy.dims()[0], 2 * pairs.len(), "two log-probs per pair");
    assert!(!pairs.is_empty(), "a DPO loss needs at least one pair");
    let chosen_tokens = pairs.iter().map(|p| p.chosen_ids.len()).sum();
    let terms = pairs.iter().enumerate().map(|(k, pair)| {
        pair_loss(
            policy.clone().narrow(0, 2 * k, 2),
            pair,
            config,
            pairs.len(),
            chosen_tokens,
        )
    });
    terms.reduce(|a, b| a + b).expect("at least one pair")
}

impl Trainer {
    /// Loss and gradients of one DPO step over `pairs`, one pair's forward and backward at a
    /// time (memory of one pair), accumulated: `(loss [1], grads, policy log-probs [2K], tokens)`.
    pub(crate) fn dpo_loss_and_grads(
        &self,
        pairs: &[PairExample],
        config: &DpoConfig,
    ) -> Result<(Tensor<1>, GradientsParams, Tensor<1>, usize)> {
        config.validate()?;
        if pairs.is_empty() {
            return Err(TrainError::Invalid(
                "a DPO step needs at least one pair".into(),
            ));
        }
        let model = self.model();
        for pair in pairs {
            pair.validate(model.max_positions())?;
        }
        let chosen_tokens = pairs.iter().map(|p| p.chosen_ids.len()).sum();
        let device = self.device();
        // the products between the serial stretches of the graph run on all threads (as
        // `Trainer::loss_and_grads`)
        let _awake = umi_model::ops::awake::hold();
        let mut accumulator = GradientsAccumulator::<Llama>::new();
        let (mut loss_sum, mut logps, mut tokens) = (None::<Tensor<1>>, Vec::new(), 0);
        for pair in pairs {
            let policy = completion_logps(
                model,
                &pair.prompt_ids,
                &[&pair.chosen_ids, &pair.rejected_ids],
                device,
            )?;
            let loss = pair_loss(policy.clone(), pair, config, pairs.len(), chosen_tokens);
            accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
            let value = loss.detach();
            loss_sum = Some(match loss_sum {
                Some(acc) => acc + value,
                None => value,
            });
            logps.push(policy.detach());
            tokens += pair_tokens(pair).0;
        }
        let loss = loss_sum.expect("at least one pair");
        Ok((loss, accumulator.grads(), Tensor::cat(logps, 0), tokens))
    }

    /// One optimizer step of step-level DPO over `pairs` (psrlm-design.md §2.10): each pair's
    /// chosen and rejected log-probabilities under the policy (the trained adapters, prompt
    /// computed once per pair, [`completion_logps`]) against the pair's recorded reference
    /// log-probabilities, TRL's loss averaged over the pairs, then the same clipping, AdamW and
    /// schedule as [`Trainer::train_step`]. The returned [`StepStats`] carry [`DpoStats`];
    /// `target_tokens` counts completion tokens.
    ///
    /// Adapter dropout is switched off for the rest of training, as TRL's
    /// `disable_dropout=True`: with dropout the policy would differ from the reference at the
    /// start.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] for bad settings or a bad pair (named), or a loss that is not
    /// finite (the update is then not applied); [`TrainError::Read`] if the device fails.
    pub async fn dpo_step(
        &mut self,
        pairs: &[PairExample],
        config: &DpoConfig,
    ) -> Result<StepStats> {
        self.set_dropout(false);
        let (loss, grads, policy, tokens) = self.dpo_loss_and_grads(pairs, config)?;
        let completion_tokens = pairs
            .iter()
            .map(|p| p.chosen_ids.len() + p.rejected_ids.len())
            .sum();
        let (mut stats, policy) = self
            .apply_gradients_with(loss, grads, completion_tokens, tokens, Some(policy))
            .await?;
        stats.dpo = Some(DpoStats::of(pairs, &policy, config.beta));
        Ok(stats)
    }

    /// DPO loss and gradients of `pairs` by parameter name, without updating (for checks against
    /// other frameworks; native only): names and layouts as [`Trainer::named_gradients`].
    ///
    /// # Errors
    ///
    /// As [`Trainer::dpo_step`].
    pub fn dpo_named_gradients(
        &mut self,
        pairs: &[PairExample],
        config: &DpoConfig,
    ) -> Result<(f64, Vec<(String, umi_model::weights::HostTensor)>)> {
        self.set_dropout(false);
        let (loss, grads, _, _) = self.dpo_loss_and_grads(pairs, config)?;
        Ok((loss.into_scalar::<f64>(), self.name_gradients(&grads)))
    }
}

/// Pairs made ready to train ([`prepare_pairs`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreparedPairs {
    /// The pairs kept, in file order.
    pub pairs: Vec<PairExample>,
    /// For each kept pair, whether its reference log-probabilities must be computed: the row
    /// had none, or its prompt was cut (the recorded ones belong to the whole prompt).
    pub needs_reference: Vec<bool>,
    /// Rows left out, as `(id, why)`.
    pub dropped: Vec<(String, String)>,
    /// Kept pairs whose prompt lost its beginning to fit `max_len`.
    pub truncated: usize,
}

/// Turns pair rows (umi's or TRL's, [`umi_data::preference`]) into [`PairExample`]s:
/// token ids from the row, or else the tokenizer's (the prompt with BOS, each step without, EOS
/// appended when the step's text does not end with it); a step longer than `max_step_tokens` is
/// dropped (steps are never cut); a prompt longer than `max_len` minus the longer step keeps its
/// end, as GLPFT cuts training samples (psrlm-design.md §2.10).
///
/// # Errors
///
/// [`TrainError::Invalid`] naming the row: a role other than `role`, or text the tokenizer
/// cannot encode.
pub fn prepare_pairs(
    rows: &[umi_data::preference::PreferencePair],
    tokenizer: &umi_model::Tokenizer,
    role: &str,
    max_len: usize,
    max_step_tokens: usize,
) -> Result<PreparedPairs> {
    let eos = *tokenizer
        .eos_ids()
        .first()
        .ok_or_else(|| TrainError::Invalid("the tokenizer has no EOS token".into()))?;
    let mut out = PreparedPairs::default();
    for row in rows {
        if let Some(r) = &row.role
            && r != role
        {
            return Err(TrainError::Invalid(format!(
                "pair {} is a {r} step, not a {role} step",
                row.id
            )));
        }
        let encode = |text: &Option<String>, bos: bool| -> Result<Vec<u32>> {
            let text = text.as_deref().unwrap_or_default();
            tokenizer.encode(text, bos).map_err(|e| {
                TrainError::Invalid(format!("pair {}: tokenizing failed: {e}", row.id))
            })
        };
        let step = |text: &Option<String>| -> Result<Vec<u32>> {
            let mut ids = encode(text, false)?;
            if ids.last() != Some(&eos) {
                ids.push(eos);
            }
            Ok(ids)
        };
        let (mut prompt_ids, chosen_ids, rejected_ids) =
            match (&row.prompt_ids, &row.chosen_ids, &row.rejected_ids) {
                (Some(p), Some(c), Some(r)) => (p.clone(), c.clone(), r.clone()),
                _ => (
                    encode(&row.prompt, true)?,
                    step(&row.chosen)?,
                    step(&row.rejected)?,
                ),
            };
        let longest = chosen_ids.len().max(rejected_ids.len());
        if longest > max_step_tokens {
            out.dropped.push((
                row.id.clone(),
                format!("a step of {longest} tokens, over --max-step-tokens {max_step_tokens}"),
            ));
            continue;
        }
        if chosen_ids.is_empty() || rejected_ids.is_empty() || prompt_ids.is_empty() {
            out.dropped
                .push((row.id.clone(), "an empty prompt or step".into()));
            continue;
        }
        let room = max_len.saturating_sub(longest).max(1);
        let cut = prompt_ids.len() > room;
        if cut {
            prompt_ids.drain(..prompt_ids.len() - room);
            out.truncated += 1;
        }
        let (ref_chosen, ref_rejected) = (row.ref_chosen_logps, row.ref_rejected_logps);
        out.needs_reference
            .push(cut || ref_chosen.is_none() || ref_rejected.is_none());
        out.pairs.push(PairExample {
            id: row.id.clone(),
            prompt_ids,
            chosen_ids,
            rejected_ids,
            ref_chosen_logps: ref_chosen.unwrap_or(0.0),
            ref_rejected_logps: ref_rejected.unwrap_or(0.0),
        });
    }
    Ok(out)
}

/// Scores `pair`'s two steps under `model` (the reference: the adapter the policy starts from,
/// off the autodiff graph): `(Σ log π(chosen), Σ log π(rejected))`, nats, read back
/// asynchronously (browsers allow no other read).
///
/// # Errors
///
/// As [`completion_logps`]; [`TrainError::Read`] if the device fails.
pub async fn pair_logps(model: &Llama, pair: &PairExample, device: &Device) -> Result<(f64, f64)> {
    let logps = completion_logps(
        model,
        &pair.prompt_ids,
        &[&pair.chosen_ids, &pair.rejected_ids],
        device,
    )?
    .into_data_async()
    .await
    .map_err(|e| TrainError::Read(format!("{e:?}")))?;
    let v: Vec<f64> = logps.iter::<f64>().collect();
    Ok((v[0], v[1]))
}

/// The pair indices of every optimizer step of `epoch`: all pairs in a seeded shuffle (seed
/// `config.seed + epoch`), `batch_size × gradient_accumulation_steps` per step (TRL's batch of
/// pairs; the last step of an epoch may have fewer).
pub fn pair_epoch_steps(
    pairs: usize,
    config: &crate::TrainConfig,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..pairs).collect();
    umi_data::batch::seeded_shuffle(&mut order, config.seed + epoch as u64);
    let per_step = (config.batch_size * config.gradient_accumulation_steps).max(1);
    order.chunks(per_step).map(<[usize]>::to_vec).collect()
}

impl crate::TrainerState {
    /// The pair indices of the next optimizer step ([`pair_epoch_steps`] of the epoch in
    /// progress, after the `steps_in_epoch` already done), as
    /// [`crate::TrainerState::next_step_batches`] does for SFT. Empty when there are no pairs.
    pub fn next_step_pairs(&mut self, pairs: usize) -> Vec<usize> {
        if pairs == 0 {
            return Vec::new();
        }
        loop {
            let mut steps = pair_epoch_steps(pairs, &self.config, self.epoch);
            if self.steps_in_epoch < steps.len() {
                return steps.swap_remove(self.steps_in_epoch);
            }
            self.epoch += 1;
            self.steps_in_epoch = 0;
        }
    }
}

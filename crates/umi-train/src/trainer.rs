//! The training loop: settings, schedule, clipping, AdamW, accumulation.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData, Transaction};
use serde::{Deserialize, Serialize};
use umi_data::Role;
use umi_data::batch::Batch;
use umi_model::{Llama, LoraConfig, ParamRef, attach_lora};

use crate::dpo::settings::DpoStats;
use crate::loss::{batch_loss, split_rows};
use crate::{Result, TrainError};

/// Training settings. Defaults are GLPFT's global stage (README: lr 5e-5, 2 epochs, warm-up
/// ratio 0.4, cosine); see [`TrainConfig::local`] for the per-role stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// Fraction of optimizer steps spent warming up linearly from 0.
    pub warmup_ratio: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW β₁.
    pub adam_beta1: f64,
    /// AdamW β₂.
    pub adam_beta2: f64,
    /// AdamW ε.
    pub adam_epsilon: f64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Global gradient-norm clip (`clip_grad_norm_`); 0 disables it.
    pub max_grad_norm: f64,
    /// Tokens per example; longer ones keep their end.
    pub max_len: usize,
    /// Seed of the batch order, adapter initialisation and dropout.
    pub seed: u64,
    /// LoRA settings; `None` trains every weight.
    pub lora: Option<LoraConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            epochs: 2,
            warmup_ratio: 0.4,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            batch_size: 1,
            gradient_accumulation_steps: 1,
            max_grad_norm: 1.0,
            max_len: 1024,
            seed: 42,
            lora: None,
        }
    }
}

impl TrainConfig {
    /// GLPFT global fine-tuning on backbone samples (lr 5e-5, 2 epochs, warm-up 0.4).
    pub fn global() -> Self {
        Self::default()
    }

    /// GLPFT local fine-tuning of `role` from the global checkpoint (lr 1e-5, weight decay
    /// 0.01; planner and caller 1 epoch with warm-up 0.2, summarizer 2 epochs with warm-up 0.4).
    pub fn local(role: Role) -> Self {
        let (epochs, warmup_ratio) = match role {
            Role::Summarizer => (2, 0.4),
            _ => (1, 0.2),
        };
        Self {
            learning_rate: 1e-5,
            epochs,
            warmup_ratio,
            weight_decay: 0.01,
            ..Self::default()
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Invalid(m));
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!(
                "learning rate must be positive, not {}",
                self.learning_rate
            ));
        }
        if self.epochs == 0 || self.batch_size == 0 || self.gradient_accumulation_steps == 0 {
            return bad(
                "epochs, batch size and gradient accumulation steps must be positive".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad(format!(
                "warm-up ratio must be in [0, 1], not {}",
                self.warmup_ratio
            ));
        }
        if self.max_len < 2 {
            return bad(format!("max_len must be at least 2, not {}", self.max_len));
        }
        if let Some(lora) = &self.lora {
            lora.validate("LoRA settings")?;
        }
        Ok(())
    }
}

/// Learning rate after `step` optimizer steps: `base·step/warmup` during warm-up, then
/// `base·½(1 + cos(π·progress))` down to 0 at `total` (Hugging Face's
/// `get_cosine_schedule_with_warmup`, `warmup = ceil(ratio·total)` as `TrainingArguments`).
pub fn cosine_lr(step: usize, total: usize, warmup_ratio: f64, base: f64) -> f64 {
    let warmup = (warmup_ratio * total as f64).ceil() as usize;
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Optimizer steps done after this one.
    pub step: usize,
    /// Mean target-token loss of the step's micro-batches (before the update).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Target tokens the loss covered.
    pub target_tokens: usize,
    /// All tokens (prompt + target + padding) processed.
    pub tokens: usize,
    /// The implicit rewards of a DPO step ([`Trainer::dpo_step`]); `None` for SFT steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<DpoStats>,
}

/// Gives every parameter an id from its position in the model, so optimizer state saved by one
/// run matches the parameters of the next (burn keys optimizer state by `ParamId`).
struct StableIds(u64);

impl ModuleMapper for StableIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.0 += 1;
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(ParamId::from(self.0), value, mapper)
    }
}

/// Sums the squares of every gradient (global norm), then scales them all when clipping.
struct GradNorm<'a> {
    grads: &'a mut GradientsParams,
    sum_sq: Option<Tensor<1>>,
    scale: Option<Tensor<1>>,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match &self.scale {
            None => {
                if let Some(g) = self.grads.get::<D>(param.id) {
                    let s = g.square().sum();
                    self.sum_sq = Some(match self.sum_sq.take() {
                        Some(acc) => acc + s,
                        None => s,
                    });
                }
            }
            Some(scale) => {
                if let Some(g) = self.grads.remove::<D>(param.id) {
                    let dims = [1; D];
                    let g = g * scale.clone().reshape(dims);
                    self.grads.register(param.id, g);
                }
            }
        }
    }
}

/// Reads the loss and the gradient norm (`[1]` each) and, if given, a vector of other values
/// back in one asynchronous transaction. All leave autodiff first: a transaction reads tensors
/// of one kind only, and the loss is tracked while the norm is not.
async fn read_back(
    loss: Tensor<1>,
    norm: Tensor<1>,
    extra: Option<Tensor<1>>,
) -> Result<(f64, f64, Vec<f64>)> {
    let mut transaction = Transaction::default()
        .register(loss.inner())
        .register(norm.inner());
    if let Some(extra) = extra {
        transaction = transaction.register(extra.inner());
    }
    let data = transaction
        .execute_async()
        .await
        .map_err(|e| TrainError::Read(format!("{e:?}")))?;
    let values = |d: &TensorData| d.iter::<f64>().collect::<Vec<f64>>();
    let scalar = |d: &TensorData| -> Result<f64> {
        values(d)
            .first()
            .copied()
            .ok_or_else(|| TrainError::Read("an empty tensor was read back".into()))
    };
    match data.as_slice() {
        [a, b] => Ok((scalar(a)?, scalar(b)?, Vec::new())),
        [a, b, c] => Ok((scalar(a)?, scalar(b)?, values(c))),
        _ => Err(TrainError::Read(format!(
            "expected 2 or 3 tensors back, got {}",
            data.len()
        ))),
    }
}

/// Trains a [`Llama`] with AdamW; see the crate docs.
pub struct Trainer {
    model: Option<Llama>,
    optim: ModuleOptimizer,
    /// Settings.
    pub config: TrainConfig,
    /// Optimizer steps done.
    pub step: usize,
    /// Optimizer steps planned (for the schedule).
    pub total_steps: usize,
    device: Device,
}

impl Trainer {
    /// Prepares `model` for training on `device` (made autodiff here): with LoRA, the base is
    /// frozen and fresh adapters are attached (`B = 0`); otherwise every weight trains.
    /// `total_steps` sizes the learning-rate schedule.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] for bad settings.
    pub fn new(
        model: Llama,
        config: TrainConfig,
        total_steps: usize,
        device: &Device,
    ) -> Result<Self> {
        Self::with_adapters(model, config, total_steps, device, true)
    }

    /// As [`Trainer::new`]; with `fresh_adapters = false` the model's attached adapters (a
    /// loaded PEFT adapter, a resumed checkpoint) are trained instead of new ones.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] for bad settings, or LoRA asked without adapters.
    pub fn with_adapters(
        model: Llama,
        config: TrainConfig,
        total_steps: usize,
        device: &Device,
        fresh_adapters: bool,
    ) -> Result<Self> {
        config.validate()?;
        let ad = device.clone().autodiff();
        ad.seed(config.seed);
        let mut model = model.fork(&ad).train();
        if let Some(lora) = &config.lora {
            // Freeze the base (as tensors are re-created by fork, do it on the autodiff copy).
            model = model.no_grad();
            if fresh_adapters {
                attach_lora(&mut model, lora, config.seed, &ad)?;
            } else {
                let mut any = false;
                for (_, p) in model.projections_mut() {
                    if let Some(adapter) = p.lora.take() {
                        any = true;
                        p.lora = Some(umi_model::LoraAdapter {
                            a: Param::from_tensor(adapter.a.val().detach()),
                            b: Param::from_tensor(adapter.b.val().detach()),
                            ..adapter
                        });
                    }
                }
                if !any {
                    return Err(TrainError::Invalid(
                        "LoRA training was asked to continue existing adapters, but the model has none".into(),
                    ));
                }
            }
            model.set_lora_training(true);
        }
        let model = model.map(&mut StableIds(0));
        let optim = AdamWConfig::new()
            .with_beta_1(config.adam_beta1 as f32)
            .with_beta_2(config.adam_beta2 as f32)
            .with_epsilon(config.adam_epsilon as f32)
            .with_weight_decay(config.weight_decay as f32)
            .init();
        Ok(Self {
            model: Some(model),
            optim,
            config,
            step: 0,
            total_steps: total_steps.max(1),
            device: ad,
        })
    }

    /// The model being trained (on the autodiff device).
    pub fn model(&self) -> &Llama {
        self.model
            .as_ref()
            .expect("the model is only taken during a step")
    }

    /// Switches adapter dropout on or off in the model being trained (on by default for LoRA).
    pub fn set_dropout(&mut self, on: bool) {
        if let Some(model) = self.model.as_mut() {
            model.set_lora_training(on);
        }
    }

    /// The model for inference: off the autodiff graph, adapter dropout off.
    pub fn inference_model(&self) -> Llama {
        let mut model = self.model().valid();
        model.set_lora_training(false);
        model
    }

    /// The device training runs on (autodiff).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The optimizer (for checkpoints).
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }

    #[cfg(not(target_family = "wasm"))]
    pub(crate) fn optimizer_mut(&mut self) -> &mut ModuleOptimizer {
        &mut self.optim
    }

    /// Replaces the optimizer state (resuming).
    pub fn set_optimizer(&mut self, optim: ModuleOptimizer) {
        self.optim = optim;
    }

    /// Loss and gradients of `micro_batches` without updating: the loss is the mean over all
    /// their target tokens (each micro-batch weighted by its token count, so accumulation equals
    /// one big batch). Returns `(loss, grads, target_tokens, tokens)`; `None` if no batch has a
    /// target token.
    fn loss_and_grads(
        &self,
        micro_batches: &[Batch],
    ) -> Option<(Tensor<1>, GradientsParams, usize, usize)> {
        let model = self.model();
        let total: usize = micro_batches
            .iter()
            .map(|b| {
                b.labels
                    .iter()
                    .map(|row| {
                        row.iter()
                            .skip(1)
                            .filter(|&&l| l != umi_data::batch::IGNORE_INDEX)
                            .count()
                    })
                    .sum::<usize>()
            })
            .sum();
        if total == 0 {
            return None;
        }
        // the products between the serial stretches of the graph run on all threads
        let _awake = umi_model::ops::awake::hold();
        let mut accumulator = GradientsAccumulator::<Llama>::new();
        let mut loss_sum: Option<Tensor<1>> = None;
        let mut tokens = 0;
        for batch in micro_batches.iter().flat_map(split_rows) {
            let (rows, cols) = (batch.input_ids.len(), batch.input_ids[0].len());
            tokens += rows * cols;
            let Some((loss, n)) = batch_loss(model, &batch, &self.device) else {
                continue;
            };
            let weighted = loss.mul_scalar(n as f64 / total as f64);
            let grads = GradientsParams::from_grads(weighted.backward(), model);
            accumulator.accumulate(model, grads);
            let value = weighted.detach();
            loss_sum = Some(match loss_sum {
                Some(acc) => acc + value,
                None => value,
            });
        }
        Some((loss_sum?, accumulator.grads(), total, tokens))
    }

    /// Loss and gradients of `micro_batches` by parameter name, without updating (for checks
    /// against other frameworks; it reads synchronously, so native only): Hugging Face names and
    /// `[out, in]` layouts for base weights, PEFT names and layouts (`lora_A.weight` `[r, in]`,
    /// `lora_B.weight` `[out, r]`) for adapters, as [`Llama::named_params`] names and orders
    /// them; parameters without a gradient are left out.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] when the batches have no target token.
    pub fn named_gradients(
        &self,
        micro_batches: &[Batch],
    ) -> Result<(f64, Vec<(String, umi_model::weights::HostTensor)>)> {
        let (loss, grads, _, _) = self
            .loss_and_grads(micro_batches)
            .ok_or_else(|| TrainError::Invalid("the batches have no target tokens".into()))?;
        Ok((loss.into_scalar::<f64>(), self.name_gradients(&grads)))
    }

    /// `grads` by parameter name (see [`Trainer::named_gradients`]).
    pub(crate) fn name_gradients(
        &self,
        grads: &GradientsParams,
    ) -> Vec<(String, umi_model::weights::HostTensor)> {
        let host = |t: Tensor<2>| {
            let shape = t.dims().to_vec();
            let data = t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            umi_model::weights::HostTensor { shape, data }
        };
        self.model()
            .named_params()
            .filter_map(|(name, p)| {
                let grad = match p {
                    ParamRef::Norm(w) => {
                        let g = grads.get::<1>(w.id)?;
                        let n = g.dims()[0];
                        umi_model::weights::HostTensor {
                            shape: vec![n],
                            data: host(g.reshape([1, n])).data,
                        }
                    }
                    ParamRef::Embedding(w) => host(grads.get::<2>(w.id)?),
                    ParamRef::Projection(w) | ParamRef::Adapter(w) => {
                        host(grads.get::<2>(w.id)?).transposed()
                    }
                };
                Some((name, grad))
            })
            .collect()
    }

    /// Global gradient norm, as a `[1]` tensor (no read back).
    fn grad_norm(&self, grads: &mut GradientsParams) -> Option<Tensor<1>> {
        let mut v = GradNorm {
            grads,
            sum_sq: None,
            scale: None,
        };
        self.model().visit(&mut v);
        v.sum_sq.map(Tensor::sqrt)
    }

    /// One optimizer step over `micro_batches` (gradient accumulation): loss, global-norm
    /// clipping, AdamW with the scheduled learning rate.
    ///
    /// Asynchronous because the loss and the gradient norm are read back from the device, which
    /// a browser (WebGPU) only allows asynchronously; natively, drive it with
    /// `pollster::block_on`. The graph is built and the update applied on the caller's thread,
    /// so the future never needs to be `Send`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] when no micro-batch has a target token, or the loss is not finite
    /// (the step is then not applied); [`TrainError::Read`] if the device fails.
    pub async fn train_step(&mut self, micro_batches: &[Batch]) -> Result<StepStats> {
        let Some((loss, grads, target_tokens, tokens)) = self.loss_and_grads(micro_batches) else {
            return Err(TrainError::Invalid(
                "the step's batches have no target tokens (all labels are -100)".into(),
            ));
        };
        self.apply_gradients(loss, grads, target_tokens, tokens)
            .await
    }

    /// The second half of an optimizer step, for any objective: `loss` (`[1]`, already
    /// backpropagated into `grads`, the gradients of [`Trainer::model`]'s parameters) is read
    /// back with the global gradient norm, the gradients are clipped to
    /// [`TrainConfig::max_grad_norm`] and AdamW applies them with the scheduled learning rate.
    /// [`Trainer::train_step`] calls it with the causal-LM loss; another objective (e.g.
    /// step-level DPO on preference pairs) builds its own loss and gradients on
    /// [`Trainer::model`] and calls it too. `target_tokens` and `tokens` are only reported.
    ///
    /// # Errors
    ///
    /// [`TrainError::Invalid`] when no parameter has a gradient or the loss is not finite (the
    /// update is then not applied); [`TrainError::Read`] if the device fails.
    pub async fn apply_gradients(
        &mut self,
        loss: Tensor<1>,
        grads: GradientsParams,
        target_tokens: usize,
        tokens: usize,
    ) -> Result<StepStats> {
        let (stats, _) = self
            .apply_gradients_with(loss, grads, target_tokens, tokens, None)
            .await?;
        Ok(stats)
    }

    /// [`Trainer::apply_gradients`], reading `extra` (e.g. a DPO step's log-probabilities) back
    /// in the same transaction as the loss and the norm.
    pub(crate) async fn apply_gradients_with(
        &mut self,
        loss: Tensor<1>,
        mut grads: GradientsParams,
        target_tokens: usize,
        tokens: usize,
        extra: Option<Tensor<1>>,
    ) -> Result<(StepStats, Vec<f64>)> {
        let norm = self
            .grad_norm(&mut grads)
            .ok_or_else(|| TrainError::Invalid("no parameter received a gradient".into()))?;
        if self.config.max_grad_norm > 0.0 {
            let scale = norm
                .clone()
                .add_scalar(1e-6)
                .recip()
                .mul_scalar(self.config.max_grad_norm)
                .clamp_max(1.0);
            let mut v = GradNorm {
                grads: &mut grads,
                sum_sq: None,
                scale: Some(scale),
            };
            self.model().visit(&mut v);
        }
        // One asynchronous read of both scalars: synchronous reads panic in a browser.
        let (loss_value, norm_value, extra) = read_back(loss, norm, extra).await?;
        if !loss_value.is_finite() {
            return Err(TrainError::Invalid(format!(
                "the loss is {loss_value} at step {}; the update was not applied (lower the learning rate?)",
                self.step + 1
            )));
        }
        let lr = cosine_lr(
            self.step,
            self.total_steps,
            self.config.warmup_ratio,
            self.config.learning_rate,
        );
        let model = self.model.take().expect("model present");
        self.model = Some(self.optim.step(lr, model, grads));
        self.step += 1;
        let stats = StepStats {
            step: self.step,
            loss: loss_value,
            grad_norm: norm_value,
            learning_rate: lr,
            target_tokens,
            tokens,
            dpo: None,
        };
        Ok((stats, extra))
    }

    /// Mean target-token loss of `batches` under the current weights, without gradients;
    /// `Ok(None)` when no batch has a target token. Asynchronous for the same reason as
    /// [`Trainer::train_step`].
    ///
    /// # Errors
    ///
    /// [`TrainError::Read`] if the device fails.
    pub async fn eval_loss(&self, batches: &[Batch]) -> Result<Option<f64>> {
        let model = self.inference_model();
        let device = self.device.clone().inner();
        let (mut sum, mut count) = (0.0, 0usize);
        for batch in batches {
            if let Some((loss, n)) = batch_loss(&model, batch, &device) {
                let loss = loss
                    .into_scalar_async::<f64>()
                    .await
                    .map_err(|e| TrainError::Read(format!("{e:?}")))?;
                sum += loss * n as f64;
                count += n;
            }
        }
        Ok((count > 0).then(|| sum / count as f64))
    }
}

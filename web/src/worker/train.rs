//! LoRA fine-tuning of one role in the worker, on WebGPU: the browser twin of
//! `umi train local --lora` (`umi-cli`'s `train`) and of `umi train dpo` (step-level DPO on
//! imported preference pairs, psrlm-design.md §3.3 item 8 and §6). The data, the batches, the
//! step and the adapter files are umi-train's and umi-model's; only the messages are the
//! browser's (the Cache API storage of the result is `adapters.rs`'s).

use std::path::Path;
use std::rc::Rc;

use umi_data::preference::parse_pairs;
use umi_data::readers::parse_alpha_umi;
use umi_data::{PromptSet, Role, RoleMap, role_samples};
use umi_model::{AdapterSet, Device, LoadedModel, LoraConfig, peft_files, peft_state_dict_async};
use umi_train::{
    DpoConfig, FineTuneRun, Objective, ReferenceTolerance, TrainConfig, Trainer, TrainerState,
    adapter_lora_config, check_reference, prepare_pairs,
};

use crate::protocol::{TrainObjective, TrainProgress, TrainSettings};
use crate::worker::scope::now_ms;

/// Pairs with a longer step are left out (`umi train dpo --max-step-tokens`'s default).
const MAX_STEP_TOKENS: usize = 256;

/// A fine-tuning run in the worker: kept between messages, so that a paused run resumes with
/// the same weights, optimizer state and batch order.
pub struct TrainJob {
    /// The role being trained.
    pub role: Role,
    run: FineTuneRun,
    lora: LoraConfig,
    /// Tokens processed and milliseconds spent in steps (for tokens/s).
    tokens: usize,
    millis: f64,
}

/// The α-UMi records `text` holds (`origin` names it) as `role`'s training samples, exactly as
/// `umi train local` makes them (`umi_data::role_samples` with the ToolBench prompts).
///
/// # Errors
///
/// A message when the text is not α-UMi JSON or gives no sample of `role`.
pub fn role_samples_of(
    text: &str,
    origin: &str,
    role: Role,
) -> Result<(Vec<umi_data::RoleSample>, String), String> {
    let (conversations, report) =
        parse_alpha_umi(text, Path::new(origin)).map_err(|e| e.to_string())?;
    let samples: Vec<_> = conversations
        .iter()
        .flat_map(|c| role_samples(c, role, PromptSet::ToolBench))
        .collect();
    let skipped = if report.skipped.is_empty() {
        String::new()
    } else {
        format!(", {} records skipped", report.skipped.len())
    };
    if samples.is_empty() {
        return Err(format!(
            "{origin}: {} conversations give no {} samples{skipped}",
            conversations.len(),
            role.as_str()
        ));
    }
    let summary = format!(
        "{origin}: {} {} samples from {} conversations{skipped}",
        samples.len(),
        role.as_str(),
        conversations.len()
    );
    Ok((samples, summary))
}

impl TrainJob {
    /// Prepares LoRA fine-tuning of `settings.role` on `samples` from `model` (fresh adapters,
    /// seed 42, GLPFT's local-stage schedule for the role).
    ///
    /// # Errors
    ///
    /// A message for bad settings or samples that do not tokenize.
    pub fn new(
        settings: &TrainSettings,
        samples: &[umi_data::RoleSample],
        model: &LoadedModel,
        device: &Device,
    ) -> Result<Self, String> {
        let lora = LoraConfig {
            r: settings.rank,
            lora_alpha: settings.alpha,
            lora_dropout: settings.dropout,
            ..LoraConfig::default()
        };
        let config = TrainConfig {
            learning_rate: settings.learning_rate,
            max_len: settings.max_len,
            lora: Some(lora.clone()),
            ..TrainConfig::local(settings.role)
        };
        config.validate().map_err(|e| e.to_string())?;
        let objective = Objective::sft(
            samples,
            &model.tokenizer,
            model.model.max_positions(),
            &config,
        )
        .map_err(|e| e.to_string())?;
        let total_steps = objective
            .total_steps(&config, settings.steps)
            .map_err(|e| format!("{e} (or leave steps empty for the role's epochs)"))?;
        let trainer = Trainer::new(model.model.clone(), config.clone(), total_steps, device)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            role: settings.role,
            run: FineTuneRun::new(trainer, TrainerState::new(config, total_steps), objective),
            lora,
            tokens: 0,
            millis: 0.0,
        })
    }

    /// What the run optimises.
    pub fn objective(&self) -> TrainObjective {
        match self.run.objective().dpo() {
            Some(d) => TrainObjective::Dpo { beta: d.beta },
            None => TrainObjective::Sft,
        }
    }

    /// Prepares step-level DPO of `settings.role` with `beta` on the preference pairs `text`
    /// holds (`origin` names the file), as `umi train dpo` runs it (`TrainConfig::dpo` with the
    /// panel's learning rate, steps and max length; the same tokenizing and cutting,
    /// `prepare_pairs`): the policy continues `installed` (the role's adapter and where it came
    /// from, in words), or fresh adapters with the panel's rank, alpha and dropout when the role
    /// has none. Returns the job and a description of the data.
    ///
    /// Reference log-probabilities are never computed here (psrlm-design.md §6): every pair
    /// must carry them for the adapter training starts from, and those of the first step's
    /// pairs must match it (`check_reference`) within `ReferenceTolerance::CROSS_BACKEND`: the
    /// file was scored natively, on another backend.
    ///
    /// # Errors
    ///
    /// A message for bad settings, a file that has no pair, pairs without reference
    /// log-probabilities (naming `umi reward export --recompute-ref`), or recorded ones that
    /// belong to another adapter.
    pub async fn dpo(
        settings: &TrainSettings,
        beta: f64,
        (text, origin): (&str, &str),
        model: &LoadedModel,
        installed: Option<(&AdapterSet, &str)>,
        device: &Device,
    ) -> Result<(Self, String), String> {
        let dpo = DpoConfig {
            beta,
            ..DpoConfig::default()
        };
        dpo.validate().map_err(|e| e.to_string())?;
        let (rows, report) = parse_pairs(text, Path::new(origin)).map_err(|e| e.to_string())?;
        let max_len = settings.max_len.min(model.model.max_positions());
        let role = settings.role;
        let prepared = prepare_pairs(
            &rows,
            &model.tokenizer,
            role.as_str(),
            max_len,
            MAX_STEP_TOKENS,
        )
        .map_err(|e| e.to_string())?;
        let dropped = prepared.dropped.len();
        let pairs = prepared
            .with_recorded_reference(max_len)
            .map_err(|e| format!("{origin}: {e}"))?;
        let mut policy = model.model.clone();
        let (lora, start) = match installed.filter(|(set, _)| !set.is_empty()) {
            Some((set, from)) => {
                policy.set_adapters(set);
                let lora = adapter_lora_config(set).ok_or("the installed adapter is empty")?;
                (lora, format!("the {from} {} adapter", role.as_str()))
            }
            None => (
                LoraConfig {
                    r: settings.rank,
                    lora_alpha: settings.alpha,
                    lora_dropout: settings.dropout,
                    ..LoraConfig::default()
                },
                format!("fresh {} adapters", role.as_str()),
            ),
        };
        let fresh = installed.is_none_or(|(set, _)| set.is_empty());
        let config = TrainConfig {
            learning_rate: settings.learning_rate,
            max_len,
            lora: Some(lora.clone()),
            ..TrainConfig::dpo()
        };
        config.validate().map_err(|e| e.to_string())?;
        let objective = Objective::Dpo { pairs, config: dpo };
        let total_steps = objective
            .total_steps(&config, settings.steps)
            .map_err(|e| format!("{e} (or leave steps empty for one epoch)"))?;
        let mut state = TrainerState::new(config.clone(), total_steps);
        state.dpo = Some(dpo);
        // policy = reference at step 0 (fresh adapters change nothing: B = 0)
        check_reference(
            &policy,
            objective.pairs().unwrap_or_default(),
            &state,
            device,
            ReferenceTolerance::CROSS_BACKEND,
            &start,
            "make the file with `umi reward export --recompute-ref` and the adapter this role runs with",
        )
        .await
        .map_err(|e| format!("{origin}: {e}"))?;
        let trainer = Trainer::with_adapters(policy, config, total_steps, device, fresh)
            .map_err(|e| e.to_string())?;
        let skipped = report.skipped.len();
        let summary = format!(
            "{origin}: {} {} pairs ({dropped} left out with a step over {MAX_STEP_TOKENS} tokens, {skipped} lines skipped); training {start} (LoRA r = {}), β {beta}",
            objective.len(),
            role.as_str(),
            lora.r
        );
        Ok((
            Self {
                role,
                run: FineTuneRun::new(trainer, state, objective),
                lora,
                tokens: 0,
                millis: 0.0,
            },
            summary,
        ))
    }

    /// Training examples (DPO: pairs).
    pub fn samples(&self) -> usize {
        self.run.objective().len()
    }

    /// Steps planned.
    pub fn total_steps(&self) -> usize {
        self.run.state.total_steps
    }

    /// Steps done.
    pub fn step(&self) -> usize {
        self.run.state.step
    }

    /// Whether every planned step is done.
    pub fn is_done(&self) -> bool {
        self.run.is_done()
    }

    /// Runs the next optimizer step (awaiting the GPU, so the worker keeps answering
    /// messages meanwhile).
    ///
    /// # Errors
    ///
    /// The trainer's message (no target token, a non-finite loss, a device failure).
    pub async fn step_once(&mut self) -> Result<TrainProgress, String> {
        let start = now_ms();
        let stats = self.run.step().await.map_err(|e| e.to_string())?;
        self.millis += now_ms() - start;
        self.tokens += stats.tokens;
        Ok(TrainProgress {
            step: stats.step,
            total_steps: self.run.state.total_steps,
            loss: stats.loss,
            grad_norm: stats.grad_norm,
            learning_rate: stats.learning_rate,
            tokens_per_second: self.tokens as f64 / (self.millis / 1e3).max(1e-9),
            rewards_margin: stats.dpo.map(|d| d.rewards_margin),
            rewards_accuracy: stats.dpo.map(|d| d.rewards_accuracy),
        })
    }

    /// The adapters trained so far, for the agent (off the autodiff graph, dropout off), and
    /// their PEFT files.
    ///
    /// # Errors
    ///
    /// A message if the adapters cannot be read back or serialised.
    pub async fn adapter(&self) -> Result<(AdapterSet, umi_model::PeftFiles), String> {
        let mut model = self.run.trainer.inference_model();
        let tensors = peft_state_dict_async(&model)
            .await
            .map_err(|e| e.to_string())?;
        let origin = format!("the {} adapter", self.role.as_str());
        let files = peft_files(&tensors, &self.lora, None, &origin).map_err(|e| e.to_string())?;
        Ok((model.take_adapters(), files))
    }
}

/// The model `role` runs on, shared with the agent (`None` for the backbone, which the page
/// does not fine-tune).
pub fn role_model(models: &RoleMap<Rc<LoadedModel>>, role: Role) -> Option<Rc<LoadedModel>> {
    (role != Role::Backbone).then(|| models.get(role).clone())
}

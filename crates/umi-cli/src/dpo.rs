//! `umi train dpo`: step-level DPO (`umi-train`'s `Trainer::dpo_step`) on preference pairs
//! (umi's mined `pairs.jsonl` or TRL's `{prompt, chosen, rejected}` rows), continuing a role's
//! LoRA adapter, with reference log-probabilities recorded or computed, a check that they belong
//! to the starting adapter, checkpoints that `--resume` continues, and the loss and reward
//! margin as CSV and SVG. The specification is ../shared/docs/psrlm-design.md §2.10 and §3.5.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use umi_data::preference::read_pairs;
use umi_model::{Backend, load_peft, merge_lora, save_peft};
use umi_train::{
    DpoConfig, DpoLoss, FineTuneRun, Objective, ReferenceTolerance, TrainConfig, Trainer,
    TrainerState, check_reference, prepare_pairs,
};

use crate::steps::{checkpoint_to_resume, step_loop, write_curve};

#[derive(clap::Args)]
pub struct DpoArgs {
    /// Preference pairs, JSON lines (repeatable): umi's records with token ids and reference
    /// log-probs, or TRL's {"prompt", "chosen", "rejected"} texts.
    #[arg(long, required = true)]
    pairs: Vec<PathBuf>,
    /// The role the pairs train: planner, caller or summarizer.
    #[arg(long)]
    role: String,
    /// Base model (.gguf or Hugging Face folder).
    #[arg(long, default_value = crate::DEFAULT_MODEL)]
    model: PathBuf,
    /// A PEFT adapter (the global stage's) merged into the base first.
    #[arg(long)]
    init_adapter: Option<PathBuf>,
    /// The role's PEFT adapter the policy starts from (and, unless --ref-adapter, the reference).
    #[arg(long)]
    adapter: PathBuf,
    /// Another adapter as the frozen reference (its log-probs are computed for every pair).
    #[arg(long)]
    ref_adapter: Option<PathBuf>,
    /// Compute every pair's reference log-probs instead of using recorded ones.
    #[arg(long)]
    recompute_ref: bool,
    /// β: how strongly the policy is held to the reference.
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// Loss: sigmoid (DPO), sigmoid-norm (log-ratios per token) or robust (noisy labels).
    #[arg(long, default_value = "sigmoid")]
    loss: String,
    /// ε of the robust loss: the share of pairs assumed mislabelled.
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f64,
    /// Weight of an added SFT term on the chosen steps (0: off).
    #[arg(long, default_value_t = 0.0)]
    sft_weight: f64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-5)]
    lr: f64,
    /// Epochs over the pairs.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Train for this many optimizer steps instead of --epochs.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Warm-up ratio of the cosine schedule.
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Pairs per micro-batch.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Micro-batches per optimizer step (pairs per step = batch size × this).
    #[arg(long, default_value_t = 8)]
    grad_accum: usize,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Tokens of prompt + step (longer prompts keep their end).
    #[arg(long, default_value_t = 1536)]
    max_len: usize,
    /// Pairs with a longer step are left out (steps are never cut).
    #[arg(long, default_value_t = 256)]
    max_step_tokens: usize,
    /// Seed (pair order).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Save a checkpoint every N optimizer steps (and at the end).
    #[arg(long, default_value_t = 50)]
    save_every: usize,
    /// Output folder: checkpoint-N/, final/adapter/, loss.csv, loss.svg.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
}

fn dpo_config(a: &DpoArgs) -> Result<DpoConfig> {
    let loss = match a.loss.as_str() {
        "sigmoid" => DpoLoss::Sigmoid,
        "sigmoid-norm" | "sigmoid_norm" => DpoLoss::SigmoidNorm,
        "robust" => DpoLoss::Robust {
            label_smoothing: a.label_smoothing,
        },
        other => bail!("--loss must be sigmoid, sigmoid-norm or robust, not {other:?}"),
    };
    let config = DpoConfig {
        beta: a.beta,
        loss,
        sft_weight: a.sft_weight,
    };
    config.validate()?;
    Ok(config)
}

fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}}  {{elapsed}}, ETA {{eta}}"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    bar
}

/// Where pairs come from and how they are made ready (shared by `umi train dpo` and
/// `umi reward export`).
pub(crate) struct PairSource<'a> {
    pub pairs: &'a [PathBuf],
    pub role: &'a str,
    pub model: &'a std::path::Path,
    pub init_adapter: Option<&'a std::path::Path>,
    /// The adapter whose log-probs are the reference.
    pub reference: &'a std::path::Path,
    /// Compute every pair's reference log-probs, recorded or not.
    pub recompute: bool,
    pub max_len: usize,
    pub max_step_tokens: usize,
}

/// Pairs ready to train, with the backbone they were tokenized and scored on.
pub(crate) struct ReadyPairs {
    /// The backbone (--init-adapter merged), without the reference adapter.
    pub loaded: umi_model::LoadedModel,
    pub pairs: Vec<umi_train::PairExample>,
    /// --max-len within the model's context.
    pub max_len: usize,
}

/// Reads the pair files, tokenizes and cuts the pairs ([`prepare_pairs`]) and computes the
/// reference log-probs that are missing (or all, with `recompute`) with the reference adapter
/// ([`umi_train::PreparedPairs::score_reference`], as the web app's Fine-tune panel requires
/// them recorded with [`umi_train::PreparedPairs::with_recorded_reference`]).
pub(crate) fn load_pairs(source: &PairSource, device: &umi_model::Device) -> Result<ReadyPairs> {
    let mut rows = Vec::new();
    for path in source.pairs {
        let (pairs, report) = read_pairs(path)?;
        for s in &report.skipped {
            eprintln!("warning: skipped {s}");
        }
        rows.extend(pairs);
    }
    let mut loaded = crate::models::load_with_progress(source.model, device)?;
    if let Some(adapter) = source.init_adapter {
        load_peft(&mut loaded.model, adapter, device)
            .with_context(|| format!("loading the adapter {}", adapter.display()))?;
        merge_lora(&mut loaded.model);
    }
    let max_len = source.max_len.min(loaded.model.max_positions());
    let mut prepared = prepare_pairs(
        &rows,
        &loaded.tokenizer,
        source.role,
        max_len,
        source.max_step_tokens,
    )?;
    for (id, why) in &prepared.dropped {
        eprintln!("warning: left out pair {id}: {why}");
    }
    prepared.ensure_some()?;
    let mut reference = loaded.model.clone();
    load_peft(&mut reference, source.reference, device).with_context(|| {
        format!(
            "loading the reference adapter {}",
            source.reference.display()
        )
    })?;
    let needs = prepared.to_score(source.recompute);
    if !needs.is_empty() {
        let bar = progress_bar(needs.len(), "reference log-probs");
        pollster::block_on(prepared.score_reference(&reference, &needs, device, || bar.inc(1)))?;
        bar.finish_and_clear();
    }
    let pairs = prepared.pairs;
    eprintln!(
        "{} pairs ({} left out, {} prompts cut to --max-len {max_len}); reference log-probs: {} recorded, {} computed with {}",
        pairs.len(),
        prepared.dropped.len(),
        prepared.truncated,
        pairs.len() - needs.len(),
        needs.len(),
        source.reference.display()
    );
    Ok(ReadyPairs {
        loaded,
        pairs,
        max_len,
    })
}

pub fn run(args: DpoArgs) -> Result<()> {
    let role = crate::steps::role_arg(&args.role)?;
    let dpo = dpo_config(&args)?;
    let device = args.backend.device()?;
    let ready = load_pairs(
        &PairSource {
            pairs: &args.pairs,
            role: &args.role,
            model: &args.model,
            init_adapter: args.init_adapter.as_deref(),
            reference: args.ref_adapter.as_deref().unwrap_or(&args.adapter),
            recompute: args.recompute_ref || args.ref_adapter.is_some(),
            max_len: args.max_len,
            max_step_tokens: args.max_step_tokens,
        },
        &device,
    )?;
    let (loaded, pairs, max_len) = (ready.loaded, ready.pairs, ready.max_len);
    let origin = loaded.origin.clone();
    let mut model = loaded.model;
    let lora = load_peft(&mut model, &args.adapter, &device)
        .with_context(|| format!("loading the adapter {}", args.adapter.display()))?;
    let config = TrainConfig {
        learning_rate: args.lr,
        epochs: args.epochs,
        warmup_ratio: args.warmup_ratio,
        weight_decay: args.weight_decay,
        batch_size: args.batch_size,
        gradient_accumulation_steps: args.grad_accum,
        max_grad_norm: args.max_grad_norm,
        max_len,
        seed: args.seed,
        lora: Some(lora.clone()),
        ..TrainConfig::local(role)
    };
    config.validate()?;
    let per_step = config.batch_size * config.gradient_accumulation_steps;
    let objective = Objective::Dpo { pairs, config: dpo };
    let steps_per_epoch = objective.steps_per_epoch(&config);
    let total_steps = objective
        .total_steps(&config, args.max_steps)
        .context("--max-steps")?;
    let pairs = objective.pairs().unwrap_or_default();
    std::fs::create_dir_all(&args.out)?;
    let mut state = TrainerState::new(config.clone(), total_steps);
    state.dpo = Some(dpo);
    let resume = checkpoint_to_resume(&args.out, args.resume, &state)?;
    if let Some(ck) = &resume {
        load_peft(&mut model, &ck.adapter_dir(), &device)?;
    } else if args.ref_adapter.is_none() {
        // Policy = reference at step 0: recorded log-probs must be the starting adapter's.
        pollster::block_on(check_reference(
            &model,
            pairs,
            &state,
            &device,
            ReferenceTolerance::SAME_BACKEND,
            &args.adapter.display().to_string(),
            "pass --recompute-ref (or --ref-adapter with the adapter that mined them)",
        ))?;
    }
    let mut trainer = Trainer::with_adapters(model, config.clone(), total_steps, &device, false)?;
    if let Some(ck) = &resume {
        trainer.resume_from(ck)?;
        state = ck.state.clone();
        eprintln!(
            "resuming from {} (step {}/{total_steps})",
            ck.dir.display(),
            state.step
        );
    }
    eprintln!(
        "step-level DPO of the {} adapter: {total_steps} steps of {per_step} pairs (an epoch is {steps_per_epoch}), β {}, {:?} loss",
        args.role, dpo.beta, dpo.loss
    );
    let mut run = FineTuneRun::new(trainer, state, objective);
    step_loop(
        &mut run,
        &args.out,
        args.save_every,
        resume.as_ref().map(|ck| ck.state.step),
        |s| {
            let d = s.dpo.unwrap_or(umi_train::DpoStats::of(&[], &[], dpo.beta));
            format!(
                "loss {:.4}  margin {:+.3}  acc {:.2}  lr {:.2e}",
                s.loss, d.rewards_margin, d.rewards_accuracy, s.learning_rate
            )
        },
    )?;
    let (trainer, state) = (run.trainer, run.state);
    let final_dir = args.out.join("final");
    save_peft(
        &trainer.inference_model(),
        &lora,
        Some(&origin),
        &final_dir.join("adapter"),
    )?;
    write_curve(&args.out, &state.history)?;
    eprintln!(
        "done: {} steps; adapter in {}; loss and reward margin in {}/loss.csv and loss.svg",
        state.step,
        final_dir.join("adapter").display(),
        args.out.display()
    );
    Ok(())
}

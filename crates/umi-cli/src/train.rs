//! `umi train global|local`: GLPFT (`umi-train`) from α-UMi conversations, with a progress bar,
//! checkpoints that `--resume` continues, and the loss curve as CSV and SVG.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use umi_data::readers::Split;

use crate::data::TrajectoryArgs;
use umi_data::{PromptSet, Role, role_samples};
use umi_model::{
    Backend, LoraConfig, load_model, load_peft, merge_lora, save_hf, save_hf_tokenizer, save_peft,
};
use umi_train::{FineTuneRun, Objective, TrainConfig, Trainer, TrainerState};

use crate::fs::write_atomically;
use crate::steps::{checkpoint_to_resume, role_arg, step_loop, write_curve};

#[derive(clap::Subcommand)]
pub enum TrainCommand {
    /// Stage 1: fine-tune one backbone on whole trajectories (backbone samples).
    Global(TrainArgs),
    /// Stage 2: specialise the stage-1 model into one role (planner, caller or summarizer).
    Local {
        /// planner, caller or summarizer.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        args: TrainArgs,
    },
    /// Step-level DPO on preference pairs (process-based self-rewarding's training step,
    /// psrlm-design.md §2.10): continues a role's LoRA adapter so it prefers each pair's chosen
    /// step over its rejected one, relative to a frozen reference (the starting adapter).
    Dpo(crate::dpo::DpoArgs),
    /// Copy a trained PEFT adapter with its tensors stored as f16 (half the size; how umi
    /// ships its adapters in assets/agent/).
    Export {
        /// The adapter folder (e.g. runs/planner/final/adapter).
        #[arg(long)]
        adapter: PathBuf,
        /// Where the f16 copy goes.
        #[arg(long)]
        out: PathBuf,
    },
    /// Draw a loss.csv (umi's, or scripts/gpu/train_peft.py's) as an SVG beside it (the
    /// curve `umi train` draws while it runs, loss.csv -> loss.svg; DPO runs add the margin).
    Plot {
        /// The loss.csv (columns step, loss, grad_norm, learning_rate, target_tokens, tokens).
        csv: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    trajectories: TrajectoryArgs,
    /// Records used: train (all but every --dev-every-th), dev or all.
    #[arg(long, default_value = "train")]
    split: Split,
    /// Base model (.gguf or Hugging Face folder).
    #[arg(long, default_value = crate::DEFAULT_MODEL)]
    model: PathBuf,
    /// A PEFT adapter (e.g. the global stage's `final/adapter`) merged into the base first.
    #[arg(long)]
    init_adapter: Option<PathBuf>,
    /// A role's PEFT adapter to continue training (e.g. a shipped one under assets/agent/):
    /// LoRA with the adapter's rank, alpha, dropout and target modules (the --lora-* flags are
    /// ignored), its weights as the starting point, a fresh optimizer and schedule.
    #[arg(long, conflicts_with = "export_for")]
    adapter: Option<PathBuf>,
    /// Output folder: checkpoint-N/, final/, loss.csv, loss.svg.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Train LoRA adapters instead of every weight.
    #[arg(long)]
    lora: bool,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    lora_r: usize,
    /// LoRA alpha (scaling = alpha / r).
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.05)]
    lora_dropout: f64,
    /// LoRA target projections, comma-separated.
    #[arg(
        long,
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    lora_targets: String,
    /// Peak learning rate (default: GLPFT's 5e-5 global, 1e-5 local).
    #[arg(long)]
    lr: Option<f64>,
    /// Epochs (default: 2 global; local 1, summarizer 2).
    #[arg(long)]
    epochs: Option<usize>,
    /// Warm-up ratio (default: 0.4 global; local 0.2, summarizer 0.4).
    #[arg(long)]
    warmup_ratio: Option<f64>,
    /// Weight decay (default: 0 global, 0.01 local).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Tokens per example (longer ones keep their end).
    #[arg(long, default_value_t = 1024)]
    max_len: usize,
    /// Seed (batch order, adapter init, dropout).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Save a checkpoint every N optimizer steps (and at the end).
    #[arg(long, default_value_t = 50)]
    save_every: usize,
    /// Train for this many optimizer steps instead of --epochs (as Hugging Face's `max_steps`:
    /// the warm-up and cosine schedule span these steps; batches come in the epochs' shuffled
    /// order, so fewer steps than an epoch train on a random subset).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
    /// More role samples, JSON lines of {"tools", "history", "input", "target"} (repeatable),
    /// mixed into the data's: e.g. `umi reward eft`'s judge rows, which teach the planner to
    /// judge steps (process-based self-rewarding's M1).
    #[arg(long)]
    extra_samples: Vec<PathBuf>,
    /// Instead of training, write what this run would train on into this folder and stop, for
    /// training elsewhere (scripts/gpu/train_peft.py, PyTorch + PEFT): `examples.jsonl` (one
    /// `{"input_ids", "labels"}` per example, labels -100 outside the target, exactly as this
    /// run tokenizes them), `run.json` (role, settings, steps) and `base/` (the base model with
    /// --init-adapter merged, as a Hugging Face folder, f32).
    #[arg(long)]
    export_for: Option<PathBuf>,
}

pub fn run(command: TrainCommand) -> Result<()> {
    match command {
        TrainCommand::Export { adapter, out } => {
            umi_model::convert_peft_f16(&adapter, &out)?;
            eprintln!("wrote {} (f16)", out.display());
            Ok(())
        }
        TrainCommand::Plot { csv } => {
            let history = crate::steps::read_curve(&csv)?;
            if history.is_empty() {
                bail!("{}: no steps to plot", csv.display());
            }
            let svg = csv.with_extension("svg");
            crate::steps::plot_curve(&svg, &history)?;
            eprintln!("wrote {} ({} steps)", svg.display(), history.len());
            Ok(())
        }
        TrainCommand::Global(args) => train(Role::Backbone, args),
        TrainCommand::Dpo(args) => crate::dpo::run(args),
        TrainCommand::Local { role, args } => train(role_arg(&role)?, args),
    }
}

fn config_of(role: Role, a: &TrainArgs) -> TrainConfig {
    let mut c = if role == Role::Backbone {
        TrainConfig::global()
    } else {
        TrainConfig::local(role)
    };
    c.learning_rate = a.lr.unwrap_or(c.learning_rate);
    c.epochs = a.epochs.unwrap_or(c.epochs);
    c.warmup_ratio = a.warmup_ratio.unwrap_or(c.warmup_ratio);
    c.weight_decay = a.weight_decay.unwrap_or(c.weight_decay);
    c.batch_size = a.batch_size;
    c.gradient_accumulation_steps = a.grad_accum;
    c.max_grad_norm = a.max_grad_norm;
    c.max_len = a.max_len;
    c.seed = a.seed;
    c.lora = a.lora.then(|| LoraConfig {
        r: a.lora_r,
        lora_alpha: a.lora_alpha,
        lora_dropout: a.lora_dropout,
        target_modules: a
            .lora_targets
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    });
    c
}

fn train(role: Role, args: TrainArgs) -> Result<()> {
    let mut config = config_of(role, &args);
    config.validate()?;
    let conversations = args.trajectories.read()?;
    let conversations = args
        .split
        .select(conversations, args.trajectories.dev_every);
    let mut samples: Vec<_> = conversations
        .iter()
        .flat_map(|c| role_samples(c, role, PromptSet::ToolBench))
        .collect();
    for path in &args.extra_samples {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --extra-samples {}", path.display()))?;
        let before = samples.len();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            samples.push(serde_json::from_str(line).with_context(|| {
                format!(
                    "{} line {}: not a role sample ({{\"tools\", \"history\", \"input\", \"target\"}})",
                    path.display(),
                    i + 1
                )
            })?);
        }
        eprintln!(
            "added {} samples from {}",
            samples.len() - before,
            path.display()
        );
    }
    if samples.is_empty() {
        bail!(
            "{} gives no {role:?} samples",
            args.trajectories.data.display()
        );
    }

    let device = args.backend.device()?;
    let mut loaded = crate::models::load_with_progress(&args.model, &device)?;
    if let Some(adapter) = &args.init_adapter {
        load_peft(&mut loaded.model, adapter, &device)
            .with_context(|| format!("loading the adapter {}", adapter.display()))?;
        merge_lora(&mut loaded.model);
    }
    // Continued fine-tuning: the adapter's LoRA settings replace the flags' (a checkpoint's
    // settings check on --resume then compares against the adapter's).
    if let Some(adapter) = &args.adapter {
        let lora = load_peft(&mut loaded.model, adapter, &device)
            .with_context(|| format!("loading the adapter {}", adapter.display()))?;
        eprintln!(
            "continuing {} (LoRA r {}, alpha {}, {} target modules)",
            adapter.display(),
            lora.r,
            lora.lora_alpha,
            lora.target_modules.len()
        );
        config.lora = Some(lora);
        config.validate()?;
    }
    let objective = Objective::sft(
        &samples,
        &loaded.tokenizer,
        loaded.model.max_positions(),
        &config,
    )?;
    let examples = objective.examples().unwrap_or_default();
    let steps_per_epoch = objective.steps_per_epoch(&config);
    let total_steps = objective
        .total_steps(&config, args.max_steps)
        .context("--max-steps")?;
    if let Some(dir) = &args.export_for {
        return export_for(dir, role, &config, total_steps, examples, &loaded);
    }
    std::fs::create_dir_all(&args.out)?;

    // Resume: the checkpoint's weights replace the base's, then the optimizer state.
    let mut state = TrainerState::new(config.clone(), total_steps);
    let resume = checkpoint_to_resume(&args.out, args.resume, &state)?;
    let mut model = loaded.model;
    if let Some(ck) = &resume {
        if config.lora.is_some() {
            load_peft(&mut model, &ck.adapter_dir(), &device)?;
        } else {
            model = load_model(&ck.model_dir(), &device)?.model;
        }
    }
    let examples = examples.len();
    let mut trainer = Trainer::with_adapters(
        model,
        config.clone(),
        total_steps,
        &device,
        config.lora.is_none() || (resume.is_none() && args.adapter.is_none()),
    )?;
    if let Some(ck) = &resume {
        trainer.resume_from(ck)?;
        state = ck.state.clone();
        eprintln!(
            "resuming from {} (step {}/{})",
            ck.dir.display(),
            state.step,
            total_steps
        );
    }
    eprintln!(
        "{} {role:?} samples from {} conversations → {total_steps} steps ({}; an epoch is {steps_per_epoch} steps of {}×{} examples); {}",
        examples,
        conversations.len(),
        match args.max_steps {
            Some(_) => "--max-steps".to_string(),
            None => format!("{} epochs", config.epochs),
        },
        config.batch_size,
        config.gradient_accumulation_steps,
        if config.lora.is_some() {
            "LoRA"
        } else {
            "full fine-tuning"
        }
    );
    let mut run = FineTuneRun::new(trainer, state, objective);
    step_loop(
        &mut run,
        &args.out,
        args.save_every,
        resume.as_ref().map(|ck| ck.state.step),
        |stats| format!("loss {:.4}  lr {:.2e}", stats.loss, stats.learning_rate),
    )?;
    let (trainer, state) = (run.trainer, run.state);
    // Final artifacts: the adapter (PEFT) or the model (HF) with the tokenizer, and the curve.
    let final_dir = args.out.join("final");
    let model = trainer.inference_model();
    match &config.lora {
        Some(lora) => save_peft(
            &model,
            lora,
            Some(&loaded.origin),
            &final_dir.join("adapter"),
        )?,
        None => {
            save_hf(&model, &final_dir.join("model"))?;
            save_hf_tokenizer(
                &loaded.tokenizer,
                &loaded.chat_template,
                model.max_positions(),
                &final_dir.join("model"),
            )?;
        }
    }
    write_curve(&args.out, &state.history)?;
    eprintln!(
        "done: {} steps; final {} in {}; loss curve in {}/loss.csv and loss.svg",
        state.step,
        if config.lora.is_some() {
            "adapter"
        } else {
            "model"
        },
        final_dir.display(),
        args.out.display()
    );
    Ok(())
}

/// `--export-for`: the run's examples, settings and base model, for training with PyTorch.
fn export_for(
    dir: &Path,
    role: Role,
    config: &TrainConfig,
    total_steps: usize,
    examples: &[umi_data::batch::TrainingExample],
    base: &umi_model::LoadedModel,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut lines = String::new();
    for e in examples {
        lines.push_str(&serde_json::to_string(
            &serde_json::json!({"input_ids": e.input_ids, "labels": e.labels}),
        )?);
        lines.push('\n');
    }
    write_atomically(&dir.join("examples.jsonl"), &lines)?;
    let run = serde_json::json!({
        "role": role.as_str(),
        "config": config,
        "total_steps": total_steps,
        "examples": examples.len(),
        "target_tokens": examples.iter().map(|e| e.labels.iter().filter(|&&l| l >= 0).count()).sum::<usize>(),
        "tokens": examples.iter().map(|e| e.input_ids.len()).sum::<usize>(),
    });
    write_atomically(&dir.join("run.json"), &serde_json::to_string_pretty(&run)?)?;
    save_hf(&base.model, &dir.join("base"))?;
    save_hf_tokenizer(
        &base.tokenizer,
        &base.chat_template,
        base.model.max_positions(),
        &dir.join("base"),
    )?;
    eprintln!(
        "wrote {} examples, run.json and base/ to {} (train them with scripts/gpu/train_peft.py)",
        examples.len(),
        dir.display()
    );
    Ok(())
}

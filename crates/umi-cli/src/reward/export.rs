//! `umi reward export`: preference pairs as umi records with token ids and reference
//! log-probs (psrlm-design.md §3.5–3.6), tokenized and cut as `umi train dpo` does
//! ([`crate::dpo::load_pairs`]).

use std::path::PathBuf;

use anyhow::Result;

use crate::fs::write_atomically;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Preference pairs, JSON lines (repeatable): umi's or TRL's rows.
    #[arg(long, required = true)]
    pairs: Vec<PathBuf>,
    /// The role the pairs belong to.
    #[arg(long, default_value = "planner")]
    role: String,
    /// Base model (.gguf or Hugging Face folder).
    #[arg(long, default_value = crate::DEFAULT_MODEL)]
    model: PathBuf,
    /// A PEFT adapter merged into the base first.
    #[arg(long)]
    init_adapter: Option<PathBuf>,
    /// The reference adapter (the one DPO will start from).
    #[arg(long)]
    adapter: PathBuf,
    /// Compute every pair's reference log-probs, recorded or not.
    #[arg(long)]
    recompute_ref: bool,
    /// Tokens of prompt + step (longer prompts keep their end).
    #[arg(long, default_value_t = 1536)]
    max_len: usize,
    /// Pairs with a longer step are left out.
    #[arg(long, default_value_t = 256)]
    max_step_tokens: usize,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: umi_model::Backend,
    /// The JSON-lines file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let device = args.backend.device()?;
    let ready = crate::dpo::load_pairs(
        &crate::dpo::PairSource {
            pairs: &args.pairs,
            role: &args.role,
            model: &args.model,
            init_adapter: args.init_adapter.as_deref(),
            reference: &args.adapter,
            recompute: args.recompute_ref,
            max_len: args.max_len,
            max_step_tokens: args.max_step_tokens,
        },
        &device,
    )?;
    let mut out = String::new();
    for p in &ready.pairs {
        let row = umi_data::preference::PreferencePair {
            id: p.id.clone(),
            role: Some(args.role.clone()),
            prompt_ids: Some(p.prompt_ids.clone()),
            chosen_ids: Some(p.chosen_ids.clone()),
            rejected_ids: Some(p.rejected_ids.clone()),
            ref_chosen_logps: Some(p.ref_chosen_logps),
            ref_rejected_logps: Some(p.ref_rejected_logps),
            ..Default::default()
        };
        out.push_str(&serde_json::to_string(&row)?);
        out.push('\n');
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_atomically(&args.out, &out)?;
    eprintln!(
        "wrote {} pairs with token ids and reference log-probs (reference {}) to {}",
        ready.pairs.len(),
        args.adapter.display(),
        args.out.display()
    );
    Ok(())
}

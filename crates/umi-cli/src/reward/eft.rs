//! `umi reward eft`: judge-training data for process-based self-rewarding ([`umi_reward::EftSet`],
//! psrlm-design.md §2.9), written as role samples that `umi train local --extra-samples` mixes
//! into the planner's training (the paper's M1 = SFT on IFT + EFT), and as TRL prompt/completion
//! rows.

use std::path::PathBuf;

use anyhow::{Result, bail};
use umi_data::judge::JudgeFormat;
use umi_data::readers::Split;

use crate::data::TrajectoryArgs;
use umi_reward::{EftConfig, EftSet};

use crate::fs::write_atomically;

#[derive(clap::Args)]
pub struct EftArgs {
    #[command(flatten)]
    trajectories: TrajectoryArgs,
    /// Records used: train (all but every --dev-every-th), dev (a judge test set) or all.
    #[arg(long, default_value = "train")]
    split: Split,
    /// Judge format: explain (explanation, then [[A]]/[[B]]) or verdict (verdict first).
    #[arg(long, default_value = "verdict")]
    judge_format: String,
    /// Most worse steps per decision point (each gives two rows).
    #[arg(long, default_value_t = 2)]
    max_negatives_per_point: usize,
    /// Seed of the choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The model's EOS text, ending each TRL completion (SmolLM2's by default).
    #[arg(long, default_value = "<|im_end|>")]
    eos_text: String,
    /// Output folder: eft.jsonl, eft_trl.jsonl, report.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: EftArgs) -> Result<()> {
    let format = match args.judge_format.as_str() {
        "explain" => JudgeFormat::Explain,
        "verdict" => JudgeFormat::Verdict,
        other => bail!("--judge-format must be explain or verdict, not {other:?}"),
    };
    let conversations = args.trajectories.read()?;
    let config = EftConfig {
        format,
        max_negatives_per_point: args.max_negatives_per_point,
        seed: args.seed,
    };
    let set = EftSet::new(
        &conversations,
        args.split,
        args.trajectories.dev_every,
        &config,
    );
    if set.rows.is_empty() {
        bail!(
            "{} gives no planner decision point with a Next: marker in the {:?} split",
            args.trajectories.data.display(),
            args.split
        );
    }
    std::fs::create_dir_all(&args.out)?;
    write_atomically(&args.out.join("eft.jsonl"), &set.to_jsonl()?)?;
    write_atomically(
        &args.out.join("eft_trl.jsonl"),
        &set.to_trl_jsonl(&args.eos_text)?,
    )?;
    let by_kind = set.rows_by_kind();
    let rows = set.rows.len();
    let report = serde_json::json!({
        "data": args.trajectories.data,
        "split": format!("{:?}", args.split).to_lowercase(),
        "conversations": set.conversations,
        "rows": rows,
        "pairs": rows / 2,
        "rows_by_kind": by_kind,
        "judge_format": format,
        "max_negatives_per_point": args.max_negatives_per_point,
        "seed": args.seed,
    });
    write_atomically(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!(
        "{rows} EFT rows ({} pairs × 2 orders) from {} conversations: {}; wrote eft.jsonl, eft_trl.jsonl and report.json to {}",
        rows / 2,
        set.conversations,
        by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display()
    );
    Ok(())
}

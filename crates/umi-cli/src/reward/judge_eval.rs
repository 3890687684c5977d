//! `umi reward judge-eval`: how well a model judges ([`umi_reward::judge_eval`],
//! psrlm-design.md §2.9 and §3.5), on EFT rows whose better step is known.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use umi_reward::judge_eval::{JudgeEvalReport, judge_rows, parse_eft_rows};

use crate::fs::write_atomically;

#[derive(clap::Args)]
pub struct JudgeEvalArgs {
    /// EFT rows (`umi reward eft --split dev`'s eft.jsonl).
    #[arg(long)]
    eft: PathBuf,
    #[command(flatten)]
    models: crate::models::RoleModelArgs,
    /// Most new tokens of an explain-format judgment.
    #[arg(long, default_value_t = 96)]
    max_new_tokens: usize,
    /// Judge prompts are left-truncated to this many tokens (as `umi eval` and `umi reward
    /// pairs` cut theirs).
    #[arg(long, default_value_t = 3750)]
    max_input_tokens: usize,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: umi_model::Backend,
    /// Output folder: predictions.jsonl, report.json.
    #[arg(long)]
    out: PathBuf,
}

/// report.json: the EFT file and the judge, then the report.
#[derive(serde::Serialize)]
struct Report<'a> {
    eft: &'a Path,
    judge: &'a str,
    #[serde(flatten)]
    report: &'a JudgeEvalReport,
}

pub fn run(args: JudgeEvalArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.eft)
        .with_context(|| format!("reading {}", args.eft.display()))?;
    let rows = parse_eft_rows(&text).map_err(|e| {
        anyhow::Error::new(e.error).context(format!(
            "{} line {}: not an EFT row (umi reward eft writes them)",
            args.eft.display(),
            e.line
        ))
    })?;
    if rows.is_empty() {
        bail!("{} has no EFT row", args.eft.display());
    }
    let device = args.backend.device()?;
    let models = args.models.clone().or_shipped_agent(true);
    let config = umi_model::GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        ..Default::default()
    };
    let mut generator =
        models.generator(&mut crate::models::ModelCache::default(), &device, config)?;
    generator.max_input_tokens = Some(args.max_input_tokens);
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} judging [{bar:30}] {pos}/{len}  {elapsed}, ETA {eta}  {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let eval = pollster::block_on(judge_rows(
        &mut generator,
        &rows,
        args.max_new_tokens,
        |p| {
            bar.inc(1);
            bar.set_message(format!("accuracy {:.3}", p.accuracy()));
        },
    ))?;
    bar.finish_and_clear();
    let mut predictions = String::new();
    for p in &eval.predictions {
        predictions.push_str(&serde_json::to_string(p)?);
        predictions.push('\n');
    }
    let r = &eval.report;
    let report = Report {
        eft: &args.eft,
        judge: &models.describe()[0],
        report: r,
    };
    std::fs::create_dir_all(&args.out)?;
    write_atomically(&args.out.join("predictions.jsonl"), &predictions)?;
    write_atomically(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!(
        "judge accuracy {:.3} per row, {:.3} per pair (both orders right), position consistency {}, invalid {:.3}; {:.0} s; wrote predictions.jsonl and report.json to {}",
        r.acc_single.unwrap_or(0.0),
        r.acc_both.unwrap_or(0.0),
        r.position_consistency
            .map_or("n/a".into(), |c| format!("{c:.3}")),
        r.invalid_rate.unwrap_or(0.0),
        r.seconds,
        args.out.display()
    );
    Ok(())
}

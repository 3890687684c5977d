//! `umi data`: datasets in, the four α-UMi training sets and TRL JSONL out.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use umi_data::readers::{self, DataFormat, ReadReport, Split};
use umi_data::{PromptSet, Role, role_samples};

use crate::eval::write_atomically;

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Read a dataset and write α-UMi conversations, the role training sets
    /// (train_{backbone,planner,caller,summarizer}.json, as GLPFT's prepro_*.py) and TRL
    /// prompt/completion JSONL ({role}.jsonl).
    Prepare(PrepareArgs),
}

#[derive(clap::Args)]
pub struct PrepareArgs {
    /// Input files (or folders, for formats made of many files).
    #[arg(long = "input", required = true)]
    inputs: Vec<PathBuf>,
    /// Input format: alpha-umi, toolbench (raw answer files), api-bank or toolalpaca.
    #[arg(long, default_value = "alpha-umi")]
    format: DataFormat,
    /// Which records: all, train or dev (dev: record i with i % dev_every == 0).
    #[arg(long, default_value = "all")]
    split: Split,
    /// Split period (6 turns the 300 OOD trajectories into 250 train + 50 dev).
    #[arg(long, default_value_t = 6)]
    dev_every: usize,
    /// Prompt family: toolbench or toolalpaca.
    #[arg(long, default_value = "toolbench")]
    prompt_set: String,
    /// EOS text appended to JSONL completions (the target model's EOS token; TinyLlama: </s>).
    #[arg(long, default_value = "</s>")]
    eos_text: String,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Prepare(args) => prepare(args),
    }
}

fn prepare(args: PrepareArgs) -> Result<()> {
    let set = match args.prompt_set.as_str() {
        "toolbench" => PromptSet::ToolBench,
        "toolalpaca" => PromptSet::ToolAlpaca,
        other => bail!("--prompt-set must be toolbench or toolalpaca, not {other:?}"),
    };
    let mut conversations = Vec::new();
    let mut report = ReadReport::default();
    for input in &args.inputs {
        let (c, r) = readers::read(args.format, input)?;
        conversations.extend(c);
        report.merge(r);
    }
    for s in &report.skipped {
        eprintln!("warning: skipped {s}");
    }
    let conversations: Vec<_> = conversations
        .into_iter()
        .enumerate()
        .filter(|(i, _)| args.split.keeps(*i, args.dev_every))
        .map(|(_, c)| c)
        .collect();
    if conversations.is_empty() {
        bail!("no usable records ({report})");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_atomically(
        &args.out.join("conversations.json"),
        &serde_json::to_string_pretty(&conversations)?,
    )?;
    write_atomically(
        &args.out.join("read_report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    let mut counts = Vec::new();
    for (role, name) in [
        (Role::Backbone, "backbone"),
        (Role::Planner, "planner"),
        (Role::Caller, "caller"),
        (Role::Summarizer, "summarizer"),
    ] {
        let samples: Vec<_> = conversations
            .iter()
            .flat_map(|c| role_samples(c, role, set))
            .collect();
        write_atomically(
            &args.out.join(format!("train_{name}.json")),
            &serde_json::to_string_pretty(&samples)?,
        )?;
        let mut jsonl = Vec::new();
        for s in &samples {
            let record = umi_data::batch::prompt_completion(s, &args.eos_text);
            writeln!(jsonl, "{}", serde_json::to_string(&record)?)?;
        }
        write_atomically(
            &args.out.join(format!("{name}.jsonl")),
            std::str::from_utf8(&jsonl)?,
        )?;
        counts.push(format!("{name} {}", samples.len()));
    }
    eprintln!(
        "read: {report}; wrote {} conversations ({}) to {}",
        conversations.len(),
        counts.join(", "),
        args.out.display()
    );
    Ok(())
}

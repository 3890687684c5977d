//! `umi data`: datasets in, the four α-UMi training sets and TRL JSONL out.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use umi_data::readers::{self, DataFormat, ReadReport, Split};
use umi_data::{PromptSet, Role, role_samples};

use crate::fs::write_atomically;

/// Where a command's trajectories come from: a file (or folder) in one of the formats the
/// readers know, and the period of the train/dev split. Each command keeps its own `--split`
/// (their defaults differ: train for training and mining, dev for evaluation).
#[derive(clap::Args)]
pub struct TrajectoryArgs {
    /// Trajectories: α-UMi conversation JSON, or another --format.
    #[arg(long, default_value = crate::eval::DEFAULT_EVAL_DATA)]
    pub data: PathBuf,
    /// Data format: alpha-umi, toolbench (raw answers), api-bank or toolalpaca.
    #[arg(long, default_value = "alpha-umi")]
    pub format: DataFormat,
    /// Split period: record i is in dev when i % dev_every == 0 (6 → 50 of the 300 OOD
    /// trajectories); train is the others.
    #[arg(long, default_value_t = 6)]
    pub dev_every: usize,
}

impl TrajectoryArgs {
    /// Every usable record of `--data`, in file order; the records the reader skipped are
    /// listed on stderr.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not in `--format`.
    pub fn read(&self) -> Result<Vec<umi_data::Conversation>> {
        let (conversations, report) = readers::read(self.format, &self.data)?;
        for s in &report.skipped {
            eprintln!("warning: skipped {s}");
        }
        Ok(conversations)
    }
}

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Read a dataset and write α-UMi conversations, the role training sets
    /// (train_{backbone,planner,caller,summarizer}.json, as GLPFT's prepro_*.py) and TRL
    /// prompt/completion JSONL ({role}.jsonl).
    Prepare(PrepareArgs),
    /// Play synthetic tasks against a fresh demo tool server and write α-UMi training
    /// trajectories (train.json), held-apart test tasks with expected facts (test.jsonl, for
    /// `umi eval live`) and their reference trajectories (test.json).
    Synth(SynthArgs),
    /// Token lengths of the reference role outputs (planner steps by decision, caller actions,
    /// summarizer answers) with the model's tokenizer: how many fit a --max-new-tokens budget.
    Lengths(LengthsArgs),
}

#[derive(clap::Args)]
pub struct LengthsArgs {
    /// α-UMi conversation JSON (or another --format).
    #[arg(long, default_value = crate::eval::DEFAULT_EVAL_DATA)]
    input: PathBuf,
    /// Input format: alpha-umi, toolbench, api-bank or toolalpaca.
    #[arg(long, default_value = "alpha-umi")]
    format: DataFormat,
    /// Which records: all, train or dev.
    #[arg(long, default_value = "all")]
    split: Split,
    /// Split period.
    #[arg(long, default_value_t = 6)]
    dev_every: usize,
    /// Model whose tokenizer counts (.gguf or Hugging Face folder).
    #[arg(long, default_value = crate::DEFAULT_MODEL)]
    model: PathBuf,
}

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Seed of every random choice (the output is the same for the same seed).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Training trajectories.
    #[arg(long, default_value_t = 3000)]
    train: usize,
    /// Test tasks (phrasings and values held apart from training).
    #[arg(long, default_value_t = 200)]
    test: usize,
    /// Share of training prompts listing all 14 tools (the rest list the needed ones plus 2-6
    /// others); test prompts always list all of them.
    #[arg(long, default_value_t = 0.5)]
    all_tools_share: f64,
    /// Training tasks also draw from train-only query phrasings (more ways of asking for the
    /// same thing); off, a seed writes the files it wrote before. Other training queries can
    /// move the test tasks a seed draws: keep the test set of a run without it and use this
    /// with --test 0 and another seed for extra training data.
    #[arg(long)]
    extra_phrasings: bool,
    /// Training multi-tool chains name their parts in the planner's rationales: the first step
    /// lists what the query asks for, each later step what is done and what is left. Off, a
    /// seed writes the files it wrote before; the test tasks are the same either way.
    #[arg(long)]
    plan_parts: bool,
    /// Training planner rationales work out the steps small planners get wrong: date_difference
    /// (not add_days) for a day count, `days` -N for "N days before", the calculator's `op` by
    /// name, 12-hour times as hour + 12, day-first dates read as day, month, year. Off, a seed
    /// writes the files it wrote before; the test tasks are the same either way.
    #[arg(long)]
    worked_steps: bool,
    /// Training queries take more shapes: more train-only phrasings for the date, calendar,
    /// to-do and population tasks, a greeting or closing around some queries, more "N days
    /// before" tasks, and two-part date questions that ask for the weekday first (their
    /// trajectories serve the parts in the order asked). Off, a seed writes the files it wrote
    /// before; the test tasks never use it.
    #[arg(long)]
    paraphrase: bool,
    /// Validation tasks written to valid.jsonl (for choosing checkpoints without the test
    /// tasks): training values, queries in train-only phrasings held out of training (every
    /// third of each family's list). With 0, a seed writes the files it wrote before.
    #[arg(long, default_value_t = 0)]
    valid: usize,
    /// Output folder.
    #[arg(long, default_value = "data/synth")]
    out: PathBuf,
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
    prompt_set: PromptSet,
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
        DataCommand::Synth(args) => synth(args),
        DataCommand::Lengths(args) => lengths(args),
    }
}

fn synth(args: SynthArgs) -> Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use umi_tools::synth::{LiveTask, SynthConfig, TaskKind, synthesize};
    if !(0.0..=1.0).contains(&args.all_tools_share) {
        bail!(
            "--all-tools-share must be between 0 and 1, not {}",
            args.all_tools_share
        );
    }
    if args.train + args.test + args.valid == 0 {
        bail!("nothing to do: --train, --test and --valid are all 0");
    }
    let config = SynthConfig {
        seed: args.seed,
        train: args.train,
        test: args.test,
        all_tools_share: args.all_tools_share,
        extra_phrasings: args.extra_phrasings,
        plan_parts: args.plan_parts,
        worked_steps: args.worked_steps,
        paraphrase: args.paraphrase,
        valid: args.valid,
    };
    let bar = ProgressBar::new((args.train + args.test + args.valid) as u64).with_style(
        ProgressStyle::with_template("synth {bar:30} {pos}/{len} tasks [{elapsed} < {eta}]")
            .expect("static template"),
    );
    let out = synthesize(&config, |done, _| bar.set_position(done as u64))
        .map_err(|e| anyhow::anyhow!(e))?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_atomically(
        &args.out.join("train.json"),
        &serde_json::to_string_pretty(&out.train)?,
    )?;
    write_atomically(
        &args.out.join("test.json"),
        &serde_json::to_string_pretty(&out.test_gold)?,
    )?;
    let write_tasks = |name: &str, tasks: &[LiveTask]| -> Result<()> {
        let mut jsonl = String::new();
        for task in tasks {
            jsonl.push_str(&serde_json::to_string(task)?);
            jsonl.push('\n');
        }
        write_atomically(&args.out.join(name), &jsonl)
    };
    write_tasks("test.jsonl", &out.test)?;
    if args.valid > 0 {
        write_tasks("valid.jsonl", &out.valid)?;
    }
    let count = |kinds: Vec<TaskKind>| {
        TaskKind::ALL
            .iter()
            .map(|k| {
                format!(
                    "{} {}",
                    kinds.iter().filter(|x| *x == k).count(),
                    k.as_str()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (train_counts, test_counts) = (
        count(out.train_kinds.clone()),
        count(out.test.iter().map(|t| t.kind).collect()),
    );
    let report = serde_json::json!({
        "seed": args.seed, "all_tools_share": args.all_tools_share,
        "train": {"trajectories": out.train.len(), "kinds": train_counts},
        "test": {"tasks": out.test.len(), "kinds": test_counts},
        "valid": {"tasks": out.valid.len()},
    });
    write_atomically(
        &args.out.join("synth_report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    let dir = args.out.display();
    eprintln!(
        "wrote {} training trajectories ({train_counts}) to {dir}/train.json and {} test tasks ({test_counts}) to {dir}/test.jsonl",
        out.train.len(),
        out.test.len(),
    );
    if args.valid > 0 {
        eprintln!(
            "wrote {} validation tasks to {dir}/valid.jsonl",
            out.valid.len()
        );
    }
    Ok(())
}

fn prepare(args: PrepareArgs) -> Result<()> {
    let set = args.prompt_set;
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
    let conversations = args.split.select(conversations, args.dev_every);
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

fn lengths(args: LengthsArgs) -> Result<()> {
    use umi_data::Next;
    let (conversations, report) = readers::read(args.format, &args.input)?;
    let conversations = args.split.select(conversations, args.dev_every);
    if conversations.is_empty() {
        bail!("no usable records in {} ({report})", args.input.display());
    }
    let device = umi_model::Backend::Cpu.device()?;
    let loaded = umi_model::load_model(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let count = |text: &str| -> Result<usize> { Ok(loaded.tokenizer.encode(text, false)?.len()) };
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut push = |name: &str, n: usize| match groups.iter_mut().find(|g| g.0 == name) {
        Some(g) => g.1.push(n),
        None => groups.push((name.to_string(), vec![n])),
    };
    for role in [Role::Planner, Role::Caller, Role::Summarizer] {
        for sample in conversations
            .iter()
            .flat_map(|c| role_samples(c, role, PromptSet::ToolBench))
        {
            let n = count(&sample.target)?;
            let name = match role {
                Role::Planner => {
                    let next = Next::detect(&sample.target);
                    push("planner (all)", n);
                    match next {
                        Some(Next::Caller) => "planner → Next: caller.",
                        Some(Next::Conclusion) => "planner → Next: conclusion.",
                        Some(Next::GiveUp) => "planner → Next: give up.",
                        None => "planner (no marker)",
                    }
                }
                Role::Caller => "caller",
                _ => "summarizer",
            };
            push(name, n);
        }
    }
    println!(
        "Target token lengths ({} records of {}, split {:?}, tokenizer of {}; the end-of-turn token not counted):\n",
        conversations.len(),
        args.input.display(),
        args.split,
        args.model.display()
    );
    println!("| output | n | median | p90 | p99 | max | > 128 | > 256 | > 512 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, mut v) in groups {
        v.sort_unstable();
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let over = |t: usize| 100.0 * v.iter().filter(|&&x| x > t).count() as f64 / v.len() as f64;
        println!(
            "| {name} | {} | {} | {} | {} | {} | {:.1}% | {:.1}% | {:.1}% |",
            v.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            v[v.len() - 1],
            over(128),
            over(256),
            over(512)
        );
    }
    Ok(())
}

//! `umi reward pairs`: step preference pairs by self-judging at gold decision points
//! ([`umi_reward::MiningRun`], psrlm-design.md §2.3–2.6 and §3.5), resumable from its output
//! folder.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use umi_data::readers::Split;

use crate::data::TrajectoryArgs;
use umi_reward::{ExecSignal, MineConfig, MiningRun, split_points};

use crate::fs::write_atomically;

#[derive(clap::Args)]
pub struct PairsArgs {
    #[command(flatten)]
    trajectories: TrajectoryArgs,
    /// Records used: train (all but every --dev-every-th) or all; dev needs --allow-dev.
    #[arg(long, default_value = "train")]
    split: Split,
    /// Mine the dev split too (its pairs must not train a model evaluated on it).
    #[arg(long)]
    allow_dev: bool,
    /// Only the first N trajectories of the split.
    #[arg(long)]
    limit_trajectories: Option<usize>,
    #[command(flatten)]
    models: crate::models::RoleModelArgs,
    /// Candidates sampled per decision point.
    #[arg(long, default_value_t = 6)]
    width: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.5)]
    temperature: f64,
    /// Nucleus mass.
    #[arg(long, default_value_t = 0.95)]
    top_p: f64,
    /// Most new tokens of a step.
    #[arg(long, default_value_t = 192)]
    max_new_tokens: usize,
    /// Fewest wins between best and worst for a pair.
    #[arg(long, default_value_t = 1)]
    min_margin: u32,
    /// Prompts longer than this many tokens keep their end (the reference's 3750).
    #[arg(long, default_value_t = 3750)]
    max_input_tokens: usize,
    /// Seed of the candidates.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Whether each candidate's objective checks (its own `Next:` marker, no echo of the
    /// template, a rationale of 3 words or more, no unlisted tool named; psrlm-design.md §2.8)
    /// steer the choice: off (the paper: the judge's wins alone), filter (chosen among the
    /// candidates that pass, rejected among those that fail when any), tiebreak (passing breaks
    /// a tie in wins). The checks are recorded in search.jsonl and pairs.jsonl either way.
    #[arg(long, value_enum, default_value_t = ExecSignalArg::Off)]
    exec_signal: ExecSignalArg,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: umi_model::Backend,
    /// No batching and no prefix reuse (every candidate decoded alone, every prompt prefilled
    /// whole): the slow path, to measure what batched, prefix-shared generation saves
    /// (scripts/bench/run.sh's mine task). Same candidates up to float rounding.
    #[arg(long)]
    plain: bool,
    /// Output folder: settings.json, search.jsonl, pairs.jsonl, report.json.
    #[arg(long)]
    out: PathBuf,
}

/// `--exec-signal` ([`umi_reward::ExecSignal`]).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ExecSignalArg {
    /// The judge's wins alone (the paper).
    Off,
    /// Chosen among valid candidates, rejected among invalid ones when any.
    Filter,
    /// Validity breaks ties in wins.
    Tiebreak,
}

impl From<ExecSignalArg> for ExecSignal {
    fn from(arg: ExecSignalArg) -> Self {
        match arg {
            ExecSignalArg::Off => ExecSignal::Off,
            ExecSignalArg::Filter => ExecSignal::Filter,
            ExecSignalArg::Tiebreak => ExecSignal::Tiebreak,
        }
    }
}

/// The text of `path`, empty when it does not exist.
fn read_or_empty(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Appends `line` and a newline to `path`.
fn append(path: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: PairsArgs) -> Result<()> {
    if matches!(args.split, Split::Dev) && !args.allow_dev {
        bail!("--split dev mines the evaluation split; pass --allow-dev if that is meant");
    }
    let config = MineConfig {
        width: args.width,
        temperature: args.temperature,
        top_p: args.top_p,
        max_new_tokens: args.max_new_tokens,
        min_margin: args.min_margin,
        seed: args.seed,
        exec_signal: args.exec_signal.into(),
    };
    if config.width < 2 {
        bail!("--width must be at least 2 (pairs need two candidates)");
    }
    let conversations = args.trajectories.read()?;
    let points = split_points(
        &conversations,
        args.split,
        args.trajectories.dev_every,
        args.limit_trajectories,
    );
    if points.is_empty() {
        bail!(
            "{} gives no planner decision point",
            args.trajectories.data.display()
        );
    }
    let models = args.models.clone().or_shipped_agent(true);
    let mut settings = serde_json::json!({
        "data": args.trajectories.data,
        "split": format!("{:?}", args.split).to_lowercase(),
        "dev_every": args.trajectories.dev_every,
        "limit_trajectories": args.limit_trajectories,
        "models": models.describe()[0],
        "raw_prompts": models.raw_prompts,
        "config": config,
        "max_input_tokens": args.max_input_tokens,
        "judge_format": "verdict",
        "prefix": "gold",
    });
    if args.plain {
        settings["plain"] = true.into();
    }
    std::fs::create_dir_all(&args.out)?;
    let settings_path = args.out.join("settings.json");
    match std::fs::read_to_string(&settings_path) {
        Ok(old)
            if serde_json::from_str::<serde_json::Value>(&old).ok() != Some(settings.clone()) =>
        {
            bail!(
                "{} holds a mining run with other settings; use another --out",
                args.out.display()
            )
        }
        _ => write_atomically(&settings_path, &serde_json::to_string_pretty(&settings)?)?,
    }
    // Resume: the files are rewritten with what the run keeps of them.
    let search_path = args.out.join("search.jsonl");
    let pairs_path = args.out.join("pairs.jsonl");
    let mut run = MiningRun::resume(&read_or_empty(&search_path)?, &read_or_empty(&pairs_path)?);
    write_atomically(&search_path, &run.search_jsonl()?)?;
    write_atomically(&pairs_path, &run.pairs_jsonl()?)?;
    if run.points_done() > 0 {
        eprintln!(
            "resuming: {} of {} points done ({} pairs){}",
            run.points_done(),
            points.len(),
            run.pairs().len(),
            if run.torn_lines() > 0 {
                "; a torn last line was dropped"
            } else {
                ""
            }
        );
    }

    // The model loads only when a point is left to mine (a finished run just reports).
    if !run.remaining(&points).is_empty() {
        let device = args.backend.device()?;
        let mut generator = models.generator(
            &mut crate::models::ModelCache::default(),
            &device,
            umi_model::GenerationConfig::default(),
        )?;
        generator.max_input_tokens = Some(args.max_input_tokens);
        generator.plain = args.plain;
        let bar = indicatif::ProgressBar::new(points.len() as u64)
            .with_position(run.points_done() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} mining [{bar:30}] {pos}/{len} points  {elapsed}, ETA {eta}  {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
        pollster::block_on(
            run.mine(&mut generator, &points, &config, |p| -> Result<()> {
                // the pair first: a record on disk means its pair is too
                if let Some(pair) = p.pair {
                    append(&pairs_path, &serde_json::to_string(pair)?)?;
                }
                append(&search_path, &serde_json::to_string(p.record)?)?;
                bar.inc(1);
                let msg = format!("{} pairs", p.pairs);
                if plain {
                    eprintln!("{}/{} points  {msg}", p.records, p.total);
                }
                bar.set_message(msg);
                Ok(())
            }),
        )?;
        bar.finish_and_clear();
    }

    let report = run.report();
    write_atomically(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    if let Some(c) = &report.mean_cost_per_point {
        eprintln!(
            "per point: {:.0} prompt tokens prefilled, {:.0} from the prefix cache, {:.0} generated, {:.1} judge calls, {:.1} s",
            c.prefilled_tokens, c.cached_tokens, c.generated_tokens, c.judge_calls, c.seconds
        );
    }
    if let Some(rate) = report.valid_rate {
        let failing = report
            .invalid_candidates
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>();
        eprintln!(
            "candidates passing the checks of psrlm-design.md §2.8: {:.1} %{}",
            100.0 * rate,
            if failing.is_empty() {
                String::new()
            } else {
                format!(" (failing: {})", failing.join(", "))
            }
        );
    }
    eprintln!(
        "{} points, {} pairs; outcomes {}; wrote search.jsonl, pairs.jsonl and report.json to {} (train on them: umi train dpo --pairs {})",
        report.points,
        report.pairs,
        report
            .outcomes
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display(),
        pairs_path.display()
    );
    Ok(())
}

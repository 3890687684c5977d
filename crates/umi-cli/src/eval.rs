//! `umi eval`: static evaluation with the paper's metrics (`umi-eval`), resumable, with a
//! progress bar, a JSON report and a markdown table beside the paper's numbers; and
//! `umi eval live`, the agent on live tools scored by pass rate (`umi_eval::live`).

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use umi_agent::{AgentMode, Batcher};
use umi_data::PromptSet;
use umi_data::readers::{DataFormat, Split};
use umi_eval::compare::paired_bootstrap;
use umi_eval::{
    DecisionPoint, DecisionScore, EvalReport, decision_points, evaluate, predict, score_decision,
};
use umi_model::Backend;

use crate::data::TrajectoryArgs;
use crate::fs::{claim_out_dir, write_atomically};
use crate::models::{ModelCache, RoleModelArgs, default_label};

/// The OOD trajectories shipped beside the project (`../shared/data`).
pub const DEFAULT_EVAL_DATA: &str =
    "../shared/data/alpha-umi-toolbench/ood-train/out_of_domain_train300.json";

/// `umi eval` without a subcommand is the static evaluation; `umi eval live` the live one.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    #[command(flatten)]
    trajectories: TrajectoryArgs,
    /// Prompt family: toolbench, or toolalpaca (default for --format toolalpaca).
    #[arg(long)]
    prompt_set: Option<String>,
    /// Which trajectories: dev (every `--dev-every`-th, from the first), train (the others) or all.
    #[arg(long, default_value = "dev")]
    split: Split,
    /// Score only the first N decision points of the split (quick looks; a later run without
    /// it in the same --out goes on from there).
    #[arg(long)]
    limit: Option<usize>,
    /// multi (planner, caller, summarizer) or single (backbone).
    #[arg(long, default_value = "multi")]
    mode: AgentMode,
    #[command(flatten)]
    models: RoleModelArgs,
    /// Upper bound on tokens per generation (the reference uses 512).
    #[arg(long, default_value_t = 512)]
    max_new_tokens: usize,
    /// Prompts are left-truncated to this many tokens (the reference's max_input_length).
    #[arg(long, default_value_t = 3750)]
    max_input_tokens: usize,
    /// Label of this run in the tables.
    #[arg(long)]
    label: Option<String>,
    /// Output folder: predictions.jsonl (appended as it goes; a rerun resumes), report.json,
    /// report.md.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Other runs' folders whose rows join the markdown table.
    #[arg(long = "compare")]
    compare: Vec<PathBuf>,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
    /// Decisions predicted at once, their generations decoded together (continuous batching:
    /// the weights are read once per step for all of them). 1: one after another.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    batch: u16,
}

/// What identifies a run: a rerun with the same settings resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunSettings {
    data: String,
    split: String,
    dev_every: usize,
    mode: AgentMode,
    planner: String,
    caller: String,
    summarizer: String,
    max_new_tokens: usize,
    max_input_tokens: usize,
    raw_prompts: bool,
    decoding: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PredictionRecord {
    /// Decision index within the evaluated split.
    index: usize,
    /// Trajectory index in the data file.
    trajectory: usize,
    reference: String,
    prediction: String,
    seconds: f64,
}

/// The file `report.json` holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunReport {
    label: String,
    settings: RunSettings,
    metrics: EvalReport,
    trajectories: usize,
    seconds: f64,
}

fn points_of(args: &EvalArgs) -> Result<(Vec<(usize, DecisionPoint)>, usize)> {
    split_points(&args.trajectories, args.split, args.limit)
}

/// The decision points of `split` of the trajectories, each with its trajectory's index in the
/// file, the first `limit` of them when given, and the number of trajectories in the split.
fn split_points(
    trajectories: &TrajectoryArgs,
    split: Split,
    limit: Option<usize>,
) -> Result<(Vec<(usize, DecisionPoint)>, usize)> {
    let conversations = trajectories.read()?;
    let mut points = Vec::new();
    let mut count = 0;
    for (i, c) in conversations.iter().enumerate() {
        if split.keeps(i, trajectories.dev_every) {
            count += 1;
            points.extend(decision_points(c).into_iter().map(|p| (i, p)));
        }
    }
    if let Some(limit) = limit {
        points.truncate(limit);
    }
    if points.is_empty() {
        bail!(
            "{} has no decision points in split {split}",
            trajectories.data.display(),
        );
    }
    Ok((points, count))
}

/// Predictions already in `path` (a resumed run), by decision index (`None` where there is none
/// yet), and the records past `points` (a run with a larger `--limit`: kept in the file, not
/// returned with the others). Lines that are not a prediction record (a torn last line from a
/// killed run, a damaged line) are skipped with one warning giving their count and the first
/// one's line number; their decisions are predicted again. The flag says the file must be
/// rewritten (without those lines, or with its last line terminated) before appending.
///
/// # Errors
///
/// When the file exists but cannot be read, or a record does not belong to this evaluation
/// (another reference at its index, or its index twice), naming the line.
fn read_done(
    path: &Path,
    points: &[(usize, DecisionPoint)],
) -> Result<(Vec<Option<PredictionRecord>>, Vec<PredictionRecord>, bool)> {
    let mut done: Vec<Option<PredictionRecord>> = points.iter().map(|_| None).collect();
    let mut beyond = Vec::new();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((done, beyond, false)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (mut bad, mut first_bad) = (0usize, None);
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let Ok(record) = serde_json::from_slice::<PredictionRecord>(line) else {
            bad += 1;
            first_bad.get_or_insert(n + 1);
            continue;
        };
        let Some(slot) = done.get_mut(record.index) else {
            beyond.push(record);
            continue;
        };
        if slot.is_some() || points[record.index].1.reference != record.reference {
            bail!(
                "{} line {} does not belong to this evaluation (different data or split, or decision {} twice); use another --out",
                path.display(),
                n + 1,
                record.index
            );
        }
        *slot = Some(record);
    }
    if let Some(first) = first_bad {
        eprintln!(
            "warning: {}: skipped {bad} line(s) that are not a prediction record (the first is line {first}; a killed run leaves its last line torn); their decisions are predicted again",
            path.display()
        );
    }
    let unterminated = bytes.last().is_some_and(|&b| b != b'\n');
    Ok((done, beyond, bad > 0 || unterminated))
}

/// The (decision point, prediction) pairs of the decisions predicted so far.
fn scored<'a>(
    points: &'a [(usize, DecisionPoint)],
    done: &'a [Option<PredictionRecord>],
) -> impl Iterator<Item = (&'a DecisionPoint, &'a str)> {
    points
        .iter()
        .zip(done)
        .filter_map(|((_, p), r)| Some((p, r.as_ref()?.prediction.as_str())))
}

/// Runs `umi eval`: the static evaluation, or the subcommand given.
pub fn run(args: EvalArgs, models: &mut ModelCache) -> Result<()> {
    match args.command {
        Some(EvalCommand::Live(live)) => crate::eval_live::run_live(*live, models),
        Some(EvalCommand::Compare(args)) => compare(args),
        None => run_eval(args, models),
    }
}

fn run_eval(mut args: EvalArgs, models: &mut ModelCache) -> Result<()> {
    args.models = args
        .models
        .clone()
        .or_shipped_agent(args.mode == AgentMode::Multi);
    let out = args
        .out
        .clone()
        .expect("clap requires --out when no subcommand is given");
    let mode = args.mode;
    let set = match (args.prompt_set.as_deref(), args.trajectories.format) {
        (Some("toolalpaca"), _) | (None, DataFormat::ToolAlpaca) => PromptSet::ToolAlpaca,
        (Some("toolbench") | None, _) => PromptSet::ToolBench,
        (Some(other), _) => bail!("--prompt-set must be toolbench or toolalpaca, not {other:?}"),
    };
    let (points, trajectories) = points_of(&args)?;
    let [planner, caller, summarizer] = args.models.describe();
    let settings = RunSettings {
        data: args.trajectories.data.display().to_string(),
        split: args.split.to_string(),
        dev_every: args.trajectories.dev_every,
        mode,
        planner,
        caller,
        summarizer,
        max_new_tokens: args.max_new_tokens,
        max_input_tokens: args.max_input_tokens,
        raw_prompts: args.models.raw_prompts,
        decoding: "greedy".into(),
    };
    claim_out_dir(&out, &settings)?;
    let predictions_path = out.join("predictions.jsonl");
    let (mut done, beyond, rewrite) = read_done(&predictions_path, &points)?;
    if rewrite {
        let mut text = String::new();
        for r in done.iter().flatten().chain(&beyond) {
            text += &serde_json::to_string(r)?;
            text.push('\n');
        }
        write_atomically(&predictions_path, &text)?;
    }
    let mut sink = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&predictions_path)
        .with_context(|| format!("opening {}", predictions_path.display()))?;

    let finished = done.iter().flatten().count();
    if finished < points.len() {
        let device = args.backend.device()?;
        let generator = args.models.eval_generator(
            models,
            &device,
            args.max_new_tokens,
            args.max_input_tokens,
        )?;
        let bar = ProgressBar::new(points.len() as u64).with_position(finished as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} decisions  {elapsed} elapsed, ETA {eta}  {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        if finished > 0 {
            bar.println(format!(
                "resuming after {finished} decisions already in {}",
                predictions_path.display()
            ));
        }
        let batcher = Batcher::new(generator, usize::from(args.batch));
        let todo: Vec<usize> = (0..points.len()).filter(|&i| done[i].is_none()).collect();
        let runs = todo.iter().map(|&index| {
            let mut handle = batcher.handle();
            let point = &points[index].1;
            async move { predict(&mut handle, mode, set, point).await }
        });
        // Decisions overlap when batched: each is charged the time since the previous one
        // finished, so that the seconds add up to the run's.
        let mut last = Instant::now();
        let mut failure: Option<anyhow::Error> = None;
        let mut on_output = |n: usize, prediction: std::result::Result<String, _>| {
            let index = todo[n];
            let saved = prediction
                .map_err(anyhow::Error::from)
                .and_then(|prediction| {
                    let record = PredictionRecord {
                        index,
                        trajectory: points[index].0,
                        reference: points[index].1.reference.clone(),
                        prediction,
                        seconds: last.elapsed().as_secs_f64(),
                    };
                    last = Instant::now();
                    writeln!(sink, "{}", serde_json::to_string(&record)?)?;
                    sink.flush()?;
                    done[index] = Some(record);
                    Ok(())
                });
            if let Err(e) = saved {
                failure = Some(e);
                return ControlFlow::Break(());
            }
            let so_far = evaluate(scored(&points, &done));
            bar.set_message(format!(
                "Plan ACC {:.1}  Act. EM {:.1}",
                100.0 * so_far.plan_em,
                100.0 * so_far.action_em
            ));
            bar.inc(1);
            ControlFlow::Continue(())
        };
        pollster::block_on(batcher.run(runs, usize::from(args.batch), &mut on_output))?;
        if let Some(e) = failure {
            return Err(e);
        }
        bar.finish();
    }
    let metrics = evaluate(scored(&points, &done));
    let label = default_label(&args.label, &args.models, args.mode.as_str());
    let report = RunReport {
        label: label.clone(),
        settings,
        metrics: metrics.clone(),
        trajectories,
        seconds: done.iter().flatten().map(|r| r.seconds).sum(),
    };
    write_atomically(
        &out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    let mut rows = vec![(label, metrics)];
    for dir in &args.compare {
        let path = dir.join("report.json");
        let other: RunReport = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        rows.push((other.label, other.metrics));
    }
    let table = umi_eval::markdown_table(&rows);
    write_atomically(&out.join("report.md"), &table)?;
    println!("{table}");
    eprintln!(
        "{} decisions from {} trajectories; report in {}",
        report.metrics.samples,
        trajectories,
        out.display()
    );
    Ok(())
}

/// Subcommands of `umi eval`.
#[derive(clap::Subcommand)]
pub enum EvalCommand {
    /// Real-time evaluation: the agent answers each task on live tools (a fresh demo tool server
    /// per task) and passes when it concludes with every expected fact, or gives up on a task
    /// no tool can do. Writes results.jsonl (resumable), report.json and report.md in --out.
    Live(Box<crate::eval_live::LiveArgs>),
    /// Compares two finished static evaluations of the same decisions (two --out folders of
    /// `umi eval`): each metric before and after, the change and its 95 % paired-bootstrap
    /// interval (trajectories resampled with their decisions), in bold where it excludes zero.
    Compare(CompareArgs),
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The first run's folder (the baseline).
    before: PathBuf,
    /// The second run's folder.
    after: PathBuf,
    /// Format of the data file the runs read (their settings.json names the file).
    #[arg(long, default_value = "alpha-umi")]
    format: DataFormat,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 10_000)]
    resamples: usize,
    /// Seed of the resampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the comparison as JSON instead of a markdown table.
    #[arg(long)]
    json: bool,
}

/// The settings of the `umi eval` run in `dir`.
fn run_settings(dir: &Path) -> Result<RunSettings> {
    let path = dir.join("settings.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is {} an `umi eval` --out folder?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The scores of every decision of `points` as the run in `dir` predicted them, in order.
///
/// # Errors
///
/// When its predictions cannot be read or do not cover every decision (compare whole splits
/// only).
fn finished_scores(dir: &Path, points: &[(usize, DecisionPoint)]) -> Result<Vec<DecisionScore>> {
    let (done, _, _) = read_done(&dir.join("predictions.jsonl"), points)?;
    let missing = done.iter().filter(|r| r.is_none()).count();
    if missing > 0 {
        bail!(
            "{} has predicted {} of the {} decisions of its split: finish it (rerun `umi eval` with the same --out) before comparing",
            dir.display(),
            points.len() - missing,
            points.len()
        );
    }
    Ok(points
        .iter()
        .zip(done.iter().flatten())
        .map(|((_, point), record)| score_decision(point, &record.prediction))
        .collect())
}

fn compare(args: CompareArgs) -> Result<()> {
    let (before_settings, after_settings) =
        (run_settings(&args.before)?, run_settings(&args.after)?);
    let same = |b: &RunSettings| (b.data.clone(), b.split.clone(), b.dev_every);
    if same(&before_settings) != same(&after_settings) {
        bail!(
            "the runs scored different decisions: {} is {} split {} (every {}), {} is {} split {} (every {})",
            args.before.display(),
            before_settings.data,
            before_settings.split,
            before_settings.dev_every,
            args.after.display(),
            after_settings.data,
            after_settings.split,
            after_settings.dev_every
        );
    }
    let split: Split = before_settings
        .split
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.before.join("settings.json").display()))?;
    let trajectories = TrajectoryArgs {
        data: PathBuf::from(&before_settings.data),
        format: args.format,
        dev_every: before_settings.dev_every,
    };
    let (points, _) = split_points(&trajectories, split, None)?;
    let before = finished_scores(&args.before, &points)?;
    let after = finished_scores(&args.after, &points)?;
    let trajectory: Vec<usize> = points.iter().map(|(t, _)| *t).collect();
    let comparison = paired_bootstrap(&before, &after, &trajectory, args.resamples, args.seed)
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        let label = |dir: &Path| {
            let report: Option<RunReport> = std::fs::read_to_string(dir.join("report.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            report.map_or_else(|| dir.display().to_string(), |r| r.label)
        };
        let (mut before, mut after) = (label(&args.before), label(&args.after));
        if before == after {
            // the same set-up (e.g. another checkpoint path): the folders tell them apart
            before = args.before.display().to_string();
            after = args.after.display().to_string();
        }
        print!("{}", comparison.markdown(&before, &after));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand)]
    enum Top {
        Eval(EvalArgs),
    }

    fn parse(args: &[&str]) -> std::result::Result<EvalArgs, clap::Error> {
        let Top::Eval(eval) = Cli::try_parse_from(["umi", "eval"].iter().chain(args))?.command;
        Ok(eval)
    }

    #[test]
    fn a_bad_prediction_line_is_skipped_and_the_rest_kept() {
        let points: Vec<(usize, DecisionPoint)> = (0..4)
            .map(|i| {
                let point = DecisionPoint {
                    history: Vec::new(),
                    tools: Vec::new(),
                    tool_names: Vec::new(),
                    reference: format!("r{i}"),
                };
                (0, point)
            })
            .collect();
        let line = |index: usize, reference: &str| {
            serde_json::to_string(&PredictionRecord {
                index,
                trajectory: 0,
                reference: reference.into(),
                prediction: format!("p{index}"),
                seconds: 1.0,
            })
            .unwrap()
        };
        let dir = std::env::temp_dir().join(format!("umi-eval-done-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("predictions.jsonl");
        let torn = &line(3, "r3")[..20];
        let text = [
            line(0, "r0"),
            "{\"index\": 1, oops".into(),
            line(2, "r2"),
            line(9, "r9"),
        ];
        std::fs::write(&path, format!("{}\n{torn}", text.join("\n"))).unwrap();
        let (done, beyond, rewrite) = read_done(&path, &points).unwrap();
        let kept: Vec<Option<&str>> = done
            .iter()
            .map(|r| r.as_ref().map(|r| r.prediction.as_str()))
            .collect();
        assert_eq!(kept, [Some("p0"), None, Some("p2"), None]);
        assert_eq!(beyond.len(), 1);
        assert!(rewrite, "the bad lines must go before appending");
        assert_eq!(scored(&points, &done).count(), 2);

        std::fs::write(&path, format!("{}\n", line(1, "r1"))).unwrap();
        let (done, _, rewrite) = read_done(&path, &points).unwrap();
        assert!(done[1].is_some() && !rewrite);
        std::fs::write(&path, format!("{}\n{}\n", line(1, "r1"), line(2, "other"))).unwrap();
        let e = read_done(&path, &points).unwrap_err().to_string();
        assert!(e.contains("predictions.jsonl line 2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn static_eval_parses_as_before() {
        let args = parse(&["--mode", "single", "--out", "eval/x", "--limit", "3"]).unwrap();
        assert!(args.command.is_none());
        assert_eq!(args.out.as_deref(), Some(Path::new("eval/x")));
        assert_eq!((args.mode.as_str(), args.limit), ("single", Some(3)));
        let Err(e) = parse(&["--mode", "multi"]) else {
            panic!("--out is required without a subcommand");
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--out"), "{e}");
    }

    #[test]
    fn live_parses_with_the_model_flags_and_defaults() {
        let args = parse(&[
            "live",
            "--tasks",
            "data/synth/test.jsonl",
            "--out",
            "eval/live-x",
            "--planner-adapter",
            "runs/planner/final/adapter",
            "--raw-prompts",
        ])
        .unwrap();
        let Some(EvalCommand::Live(live)) = args.command else {
            panic!("not the live subcommand");
        };
        assert_eq!(live.tasks, Path::new("data/synth/test.jsonl"));
        assert_eq!(live.out, Path::new("eval/live-x"));
        assert!(live.models.raw_prompts && live.models.planner_adapter.is_some());
        assert_eq!(
            (
                live.mode.as_str(),
                live.max_steps,
                live.max_new_tokens,
                live.max_observation_chars,
                live.limit,
                live.tools
            ),
            ("multi", 6, 512, 1024, None, None)
        );
        // static flags do not mix with the subcommand, and live needs its own
        assert!(parse(&["--out", "eval/x", "live", "--tasks", "t", "--out", "o"]).is_err());
        assert!(parse(&["live", "--out", "o"]).is_err());
        let sharded = parse(&["live", "--tasks", "t", "--out", "o", "--shard", "1/2"]).unwrap();
        let Some(EvalCommand::Live(live)) = sharded.command else {
            panic!("live expected")
        };
        assert_eq!(live.shard, Some((1, 2)));
        for bad in ["2/2", "1/0", "1", "a/b"] {
            assert!(
                parse(&["live", "--tasks", "t", "--out", "o", "--shard", bad]).is_err(),
                "{bad}"
            );
        }
    }
}

//! `umi eval`: static evaluation with the paper's metrics (`umi-eval`), resumable, with a
//! progress bar, a JSON report and a markdown table beside the paper's numbers.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use umi_data::PromptSet;
use umi_data::readers::{DataFormat, Split, read};
use umi_eval::{DecisionPoint, EvalMode, EvalReport, decision_points, evaluate, predict};
use umi_model::{Backend, GenerationConfig};

use crate::models::{ModelCache, RoleModelArgs};

/// The OOD trajectories shipped beside the project (`../shared/data`).
pub const DEFAULT_EVAL_DATA: &str =
    "../shared/data/alpha-umi-toolbench/ood-train/out_of_domain_train300.json";

#[derive(clap::Args)]
pub struct EvalArgs {
    /// α-UMi conversation JSON with reference trajectories.
    #[arg(long, default_value = DEFAULT_EVAL_DATA)]
    data: PathBuf,
    /// Data format: alpha-umi, toolbench (raw answers), api-bank or toolalpaca.
    #[arg(long, default_value = "alpha-umi")]
    format: DataFormat,
    /// Prompt family: toolbench, or toolalpaca (default for --format toolalpaca).
    #[arg(long)]
    prompt_set: Option<String>,
    /// Which trajectories: dev (every `--dev-every`-th, from the first), train (the others) or all.
    #[arg(long, default_value = "dev")]
    split: Split,
    /// Split period: record i is in dev when i % dev_every == 0 (6 → 50 of 300).
    #[arg(long, default_value_t = 6)]
    dev_every: usize,
    /// Score only the first N decision points of the split (quick looks; a later run without
    /// it in the same --out goes on from there).
    #[arg(long)]
    limit: Option<usize>,
    /// multi (planner, caller, summarizer) or single (backbone).
    #[arg(long, default_value = "multi")]
    mode: String,
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
    #[arg(long)]
    out: PathBuf,
    /// Other runs' folders whose rows join the markdown table.
    #[arg(long = "compare")]
    compare: Vec<PathBuf>,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
}

/// What identifies a run: a rerun with the same settings resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunSettings {
    data: String,
    split: String,
    dev_every: usize,
    mode: EvalMode,
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
    let (conversations, report) = read(args.format, &args.data)?;
    for s in &report.skipped {
        eprintln!("warning: skipped {s}");
    }
    let mut points = Vec::new();
    let mut trajectories = 0;
    for (i, c) in conversations.iter().enumerate() {
        if args.split.keeps(i, args.dev_every) {
            trajectories += 1;
            points.extend(decision_points(c).into_iter().map(|p| (i, p)));
        }
    }
    if let Some(limit) = args.limit {
        points.truncate(limit);
    }
    if points.is_empty() {
        bail!(
            "{} has no decision points in split {}",
            args.data.display(),
            args.split
        );
    }
    Ok((points, trajectories))
}

/// Predictions already in `path` (a resumed run): the valid lines in order, and whether a torn
/// last line (a killed run) was dropped. Lines past `points` (a run with a larger `--limit`) are
/// kept in the file but not returned.
fn read_done(
    path: &Path,
    points: &[(usize, DecisionPoint)],
) -> Result<(Vec<PredictionRecord>, Vec<PredictionRecord>, bool)> {
    let (mut done, mut beyond) = (Vec::new(), Vec::new());
    let Ok(file) = std::fs::File::open(path) else {
        return Ok((done, beyond, false));
    };
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(record) = serde_json::from_str::<PredictionRecord>(&line) else {
            eprintln!(
                "warning: {} line {} is incomplete (a killed run); resuming before it",
                path.display(),
                n + 1
            );
            return Ok((done, beyond, true));
        };
        if record.index >= points.len() {
            beyond.push(record);
            continue;
        }
        let expected = &points[record.index].1.reference;
        if record.index != done.len() || *expected != record.reference {
            bail!(
                "{} line {} does not belong to this evaluation (different data or split); use another --out",
                path.display(),
                n + 1
            );
        }
        done.push(record);
    }
    Ok((done, beyond, false))
}

pub fn run_eval(args: EvalArgs, models: &mut ModelCache) -> Result<()> {
    let mode = match args.mode.as_str() {
        "multi" => EvalMode::Multi,
        "single" => EvalMode::Single,
        other => bail!("--mode must be multi or single, not {other:?}"),
    };
    let set = match (args.prompt_set.as_deref(), args.format) {
        (Some("toolalpaca"), _) | (None, DataFormat::ToolAlpaca) => PromptSet::ToolAlpaca,
        (Some("toolbench") | None, _) => PromptSet::ToolBench,
        (Some(other), _) => bail!("--prompt-set must be toolbench or toolalpaca, not {other:?}"),
    };
    let (points, trajectories) = points_of(&args)?;
    let [planner, caller, summarizer] = args.models.describe();
    let settings = RunSettings {
        data: args.data.display().to_string(),
        split: args.split.to_string(),
        dev_every: args.dev_every,
        mode,
        planner,
        caller,
        summarizer,
        max_new_tokens: args.max_new_tokens,
        max_input_tokens: args.max_input_tokens,
        raw_prompts: args.models.raw_prompts,
        decoding: "greedy".into(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let settings_path = args.out.join("settings.json");
    if let Ok(text) = std::fs::read_to_string(&settings_path) {
        let previous: RunSettings = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", settings_path.display()))?;
        if previous != settings {
            bail!(
                "{} holds a run with other settings ({}); use another --out",
                args.out.display(),
                text.trim()
            );
        }
    } else {
        std::fs::write(&settings_path, serde_json::to_string_pretty(&settings)?)?;
    }
    let predictions_path = args.out.join("predictions.jsonl");
    let (mut done, beyond, torn) = read_done(&predictions_path, &points)?;
    if torn {
        let mut text = String::new();
        for r in done.iter().chain(&beyond) {
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

    if done.len() < points.len() {
        let device = args.backend.device()?;
        let mut generator = args.models.generator(
            models,
            &device,
            GenerationConfig {
                max_new_tokens: args.max_new_tokens,
                ..Default::default()
            },
        )?;
        generator.max_input_tokens = Some(args.max_input_tokens);
        let bar = ProgressBar::new(points.len() as u64).with_position(done.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} decisions  {elapsed} elapsed, ETA {eta}  {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        if !done.is_empty() {
            bar.println(format!(
                "resuming after {} decisions already in {}",
                done.len(),
                predictions_path.display()
            ));
        }
        for (index, (trajectory, point)) in points.iter().enumerate().skip(done.len()) {
            let t = Instant::now();
            let prediction = pollster::block_on(predict(&mut generator, mode, set, point))?;
            let record = PredictionRecord {
                index,
                trajectory: *trajectory,
                reference: point.reference.clone(),
                prediction,
                seconds: t.elapsed().as_secs_f64(),
            };
            writeln!(sink, "{}", serde_json::to_string(&record)?)?;
            sink.flush()?;
            done.push(record);
            let so_far = evaluate(
                points
                    .iter()
                    .map(|(_, p)| p)
                    .zip(done.iter().map(|r| r.prediction.as_str())),
            );
            bar.set_message(format!(
                "Plan ACC {:.1}  Act. EM {:.1}",
                100.0 * so_far.plan_em,
                100.0 * so_far.action_em
            ));
            bar.inc(1);
        }
        bar.finish();
    }
    let metrics = evaluate(
        points
            .iter()
            .map(|(_, p)| p)
            .zip(done.iter().map(|r| r.prediction.as_str())),
    );
    let label = args.label.clone().unwrap_or_else(|| {
        let m = &args.models;
        let stem = |p: &Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let adapted = [&m.planner_adapter, &m.caller_adapter, &m.summarizer_adapter]
            .iter()
            .any(|a| a.is_some());
        format!(
            "{}{} ({})",
            stem(m.planner.as_deref().unwrap_or(&m.model)),
            if adapted { " + LoRA" } else { "" },
            args.mode
        )
    });
    let report = RunReport {
        label: label.clone(),
        settings,
        metrics: metrics.clone(),
        trajectories,
        seconds: done.iter().map(|r| r.seconds).sum(),
    };
    write_atomically(
        &args.out.join("report.json"),
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
    write_atomically(&args.out.join("report.md"), &table)?;
    println!("{table}");
    eprintln!(
        "{} decisions from {} trajectories; report in {}",
        report.metrics.samples,
        trajectories,
        args.out.display()
    );
    Ok(())
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

//! `umi eval live`: the agent on live tools (a fresh demo tool server per task), scored by pass
//! rate (`umi_eval::live`), resumable, sharded, with a progress bar and a report.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use umi_agent::{AgentConfig, AgentMode};
use umi_eval::live::{
    LiveConfig, LiveEvent, LiveRecord, LiveReport, LiveTask, ToolSource, read_results, read_tasks,
    run_tasks,
};
use umi_model::Backend;

use crate::fs::claim_out_dir;
use crate::fs::write_atomically;
use crate::models::default_label;
use crate::models::{ModelCache, RoleModelArgs};

#[derive(clap::Args)]
pub(crate) struct LiveArgs {
    /// Tasks, one JSON object per line as `umi data synth` writes them: {"id", "kind",
    /// "query", "expected", "give_up", "tools"}.
    #[arg(long)]
    pub(crate) tasks: PathBuf,
    /// Output folder: results.jsonl (a record per task, appended as each finishes; a rerun
    /// skips the tasks already there), report.json, report.md.
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) models: RoleModelArgs,
    /// multi (planner, caller, summarizer) or single (backbone).
    #[arg(long, default_value = "multi")]
    pub(crate) mode: AgentMode,
    /// Planner decisions per task before the run stops unanswered.
    #[arg(long, default_value_t = 6)]
    pub(crate) max_steps: usize,
    /// Upper bound on tokens per generation (at least 1).
    #[arg(long, default_value_t = 512)]
    pub(crate) max_new_tokens: usize,
    /// Prompts are left-truncated to this many tokens (the reference's max_input_length).
    #[arg(long, default_value_t = 3750)]
    pub(crate) max_input_tokens: usize,
    /// Observations are truncated to this many characters (ToolBench's default).
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_observation_chars: usize,
    /// Run only the first N tasks of the file (a later run without it in the same --out goes
    /// on from there).
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Run only shard I of N (`I/N`, from 0): the tasks whose position in the file is I mod N.
    /// Shards of one run go to separate --out folders (the same settings); concatenating their
    /// results.jsonl into one folder and rerunning without --shard writes the whole report.
    #[arg(long, value_parser = parse_shard)]
    pub(crate) shard: Option<(usize, usize)>,
    /// A running tool server (URL; its /tools is read) or a tool-docs JSON file to use instead
    /// of a fresh in-process demo server per task. Its state (to-dos, calendar, alarms) is then
    /// shared by all tasks, so results depend on their order and on earlier runs.
    #[arg(long)]
    pub(crate) tools: Option<String>,
    /// Seconds a tool call (and reading tool docs from a URL) may take, at least 1.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) tool_timeout: u64,
    /// Label of this run in the report.
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    pub(crate) backend: Backend,
}

/// `I/N` with I < N.
fn parse_shard(text: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("--shard must be I/N with 0 <= I < N, not {text:?}");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// What identifies a live run: a rerun with the same settings resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LiveSettings {
    tasks: String,
    mode: AgentMode,
    planner: String,
    caller: String,
    summarizer: String,
    max_steps: usize,
    max_new_tokens: usize,
    max_input_tokens: usize,
    max_observation_chars: usize,
    raw_prompts: bool,
    /// `"fresh demo server per task"` or the --tools source.
    tools: String,
    decoding: String,
}

/// The file `report.json` of a live run holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct LiveRunReport {
    label: String,
    settings: LiveSettings,
    report: LiveReport,
    /// Agent wall time over the reported tasks, in seconds.
    seconds: f64,
}

/// The records of `results` (a resumed run) checked against `tasks`: each must be a task of the
/// file, with the same query.
fn check_done(path: &Path, done: &[LiveRecord], tasks: &[LiveTask]) -> Result<()> {
    for record in done {
        match tasks.iter().find(|t| t.id == record.id) {
            Some(task) if task.query == record.query => {}
            Some(_) => bail!(
                "{} holds task {} with another query than the task file; use another --out",
                path.display(),
                record.id
            ),
            None => bail!(
                "{} holds task {}, which the task file does not have; use another --out",
                path.display(),
                record.id
            ),
        }
    }
    Ok(())
}

pub(crate) fn run_live(mut args: LiveArgs, models: &mut ModelCache) -> Result<()> {
    // as `umi run`: the shipped α-UMi agent unless models, adapters or --zero-shot are given
    args.models = args
        .models
        .clone()
        .or_shipped_agent(args.mode == AgentMode::Multi);
    let mode = args.mode;
    if args.max_new_tokens < 1 {
        bail!("--max-new-tokens must be at least 1");
    }
    if args.max_steps < 1 {
        bail!("--max-steps must be at least 1");
    }
    let tasks = read_tasks(&args.tasks)?;
    let limited = &tasks[..args.limit.unwrap_or(tasks.len()).min(tasks.len())];
    let selected: Vec<LiveTask> = match args.shard {
        Some((i, n)) => limited
            .iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, t)| t.clone())
            .collect(),
        None => limited.to_vec(),
    };
    let selected = &selected[..];
    let [planner, caller, summarizer] = args.models.describe();
    let settings = LiveSettings {
        tasks: args.tasks.display().to_string(),
        mode,
        planner,
        caller,
        summarizer,
        max_steps: args.max_steps,
        max_new_tokens: args.max_new_tokens,
        max_input_tokens: args.max_input_tokens,
        max_observation_chars: args.max_observation_chars,
        raw_prompts: args.models.raw_prompts,
        tools: args
            .tools
            .clone()
            .unwrap_or_else(|| "fresh demo server per task".into()),
        decoding: "greedy".into(),
    };
    claim_out_dir(&args.out, &settings)?;
    let results_path = args.out.join("results.jsonl");
    let (done, torn) = read_results(&results_path)?;
    check_done(&results_path, &done, &tasks)?;
    if torn {
        eprintln!(
            "warning: the last line of {} is incomplete (a killed run); resuming before it",
            results_path.display()
        );
        let mut text = String::new();
        for r in &done {
            text += &serde_json::to_string(r)?;
            text.push('\n');
        }
        write_atomically(&results_path, &text)?;
    }
    let done_ids: HashSet<&str> = done.iter().map(|r| r.id.as_str()).collect();
    let todo: Vec<_> = selected
        .iter()
        .filter(|t| !done_ids.contains(t.id.as_str()))
        .cloned()
        .collect();
    let mut records: HashMap<String, LiveRecord> =
        done.into_iter().map(|r| (r.id.clone(), r)).collect();

    if !todo.is_empty() {
        let tools = match &args.tools {
            None => ToolSource::Fresh {
                state_dir: std::env::temp_dir(),
            },
            Some(source) => {
                ToolSource::External(crate::run::load_tools(source, args.tool_timeout)?)
            }
        };
        let config = LiveConfig {
            agent: AgentConfig {
                mode,
                max_steps: args.max_steps,
                max_observation_chars: args.max_observation_chars,
                ..AgentConfig::default()
            },
            tools,
            tool_timeout: std::time::Duration::from_secs(args.tool_timeout),
        };
        let device = args.backend.device()?;
        let mut generator = args.models.eval_generator(
            models,
            &device,
            args.max_new_tokens,
            args.max_input_tokens,
        )?;
        let mut sink = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&results_path)
            .with_context(|| format!("opening {}", results_path.display()))?;
        let already = selected.len() - todo.len();
        let bar = ProgressBar::new(selected.len() as u64).with_position(already as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} tasks  {elapsed} elapsed, ETA {eta}  {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        // Without a terminal (a run in the background, output to a log) the bar and its
        // println are hidden: the per-task lines go to stderr instead.
        let say = |line: String| {
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        };
        if already > 0 {
            say(format!(
                "resuming after {already} tasks already in {}",
                results_path.display()
            ));
        }
        let (mut finished, mut passed) = (
            already,
            selected
                .iter()
                .filter(|t| records.get(&t.id).is_some_and(|r| r.pass))
                .count(),
        );
        let pass_message = |passed: usize, finished: usize| {
            format!(
                "pass {passed}/{finished} ({:.1}%)",
                100.0 * passed as f64 / finished.max(1) as f64
            )
        };
        bar.set_message(pass_message(passed, finished));
        let new = pollster::block_on(run_tasks(
            &mut generator,
            &todo,
            &config,
            &mut sink,
            |event| match event {
                LiveEvent::Started { task, .. } => bar.set_message(format!(
                    "{}  now {} [{}]",
                    pass_message(passed, finished),
                    task.id,
                    task.kind
                )),
                LiveEvent::Agent(_) => bar.tick(),
                LiveEvent::Finished(r) => {
                    finished += 1;
                    passed += usize::from(r.pass);
                    say(format!(
                        "{} [{}] {} ({:?}, {} steps, {}/{} tool errors, {:.1} s)",
                        r.id,
                        r.kind,
                        if r.pass { "pass" } else { "FAIL" },
                        r.stop_reason,
                        r.steps,
                        r.tool_errors,
                        r.tool_calls,
                        r.seconds
                    ));
                    bar.set_message(pass_message(passed, finished));
                    bar.inc(1);
                }
            },
        ))?;
        bar.finish();
        records.extend(new.into_iter().map(|r| (r.id.clone(), r)));
    }
    let reported: Vec<LiveRecord> = selected
        .iter()
        .filter_map(|t| records.remove(&t.id))
        .collect();
    let report = LiveReport::new(&reported);
    let label = default_label(&args.label, &args.models, args.mode.as_str());
    let run_report = LiveRunReport {
        label: label.clone(),
        settings,
        report: report.clone(),
        seconds: reported.iter().map(|r| r.seconds).sum(),
    };
    write_atomically(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&run_report)?,
    )?;
    let table = format!(
        "Live evaluation of **{label}** on {} ({} tasks):\n\n{}",
        args.tasks.display(),
        report.overall.tasks,
        report.to_markdown()
    );
    write_atomically(&args.out.join("report.md"), &table)?;
    println!("{table}");
    eprintln!(
        "pass rate {:.1}% over {} tasks; report in {}",
        100.0 * report.overall.pass_rate,
        report.overall.tasks,
        args.out.display()
    );
    Ok(())
}

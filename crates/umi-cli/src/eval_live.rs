//! `umi eval live`: the agent on live tools (a fresh demo tool server per task), scored by pass
//! rate (`umi_eval::live`), resumable, sharded, with a progress bar and a report.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use umi_agent::{AgentConfig, AgentMode};
use umi_data::Speaker;
use umi_eval::live::{
    LiveConfig, LiveEvent, LiveRecord, LiveReport, LiveTask, ToolSource, read_results, read_tasks,
    run_tasks, run_tasks_batched,
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
    /// Tasks run at once, their generations decoded together (continuous batching); each
    /// task's seconds are then the time since the previous one finished. 1: one after
    /// another, with the agent's text streamed to the progress line.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) batch: u16,
    /// Run no task: score the records already in --out's results.jsonl again with the current
    /// checker (their saved final answers against --tasks' expected facts), rewrite
    /// results.jsonl's scores (trajectories and answers kept) and the report. For runs scored
    /// by an older checker.
    #[arg(long)]
    pub(crate) rescore: bool,
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

/// `--rescore`: the records of `args.out` scored again against `args.tasks` with the current
/// checker, results.jsonl rewritten with the new scores, the report written again under the
/// run's saved settings and label.
fn rescore(args: &LiveArgs) -> Result<()> {
    let tasks = read_tasks(&args.tasks)?;
    let results_path = args.out.join("results.jsonl");
    let settings_path = args.out.join("settings.json");
    let settings: LiveSettings =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).with_context(|| {
            format!("reading {} (is --out a live run?)", settings_path.display())
        })?)
        .with_context(|| format!("reading {}", settings_path.display()))?;
    let (mut records, torn) = read_results(&results_path)?;
    if records.is_empty() {
        bail!("{} holds no records to rescore", results_path.display());
    }
    if torn {
        eprintln!(
            "warning: the last line of {} is incomplete and is dropped",
            results_path.display()
        );
    }
    check_done(&results_path, &records, &tasks)?;
    // the file's own lines, in record order, so that records whose score stays are kept byte
    // for byte (a float read and written again can change its last digit)
    let text = std::fs::read_to_string(&results_path)
        .with_context(|| format!("reading {}", results_path.display()))?;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .take(records.len())
        .collect();
    let mut changed = 0;
    for (record, line) in records.iter_mut().zip(&mut lines) {
        let task = tasks
            .iter()
            .find(|t| t.id == record.id)
            .expect("check_done found every record's task");
        let observations: Vec<&str> = record
            .trajectory
            .conversations
            .iter()
            .filter(|t| t.from == Speaker::Observation)
            .map(|t| t.value.as_str())
            .collect();
        let outcome = umi_eval::live::score(
            task,
            record.stop_reason,
            record.final_answer.as_deref(),
            &observations,
        );
        if outcome.pass != record.pass {
            eprintln!(
                "{} [{}] {} -> {}: {:?}",
                record.id,
                record.kind,
                if record.pass { "pass" } else { "FAIL" },
                if outcome.pass { "pass" } else { "FAIL" },
                record.final_answer.as_deref().unwrap_or("")
            );
        }
        if (
            outcome.pass,
            outcome.gave_up,
            &outcome.missing,
            &task.expected,
        ) != (
            record.pass,
            record.gave_up,
            &record.missing,
            &record.expected,
        ) {
            changed += 1;
            record.expected = task.expected.clone();
            record.pass = outcome.pass;
            record.gave_up = outcome.gave_up;
            record.missing = outcome.missing;
            *line = serde_json::to_string(record)?;
        }
    }
    if changed > 0 || torn {
        write_atomically(&results_path, &(lines.join("\n") + "\n"))?;
    }
    eprintln!(
        "rescored {} records with the current checker: {changed} changed",
        records.len()
    );
    let label = std::fs::read_to_string(args.out.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<LiveRunReport>(&t).ok())
        .map_or_else(|| settings.planner.clone(), |r| r.label);
    // reported in the task file's order, as a run reports them
    let mut by_id: HashMap<String, LiveRecord> =
        records.into_iter().map(|r| (r.id.clone(), r)).collect();
    let reported: Vec<LiveRecord> = tasks.iter().filter_map(|t| by_id.remove(&t.id)).collect();
    write_report(&args.out, &args.tasks, label, settings, &reported)
}

/// Writes report.json and report.md of `records` to `out` and prints the table.
fn write_report(
    out: &Path,
    tasks: &Path,
    label: String,
    settings: LiveSettings,
    reported: &[LiveRecord],
) -> Result<()> {
    let report = LiveReport::new(reported);
    let run_report = LiveRunReport {
        label: label.clone(),
        settings,
        report: report.clone(),
        seconds: reported.iter().map(|r| r.seconds).sum(),
    };
    write_atomically(
        &out.join("report.json"),
        &serde_json::to_string_pretty(&run_report)?,
    )?;
    let table = format!(
        "Live evaluation of **{label}** on {} ({} tasks):\n\n{}",
        tasks.display(),
        report.overall.tasks,
        report.to_markdown()
    );
    write_atomically(&out.join("report.md"), &table)?;
    println!("{table}");
    eprintln!(
        "pass rate {:.1}% over {} tasks; report in {}",
        100.0 * report.overall.pass_rate,
        report.overall.tasks,
        out.display()
    );
    Ok(())
}

pub(crate) fn run_live(mut args: LiveArgs, models: &mut ModelCache) -> Result<()> {
    if args.rescore {
        return rescore(&args);
    }
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
        let generator = args.models.eval_generator(
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
        let mut on_event = |event: LiveEvent<'_>| match event {
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
        };
        let new = if args.batch > 1 {
            let batcher = umi_agent::Batcher::new(generator, usize::from(args.batch));
            pollster::block_on(run_tasks_batched(
                &batcher,
                &todo,
                &config,
                usize::from(args.batch),
                &mut sink,
                &mut on_event,
            ))?
        } else {
            let mut generator = generator;
            pollster::block_on(run_tasks(
                &mut generator,
                &todo,
                &config,
                &mut sink,
                &mut on_event,
            ))?
        };
        bar.finish();
        records.extend(new.into_iter().map(|r| (r.id.clone(), r)));
    }
    let reported: Vec<LiveRecord> = selected
        .iter()
        .filter_map(|t| records.remove(&t.id))
        .collect();
    let label = default_label(&args.label, &args.models, args.mode.as_str());
    write_report(&args.out, &args.tasks, label, settings, &reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record the checker before 2026-12-03 failed ("March 8, 2023" for the fact 2023-03-08,
    /// which the tool returned), taken from a committed run, rescored: it passes, results.jsonl and the report say so, and the
    /// trajectory is kept.
    #[test]
    fn rescore_applies_the_current_checker_to_saved_records() {
        let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../eval/live-caller-mix-104-q8");
        let line = std::fs::read_to_string(run.join("results.jsonl"))
            .unwrap()
            .lines()
            .find(|l| l.contains("\"id\":\"test-0023\""))
            .expect("test-0023 in the committed run")
            .to_string();
        // as the checker before 2026-12-03 scored it
        let mut old: LiveRecord = serde_json::from_str(&line).unwrap();
        (old.pass, old.missing) = (false, vec!["2023-03-08".into()]);
        let line = serde_json::to_string(&old).unwrap();
        let dir = std::env::temp_dir().join(format!("umi-rescore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(run.join("settings.json"), dir.join("settings.json")).unwrap();
        std::fs::write(dir.join("results.jsonl"), format!("{line}\n")).unwrap();
        let task = serde_json::json!({
            "id": "test-0023", "kind": "one-tool", "query": old.query,
            "expected": ["2023-03-08", "22:30"], "give_up": false, "tools": ["add_calendar_event"],
        });
        let tasks = dir.join("tasks.jsonl");
        std::fs::write(&tasks, format!("{task}\n")).unwrap();
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            live: LiveArgs,
        }
        let args = <Cli as clap::Parser>::try_parse_from([
            "eval-live",
            "--rescore",
            "--tasks",
            tasks.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .unwrap()
        .live;
        rescore(&args).unwrap();
        let (new, torn) = read_results(&dir.join("results.jsonl")).unwrap();
        assert!(!torn);
        assert_eq!(new.len(), 1);
        assert!(new[0].pass && new[0].missing.is_empty());
        assert_eq!(new[0].final_answer, old.final_answer);
        assert_eq!(
            serde_json::to_value(&new[0].trajectory).unwrap(),
            serde_json::to_value(&old.trajectory).unwrap()
        );
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(report.contains("| **all** | 1 | 100.0 |"), "{report}");
        // a second rescore changes nothing: the file stays byte for byte
        let before = std::fs::read(dir.join("results.jsonl")).unwrap();
        rescore(&args).unwrap();
        assert_eq!(std::fs::read(dir.join("results.jsonl")).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

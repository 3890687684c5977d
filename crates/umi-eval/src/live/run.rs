//! Running tasks: a fresh demo tool server per task (or given tools), the agent, a record each.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use umi_agent::{
    Agent, AgentConfig, AgentEvent, Batcher, Generator, GeneratorError, PromptLength, StopReason,
};
use umi_data::{Conversation, Role};
use umi_tools::server::{ServerHandle, serve, tool_docs};
use umi_tools::{HttpTools, ToolSpec, load_tool_specs};

use super::score::is_tool_error;
use super::task::json_error;
use super::{Error, LiveTask, Result, TaskKind, score};

/// Where the tools of a live run come from.
#[derive(Debug, Clone)]
pub enum ToolSource {
    /// A fresh in-process demo tool server per task (`umi_tools::server::serve` on
    /// `127.0.0.1:0`), its state in a new file under `state_dir` that is deleted afterwards: every
    /// task starts with no to-dos, events or alarms.
    Fresh {
        /// Folder for the per-task state files (the system's temporary folder by default).
        state_dir: PathBuf,
    },
    /// Tools already served elsewhere (e.g. `umi tools serve`), as read from their docs. All
    /// tasks share that server's state: what one run adds, the next sees, so results depend on
    /// the order and on earlier runs.
    External(Vec<ToolSpec>),
}

/// Settings of a live evaluation.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// The agent's settings (mode, `max_steps`, `max_observation_chars`, …).
    pub agent: AgentConfig,
    /// Where the tools come from.
    pub tools: ToolSource,
    /// How long one tool call may take.
    pub tool_timeout: Duration,
}

impl LiveConfig {
    /// `agent` with a fresh demo server per task (state under the system's temporary folder)
    /// and a 20 s tool timeout.
    pub fn new(agent: AgentConfig) -> Self {
        Self {
            agent,
            tools: ToolSource::Fresh {
                state_dir: std::env::temp_dir(),
            },
            tool_timeout: Duration::from_secs(20),
        }
    }
}

/// The result of one task: the task, its [`Outcome`](super::Outcome), counts, and the
/// trajectory. One line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveRecord {
    /// The task's id.
    pub id: String,
    /// The task's kind.
    pub kind: TaskKind,
    /// The query.
    pub query: String,
    /// The facts expected.
    pub expected: Vec<String>,
    /// Whether the task is a give-up task.
    pub give_up: bool,
    /// Whether the run passed (see [`Outcome::pass`](super::Outcome::pass)).
    pub pass: bool,
    /// Whether the agent gave up.
    pub gave_up: bool,
    /// Why the run ended (`"Conclusion"`, `"GiveUp"` or `"MaxSteps"`).
    #[serde(with = "stop_reason_serde")]
    pub stop_reason: StopReason,
    /// The summarizer's answer, when the run concluded.
    pub final_answer: Option<String>,
    /// Expected facts the answer lacks.
    pub missing: Vec<String>,
    /// Planner decisions made.
    pub steps: usize,
    /// Tool calls attempted (unparseable and unknown ones included).
    pub tool_calls: usize,
    /// Tool calls whose observation is an error ([`is_tool_error`]).
    pub tool_errors: usize,
    /// Wall time of the agent run, in seconds (model and tool time; server start-up excluded).
    /// In a batched run ([`run_tasks_batched`]), where tasks overlap, the time since the
    /// previous task finished instead, so that the seconds add up to the run's.
    pub seconds: f64,
    /// The run in α-UMi's conversation format, as `umi run --json` writes it
    /// (`{"tools", "instruction", "conversations"}`).
    pub trajectory: Conversation,
}

/// `StopReason` as its variant name; the agent crate only serialises it.
mod stop_reason_serde {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use umi_agent::StopReason;

    pub fn serialize<S: Serializer>(reason: &StopReason, s: S) -> Result<S::Ok, S::Error> {
        reason.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StopReason, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "Conclusion" => Ok(StopReason::Conclusion),
            "GiveUp" => Ok(StopReason::GiveUp),
            "MaxSteps" => Ok(StopReason::MaxSteps),
            other => Err(D::Error::unknown_variant(
                other,
                &["Conclusion", "GiveUp", "MaxSteps"],
            )),
        }
    }
}

/// Lends a generator to an [`Agent`] (which owns its generator) for one task.
struct Lent<'a, G>(&'a mut G);

impl<G: Generator> Generator for Lent<'_, G> {
    async fn generate(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
    ) -> core::result::Result<String, GeneratorError> {
        self.0.generate(role, prompt, stop).await
    }

    async fn generate_streaming(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        on_event: &mut dyn FnMut(&umi_agent::AgentEvent),
    ) -> core::result::Result<String, GeneratorError> {
        self.0
            .generate_streaming(role, prompt, stop, on_event)
            .await
    }

    fn prompt_length(
        &mut self,
        role: Role,
        prompt: &str,
    ) -> core::result::Result<Option<PromptLength>, GeneratorError> {
        self.0.prompt_length(role, prompt)
    }
}

/// A demo tool server with a state file of its own; dropping it stops the server and deletes
/// the state.
struct FreshServer {
    handle: Option<ServerHandle>,
    url: String,
    state: PathBuf,
}

impl FreshServer {
    fn start(state_dir: &Path) -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let state = state_dir.join(format!(
            "umi-live-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        umi_tools::server::remove_state(&state);
        let handle = serve("127.0.0.1:0", &state).map_err(Error::Tools)?;
        Ok(Self {
            url: handle.url.clone(),
            handle: Some(handle),
            state,
        })
    }

    fn specs(&self) -> Result<Vec<ToolSpec>> {
        load_tool_specs(&tool_docs(&self.url).to_string(), &self.url)
            .map_err(|e| Error::Tools(e.to_string()))
    }
}

impl Drop for FreshServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop();
        }
        // snapshot, temporary file and write journal
        umi_tools::server::remove_state(&self.state);
    }
}

/// Runs the agent on one task and scores it, calling `on_event` as the run unfolds.
///
/// With [`ToolSource::Fresh`], a demo server is started for the task and stopped (its state
/// deleted) before this returns, also on error.
///
/// # Errors
///
/// [`Error::Tools`] when the server cannot start; [`Error::Agent`] when a model cannot
/// generate. Bad model output and tool failures are part of the record, not errors.
pub async fn run_task<G: Generator>(
    generator: &mut G,
    task: &LiveTask,
    config: &LiveConfig,
    on_event: impl FnMut(&AgentEvent),
) -> Result<LiveRecord> {
    let (specs, _server) = match &config.tools {
        ToolSource::Fresh { state_dir } => {
            let server = FreshServer::start(state_dir)?;
            (server.specs()?, Some(server))
        }
        ToolSource::External(specs) => (specs.clone(), None),
    };
    let docs = specs.iter().map(ToolSpec::doc).collect();
    let tools = HttpTools::new(specs, config.tool_timeout);
    let mut agent = Agent::new(Lent(generator), tools, docs);
    agent.config = config.agent.clone();
    let start = Instant::now();
    let (trajectory, stop) = agent.run(&task.query, on_event).await?;
    let seconds = start.elapsed().as_secs_f64();
    let final_answer = trajectory.final_answer.as_ref().map(|a| a.0.clone());
    let observations: Vec<&str> = trajectory
        .steps
        .iter()
        .filter(|s| s.action.is_some())
        .map(|s| s.observation.as_ref().map_or("", |o| o.0.as_str()))
        .collect();
    let outcome = score(task, stop, final_answer.as_deref(), &observations);
    Ok(LiveRecord {
        id: task.id.clone(),
        kind: task.kind,
        query: task.query.clone(),
        expected: task.expected.clone(),
        give_up: task.give_up,
        pass: outcome.pass,
        gave_up: outcome.gave_up,
        stop_reason: stop,
        final_answer,
        missing: outcome.missing,
        steps: trajectory.steps.len(),
        tool_calls: observations.len(),
        tool_errors: observations.iter().filter(|o| is_tool_error(o)).count(),
        seconds,
        trajectory: trajectory.to_conversation(&agent.tool_docs),
    })
}

/// What [`run_tasks`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum LiveEvent<'a> {
    /// A task starts; `index` counts the tasks of this call, from 0.
    Started {
        /// Position in the `tasks` given.
        index: usize,
        /// The task.
        task: &'a LiveTask,
    },
    /// The agent did something in the current task.
    Agent(&'a AgentEvent),
    /// A task ended; its record is already written to the sink.
    Finished(&'a LiveRecord),
}

/// Runs `tasks` in order ([`run_task`] each), writing each record to `sink` as one JSON line
/// (flushed) as soon as its task ends, so a killed run loses at most the task in progress.
/// Returns the records in task order.
///
/// # Errors
///
/// As [`run_task`]; [`Error::Sink`] when a record cannot be written. Records written before
/// the error stay in the sink.
pub async fn run_tasks<G: Generator>(
    generator: &mut G,
    tasks: &[LiveTask],
    config: &LiveConfig,
    sink: &mut impl Write,
    mut on_event: impl FnMut(LiveEvent<'_>),
) -> Result<Vec<LiveRecord>> {
    let mut records = Vec::with_capacity(tasks.len());
    for (index, task) in tasks.iter().enumerate() {
        on_event(LiveEvent::Started { index, task });
        let record = run_task(generator, task, config, |e| on_event(LiveEvent::Agent(e))).await?;
        let line = serde_json::to_string(&record).map_err(|e| Error::Sink(e.into()))?;
        writeln!(sink, "{line}").map_err(Error::Sink)?;
        sink.flush().map_err(Error::Sink)?;
        on_event(LiveEvent::Finished(&record));
        records.push(record);
    }
    Ok(records)
}

/// [`run_tasks`] with up to `concurrency` tasks at once on `batcher`'s generator, their
/// generations decoded together ([`Batcher`]: continuous batching); each task's agent gets a
/// handle of its own. Records are written and reported as tasks finish, in that order, with
/// [`LiveRecord::seconds`] the time since the previous one finished. Events: `Started` and
/// `Finished` (no [`LiveEvent::Agent`]: a batched generation does not stream).
///
/// # Errors
///
/// As [`run_tasks`]. Records written before the error stay in the sink.
pub async fn run_tasks_batched(
    batcher: &Batcher,
    tasks: &[LiveTask],
    config: &LiveConfig,
    concurrency: usize,
    sink: &mut impl Write,
    on_event: impl FnMut(LiveEvent<'_>),
) -> Result<Vec<LiveRecord>> {
    let on_event = std::cell::RefCell::new(on_event);
    let runs = tasks.iter().enumerate().map(|(index, task)| {
        (on_event.borrow_mut())(LiveEvent::Started { index, task });
        let mut handle = batcher.handle();
        async move { run_task(&mut handle, task, config, |_| {}).await }
    });
    let mut records = Vec::with_capacity(tasks.len());
    let mut failure = None;
    let mut last = Instant::now();
    batcher
        .run(runs, concurrency, |_, record| {
            let saved = record.and_then(|mut record| {
                record.seconds = last.elapsed().as_secs_f64();
                last = Instant::now();
                let line = serde_json::to_string(&record).map_err(|e| Error::Sink(e.into()))?;
                writeln!(sink, "{line}").map_err(Error::Sink)?;
                sink.flush().map_err(Error::Sink)?;
                Ok(record)
            });
            match saved {
                Ok(record) => {
                    (on_event.borrow_mut())(LiveEvent::Finished(&record));
                    records.push(record);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            }
        })
        .await
        .map_err(|e| Error::Agent(e.into()))?;
    match failure {
        Some(e) => Err(e),
        None => Ok(records),
    }
}

/// The records already in a results file (a resumed run), in file order, and whether a torn
/// last line (a run killed mid-write) was dropped. A missing file has none.
///
/// # Errors
///
/// [`Error::Io`] when the file exists but cannot be read; [`Error::Line`] for a line that is not
/// a record before the last one, or an id seen twice.
pub fn read_results(path: &Path) -> Result<(Vec<LiveRecord>, bool)> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(error) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                error,
            });
        }
    };
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let (mut records, mut seen) = (Vec::new(), HashSet::new());
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fail = |message: String| Error::Line {
            path: path.to_path_buf(),
            line: n + 1,
            message,
        };
        match serde_json::from_str::<LiveRecord>(line) {
            Ok(record) => {
                if !seen.insert(record.id.clone()) {
                    return Err(fail(format!("task {} appears twice", record.id)));
                }
                records.push(record);
            }
            Err(_) if Some(n) == last => return Ok((records, true)),
            Err(e) => return Err(fail(format!("not a result record: {}", json_error(&e)))),
        }
    }
    Ok((records, false))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn record(
        id: &str,
        kind: TaskKind,
        pass: bool,
        gave_up: bool,
        steps: usize,
        calls: usize,
        errors: usize,
    ) -> LiveRecord {
        LiveRecord {
            id: id.into(),
            kind,
            query: "q".into(),
            expected: vec![],
            give_up: kind == TaskKind::GiveUp,
            pass,
            gave_up,
            stop_reason: if gave_up {
                StopReason::GiveUp
            } else {
                StopReason::Conclusion
            },
            final_answer: None,
            missing: vec![],
            steps,
            tool_calls: calls,
            tool_errors: errors,
            seconds: 2.0,
            trajectory: Conversation {
                tools: vec![],
                instruction: "q".into(),
                conversations: vec![],
            },
        }
    }

    #[test]
    fn results_read_back_and_a_torn_last_line_is_dropped() {
        let dir = std::env::temp_dir().join(format!("umi-live-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.jsonl");
        let (a, b) = (
            record("a", TaskKind::OneTool, true, false, 2, 1, 0),
            record("b", TaskKind::GiveUp, true, true, 1, 0, 0),
        );
        let line = |r: &LiveRecord| serde_json::to_string(r).unwrap();
        assert_eq!(read_results(&path).unwrap(), (vec![], false));
        std::fs::write(&path, format!("{}\n{}\n", line(&a), line(&b))).unwrap();
        assert_eq!(
            read_results(&path).unwrap(),
            (vec![a.clone(), b.clone()], false)
        );
        let torn = &line(&b)[..40];
        std::fs::write(&path, format!("{}\n{torn}", line(&a))).unwrap();
        assert_eq!(read_results(&path).unwrap(), (vec![a.clone()], true));
        std::fs::write(&path, format!("{torn}\n{}\n", line(&a))).unwrap();
        let e = read_results(&path).unwrap_err().to_string();
        assert!(e.contains("line 1: not a result record"), "{e}");
        std::fs::write(&path, format!("{}\n{}\n", line(&a), line(&a))).unwrap();
        let e = read_results(&path).unwrap_err().to_string();
        assert!(e.contains("line 2: task a appears twice"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

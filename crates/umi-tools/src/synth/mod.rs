//! Synthetic α-UMi trajectories over the demo tool server (`umi data synth`).
//!
//! Every task is played against a real, freshly started demo server ([`crate::server`]): the
//! caller's actions go through [`HttpTools`] exactly as the agent's do, and the observations in
//! the trajectories are what the server answered (truncated as the agent truncates them). The
//! planner's rationales, the caller's actions and the summarizer's answers are written in the
//! α-UMi format (`../shared/docs/alpha-umi-reference.md` §1: `… Next: caller.`,
//! `Action: …\nAction Input: {…}`, a conclusion turn), from many phrasings, and state the values
//! read from the observations, so a model trained on them has to read the query and the
//! observation rather than memorise a template.
//!
//! Tasks come in four kinds ([`TaskKind`]): one tool, multi-tool chains where one observation
//! feeds the next call, requests no tool can serve (the right step is `Next: give up.`), and
//! tool errors followed by a corrected call. Test tasks ([`LiveTask`]) carry machine-checkable
//! expected facts and are drawn from phrasings and values held apart from training
//! ([`values::Split`]).
//!
//! Output is deterministic for a seed (`rand`'s `SmallRng`, pinned by `Cargo.lock`).

mod tasks;
pub mod values;

use std::path::PathBuf;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use umi_data::ToolDoc;
pub use umi_data::task::{LiveTask, TaskKind};
use umi_data::{
    Action, Conversation, FinalAnswer, Next, Observation, Rationale, Step, Trajectory,
    python_json_dumps,
};

use crate::executor::{ToolExecutor, truncate_observation};
use crate::http::HttpTools;
use crate::server::{ServerHandle, remove_state, serve, tool_docs};
use crate::spec::{ToolSpec, load_tool_specs};
pub use values::Split;

/// Settings of a synthesis run.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Training trajectories to write.
    pub train: usize,
    /// Test tasks to write.
    pub test: usize,
    /// Share of training trajectories whose prompt lists all 14 tools (the others list the
    /// tools the task needs plus 2–6 others, in the server's order), as a cheaper way to teach
    /// tool choice; test tasks always list all tools, as `umi run` does.
    pub all_tools_share: f64,
    /// Training tasks also draw their queries from train-only phrasings (added 2026-12-01, for
    /// models that must generalise to the held-apart test phrasings); off, a seed gives the
    /// files it gave before. Test tasks never use them, but other training queries can move
    /// the test tasks a seed draws: for a fixed test set, make the test tasks without this
    /// and the extra training data with `test = 0` and another seed.
    pub extra_phrasings: bool,
    /// Training multi-tool chains name their parts in the planner's rationales (added
    /// 2026-12-02): the first step lists what the query asks for, in the order the chain serves
    /// it, each later step says what is done and what is left, and the last one that every part
    /// is answered, so a planner can read its own plan before it decides `Next: conclusion.`
    /// Off, a seed gives the files it gave before; test tasks never change (their queries and
    /// values are drawn before any rationale).
    pub plan_parts: bool,
    /// Training planner rationales work out the step the small planner got wrong most often
    /// (added 2026-12-02, from the live failures in EVAL.md): a day count names date_difference
    /// and why not add_days, a date N days before passes `days` as -N, a calculator step names
    /// its `op`, a 12-hour time is turned into HH:MM as hour + 12, and a day-first date is
    /// read as day, month and year before it is written YYYY-MM-DD. Off, a seed gives the files
    /// it gave before; test tasks never change.
    pub worked_steps: bool,
    /// Training queries take more shapes (added 2026-12-04, for the phrasing gap of the live
    /// evaluation: the planner solved a chain type in its training phrasings and failed it in
    /// the held-apart ones): more train-only phrasings for the date, calendar, to-do and
    /// population families, a greeting or closing around some queries, more "N days before"
    /// tasks, and a two-part date question that may ask for the weekday first, whose
    /// trajectory then serves the parts in the order the query asks them. Off, a seed gives
    /// the files it gave before; test tasks never use any of it.
    pub paraphrase: bool,
    /// Validation tasks to write (added 2026-12-04), for choosing checkpoints without looking
    /// at the test tasks: drawn after the test tasks (so a seed's test tasks stay the same),
    /// with training values, and queries from a held-out part of the train-only phrasings
    /// (every third of each family's list, from the second), which training then never uses;
    /// families without train-only phrasings ask in training phrasings (never a training
    /// query itself). With 0, a seed gives the files it gave before.
    pub valid: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            train: 3000,
            test: 200,
            all_tools_share: 0.5,
            extra_phrasings: false,
            plan_parts: false,
            worked_steps: false,
            paraphrase: false,
            valid: 0,
        }
    }
}

/// The result of a synthesis run.
#[derive(Debug, Clone)]
pub struct SynthOutput {
    /// Training trajectories as α-UMi conversations.
    pub train: Vec<Conversation>,
    /// Kind of each training trajectory (same order as `train`).
    pub train_kinds: Vec<TaskKind>,
    /// Test tasks with their expected facts.
    pub test: Vec<LiveTask>,
    /// Validation tasks ([`SynthConfig::valid`]) with their expected facts.
    pub valid: Vec<LiveTask>,
    /// The reference trajectory of each test task (same order), for static evaluation.
    pub test_gold: Vec<Conversation>,
}

/// What a task family produced besides the trajectory's steps.
pub(crate) struct TaskOutcome {
    pub query: String,
    pub kind: TaskKind,
    pub expected: Vec<String>,
}

/// A task being played against a live demo server: its steps so far and the tools it used.
pub(crate) struct Session {
    pub rng: SmallRng,
    pub split: Split,
    /// [`SynthConfig::extra_phrasings`].
    extra_phrasings: bool,
    /// [`SynthConfig::plan_parts`].
    plan_parts: bool,
    /// [`SynthConfig::worked_steps`].
    worked_steps: bool,
    /// [`SynthConfig::paraphrase`].
    paraphrase: bool,
    /// A validation task ([`SynthConfig::valid`]): training values, held-out phrasings.
    validation: bool,
    /// Training tasks leave the validation phrasings alone ([`SynthConfig::valid`] > 0).
    hold_valid: bool,
    tools: HttpTools,
    steps: Vec<Step>,
    used: Vec<String>,
    final_answer: Option<String>,
}

/// A tool's answer: the `response` object on success, the tool's error message otherwise.
pub(crate) type ToolAnswer = Result<Value, String>;

impl Session {
    /// A planner step `thought … Next: caller.`, the caller's action and the live observation.
    ///
    /// # Errors
    ///
    /// The tool's error message (the step is still recorded, as the agent records it).
    pub fn call(&mut self, thought: &str, name: &str, args: Value) -> ToolAnswer {
        let action = Action {
            name: name.to_string(),
            input: python_json_dumps(&args),
        };
        let raw = pollster::block_on(self.tools.call(&action)).0;
        let observation = truncate_observation(&raw, crate::synth::MAX_OBSERVATION_CHARS);
        self.steps.push(Step {
            rationale: Rationale(thought.to_string()),
            next: Next::Caller,
            planner_text: format!("{thought} {}", Next::Caller.marker()),
            action: Some(action),
            observation: Some(Observation(observation)),
        });
        self.used.push(name.to_string());
        read_answer(&raw)
    }

    /// A planner step `thought … Next: conclusion.` and the summarizer's answer.
    pub fn conclude(&mut self, thought: &str, answer: &str) {
        self.steps.push(Step {
            rationale: Rationale(thought.to_string()),
            next: Next::Conclusion,
            planner_text: format!("{thought} {}", Next::Conclusion.marker()),
            action: None,
            observation: None,
        });
        self.final_answer = Some(answer.to_string());
    }

    /// A planner step `thought … Next: give up.`.
    pub fn give_up(&mut self, thought: &str) {
        self.steps.push(Step {
            rationale: Rationale(thought.to_string()),
            next: Next::GiveUp,
            planner_text: format!("{thought} {}", Next::GiveUp.marker()),
            action: None,
            observation: None,
        });
    }

    /// One of `items`, among those the split owns (see [`values::pick`]).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        values::pick(&mut self.rng, self.split, items)
    }

    /// A query phrasing: one of `items` as [`Session::pick`] picks it, or, for a training task
    /// with [`SynthConfig::extra_phrasings`], one of the training part of `items` and
    /// `train_only` together. Test tasks draw exactly as [`Session::pick`] does.
    pub fn pick_phrasing(
        &mut self,
        items: &[&'static str],
        train_only: &[&'static str],
    ) -> &'static str {
        if let Some(held) = self.validation_phrasing(train_only) {
            return held;
        }
        if self.split == Split::Test || !self.extra_phrasings || train_only.is_empty() {
            return self.pick(items);
        }
        self.pick_training_phrasing(items, train_only, &[])
    }

    /// One of the training part of `items` (all of a list shorter than 4), the train-only
    /// phrasings training may use ([`Session::training_part`]) and `more`, drawn uniformly.
    fn pick_training_phrasing(
        &mut self,
        items: &[&'static str],
        train_only: &[&'static str],
        more: &[&'static str],
    ) -> &'static str {
        let pool: Vec<&'static str> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| items.len() < 4 || Split::Train.owns(*i))
            .map(|(_, t)| *t)
            .chain(self.training_part(train_only))
            .chain(more.iter().copied())
            .collect();
        pool[self.rng.random_range(0..pool.len())]
    }

    /// Whether item `i` of a train-only list of `len` phrasings is held out for validation
    /// ([`SynthConfig::valid`]): every third from the second, in lists of at least two.
    fn held_for_validation(i: usize, len: usize) -> bool {
        len >= 2 && i % 3 == 1
    }

    /// For a validation task, one of the held-out train-only phrasings (`None` for other
    /// tasks, or when the list holds none out).
    fn validation_phrasing(&mut self, train_only: &[&'static str]) -> Option<&'static str> {
        if !self.validation {
            return None;
        }
        let held: Vec<&'static str> = train_only
            .iter()
            .enumerate()
            .filter(|(i, _)| Self::held_for_validation(*i, train_only.len()))
            .map(|(_, t)| *t)
            .collect();
        (!held.is_empty()).then(|| held[self.rng.random_range(0..held.len())])
    }

    /// The train-only phrasings training may use: all of them, or, with validation tasks
    /// ([`SynthConfig::valid`]), those not held out for them.
    fn training_part(&self, train_only: &[&'static str]) -> Vec<&'static str> {
        train_only
            .iter()
            .enumerate()
            .filter(|(i, _)| !(self.hold_valid && Self::held_for_validation(*i, train_only.len())))
            .map(|(_, t)| *t)
            .collect()
    }

    /// Whether this task takes the extra shapes of [`SynthConfig::paraphrase`] (a training
    /// task with the option on).
    pub fn varied(&self) -> bool {
        self.paraphrase && self.split == Split::Train && !self.validation
    }

    /// A query phrasing as [`Session::pick_phrasing`] picks it, or, for a task that is
    /// [`Session::varied`], one of the training part of `items`, `train_only` and `more`
    /// together.
    pub fn pick_phrasing_more(
        &mut self,
        items: &[&'static str],
        train_only: &[&'static str],
        more: &[&'static str],
    ) -> &'static str {
        if !self.varied() || more.is_empty() {
            return self.pick_phrasing(items, train_only);
        }
        self.pick_training_phrasing(items, train_only, more)
    }

    /// The lead of a planner step in a multi-tool chain: with [`SynthConfig::plan_parts`], for a
    /// training task, one of `plans` filled with `vars` (the query's parts: what is done, what
    /// is left); otherwise `drawn`, the lead as drawn before, with no further random draw, so
    /// a seed without the option gives the files it gave before.
    pub fn plan_lead(
        &mut self,
        drawn: &str,
        plans: &[&'static str],
        vars: &[(&str, String)],
    ) -> String {
        if self.split == Split::Test || !self.plan_parts || plans.is_empty() {
            return drawn.to_string();
        }
        values::fill(self.any(plans), vars)
    }

    /// A planner rationale: with [`SynthConfig::worked_steps`], for a training task, one of
    /// `worked` filled with `vars` (the step worked out); otherwise `drawn`, the rationale as
    /// drawn before, with no further random draw, so a seed without the option gives the files
    /// it gave before.
    pub fn worked(
        &mut self,
        drawn: String,
        worked: &[&'static str],
        vars: &[(&str, String)],
    ) -> String {
        if self.split == Split::Test || !self.worked_steps || worked.is_empty() {
            return drawn;
        }
        values::fill(self.any(worked), vars)
    }

    /// One of `items`, whatever the split (for rationale and answer wording).
    pub fn any<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }
}

/// Observations are truncated to this many characters, as the agent's default
/// (`AgentConfig::max_observation_chars`, ToolBench's 1024).
pub const MAX_OBSERVATION_CHARS: usize = 1024;

/// Reads what [`HttpTools`] returned from the demo server: `{"error": "", "response": …}` on
/// success, `{"error": "HTTP 400", "response": "<the server's body>"}` on a failure.
fn read_answer(raw: &str) -> ToolAnswer {
    let outer: Value = serde_json::from_str(raw)
        .map_err(|_| format!("not JSON: {}", truncate_observation(raw, 200)))?;
    let error = outer.get("error").and_then(Value::as_str).unwrap_or("");
    if error.is_empty() {
        return Ok(outer.get("response").cloned().unwrap_or(Value::Null));
    }
    let inner = outer
        .get("response")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let message = inner
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or(error);
    Err(message.to_string())
}

/// The demo server the generator plays its tasks against: started once, its state emptied
/// before every task (so each task meets a fresh server's answers, ids from 1), stopped and its
/// state file removed on drop. One server for all tasks rather than one per task: every
/// `tiny_http` server leaves threads behind for seconds after it stops, which thousands of
/// tasks turned into tens of thousands of threads.
struct DemoServer {
    handle: Option<ServerHandle>,
    state: PathBuf,
    specs: Vec<ToolSpec>,
}

impl DemoServer {
    fn start() -> Result<Self, String> {
        let state = std::env::temp_dir().join(format!(
            "umi-synth-{}-{}.json",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        remove_state(&state);
        let handle = serve("127.0.0.1:0", &state)?;
        let docs = tool_docs(&handle.url).to_string();
        let specs = load_tool_specs(&docs, &handle.url).map_err(|e| e.to_string())?;
        Ok(Self {
            handle: Some(handle),
            state,
            specs,
        })
    }

    /// Empties the server's state for the next task.
    fn reset(&self) -> Result<(), String> {
        match &self.handle {
            Some(h) => h.reset_state(),
            None => Ok(()),
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
        remove_state(&self.state);
    }
}

/// Plays one task of `kind` (or a random kind) for `split` with a generator seeded by `seed`.
fn play(
    seed: u64,
    index: usize,
    (split, validation): (Split, bool),
    kind: TaskKind,
    config: &SynthConfig,
    server: &DemoServer,
) -> Result<(TaskOutcome, Trajectory, Vec<String>, Vec<ToolSpec>), String> {
    server.reset()?;
    let mut session = Session {
        rng: SmallRng::seed_from_u64(seed),
        split,
        extra_phrasings: config.extra_phrasings,
        plan_parts: config.plan_parts,
        worked_steps: config.worked_steps,
        paraphrase: config.paraphrase,
        validation,
        hold_valid: config.valid > 0,
        tools: HttpTools::new(server.specs.clone(), Duration::from_secs(10)),
        steps: Vec::new(),
        used: Vec::new(),
        final_answer: None,
    };
    let mut outcome = tasks::play(&mut session, kind)?;
    if session.varied() && session.rng.random_bool(0.35) {
        outcome.query = frame(&mut session.rng, &outcome.query);
    }
    let trajectory = Trajectory {
        query: outcome.query.clone(),
        steps: std::mem::take(&mut session.steps),
        final_answer: session.final_answer.take().map(FinalAnswer),
    };
    let ends_right = match (kind, trajectory.steps.last().map(|s| s.next)) {
        (TaskKind::GiveUp, Some(Next::GiveUp)) => true,
        (TaskKind::GiveUp, _) => false,
        (_, Some(Next::Conclusion)) => trajectory.final_answer.is_some(),
        _ => false,
    };
    if !ends_right {
        return Err(format!(
            "task {index} ({}) did not end as its kind requires",
            kind.as_str()
        ));
    }
    Ok((outcome, trajectory, session.used, server.specs.clone()))
}

/// `query` with a greeting before it, a closing after it, or both ([`SynthConfig::paraphrase`]):
/// words a person adds that change nothing about the task.
fn frame(rng: &mut SmallRng, query: &str) -> String {
    const OPENINGS: [&str; 8] = [
        "Quick question: ",
        "Hi! ",
        "Hello! ",
        "Please help me with this. ",
        "I have a question. ",
        "Could you help? ",
        "Hey there. ",
        "For my planning: ",
    ];
    const CLOSINGS: [&str; 5] = [
        " Thanks!",
        " Thank you.",
        " Please be quick.",
        " I need this today.",
        " Thanks in advance.",
    ];
    let (open, close) = match rng.random_range(0..3) {
        0 => (OPENINGS[rng.random_range(0..OPENINGS.len())], ""),
        1 => ("", CLOSINGS[rng.random_range(0..CLOSINGS.len())]),
        _ => (
            OPENINGS[rng.random_range(0..OPENINGS.len())],
            CLOSINGS[rng.random_range(0..CLOSINGS.len())],
        ),
    };
    format!("{open}{query}{close}")
}

/// The tool docs a prompt lists: all of them, or the `used` ones plus 2–6 others, in the
/// server's order.
fn prompt_tools(
    rng: &mut SmallRng,
    specs: &[ToolSpec],
    used: &[String],
    all: bool,
) -> Vec<ToolDoc> {
    if all {
        return specs.iter().map(ToolSpec::doc).collect();
    }
    let mut others: Vec<&ToolSpec> = specs.iter().filter(|s| !used.contains(&s.name)).collect();
    others.shuffle(rng);
    let extra = rng.random_range(2..=6).min(others.len());
    let keep: Vec<&str> = others[..extra].iter().map(|s| s.name.as_str()).collect();
    specs
        .iter()
        .filter(|s| used.contains(&s.name) || keep.contains(&s.name.as_str()))
        .map(ToolSpec::doc)
        .collect()
}

/// The live task of a played test or validation trajectory: id `{prefix}-{j + 1:04}`, the
/// query and expected facts of `outcome`, the tools it `used`.
fn live_task(prefix: &str, j: usize, outcome: TaskOutcome, used: Vec<String>) -> LiveTask {
    LiveTask {
        id: format!("{prefix}-{:04}", j + 1),
        kind: outcome.kind,
        query: outcome.query,
        expected: outcome.expected,
        give_up: outcome.kind == TaskKind::GiveUp,
        tools: used,
    }
}

/// Writes `config.train` trajectories, `config.test` test tasks and `config.valid` validation
/// tasks, calling `progress(done, total)` after each.
///
/// Kinds are mixed 40 % one-tool, 30 % multi-tool, 15 % error-recovery and 15 % give-up, in
/// both parts.
///
/// # Errors
///
/// A message when the demo server cannot start or a task family produced a trajectory that
/// does not end as its kind requires (a bug in the generator, never silently skipped).
pub fn synthesize(
    config: &SynthConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<SynthOutput, String> {
    let total = config.train + config.test + config.valid;
    // Deterministic proportions: of every 20 tasks, 8 one-tool, 6 multi-tool, 3
    // error-recovery and 3 give-up.
    let kind_of = |j: usize| match j % 20 {
        0..=7 => TaskKind::OneTool,
        8..=13 => TaskKind::MultiTool,
        14..=16 => TaskKind::ErrorRecovery,
        _ => TaskKind::GiveUp,
    };
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut out = SynthOutput {
        train: Vec::with_capacity(config.train),
        train_kinds: Vec::with_capacity(config.train),
        test: Vec::with_capacity(config.test),
        test_gold: Vec::with_capacity(config.test),
        valid: Vec::with_capacity(config.valid),
    };
    let mut seen = std::collections::HashSet::new();
    let server = DemoServer::start()?;
    for i in 0..total {
        let (split, validation, j) = if i < config.train {
            (Split::Train, false, i)
        } else if i < config.train + config.test {
            (Split::Test, false, i - config.train)
        } else {
            (Split::Train, true, i - config.train - config.test)
        };
        let kind = kind_of(j);
        let all = split == Split::Test || validation || rng.random_bool(config.all_tools_share);
        // A query asked before is drawn again (small value pools repeat), so no two tasks
        // and no test and training task share a query.
        let mut tries = 0;
        let (outcome, trajectory, used, specs) = loop {
            let seed: u64 = rng.random();
            let played = play(seed, i, (split, validation), kind, config, &server)?;
            tries += 1;
            if seen.insert(played.0.query.clone()) || tries >= 50 {
                break played;
            }
        };
        let tools = prompt_tools(&mut rng, &specs, &used, all);
        let conversation = trajectory.to_conversation(&tools);
        match split {
            Split::Train if validation => out.valid.push(live_task("valid", j, outcome, used)),
            Split::Train => {
                out.train.push(conversation);
                out.train_kinds.push(outcome.kind);
            }
            Split::Test => {
                out.test.push(live_task("test", j, outcome, used));
                out.test_gold.push(conversation);
            }
        }
        progress(i + 1, total);
    }
    Ok(out)
}

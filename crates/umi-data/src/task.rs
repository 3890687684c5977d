//! Live tasks: a query, what a correct answer must state, and what kind of task it is. `umi data
//! synth` (umi-tools) writes them as JSON lines; `umi eval live` (umi-eval) reads and scores
//! them. The vocabulary lives here so both use one definition.

use serde::{Deserialize, Serialize};

/// The kinds of task `umi data synth` writes (`"kind"`, kebab-case in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// One tool call answers the query.
    OneTool,
    /// Several tool calls, each depending on what came before.
    MultiTool,
    /// A tool call fails on the way (bad arguments, unknown value) and the agent must recover.
    ErrorRecovery,
    /// No tool can do it: the right end is `Next: give up.`.
    GiveUp,
}

impl TaskKind {
    /// The kinds, in report order.
    pub const ALL: [TaskKind; 4] = [
        TaskKind::OneTool,
        TaskKind::MultiTool,
        TaskKind::ErrorRecovery,
        TaskKind::GiveUp,
    ];

    /// The name as the task files write it (`"one-tool"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::OneTool => "one-tool",
            TaskKind::MultiTool => "multi-tool",
            TaskKind::ErrorRecovery => "error-recovery",
            TaskKind::GiveUp => "give-up",
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task: a line of the task file,
/// `{"id", "kind", "query", "expected": [facts], "give_up": bool, "tools": [names]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveTask {
    /// Unique within the file; results are matched to tasks by it.
    pub id: String,
    /// What the task tests.
    pub kind: TaskKind,
    /// The user's query.
    pub query: String,
    /// Facts the final answer must contain (`umi_eval::live::answer_contains` decides);
    /// empty for give-up tasks.
    #[serde(default)]
    pub expected: Vec<String>,
    /// No tool can do the task: the right behaviour is the planner's `Next: give up.`.
    #[serde(default)]
    pub give_up: bool,
    /// The tools a correct run uses (informational, not scored).
    #[serde(default)]
    pub tools: Vec<String>,
}

impl LiveTask {
    /// Why the task is inconsistent, if it is: an empty id, query or fact, `give_up` not
    /// matching kind `give-up`, or facts on a give-up task.
    pub fn inconsistency(&self) -> Option<String> {
        if self.id.trim().is_empty() {
            return Some("the id is empty".into());
        }
        if self.query.trim().is_empty() {
            return Some(format!("task {}: the query is empty", self.id));
        }
        if self.give_up != (self.kind == TaskKind::GiveUp) {
            return Some(format!(
                "task {}: kind {} with give_up {} (give_up is true exactly for kind give-up)",
                self.id, self.kind, self.give_up
            ));
        }
        if self.give_up && !self.expected.is_empty() {
            return Some(format!(
                "task {}: a give-up task expects no facts, got {:?}",
                self.id, self.expected
            ));
        }
        if self.expected.iter().any(|f| f.trim().is_empty()) {
            return Some(format!("task {}: an expected fact is empty", self.id));
        }
        None
    }
}

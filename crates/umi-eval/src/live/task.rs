//! Tasks: the lines `umi data synth` writes, read and checked.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Error, Result};

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
    /// Facts the final answer must contain (see [`answer_contains`](super::answer_contains));
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
    /// Why the task is inconsistent, if it is.
    fn problem(&self) -> Option<String> {
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

/// Reads a task file: one [`LiveTask`] JSON object per line (blank lines are skipped).
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read; [`Error::Line`] naming the file and line for a
/// line that is not a task (bad JSON, a missing field, an unknown `kind`), an inconsistent task
/// (`give_up` not matching kind `give-up`, facts on a give-up task, an empty fact) or an id seen
/// before; [`Error::NoTasks`] for a file without tasks.
pub fn read_tasks(path: &Path) -> Result<Vec<LiveTask>> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    tasks_from_text(&text, path)
}

fn tasks_from_text(text: &str, path: &Path) -> Result<Vec<LiveTask>> {
    let fail = |line: usize, message: String| Error::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut tasks: Vec<LiveTask> = Vec::new();
    let mut lines_of: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let task: LiveTask = serde_json::from_str(line).map_err(|e| fail(n + 1, json_error(&e)))?;
        if let Some(problem) = task.problem() {
            return Err(fail(n + 1, problem));
        }
        if let Some(i) = tasks.iter().position(|t| t.id == task.id) {
            return Err(fail(
                n + 1,
                format!("id {} was already used on line {}", task.id, lines_of[i]),
            ));
        }
        tasks.push(task);
        lines_of.push(n + 1);
    }
    if tasks.is_empty() {
        return Err(Error::NoTasks(path.to_path_buf()));
    }
    Ok(tasks)
}

/// A JSON error within one line: the message and its column (serde's "at line 1" dropped).
pub(super) fn json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let message = message
        .rfind(" at line ")
        .map_or(message.as_str(), |at| &message[..at]);
    format!("{message} (column {})", e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_files_fail_naming_the_line() {
        let path = Path::new("tasks.jsonl");
        let ok = r#"{"id": "a", "kind": "one-tool", "query": "What is 100 USD in EUR?", "expected": ["92.21"], "give_up": false, "tools": ["convert_currency"]}"#;
        let tasks = tasks_from_text(&format!("{ok}\n\n"), path).unwrap();
        assert_eq!((tasks.len(), tasks[0].kind), (1, TaskKind::OneTool));
        let err = |text: &str| tasks_from_text(text, path).unwrap_err().to_string();
        let e = err(&format!(
            "{ok}\n{{\"id\": \"b\", \"kind\": \"two-tool\", \"query\": \"q\"}}"
        ));
        assert!(
            e.starts_with("tasks.jsonl line 2: unknown variant `two-tool`"),
            "{e}"
        );
        assert!(e.contains("(column ") && !e.contains("at line"), "{e}");
        let e = err(&format!("{ok}\n\n{ok}"));
        assert!(
            e.contains("line 3") && e.contains("already used on line 1"),
            "{e}"
        );
        let e = err(r#"{"id": "g", "kind": "give-up", "query": "q", "give_up": false}"#);
        assert!(e.contains("line 1") && e.contains("give_up"), "{e}");
        let e = err(
            r#"{"id": "g", "kind": "give-up", "query": "q", "give_up": true, "expected": ["x"]}"#,
        );
        assert!(e.contains("expects no facts"), "{e}");
        let e = err(r#"{"id": "a", "kind": "one-tool", "expected": ["x"]}"#);
        assert!(e.contains("missing field `query`"), "{e}");
        assert!(err("\n\n").contains("holds no tasks"));
    }
}

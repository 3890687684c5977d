//! Tasks: the lines `umi data synth` writes, read and checked.

use std::path::Path;

pub use umi_data::task::{LiveTask, TaskKind};

use super::{Error, Result};

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
        if let Some(problem) = task.inconsistency() {
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

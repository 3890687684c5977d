//! How actions reach tools (the trait the agent calls). Failures of tools are observations, never errors: the planner sees
//! them and can retry, call something else or give up.

use umi_data::{Action, Observation};

/// Runs actions.
#[allow(async_fn_in_trait)] // used with concrete types; the browser's futures are not Send
pub trait ToolExecutor {
    /// Names of the tools this executor knows.
    fn tool_names(&self) -> Vec<String>;

    /// Executes `action` and returns what the tool answered. Unknown names, bad arguments,
    /// timeouts and HTTP errors come back as observations.
    async fn call(&self, action: &Action) -> Observation;
}

/// The observation for a tool name that does not exist (ToolBench's
/// `invalid_hallucination_function_name`).
pub fn hallucination_observation(name: &str, known: &[String]) -> Observation {
    Observation::error(format!(
        "invalid_hallucination_function_name: no tool named {name:?}; available: {}",
        known.join(", ")
    ))
}

/// Truncates an observation to `max_chars` characters (ToolBench's `truncate` compression,
/// 1024 by default), marking the cut.
pub fn truncate_observation(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_observation("héllo", 3), "hél...");
        assert_eq!(truncate_observation("héllo", 5), "héllo");
    }

    #[test]
    fn hallucinations_name_the_tool_and_the_alternatives() {
        let o = hallucination_observation("fly", &["walk".into(), "run".into()]);
        assert!(
            o.0.contains("invalid_hallucination_function_name")
                && o.0.contains("\\\"fly\\\"")
                && o.0.contains("walk, run"),
            "{}",
            o.0
        );
    }
}

//! The objective checks of a planner candidate (psrlm-design.md §2.8, "execution and validity
//! signals", the planner rules without the caller lookahead): computed for every candidate and
//! always recorded; they steer the choice of best and worst only under `--exec-signal filter`
//! or `tiebreak` ([`crate::ExecSignal`]), a rule of ours, not the paper's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use umi_data::{NoMarkerDefault, parse_planner_output};

/// Why a planner step fails the checks of §2.8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum InvalidStep {
    /// The model wrote no `Next:` marker (the parser supplied one).
    NoMarker,
    /// The rationale repeats the template's format line (`The thought of the next step,
    /// followed by Next: …` or `Next: caller or conclusion`).
    Echo,
    /// The rationale is `none` or has fewer than 3 words.
    Empty,
    /// The step names a tool that is not in the trajectory's list.
    UnlistedTool(String),
}

impl InvalidStep {
    /// The check's name in reports: `no_marker`, `echo`, `empty` or `unlisted_tool`.
    pub fn name(&self) -> &'static str {
        match self {
            InvalidStep::NoMarker => "no_marker",
            InvalidStep::Echo => "echo",
            InvalidStep::Empty => "empty",
            InvalidStep::UnlistedTool(_) => "unlisted_tool",
        }
    }
}

impl std::fmt::Display for InvalidStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidStep::NoMarker => write!(f, "no Next: marker"),
            InvalidStep::Echo => write!(f, "echoes the template's format line"),
            InvalidStep::Empty => write!(f, "empty rationale"),
            InvalidStep::UnlistedTool(name) => write!(f, "names the unlisted tool {name}"),
        }
    }
}

/// The template phrases whose presence marks an echo (§2.8).
const ECHOES: [&str; 2] = [
    "The thought of the next step, followed by Next:",
    "Next: caller or conclusion",
];

/// Whether `c` belongs in a tool name: an ASCII letter or digit, or `_`.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Checks the planner step `step` (as the parser left it: cut after its marker) whose raw
/// output `had_marker` or not, against the trajectory's `tools` (α-UMi tool docs `{"Name",
/// "function", "input"}`), in this order:
/// 1. a `Next:` marker written by the model;
/// 2. no echo of the template's format line;
/// 3. a rationale that is not `none` and has at least 3 words;
/// 4. every tool name it mentions is listed. A name is a word of letters, digits and `_` of the
///    ToolBench form `X_for_Y` (the spec's rule: 0.4 % of gold ToolBench planner turns name an
///    unlisted one); where no listed tool has that form (umi's demo tools, `convert_units`), any
///    word with an `_` that is neither a listed tool nor one of their input keys (ours: what
///    `umi reward eft`'s `hallucinated_name` negatives fabricate, `convert_rates`).
///
/// # Errors
///
/// The first check that fails.
pub fn check_planner_step(
    step: &str,
    had_marker: bool,
    tools: &[Map<String, Value>],
) -> Result<(), InvalidStep> {
    if !had_marker {
        return Err(InvalidStep::NoMarker);
    }
    if ECHOES.iter().any(|e| step.contains(e)) {
        return Err(InvalidStep::Echo);
    }
    let rationale = parse_planner_output(step, NoMarkerDefault::Caller)
        .rationale
        .0;
    if rationale.trim() == "none" || rationale.split_whitespace().count() < 3 {
        return Err(InvalidStep::Empty);
    }
    let names: Vec<&str> = tools.iter().filter_map(umi_data::tool_name).collect();
    let toolbench_names = names.iter().any(|n| is_for_name(n));
    let keys: Vec<&str> = tools
        .iter()
        .filter_map(|t| t.get("input").and_then(Value::as_object))
        .flat_map(|input| input.keys().map(String::as_str))
        .collect();
    for word in step.split(|c: char| !is_name_char(c)) {
        let mentioned = if toolbench_names {
            is_for_name(word)
        } else {
            word.trim_matches('_').contains('_') && !keys.contains(&word)
        };
        if mentioned && !names.contains(&word) {
            return Err(InvalidStep::UnlistedTool(word.to_string()));
        }
    }
    Ok(())
}

/// Whether `word` has ToolBench's `X_for_Y` form (something before and after `_for_`).
pub(crate) fn is_for_name(word: &str) -> bool {
    word.find("_for_")
        .is_some_and(|at| at > 0 && at + "_for_".len() < word.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, keys: &[&str]) -> Map<String, Value> {
        let input: Map<String, Value> = keys
            .iter()
            .map(|k| (k.to_string(), json!("string")))
            .collect();
        json!({"Name": name, "function": "f", "input": input})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn each_rule_rejects_what_it_names() {
        let demo = [
            tool("convert_units", &["value", "from", "to"]),
            tool("add_days", &["date", "days"]),
        ];
        let check = |step: &str, marker: bool| check_planner_step(step, marker, &demo);
        assert_eq!(
            check("I will call convert_units with 3 km. Next: caller.", true),
            Ok(())
        );
        assert_eq!(
            check(
                "Add the days to start_date with add_days. Next: caller.",
                true
            ),
            Err(InvalidStep::UnlistedTool("start_date".into())),
            "an unlisted key is not let through"
        );
        assert_eq!(
            check("Add 3 days to the date with add_days. Next: caller.", true),
            Ok(()),
            "listed tool, no other snake_case word"
        );
        assert_eq!(
            check(
                "I will convert the value with convert_units from km. Next: caller.",
                true
            ),
            Ok(())
        );
        assert_eq!(
            check("I will call convert_units with 3 km. Next: caller.", false),
            Err(InvalidStep::NoMarker)
        );
        assert_eq!(
            check(
                "The thought of the next step, followed by Next: caller.",
                true
            ),
            Err(InvalidStep::Echo)
        );
        assert_eq!(check("none Next: give up.", true), Err(InvalidStep::Empty));
        assert_eq!(
            check("Call it. Next: caller.", true),
            Err(InvalidStep::Empty)
        );
        assert_eq!(
            check("I will call convert_rates for 3 km. Next: caller.", true),
            Err(InvalidStep::UnlistedTool("convert_rates".into()))
        );
        // a parameter name of a listed tool is not a tool mention
        assert_eq!(
            check(
                "Use add_days with days set to 3 and date given. Next: caller.",
                true
            ),
            Ok(())
        );
    }

    #[test]
    fn toolbench_tools_check_x_for_y_names_only() {
        let tools = [
            tool("search_for_books", &["title"]),
            tool("get_weather_for_sky", &[]),
        ];
        let check = |step: &str| check_planner_step(step, true, &tools);
        assert_eq!(
            check("I call search_for_books with the title. Next: caller."),
            Ok(())
        );
        assert_eq!(
            check("I call search_for_movies with the title. Next: caller."),
            Err(InvalidStep::UnlistedTool("search_for_movies".into()))
        );
        assert_eq!(
            check("The user_id is known, so I call get_weather_for_sky. Next: caller."),
            Ok(()),
            "snake_case words that are not X_for_Y are not tool names here"
        );
        assert!(!is_for_name("_for_x") && !is_for_name("x_for_") && is_for_name("a_for_b"));
    }
}

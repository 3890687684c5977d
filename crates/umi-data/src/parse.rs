//! The α-UMi text protocol, read: model outputs parsed as the reference pipelines parse them;
//! nothing here fails — an output that says nothing useful still becomes a value the agent can
//! record. Its markers are written in one place: [`END_OF_TURN`], [`ACTION`], [`ACTION_INPUT`]
//! here and the `Next:` markers with their priority in [`Next`]; `prompt` writes them.

use crate::conversation::{Action, Next, Rationale};

impl Action {
    /// The caller's text for this action (`Action: X\nAction Input: Y`).
    pub fn to_text(&self) -> String {
        format!("{ACTION} {}\n{ACTION_INPUT} {}", self.name, self.input)
    }
}

/// The end of every turn but an observation in an α-UMi history (`prompt_lib.py`'s `</s>`);
/// generation stops there.
pub const END_OF_TURN: &str = "</s>";

/// The caller's tool-name line prefix.
pub const ACTION: &str = "Action:";

/// The caller's arguments line prefix.
pub const ACTION_INPUT: &str = "Action Input:";

/// Where a planner output without any `Next:` marker goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoMarkerDefault {
    /// To the caller, as GLPFT's `infer_pipeline.py` and ToolBench-multiLLM do.
    #[default]
    Caller,
    /// To the summarizer, as ModelScope-Agent's `AlphaUmi` does.
    Summarizer,
}

/// A planner output after the reference's cut rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerOutput {
    /// The thought, marker removed and whitespace trimmed.
    pub rationale: Rationale,
    /// The decision.
    pub next: Next,
    /// The text as it goes into the history and the caller's `{thought}`: cut right after the
    /// marker, with `Next: caller.` / `Next: conclusion.` appended when the model wrote none.
    pub text: String,
    /// Whether the model wrote a marker itself.
    pub had_marker: bool,
}

/// Parses a planner generation (GLPFT `infer_pipeline.py`): a leading `": "` is stripped, an
/// empty output (or `"."`, `","`) becomes `"none"`; then `Next: give up.` wins over
/// `Next: conclusion.`, which wins over `Next: caller.`; the text is cut after the marker found.
pub fn parse_planner_output(raw: &str, default: NoMarkerDefault) -> PlannerOutput {
    let mut text = raw.strip_prefix(": ").unwrap_or(raw).to_string();
    if matches!(text.trim(), "" | "." | ",") {
        text = "none".to_string();
    }
    let found = Next::find(&text);
    let (next, text, had_marker) = match found {
        Some((next, at)) => (next, text[..at + next.marker().len()].to_string(), true),
        None => {
            let next = match default {
                NoMarkerDefault::Caller => Next::Caller,
                NoMarkerDefault::Summarizer => Next::Conclusion,
            };
            (next, format!("{text}{}", next.marker()), false)
        }
    };
    let rationale = text[..text.len() - next.marker().len()].trim().to_string();
    PlannerOutput {
        rationale: Rationale(rationale),
        next,
        text,
        had_marker,
    }
}

/// Parses a caller generation (`evaluate-multi_agent.py`'s `parse_output`): the input is the
/// text after the last `Action Input:` (trimmed; `{}` when absent), the name the text between
/// the last `Action:` and `Action Input:` (trimmed). `None` when there is no `Action:` at all.
pub fn parse_action(raw: &str) -> Option<Action> {
    let (before_input, input) = match raw.rfind(ACTION_INPUT) {
        Some(at) => (
            &raw[..at],
            raw[at + ACTION_INPUT.len()..].trim().to_string(),
        ),
        None => (raw, "{}".to_string()),
    };
    let name_start = before_input.rfind(ACTION)? + ACTION.len();
    let name = before_input[name_start..].trim().to_string();
    Some(Action { name, input })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_cut_in_the_reference_order() {
        let out = parse_planner_output(
            "I will call it.\n Next: caller. and then more",
            NoMarkerDefault::Caller,
        );
        assert_eq!(
            (out.next, out.text.as_str(), out.had_marker),
            (Next::Caller, "I will call it.\n Next: caller.", true)
        );
        assert_eq!(out.rationale.0, "I will call it.");
        // give up beats conclusion beats caller, wherever they appear
        let out = parse_planner_output(
            "Next: caller. Next: conclusion. Next: give up.",
            NoMarkerDefault::Caller,
        );
        assert_eq!(out.next, Next::GiveUp);
        assert_eq!(out.text, "Next: caller. Next: conclusion. Next: give up.");
        let out = parse_planner_output(": Done. Next: conclusion.", NoMarkerDefault::Caller);
        assert_eq!(
            (out.next, out.rationale.0.as_str()),
            (Next::Conclusion, "Done.")
        );
    }

    #[test]
    fn no_marker_goes_to_the_configured_role() {
        let out = parse_planner_output("Let me think", NoMarkerDefault::Caller);
        assert_eq!(
            (out.next, out.text.as_str(), out.had_marker),
            (Next::Caller, "Let me thinkNext: caller.", false)
        );
        let out = parse_planner_output("Let me think", NoMarkerDefault::Summarizer);
        assert_eq!(out.next, Next::Conclusion);
        let out = parse_planner_output(" . ", NoMarkerDefault::Caller);
        assert_eq!(out.rationale.0, "none");
    }

    #[test]
    fn actions_parse_like_the_evaluator() {
        let a = parse_action("Action: get_weather\nAction Input: {\"city\": \"Paris\"}\n").unwrap();
        assert_eq!(
            (a.name.as_str(), a.input.as_str()),
            ("get_weather", "{\"city\": \"Paris\"}")
        );
        assert_eq!(a.input_json().unwrap()["city"], "Paris");
        let a = parse_action("Action: list_all").unwrap();
        assert_eq!((a.name.as_str(), a.input.as_str()), ("list_all", "{}"));
        let a = parse_action("Action: a\nAction Input: {}\nAction: b\nAction Input: {\"x\": 1}")
            .unwrap();
        assert_eq!((a.name.as_str(), a.input.as_str()), ("b", "{\"x\": 1}"));
        assert!(parse_action("I don't know").is_none());
        let a = parse_action("Action: f\nAction Input: not json").unwrap();
        assert!(a.input_json().is_none());
    }
}

//! One decision of the agent from a given history: the planner (or backbone) decides, and the
//! caller or summarizer completes the decision. The live loop ([`crate::Agent::run`]) and static
//! evaluation (`umi eval`, every gold-history decision point) both go through here, so the model
//! is prompted and parsed the same way in both.

use serde_json::{Map, Value};
use umi_data::parse::{NoMarkerDefault, PlannerOutput, parse_action, parse_planner_output};
use umi_data::prompt::{PromptSet, backbone_turns, history};
use umi_data::{Action, Next, Rationale, Role, Speaker, Turn};

use crate::generator::{Generator, GeneratorError};

/// The end-of-turn marker α-UMi histories use; generation stops there.
pub const STOP: &str = "</s>";

/// What one decision produced (before any tool runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The planner's output after the reference's cut rules (in single mode: the backbone's
    /// thought with the implied marker).
    pub planned: PlannerOutput,
    /// The caller's (or backbone's) raw text, for calls.
    pub call_text: Option<String>,
    /// The parsed action, for calls (`None` when no `Action:` could be read).
    pub action: Option<Action>,
    /// The final answer, for conclusions (trimmed).
    pub answer: Option<String>,
}

impl Decision {
    /// The prediction string `evaluate-multi_agent.py` scores (`umi_eval::parse_output`):
    /// `"assistant: " + planner + "</s>caller: " + caller + "</s>"`, or
    /// `"… </s>conclusion: " + answer + "</s>"`, or the planner text alone for a give-up.
    /// Single-mode decisions are rendered in the same form so both modes are scored alike.
    pub fn prediction(&self) -> String {
        let planner = &self.planned.text;
        match self.planned.next {
            Next::GiveUp => planner.clone(),
            Next::Conclusion => format!(
                "assistant: {planner}{STOP}conclusion: {}{STOP}",
                self.answer.as_deref().unwrap_or_default()
            ),
            Next::Caller => {
                let call = match (&self.action, &self.call_text) {
                    (Some(action), _) => action.to_text(),
                    (None, Some(text)) => text.trim().to_string(),
                    (None, None) => String::new(),
                };
                format!("assistant: {planner}{STOP}caller: {call}{STOP}")
            }
        }
    }
}

/// α-UMi (multi-LLM) decision, as GLPFT's `infer_pipeline.py`: the planner sees `turns`; on
/// `Next: caller.` the caller sees the history plus the planner's turn and `{thought}`; on
/// `Next: conclusion.` the summarizer writes the answer; on `Next: give up.` nothing more runs.
///
/// `turns` is the α-UMi history (user, assistant, caller, observation…), as
/// `Trajectory::to_turns` or a reference conversation gives it.
///
/// # Errors
///
/// [`GeneratorError`] when a model cannot run.
pub async fn decide_multi<G: Generator>(
    generator: &mut G,
    set: PromptSet,
    no_marker: NoMarkerDefault,
    tool_docs: &[Map<String, Value>],
    turns: &[Turn],
) -> Result<Decision, GeneratorError> {
    let stop = [STOP.to_string()];
    let prompt = set.input(Role::Planner, tool_docs, &history(turns), "");
    let raw = generator.generate(Role::Planner, &prompt, &stop).await?;
    let planned = parse_planner_output(&raw, no_marker);
    let mut with_plan = turns.to_vec();
    with_plan.push(Turn::new(Speaker::Assistant, planned.text.clone()));
    let mut decision = Decision {
        planned,
        call_text: None,
        action: None,
        answer: None,
    };
    match decision.planned.next {
        Next::GiveUp => {}
        Next::Conclusion => {
            let prompt = set.input(Role::Summarizer, tool_docs, &history(&with_plan), "");
            let answer = generator.generate(Role::Summarizer, &prompt, &stop).await?;
            decision.answer = Some(answer.trim().to_string());
        }
        Next::Caller => {
            let thought = decision.planned.text.clone();
            let prompt = set.input(Role::Caller, tool_docs, &history(&with_plan), &thought);
            let raw = generator.generate(Role::Caller, &prompt, &stop).await?;
            decision.action = parse_action(&raw);
            decision.call_text = Some(raw);
        }
    }
    Ok(decision)
}

/// Single-LLM decision with the backbone prompt (GLPFT stage 1, the paper's Single-LLM row): one
/// generation is `thought + "\nAction: …\nAction Input: …"` or `thought + "\nconclusion: …"`
/// (`"conclusion: give up."` for giving up), as `prepro_backbone.py` writes the targets.
///
/// `turns` is the α-UMi history; it is merged into backbone form here.
///
/// # Errors
///
/// [`GeneratorError`] when the model cannot run.
pub async fn decide_single<G: Generator>(
    generator: &mut G,
    set: PromptSet,
    no_marker: NoMarkerDefault,
    tool_docs: &[Map<String, Value>],
    turns: &[Turn],
) -> Result<Decision, GeneratorError> {
    let turns = backbone_turns(turns);
    let prompt = set.input(Role::Backbone, tool_docs, &history(&turns), "");
    let raw = generator
        .generate(Role::Backbone, &prompt, &[STOP.to_string()])
        .await?;
    let raw = raw.strip_prefix(": ").unwrap_or(&raw).to_string();
    let (thought, next, answer, action, had_marker) = if let Some(at) = raw.rfind("conclusion:") {
        let answer = raw[at + "conclusion:".len()..].trim().to_string();
        let thought = raw[..at].trim().to_string();
        if answer.trim_end_matches('.') == "give up" {
            (thought, Next::GiveUp, None, None, true)
        } else {
            (thought, Next::Conclusion, Some(answer), None, true)
        }
    } else if let Some(action) = parse_action(&raw) {
        let thought = raw[..raw.find("Action:").unwrap_or(0)].trim().to_string();
        (thought, Next::Caller, None, Some(action), true)
    } else {
        match no_marker {
            NoMarkerDefault::Caller => (raw.trim().to_string(), Next::Caller, None, None, false),
            NoMarkerDefault::Summarizer => (
                String::new(),
                Next::Conclusion,
                Some(raw.trim().to_string()),
                None,
                false,
            ),
        }
    };
    Ok(Decision {
        planned: PlannerOutput {
            text: format!("{thought}\n {}", next.marker()),
            rationale: Rationale(thought),
            next,
            had_marker,
        },
        call_text: (next == Next::Caller).then_some(raw),
        action,
        answer,
    })
}

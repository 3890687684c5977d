//! One decision of the agent from a given history: the planner (or backbone) decides, and the
//! caller or summarizer completes the decision. The live loop ([`crate::Agent::run`]) and static
//! evaluation (`umi eval`, every gold-history decision point) both go through here, so the model
//! is prompted and parsed the same way in both.

use umi_data::ToolDoc;
use umi_data::parse::{NoMarkerDefault, PlannerOutput, parse_action, parse_planner_output};
use umi_data::prompt::{PromptSet, backbone_turns, history};
use umi_data::{Action, Next, Rationale, Role, Speaker, Turn};

use crate::agent::AgentEvent;
use crate::generator::{Generator, GeneratorError};

/// The end-of-turn marker α-UMi histories use; generation stops there.
pub const STOP: &str = umi_data::parse::END_OF_TURN;

/// Three models (planner, caller, summarizer) or one (backbone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// α-UMi: planner, caller and summarizer (`evaluate-multi_agent.py`).
    #[default]
    Multi,
    /// Single LLM with the backbone prompt (the paper's baseline, GLPFT stage 1).
    Single,
}

impl AgentMode {
    /// `multi` or `single`, as flags and settings files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentMode::Multi => "multi",
            AgentMode::Single => "single",
        }
    }
}

impl std::str::FromStr for AgentMode {
    type Err = String;

    /// Parses [`AgentMode::as_str`]'s names.
    ///
    /// # Errors
    /// The name and the accepted ones when it is neither.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "multi" => Ok(AgentMode::Multi),
            "single" => Ok(AgentMode::Single),
            other => Err(format!("the mode must be multi or single, not {other:?}")),
        }
    }
}

/// One decision in `mode`: [`decide_multi`] or [`decide_single`].
///
/// # Errors
///
/// [`GeneratorError`] when a model cannot run.
pub async fn decide<G: Generator>(
    generator: &mut G,
    mode: AgentMode,
    set: PromptSet,
    no_marker: NoMarkerDefault,
    tool_docs: &[ToolDoc],
    turns: &[Turn],
    on_event: &mut dyn FnMut(&AgentEvent),
) -> Result<Decision, GeneratorError> {
    match mode {
        AgentMode::Multi => {
            decide_multi(generator, set, no_marker, tool_docs, turns, on_event).await
        }
        AgentMode::Single => {
            decide_single(generator, set, no_marker, tool_docs, turns, on_event).await
        }
    }
}

/// What one decision produced (before any tool runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The planner's output after the reference's cut rules (in single mode: the backbone's
    /// thought with the implied marker).
    pub planned: PlannerOutput,
    /// What the caller or summarizer made of it; always the variant `planned.next` names.
    pub then: Decided,
}

/// The second half of a [`Decision`], one variant per `Next:` marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// `Next: caller.`: the caller's (or backbone's) text and the action read from it (`None`
    /// when it holds no `Action:`).
    Call {
        /// The generation as written.
        raw: String,
        /// The parsed action.
        action: Option<Action>,
    },
    /// `Next: conclusion.`: the summarizer's (or backbone's) final answer, trimmed.
    Conclude {
        /// The answer.
        answer: String,
    },
    /// `Next: give up.`: nothing more runs.
    GiveUp,
}

impl Decided {
    /// The `Next:` marker this outcome follows.
    pub fn next(&self) -> Next {
        match self {
            Decided::Call { .. } => Next::Caller,
            Decided::Conclude { .. } => Next::Conclusion,
            Decided::GiveUp => Next::GiveUp,
        }
    }
}

impl Decision {
    /// The prediction string `evaluate-multi_agent.py` scores (`umi_eval::parse_output`):
    /// `"assistant: " + planner + "</s>caller: " + caller + "</s>"`, or
    /// `"… </s>conclusion: " + answer + "</s>"`, or the planner text alone for a give-up.
    /// Single-mode decisions are rendered in the same form so both modes are scored alike.
    pub fn prediction(&self) -> String {
        let planner = &self.planned.text;
        match &self.then {
            Decided::GiveUp => planner.clone(),
            Decided::Conclude { answer } => {
                format!("assistant: {planner}{STOP}conclusion: {answer}{STOP}")
            }
            Decided::Call { raw, action } => {
                let call = match action {
                    Some(action) => action.to_text(),
                    None => raw.trim().to_string(),
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
    tool_docs: &[ToolDoc],
    turns: &[Turn],
    on_event: &mut dyn FnMut(&AgentEvent),
) -> Result<Decision, GeneratorError> {
    let stop = [STOP.to_string()];
    let prompt = set.input(Role::Planner, tool_docs, &history(turns), "");
    let raw = generator
        .generate_streaming(Role::Planner, &prompt, &stop, on_event)
        .await?;
    let planned = parse_planner_output(&raw, no_marker);
    let mut with_plan = turns.to_vec();
    with_plan.push(Turn::new(Speaker::Assistant, planned.text.clone()));
    let then = match planned.next {
        Next::GiveUp => Decided::GiveUp,
        Next::Conclusion => {
            let prompt = set.input(Role::Summarizer, tool_docs, &history(&with_plan), "");
            let answer = generator
                .generate_streaming(Role::Summarizer, &prompt, &stop, on_event)
                .await?;
            Decided::Conclude {
                answer: answer.trim().to_string(),
            }
        }
        Next::Caller => {
            let prompt = set.input(Role::Caller, tool_docs, &history(&with_plan), &planned.text);
            let raw = generator
                .generate_streaming(Role::Caller, &prompt, &stop, on_event)
                .await?;
            Decided::Call {
                action: parse_action(&raw),
                raw,
            }
        }
    };
    Ok(Decision { planned, then })
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
    tool_docs: &[ToolDoc],
    turns: &[Turn],
    on_event: &mut dyn FnMut(&AgentEvent),
) -> Result<Decision, GeneratorError> {
    let turns = backbone_turns(turns);
    let prompt = set.input(Role::Backbone, tool_docs, &history(&turns), "");
    let raw = generator
        .generate_streaming(Role::Backbone, &prompt, &[STOP.to_string()], on_event)
        .await?;
    let raw = raw.strip_prefix(": ").unwrap_or(&raw).to_string();
    let (thought, then, had_marker) = if let Some(at) = raw.rfind("conclusion:") {
        let answer = raw[at + "conclusion:".len()..].trim().to_string();
        let thought = raw[..at].trim().to_string();
        if answer.trim_end_matches('.') == "give up" {
            (thought, Decided::GiveUp, true)
        } else {
            (thought, Decided::Conclude { answer }, true)
        }
    } else if let Some(action) = parse_action(&raw) {
        let thought = raw[..raw.find(umi_data::parse::ACTION).unwrap_or(0)]
            .trim()
            .to_string();
        let action = Some(action);
        (thought, Decided::Call { raw, action }, true)
    } else {
        match no_marker {
            NoMarkerDefault::Caller => {
                let thought = raw.trim().to_string();
                (thought, Decided::Call { raw, action: None }, false)
            }
            NoMarkerDefault::Summarizer => {
                let answer = raw.trim().to_string();
                (String::new(), Decided::Conclude { answer }, false)
            }
        }
    };
    let next = then.next();
    Ok(Decision {
        planned: PlannerOutput {
            text: format!("{thought}\n {}", next.marker()),
            rationale: Rationale(thought),
            next,
            had_marker,
        },
        then,
    })
}

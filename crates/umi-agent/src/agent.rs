//! The α-UMi loop.

use serde_json::{Map, Value};
use umi_data::parse::{NoMarkerDefault, parse_action, parse_planner_output};
use umi_data::prompt::{PromptSet, backbone_turns, history};
use umi_data::{Action, FinalAnswer, Next, Observation, Rationale, Role, Step, Trajectory, Turn};

use crate::generator::{Generator, GeneratorError};
use umi_tools::{ToolExecutor, hallucination_observation, truncate_observation};

/// Three models (planner, caller, summarizer) or one (backbone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentMode {
    /// α-UMi: planner, caller and summarizer.
    #[default]
    Multi,
    /// Single LLM with the backbone prompt (the paper's baseline, GLPFT stage 1).
    Single,
}

/// Settings of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Planner decisions before the run stops with [`StopReason::MaxSteps`].
    pub max_steps: usize,
    /// Multi-LLM or single-LLM.
    pub mode: AgentMode,
    /// Template family.
    pub prompt_set: PromptSet,
    /// Where a planner output without a `Next:` marker goes.
    pub no_marker: NoMarkerDefault,
    /// Observations longer than this many characters are truncated (ToolBench: 1024).
    pub max_observation_chars: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            max_steps: 10,
            mode: AgentMode::Multi,
            prompt_set: PromptSet::ToolBench,
            no_marker: NoMarkerDefault::Caller,
            max_observation_chars: 1024,
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StopReason {
    /// The summarizer answered.
    Conclusion,
    /// The planner gave up.
    GiveUp,
    /// `max_steps` planner decisions were made without an end.
    MaxSteps,
}

/// What the agent reports as it goes; the CLI and the web app render these.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The planner (or backbone) decided.
    Rationale {
        /// Step index, from 0.
        step: usize,
        /// The thought.
        text: String,
        /// The decision.
        next: Next,
    },
    /// The caller produced an action (or could not: `action` is `None`).
    Action {
        /// Step index.
        step: usize,
        /// The parsed action.
        action: Option<Action>,
    },
    /// A tool answered (or the agent explained why it could not run it).
    Observation {
        /// Step index.
        step: usize,
        /// The (truncated) observation.
        text: String,
    },
    /// The final answer.
    Answer(String),
    /// The run ended.
    Done(StopReason),
}

/// A failure that stops the run (a model that cannot generate); bad model output never is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// A generator failed.
    #[error(transparent)]
    Generator(#[from] GeneratorError),
}

/// The agent: a text source, tools, their docs (ToolBench `{Name, function, input}` objects,
/// as the prompts show them) and settings.
pub struct Agent<G, T> {
    /// Where text comes from.
    pub generator: G,
    /// How actions run.
    pub tools: T,
    /// Tool docs for the prompts.
    pub tool_docs: Vec<Map<String, Value>>,
    /// Settings.
    pub config: AgentConfig,
}

const STOP: &str = "</s>";

impl<G: Generator, T: ToolExecutor> Agent<G, T> {
    /// An agent with default settings.
    pub fn new(generator: G, tools: T, tool_docs: Vec<Map<String, Value>>) -> Self {
        Self {
            generator,
            tools,
            tool_docs,
            config: AgentConfig::default(),
        }
    }

    /// Answers `query`, calling `on_event` as the run unfolds.
    ///
    /// # Errors
    ///
    /// [`AgentError`] only when a generator fails; unparseable outputs, unknown tools and tool
    /// failures are recorded in the trajectory and the run goes on.
    pub async fn run(
        &mut self,
        query: &str,
        mut on_event: impl FnMut(&AgentEvent),
    ) -> Result<(Trajectory, StopReason), AgentError> {
        let mut trajectory = Trajectory {
            query: query.to_string(),
            steps: Vec::new(),
            final_answer: None,
        };
        for step in 0..self.config.max_steps {
            let (stop, event_answer) = match self.config.mode {
                AgentMode::Multi => {
                    self.multi_step(step, &mut trajectory, &mut on_event)
                        .await?
                }
                AgentMode::Single => {
                    self.single_step(step, &mut trajectory, &mut on_event)
                        .await?
                }
            };
            if let Some(answer) = event_answer {
                on_event(&AgentEvent::Answer(answer));
            }
            if let Some(reason) = stop {
                on_event(&AgentEvent::Done(reason));
                return Ok((trajectory, reason));
            }
        }
        on_event(&AgentEvent::Done(StopReason::MaxSteps));
        Ok((trajectory, StopReason::MaxSteps))
    }

    async fn multi_step(
        &mut self,
        step: usize,
        trajectory: &mut Trajectory,
        on_event: &mut impl FnMut(&AgentEvent),
    ) -> Result<(Option<StopReason>, Option<String>), AgentError> {
        let set = self.config.prompt_set;
        let stop = [STOP.to_string()];
        let turns = trajectory.to_turns();
        let prompt = set.input(Role::Planner, &self.tool_docs, &history(&turns), "");
        let raw = self
            .generator
            .generate(Role::Planner, &prompt, &stop)
            .await?;
        let planned = parse_planner_output(&raw, self.config.no_marker);
        on_event(&AgentEvent::Rationale {
            step,
            text: planned.rationale.0.clone(),
            next: planned.next,
        });
        let current = Step {
            rationale: planned.rationale.clone(),
            next: planned.next,
            planner_text: planned.text.clone(),
            action: None,
            observation: None,
        };
        let mut turns_now = turns;
        turns_now.push(Turn::new(
            umi_data::Speaker::Assistant,
            planned.text.clone(),
        ));
        match planned.next {
            Next::GiveUp => {
                trajectory.steps.push(current);
                Ok((Some(StopReason::GiveUp), None))
            }
            Next::Conclusion => {
                trajectory.steps.push(current);
                let prompt = set.input(Role::Summarizer, &self.tool_docs, &history(&turns_now), "");
                let answer = self
                    .generator
                    .generate(Role::Summarizer, &prompt, &stop)
                    .await?;
                let answer = answer.trim().to_string();
                trajectory.final_answer = Some(FinalAnswer(answer.clone()));
                Ok((Some(StopReason::Conclusion), Some(answer)))
            }
            Next::Caller => {
                let prompt = set.input(
                    Role::Caller,
                    &self.tool_docs,
                    &history(&turns_now),
                    &planned.text,
                );
                let raw = self
                    .generator
                    .generate(Role::Caller, &prompt, &stop)
                    .await?;
                let action = parse_action(&raw);
                let done = self.act(step, current, action, &raw, on_event).await;
                trajectory.steps.push(done);
                Ok((None, None))
            }
        }
    }

    async fn single_step(
        &mut self,
        step: usize,
        trajectory: &mut Trajectory,
        on_event: &mut impl FnMut(&AgentEvent),
    ) -> Result<(Option<StopReason>, Option<String>), AgentError> {
        let set = self.config.prompt_set;
        let turns = backbone_turns(&trajectory.to_turns());
        let prompt = set.input(Role::Backbone, &self.tool_docs, &history(&turns), "");
        let raw = self
            .generator
            .generate(Role::Backbone, &prompt, &[STOP.to_string()])
            .await?;
        let raw = raw.strip_prefix(": ").unwrap_or(&raw).to_string();
        // backbone targets: thought + "\nAction: …\nAction Input: …" | thought + "\nconclusion: …"
        let (thought, next, answer, action) = if let Some(at) = raw.rfind("conclusion:") {
            let answer = raw[at + "conclusion:".len()..].trim().to_string();
            let thought = raw[..at].trim().to_string();
            if answer.trim_end_matches('.') == "give up" {
                (thought, Next::GiveUp, None, None)
            } else {
                (thought, Next::Conclusion, Some(answer), None)
            }
        } else if let Some(action) = parse_action(&raw) {
            let thought = raw[..raw.find("Action:").unwrap_or(0)].trim().to_string();
            (thought, Next::Caller, None, Some(action))
        } else {
            match self.config.no_marker {
                NoMarkerDefault::Caller => (raw.trim().to_string(), Next::Caller, None, None),
                NoMarkerDefault::Summarizer => (
                    String::new(),
                    Next::Conclusion,
                    Some(raw.trim().to_string()),
                    None,
                ),
            }
        };
        on_event(&AgentEvent::Rationale {
            step,
            text: thought.clone(),
            next,
        });
        let current = Step {
            rationale: Rationale(thought.clone()),
            next,
            planner_text: format!("{thought}\n {}", next.marker()),
            action: None,
            observation: None,
        };
        match next {
            Next::GiveUp => {
                trajectory.steps.push(current);
                Ok((Some(StopReason::GiveUp), None))
            }
            Next::Conclusion => {
                trajectory.steps.push(current);
                let answer = answer.unwrap_or_default();
                trajectory.final_answer = Some(FinalAnswer(answer.clone()));
                Ok((Some(StopReason::Conclusion), Some(answer)))
            }
            Next::Caller => {
                let done = self.act(step, current, action, &raw, on_event).await;
                trajectory.steps.push(done);
                Ok((None, None))
            }
        }
    }

    /// Reports `action`, runs it and records both in `step` (an unparseable action is recorded
    /// as `none` with an observation saying why).
    async fn act(
        &self,
        step: usize,
        mut current: Step,
        action: Option<Action>,
        raw: &str,
        on_event: &mut impl FnMut(&AgentEvent),
    ) -> Step {
        on_event(&AgentEvent::Action {
            step,
            action: action.clone(),
        });
        let observation = self.execute(action.as_ref(), raw).await;
        on_event(&AgentEvent::Observation {
            step,
            text: observation.0.clone(),
        });
        current.action = Some(action.unwrap_or_else(|| Action {
            name: "none".into(),
            input: "{}".into(),
        }));
        current.observation = Some(observation);
        current
    }

    /// Runs an action, or explains in an observation why it cannot run.
    async fn execute(&self, action: Option<&Action>, raw: &str) -> Observation {
        let error = |message: String| {
            Observation(serde_json::json!({"error": message, "response": ""}).to_string())
        };
        let observation = match action {
            None => error(format!(
                "no action could be parsed from the output (expected \"Action: <tool>\\nAction Input: <json>\"): {}",
                truncate_observation(raw.trim(), 200)
            )),
            Some(action) => {
                let known = self.tools.tool_names();
                if !known.iter().any(|n| n == &action.name) {
                    hallucination_observation(&action.name, &known)
                } else if !action.input_json().is_some_and(|v| v.is_object()) {
                    error(format!(
                        "Action Input is not a JSON object: {}",
                        truncate_observation(&action.input, 200)
                    ))
                } else {
                    self.tools.call(action).await
                }
            }
        };
        Observation(truncate_observation(
            &observation.0,
            self.config.max_observation_chars,
        ))
    }
}

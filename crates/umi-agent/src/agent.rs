//! The α-UMi loop.

use umi_data::ToolDoc;
use umi_data::parse::NoMarkerDefault;
use umi_data::prompt::PromptSet;
use umi_data::{Action, FinalAnswer, Next, Observation, Role, Step, Trajectory};

use crate::decide::{AgentMode, Decided, decide};
use crate::generator::{Generator, GeneratorError};
use umi_tools::{ToolExecutor, hallucination_observation, truncate_observation};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StopReason {
    /// The summarizer answered.
    Conclusion,
    /// The planner gave up.
    GiveUp,
    /// `max_steps` planner decisions were made without an end.
    MaxSteps,
}

/// A finished run as one record: the conversation (`{tools, instruction, conversations}`)
/// plus why it stopped, the JSON `umi run --json` writes and the web app exports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    /// The run as an α-UMi conversation ([`Trajectory::to_conversation`]).
    #[serde(flatten)]
    pub conversation: umi_data::Conversation,
    /// Why it ended.
    pub stop_reason: StopReason,
}

impl RunRecord {
    /// The record of `trajectory`, run over `tool_docs`, ended for `stop_reason`.
    pub fn new(trajectory: &Trajectory, tool_docs: &[ToolDoc], stop_reason: StopReason) -> Self {
        Self {
            conversation: trajectory.to_conversation(tool_docs),
            stop_reason,
        }
    }
}

/// What the agent reports as it goes; the CLI and the web app render these (the web worker
/// posts them to the page as they are: they serialise).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// A role's prompt is being prefilled: `done` of its `total` new tokens (the part a cached
    /// prefix did not cover), reported before and after every chunk.
    Prefill {
        /// Who reads the prompt.
        role: Role,
        /// Tokens prefilled so far.
        done: usize,
        /// Tokens to prefill.
        total: usize,
    },
    /// A role wrote more text (one token's worth; the decoded text may be empty mid-character).
    Text {
        /// Who writes.
        role: Role,
        /// The new text.
        delta: String,
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
    /// The tool docs cannot go into a prompt whole: too many tools, too much text, or more
    /// tokens than the model keeps (the run would otherwise cut them from the front unseen).
    #[error("tool docs: {0}")]
    ToolDocs(String),
    /// The tools cannot be set up as asked (a malformed allowed host).
    #[error("tools: {0}")]
    Tools(String),
}

/// The agent: a text source, tools, their docs (ToolBench `{Name, function, input}` objects,
/// as the prompts show them) and settings.
pub struct Agent<G, T> {
    /// Where text comes from.
    pub generator: G,
    /// How actions run.
    pub tools: T,
    /// Tool docs for the prompts.
    pub tool_docs: Vec<ToolDoc>,
    /// Settings.
    pub config: AgentConfig,
}

impl<G: Generator, T: ToolExecutor> Agent<G, T> {
    /// An agent with default settings.
    pub fn new(generator: G, tools: T, tool_docs: Vec<ToolDoc>) -> Self {
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
    /// [`AgentError::ToolDocs`] before anything is generated when the tool docs do not fit a
    /// prompt (see [`Agent::check_tool_docs`]); otherwise [`AgentError`] only when a generator
    /// fails: unparseable outputs, unknown tools and tool failures are recorded in the
    /// trajectory and the run goes on.
    pub async fn run(
        &mut self,
        query: &str,
        mut on_event: impl FnMut(&AgentEvent),
    ) -> Result<(Trajectory, StopReason), AgentError> {
        self.check_tool_docs()?;
        let mut trajectory = Trajectory {
            query: query.to_string(),
            steps: Vec::new(),
            final_answer: None,
        };
        for step in 0..self.config.max_steps {
            let (stop, event_answer) = self.step(step, &mut trajectory, &mut on_event).await?;
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

    /// Checks that the tool docs fit every prompt whole: at most
    /// [`MAX_TOOLS`](umi_data::prompt::MAX_TOOLS) tools and
    /// [`MAX_TOOL_DOC_BYTES`](umi_data::prompt::MAX_TOOL_DOC_BYTES) of docs, and, for each role
    /// whose prompt lists them, a prompt with an empty history (template and docs alone) shorter
    /// than what the generator keeps ([`Generator::prompt_length`]).
    ///
    /// # Errors
    ///
    /// [`AgentError::ToolDocs`] saying which limit the docs exceed and by how much;
    /// [`AgentError::Generator`] when a prompt cannot be measured.
    pub fn check_tool_docs(&mut self) -> Result<(), AgentError> {
        umi_data::prompt::check_tool_docs(&self.tool_docs).map_err(AgentError::ToolDocs)?;
        let roles: &[Role] = match self.config.mode {
            AgentMode::Multi => &[Role::Planner, Role::Caller],
            AgentMode::Single => &[Role::Backbone],
        };
        for &role in roles {
            let prompt = self.config.prompt_set.input(role, &self.tool_docs, "", "");
            if let Some(length) = self.generator.prompt_length(role, &prompt)?
                && length.tokens >= length.budget
            {
                return Err(AgentError::ToolDocs(format!(
                    "the {role} prompt with only its template and the tool docs ({} tools) is {} \
                     tokens long, more than the {} the model keeps (its context minus \
                     max_new_tokens, or max_input_tokens): pass fewer tools, or shorter docs",
                    self.tool_docs.len(),
                    length.tokens,
                    length.budget
                )));
            }
        }
        Ok(())
    }

    async fn step(
        &mut self,
        step: usize,
        trajectory: &mut Trajectory,
        on_event: &mut impl FnMut(&AgentEvent),
    ) -> Result<(Option<StopReason>, Option<String>), AgentError> {
        let turns = trajectory.to_turns();
        let c = &self.config;
        let decision = decide(
            &mut self.generator,
            c.mode,
            c.prompt_set,
            c.no_marker,
            &self.tool_docs,
            &turns,
            on_event,
        )
        .await?;
        let planned = &decision.planned;
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
        match decision.then {
            Decided::GiveUp => {
                trajectory.steps.push(current);
                Ok((Some(StopReason::GiveUp), None))
            }
            Decided::Conclude { answer } => {
                trajectory.steps.push(current);
                trajectory.final_answer = Some(FinalAnswer(answer.clone()));
                Ok((Some(StopReason::Conclusion), Some(answer)))
            }
            Decided::Call { raw, action } => {
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
        let error = Observation::error;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_records_are_the_conversation_then_the_stop_reason() {
        let trajectory = Trajectory {
            query: "q".into(),
            steps: vec![],
            final_answer: Some(FinalAnswer("a".into())),
        };
        let doc = serde_json::json!({"Name": "f", "function": "g", "input": {}});
        let docs = vec![doc.as_object().unwrap().clone()];
        let record = RunRecord::new(&trajectory, &docs, StopReason::Conclusion);
        // Key order matters: files written before RunRecord existed had exactly these bytes.
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"tools":[{"Name":"f","function":"g","input":{}}],"instruction":"q","conversations":[{"from":"user","value":"q"},{"from":"conclusion","value":"a"}],"stop_reason":"Conclusion"}"#
        );
    }

    #[test]
    fn events_round_trip_through_json() {
        let events = [
            AgentEvent::Rationale {
                step: 0,
                text: "Call it.".into(),
                next: Next::Caller,
            },
            AgentEvent::Action {
                step: 0,
                action: Some(Action {
                    name: "weekday".into(),
                    input: "{\"date\": \"2026-12-25\"}".into(),
                }),
            },
            AgentEvent::Action {
                step: 1,
                action: None,
            },
            AgentEvent::Observation {
                step: 0,
                text: "{\"weekday\": \"Friday\"}".into(),
            },
            AgentEvent::Answer("Friday.".into()),
            AgentEvent::Done(StopReason::Conclusion),
        ];
        for event in events {
            let text = serde_json::to_string(&event).unwrap();
            let back: AgentEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event, "{text}");
        }
    }
}

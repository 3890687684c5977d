//! Where the agent's text comes from.

use std::collections::VecDeque;

use umi_data::Role;

use crate::agent::AgentEvent;

/// A generation failure (the model could not run); distinct from bad output, which the agent
/// records as a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{role:?} generation failed: {message}")]
pub struct GeneratorError {
    /// The role that was generating.
    pub role: Role,
    /// What went wrong.
    pub message: String,
}

/// How long a prompt is for a model, and how much of it the model keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLength {
    /// Tokens in the prompt, as the model would receive it.
    pub tokens: usize,
    /// The most tokens a prompt keeps; a longer one loses its beginning.
    pub budget: usize,
}

/// Produces a role's completion for a prompt.
///
/// Implementations: a model per role or one model for all (`umi-model`), and
/// [`ScriptedGenerator`] for tests.
#[allow(async_fn_in_trait)] // used with concrete types; the browser's futures are not Send
pub trait Generator {
    /// Completes `prompt` as `role`; generation stops at any of `stop` (not included).
    ///
    /// # Errors
    ///
    /// [`GeneratorError`] when the model cannot run.
    async fn generate(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
    ) -> Result<String, GeneratorError>;

    /// [`Generator::generate`], reporting to `on_event` how far the prompt is prefilled
    /// ([`AgentEvent::Prefill`]) and each piece of text as it is written ([`AgentEvent::Text`]):
    /// what the agent calls, so that front-ends render one event stream. The default reports
    /// nothing (a generator that does not stream, like [`ScriptedGenerator`]).
    ///
    /// # Errors
    ///
    /// [`GeneratorError`] when the model cannot run.
    async fn generate_streaming(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        on_event: &mut dyn FnMut(&AgentEvent),
    ) -> Result<String, GeneratorError> {
        let _ = on_event;
        self.generate(role, prompt, stop).await
    }

    /// How long `prompt` is for `role`'s model and how many tokens that model keeps, or `None`
    /// when this generator keeps every prompt whole (the default). The agent asks before a run
    /// so that tool docs longer than the model's input are an error rather than silently cut.
    ///
    /// # Errors
    ///
    /// [`GeneratorError`] when the prompt cannot be measured (the tokenizer fails).
    fn prompt_length(
        &mut self,
        _role: Role,
        _prompt: &str,
    ) -> Result<Option<PromptLength>, GeneratorError> {
        Ok(None)
    }
}

/// Replays fixed outputs in order, recording the prompts it was given: tests assert whole
/// trajectories with it.
#[derive(Debug, Default, Clone)]
pub struct ScriptedGenerator {
    outputs: VecDeque<(Role, String)>,
    /// Every `(role, prompt)` received, in order.
    pub prompts: Vec<(Role, String)>,
}

impl ScriptedGenerator {
    /// Outputs to replay, each tagged with the role expected to ask for it.
    pub fn new(outputs: impl IntoIterator<Item = (Role, &'static str)>) -> Self {
        Self {
            outputs: outputs
                .into_iter()
                .map(|(r, s)| (r, s.to_string()))
                .collect(),
            prompts: Vec::new(),
        }
    }
}

impl Generator for ScriptedGenerator {
    async fn generate(
        &mut self,
        role: Role,
        prompt: &str,
        _stop: &[String],
    ) -> Result<String, GeneratorError> {
        self.prompts.push((role, prompt.to_string()));
        match self.outputs.pop_front() {
            Some((expected, text)) if expected == role => Ok(text),
            Some((expected, _)) => Err(GeneratorError {
                role,
                message: format!("the script expected the {expected:?} next"),
            }),
            None => Err(GeneratorError {
                role,
                message: "the script is exhausted".into(),
            }),
        }
    }
}

//! Llama models (`umi-model`) as the agent's [`Generator`]: one model shared by every role, or
//! one per role (the paper's set-up).

use std::rc::Rc;

use umi_data::Role;
use umi_model::{GenerationConfig, LoadedModel, generate};

use crate::generator::{Generator, GeneratorError};

/// A callback receiving each piece of generated text with the role generating it.
pub type TextCallback = Box<dyn FnMut(Role, &str)>;

/// Generates each role's text with a loaded model.
pub struct LlamaGenerator {
    planner: Rc<LoadedModel>,
    caller: Rc<LoadedModel>,
    summarizer: Rc<LoadedModel>,
    /// Decoding settings (greedy by default, as α-UMi evaluates).
    pub config: GenerationConfig,
    /// Wrap α-UMi prompts as a user turn of the model's chat template: right for zero-shot
    /// instruct models; GLPFT-trained models expect the raw prompt (set `false`).
    pub use_chat_template: bool,
    /// Called with each piece of generated text (for live display).
    pub on_text: Option<TextCallback>,
    /// Prompts longer than this many tokens keep only their last ones (the reference's
    /// `max_input_length`, 3750 in GLPFT's README); `None`: the model's context minus
    /// `max_new_tokens`, which always applies.
    pub max_input_tokens: Option<usize>,
}

impl LlamaGenerator {
    /// One model for all roles (also used as the backbone in single-LLM mode).
    pub fn shared(model: LoadedModel, config: GenerationConfig) -> Self {
        let model = Rc::new(model);
        Self::per_role(model.clone(), model.clone(), model, config)
    }

    /// A model per role; the planner also serves as the backbone in single-LLM mode.
    pub fn per_role(
        planner: Rc<LoadedModel>,
        caller: Rc<LoadedModel>,
        summarizer: Rc<LoadedModel>,
        config: GenerationConfig,
    ) -> Self {
        Self {
            planner,
            caller,
            summarizer,
            config,
            use_chat_template: true,
            on_text: None,
            max_input_tokens: None,
        }
    }

    fn model(&self, role: Role) -> Rc<LoadedModel> {
        match role {
            Role::Planner | Role::Backbone => self.planner.clone(),
            Role::Caller => self.caller.clone(),
            Role::Summarizer => self.summarizer.clone(),
        }
    }
}

impl Generator for LlamaGenerator {
    async fn generate(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
    ) -> Result<String, GeneratorError> {
        let loaded = self.model(role);
        let fail = |message: String| GeneratorError { role, message };
        let text = if self.use_chat_template {
            loaded.chat_template.user_prompt(prompt)
        } else {
            prompt.to_string()
        };
        let mut ids = loaded
            .tokenizer
            .encode(&text, true)
            .map_err(|e| fail(e.to_string()))?;
        // Left truncation keeps the end of the prompt, as the reference collator does.
        let budget = loaded
            .model
            .max_positions()
            .saturating_sub(self.config.max_new_tokens);
        if budget == 0 {
            return Err(fail(format!(
                "max_new_tokens = {} leaves no room for a prompt in a context of {}",
                self.config.max_new_tokens,
                loaded.model.max_positions()
            )));
        }
        let budget = self
            .max_input_tokens
            .map_or(budget, |m| budget.min(m.max(1)));
        if ids.len() > budget {
            ids.drain(..ids.len() - budget);
        }
        let mut config = self.config.clone();
        config.stop_strings.extend(stop.iter().cloned());
        let on_text = &mut self.on_text;
        let output = generate(
            &loaded.model,
            &loaded.tokenizer,
            &ids,
            &config,
            |_, delta| {
                if let Some(f) = on_text.as_mut() {
                    f(role, delta);
                }
                true
            },
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        Ok(output.text)
    }
}

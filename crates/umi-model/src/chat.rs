//! Chat templates: how a conversation becomes the prompt string a chat model was trained on.

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    /// Instructions for the assistant.
    System,
    /// The human.
    User,
    /// The model.
    Assistant,
}

impl ChatRole {
    fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Author.
    pub role: ChatRole,
    /// Text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// The prompt formats umi knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// ChatML (SmolLM2, Qwen): `<|im_start|>{role}\n{content}<|im_end|>\n`, generation prompt
    /// `<|im_start|>assistant\n`; `default_system` is inserted when the conversation has no system
    /// message (SmolLM2's template does this).
    ChatMl {
        /// System prompt used when none is given.
        default_system: Option<String>,
    },
    /// Zephyr (TinyLlama-1.1B-Chat): `<|{role}|>\n{content}</s>\n`, generation prompt
    /// `<|assistant|>\n`.
    Zephyr,
    /// No template: the messages' contents are concatenated as they are.
    Raw,
}

/// SmolLM2's default system prompt (from its `tokenizer.chat_template`).
pub const SMOLLM_DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

impl ChatTemplate {
    /// Recognises a Jinja chat template (GGUF `tokenizer.chat_template`, or `chat_template` in
    /// `tokenizer_config.json`) by its markers; unknown templates fall back to [`ChatTemplate::Raw`].
    pub fn detect(jinja: Option<&str>) -> Self {
        let Some(jinja) = jinja else {
            return ChatTemplate::Raw;
        };
        if jinja.contains("<|im_start|>") {
            let default_system = jinja
                .contains(SMOLLM_DEFAULT_SYSTEM)
                .then(|| SMOLLM_DEFAULT_SYSTEM.to_string());
            ChatTemplate::ChatMl { default_system }
        } else if jinja.contains("<|user|>") && jinja.contains("<|assistant|>") {
            ChatTemplate::Zephyr
        } else {
            ChatTemplate::Raw
        }
    }

    /// Renders `messages`, followed by the assistant's generation prompt when
    /// `add_generation_prompt` is set.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let Some(system) = default_system
                    && messages.first().is_none_or(|m| m.role != ChatRole::System)
                {
                    out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
                }
                for m in messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role.as_str(),
                        m.content
                    ));
                }
                if add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
            }
            ChatTemplate::Zephyr => {
                for m in messages {
                    out.push_str(&format!("<|{}|>\n{}</s>\n", m.role.as_str(), m.content));
                }
                if add_generation_prompt {
                    out.push_str("<|assistant|>\n");
                }
            }
            ChatTemplate::Raw => {
                for m in messages {
                    out.push_str(&m.content);
                }
            }
        }
        out
    }

    /// A Jinja template (`chat_template` in `tokenizer_config.json`, as `transformers`'
    /// `apply_chat_template` reads it) that renders exactly as [`ChatTemplate::render`] and that
    /// [`ChatTemplate::detect`] recognises again; `None` for [`ChatTemplate::Raw`].
    pub fn jinja(&self) -> Option<String> {
        let turns = |open: &str, close: &str, generation: &str| {
            format!(
                "{{% for message in messages %}}{{{{ '{open}' }}}}{close}{{% endfor %}}\
                 {{% if add_generation_prompt %}}{{{{ '{generation}' }}}}{{% endif %}}"
            )
        };
        match self {
            ChatTemplate::ChatMl { default_system } => {
                let system = default_system.as_ref().map_or(String::new(), |s| {
                    format!(
                        "{{% if messages[0]['role'] != 'system' %}}\
                         {{{{ '<|im_start|>system\\n{}<|im_end|>\\n' }}}}{{% endif %}}",
                        s.replace('\\', "\\\\").replace('\'', "\\'")
                    )
                });
                Some(
                    system
                        + &turns(
                            "<|im_start|>",
                            "{{ message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}",
                            "<|im_start|>assistant\\n",
                        ),
                )
            }
            ChatTemplate::Zephyr => Some(
                "{% for message in messages %}{% if message['role'] == 'user' %}\
                 {{ '<|user|>\\n' }}{% elif message['role'] == 'system' %}{{ '<|system|>\\n' }}\
                 {% else %}{{ '<|assistant|>\\n' }}{% endif %}\
                 {{ message['content'] + '</s>\\n' }}{% endfor %}\
                 {% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
                    .to_string(),
            ),
            ChatTemplate::Raw => None,
        }
    }

    /// Renders a single user turn with the generation prompt.
    pub fn user_prompt(&self, text: &str) -> String {
        self.render(&[ChatMessage::new(ChatRole::User, text)], true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_matches_smollm2_template() {
        let jinja = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
        let t = ChatTemplate::detect(Some(jinja));
        assert_eq!(
            t.user_prompt("Hi"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_system = [
            ChatMessage::new(ChatRole::System, "S"),
            ChatMessage::new(ChatRole::User, "U"),
        ];
        assert_eq!(
            t.render(&with_system, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        );
    }

    #[test]
    fn zephyr_matches_tinyllama_chat() {
        let jinja = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
        let t = ChatTemplate::detect(Some(jinja));
        assert_eq!(t, ChatTemplate::Zephyr);
        let msgs = [
            ChatMessage::new(ChatRole::System, "Be brief."),
            ChatMessage::new(ChatRole::User, "Hi"),
        ];
        assert_eq!(
            t.render(&msgs, true),
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
        );
    }

    #[test]
    fn exported_jinja_is_recognised_again() {
        for t in [
            ChatTemplate::ChatMl {
                default_system: Some(SMOLLM_DEFAULT_SYSTEM.into()),
            },
            ChatTemplate::ChatMl {
                default_system: None,
            },
            ChatTemplate::Zephyr,
        ] {
            let jinja = t.jinja().unwrap();
            assert_eq!(ChatTemplate::detect(Some(&jinja)), t, "{jinja}");
        }
        assert_eq!(ChatTemplate::Raw.jinja(), None);
    }

    #[test]
    fn unknown_templates_are_raw() {
        assert_eq!(ChatTemplate::detect(None), ChatTemplate::Raw);
        assert_eq!(
            ChatTemplate::detect(Some("{{ bos_token }}")).user_prompt("x"),
            "x"
        );
    }
}

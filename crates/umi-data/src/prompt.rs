//! The α-UMi prompt library: templates byte-for-byte as `GLPFT/utils/prompt_lib.py` (typos such
//! as "assess" and "Base on" kept, since released checkpoints were trained on them), and the
//! serialisation of tool docs, tool names and histories that fills them.

use crate::ToolDoc;
use serde_json::Value;

use crate::conversation::{Role, Speaker, Turn};
use crate::python::json::python_json_dumps;

/// Which benchmark's template family to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptSet {
    /// `toolbench_*` (with "give up").
    #[default]
    ToolBench,
    /// `toolalpaca_*` (no "give up").
    ToolAlpaca,
}

impl std::str::FromStr for PromptSet {
    type Err = String;

    /// `toolbench` or `toolalpaca`.
    ///
    /// # Errors
    /// The name and the accepted ones when it is neither.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "toolbench" => Ok(PromptSet::ToolBench),
            "toolalpaca" => Ok(PromptSet::ToolAlpaca),
            other => Err(format!(
                "the prompt set must be toolbench or toolalpaca, not {other:?}"
            )),
        }
    }
}

const TOOLBENCH_BACKBONE: &str = "You have assess to the following apis:\n{doc}\nThe conversation history is:\n{history}\nYou should answer the action of next step in the following format:\nThe thought to solve the question,\nAction: the name of api that should be called in this step, should be exactly in [{tool_names}],\nAction Input: the api call request.\nOnce you think the question is finished, output conclusion: the final answer of the question or give up if you think you cannot answer this question.\n";
const TOOLALPACA_BACKBONE: &str = "You have assess to the following apis:\n{doc}\nThe conversation history is:\n{history}\nYou should answer the action of next step in the following format:\nThe thought to solve the question,\nAction: the name of api that should be called in this step, should be exactly in [{tool_names}],\nAction Input: the api call request.\nOnce you think the question is finished, output conclusion: the final answer of the question.\n";
const TOOLBENCH_PLANNER: &str = "You have assess to the following apis:\n{doc}\nThe conversation history is:\n{history}\nYou are the assistant to plan what to do next and whether is caller's or conclusion's turn to answer.\nAnswer with a following format:\nThe thought of the next step, followed by Next: caller or conclusion or give up.";
const TOOLALPACA_PLANNER: &str = "You have assess to the following apis:\n{doc}\nThe conversation history is:\n{history}\nYou are the assistant to plan what to do next and whether is caller's or conclusion's turn to answer.\nAnswer with a following format:\nThe thought of the next step, followed by Next: caller or conclusion.";
const CALLER: &str = "You have assess to the following apis:\n{doc}\nThe conversation history is:\n{history}\nThe thought of this step is:\n{thought}\nBase on the thought make an api call in the following format:\nAction: the name of api that should be called in this step, should be exactly in [{tool_names}],\nAction Input: the api call request.";
const SUMMARIZER: &str = "Make a conclusion based on the conversation history:\n{history}";

impl PromptSet {
    /// The raw template of `role`, with `{doc}`, `{history}`, `{tool_names}`, `{thought}` holes.
    pub fn template(self, role: Role) -> &'static str {
        match (self, role) {
            (PromptSet::ToolBench, Role::Backbone) => TOOLBENCH_BACKBONE,
            (PromptSet::ToolAlpaca, Role::Backbone) => TOOLALPACA_BACKBONE,
            (PromptSet::ToolBench, Role::Planner) => TOOLBENCH_PLANNER,
            (PromptSet::ToolAlpaca, Role::Planner) => TOOLALPACA_PLANNER,
            (_, Role::Caller) => CALLER,
            (_, Role::Summarizer) => SUMMARIZER,
        }
    }

    /// The complete model input for `role`: the filled template followed by the role cue
    /// (`" assistant: "` for planner and backbone, `" caller: "`, `" conclusion: "`).
    ///
    /// `history` is the serialised history ([`history`]); `thought` is the planner's output for
    /// this step, marker included (caller only; ignored otherwise).
    pub fn input(self, role: Role, tools: &[ToolDoc], history: &str, thought: &str) -> String {
        let cue = match role {
            Role::Backbone | Role::Planner => " assistant: ",
            Role::Caller => " caller: ",
            Role::Summarizer => " conclusion: ",
        };
        let mut prompt = self
            .template(role)
            .replace("{doc}", &tool_doc(tools))
            .replace("{history}", history)
            .replace("{tool_names}", &tool_names(tools))
            .replace("{thought}", thought);
        prompt.push_str(cue);
        prompt
    }
}

/// Most tools a prompt may list: tool docs go into every planner and caller prompt, and real
/// tool sets (ToolBench's, the demo server's 14) are far smaller.
pub const MAX_TOOLS: usize = 1000;

/// Most bytes of tool docs (`{doc}`) a prompt may hold: more than any model's context takes,
/// and a bound on the text tokenized per prompt.
pub const MAX_TOOL_DOC_BYTES: usize = 1 << 20;

/// Checks that `tools` fit a prompt: at most [`MAX_TOOLS`] tools whose docs ([`tool_doc`]) take
/// at most [`MAX_TOOL_DOC_BYTES`].
///
/// # Errors
///
/// Why they do not, with the count or size and the limit.
pub fn check_tool_docs(tools: &[ToolDoc]) -> Result<(), String> {
    if tools.len() > MAX_TOOLS {
        return Err(format!(
            "{} tools are listed, more than the {MAX_TOOLS} a prompt may hold",
            tools.len()
        ));
    }
    let bytes = tool_doc(tools).len();
    if bytes > MAX_TOOL_DOC_BYTES {
        return Err(format!(
            "the docs of the {} tools take {bytes} bytes, more than the {MAX_TOOL_DOC_BYTES} a \
             prompt may hold",
            tools.len()
        ));
    }
    Ok(())
}

/// `{doc}`: each tool as Python's `json.dumps(tool)` followed by a newline.
pub fn tool_doc(tools: &[ToolDoc]) -> String {
    tools
        .iter()
        .map(|t| python_json_dumps(&Value::Object(t.clone())) + "\n")
        .collect()
}

/// `{tool_names}`: the tools' `Name`s joined by `", "`.
pub fn tool_names(tools: &[ToolDoc]) -> String {
    tools
        .iter()
        .map(|t| crate::tool_doc::tool_name(t).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `{history}`: `"{speaker}: {value}</s>"` per turn, except observations, which get no `</s>`
/// (so they run straight into the next turn, as in the reference).
pub fn history(turns: &[Turn]) -> String {
    let mut out = String::new();
    for turn in turns {
        out.push_str(turn.from.as_str());
        out.push_str(": ");
        out.push_str(&turn.value);
        if turn.from != Speaker::Observation {
            out.push_str(crate::parse::END_OF_TURN);
        }
    }
    out
}

/// Rewrites a multi-agent history into the single-LLM (backbone) form of `prepro_backbone.py`:
/// each planner turn is merged with the turn it led to — `thought + "\n" + "Action: …"` for a
/// call, `thought + "\nconclusion: " + answer` for an answer, `thought + "\nconclusion: give up."`
/// for a give-up — where `thought` is the planner text without its marker, trimmed. User and
/// observation turns stay; planner turns without a marker stay as they are.
pub fn backbone_turns(turns: &[Turn]) -> Vec<Turn> {
    use crate::conversation::Next;
    let mut out = Vec::with_capacity(turns.len());
    let mut i = 0;
    while i < turns.len() {
        let turn = &turns[i];
        i += 1;
        match turn.from {
            Speaker::User | Speaker::Observation => out.push(turn.clone()),
            Speaker::Caller | Speaker::Conclusion => {} // merged into the planner turn before it
            Speaker::Assistant => {
                let marker = Next::detect(&turn.value);
                let Some(next) = marker else {
                    out.push(turn.clone());
                    continue;
                };
                let thought = turn.value.replace(next.marker(), "").trim().to_string();
                let follower = turns.get(i).filter(|t| match next {
                    Next::Caller => t.from == Speaker::Caller,
                    Next::Conclusion => t.from == Speaker::Conclusion,
                    Next::GiveUp => false,
                });
                let merged = match (next, follower) {
                    (Next::Caller, Some(caller)) => format!("{thought}\n{}", caller.value),
                    (Next::Conclusion, Some(answer)) => {
                        format!("{thought}\nconclusion: {}", answer.value)
                    }
                    (Next::GiveUp, _) => format!("{thought}\nconclusion: give up."),
                    (_, None) => thought,
                };
                if follower.is_some() {
                    i += 1;
                }
                out.push(Turn::new(Speaker::Assistant, merged));
            }
        }
    }
    out
}

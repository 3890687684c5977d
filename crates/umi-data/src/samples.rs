//! Role samples: one α-UMi conversation split into backbone, planner, caller and summarizer
//! training samples, as `GLPFT/process_data/toolbench/prepro_{backbone,planner,caller,summarizer}.py`
//! split them (the prompt is the input, the role's turn the target).

use crate::ToolDoc;
use serde::{Deserialize, Serialize};

use crate::conversation::{Conversation, Next, Role, Speaker, Turn};
use crate::prompt::{PromptSet, backbone_turns, history};

/// One training sample: `{"tools", "history", "input", "target"}` as in the reference files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleSample {
    /// Tool docs of the conversation.
    pub tools: Vec<ToolDoc>,
    /// The turns before the target turn (multi-agent form, also for the backbone).
    pub history: Vec<Turn>,
    /// The model input: filled template + role cue.
    pub input: String,
    /// What the model should write.
    pub target: String,
}

const HALLUCINATION: &str = "invalid_hallucination_function_name";

/// Splits `conversation` into `role` samples.
///
/// Planner (and backbone) samples are taken at every planner turn that gives up or is followed
/// by a caller or conclusion turn, except calls whose caller turn names a hallucinated function;
/// caller samples at every caller turn (same exception); summarizer samples at every conclusion
/// turn whose answer is not `"none"`. The backbone target merges the roles (thought + action,
/// thought + `conclusion: answer`, thought + `conclusion: give up.`). Unlike the reference, a
/// backbone give-up sample gets its own prompt (the reference reuses the previous one: defect 2
/// in `alpha-umi-reference.md` §1.7).
pub fn role_samples(conversation: &Conversation, role: Role, set: PromptSet) -> Vec<RoleSample> {
    let turns = &conversation.conversations;
    let tools = &conversation.tools;
    let mut out = Vec::new();
    for (i, turn) in turns.iter().enumerate() {
        let before = &turns[..i];
        let next_turn = turns.get(i + 1);
        let sample = |input: String, target: String| RoleSample {
            tools: tools.clone(),
            history: before.to_vec(),
            input,
            target,
        };
        match (role, turn.from) {
            (Role::Planner | Role::Backbone, Speaker::Assistant) => {
                let gives_up = turn.value.contains(Next::GiveUp.marker());
                let follower =
                    next_turn.filter(|t| matches!(t.from, Speaker::Caller | Speaker::Conclusion));
                if !gives_up && follower.is_none() {
                    continue;
                }
                if follower
                    .is_some_and(|t| t.from == Speaker::Caller && t.value.contains(HALLUCINATION))
                {
                    continue;
                }
                if role == Role::Planner {
                    let input = set.input(Role::Planner, tools, &history(before), "");
                    out.push(sample(input, turn.value.clone()));
                } else {
                    let input =
                        set.input(Role::Backbone, tools, &history(&backbone_turns(before)), "");
                    let merged = backbone_turns(&turns[i..(i + 2).min(turns.len())]);
                    let target = merged.first().map(|t| t.value.clone()).unwrap_or_default();
                    out.push(sample(input, target));
                }
            }
            (Role::Caller, Speaker::Caller) if !turn.value.contains(HALLUCINATION) => {
                let thought = before.last().map(|t| t.value.as_str()).unwrap_or_default();
                let input = set.input(Role::Caller, tools, &history(before), thought);
                out.push(sample(input, turn.value.clone()));
            }
            (Role::Summarizer, Speaker::Conclusion) if turn.value != "none" => {
                let input = set.input(Role::Summarizer, tools, &history(before), "");
                out.push(sample(input, turn.value.clone()));
            }
            _ => {}
        }
    }
    out
}

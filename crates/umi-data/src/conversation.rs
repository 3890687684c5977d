//! α-UMi's conversation format and the terms a trajectory is made of.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The four models of α-UMi (single-LLM `Backbone`, or the three specialised roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One model doing everything (GLPFT stage 1, the single-LLM baseline).
    Backbone,
    /// Writes the rationale and decides what comes next.
    Planner,
    /// Turns the rationale into a tool call.
    Caller,
    /// Writes the final answer.
    Summarizer,
}

/// The planner's decision, written as `Next: caller.`, `Next: conclusion.` or `Next: give up.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Next {
    /// Call a tool (the caller's turn).
    Caller,
    /// Answer (the summarizer's turn).
    Conclusion,
    /// Stop without an answer.
    GiveUp,
}

impl Next {
    /// The marker as the reference writes it.
    pub fn marker(self) -> &'static str {
        match self {
            Next::Caller => "Next: caller.",
            Next::Conclusion => "Next: conclusion.",
            Next::GiveUp => "Next: give up.",
        }
    }
}

/// The planner's thought for one step (the text before its `Next:` marker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rationale(pub String);

/// A tool call: `Action: {name}` / `Action Input: {input}`.
///
/// `input` is kept as the model (or the data) wrote it, since the reference keeps the raw
/// string; [`Action::input_json`] parses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Tool name.
    pub name: String,
    /// Arguments as written (usually a JSON object).
    pub input: String,
}

impl Action {
    /// The arguments as JSON, if they parse.
    pub fn input_json(&self) -> Option<Value> {
        serde_json::from_str(&self.input).ok()
    }

    /// The caller's text for this action (`Action: X\nAction Input: Y`).
    pub fn to_text(&self) -> String {
        format!("Action: {}\nAction Input: {}", self.name, self.input)
    }
}

/// What a tool answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation(pub String);

/// The summarizer's answer to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalAnswer(pub String);

/// Who speaks in an α-UMi conversation turn (`"from"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The user's query (or a DFSDT reflection prompt).
    User,
    /// The planner (rationale + `Next:` marker).
    Assistant,
    /// The caller (`Action:` / `Action Input:`).
    Caller,
    /// A tool's answer.
    Observation,
    /// The summarizer's final answer.
    Conclusion,
}

impl Speaker {
    /// The prefix used when the turn is serialised into a history (`"user"` → `user: `).
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
            Speaker::Caller => "caller",
            Speaker::Observation => "observation",
            Speaker::Conclusion => "conclusion",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Speaker.
    pub from: Speaker,
    /// Text.
    pub value: String,
}

impl Turn {
    /// A turn.
    pub fn new(from: Speaker, value: impl Into<String>) -> Self {
        Self {
            from,
            value: value.into(),
        }
    }
}

/// An α-UMi conversation record, as in `raw_data_stage_2.json` and the ToolBench test files:
/// `{"tools": [{"Name", "function", "input"}...], "instruction", "conversations": [...]}`.
///
/// Tool docs are kept as JSON objects in their original key order, because prompts embed them
/// as Python's `json.dumps` writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Tool docs (`{"Name", "function", "input"}` in ToolBench).
    pub tools: Vec<Map<String, Value>>,
    /// The user's query.
    pub instruction: String,
    /// The turns.
    pub conversations: Vec<Turn>,
}

/// One planner decision and what followed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The planner's thought.
    pub rationale: Rationale,
    /// The planner's decision.
    pub next: Next,
    /// The planner's text as it enters the history (thought + marker).
    pub planner_text: String,
    /// The caller's action, when `next` is [`Next::Caller`].
    pub action: Option<Action>,
    /// The tool's answer to `action`.
    pub observation: Option<Observation>,
}

/// A whole run of the agent on one query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trajectory {
    /// The user's query.
    pub query: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The summarizer's answer, if the run concluded.
    pub final_answer: Option<FinalAnswer>,
}

impl Trajectory {
    /// The trajectory as α-UMi conversation turns (`user`, then per step `assistant`,
    /// `caller`, `observation`, and a final `conclusion`), the form prompts and training
    /// data are built from.
    pub fn to_turns(&self) -> Vec<Turn> {
        let mut turns = vec![Turn::new(Speaker::User, self.query.clone())];
        for step in &self.steps {
            turns.push(Turn::new(Speaker::Assistant, step.planner_text.clone()));
            if let Some(action) = &step.action {
                turns.push(Turn::new(Speaker::Caller, action.to_text()));
            }
            if let Some(observation) = &step.observation {
                turns.push(Turn::new(Speaker::Observation, observation.0.clone()));
            }
        }
        if let Some(answer) = &self.final_answer {
            turns.push(Turn::new(Speaker::Conclusion, answer.0.clone()));
        }
        turns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trajectories_serialise_to_alpha_umi_turns() {
        let t = Trajectory {
            query: "Weather in Paris?".into(),
            steps: vec![
                Step {
                    rationale: Rationale("Call the weather tool.".into()),
                    next: Next::Caller,
                    planner_text: "Call the weather tool.\n Next: caller.".into(),
                    action: Some(Action {
                        name: "weather".into(),
                        input: "{\"city\": \"Paris\"}".into(),
                    }),
                    observation: Some(Observation("{\"temp\": 21}".into())),
                },
                Step {
                    rationale: Rationale("It is 21 degrees.".into()),
                    next: Next::Conclusion,
                    planner_text: "It is 21 degrees. Next: conclusion.".into(),
                    action: None,
                    observation: None,
                },
            ],
            final_answer: Some(FinalAnswer("21 °C in Paris.".into())),
        };
        let history = crate::prompt::history(&t.to_turns());
        assert_eq!(
            history,
            "user: Weather in Paris?</s>assistant: Call the weather tool.\n Next: caller.</s>caller: Action: weather\nAction Input: {\"city\": \"Paris\"}</s>observation: {\"temp\": 21}assistant: It is 21 degrees. Next: conclusion.</s>conclusion: 21 °C in Paris.</s>"
        );
        let json: Conversation = serde_json::from_value(serde_json::json!({
            "tools": [], "instruction": "q", "conversations": [{"from": "user", "value": "q"}, {"from": "observation", "value": "o"}]
        }))
        .unwrap();
        assert_eq!(json.conversations[1].from, Speaker::Observation);
    }
}

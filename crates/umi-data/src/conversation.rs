//! α-UMi's conversation format and the terms a trajectory is made of.

use crate::ToolDoc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

impl Role {
    /// The role's name as files, flags and JSON spell it: `backbone`, `planner`, `caller`,
    /// `summarizer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Backbone => "backbone",
            Role::Planner => "planner",
            Role::Caller => "caller",
            Role::Summarizer => "summarizer",
        }
    }

    /// Every role, backbone first.
    pub const ALL: [Role; 4] = [
        Role::Backbone,
        Role::Planner,
        Role::Caller,
        Role::Summarizer,
    ];
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    /// Parses [`Role::as_str`]'s names (ASCII case ignored).
    ///
    /// # Errors
    /// The name and the accepted ones when it is none of them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown role {s:?}: expected one of backbone, planner, caller, summarizer")
            })
    }
}

/// One value per model of the multi-LLM agent: planner (which also plays the backbone in
/// single-LLM mode), caller and summarizer — their models, adapters, prompt caches or labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleMap<T> {
    /// The planner's (and the backbone's).
    pub planner: T,
    /// The caller's.
    pub caller: T,
    /// The summarizer's.
    pub summarizer: T,
}

impl<T> RoleMap<T> {
    /// The three values.
    pub fn new(planner: T, caller: T, summarizer: T) -> Self {
        Self {
            planner,
            caller,
            summarizer,
        }
    }

    /// The value of `role` (the planner's for [`Role::Backbone`]).
    pub fn get(&self, role: Role) -> &T {
        match role {
            Role::Planner | Role::Backbone => &self.planner,
            Role::Caller => &self.caller,
            Role::Summarizer => &self.summarizer,
        }
    }

    /// The value of `role`, mutable (the planner's for [`Role::Backbone`]).
    pub fn get_mut(&mut self, role: Role) -> &mut T {
        match role {
            Role::Planner | Role::Backbone => &mut self.planner,
            Role::Caller => &mut self.caller,
            Role::Summarizer => &mut self.summarizer,
        }
    }

    /// Each value through `f`, in the order planner, caller, summarizer.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> RoleMap<U> {
        let planner = f(self.planner);
        let caller = f(self.caller);
        RoleMap::new(planner, caller, f(self.summarizer))
    }

    /// References to the values.
    pub fn as_ref(&self) -> RoleMap<&T> {
        RoleMap::new(&self.planner, &self.caller, &self.summarizer)
    }

    /// `(role, value)` for planner, caller, summarizer.
    pub fn iter(&self) -> impl Iterator<Item = (Role, &T)> {
        [
            (Role::Planner, &self.planner),
            (Role::Caller, &self.caller),
            (Role::Summarizer, &self.summarizer),
        ]
        .into_iter()
    }

    /// The values as `[planner, caller, summarizer]`.
    pub fn into_array(self) -> [T; 3] {
        [self.planner, self.caller, self.summarizer]
    }
}

impl<T> From<[T; 3]> for RoleMap<T> {
    fn from([planner, caller, summarizer]: [T; 3]) -> Self {
        Self::new(planner, caller, summarizer)
    }
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
    /// The order in which markers are looked for when a text holds several: `Next: give up.`
    /// wins over `Next: conclusion.`, which wins over `Next: caller.` (GLPFT `infer_pipeline.py`
    /// and `evaluate-multi_agent.py`'s `parse_output` test them in this order).
    pub const PRIORITY: [Next; 3] = [Next::GiveUp, Next::Conclusion, Next::Caller];

    /// The decision `text` states: the first of [`Next::PRIORITY`] whose marker it contains.
    pub fn detect(text: &str) -> Option<Next> {
        Self::find(text).map(|(next, _)| next)
    }

    /// Like [`Next::detect`], with the byte offset where that marker first starts.
    pub fn find(text: &str) -> Option<(Next, usize)> {
        Self::PRIORITY
            .into_iter()
            .find_map(|next| text.find(next.marker()).map(|at| (next, at)))
    }

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

    // `to_text`, the caller's text, is in `parse.rs` with the rest of the text protocol.
}

/// What a tool answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation(pub String);

impl Observation {
    /// A failure the model is shown instead of a tool's answer, in ToolBench's observation
    /// shape: `{"error": message, "response": ""}`.
    pub fn error(message: impl Into<String>) -> Self {
        Self(Self::error_value(message).to_string())
    }

    /// The JSON of [`Observation::error`], `{"error": message, "response": ""}`: also the body
    /// umi's demo tool server answers a failed call with.
    pub fn error_value(message: impl Into<String>) -> serde_json::Value {
        serde_json::json!({"error": message.into(), "response": ""})
    }

    /// An HTTP answer with a non-2xx status: `{"error": "HTTP {status}", "response": body}`.
    pub fn http_error(status: u16, body: impl Into<String>) -> Self {
        Self(
            serde_json::json!({"error": format!("HTTP {status}"), "response": body.into()})
                .to_string(),
        )
    }
}

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
    pub tools: Vec<crate::ToolDoc>,
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
    /// The trajectory as an α-UMi conversation record over `tools` (the docs its prompts
    /// showed): `{tools, instruction, conversations}` with [`Trajectory::to_turns`]'s turns, the
    /// form data files, `umi run --json`, live evaluation and the web app's export all write.
    pub fn to_conversation(&self, tools: &[ToolDoc]) -> Conversation {
        Conversation {
            tools: tools.to_vec(),
            instruction: self.query.clone(),
            conversations: self.to_turns(),
        }
    }

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

    #[test]
    fn markers_are_detected_by_priority_not_position() {
        assert_eq!(
            Next::detect("a Next: caller. b Next: give up."),
            Some(Next::GiveUp)
        );
        assert_eq!(
            Next::find("x Next: caller. Next: conclusion."),
            Some((Next::Conclusion, 16))
        );
        assert_eq!(Next::find("go Next: caller."), Some((Next::Caller, 3)));
        // The marker needs its period, as the reference's `in` test does.
        assert_eq!(Next::detect("Next: caller"), None);
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            // The same spelling as serde's, so flags, files and JSON agree.
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert_eq!("Planner".parse::<Role>(), Ok(Role::Planner));
        let err = "plan".parse::<Role>().unwrap_err();
        assert!(
            err.contains("\"plan\"") && err.contains("summarizer"),
            "{err}"
        );
    }

    #[test]
    fn error_observations_have_toolbench_shape() {
        let v: Value = serde_json::from_str(&Observation::error("bad \"x\"").0).unwrap();
        assert_eq!(v, serde_json::json!({"error": "bad \"x\"", "response": ""}));
        let v: Value = serde_json::from_str(&Observation::http_error(503, "busy").0).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "HTTP 503", "response": "busy"})
        );
    }

    #[test]
    fn role_maps_give_the_backbone_the_planner_slot() {
        let mut m = RoleMap::from(["p", "c", "s"]);
        assert_eq!(*m.get(Role::Backbone), "p");
        assert_eq!(*m.get(Role::Summarizer), "s");
        *m.get_mut(Role::Caller) = "c2";
        assert_eq!(m.map(str::len).into_array(), [1, 2, 1]);
        let roles: Vec<Role> = m.iter().map(|(r, _)| r).collect();
        assert_eq!(roles, [Role::Planner, Role::Caller, Role::Summarizer]);
    }
}

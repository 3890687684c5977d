//! Whole trajectories with a scripted generator and an in-memory tool, including the error
//! paths: unknown tool, malformed Action Input, unparseable caller output, no marker, give up,
//! max_steps. (The HTTP tools and the tool server come with their own tests.)

use serde_json::{Map, Value, json};
use umi_agent::{
    Agent, AgentError, AgentEvent, AgentMode, Generator, GeneratorError, PromptLength,
    ScriptedGenerator, StopReason, ToolExecutor,
};
use umi_data::{Action, Next, Observation, Role};

/// `add` sums `a` and `b`; anything else is a tool-side error.
struct Calculator;

impl ToolExecutor for Calculator {
    fn tool_names(&self) -> Vec<String> {
        vec!["add".into()]
    }

    async fn call(&self, action: &Action) -> Observation {
        let args = action.input_json().unwrap_or_default();
        match (args["a"].as_f64(), args["b"].as_f64()) {
            (Some(a), Some(b)) => Observation(json!({"error": "", "response": a + b}).to_string()),
            _ => {
                Observation(json!({"error": "a and b must be numbers", "response": ""}).to_string())
            }
        }
    }
}

fn docs() -> Vec<Map<String, Value>> {
    vec![serde_json::from_value(json!({"Name": "add", "function": "Adds two numbers.", "input": {"a": "number, ", "b": "number, "}})).unwrap()]
}

fn run(
    script: Vec<(Role, &'static str)>,
    mode: AgentMode,
    max_steps: usize,
) -> (
    umi_data::Trajectory,
    StopReason,
    Vec<AgentEvent>,
    ScriptedGenerator,
) {
    let mut agent = Agent::new(ScriptedGenerator::new(script), Calculator, docs());
    agent.config.mode = mode;
    agent.config.max_steps = max_steps;
    let mut events = Vec::new();
    let (trajectory, stop) =
        pollster::block_on(agent.run("What is 2 + 3?", |e| events.push(e.clone()))).unwrap();
    (trajectory, stop, events, agent.generator)
}

#[test]
fn call_then_conclude() {
    let (t, stop, events, generator) = run(
        vec![
            (
                Role::Planner,
                "I should add the numbers.\n Next: caller. trailing text is cut",
            ),
            (
                Role::Caller,
                "Action: add\nAction Input: {\"a\": 2, \"b\": 3}",
            ),
            (Role::Planner, "The tool says 5. Next: conclusion."),
            (Role::Summarizer, " 2 + 3 = 5."),
        ],
        AgentMode::Multi,
        10,
    );
    assert_eq!(stop, StopReason::Conclusion);
    assert_eq!(t.steps.len(), 2);
    assert_eq!(
        t.steps[0].observation.as_ref().unwrap().0,
        r#"{"error":"","response":5.0}"#
    );
    assert_eq!(t.final_answer.as_ref().unwrap().0, "2 + 3 = 5.");
    assert_eq!(
        events.last(),
        Some(&AgentEvent::Done(StopReason::Conclusion))
    );
    assert!(events.contains(&AgentEvent::Answer("2 + 3 = 5.".into())));
    // the prompts carry the history as the reference serialises it
    let (role, caller_prompt) = &generator.prompts[1];
    assert_eq!(*role, Role::Caller);
    assert!(caller_prompt.ends_with("The thought of this step is:\nI should add the numbers.\n Next: caller.\nBase on the thought make an api call in the following format:\nAction: the name of api that should be called in this step, should be exactly in [add],\nAction Input: the api call request. caller: "), "{caller_prompt}");
    let (_, second_planner) = &generator.prompts[2];
    assert!(second_planner.contains("caller: Action: add\nAction Input: {\"a\": 2, \"b\": 3}</s>observation: {\"error\":\"\",\"response\":5.0}\nYou are the assistant"), "{second_planner}");
    let (_, summarizer) = &generator.prompts[3];
    assert!(
        summarizer.starts_with(
            "Make a conclusion based on the conversation history:\nuser: What is 2 + 3?</s>"
        ) && summarizer.ends_with("assistant: The tool says 5. Next: conclusion.</s> conclusion: "),
        "{summarizer}"
    );
}

#[test]
fn error_paths_become_observations() {
    let (t, stop, _, _) = run(
        vec![
            (Role::Planner, "Call multiply. Next: caller."),
            (Role::Caller, "Action: multiply\nAction Input: {\"a\": 2}"),
            (Role::Planner, "Call add. Next: caller."),
            (Role::Caller, "Action: add\nAction Input: {a: 2, b: 3"),
            (Role::Planner, "Try again."), // no marker: goes to the caller (GLPFT default)
            (Role::Caller, "I am not sure what to call."),
            (Role::Planner, "Next: caller."),
            (
                Role::Caller,
                "Action: add\nAction Input: {\"a\": \"two\", \"b\": 3}",
            ),
            (Role::Planner, "I cannot do this. Next: give up."),
        ],
        AgentMode::Multi,
        10,
    );
    assert_eq!(stop, StopReason::GiveUp);
    let obs: Vec<&str> = t
        .steps
        .iter()
        .filter_map(|s| s.observation.as_ref().map(|o| o.0.as_str()))
        .collect();
    assert!(
        obs[0].contains("invalid_hallucination_function_name") && obs[0].contains("multiply"),
        "{}",
        obs[0]
    );
    assert!(
        obs[1].contains("Action Input is not a JSON object"),
        "{}",
        obs[1]
    );
    assert!(obs[2].contains("no action could be parsed"), "{}", obs[2]);
    assert!(obs[3].contains("a and b must be numbers"), "{}", obs[3]);
    assert_eq!(t.steps[2].planner_text, "Try again.Next: caller.");
    assert_eq!(t.steps[2].action.as_ref().unwrap().name, "none");
    assert_eq!(t.steps.last().unwrap().next, Next::GiveUp);
    assert!(t.final_answer.is_none());
}

#[test]
fn max_steps_stops_the_run() {
    let (t, stop, events, _) = run(
        vec![
            (Role::Planner, "Add. Next: caller."),
            (
                Role::Caller,
                "Action: add\nAction Input: {\"a\": 1, \"b\": 1}",
            ),
            (Role::Planner, "Add again. Next: caller."),
            (
                Role::Caller,
                "Action: add\nAction Input: {\"a\": 2, \"b\": 2}",
            ),
        ],
        AgentMode::Multi,
        2,
    );
    assert_eq!((stop, t.steps.len()), (StopReason::MaxSteps, 2));
    assert_eq!(events.last(), Some(&AgentEvent::Done(StopReason::MaxSteps)));
}

#[test]
fn single_llm_mode_uses_the_backbone_prompt_and_merged_history() {
    let (t, stop, _, generator) = run(
        vec![
            (
                Role::Backbone,
                "I should add.\nAction: add\nAction Input: {\"a\": 2, \"b\": 3}",
            ),
            (Role::Backbone, "It is 5.\nconclusion: 2 + 3 = 5."),
        ],
        AgentMode::Single,
        10,
    );
    assert_eq!(stop, StopReason::Conclusion);
    assert_eq!(t.final_answer.unwrap().0, "2 + 3 = 5.");
    let (_, second) = &generator.prompts[1];
    assert!(second.contains("user: What is 2 + 3?</s>assistant: I should add.\nAction: add\nAction Input: {\"a\": 2, \"b\": 3}</s>observation: "), "{second}");
    assert!(
        second.ends_with("or give up if you think you cannot answer this question.\n assistant: ")
    );
}

/// Counts characters as tokens and keeps `budget` of them.
struct Limited {
    budget: usize,
    inner: ScriptedGenerator,
}

impl Generator for Limited {
    async fn generate(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
    ) -> Result<String, GeneratorError> {
        self.inner.generate(role, prompt, stop).await
    }

    fn prompt_length(
        &mut self,
        _role: Role,
        prompt: &str,
    ) -> Result<Option<PromptLength>, GeneratorError> {
        Ok(Some(PromptLength {
            tokens: prompt.chars().count(),
            budget: self.budget,
        }))
    }
}

#[test]
fn tool_docs_that_do_not_fit_a_prompt_are_an_error_before_any_generation() {
    let give_up = || ScriptedGenerator::new(vec![(Role::Planner, "No. Next: give up.")]);
    // the template and the one tool's docs take about 600 characters
    let mut agent = Agent::new(
        Limited {
            budget: 300,
            inner: give_up(),
        },
        Calculator,
        docs(),
    );
    let err = pollster::block_on(agent.run("q", |_| {})).unwrap_err();
    assert!(matches!(err, AgentError::ToolDocs(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("the planner prompt with only its template and the tool docs (1 tools)"),
        "{err}"
    );
    assert!(agent.generator.inner.prompts.is_empty());
    // with room for them the run goes on
    agent.generator.budget = 4000;
    let (_, stop) = pollster::block_on(agent.run("q", |_| {})).unwrap();
    assert_eq!(stop, StopReason::GiveUp);

    // too many tools, whatever the model
    let many: Vec<_> = (0..=umi_data::prompt::MAX_TOOLS)
        .map(|i| serde_json::from_value(json!({"Name": format!("t{i}")})).unwrap())
        .collect();
    let mut agent = Agent::new(give_up(), Calculator, many);
    let err = pollster::block_on(agent.run("q", |_| {})).unwrap_err();
    assert!(
        err.to_string()
            .contains("1001 tools are listed, more than the 1000 a prompt may hold"),
        "{err}"
    );
}

#[test]
fn a_generator_failure_is_an_error() {
    let mut agent = Agent::new(ScriptedGenerator::new(vec![]), Calculator, docs());
    let err = pollster::block_on(agent.run("q", |_| {})).unwrap_err();
    assert!(err.to_string().contains("exhausted"), "{err}");
}

//! The α-UMi loop end to end against the real demo tool server on loopback: a scripted
//! generator asserts a whole multi-step trajectory, and the real SmolLM2 weights run one full
//! loop (the plumbing, not the answer quality).

use std::time::Duration;

use umi_agent::{Agent, AgentEvent, LlamaGenerator, ScriptedGenerator, StopReason};
use umi_data::Role;
use umi_model::burn::tensor::Device;
use umi_model::{GenerationConfig, load_model};
use umi_tests::default_model;
use umi_tools::server::serve;
use umi_tools::{HttpTools, load_tool_specs};

fn tools_at(url: &str) -> (HttpTools, Vec<serde_json::Map<String, serde_json::Value>>) {
    let docs = umi_tools::server::tool_docs(url).to_string();
    let specs = load_tool_specs(&docs, url).unwrap();
    let docs = specs.iter().map(|s| s.doc()).collect();
    (HttpTools::new(specs, Duration::from_secs(10)), docs)
}

#[test]
fn scripted_trajectory_against_the_tool_server() {
    let state = std::env::temp_dir().join(format!("umi-e2e-{}.json", std::process::id()));
    umi_tools::server::remove_state(&state);
    let server = serve("127.0.0.1:0", &state).unwrap();
    let (tools, docs) = tools_at(&server.url);
    let generator = ScriptedGenerator::new(vec![
        (
            Role::Planner,
            "I need the number of days first.\n Next: caller.",
        ),
        (
            Role::Caller,
            "Action: date_difference\nAction Input: {\"start_date\": \"2026-11-23\", \"end_date\": \"2026-12-25\"}",
        ),
        (Role::Planner, "Now convert the money.\n Next: caller."),
        (
            Role::Caller,
            "Action: convert_currency\nAction Input: {\"amount\": 100, \"from\": \"USD\", \"to\": \"EUR\"}",
        ),
        (Role::Planner, "Then note it.\n Next: caller."),
        (
            Role::Caller,
            "Action: add_todo\nAction Input: {\"title\": \"Christmas budget: 92.21 EUR\", \"due_date\": \"2026-12-25\"}",
        ),
        (Role::Planner, "I have everything. Next: conclusion."),
        (
            Role::Summarizer,
            "There are 32 days until 2026-12-25, 100 USD is 92.21 EUR, and I added a to-do.",
        ),
    ]);
    let mut agent = Agent::new(generator, tools, docs);
    let mut observations = Vec::new();
    let (t, stop) = pollster::block_on(agent.run(
        "Days until Christmas, 100 USD in EUR, and note it",
        |e| {
            if let AgentEvent::Observation { text, .. } = e {
                observations.push(text.clone());
            }
        },
    ))
    .unwrap();
    server.stop();
    assert_eq!(stop, StopReason::Conclusion);
    assert_eq!(t.steps.len(), 4);
    assert_eq!(observations[0], r#"{"error":"","response":{"days":32}}"#);
    assert!(
        observations[1].contains(r#""amount":92.21"#),
        "{}",
        observations[1]
    );
    assert!(
        observations[2].contains(r#""title":"Christmas budget: 92.21 EUR""#),
        "{}",
        observations[2]
    );
    // the to-do reached the server's persisted state: a new server on it lists the item
    let again = serve("127.0.0.1:0", &state).unwrap();
    let listed = ureq::get(&format!("{}/tools/list_todos", again.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    again.stop();
    assert!(listed.contains("Christmas budget"), "{listed}");
    umi_tools::server::remove_state(&state);
}

#[test]
fn smollm2_runs_one_full_loop_against_the_tool_server() {
    let Some(path) = default_model() else { return };
    let state = std::env::temp_dir().join(format!("umi-e2e-real-{}.json", std::process::id()));
    let server = serve("127.0.0.1:0", &state).unwrap();
    let (tools, docs) = tools_at(&server.url);
    let loaded = load_model(&path, &Device::flex()).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 24,
        ..Default::default()
    };
    let mut agent = Agent::new(LlamaGenerator::shared(loaded, config), tools, docs);
    agent.config.max_steps = 1;
    let mut events = Vec::new();
    let (t, stop) =
        pollster::block_on(agent.run("What is 12 times 7?", |e| events.push(e.clone()))).unwrap();
    server.stop();
    let _ = std::fs::remove_file(state);
    // one planner decision was made and the run ended cleanly, whatever the model wrote
    assert_eq!(t.steps.len(), 1);
    // the planner's prompt streamed its prefill to the end, then the step's events follow
    let streamed =
        |e: &&AgentEvent| matches!(e, AgentEvent::Prefill { .. } | AgentEvent::Text { .. });
    assert!(
        events.iter().any(|e| matches!(
            e,
            AgentEvent::Prefill { role: Role::Planner, done, total } if done == total && *total > 0
        )),
        "no complete planner prefill in {events:?}"
    );
    assert!(matches!(
        events.iter().find(|e| !streamed(e)),
        Some(AgentEvent::Rationale { step: 0, .. })
    ));
    assert_eq!(events.last(), Some(&AgentEvent::Done(stop)));
    if t.steps[0].next == umi_data::Next::Caller {
        assert!(
            t.steps[0].observation.is_some(),
            "a caller step always records an observation"
        );
    }
}

#[test]
fn tool_docs_longer_than_the_model_input_are_an_error_not_cut() {
    // the tiny GGUF model has a 128-token context; the 14 demo tools' docs take thousands
    let loaded = load_model(
        &umi_tests::assets().join("tiny/gguf/tiny-f32.gguf"),
        &Device::flex(),
    )
    .unwrap();
    let config = GenerationConfig {
        max_new_tokens: 8,
        ..Default::default()
    };
    let (tools, docs) = tools_at("http://127.0.0.1:9");
    let mut agent = Agent::new(LlamaGenerator::shared(loaded, config), tools, docs);
    agent.config.max_steps = 1;
    let err = pollster::block_on(agent.run("What is 12 times 7?", |_| {}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the planner prompt with only its template and the tool docs (14 tools)")
            && err.contains("more than the 120 the model keeps"),
        "{err}"
    );
}

/// A loopback endpoint that answers every request with `response`, or never answers.
fn fake_endpoint(response: Option<&'static str>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            match response {
                Some(r) => {
                    let _ = stream.write_all(r.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        }
    });
    url
}

#[test]
fn error_paths_through_http_make_a_whole_trajectory() {
    let state = std::env::temp_dir().join(format!("umi-e2e-errors-{}.json", std::process::id()));
    let server = serve("127.0.0.1:0", &state).unwrap();
    let broken = fake_endpoint(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\nconnection: close\r\n\r\nboom!",
    ));
    let silent = fake_endpoint(None);
    let mut docs = umi_tools::server::tool_docs(&server.url);
    let extra = serde_json::json!([
        {"Name": "weather", "function": "Weather now.", "input": {"city": "string, "}, "http": {"method": "GET", "url": format!("{broken}/weather")}},
        {"Name": "stocks", "function": "Stock price.", "input": {"symbol": "string, "}, "http": {"method": "GET", "url": format!("{silent}/stocks")}}
    ]);
    docs["tools"]
        .as_array_mut()
        .unwrap()
        .extend(extra.as_array().unwrap().iter().cloned());
    let specs = load_tool_specs(&docs.to_string(), "test").unwrap();
    let tool_docs = specs.iter().map(|s| s.doc()).collect();
    let tools = HttpTools::new(specs, Duration::from_millis(500));
    let generator = ScriptedGenerator::new(vec![
        (Role::Planner, "Check the weather. Next: caller."),
        (
            Role::Caller,
            "Action: weather\nAction Input: {\"city\": \"Paris\"}",
        ),
        (Role::Planner, "Check stocks. Next: caller."),
        (
            Role::Caller,
            "Action: stocks\nAction Input: {\"symbol\": \"ACME\"}",
        ),
        (Role::Planner, "Try a made-up tool. Next: caller."),
        (Role::Caller, "Action: teleport\nAction Input: {}"),
        (Role::Planner, "Use the calculator."), // no marker: caller
        (Role::Caller, "Action: calculator\nAction Input: {a: 1}"),
        (Role::Planner, "Compute properly. Next: caller."),
        (
            Role::Caller,
            "Action: calculator\nAction Input: {\"a\": 6, \"op\": \"divide\", \"b\": 0}",
        ),
    ]);
    let mut agent = Agent::new(generator, tools, tool_docs);
    agent.config.max_steps = 5;
    let (t, stop) = pollster::block_on(agent.run("Weather, stocks, and 6/0", |_| {})).unwrap();
    server.stop();
    let _ = std::fs::remove_file(state);
    assert_eq!(stop, StopReason::MaxSteps);
    let obs: Vec<String> = t
        .steps
        .iter()
        .map(|s| s.observation.clone().unwrap().0)
        .collect();
    assert!(
        obs[0].contains("HTTP 500") && obs[0].contains("boom!"),
        "{}",
        obs[0]
    );
    assert!(obs[1].contains("timeout calling stocks"), "{}", obs[1]);
    assert!(
        obs[2].contains("invalid_hallucination_function_name"),
        "{}",
        obs[2]
    );
    assert!(
        obs[3].contains("Action Input is not a JSON object"),
        "{}",
        obs[3]
    );
    assert!(
        obs[4].contains("HTTP 400") && obs[4].contains("division by zero"),
        "{}",
        obs[4]
    );
    assert_eq!(t.steps[3].planner_text, "Use the calculator.Next: caller.");
}

/// `run_query`, the workflow `umi run` and the web worker share: the tools of the specs are
/// called over HTTP with the query's settings, and the record is the run's; no tools and a
/// malformed allowed host are errors before anything is generated.
#[test]
fn run_query_answers_over_http_tools_with_the_query_settings() {
    use umi_agent::{AgentError, Query, run_query};
    let state = std::env::temp_dir().join(format!("umi-e2e-query-{}.json", std::process::id()));
    umi_tools::server::remove_state(&state);
    let server = serve("127.0.0.1:0", &state).unwrap();
    let docs = umi_tools::server::tool_docs(&server.url).to_string();
    let specs = load_tool_specs(&docs, &server.url).unwrap();
    let script = || {
        ScriptedGenerator::new(vec![
            (Role::Planner, "Convert it.\n Next: caller."),
            (
                Role::Caller,
                "Action: convert_currency\nAction Input: {\"amount\": 100, \"from\": \"USD\", \"to\": \"EUR\"}",
            ),
            (Role::Planner, "Done. Next: conclusion."),
            (Role::Summarizer, "100 USD is 92.21 EUR."),
        ])
    };
    let mut query = Query::new("What is 100 USD in EUR?");
    let mut events = 0;
    let record =
        pollster::block_on(run_query(script(), specs.clone(), &query, |_| events += 1)).unwrap();
    assert_eq!(record.stop_reason, StopReason::Conclusion);
    assert_eq!(record.conversation.instruction, "What is 100 USD in EUR?");
    let observation = record
        .conversation
        .conversations
        .iter()
        .find(|t| t.from == umi_data::Speaker::Observation)
        .expect("an observation turn");
    assert!(
        observation.value.contains(r#""amount":92.21"#),
        "{}",
        observation.value
    );
    assert!(events >= 5, "events reported: {events}");

    // the query's settings are the run's: one planner step at most
    query.config.max_steps = 1;
    let record = pollster::block_on(run_query(script(), specs.clone(), &query, |_| {})).unwrap();
    assert_eq!(record.stop_reason, StopReason::MaxSteps);

    let none = pollster::block_on(run_query(script(), Vec::new(), &query, |_| {}));
    assert!(matches!(none, Err(AgentError::ToolDocs(_))), "{none:?}");
    query.allow_hosts = vec!["http://not a host".into()];
    let bad = pollster::block_on(run_query(script(), specs, &query, |_| {}));
    assert!(matches!(bad, Err(AgentError::Tools(_))), "{bad:?}");
    server.stop();
}

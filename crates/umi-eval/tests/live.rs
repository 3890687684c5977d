//! `umi_eval::live` end to end: scripted models (`ScriptedGenerator`) against the real demo tool
//! server, in process, scored and reported.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use umi_agent::{AgentConfig, ScriptedGenerator, StopReason};
use umi_data::{Action, Role, Speaker};
use umi_eval::live::{
    LiveConfig, LiveEvent, LiveRecord, LiveReport, LiveTask, TaskKind, ToolSource, read_results,
    read_tasks, run_tasks,
};
use umi_tools::server::{serve, tool_docs};
use umi_tools::{HttpTools, ToolExecutor, load_tool_specs};

type TestResult = Result<(), Box<dyn Error>>;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live_tasks.jsonl")
}

/// A fresh folder under the system's temporary folder.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umi-eval-live-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the demo server answers for `input` to `convert_currency`: its `response.amount`.
fn server_amount(input: &str) -> f64 {
    let dir = scratch("probe");
    let state = dir.join("state.json");
    let server = serve("127.0.0.1:0", &state).unwrap();
    let specs = load_tool_specs(&tool_docs(&server.url).to_string(), &server.url).unwrap();
    let tools = HttpTools::new(specs, Duration::from_secs(5));
    let observation = pollster::block_on(tools.call(&Action {
        name: "convert_currency".into(),
        input: input.into(),
    }));
    server.stop();
    std::fs::remove_dir_all(&dir).unwrap();
    let v: Value = serde_json::from_str(&observation.0).unwrap();
    v["response"]["amount"]
        .as_f64()
        .unwrap_or_else(|| panic!("no amount in {}", observation.0))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn observations(record: &LiveRecord) -> Vec<&str> {
    record
        .trajectory
        .conversations
        .iter()
        .filter(|t| t.from == Speaker::Observation)
        .map(|t| t.value.as_str())
        .collect()
}

#[test]
fn the_fixture_reads_and_bad_files_name_their_line() -> TestResult {
    let tasks = read_tasks(&fixture())?;
    let kinds: Vec<TaskKind> = tasks.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, TaskKind::ALL);
    assert_eq!(tasks[1].expected, ["2026-12-03", "Thursday"]);
    assert!(tasks[3].give_up && tasks[3].expected.is_empty());

    let bad = scratch("bad").join("tasks.jsonl");
    let good = std::fs::read_to_string(fixture())?;
    let first = good.lines().next().unwrap();
    std::fs::write(
        &bad,
        format!("{first}\n{}\n", first.replace("one-tool", "three-tool")),
    )?;
    let e = read_tasks(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{} line 2: unknown variant `three-tool`",
            bad.display()
        )),
        "{e}"
    );
    let e = read_tasks(&bad.with_extension("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tasks.missing"), "{e}");
    std::fs::remove_dir_all(bad.parent().unwrap())?;
    Ok(())
}

#[test]
fn scripted_runs_on_the_demo_server_are_scored() -> TestResult {
    let usd_eur = r#"{"amount": 100, "from": "USD", "to": "EUR"}"#;
    let usd_gbp = r#"{"amount": 100, "from": "USD", "to": "GBP"}"#;
    let (eur, gbp) = (server_amount(usd_eur), server_amount(usd_gbp));
    let tasks = read_tasks(&fixture())?;
    let mut one = tasks[0].clone();
    one.expected = vec![eur.to_string()];
    let recover = LiveTask {
        id: "recover".into(),
        kind: TaskKind::ErrorRecovery,
        query: "What is 100 USD in GBP?".into(),
        expected: vec![gbp.to_string()],
        give_up: false,
        tools: vec!["convert_currency".into()],
    };
    let give_up = tasks[3].clone();
    let mut generator = ScriptedGenerator::new([
        // 1: one call, then the number the server gave: pass
        (Role::Planner, "I will convert the amount.\n Next: caller."),
        (
            Role::Caller,
            leak(format!("Action: convert_currency\nAction Input: {usd_eur}")),
        ),
        (Role::Planner, "I have the amount. Next: conclusion."),
        (Role::Summarizer, leak(format!(" 100 USD is {eur} EUR."))),
        // 2: a currency the server does not know (HTTP 400), the right call, a wrong number: fail
        (Role::Planner, "I will convert.\n Next: caller."),
        (
            Role::Caller,
            r#"Action: convert_currency
Action Input: {"amount": 100, "from": "USD", "to": "XYZ"}"#,
        ),
        (
            Role::Planner,
            "XYZ is not a currency; GBP it is.\n Next: caller.",
        ),
        (
            Role::Caller,
            leak(format!("Action: convert_currency\nAction Input: {usd_gbp}")),
        ),
        (Role::Planner, "Done. Next: conclusion."),
        (
            Role::Summarizer,
            leak(format!("100 USD is {:.2} GBP.", gbp + 1.0)),
        ),
        // 3: no tool books flights: giving up passes
        (Role::Planner, "No tool can book a flight. Next: give up."),
    ]);
    let state_dir = scratch("state");
    let mut config = LiveConfig::new(AgentConfig {
        max_steps: 6,
        ..AgentConfig::default()
    });
    config.tools = ToolSource::Fresh {
        state_dir: state_dir.clone(),
    };
    let (mut sink, mut events) = (Vec::new(), Vec::new());
    let records = pollster::block_on(run_tasks(
        &mut generator,
        &[one, recover, give_up],
        &config,
        &mut sink,
        |event| match event {
            LiveEvent::Started { index, task } => events.push(format!("{index} {}", task.id)),
            LiveEvent::Finished(r) => events.push(format!("{} {}", r.id, r.pass)),
            LiveEvent::Agent(_) => {}
        },
    ))?;
    assert_eq!(
        events,
        [
            "0 test-0001",
            "test-0001 true",
            "1 recover",
            "recover false",
            "2 test-0004",
            "test-0004 true"
        ]
    );
    assert_eq!(generator.prompts.len(), 11, "the script is used up");
    // every task starts a new history
    assert!(!generator.prompts[4].1.contains("100 USD in EUR"));

    let [one, recover, give_up] = &records[..] else {
        panic!("{} records", records.len());
    };
    assert_eq!(
        (
            one.pass,
            one.stop_reason,
            one.steps,
            one.tool_calls,
            one.tool_errors
        ),
        (true, StopReason::Conclusion, 2, 1, 0)
    );
    assert!(observations(one)[0].contains(&format!("\"amount\":{eur}")));
    let speakers: Vec<Speaker> = one
        .trajectory
        .conversations
        .iter()
        .map(|t| t.from)
        .collect();
    assert_eq!(
        speakers,
        [
            Speaker::User,
            Speaker::Assistant,
            Speaker::Caller,
            Speaker::Observation,
            Speaker::Assistant,
            Speaker::Conclusion
        ]
    );
    assert!(one.trajectory.tools.len() >= 12);
    assert_eq!(
        one.final_answer.as_deref(),
        Some(format!("100 USD is {eur} EUR.").as_str())
    );

    assert_eq!(
        (
            recover.pass,
            recover.stop_reason,
            recover.steps,
            recover.tool_calls,
            recover.tool_errors
        ),
        (false, StopReason::Conclusion, 3, 2, 1)
    );
    assert_eq!(recover.missing, [gbp.to_string()]);
    assert!(
        observations(recover)[0].contains("HTTP 400"),
        "{:?}",
        observations(recover)
    );

    assert_eq!(
        (
            give_up.pass,
            give_up.gave_up,
            give_up.stop_reason,
            give_up.steps,
            give_up.tool_calls
        ),
        (true, true, StopReason::GiveUp, 1, 0)
    );

    let report = LiveReport::new(&records);
    let all = &report.overall;
    assert_eq!(
        (all.tasks, all.passed, all.tool_calls, all.tool_errors),
        (3, 2, 3, 1)
    );
    assert!((all.pass_rate - 2.0 / 3.0).abs() < 1e-12);
    assert!((all.give_up_rate - 1.0 / 3.0).abs() < 1e-12);
    assert!((all.mean_steps - 2.0).abs() < 1e-12);
    assert!((all.tool_error_rate - 1.0 / 3.0).abs() < 1e-12);
    let kinds: Vec<TaskKind> = report.by_kind.keys().copied().collect();
    assert_eq!(
        kinds,
        [TaskKind::OneTool, TaskKind::ErrorRecovery, TaskKind::GiveUp]
    );
    let r = &report.by_kind[&TaskKind::ErrorRecovery];
    assert_eq!(
        (r.pass_rate, r.tool_error_rate, r.mean_steps),
        (0.0, 0.5, 3.0)
    );
    let g = &report.by_kind[&TaskKind::GiveUp];
    assert_eq!((g.pass_rate, g.give_up_rate), (1.0, 1.0));

    // the sink holds one line per task, which reads back as the records (a resumed run)
    let results = scratch("results").join("results.jsonl");
    std::fs::write(&results, &sink)?;
    assert_eq!(String::from_utf8(sink)?.lines().count(), 3);
    assert_eq!(read_results(&results)?, (records.clone(), false));
    // the per-task state files are gone
    assert_eq!(std::fs::read_dir(&state_dir)?.count(), 0);
    std::fs::remove_dir_all(&state_dir)?;
    std::fs::remove_dir_all(results.parent().unwrap())?;
    Ok(())
}

/// Two runs of "add a to-do": on fresh servers both get id 1; on one shared server the second
/// sees the first.
#[test]
fn tool_state_is_fresh_per_task_unless_the_server_is_shared() -> TestResult {
    let task = |id: &str| LiveTask {
        id: id.into(),
        kind: TaskKind::OneTool,
        query: "Add buy milk to my to-do list.".into(),
        expected: vec!["buy milk".into()],
        give_up: false,
        tools: vec!["add_todo".into()],
    };
    let tasks = [task("a"), task("b")];
    let script = || {
        ScriptedGenerator::new([
            (Role::Planner, "Add it.\n Next: caller."),
            (
                Role::Caller,
                "Action: add_todo\nAction Input: {\"title\": \"buy milk\"}",
            ),
            (Role::Planner, "Added. Next: conclusion."),
            (Role::Summarizer, "I added \"Buy  milk\" to your list."),
            (Role::Planner, "Add it.\n Next: caller."),
            (
                Role::Caller,
                "Action: add_todo\nAction Input: {\"title\": \"buy milk\"}",
            ),
            (Role::Planner, "Added. Next: conclusion."),
            (Role::Summarizer, "I added \"Buy  milk\" to your list."),
        ])
    };
    let ids = |records: &[LiveRecord]| -> Vec<u64> {
        records
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_str(observations(r)[0]).unwrap();
                v["response"]["id"].as_u64().unwrap()
            })
            .collect()
    };
    let state_dir = scratch("fresh");
    let mut config = LiveConfig::new(AgentConfig::default());
    config.tools = ToolSource::Fresh {
        state_dir: state_dir.clone(),
    };
    let records = pollster::block_on(run_tasks(
        &mut script(),
        &tasks,
        &config,
        &mut std::io::sink(),
        |_| {},
    ))?;
    assert!(records.iter().all(|r| r.pass));
    assert_eq!(ids(&records), [1, 1]);
    assert_eq!(std::fs::read_dir(&state_dir)?.count(), 0);

    let shared_state = scratch("shared").join("state.json");
    let server = serve("127.0.0.1:0", &shared_state)?;
    config.tools = ToolSource::External(load_tool_specs(
        &tool_docs(&server.url).to_string(),
        &server.url,
    )?);
    let records = pollster::block_on(run_tasks(
        &mut script(),
        &tasks,
        &config,
        &mut std::io::sink(),
        |_| {},
    ))?;
    server.stop();
    assert_eq!(ids(&records), [1, 2]);
    std::fs::remove_dir_all(&state_dir)?;
    std::fs::remove_dir_all(shared_state.parent().unwrap())?;
    Ok(())
}

//! `umi_tools::synth`: deterministic for a seed, observations that a fresh demo server gives
//! again, answers that state the expected facts, and test tasks held apart from training.

use std::collections::HashSet;
use std::time::Duration;

use umi_data::{Next, PromptSet, Role, Speaker, parse_action, role_samples};
use umi_tools::synth::{SynthConfig, TaskKind, synthesize};
use umi_tools::{HttpTools, ToolExecutor, load_tool_specs, server, truncate_observation};

fn small() -> SynthConfig {
    SynthConfig {
        seed: 7,
        train: 60,
        test: 40,
        all_tools_share: 0.5,
        extra_phrasings: false,
        plan_parts: false,
        worked_steps: false,
        paraphrase: false,
        valid: 0,
    }
}

#[test]
fn same_seed_same_output_other_seed_other_output() {
    let a = synthesize(&small(), |_, _| {}).unwrap();
    let b = synthesize(&small(), |_, _| {}).unwrap();
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);
    let c = synthesize(&SynthConfig { seed: 8, ..small() }, |_, _| {}).unwrap();
    assert_ne!(a.train, c.train);
}

#[test]
fn recorded_observations_are_what_a_fresh_server_answers() {
    let out = synthesize(&small(), |_, _| {}).unwrap();
    for (k, conversation) in out.train.iter().chain(&out.test_gold).enumerate() {
        let state =
            std::env::temp_dir().join(format!("umi-synth-replay-{}-{k}.json", std::process::id()));
        server::remove_state(&state);
        let handle = server::serve("127.0.0.1:0", &state).unwrap();
        let docs = server::tool_docs(&handle.url).to_string();
        let tools = HttpTools::new(
            load_tool_specs(&docs, "test").unwrap(),
            Duration::from_secs(10),
        );
        let turns = &conversation.conversations;
        for (i, turn) in turns.iter().enumerate() {
            if turn.from != Speaker::Caller {
                continue;
            }
            let action = parse_action(&turn.value).expect("caller turns parse");
            let replayed = pollster::block_on(tools.call(&action)).0;
            let recorded = &turns[i + 1];
            assert_eq!(recorded.from, Speaker::Observation);
            // Ports differ between runs; the demo server's answers do not mention them.
            assert_eq!(
                recorded.value,
                truncate_observation(&replayed, 1024),
                "trajectory {k}, turn {i}: {}",
                conversation.instruction
            );
        }
        handle.stop();
        server::remove_state(&state);
    }
}

#[test]
fn trajectories_are_well_formed_alpha_umi() {
    let out = synthesize(&small(), |_, _| {}).unwrap();
    assert_eq!(out.train.len(), 60);
    assert_eq!(out.test.len(), 40);
    for c in out.train.iter().chain(&out.test_gold) {
        let names: Vec<&str> = c.tools.iter().filter_map(|t| t["Name"].as_str()).collect();
        let turns = &c.conversations;
        assert_eq!(turns[0].from, Speaker::User);
        assert_eq!(turns[0].value, c.instruction);
        let planner = role_samples(c, Role::Planner, PromptSet::ToolBench);
        assert!(!planner.is_empty());
        for s in &planner {
            let markers = [Next::Caller, Next::Conclusion, Next::GiveUp]
                .iter()
                .filter(|n| s.target.ends_with(n.marker()))
                .count();
            assert_eq!(markers, 1, "planner target {:?}", s.target);
        }
        for s in role_samples(c, Role::Caller, PromptSet::ToolBench) {
            let action = parse_action(&s.target).unwrap();
            assert!(
                names.contains(&action.name.as_str()),
                "{} not in {names:?}",
                action.name
            );
            assert!(action.input_json().is_some_and(|v| v.is_object()));
        }
        let last = turns.last().unwrap();
        match last.from {
            Speaker::Conclusion => {
                assert!(turns[turns.len() - 2].value.ends_with("Next: conclusion."))
            }
            Speaker::Assistant => assert!(last.value.ends_with("Next: give up.")),
            other => panic!("trajectory ends with {other:?}"),
        }
    }
}

#[test]
fn test_answers_state_the_expected_facts_and_kinds_are_mixed() {
    let out = synthesize(&small(), |_, _| {}).unwrap();
    for (task, gold) in out.test.iter().zip(&out.test_gold) {
        assert_eq!(task.inconsistency(), None, "{task:?}");
        let last = gold.conversations.last().unwrap();
        if task.give_up {
            assert_eq!(task.kind, TaskKind::GiveUp);
            assert!(task.expected.is_empty());
            assert!(last.value.ends_with("Next: give up."));
        } else {
            assert!(!task.expected.is_empty(), "{task:?}");
            assert_eq!(last.from, Speaker::Conclusion);
            for fact in &task.expected {
                assert!(
                    last.value.contains(fact.as_str()),
                    "{fact:?} not in {:?}",
                    last.value
                );
            }
        }
        // Test prompts list every demo tool, as `umi run` does.
        assert_eq!(
            gold.tools.len(),
            server::tool_docs("x")["tools"].as_array().unwrap().len()
        );
    }
    for kind in TaskKind::ALL {
        assert!(out.test.iter().any(|t| t.kind == kind), "no {kind:?} task");
    }
    let multi = out.test.iter().filter(|t| t.kind == TaskKind::MultiTool);
    assert!(multi.clone().all(|t| t.tools.len() >= 2));
    let recovery = out
        .test_gold
        .iter()
        .zip(&out.test)
        .filter(|(_, t)| t.kind == TaskKind::ErrorRecovery);
    for (gold, _) in recovery {
        assert!(
            gold.conversations
                .iter()
                .any(|t| t.from == Speaker::Observation && t.value.contains("HTTP 400")),
            "error-recovery task without a failed call: {}",
            gold.instruction
        );
    }
}

#[test]
fn test_queries_are_held_apart_from_training() {
    for extra_phrasings in [false, true] {
        held_apart(&SynthConfig {
            seed: 3,
            train: 400,
            test: 100,
            all_tools_share: 0.5,
            extra_phrasings,
            plan_parts: extra_phrasings,
            worked_steps: extra_phrasings,
            paraphrase: extra_phrasings,
            valid: 0,
        });
    }
}

/// With the train-only phrasings, training queries take shapes the default never gives, and
/// the test tasks a seed draws on their own stay the same.
#[test]
fn extra_phrasings_reach_training_only() {
    let config = |extra_phrasings, train| SynthConfig {
        seed: 5,
        train,
        test: 40,
        all_tools_share: 0.5,
        extra_phrasings,
        plan_parts: false,
        worked_steps: false,
        paraphrase: false,
        valid: 0,
    };
    let run = |c: SynthConfig| synthesize(&c, |_, _| {}).unwrap();
    assert_eq!(run(config(false, 0)).test, run(config(true, 0)).test);
    let opening = |q: &str| q.split(' ').take(3).collect::<Vec<_>>().join(" ");
    let default: HashSet<String> = run(config(false, 400))
        .train
        .iter()
        .map(|c| opening(&c.instruction))
        .collect();
    let extra = run(config(true, 200));
    let new: Vec<&str> = extra
        .train
        .iter()
        .map(|c| c.instruction.as_str())
        .filter(|q| !default.contains(&opening(q)))
        .collect();
    assert!(
        new.len() >= 10,
        "only {} of 200 training queries open in a new way: {new:?}",
        new.len()
    );
}

/// With paraphrase, the test tasks a seed draws on their own stay the same; training queries
/// get greetings and closings, and two-part date questions that ask for the weekday first are
/// served weekday first, concluding only once both facts are in.
#[test]
fn paraphrase_reaches_training_only() {
    let config = |paraphrase, train| SynthConfig {
        seed: 13,
        train,
        test: 40,
        all_tools_share: 0.5,
        extra_phrasings: false,
        plan_parts: false,
        worked_steps: false,
        paraphrase,
        valid: 0,
    };
    let run = |c: SynthConfig| synthesize(&c, |_, _| {}).unwrap();
    assert_eq!(run(config(false, 0)).test, run(config(true, 0)).test);
    let out = run(config(true, 600));
    let framed = out
        .train
        .iter()
        .filter(|c| {
            [
                "Quick question: ",
                "Hi! ",
                "Hey there. ",
                "For my planning: ",
            ]
            .iter()
            .any(|o| c.instruction.starts_with(o))
                || c.instruction.ends_with(" Thanks!")
        })
        .count();
    assert!(framed >= 10, "only {framed} of 600 training queries framed");
    let mut weekday_first = 0;
    for c in &out.train {
        let calls: Vec<String> = c
            .conversations
            .iter()
            .filter(|t| t.from == Speaker::Caller)
            .map(|t| parse_action(&t.value).unwrap().name)
            .collect();
        if calls != ["weekday", "date_difference"] {
            continue;
        }
        weekday_first += 1;
        let last = c.conversations.last().unwrap();
        assert_eq!(last.from, Speaker::Conclusion, "{}", c.instruction);
        let plans: Vec<&str> = c
            .conversations
            .iter()
            .filter(|t| t.from == Speaker::Assistant)
            .map(|t| t.value.as_str())
            .collect();
        assert_eq!(plans.len(), 3, "{plans:?}");
        assert!(plans[1].ends_with("Next: caller."), "{plans:?}");
        assert!(plans[2].contains("I have both"), "{plans:?}");
    }
    assert!(
        weekday_first >= 2,
        "only {weekday_first} weekday-first chains among 600 tasks"
    );
    held_apart(&config(true, 400));
}

/// Validation tasks leave the test tasks and, without train-only phrasings, the training data
/// as they were; with them, training never uses the held-out phrasings the validation queries
/// are asked in.
#[test]
fn validation_tasks_are_asked_in_held_out_phrasings() {
    let config = |extra, valid| SynthConfig {
        seed: 17,
        train: 300,
        test: 40,
        all_tools_share: 0.5,
        extra_phrasings: extra,
        plan_parts: false,
        worked_steps: false,
        paraphrase: extra,
        valid,
    };
    let run = |c: SynthConfig| synthesize(&c, |_, _| {}).unwrap();
    let (plain, with_valid) = (run(config(false, 0)), run(config(false, 30)));
    assert_eq!(plain.train, with_valid.train);
    assert_eq!(plain.test, with_valid.test);
    assert!(plain.valid.is_empty());
    assert_eq!(with_valid.valid.len(), 30);
    let out = run(config(true, 80));
    assert_eq!(out.valid[0].id, "valid-0001");
    // a phrasing's opening words (digits dropped) stand for it: the held-out phrasings open
    // in ways no training query does
    let opening = |q: &str| {
        q.split(' ')
            .take(3)
            .map(|w| {
                w.chars()
                    .filter(|c| !c.is_ascii_digit())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let train: HashSet<&str> = out.train.iter().map(|c| c.instruction.as_str()).collect();
    let train_openings: HashSet<String> = train.iter().map(|q| opening(q)).collect();
    let test: HashSet<&str> = out.test.iter().map(|t| t.query.as_str()).collect();
    let mut new_openings = 0;
    let mut asked = 0;
    for task in &out.valid {
        assert!(!train.contains(task.query.as_str()), "{}", task.query);
        assert!(!test.contains(task.query.as_str()), "{}", task.query);
        assert_eq!(task.give_up, task.kind == TaskKind::GiveUp);
        if task.kind != TaskKind::GiveUp {
            assert!(!task.expected.is_empty(), "{}", task.query);
            asked += 1;
            if !train_openings.contains(&opening(&task.query)) {
                new_openings += 1;
            }
        }
    }
    assert!(
        new_openings * 2 >= asked,
        "only {new_openings} of {asked} validation queries open in a way training does not"
    );
}

/// With plan_parts, the test tasks and every training query stay as they were; each training
/// multi-tool chain opens by naming its parts and ends on a step saying they are all done.
#[test]
fn plan_parts_change_training_rationales_only() {
    let config = |plan_parts| SynthConfig {
        seed: 9,
        train: 120,
        test: 40,
        all_tools_share: 0.5,
        extra_phrasings: false,
        plan_parts,
        worked_steps: false,
        paraphrase: false,
        valid: 0,
    };
    let plain = synthesize(&config(false), |_, _| {}).unwrap();
    let planned = synthesize(&config(true), |_, _| {}).unwrap();
    assert_eq!(plain.test, planned.test);
    assert_eq!(plain.test_gold, planned.test_gold);
    let queries = |o: &umi_tools::synth::SynthOutput| -> Vec<String> {
        o.train.iter().map(|c| c.instruction.clone()).collect()
    };
    assert_eq!(queries(&plain), queries(&planned));
    let planner_turns = |c: &umi_data::Conversation| -> Vec<String> {
        c.conversations
            .iter()
            .filter(|t| t.from == Speaker::Assistant)
            .map(|t| t.value.clone())
            .collect()
    };
    let mut chains = 0;
    for ((c, kind), before) in planned
        .train
        .iter()
        .zip(&planned.train_kinds)
        .zip(&plain.train)
    {
        let steps = planner_turns(c);
        if *kind != TaskKind::MultiTool {
            assert_eq!(steps, planner_turns(before), "{}", c.instruction);
            continue;
        }
        chains += 1;
        let first = &steps[0];
        let names_parts = ["two things", "Two steps", "Three steps", "(1)"]
            .iter()
            .any(|p| first.contains(p));
        assert!(
            names_parts,
            "first step names no parts: {first:?} ({})",
            c.instruction
        );
        let last = steps.last().unwrap();
        assert!(
            last.ends_with("Next: conclusion.")
                && (last.contains("done") || last.contains("answered") || last.contains("left")),
            "last step does not say every part is done: {last:?}"
        );
        for middle in &steps[1..steps.len() - 1] {
            assert!(
                middle.contains("done") || middle.contains("Done") || middle.contains("are in"),
                "a middle step says nothing about progress: {middle:?}"
            );
        }
    }
    assert!(
        chains >= 20,
        "only {chains} multi-tool chains among 120 tasks"
    );
}

/// With worked_steps, the test tasks and every training query stay as they were, and each
/// training planner step before a calculator, add_days or date_difference call, or before a
/// retried alarm or weekday, works the step out in words: the `op`, the signed day count, why
/// date_difference, the hour + 12, the day, month and year.
#[test]
fn worked_steps_change_training_rationales_only() {
    let config = |worked_steps| SynthConfig {
        seed: 11,
        train: 240,
        test: 40,
        all_tools_share: 0.5,
        extra_phrasings: false,
        plan_parts: false,
        worked_steps,
        paraphrase: false,
        valid: 0,
    };
    let plain = synthesize(&config(false), |_, _| {}).unwrap();
    let worked = synthesize(&config(true), |_, _| {}).unwrap();
    assert_eq!(plain.test, worked.test);
    assert_eq!(plain.test_gold, worked.test_gold);
    let queries = |o: &umi_tools::synth::SynthOutput| -> Vec<String> {
        o.train.iter().map(|c| c.instruction.clone()).collect()
    };
    assert_eq!(queries(&plain), queries(&worked));
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for c in &worked.train {
        let turns = &c.conversations;
        for (i, turn) in turns.iter().enumerate().skip(1) {
            if turn.from != Speaker::Caller || turns[i - 1].from != Speaker::Assistant {
                continue;
            }
            let plan = &turns[i - 1].value;
            let action = parse_action(&turn.value).expect("the generator writes actions");
            let args: serde_json::Value = serde_json::from_str(&action.input).unwrap();
            // a retry follows the tool's rejection of the first call's format
            let rejected = |why: &str| {
                i >= 2
                    && turns[i - 2].from == Speaker::Observation
                    && turns[i - 2].value.contains(why)
            };
            let (family, ok) = match action.name.as_str() {
                "calculator" => {
                    let op = args["op"].as_str().unwrap();
                    (
                        "calculator",
                        plan.contains(&format!("op {op}"))
                            || plan.contains(&format!("op \"{op}\"")),
                    )
                }
                "add_days" => {
                    let n = args["days"].as_i64().unwrap();
                    let sign = if n < 0 { "negative" } else { "forward" };
                    (
                        "add_days",
                        plan.contains(&format!("days {n}"))
                            && (plan.contains(sign)
                                || plan.contains("not a day count")
                                || plan.contains("earlier")
                                || plan.contains("positive")),
                    )
                }
                "date_difference" => (
                    "date_difference",
                    plan.contains("not add_days")
                        || plan.contains("add_days would")
                        || plan.contains("A day count"),
                ),
                "set_alarm" if rejected("is not HH:MM") => {
                    let (hh, _) = args["time"].as_str().unwrap().split_once(':').unwrap();
                    (
                        "alarm retry",
                        plan.contains("24-hour") && plan.contains(&format!(" {hh}")),
                    )
                }
                "weekday" if rejected("is not YYYY-MM-DD") => (
                    "weekday retry",
                    plan.contains("day, month") || plan.contains(", month "),
                ),
                _ => continue,
            };
            assert!(
                ok,
                "{family} step not worked out: {plan:?} before {:?} ({})",
                action.input, c.instruction
            );
            *seen.entry(family).or_default() += 1;
        }
    }
    for family in [
        "calculator",
        "add_days",
        "date_difference",
        "alarm retry",
        "weekday retry",
    ] {
        assert!(
            seen.get(family).copied().unwrap_or(0) >= 1,
            "no {family} step among 240 tasks: {seen:?}"
        );
    }
}

fn held_apart(config: &SynthConfig) {
    let out = synthesize(config, |_, _| {}).unwrap();
    let train: HashSet<&str> = out.train.iter().map(|c| c.instruction.as_str()).collect();
    let test_queries: Vec<&str> = out.test.iter().map(|t| t.query.as_str()).collect();
    for q in &test_queries {
        assert!(!train.contains(q), "test query also in training: {q}");
    }
    // Phrasings are held apart too: strip the values (digits) and compare the shapes of
    // non-give-up queries.
    let shape = |q: &str| {
        q.chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    };
    let train_shapes: HashSet<String> = train.iter().map(|q| shape(q)).collect();
    let overlap = out
        .test
        .iter()
        .filter(|t| t.kind != TaskKind::GiveUp && train_shapes.contains(&shape(&t.query)))
        .count();
    assert!(
        overlap * 10 <= out.test.len(),
        "{overlap} test queries have a training shape"
    );
}

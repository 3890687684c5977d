//! Live tasks run concurrently (`umi_eval::live::run_tasks_batched`, continuous batching)
//! give the records that running them one after another gives: the shipped α-UMi agent on
//! SmolLM2 (Q8_0, whose products do not depend on the batch) over one task of each kind, each
//! against a fresh demo server.

use umi_agent::{AgentConfig, Batcher, LlamaGenerator};
use umi_eval::live::{LiveConfig, LiveRecord, run_tasks, run_tasks_batched};
use umi_model::burn::tensor::Device;
use umi_model::{GenerationConfig, load_model, read_peft};
use umi_tests::{assets, default_model};
use umi_tools::synth::{SynthConfig, synthesize};

fn shipped_agent(path: &std::path::Path) -> LlamaGenerator {
    let device = Device::flex();
    let mut loaded = load_model(path, &device).unwrap();
    let dir = assets().join("agent/smollm2-135m-instruct");
    let set = |role: &str| {
        read_peft(&loaded.model, &dir.join(role), &device)
            .unwrap()
            .1
    };
    let (planner, caller, summarizer) = (set("planner"), set("caller"), set("summarizer"));
    loaded.model.quantize(umi_model::QFormat::Q8_0);
    loaded.model.kv_cache_f16 = true;
    let config = GenerationConfig {
        max_new_tokens: 160,
        ..Default::default()
    };
    let mut generator = LlamaGenerator::with_adapters(loaded, planner, caller, summarizer, config);
    generator.use_chat_template = false;
    // every prompt prefilled whole on both paths, so that the order in which the prompts
    // arrive (which differs) cannot change what a prefix cache holds
    generator.plain = true;
    generator
}

/// What a record says, without its time.
fn comparable(mut r: LiveRecord) -> LiveRecord {
    r.seconds = 0.0;
    r
}

#[test]
fn batched_live_tasks_equal_tasks_run_one_by_one() {
    let Some(path) = default_model() else { return };
    let synth = synthesize(
        &SynthConfig {
            train: 0,
            test: 20,
            ..SynthConfig::default()
        },
        |_, _| {},
    )
    .unwrap();
    // one-tool, multi-tool, error recovery, give-up (of every 20: 8, 6, 3, 3)
    let tasks: Vec<_> = [0, 8, 14, 17]
        .into_iter()
        .map(|i| synth.test[i].clone())
        .collect();
    let config = LiveConfig::new(AgentConfig::default());

    let mut sequential = Vec::new();
    let want = pollster::block_on(run_tasks(
        &mut shipped_agent(&path),
        &tasks,
        &config,
        &mut sequential,
        |_| {},
    ))
    .unwrap();

    let batcher = Batcher::new(shipped_agent(&path), 3);
    let mut batched = Vec::new();
    let mut started = Vec::new();
    let got = pollster::block_on(run_tasks_batched(
        &batcher,
        &tasks,
        &config,
        3,
        &mut batched,
        |event| {
            if let umi_eval::live::LiveEvent::Started { index, .. } = event {
                started.push(index);
            }
        },
    ))
    .unwrap();
    assert_eq!(started, vec![0, 1, 2, 3]);
    // every record written as a JSON line
    assert_eq!(
        String::from_utf8(batched).unwrap().lines().count(),
        tasks.len()
    );
    let mut got: Vec<LiveRecord> = got.into_iter().map(comparable).collect();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let mut want: Vec<LiveRecord> = want.into_iter().map(comparable).collect();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, want);
    // the runs did something worth comparing: tool calls and more than one outcome
    assert!(want.iter().map(|r| r.tool_calls).sum::<usize>() >= 3);
    let steps: std::collections::BTreeSet<usize> = want.iter().map(|r| r.steps).collect();
    assert!(steps.len() >= 2, "steps {steps:?}");
}

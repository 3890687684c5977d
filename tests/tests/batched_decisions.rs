//! Decisions predicted concurrently through `umi_agent::Batcher` (their generations decoded
//! together, continuous batching) equal the same decisions predicted one after another
//! (issue 13: "same predictions as the unbatched, uncached path for greedy decoding").

use std::ops::ControlFlow;

use umi_agent::{AgentMode, Batcher, LlamaGenerator};
use umi_data::{Conversation, PromptSet};
use umi_eval::{DecisionPoint, decision_points, predict};
use umi_model::burn::tensor::Device;
use umi_model::{GenerationConfig, load_model};
use umi_tests::{assets, shared_data};

/// The tiny model in Q8_0, whose products do not depend on the batch; 24 new tokens, so that
/// the 128-token context keeps the end of each (left-truncated) ToolBench prompt.
fn generator(plain: bool) -> LlamaGenerator {
    let mut loaded =
        load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), &Device::flex()).unwrap();
    loaded.model.quantize(umi_model::QFormat::Q8_0);
    let config = GenerationConfig {
        max_new_tokens: 24,
        ..Default::default()
    };
    let mut generator = LlamaGenerator::shared(loaded, config);
    generator.plain = plain;
    generator
}

fn points() -> Vec<DecisionPoint> {
    let path = shared_data().join("alpha-umi-toolbench/ood-train/out_of_domain_train300.json");
    let conversations: Vec<Conversation> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    conversations
        .iter()
        .take(8)
        .flat_map(decision_points)
        .take(16)
        .collect()
}

fn one_by_one(plain: bool, mode: AgentMode, points: &[DecisionPoint]) -> Vec<String> {
    let mut generator = generator(plain);
    points
        .iter()
        .map(|p| {
            pollster::block_on(predict(&mut generator, mode, PromptSet::ToolBench, p)).unwrap()
        })
        .collect()
}

fn batched(
    plain: bool,
    mode: AgentMode,
    points: &[DecisionPoint],
    batch: usize,
) -> (Vec<String>, Vec<usize>) {
    let batcher = Batcher::new(generator(plain), batch);
    let runs = points.iter().map(|p| {
        let mut handle = batcher.handle();
        async move { predict(&mut handle, mode, PromptSet::ToolBench, p).await }
    });
    let mut out = vec![None; points.len()];
    let mut order = Vec::new();
    pollster::block_on(batcher.run(runs, batch, |i, prediction| {
        out[i] = Some(prediction.unwrap());
        order.push(i);
        ControlFlow::Continue(())
    }))
    .unwrap();
    (out.into_iter().map(Option::unwrap).collect(), order)
}

#[test]
fn batched_decisions_equal_decisions_one_by_one() {
    let points = points();
    assert_eq!(points.len(), 16);
    for mode in [AgentMode::Multi, AgentMode::Single] {
        // without prefix reuse every prompt is prefilled whole on both paths: identical
        let want = one_by_one(true, mode, &points);
        // distinct outputs, so that an answer given to the wrong decision would show (the
        // tiny model's single-LLM outputs are all alike: that mode checks the backbone's slot)
        let distinct: std::collections::BTreeSet<&String> = want.iter().collect();
        if mode == AgentMode::Multi {
            assert!(
                distinct.len() >= 5,
                "{} distinct predictions",
                distinct.len()
            );
        }
        let (got, order) = batched(true, mode, &points, 4);
        assert_eq!(got, want, "{mode:?}");
        assert_eq!(order.len(), points.len());
        // the same with each role's prefix cache on both paths
        let want_cached = one_by_one(false, mode, &points);
        let (got_cached, _) = batched(false, mode, &points, 3);
        assert_eq!(got_cached, want_cached, "{mode:?} with prefix caches");
        // a batch of one is the sequential path
        assert_eq!(batched(true, mode, &points, 1).0, want, "{mode:?}");
    }
}

#[test]
fn a_stop_from_the_output_callback_ends_the_run() {
    let points = points();
    let batcher = Batcher::new(generator(true), 2);
    let runs = points.iter().map(|p| {
        let mut handle = batcher.handle();
        async move { predict(&mut handle, AgentMode::Multi, PromptSet::ToolBench, p).await }
    });
    let mut seen = 0;
    pollster::block_on(batcher.run(runs, 2, |_, _| {
        seen += 1;
        ControlFlow::Break(())
    }))
    .unwrap();
    assert_eq!(seen, 1);
}

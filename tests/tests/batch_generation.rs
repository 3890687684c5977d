//! Batched generation (`umi_model::generate_many`): one prompt continued by several sequences in
//! one batch (its keys and values shared) gives every sequence what generating it alone gives.

use umi_model::burn::tensor::Device;
use umi_model::{
    FinishReason, GenerationConfig, GenerationOutput, LoadedModel, PrefixCache, generate,
    generate_many, load_model,
};
use umi_tests::assets;

fn tiny(quantize: bool) -> LoadedModel {
    let mut loaded =
        load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), &Device::flex()).unwrap();
    if quantize {
        loaded.model.quantize(umi_model::QFormat::Q8_0);
    }
    loaded
}

fn alone(loaded: &LoadedModel, prompt: &[u32], config: &GenerationConfig) -> GenerationOutput {
    pollster::block_on(generate(
        &loaded.model,
        &loaded.tokenizer,
        prompt,
        config,
        |_| true,
    ))
    .unwrap()
}

/// Greedy and sampled sequences of different lengths, one cut by a stop string taken from the
/// greedy text, so that rows leave the batch at different steps.
fn configs(loaded: &LoadedModel, prompt: &[u32]) -> Vec<GenerationConfig> {
    let greedy = GenerationConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    let text = alone(loaded, prompt, &greedy).text;
    let stop: String = text.chars().skip(4).take(2).collect();
    assert!(!stop.is_empty(), "the greedy text {text:?} is too short");
    let sampled = |seed, max_new_tokens| GenerationConfig {
        max_new_tokens,
        temperature: 0.9,
        top_p: 0.95,
        seed,
        ..Default::default()
    };
    vec![
        greedy.clone(),
        GenerationConfig {
            max_new_tokens: 3,
            ..greedy.clone()
        },
        GenerationConfig {
            stop_strings: vec![stop],
            ..greedy
        },
        sampled(1, 12),
        sampled(2, 7),
        sampled(3, 12),
        GenerationConfig {
            max_new_tokens: 0,
            ..Default::default()
        },
    ]
}

fn check(quantize: bool, include_sampled: bool) {
    let loaded = tiny(quantize);
    let prompt = [1u32, 17, 42, 99, 3, 250, 7, 128];
    let configs: Vec<GenerationConfig> = configs(&loaded, &prompt)
        .into_iter()
        .filter(|c| include_sampled || c.temperature == 0.0)
        .collect();
    let mut prefix = PrefixCache::new();
    let batch = pollster::block_on(generate_many(
        &loaded.model,
        &loaded.tokenizer,
        &prompt,
        &configs,
        &mut prefix,
    ))
    .unwrap();
    assert_eq!(batch.len(), configs.len());
    assert_eq!(
        prefix.newest_tokens(),
        prompt.len(),
        "the prompt is left in the prefix cache"
    );
    let mut reasons = Vec::new();
    for (config, got) in configs.iter().zip(&batch) {
        let want = alone(&loaded, &prompt, config);
        assert_eq!(got.tokens, want.tokens, "{config:?}");
        assert_eq!(got.text, want.text, "{config:?}");
        assert_eq!(got.finish_reason, want.finish_reason, "{config:?}");
        reasons.push(got.finish_reason.clone());
    }
    // the rows really stopped for different reasons at different steps
    assert!(
        reasons
            .iter()
            .any(|r| matches!(r, FinishReason::StopString(_)))
    );
    assert!(reasons.contains(&FinishReason::Length));
    let lengths: std::collections::BTreeSet<usize> = batch.iter().map(|o| o.tokens.len()).collect();
    assert!(lengths.len() >= 3, "lengths {lengths:?}");

    // the second call reuses the whole prompt but its last token
    let again = pollster::block_on(generate_many(
        &loaded.model,
        &loaded.tokenizer,
        &prompt,
        &configs[..1],
        &mut prefix,
    ))
    .unwrap();
    assert_eq!(again[0].cached_tokens, prompt.len() - 1);
    assert_eq!(again[0].tokens, batch[0].tokens);
}

/// With Q8_0 weights every projection is computed per row; attention sums the shared prompt
/// and the own positions separately, which can round differently from one sequence's sum, but
/// on this fixture even the sampled draws agree.
#[test]
fn batched_sequences_equal_sequences_generated_alone_q8() {
    check(true, true);
}

/// In f32 the batched products may round differently from one row's: greedy tokens agree.
#[test]
fn batched_greedy_sequences_equal_sequences_generated_alone_f32() {
    check(false, false);
}

#[test]
fn bad_batches_are_errors() {
    let loaded = tiny(false);
    let run = |prompt: &[u32], configs: &[GenerationConfig]| {
        pollster::block_on(generate_many(
            &loaded.model,
            &loaded.tokenizer,
            prompt,
            configs,
            &mut PrefixCache::new(),
        ))
        .unwrap_err()
        .to_string()
    };
    assert!(run(&[1, 2], &[]).contains("no sequences"));
    assert!(run(&[], &[GenerationConfig::default()]).contains("empty"));
    let too_long = GenerationConfig {
        max_new_tokens: 1_000_000,
        ..Default::default()
    };
    assert!(run(&[1, 2], &[too_long]).contains("context"));
    let bad = GenerationConfig {
        top_p: 2.0,
        max_new_tokens: 4,
        ..Default::default()
    };
    assert!(run(&[1, 2], &[bad]).contains("top_p"));
}

/// Continuous batching (`RaggedBatch`): prompts of different lengths, joining at different
/// steps, with different configs; each sequence gets what generating it alone gives.
fn check_ragged(quantize: bool, include_sampled: bool) {
    let loaded = tiny(quantize);
    let prompts: [&[u32]; 4] = [
        &[1, 17, 42, 99, 3, 250, 7, 128],
        &[1, 5],
        &[1, 17, 42, 99, 3, 11, 12, 13, 14, 15, 16, 230, 231],
        &[1, 200, 201, 202, 203],
    ];
    let configs: Vec<GenerationConfig> = configs(&loaded, prompts[0])
        .into_iter()
        .filter(|c| include_sampled || c.temperature == 0.0)
        .collect();
    // (prompt, config) per sequence; sequence i joins before step i / 2
    let jobs: Vec<(&[u32], GenerationConfig)> = (0..8)
        .map(|i| {
            (
                prompts[i % prompts.len()],
                configs[i % configs.len()].clone(),
            )
        })
        .collect();
    let mut batch = umi_model::RaggedBatch::new();
    let mut prefix = PrefixCache::new();
    let mut done: Vec<Option<GenerationOutput>> = vec![None; jobs.len()];
    let mut joined = 0;
    let mut step = 0;
    let mut widest = 0;
    while done.iter().any(Option::is_none) {
        while joined < jobs.len() && joined / 2 <= step {
            let (prompt, config) = &jobs[joined];
            pollster::block_on(batch.join(
                &loaded.model,
                joined,
                prompt,
                config.clone(),
                &mut prefix,
            ))
            .unwrap();
            joined += 1;
        }
        widest = widest.max(batch.len());
        for (i, output) in pollster::block_on(batch.step(&loaded.model, &loaded.tokenizer)).unwrap()
        {
            assert!(
                done[i].replace(output).is_none(),
                "sequence {i} finished twice"
            );
        }
        step += 1;
        assert!(step < 100, "the batch never drained");
    }
    assert!(batch.is_empty());
    assert!(widest >= 4, "at most {widest} sequences ran together");
    // generated alone, in join order, through a prefix cache that sees the same prompts, so
    // each prompt is prefilled in the same pieces (other pieces may round differently on
    // quantized weights: which cached prompt serves a join is the cache's business, tested in
    // tiny_model.rs)
    let mut replay = PrefixCache::new();
    for ((prompt, config), got) in jobs.iter().zip(&done) {
        let got = got.as_ref().unwrap();
        let want = pollster::block_on(umi_model::generate_cached(
            &loaded.model,
            &loaded.tokenizer,
            prompt,
            config,
            &mut replay,
            |_| true,
        ))
        .unwrap();
        assert_eq!(got.cached_tokens, want.cached_tokens, "{prompt:?}");
        assert_eq!(got.tokens, want.tokens, "{prompt:?} {config:?}");
        assert_eq!(got.text, want.text, "{prompt:?} {config:?}");
        assert_eq!(
            got.finish_reason, want.finish_reason,
            "{prompt:?} {config:?}"
        );
        assert_eq!(got.prompt_tokens, prompt.len());
    }
    // the sequences stopped at different steps
    let lengths: std::collections::BTreeSet<usize> = done
        .iter()
        .map(|o| o.as_ref().unwrap().tokens.len())
        .collect();
    assert!(lengths.len() >= 3, "lengths {lengths:?}");
}

/// Q8_0: every projection is computed per row and attention per sequence, so even the sampled
/// draws agree.
#[test]
fn ragged_sequences_equal_sequences_generated_alone_q8() {
    check_ragged(true, true);
}

#[test]
fn ragged_greedy_sequences_equal_sequences_generated_alone_f32() {
    check_ragged(false, false);
}

#[test]
fn bad_ragged_joins_are_errors_and_join_nothing() {
    let loaded = tiny(false);
    let mut batch = umi_model::RaggedBatch::new();
    let mut join = |prompt: &[u32], config: GenerationConfig| {
        pollster::block_on(batch.join(&loaded.model, 0, prompt, config, &mut PrefixCache::new()))
            .unwrap_err()
            .to_string()
    };
    assert!(join(&[], GenerationConfig::default()).contains("empty"));
    let too_long = GenerationConfig {
        max_new_tokens: 1_000_000,
        ..Default::default()
    };
    assert!(join(&[1, 2], too_long).contains("context"));
    let bad = GenerationConfig {
        top_p: 2.0,
        max_new_tokens: 4,
        ..Default::default()
    };
    assert!(join(&[1, 2], bad).contains("top_p"));
    assert!(batch.is_empty());
}

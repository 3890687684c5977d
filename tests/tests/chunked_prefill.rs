//! Chunked prefill (`GenerationConfig::prefill_chunk`): the prompt goes through the model in
//! pieces, progress is reported around each, a stop between pieces keeps what was done, and the
//! result is what a one-pass prefill gives.

use umi_model::burn::tensor::Device;
use umi_model::{
    FinishReason, GenerationConfig, LoadedModel, PrefixCache, Progress, generate_cached, load_model,
};
use umi_tests::assets;

fn tiny() -> LoadedModel {
    load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), &Device::flex()).unwrap()
}

fn prompt(loaded: &LoadedModel) -> Vec<u32> {
    let ids = loaded
        .tokenizer
        .encode(
            "the quick brown fox jumps over the lazy dog and runs far away",
            true,
        )
        .unwrap();
    assert!(ids.len() >= 10, "a prompt of {} tokens", ids.len());
    ids
}

/// Runs `generate_cached`, recording every progress report as `Some((done, total))` for the
/// prefill and `None` for a token; `stop_after` reports stops it.
fn run(
    loaded: &LoadedModel,
    ids: &[u32],
    config: &GenerationConfig,
    prefix: &mut PrefixCache,
    stop_after: Option<usize>,
) -> (umi_model::GenerationOutput, Vec<Option<(usize, usize)>>) {
    let mut seen = Vec::new();
    let out = pollster::block_on(generate_cached(
        &loaded.model,
        &loaded.tokenizer,
        ids,
        config,
        prefix,
        |p| {
            seen.push(match p {
                Progress::Prefill { done, total } => Some((done, total)),
                Progress::Token { .. } => None,
            });
            stop_after != Some(seen.len())
        },
    ))
    .unwrap();
    (out, seen)
}

#[test]
fn a_chunked_prefill_reports_progress_and_generates_what_one_pass_does() {
    let loaded = tiny();
    let ids = prompt(&loaded);
    let n = ids.len();
    let whole = GenerationConfig {
        max_new_tokens: 8,
        ..Default::default()
    };
    let (reference, seen) = run(&loaded, &ids, &whole, &mut PrefixCache::new(), None);
    assert_eq!(
        &seen[..2],
        &[Some((0, n)), Some((n, n))],
        "one pass: before and after"
    );
    assert!(seen[2..].iter().all(Option::is_none));

    let chunked = GenerationConfig {
        prefill_chunk: 4,
        ..whole.clone()
    };
    let (out, seen) = run(&loaded, &ids, &chunked, &mut PrefixCache::new(), None);
    let mut want: Vec<Option<(usize, usize)>> = (0..n).step_by(4).map(|d| Some((d, n))).collect();
    want.push(Some((n, n)));
    let prefill: Vec<_> = seen.iter().copied().filter(Option::is_some).collect();
    assert_eq!(prefill, want, "progress before and after every chunk of 4");
    assert_eq!(
        out.tokens, reference.tokens,
        "the same greedy tokens as one pass"
    );
    assert_eq!(out.text, reference.text);
}

#[test]
fn a_stop_during_the_prefill_keeps_the_chunks_done_for_the_next_call() {
    let loaded = tiny();
    let ids = prompt(&loaded);
    let config = GenerationConfig {
        max_new_tokens: 8,
        prefill_chunk: 4,
        ..Default::default()
    };
    let (reference, _) = run(&loaded, &ids, &config, &mut PrefixCache::new(), None);

    // stop at the third report: after two chunks (8 tokens)
    let mut prefix = PrefixCache::new();
    let (stopped, seen) = run(&loaded, &ids, &config, &mut prefix, Some(3));
    assert_eq!(stopped.finish_reason, FinishReason::Cancelled);
    assert!(stopped.tokens.is_empty() && stopped.text.is_empty());
    assert_eq!(seen.len(), 3, "nothing runs after the stop");
    assert_eq!(prefix.newest_tokens(), 8, "the two chunks done are kept");

    // stopped before anything ran
    let mut empty = PrefixCache::new();
    let (stopped, _) = run(&loaded, &ids, &config, &mut empty, Some(1));
    assert_eq!(stopped.finish_reason, FinishReason::Cancelled);
    assert_eq!(empty.len(), 0);

    let (resumed, seen) = run(&loaded, &ids, &config, &mut prefix, None);
    assert_eq!(
        resumed.cached_tokens, 8,
        "the next call starts after the kept chunks"
    );
    assert_eq!(seen[0], Some((0, ids.len() - 8)));
    assert_eq!(resumed.tokens, reference.tokens);
}

//! The Llama forward pass against an independent reference: `assets/tiny/make_tiny.py` writes
//! tiny random Llamas (GQA, untied head; tied; f16, bf16, sharded) as Hugging Face safetensors
//! and their logits from a float64 numpy implementation of `transformers`' Llama.

use umi_model::burn::tensor::{Device, Tensor};
use umi_tests::{assert_close, assets, load_folder, logits, reference_cases};

/// Checks every reference folder's logits on `device`.
fn check_parity(device: &Device, rtol: f64, atol: f64) {
    for (folder, cases) in reference_cases() {
        let model = load_folder(&assets().join("tiny").join(&folder), device);
        for case in cases {
            let got = logits(&model, &case.tokens, &mut model.new_cache());
            let what = format!("{folder} logits for {:?}", case.tokens);
            assert_close(&got, &case.logits, rtol, atol, &what);
        }
    }
}

#[test]
fn logits_match_the_numpy_reference_for_every_layout_and_dtype() {
    assert_eq!(reference_cases().len(), 5, "gqa, f16, bf16, sharded, tied");
    check_parity(&Device::flex(), 1e-4, 1e-5);
}

#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    let device = Device::flex();
    let model = load_folder(&assets().join("tiny/llama-gqa"), &device);
    let tokens = [1u32, 17, 42, 99, 3, 250, 7, 128, 64, 5];
    let full = logits(&model, &tokens, &mut model.new_cache());
    let vocab = model.config.vocab_size;
    // prefill 4 tokens, then one at a time, then a chunk of 2
    let mut cache = model.new_cache();
    let mut incremental = logits(&model, &tokens[..4], &mut cache);
    for t in &tokens[4..8] {
        incremental.extend(logits(&model, &[*t], &mut cache));
    }
    incremental.extend(logits(&model, &tokens[8..], &mut cache));
    assert_eq!(cache[0].len(), tokens.len());
    let want: Vec<f64> = full.iter().map(|&v| v as f64).collect();
    assert_close(
        &incremental,
        &want,
        1e-5,
        1e-5,
        "incremental vs full logits",
    );
    assert_eq!(incremental.len(), tokens.len() * vocab);
}

#[test]
fn a_fresh_lora_adapter_leaves_the_model_unchanged_and_a_trained_one_does_not() {
    let device = Device::flex();
    let mut model = load_folder(&assets().join("tiny/llama-gqa"), &device);
    let tokens = [1u32, 17, 42, 99];
    let base = logits(&model, &tokens, &mut model.new_cache());
    for layer in &mut model.layers {
        let q = std::mem::replace(
            &mut layer.self_attn.q_proj,
            umi_model::LoraLinear::new(Tensor::zeros([1, 1], &device)),
        );
        layer.self_attn.q_proj = q.with_lora(4, 8.0, &device);
    }
    let fresh = logits(&model, &tokens, &mut model.new_cache());
    let want: Vec<f64> = base.iter().map(|&v| v as f64).collect();
    assert_close(&fresh, &want, 1e-6, 1e-6, "fresh adapter (B = 0)");
    // a non-zero B must change the output
    let lora = model.layers[0].self_attn.q_proj.lora.as_mut().unwrap();
    lora.b =
        umi_model::burn::module::Param::from_tensor(Tensor::ones([4, 64], &device).mul_scalar(0.1));
    let changed = logits(&model, &tokens, &mut model.new_cache());
    let max_diff = changed
        .iter()
        .zip(&base)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff > 1e-3, "adapter had no effect ({max_diff})");
}

/// A prefix cache holds several prompts: each lookup reuses the longest prefix any of them
/// shares with the new prompt (also one stored before an unrelated prompt, as when several
/// trajectories are decided at once) and gives the logits computed from scratch; beyond its
/// bound on prompts the least recently used one goes.
#[test]
fn a_prefix_cache_reuses_the_shared_tokens_and_gives_the_fresh_logits() {
    use umi_model::PrefixCache;
    let device = Device::flex();
    let model = load_folder(&assets().join("tiny/llama-gqa"), &device);
    let first = [1u32, 17, 42, 99, 3, 250, 7, 128];
    // shares 5 tokens with `first`, then differs; then one equal to `second`; then unrelated;
    // then `first` continued (its entry outlived the two after it); then `fourth` continued
    let second = [1u32, 17, 42, 99, 3, 11, 12, 13, 14];
    let third = second;
    let fourth = [2u32, 17, 42];
    let fifth = [1u32, 17, 42, 99, 3, 250, 7, 128, 5, 6];
    let sixth = [2u32, 17, 42, 200];
    let mut prefix = PrefixCache::new();
    for (prompt, reused, entries) in [
        (&first[..], 0, 1),
        (&second[..], 5, 2),
        (&third[..], 8, 2),
        (&fourth[..], 0, 3),
        (&fifth[..], 8, 3), // `first` is a prefix of `fifth`: it goes
        (&sixth[..], 3, 3), // likewise `fourth`
    ] {
        assert_eq!(prefix.reusable(prompt), reused, "{prompt:?}");
        let (taken, mut cache) = prefix.take_prefix(prompt, &model);
        assert_eq!(taken, reused);
        assert_eq!(cache[0].len(), reused);
        let got = logits(&model, &prompt[reused..], &mut cache);
        prefix.store(prompt, &cache);
        assert_eq!(prefix.len(), entries, "prompts held after {prompt:?}");
        assert_eq!(prefix.newest_tokens(), prompt.len());
        assert!(prefix.bytes() > 0);
        let vocab = model.config.vocab_size;
        let fresh = logits(&model, prompt, &mut model.new_cache());
        let want: Vec<f64> = fresh[fresh.len() - vocab..]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_close(
            &got[got.len() - vocab..],
            &want,
            1e-5,
            1e-5,
            &format!("last-position logits of {prompt:?} after reusing {reused}"),
        );
    }

    // bounded to two prompts: the least recently used goes, and a lookup counts as a use
    let mut small = PrefixCache::with_limits(2, usize::MAX);
    let store = |cache: &mut PrefixCache, prompt: &[u32]| {
        let (n, mut layers) = cache.take_prefix(prompt, &model);
        logits(&model, &prompt[n..], &mut layers);
        cache.store(prompt, &layers);
    };
    store(&mut small, &first);
    store(&mut small, &fourth);
    assert_eq!(small.take_prefix(&fifth, &model).0, 8, "`first` used again");
    store(&mut small, &[7, 8, 9]);
    assert_eq!(small.len(), 2);
    assert_eq!(small.reusable(&fifth), 8, "`first` was used last: kept");
    assert_eq!(
        small.reusable(&sixth),
        0,
        "`fourth` was the least recently used"
    );
    // a byte bound below one prompt keeps just the newest
    let mut tight = PrefixCache::with_limits(8, 1);
    store(&mut tight, &first);
    store(&mut tight, &fourth);
    assert_eq!(
        (tight.len(), tight.reusable(&sixth), tight.reusable(&fifth)),
        (1, 3, 0)
    );
    tight.clear();
    assert!(tight.is_empty() && tight.bytes() == 0);
}

/// Sequences continuing one prompt through a shared prefix (`KvCache::share_prefix`: the
/// prompt's keys and values held once, own positions per sequence) give each sequence's logits
/// as computed from scratch, for several new tokens at a time (the causal mask of the own
/// positions), one at a time, and after a sequence leaves the batch (`select_rows`).
#[test]
fn sequences_sharing_a_prefix_get_their_own_logits() {
    use umi_model::burn::tensor::{Int, TensorData};
    let device = Device::flex();
    let model = load_folder(&assets().join("tiny/llama-gqa"), &device);
    let vocab = model.config.vocab_size;
    let prompt = [1u32, 17, 42, 99, 3];
    let rows: [[u32; 4]; 3] = [[5, 6, 7, 8], [9, 10, 11, 12], [250, 7, 128, 3]];
    let forward = |tokens: Vec<Vec<u32>>, cache: &mut [umi_model::KvCache]| -> Vec<f32> {
        let (b, t) = (tokens.len(), tokens[0].len());
        let ids: Vec<i64> = tokens.concat().iter().map(|&x| x as i64).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        model
            .forward(input, cache)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
    };
    // each row alone, from scratch: logits of its 4 new positions
    let alone: Vec<Vec<f32>> = rows
        .iter()
        .map(|row| {
            let all: Vec<u32> = prompt.iter().chain(row).copied().collect();
            let l = logits(&model, &all, &mut model.new_cache());
            l[prompt.len() * vocab..].to_vec()
        })
        .collect();
    let want = |r: usize, from: usize, to: usize| -> Vec<f64> {
        alone[r][from * vocab..to * vocab]
            .iter()
            .map(|&v| f64::from(v))
            .collect()
    };

    let mut cache = model.new_cache();
    logits(&model, &prompt, &mut cache);
    cache.iter_mut().for_each(umi_model::KvCache::share_prefix);
    assert_eq!(cache[0].shared_len(), prompt.len());
    // three positions at once for every row
    let got = forward(rows.iter().map(|r| r[..3].to_vec()).collect(), &mut cache);
    for r in 0..3 {
        let what = format!("row {r}, positions 0..3");
        assert_close(
            &got[r * 3 * vocab..(r + 1) * 3 * vocab],
            &want(r, 0, 3),
            1e-5,
            1e-5,
            &what,
        );
    }
    assert_eq!(cache[0].len(), prompt.len() + 3);
    // row 1 leaves; rows 2 and 0 (in that order) take their last token
    cache.iter_mut().for_each(|l| l.select_rows(&[2, 0]));
    let got = forward(vec![vec![rows[2][3]], vec![rows[0][3]]], &mut cache);
    assert_close(
        &got[..vocab],
        &want(2, 3, 4),
        1e-5,
        1e-5,
        "row 2, position 3",
    );
    assert_close(
        &got[vocab..],
        &want(0, 3, 4),
        1e-5,
        1e-5,
        "row 0, position 3",
    );
}

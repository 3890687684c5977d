//! One backbone, three adapters (issue 6, item 4): `LlamaGenerator::with_adapters` swaps each
//! role's PEFT adapters into a single backbone and must generate exactly what three separately
//! adapted models generate, in any order of roles.

use std::rc::Rc;

use umi_agent::{Generator, LlamaGenerator};
use umi_data::Role;
use umi_model::burn::module::Param;
use umi_model::burn::tensor::{Distribution, Tensor};
use umi_model::{
    Device, GenerationConfig, LoadedModel, LoraConfig, attach_lora, load_model, load_peft,
    read_peft, save_peft,
};
use umi_tests::assets;

fn tiny(device: &Device) -> LoadedModel {
    load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), device).unwrap()
}

/// Writes a PEFT adapter with random, non-zero `B` (a fresh one would equal the base model).
fn random_adapter(dir: &std::path::Path, seed: u64, device: &Device) {
    let mut model = tiny(device).model;
    let config = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
    };
    device.seed(seed);
    attach_lora(&mut model, &config, seed, device).unwrap();
    for (_, p) in model.projections_mut() {
        if let Some(lora) = &mut p.lora {
            let shape = lora.b.val().shape();
            lora.b = Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.5),
                device,
            ));
        }
    }
    save_peft(&model, &config, None, dir).unwrap();
}

/// Three random adapters in `tmp/{planner,caller,summarizer}`, seeded `first_seed`, `+1`, `+2`;
/// their folders in that order.
fn role_adapter_dirs(
    tmp: &std::path::Path,
    first_seed: u64,
    device: &Device,
) -> Vec<std::path::PathBuf> {
    ["planner", "caller", "summarizer"]
        .iter()
        .zip(first_seed..)
        .map(|(role, seed)| {
            let dir = tmp.join(role);
            random_adapter(&dir, seed, device);
            dir
        })
        .collect()
}

#[test]
fn one_backbone_with_role_adapters_equals_three_adapted_models() {
    let device = Device::flex();
    let tmp = std::env::temp_dir().join(format!("umi-role-adapters-{}", std::process::id()));
    let dirs = role_adapter_dirs(&tmp, 11, &device);

    let config = GenerationConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    // Reference: three models, each with its adapter attached the ordinary way.
    let adapted = |dir: &std::path::Path| {
        let mut m = tiny(&device);
        load_peft(&mut m.model, dir, &device).unwrap();
        Rc::new(m)
    };
    let mut three = LlamaGenerator::per_role(
        adapted(&dirs[0]),
        adapted(&dirs[1]),
        adapted(&dirs[2]),
        config.clone(),
    );
    // One backbone, adapters swapped per role.
    let backbone = tiny(&device);
    let sets: Vec<_> = dirs
        .iter()
        .map(|d| read_peft(&backbone.model, d, &device).unwrap().1)
        .collect();
    assert!(
        backbone
            .model
            .projections()
            .iter()
            .all(|(_, p)| p.lora.is_none()),
        "read_peft leaves the backbone without adapters"
    );
    assert_eq!(sets[0].len(), 2 * 3, "2 layers × 3 targeted projections");
    let [p, c, s]: [_; 3] = sets.try_into().unwrap();
    let mut shared = LlamaGenerator::with_adapters(backbone, p, c, s, config.clone());
    // The base model without adapters, to show the adapters matter.
    let mut base = LlamaGenerator::shared(tiny(&device), config);

    let prompt = "the quick brown fox";
    let mut outputs = Vec::new();
    for role in [
        Role::Planner,
        Role::Caller,
        Role::Planner,
        Role::Summarizer,
        Role::Caller,
        Role::Backbone,
    ] {
        let want = pollster::block_on(three.generate(role, prompt, &[])).unwrap();
        let got = pollster::block_on(shared.generate(role, prompt, &[])).unwrap();
        assert_eq!(got, want, "{role:?}: shared backbone vs own model");
        outputs.push((role, got));
    }
    let base_text = pollster::block_on(base.generate(Role::Planner, prompt, &[])).unwrap();
    let distinct: std::collections::HashSet<_> = outputs
        .iter()
        .map(|(_, t)| t.clone())
        .chain([base_text])
        .collect();
    assert!(
        distinct.len() >= 3,
        "the adapters should change the generations: {outputs:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn role_adapters_merged_at_each_swap_equal_three_merged_models() {
    let device = Device::flex();
    let tmp = std::env::temp_dir().join(format!("umi-merged-roles-{}", std::process::id()));
    let dirs = role_adapter_dirs(&tmp, 21, &device);
    let config = GenerationConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    let models = |merge: bool| {
        let model = |dir: &std::path::Path| {
            let mut m = tiny(&device);
            load_peft(&mut m.model, dir, &device).unwrap();
            if merge {
                umi_model::merge_lora(&mut m.model);
            }
            Rc::new(m)
        };
        LlamaGenerator::per_role(
            model(&dirs[0]),
            model(&dirs[1]),
            model(&dirs[2]),
            config.clone(),
        )
    };
    // references: each role's adapter merged into its own model, and attached
    let (mut merged, mut attached) = (models(true), models(false));
    let backbone = tiny(&device);
    let sets: Vec<_> = dirs
        .iter()
        .map(|d| read_peft(&backbone.model, d, &device).unwrap().1)
        .collect();
    let [p, c, s]: [_; 3] = sets.try_into().unwrap();
    let mut shared = LlamaGenerator::with_adapters(backbone, p, c, s, config.clone());
    assert!(
        !shared.merges_adapters(),
        "on the CPU backend adapters stay attached by default"
    );
    shared.set_merge_adapters(true);
    assert!(shared.merges_adapters());
    let prompt = "the quick brown fox";
    let roles = [
        Role::Planner,
        Role::Caller,
        Role::Planner,
        Role::Summarizer,
        Role::Caller,
        Role::Backbone,
    ];
    // the texts, and two log-probabilities read from the logits: bit for bit the same
    // products (greedy texts alone would not tell merged from attached, which differ by
    // rounding only)
    let logprobs = |g: &mut LlamaGenerator, role| {
        pollster::block_on(g.choice_logprobs(role, prompt, " jumps", " runs")).unwrap()
    };
    let mut texts = Vec::new();
    for role in roles {
        let want = pollster::block_on(merged.generate(role, prompt, &[])).unwrap();
        let got = pollster::block_on(shared.generate(role, prompt, &[])).unwrap();
        assert_eq!(got, want, "{role:?}: merged at the swap vs merged once");
        let (want, got) = (logprobs(&mut merged, role), logprobs(&mut shared, role));
        assert_eq!(
            got, want,
            "{role:?}: log-probabilities, merged at the swap vs once"
        );
        let attached = logprobs(&mut attached, role);
        assert_ne!(
            got, attached,
            "{role:?}: merged and attached round differently"
        );
        texts.push(pollster::block_on(shared.generate(role, prompt, &[])).unwrap());
    }
    let distinct: std::collections::HashSet<_> = texts.iter().collect();
    assert!(distinct.len() >= 3, "the adapters should differ: {texts:?}");
    // and back to attached adapters: what attached models generate (fresh ones: where a
    // prompt's prefill splits between a cached prefix and new tokens moves the roundings, and
    // the swap back cleared the shared generator's prefix caches)
    let mut attached = models(false);
    shared.set_merge_adapters(false);
    assert!(!shared.merges_adapters());
    for role in roles {
        let want = pollster::block_on(attached.generate(role, prompt, &[])).unwrap();
        let got = pollster::block_on(shared.generate(role, prompt, &[])).unwrap();
        assert_eq!(got, want, "{role:?}: attached again vs attached models");
        let (want, got) = (logprobs(&mut attached, role), logprobs(&mut shared, role));
        assert_eq!(got, want, "{role:?}: log-probabilities, attached again");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn generation_with_a_prefix_cache_equals_generation_from_scratch() {
    use umi_model::{PrefixCache, generate, generate_cached};
    let device = Device::flex();
    let loaded = tiny(&device);
    let config = GenerationConfig {
        max_new_tokens: 10,
        ..Default::default()
    };
    let mut prefix = PrefixCache::new();
    let prompts = [
        "the quick brown fox jumps over the lazy dog",
        "the quick brown fox jumps over the lazy cat and runs",
        "the quick brown fox jumps over the lazy cat and runs",
        "a different start",
    ];
    let mut reused = Vec::new();
    for text in prompts {
        let ids = loaded.tokenizer.encode(text, true).unwrap();
        let fresh = pollster::block_on(generate(
            &loaded.model,
            &loaded.tokenizer,
            &ids,
            &config,
            |_| true,
        ))
        .unwrap();
        let cached = pollster::block_on(generate_cached(
            &loaded.model,
            &loaded.tokenizer,
            &ids,
            &config,
            &mut prefix,
            |_| true,
        ))
        .unwrap();
        assert_eq!(cached.tokens, fresh.tokens, "{text:?}");
        assert_eq!(fresh.cached_tokens, 0);
        reused.push((cached.cached_tokens, ids.len()));
    }
    assert_eq!(reused[0].0, 0, "nothing cached before the first prompt");
    assert!(reused[1].0 > 3, "the shared words are reused: {reused:?}");
    assert_eq!(
        reused[2].0,
        reused[2].1 - 1,
        "an equal prompt reruns only its last token"
    );
    assert!(
        reused[3].0 <= 1,
        "an unrelated prompt shares at most BOS: {reused:?}"
    );
}

#[test]
fn an_adapter_from_bytes_equals_the_adapter_from_its_folder() {
    use umi_model::peft_from_bytes;
    let device = Device::flex();
    let dir = std::env::temp_dir().join(format!("umi-peft-bytes-{}", std::process::id()));
    random_adapter(&dir, 5, &device);
    let from_dir = tiny(&device);
    let (config, set) = read_peft(&from_dir.model, &dir, &device).unwrap();
    let text = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let from_bytes = tiny(&device);
    let (config2, set2) = peft_from_bytes(
        &from_bytes.model,
        &text,
        &bytes,
        "adapter_config.json",
        "adapter_model.safetensors",
        &device,
    )
    .unwrap();
    assert_eq!(config2, config);
    assert_eq!(
        (set2.len(), set.len()),
        (6, 6),
        "2 layers × 3 targeted projections"
    );
    assert!(
        from_bytes
            .model
            .projections()
            .iter()
            .all(|(_, p)| p.lora.is_none()),
        "the model is not changed"
    );
    let config = GenerationConfig {
        max_new_tokens: 8,
        ..Default::default()
    };
    let empty = umi_model::AdapterSet::default();
    let mut a =
        LlamaGenerator::with_adapters(from_dir, set, empty.clone(), empty.clone(), config.clone());
    let mut b = LlamaGenerator::with_adapters(from_bytes, set2, empty.clone(), empty, config);
    let prompt = "the quick brown fox";
    assert_eq!(
        pollster::block_on(a.generate(Role::Planner, prompt, &[])).unwrap(),
        pollster::block_on(b.generate(Role::Planner, prompt, &[])).unwrap()
    );
    // a truncated weights file is an error naming it
    let err = peft_from_bytes(
        &tiny(&device).model,
        &text,
        &bytes[..bytes.len() / 2],
        "agent/planner/adapter_config.json",
        "agent/planner/adapter_model.safetensors",
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("agent/planner/adapter_model.safetensors"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The judge's verdict logits (`LlamaGenerator::choice_logprobs`, psrlm-design.md §2.5.2) equal
/// the log-softmax of one full forward of the common token prefix under the role's adapter, with
/// or without the prefix cache, and another role's adapter gives other values.
#[test]
fn choice_logprobs_equal_a_full_forward_under_the_role_adapter() {
    use umi_model::burn::tensor::{Int, TensorData};
    let device = Device::flex();
    let tmp = std::env::temp_dir().join(format!("umi-choice-{}", std::process::id()));
    random_adapter(&tmp.join("planner"), 5, &device);
    random_adapter(&tmp.join("caller"), 6, &device);
    let backbone = tiny(&device);
    let (_, planner) = read_peft(&backbone.model, &tmp.join("planner"), &device).unwrap();
    let (_, caller) = read_peft(&backbone.model, &tmp.join("caller"), &device).unwrap();
    let mut generator = LlamaGenerator::with_adapters(
        backbone,
        planner,
        caller,
        Default::default(),
        GenerationConfig::default(),
    );
    generator.use_chat_template = false;

    let mut adapted = tiny(&device);
    load_peft(&mut adapted.model, &tmp.join("planner"), &device).unwrap();
    let expected = |prompt: &str| {
        let a = adapted
            .tokenizer
            .encode(&format!("{prompt}[[A]]"), true)
            .unwrap();
        let b = adapted
            .tokenizer
            .encode(&format!("{prompt}[[B]]"), true)
            .unwrap();
        let k = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let ids: Vec<i64> = a[..k].iter().map(|&t| t as i64).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, k]), &device);
        let logits: Vec<f32> = adapted
            .model
            .forward(input, &mut adapted.model.new_cache())
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let vocab = logits.len() / k;
        let row: Vec<f64> = logits[(k - 1) * vocab..]
            .iter()
            .map(|&x| x as f64)
            .collect();
        let max = row.iter().copied().fold(f64::MIN, f64::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        (row[a[k] as usize] - lse, row[b[k] as usize] - lse)
    };
    let prompts = [
        "The start of a judge prompt, A then B. judge: ",
        "The start of a judge prompt, B then A. judge: ",
        "The start of a judge prompt, A then B. judge: ",
    ];
    for prompt in prompts {
        let got =
            pollster::block_on(generator.choice_logprobs(Role::Planner, prompt, "[[A]]", "[[B]]"))
                .unwrap();
        let want = expected(prompt);
        assert!(
            (got.0 - want.0).abs() < 1e-4 && (got.1 - want.1).abs() < 1e-4,
            "{prompt:?}: {got:?} vs {want:?}"
        );
    }
    let other =
        pollster::block_on(generator.choice_logprobs(Role::Caller, prompts[0], "[[A]]", "[[B]]"))
            .unwrap();
    assert!(
        (other.0 - expected(prompts[0]).0).abs() > 1e-3,
        "the caller's adapter is used"
    );
    let err = pollster::block_on(generator.choice_logprobs(Role::Planner, "x", "[[A]]", "[[A]]"))
        .unwrap_err();
    assert!(err.message.contains("do not differ"), "{}", err.message);
    std::fs::remove_dir_all(&tmp).ok();
}

/// What a merged copy of the projections would add (`Llama::projection_bytes`, which bounds
/// the GPU default of `set_merge_adapters`): q/k/v/o/gate/up/down of every layer (and an untied
/// LM head) at 4 bytes a
/// value in f32, 2 in f16, nothing for quantized ones; computed here from the config.
#[test]
fn projection_bytes_count_the_dense_projections_at_their_dtype() {
    let device = Device::flex();
    let mut model = tiny(&device).model;
    let c = model.config.clone();
    let (hidden, head_dim) = (c.hidden_size, c.head_dim());
    let per_layer = 2 * c.num_attention_heads * head_dim * hidden
        + 2 * c.num_kv_heads() * head_dim * hidden
        + 3 * c.intermediate_size * hidden;
    let head = if c.tie_word_embeddings {
        0
    } else {
        c.vocab_size * hidden
    };
    let values = c.num_hidden_layers * per_layer + head;
    assert_eq!(model.projection_bytes(), 4 * values, "f32");
    model.half();
    assert_eq!(model.projection_bytes(), 2 * values, "f16");
    let mut quantized = tiny(&device).model;
    quantized.quantize(umi_model::QFormat::Q8_0);
    assert_eq!(
        quantized.projection_bytes(),
        0,
        "Q8_0: blocks, no dense weights"
    );
    assert!(quantized.quantized_bytes() > 0);
}

//! The Llama forward pass against an independent reference: `assets/tiny/make_tiny.py` writes
//! tiny random Llamas (GQA, untied head; tied; f16, bf16, sharded) as Hugging Face safetensors
//! and their logits from a float64 numpy implementation of `transformers`' Llama.

use std::path::Path;

use serde_json::Value;
use umi_model::burn::tensor::{Device, Int, Tensor, TensorData};
use umi_model::weights::{SafetensorsFolder, build_llama};
use umi_model::{KvCache, Llama, LlamaConfig};
use umi_tests::{assert_close, assets};

fn load_folder(folder: &Path, device: &Device) -> Llama {
    let config_path = folder.join("config.json");
    let config = LlamaConfig::from_json(
        &std::fs::read_to_string(&config_path).unwrap(),
        &config_path.display().to_string(),
    )
    .unwrap();
    let mut source = SafetensorsFolder::open(folder).unwrap();
    build_llama(&config, &mut source, device).unwrap()
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(assets().join("tiny/reference.json")).unwrap())
        .unwrap()
}

fn ids(seq: &Value) -> Vec<u32> {
    seq.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn flat(logits: &Value) -> Vec<f64> {
    logits
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect()
}

fn logits(model: &Llama, tokens: &[u32], cache: &mut [KvCache]) -> Vec<f32> {
    let device = model.embed_tokens.val().device();
    let data: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(data, [1, tokens.len()]), &device);
    model
        .forward(input, cache)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
}

/// Checks every reference folder's logits on `device`.
pub fn check_parity(device: &Device, rtol: f64, atol: f64) {
    let reference = reference();
    for (folder, case) in reference.as_object().unwrap() {
        let model = load_folder(&assets().join("tiny").join(folder), device);
        for (seq, want) in case["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["logits"].as_array().unwrap())
        {
            let tokens = ids(seq);
            let got = logits(&model, &tokens, &mut model.new_cache());
            assert_close(
                &got,
                &flat(want),
                rtol,
                atol,
                &format!("{folder} logits for {tokens:?}"),
            );
        }
    }
}

#[test]
fn logits_match_the_numpy_reference_for_every_layout_and_dtype() {
    let folders = reference().as_object().unwrap().len();
    assert_eq!(folders, 5, "gqa, f16, bf16, sharded, tied");
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

//! The α-UMi agent umi ships (`assets/agent/smollm2-135m-instruct/`): each role's PEFT adapter
//! (f16) loads onto the default SmolLM2 GGUF and reproduces the logits of
//! `reference_logits.json`, which `reference_logits.py` beside it computes with a float64 numpy
//! Llama, the adapter folded into the dequantized weights.

use serde_json::Value;
use umi_model::burn::tensor::Device;
use umi_model::{load_model, load_peft};
use umi_tests::{assets, default_model, logits, sha256_hex};

#[test]
fn shipped_adapters_reproduce_their_reference_logits() {
    let dir = assets().join("agent/smollm2-135m-instruct");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reference_logits.json"))
            .expect("reference_logits.json beside the shipped adapters"),
    )
    .unwrap();
    let Some(path) = default_model() else { return };
    let device = Device::flex();
    let mut loaded = load_model(&path, &device).unwrap();
    let vocab = loaded.model.config.vocab_size;
    for role in ["planner", "caller", "summarizer"] {
        let r = &reference["roles"][role];
        let folder = dir.join(role);
        let bytes = std::fs::read(folder.join("adapter_model.safetensors")).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            r["adapter_sha256"].as_str().unwrap(),
            "{role}: the adapter differs from the one the reference was computed with"
        );
        let config = load_peft(&mut loaded.model, &folder, &device).unwrap();
        assert_eq!(config.target_modules.len(), 7, "{role}");

        // The tokenizer gives the reference's ids for the prompt.
        let prompt = r["prompt"].as_str().unwrap();
        let ids = loaded.tokenizer.encode(prompt, false).unwrap();
        let want_ids: Vec<u32> = r["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, want_ids, "{role}: prompt ids");

        let n = ids.len();
        let logits = logits(&loaded.model, &ids, &mut loaded.model.new_cache());
        let last = &logits[(n - 1) * vocab..n * vocab];
        // f32 (umi) against float64 (numpy) through 30 layers: ~3e-5 seen, 2e-3 allowed.
        let mut worst = 0f32;
        for pair in r["top20"].as_array().unwrap() {
            let (id, want) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap() as f32,
            );
            let diff = (last[id] - want).abs();
            worst = worst.max(diff);
            assert!(
                diff <= 2e-3,
                "{role}: logit of token {id} is {} , reference {want}",
                last[id]
            );
        }
        // Greedy tokens at the last 16 positions agree.
        let greedy: Vec<u64> = (n - 16..n)
            .map(|p| {
                let row = &logits[p * vocab..(p + 1) * vocab];
                (0..vocab)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap() as u64
            })
            .collect();
        let want: Vec<u64> = r["greedy_last16"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(
            greedy, want,
            "{role}: greedy tokens at the last 16 positions"
        );
        eprintln!("{role}: largest top-20 logit difference {worst:.2e}");
    }
}

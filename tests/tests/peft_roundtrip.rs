//! PyTorch + PEFT → umi: a LoRA adapter trained by `scripts/gpu/train_peft.py` on umi's own
//! examples (`umi train --export-for`), on the Hugging Face folder umi exported from the tiny
//! GGUF, loads onto that GGUF in umi and gives the logits transformers + PEFT give
//! (`assets/tiny/peft/reference.json`, computed by `make_reference.py` beside it).

use serde_json::Value;
use umi_model::burn::tensor::{Device, Int, Tensor, TensorData};
use umi_model::{load_model, load_peft};
use umi_tests::assets;

#[test]
fn a_peft_trained_adapter_gives_the_logits_of_transformers_and_peft() {
    let dir = assets().join("tiny/peft");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(dir.join("adapter/adapter_model.safetensors")).unwrap();
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(sha, reference["adapter_sha256"].as_str().unwrap());
    // the adapter changes the logits a lot: an adapter that is not applied cannot pass
    assert!(reference["max_adapter_effect"].as_f64().unwrap() > 0.1);

    let device = Device::flex();
    let mut loaded = load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), &device).unwrap();
    let config = load_peft(&mut loaded.model, &dir.join("adapter"), &device).unwrap();
    assert_eq!((config.r, config.target_modules.len()), (4, 7));
    let ids: Vec<i64> = reference["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let n = ids.len();
    let logits = loaded
        .model
        .forward(
            Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device),
            &mut loaded.model.new_cache(),
        )
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    let vocab = loaded.model.config.vocab_size;
    let mut worst = 0f32;
    for (t, row) in reference["logits"].as_array().unwrap().iter().enumerate() {
        for (v, want) in row.as_array().unwrap().iter().enumerate() {
            let diff = (logits[t * vocab + v] - want.as_f64().unwrap() as f32).abs();
            worst = worst.max(diff);
        }
    }
    // f32 against f32 in another summation order, two layers: 1e-4 allowed
    assert!(worst <= 1e-4, "largest logit difference {worst}");
}

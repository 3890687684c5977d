//! PyTorch + PEFT → umi: a LoRA adapter trained by `scripts/gpu/train_peft.py` on umi's own
//! examples (`umi train --export-for`), on the Hugging Face folder umi exported from the tiny
//! GGUF, loads onto that GGUF in umi and gives the logits transformers + PEFT give
//! (`assets/tiny/peft/reference.json`, computed by `make_reference.py` beside it).

use serde_json::Value;
use umi_model::burn::tensor::Device;
use umi_model::{load_model, load_peft};
use umi_tests::{assert_close, assets, logits, sha256_hex};

#[test]
fn a_peft_trained_adapter_gives_the_logits_of_transformers_and_peft() {
    let dir = assets().join("tiny/peft");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(dir.join("adapter/adapter_model.safetensors")).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        reference["adapter_sha256"].as_str().unwrap()
    );
    // the adapter changes the logits a lot: an adapter that is not applied cannot pass
    assert!(reference["max_adapter_effect"].as_f64().unwrap() > 0.1);

    let device = Device::flex();
    let mut loaded = load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), &device).unwrap();
    let config = load_peft(&mut loaded.model, &dir.join("adapter"), &device).unwrap();
    assert_eq!((config.r, config.target_modules.len()), (4, 7));
    let ids: Vec<u32> = reference["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let got = logits(&loaded.model, &ids, &mut loaded.model.new_cache());
    let want: Vec<f64> = reference["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    // f32 against f32 in another summation order, two layers: 1e-4 allowed
    assert_close(&got, &want, 0.0, 1e-4, "logits with the PEFT adapter");
}

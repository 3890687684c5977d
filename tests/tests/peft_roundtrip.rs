//! PyTorch + PEFT → umi: a LoRA adapter trained by `scripts/gpu/train_peft.py` on umi's own
//! examples (`umi train --export-for`), on the Hugging Face folder umi exported from the tiny
//! GGUF, loads onto that GGUF in umi and gives the logits transformers + PEFT give
//! (`assets/tiny/peft/reference.json`, computed by `make_reference.py` beside it).

use umi_model::burn::tensor::Device;
use umi_model::{load_model, load_peft};
use umi_tests::{assert_close, assets, logits, peft_reference};

#[test]
fn a_peft_trained_adapter_gives_the_logits_of_transformers_and_peft() {
    let dir = assets().join("tiny/peft");
    let (ids, want) = peft_reference(&dir);

    let device = Device::flex();
    let mut loaded = load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), &device).unwrap();
    let config = load_peft(&mut loaded.model, &dir.join("adapter"), &device).unwrap();
    assert_eq!((config.r, config.target_modules.len()), (4, 7));
    let got = logits(&loaded.model, &ids, &mut loaded.model.new_cache());
    // f32 against f32 in another summation order, two layers: 1e-4 allowed
    assert_close(&got, &want, 0.0, 1e-4, "logits with the PEFT adapter");
}

/// umi → PEFT: an adapter umi writes (`assets/tiny/peft-umi/adapter`, values from a formula, so the
/// test writes the same bytes again) loads in transformers + PEFT onto the tiny Hugging Face model
/// and gives the logits umi computes with it (`reference.json`, by `make_reference.py` beside it).
#[test]
fn an_adapter_umi_writes_gives_in_peft_the_logits_umi_computes() {
    use umi_model::burn::module::Param;
    use umi_model::burn::tensor::{Tensor, TensorData};
    use umi_model::{LoraConfig, attach_lora, save_peft};
    let dir = assets().join("tiny/peft-umi");
    let device = Device::flex();
    let mut model = umi_tests::load_folder(&assets().join("tiny/llama-gqa"), &device);
    let config = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        ..LoraConfig::default()
    };
    attach_lora(&mut model, &config, 0, &device).unwrap();
    let value = |k: usize, i: usize| ((((k * 7 + i * 31) % 23) as f32) / 23.0 - 0.5) * 0.2;
    let adapted = model
        .projections_mut()
        .into_iter()
        .filter_map(|(_, p)| p.lora.as_mut());
    for (k, lora) in adapted.enumerate() {
        for (which, param) in [(0, &mut lora.a), (1, &mut lora.b)] {
            let [rows, cols] = param.val().dims();
            let data: Vec<f32> = (0..rows * cols).map(|i| value(2 * k + which, i)).collect();
            *param = Param::from_tensor(Tensor::from_data(
                TensorData::new(data, [rows, cols]),
                &device,
            ));
        }
    }
    let out = std::env::temp_dir().join(format!("umi-peft-umi-{}", std::process::id()));
    save_peft(&model, &config, Some("assets/tiny/llama-gqa"), &out).unwrap();
    for name in ["adapter_model.safetensors", "adapter_config.json"] {
        let got = std::fs::read(out.join(name)).unwrap();
        if std::env::var_os("UMI_BLESS").is_some() {
            std::fs::create_dir_all(dir.join("adapter")).unwrap();
            std::fs::write(dir.join("adapter").join(name), &got).unwrap();
        }
        let want = std::fs::read(dir.join("adapter").join(name)).unwrap();
        assert!(
            got == want,
            "{name}: umi now writes other bytes (UMI_BLESS=1, then the script)"
        );
    }
    let _ = std::fs::remove_dir_all(&out);

    let (ids, want) = peft_reference(&dir);
    let got = logits(&model, &ids, &mut model.new_cache());
    assert_close(&got, &want, 0.0, 1e-4, "umi's adapter in PEFT vs in umi");
}

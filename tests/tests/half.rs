//! Weights held in f16 (`Llama::half`, `WeightDtype::F16`: the WebGPU path on adapters with
//! `shader-f16`): the tiny models against the numpy reference of `assets/tiny/make_tiny.py`
//! (computed in float64 from the f32 weights, so the only difference is f16's rounding of the
//! weights and of the products' inputs), on the CPU backend here and on wgpu in `wgpu.rs`.

use umi_model::burn::tensor::DType;
use umi_model::{Device, WeightDtype, load_model, load_model_in};
use umi_tests::{assert_close, assets, load_folder, logits, reference_cases, training_batch};
use umi_train::Trainer;

/// f16 keeps 11 significant bits (relative rounding 2⁻¹¹ ≈ 4.9e-4) of each weight and of each
/// product's input; the tiny models' logits are below 3 in magnitude and move by at most
/// 3.7e-3 (measured on every reference case), so a bound of 1e-2 leaves room for another
/// backend's summation order and fails on any wrong cast or layout.
const RTOL: f64 = 0.0;
const ATOL: f64 = 1e-2;

#[test]
fn tiny_models_held_in_f16_match_the_reference_within_f16_rounding() {
    let device = Device::flex();
    for (folder, cases) in reference_cases() {
        let mut model = load_folder(&assets().join("tiny").join(&folder), &device);
        let f32_model = load_folder(&assets().join("tiny").join(&folder), &device);
        let exact_in_f16 = f32_model.projections().iter().all(|(_, p)| {
            let w = p.weight.val();
            let rounded = w.clone().cast(umi_model::burn::tensor::FloatDType::F16);
            w.into_data()
                == rounded
                    .cast(umi_model::burn::tensor::FloatDType::F32)
                    .into_data()
        });
        model.half();
        assert!(model.is_half(), "{folder}: is_half after half()");
        assert_eq!(model.embed_tokens.val().dtype(), DType::F16, "{folder}");
        for (name, p) in model.projections() {
            assert_eq!(p.weight.val().dtype(), DType::F16, "{folder}: {name}");
        }
        assert_eq!(
            model.norm.weight.val().dtype(),
            DType::F32,
            "{folder}: norms stay f32"
        );
        for case in cases {
            let mut cache = model.new_cache();
            let got = logits(&model, &case.tokens, &mut cache);
            assert_close(
                &got,
                &case.logits,
                RTOL,
                ATOL,
                &format!("{folder}: f16 logits"),
            );
            // the rounding is real (not an f32 model in disguise) yet small; a model whose
            // weights f16 holds exactly (`llama-gqa-f16`, saved in f16) gives the f32 model's
            // logits bit for bit: its f16 weights are read into the same sums in the same order
            let mut cache = f32_model.new_cache();
            let exact = logits(&f32_model, &case.tokens, &mut cache);
            let moved = got.iter().zip(&exact).any(|(a, b)| a != b);
            if exact_in_f16 {
                assert!(!moved, "{folder}: f16-exact weights moved the logits");
            } else {
                assert!(
                    moved,
                    "{folder}: f16 weights gave the f32 logits bit for bit"
                );
            }
        }
    }
}

#[test]
fn loading_in_f16_equals_casting_after_loading() {
    let device = Device::flex();
    let path = assets().join("tiny/gguf/tiny-f32.gguf");
    let loaded = load_model_in(&path, &device, WeightDtype::F16).unwrap();
    let mut cast = load_model(&path, &device).unwrap();
    cast.model.half();
    assert!(loaded.model.is_half());
    let tokens: Vec<u32> = (1..12).collect();
    let a = logits(&loaded.model, &tokens, &mut loaded.model.new_cache());
    let b = logits(&cast.model, &tokens, &mut cast.model.new_cache());
    assert_eq!(
        a, b,
        "the host's conversion and the device's cast round alike"
    );
}

#[test]
fn merging_an_adapter_into_an_f16_model_keeps_it_in_f16() {
    let device = Device::flex();
    let mut model = load_folder(&assets().join("tiny/llama-gqa"), &device);
    model.half();
    for (_, p) in model.projections_mut() {
        *p = p.clone().with_lora(2, 4.0, &device);
    }
    umi_model::merge_lora(&mut model);
    for (n, p) in model.projections() {
        assert!(p.lora.is_none(), "{n}: merged");
        assert_eq!(p.weight.val().dtype(), DType::F16, "{n} after merging");
    }
}

#[test]
fn lora_training_on_an_f16_base_follows_the_f32_curve() {
    // the browser fine-tunes the model it holds: in f16 on adapters with shader-f16
    let device = Device::flex();
    let b = training_batch();
    let cfg = umi_tests::tiny_lora_curve_config();
    let curve = |half: bool| -> Vec<f32> {
        let mut model = load_folder(&assets().join("tiny/llama-gqa"), &device);
        if half {
            model.half();
        }
        let mut trainer = Trainer::new(model, cfg.clone(), 30, &device).unwrap();
        (0..30)
            .map(|_| {
                let step = pollster::block_on(trainer.train_step(std::slice::from_ref(&b)));
                step.unwrap().loss as f32
            })
            .collect()
    };
    let (full, half) = (curve(false), curve(true));
    // the same steps while the rounding has not compounded (lr 3e-2 makes the curve sensitive:
    // the f32 one has a bump at step 12 the f16 one does not), then the same plateau
    let full64: Vec<f64> = full.iter().map(|&x| f64::from(x)).collect();
    assert_close(
        &half[..9],
        &full64[..9],
        1e-2,
        0.0,
        "f16-base LoRA loss, steps 0-8",
    );
    assert_close(
        &half[29..],
        &full64[29..],
        5e-2,
        0.0,
        "f16-base LoRA loss, step 29",
    );
    assert!(
        half[29] < 0.15 * half[0],
        "f16-base loss {} → {}",
        half[0],
        half[29]
    );
}

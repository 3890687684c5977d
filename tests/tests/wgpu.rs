//! The GPU code path (burn's wgpu backend) on whatever adapter the machine has: in CI that is
//! Mesa's lavapipe (software Vulkan), so the same kernels a GPU runs are exercised without one.
//! Set `UMI_REQUIRE_WGPU=1` to fail instead of skipping when no adapter is found.

#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

use umi_agent::LlamaGenerator;
use umi_model::burn::tensor::DType;
use umi_model::{Device, GenerationConfig, GpuInfo, load_model, load_peft, merge_lora, read_peft};
use umi_tests::{
    assert_close, assets, load_folder, logits_prefill_then_decode, peft_reference,
    reference_cases_of,
};

/// The wgpu device and what its adapter offers, initialised once for the tests of this file
/// (cubecl's runtime can be registered once per process); `None` (the tests skip, saying so)
/// when there is no adapter, unless `UMI_REQUIRE_WGPU` is set.
fn gpu() -> Option<&'static (Device, GpuInfo)> {
    static GPU: OnceLock<Option<(Device, GpuInfo)>> = OnceLock::new();
    GPU.get_or_init(
        || match pollster::block_on(umi_model::wgpu_device_async()) {
            Ok(found) => {
                eprintln!("wgpu adapter: {}", found.1.summary());
                Some(found)
            }
            Err(e) => {
                assert!(
                    std::env::var("UMI_REQUIRE_WGPU").is_err(),
                    "UMI_REQUIRE_WGPU is set: {e}"
                );
                eprintln!("skipping: {e}");
                None
            }
        },
    )
    .as_ref()
}

#[test]
fn tiny_llama_on_wgpu_matches_the_reference() {
    let Some((device, _)) = gpu() else { return };
    let model = load_folder(&assets().join("tiny/llama-gqa"), device);
    for case in reference_cases_of("llama-gqa") {
        // prefill all but the last token, then decode it: exercises the cache on the GPU too
        let got = logits_prefill_then_decode(&model, &case.tokens);
        assert_close(&got, &case.logits, 1e-3, 1e-4, "wgpu logits");
    }
}

/// Weights held in f16 on the GPU (the browser's path on adapters with `shader-f16`):
/// logits within f16's rounding of the reference (the bound of `half.rs`)
/// and the weights really in f16 there.
/// Skips (saying so) on an adapter without `shader-f16`.
#[test]
fn tiny_llama_held_in_f16_on_wgpu_matches_the_reference() {
    let Some((device, gpu)) = gpu() else { return };
    if !gpu.shader_f16 {
        eprintln!("skipping: {} has no shader-f16", gpu.summary());
        return;
    }
    for folder in ["llama-gqa", "llama-tied"] {
        let mut model = load_folder(&assets().join("tiny").join(folder), device);
        model.half();
        assert_eq!(model.embed_tokens.val().dtype(), DType::F16);
        for case in reference_cases_of(folder) {
            let got = logits_prefill_then_decode(&model, &case.tokens);
            assert_close(&got, &case.logits, 0.0, 1e-2, "wgpu f16 logits");
        }
    }
}

/// The agent's path in the browser: a role's LoRA adapter attached unmerged to weights held in
/// f16 (the adapter in f32), on wgpu. The PEFT-trained tiny adapter of `peft_roundtrip.rs`
/// against the logits transformers + PEFT give in f32 (`assets/tiny/peft/reference.json`),
/// prefill then decode, with weights in f32 and in f16 (within f16's rounding, the bound of
/// `half.rs`). Exercises the f16 projection's own order of operations (cast, adapter term,
/// product, addition), which burn's fusion turns into fewer kernels.
#[test]
fn a_peft_adapter_on_f16_weights_on_wgpu_gives_the_logits_of_peft() {
    let Some((device, gpu)) = gpu() else { return };
    let dir = assets().join("tiny/peft");
    let (ids, want) = peft_reference(&dir);
    for half in [false, true] {
        if half && !gpu.shader_f16 {
            eprintln!("skipping f16: {} has no shader-f16", gpu.summary());
            continue;
        }
        let mut loaded = load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), device).unwrap();
        load_peft(&mut loaded.model, &dir.join("adapter"), device).unwrap();
        let (rtol, atol, what) = if half {
            loaded.model.half();
            (0.0, 1e-2, "wgpu f16 logits with the PEFT adapter")
        } else {
            (0.0, 1e-4, "wgpu logits with the PEFT adapter")
        };
        let got = logits_prefill_then_decode(&loaded.model, &ids);
        assert_close(&got, &want, rtol, atol, what);
    }
}

/// On a GPU the agent merges each role's adapter into the weights at the role's turn by
/// default (`LlamaGenerator::set_merge_adapters`: a decode step then launches the base model's
/// kernels only): the merged weights, f32 and f16 (merged in f32, held in f16 again), give the
/// logits of transformers + PEFT within the bounds of the attached adapter above.
#[test]
fn role_adapters_are_merged_on_wgpu_and_give_the_logits_of_peft() {
    let Some((device, gpu)) = gpu() else { return };
    let dir = assets().join("tiny/peft");
    let tiny = || load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), device).unwrap();
    let backbone = tiny();
    let (_, set) = read_peft(&backbone.model, &dir.join("adapter"), device).unwrap();
    let generator = LlamaGenerator::with_adapters(
        backbone,
        set.clone(),
        set.clone(),
        set,
        GenerationConfig::default(),
    );
    assert!(
        generator.merges_adapters(),
        "role adapters on a GPU with f32 weights are merged by default"
    );
    let (ids, want) = peft_reference(&dir);
    for half in [false, true] {
        if half && !gpu.shader_f16 {
            eprintln!("skipping f16: {} has no shader-f16", gpu.summary());
            continue;
        }
        let mut loaded = tiny();
        if half {
            loaded.model.half(); // as the web app holds the weights on shader-f16 adapters
        }
        load_peft(&mut loaded.model, &dir.join("adapter"), device).unwrap();
        merge_lora(&mut loaded.model);
        assert!(
            loaded
                .model
                .projections()
                .iter()
                .all(|(_, p)| p.lora.is_none()),
            "merged: no adapter left attached"
        );
        let f16 = DType::F16;
        assert!(
            loaded
                .model
                .projections()
                .iter()
                .all(|(_, p)| (p.weight.val().dtype() == f16) == half),
            "merging keeps the weights' precision"
        );
        let (rtol, atol, what) = if half {
            (0.0, 1e-2, "wgpu f16 logits, adapter merged")
        } else {
            (0.0, 1e-4, "wgpu logits, adapter merged")
        };
        let got = logits_prefill_then_decode(&loaded.model, &ids);
        assert_close(&got, &want, rtol, atol, what);
    }
}

//! The GPU code path (burn's wgpu backend) on whatever adapter the machine has: in CI that is
//! Mesa's lavapipe (software Vulkan), so the same kernels a GPU runs are exercised without one.
//! Set `UMI_REQUIRE_WGPU=1` to fail instead of skipping when no adapter is found.

#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

use umi_model::{Device, GpuInfo};
use umi_tests::{assert_close, assets, load_folder, logits, reference_cases_of};

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
        let (head, last) = case.tokens.split_at(case.tokens.len() - 1);
        let mut cache = model.new_cache();
        let mut got = logits(&model, head, &mut cache);
        got.extend(logits(&model, last, &mut cache));
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
        assert_eq!(
            model.embed_tokens.val().dtype(),
            umi_model::burn::tensor::DType::F16
        );
        for case in reference_cases_of(folder) {
            let (head, last) = case.tokens.split_at(case.tokens.len() - 1);
            let mut cache = model.new_cache();
            let mut got = logits(&model, head, &mut cache);
            got.extend(logits(&model, last, &mut cache));
            assert_close(&got, &case.logits, 0.0, 1e-2, "wgpu f16 logits");
        }
    }
}

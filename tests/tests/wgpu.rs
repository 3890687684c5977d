//! The GPU code path (burn's wgpu backend) on whatever adapter the machine has: in CI that is
//! Mesa's lavapipe (software Vulkan), so the same kernels a GPU runs are exercised without one.
//! Set `UMI_REQUIRE_WGPU=1` to fail instead of skipping when no adapter is found.

#![cfg(feature = "wgpu")]

use umi_model::Backend;
use umi_tests::{assert_close, assets, load_folder, logits, reference_cases_of};

#[test]
fn tiny_llama_on_wgpu_matches_the_reference() {
    let device = match Backend::Wgpu.device() {
        Ok(device) => device,
        Err(e) => {
            assert!(
                std::env::var("UMI_REQUIRE_WGPU").is_err(),
                "UMI_REQUIRE_WGPU is set: {e}"
            );
            eprintln!("skipping: {e}");
            return;
        }
    };
    let model = load_folder(&assets().join("tiny/llama-gqa"), &device);
    for case in reference_cases_of("llama-gqa") {
        // prefill all but the last token, then decode it: exercises the cache on the GPU too
        let (head, last) = case.tokens.split_at(case.tokens.len() - 1);
        let mut cache = model.new_cache();
        let mut got = logits(&model, head, &mut cache);
        got.extend(logits(&model, last, &mut cache));
        assert_close(&got, &case.logits, 1e-3, 1e-4, "wgpu logits");
    }
}

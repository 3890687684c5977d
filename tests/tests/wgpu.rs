//! The GPU code path (burn's wgpu backend) on whatever adapter the machine has: in CI that is
//! Mesa's lavapipe (software Vulkan), so the same kernels a GPU runs are exercised without one.
//! Set `UMI_REQUIRE_WGPU=1` to fail instead of skipping when no adapter is found.

#![cfg(feature = "wgpu")]

use serde_json::Value;
use umi_model::burn::tensor::{Int, Tensor, TensorData};
use umi_model::weights::{SafetensorsFolder, build_llama};
use umi_model::{Backend, LlamaConfig};
use umi_tests::{assert_close, assets};

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
    let folder = assets().join("tiny/llama-gqa");
    let config = LlamaConfig::from_json(
        &std::fs::read_to_string(folder.join("config.json")).unwrap(),
        "config.json",
    )
    .unwrap();
    let model = build_llama(
        &config,
        &mut SafetensorsFolder::open(&folder).unwrap(),
        &device,
    )
    .unwrap();
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(assets().join("tiny/reference.json")).unwrap(),
    )
    .unwrap();
    let case = &reference["llama-gqa"];
    for (seq, want) in case["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["logits"].as_array().unwrap())
    {
        let tokens: Vec<i64> = seq
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let n = tokens.len();
        // prefill all but the last token, then decode it: exercises the cache on the GPU too
        let mut cache = model.new_cache();
        let head = Tensor::<2, Int>::from_data(
            TensorData::new(tokens[..n - 1].to_vec(), [1, n - 1]),
            &device,
        );
        let mut got = model
            .forward(head, &mut cache)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let last =
            Tensor::<2, Int>::from_data(TensorData::new(vec![tokens[n - 1]], [1, 1]), &device);
        got.extend(
            model
                .forward(last, &mut cache)
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap(),
        );
        let want: Vec<f64> = want
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        assert_close(&got, &want, 1e-3, 1e-4, "wgpu logits");
    }
}

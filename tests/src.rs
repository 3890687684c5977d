//! Shared helpers for umi's end-to-end tests: where the repository's assets, the installed
//! default model and `../shared/data` are, and float comparison with tolerances.

use std::path::{Path, PathBuf};

use umi_model::burn::tensor::{Device, Int, Tensor, TensorData};
use umi_model::weights::{SafetensorsFolder, build_llama};
use umi_model::{KvCache, Llama, LlamaConfig};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `assets/` in the repository.
pub fn assets() -> PathBuf {
    repo_root().join("assets")
}

/// The default model installed by `scripts/setup.sh`, or `None` when it is absent and the run
/// does not require it. Set `UMI_REQUIRE_WEIGHTS=1` (CI does) to turn absence into a failure.
pub fn default_model() -> Option<PathBuf> {
    let path = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("UMI_REQUIRE_WEIGHTS").is_err(),
        "UMI_REQUIRE_WEIGHTS is set but {} is missing: run scripts/setup.sh",
        path.display()
    );
    eprintln!(
        "skipping: {} is missing (run scripts/setup.sh)",
        path.display()
    );
    None
}

/// Asserts `|got - want| <= atol + rtol·|want|` elementwise, reporting the worst element.
pub fn assert_close(got: &[f32], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs {}",
        got.len(),
        want.len()
    );
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g as f64 - w).abs() - (atol + rtol * w.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    assert!(
        worst.1 <= 0.0,
        "{what}: element {} is {} but the reference is {} (rtol {rtol}, atol {atol})",
        worst.0,
        got[worst.0],
        want[worst.0]
    );
}

/// The SHA-256 of `bytes` as lower-case hex (fixtures name the files they were computed from).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `../shared/data` beside the repository (CI places it there).
pub fn shared_data() -> PathBuf {
    repo_root().join("../shared/data")
}

/// Loads a Hugging Face folder (config.json + safetensors) without a tokenizer.
pub fn load_folder(folder: &Path, device: &Device) -> Llama {
    let config_path = folder.join("config.json");
    let config = LlamaConfig::from_json(
        &std::fs::read_to_string(&config_path).unwrap(),
        &config_path.display().to_string(),
    )
    .unwrap();
    let mut source = SafetensorsFolder::open(folder).unwrap();
    build_llama(&config, &mut source, device).unwrap()
}

/// One sequence of `assets/tiny/reference.json` and its reference logits, flattened
/// (`[seq_len · vocab_size]`).
pub struct ReferenceCase {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Reference logits of every position.
    pub logits: Vec<f64>,
}

/// The reference cases per tiny model folder (`llama-gqa`, `llama-tied`, ...), from the numpy
/// reference written by `assets/tiny/make_tiny.py`.
pub fn reference_cases() -> Vec<(String, Vec<ReferenceCase>)> {
    let text = std::fs::read_to_string(assets().join("tiny/reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let as_f64s = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    reference
        .as_object()
        .unwrap()
        .iter()
        .map(|(folder, case)| {
            let cases = case["sequences"]
                .as_array()
                .unwrap()
                .iter()
                .zip(case["logits"].as_array().unwrap())
                .map(|(seq, rows)| ReferenceCase {
                    tokens: as_f64s(seq).into_iter().map(|t| t as u32).collect(),
                    logits: rows.as_array().unwrap().iter().flat_map(as_f64s).collect(),
                })
                .collect();
            (folder.clone(), cases)
        })
        .collect()
}

/// The reference cases of one folder.
pub fn reference_cases_of(folder: &str) -> Vec<ReferenceCase> {
    reference_cases()
        .into_iter()
        .find(|(f, _)| f == folder)
        .unwrap_or_else(|| panic!("no reference for {folder}"))
        .1
}

/// Logits of every position of `tokens` (one sequence), continuing `cache`, read to the host.
pub fn logits(model: &Llama, tokens: &[u32], cache: &mut [KvCache]) -> Vec<f32> {
    let device = model.embed_tokens.val().device();
    let data: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(data, [1, tokens.len()]), &device);
    model
        .forward(input, cache)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
}

/// The logits of `tokens` computed as a generator does: all but the last token prefilled, then
/// the last decoded with the cache (exercises the cache's write and read paths); shape
/// `[tokens.len() * vocab_size]`, row-major as [`logits`].
pub fn logits_prefill_then_decode(model: &Llama, tokens: &[u32]) -> Vec<f32> {
    assert!(!tokens.is_empty(), "logits_prefill_then_decode: no tokens");
    let (head, last) = tokens.split_at(tokens.len() - 1);
    let mut cache = model.new_cache();
    let mut got = logits(model, head, &mut cache);
    got.extend(logits(model, last, &mut cache));
    got
}

/// The tensors of an F32 safetensors file (a reference fixture), by name: `(shape, values as
/// f64)`.
///
/// # Panics
///
/// If the file cannot be read or parsed.
pub fn f32_safetensors(path: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                .collect();
            (n, (v.shape().to_vec(), data))
        })
        .collect()
}

/// The batch of `assets/tiny/training/batch.json` (written by
/// `assets/tiny/make_training_reference.py`): two rows of 12 tokens with 7 and 4 target labels.
pub fn training_batch() -> umi_data::batch::Batch {
    let path = assets().join("tiny/training/batch.json");
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = |k: &str| -> Vec<Vec<i64>> { serde_json::from_value(b[k].clone()).unwrap() };
    umi_data::batch::Batch {
        input_ids: rows("input_ids")
            .into_iter()
            .map(|r| r.into_iter().map(|t| t as u32).collect())
            .collect(),
        labels: rows("labels"),
        attention_mask: rows("attention_mask")
            .into_iter()
            .map(|r| r.into_iter().map(|t| t as u8).collect())
            .collect(),
    }
}

/// The LoRA settings of the tiny model's training curves (`training.rs`'s resumed curve,
/// `half.rs`'s f16-base curve): lr 3e-2 with 10 % warm-up, r 8, α 16, no dropout.
pub fn tiny_lora_curve_config() -> umi_train::TrainConfig {
    umi_train::TrainConfig {
        learning_rate: 3e-2,
        warmup_ratio: 0.1,
        lora: Some(umi_model::LoraConfig {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            ..umi_model::LoraConfig::default()
        }),
        ..umi_train::TrainConfig::default()
    }
}

/// Reads `dir/reference.json` (written by the `make_reference.py` beside it): checks it was
/// computed for `dir/adapter` (sha256) with an adapter that changes the logits, and returns the
/// token ids and the flattened logits transformers + PEFT gave.
pub fn peft_reference(dir: &std::path::Path) -> (Vec<u32>, Vec<f64>) {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(dir.join("adapter/adapter_model.safetensors")).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        reference["adapter_sha256"].as_str().unwrap(),
        "reference.json was computed for this adapter"
    );
    // the adapter changes the logits a lot: an adapter that is not applied cannot pass
    assert!(reference["max_adapter_effect"].as_f64().unwrap() > 0.1);
    let ids: Vec<u32> = serde_json::from_value(reference["ids"].clone()).unwrap();
    let logits: Vec<f64> = reference["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    (ids, logits)
}

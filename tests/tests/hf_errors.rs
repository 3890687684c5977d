//! Bad Hugging Face checkpoints give errors that name the file, the tensor and what was
//! expected. Each case is made at test time from the valid tiny checkpoint.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use umi_model::burn::tensor::Device;
use umi_model::load_model;
use umi_tests::assets;

/// A scratch copy of `assets/tiny/llama-gqa` plus a tokenizer.json with `vocab` tokens.
fn scratch(name: &str, vocab: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umi-hf-errors-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = assets().join("tiny/llama-gqa");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let words: serde_json::Map<String, serde_json::Value> = (0..vocab)
        .map(|i| (format!("w{i}"), serde_json::json!(i)))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "w0"}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    dir
}

/// Rewrites `model.safetensors` in `dir`, letting `edit` drop or replace tensors.
fn rewrite(
    dir: &Path,
    edit: impl Fn(&str, Dtype, Vec<usize>, Vec<u8>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept = Vec::new();
    for (name, view) in st.tensors() {
        if let Some(t) = edit(
            &name,
            view.dtype(),
            view.shape().to_vec(),
            view.data().to_vec(),
        ) {
            kept.push((name, t));
        }
    }
    let views: Vec<(String, TensorView)> = kept
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
}

fn error(dir: &Path) -> String {
    match load_model(dir, &Device::flex()) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_scratch_checkpoint_loads() {
    let dir = scratch("ok", 256);
    let loaded = load_model(&dir, &Device::flex()).unwrap();
    assert_eq!(loaded.model.layers.len(), 2);
}

#[test]
fn truncated_safetensors() {
    let dir = scratch("truncated", 256);
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = error(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("invalid safetensors"),
        "{e}"
    );
}

#[test]
fn missing_tensor() {
    let dir = scratch("missing", 256);
    rewrite(&dir, |name, d, s, b| {
        (name != "lm_head.weight").then_some((d, s, b))
    });
    let e = error(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("missing tensor `lm_head.weight`"),
        "{e}"
    );
}

#[test]
fn unsupported_dtype() {
    let dir = scratch("dtype", 256);
    rewrite(&dir, |name, d, s, b| {
        if name == "model.norm.weight" {
            Some((Dtype::I32, s, b)) // same byte size as f32
        } else {
            Some((d, s, b))
        }
    });
    let e = error(&dir);
    assert!(
        e.contains("`model.norm.weight`") && e.contains("I32") && e.contains("F32, F16, BF16"),
        "{e}"
    );
}

#[test]
fn shape_not_matching_the_config() {
    let dir = scratch("shape", 256);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config = config.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    assert!(
        config.contains("\"intermediate_size\": 96"),
        "fixture config format changed"
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
    let e = error(&dir);
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight")
            && e.contains("[128, 64]")
            && e.contains("[96, 64]"),
        "{e}"
    );
}

#[test]
fn tokenizer_larger_than_the_vocabulary() {
    let dir = scratch("vocab", 300);
    let e = error(&dir);
    assert!(
        e.contains("tokenizer.json") && e.contains("300 tokens") && e.contains("vocab_size is 256"),
        "{e}"
    );
}

#[test]
fn malformed_config() {
    let dir = scratch("config", 256);
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 64,").unwrap();
    let e = error(&dir);
    assert!(
        e.contains("config.json") && e.contains("invalid model config"),
        "{e}"
    );
}

/// Rewrites `config.json` in `dir` with `from` replaced by `to`.
fn edit_config(dir: &Path, from: &str, to: &str) {
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains(from), "fixture config format changed");
    std::fs::write(dir.join("config.json"), config.replace(from, to)).unwrap();
}

#[test]
fn bos_or_eos_outside_the_vocabulary() {
    // outside the model's vocabulary: the config is refused
    let dir = scratch("bos-model", 256);
    edit_config(&dir, "\"bos_token_id\": 1", "\"bos_token_id\": 4000000000");
    let e = error(&dir);
    assert!(
        e.contains("config.json")
            && e.contains("bos_token_id = 4000000000 is outside the vocabulary (vocab_size = 256)"),
        "{e}"
    );
    // inside the model's 256 rows but not a token of the 200-token tokenizer
    let dir = scratch("eos-tokenizer", 200);
    edit_config(&dir, "\"eos_token_id\": 2", "\"eos_token_id\": [2, 250]");
    let e = error(&dir);
    assert!(
        e.contains("tokenizer.json")
            && e.contains("eos_token_id = 250 is not in the vocabulary (200 tokens)"),
        "{e}"
    );
}

#[test]
fn sizes_beyond_the_limits() {
    for (from, to, want) in [
        (
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 1000000",
            "num_hidden_layers = 1000000 exceeds umi's limit of 1024",
        ),
        (
            "\"head_dim\": 16",
            "\"head_dim\": 0",
            "head_dim must be positive",
        ),
        (
            "\"num_attention_heads\": 4",
            "\"num_attention_heads\": 4611686018427387904",
            "num_attention_heads × head_dim = more than usize::MAX",
        ),
    ] {
        let dir = scratch("limits", 256);
        edit_config(&dir, from, to);
        let e = error(&dir);
        assert!(e.contains("config.json") && e.contains(want), "{e}");
    }
}

/// A `tokenizer.json` may ask to pad every encoding to a fixed length (1e9 exhausted memory);
/// umi encodes one text at a time and ignores padding (and truncation).
#[test]
fn tokenizer_padding_is_switched_off() {
    let dir = scratch("padding", 256);
    let path = dir.join("tokenizer.json");
    let mut tokenizer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tokenizer["padding"] = serde_json::json!({
        "strategy": {"Fixed": 100_000}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 0, "pad_type_id": 0, "pad_token": "w0"
    });
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let loaded = load_model(&dir, &Device::flex()).unwrap();
    assert_eq!(loaded.tokenizer.encode("w5 w7", false).unwrap(), [5, 7]);
}

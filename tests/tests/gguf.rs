//! GGUF loading against fixtures written by llama.cpp's own `gguf` Python package
//! (`assets/reference/make_gguf_fixtures.py`, `assets/reference/gguf_quants.py`).

use std::path::PathBuf;

use serde_json::Value;
use umi_model::burn::tensor::Device;
use umi_model::weights::{GgmlType, GgufFile, WeightSource, dequantize};
use umi_model::{LlamaConfig, LoadProgress, Tokenizer, WeightDtype, load_gguf_bytes, load_model};
use umi_tests::{assert_close, assets, logits, reference_cases_of};

fn json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(assets().join(path)).unwrap()).unwrap()
}

fn gguf_dir() -> PathBuf {
    assets().join("tiny/gguf")
}

#[test]
fn dequantization_matches_ggml_for_every_supported_type() {
    let cases = json("reference/gguf_quants.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let id = case["ggml_type_id"].as_u64().unwrap() as u32;
        let ty = GgmlType::from_id(id).unwrap_or_else(|| panic!("type {id} should be supported"));
        let hex = case["hex"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let want: Vec<f64> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = dequantize(ty, &bytes, want.len()).unwrap();
        assert_close(
            &got,
            &want,
            1e-6,
            0.0,
            &format!("{} dequantization", case["type"]),
        );
    }
}

#[test]
fn tensors_are_dequantized_unpermuted_and_renamed() {
    let reference = json("tiny/gguf/reference.json");
    for file in [
        "tiny-f32.gguf",
        "tiny-q8_0.gguf",
        "tiny-q4_0.gguf",
        "tiny-q4_1.gguf",
        "tiny-spm.gguf",
        "bad/base-micro.gguf",
    ] {
        let mut gguf = GgufFile::open(&gguf_dir().join(file)).unwrap();
        let tensors = reference[file]["tensors"].as_object().unwrap();
        assert!(tensors.len() >= 20);
        for (hf_name, want) in tensors {
            let t = gguf
                .tensor(hf_name)
                .unwrap()
                .unwrap_or_else(|| panic!("{file}: {hf_name} not found"));
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape, shape, "{file}: {hf_name}");
            let first8: Vec<f64> = want["first8"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_close(
                &t.data[..8],
                &first8,
                1e-6,
                1e-7,
                &format!("{file}: {hf_name} first values"),
            );
            let sum: f64 = t.data.iter().map(|&v| v as f64).sum();
            let sum_abs: f64 = t.data.iter().map(|&v| (v as f64).abs()).sum();
            let (want_sum, want_abs) = (
                want["sum"].as_f64().unwrap(),
                want["sum_abs"].as_f64().unwrap(),
            );
            assert!(
                (sum - want_sum).abs() <= 1e-4 * want_abs.max(1.0),
                "{file}: {hf_name} sum {sum} vs {want_sum}"
            );
            assert!(
                (sum_abs - want_abs).abs() <= 1e-5 * want_abs.max(1.0),
                "{file}: {hf_name} sum_abs"
            );
        }
    }
}

/// The loader reports each tensor once it is on the device, in values, up to every value of the
/// file (counted here from llama.cpp's reference listing of the file's tensors).
#[test]
fn loading_reports_progress_per_tensor_up_to_the_whole_model() {
    let reference = json("tiny/gguf/reference.json");
    let tensors = reference["tiny-q8_0.gguf"]["tensors"].as_object().unwrap();
    let file_values: u64 = tensors
        .values()
        .map(|t| {
            t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum();
    let bytes = std::fs::read(gguf_dir().join("tiny-q8_0.gguf")).unwrap();
    let mut reports: Vec<LoadProgress> = Vec::new();
    let loaded = load_gguf_bytes(
        bytes,
        "tiny-q8_0.gguf",
        &Device::flex(),
        WeightDtype::F32,
        &mut |p| reports.push(p),
    )
    .unwrap();
    assert_eq!(reports.len(), tensors.len(), "one report per tensor");
    assert!(
        reports
            .windows(2)
            .all(|w| w[0].params_done < w[1].params_done),
        "progress must only move forward: {reports:?}"
    );
    let last = reports.last().unwrap();
    assert_eq!(last.params_total, file_values);
    assert_eq!(last.params_done, file_values);
    assert_eq!(loaded.model.config.num_parameters(), file_values);
    assert!((last.fraction() - 1.0).abs() < 1e-12);
    // the published size of SmolLM2-135M (tied head)
    assert_eq!(LlamaConfig::smollm2_135m().num_parameters(), 134_515_008);
}

#[test]
fn f32_gguf_gives_the_same_logits_as_the_hf_checkpoint_it_was_converted_from() {
    // tiny-f32.gguf holds llama-gqa's weights with llama.cpp's q/k permutation applied, so the
    // numpy reference logits of llama-gqa apply unchanged: this fails if the un-permute is wrong.
    let device = Device::flex();
    let loaded = load_model(&gguf_dir().join("tiny-f32.gguf"), &device).unwrap();
    assert!(!loaded.model.config.tie_word_embeddings);
    for case in reference_cases_of("llama-gqa") {
        let got = logits(&loaded.model, &case.tokens, &mut loaded.model.new_cache());
        assert_close(&got, &case.logits, 1e-4, 1e-5, "tiny-f32.gguf logits");
    }
}

#[test]
fn gpt2_tokenizer_from_gguf_metadata_is_byte_level() {
    let gguf = GgufFile::open(&gguf_dir().join("tiny-f32.gguf")).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    assert_eq!(tokenizer.vocab_size(), 256);
    assert_eq!(
        (tokenizer.bos_id(), tokenizer.eos_ids()),
        (Some(1), &[2u32][..])
    );
    // no merges: one token per UTF-8 byte, id = byte value
    let ids = tokenizer.encode("Hi é", true).unwrap();
    assert_eq!(ids, vec![b'H' as u32, b'i' as u32, b' ' as u32, 0xC3, 0xA9]);
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), "Hi é");
}

#[test]
fn sentencepiece_tokenizer_from_gguf_matches_sentencepiece() {
    let reference = json("tiny/gguf/reference.json");
    let gguf = GgufFile::open(&gguf_dir().join("tiny-spm.gguf")).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    for case in reference["tiny-spm.gguf"]["tokenizer"]["expected"]["cases"]
        .as_array()
        .unwrap()
    {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tokenizer.encode(text, false).unwrap();
        assert_eq!(got, want, "{text:?}");
        let with_bos = tokenizer.encode(text, true).unwrap();
        assert_eq!(with_bos[0], 1, "add_bos_token is set in the file");
        assert_eq!(tokenizer.decode(&with_bos, true).unwrap(), text);
    }
}

fn load_error(file: &str) -> String {
    let path = gguf_dir().join("bad").join(file);
    match load_model(&path, &Device::flex()) {
        Ok(_) => panic!("{file} should not load"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_control_file_for_bad_inputs_loads() {
    load_model(&gguf_dir().join("bad/base-micro.gguf"), &Device::flex()).unwrap();
}

#[test]
fn truncated_file_is_reported() {
    let e = load_error("truncated.gguf");
    assert!(
        e.contains("truncated.gguf")
            && (e.contains("end of file") || e.contains("truncated") || e.contains("exceeds")),
        "{e}"
    );
}

#[test]
fn wrong_magic_is_reported() {
    let e = load_error("bad-magic.gguf");
    assert!(
        e.contains("bad-magic.gguf") && e.to_lowercase().contains("magic"),
        "{e}"
    );
}

#[test]
fn unknown_quant_type_is_reported() {
    let e = load_error("unknown-quant.gguf");
    assert!(e.contains("unknown-quant.gguf") && e.contains("99"), "{e}");
}

#[test]
fn missing_tensor_is_reported_with_both_names() {
    let e = load_error("missing-tensor.gguf");
    assert!(
        e.contains("missing-tensor.gguf")
            && e.contains("blk.1.ffn_down.weight")
            && e.contains("model.layers.1.mlp.down_proj.weight"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_reported_with_the_expected_shape() {
    let e = load_error("wrong-shape.gguf");
    assert!(
        e.contains("wrong-shape.gguf")
            && e.contains("blk.0.attn_v.weight")
            && e.contains("[8, 32]")
            && e.contains("[16, 32]"),
        "{e}"
    );
}

#[test]
fn vocab_mismatch_is_reported() {
    let e = load_error("vocab-mismatch.gguf");
    assert!(
        e.contains("vocab-mismatch.gguf") && e.contains("200") && e.contains("256"),
        "{e}"
    );
}

#[test]
fn not_a_model_is_reported() {
    let e = load_model(&assets().join("tiny/reference.json"), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reference.json") && e.contains(".gguf file or a Hugging Face model folder"),
        "{e}"
    );
    let e = load_model(&assets().join("no/such/model.gguf"), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no/such/model.gguf"), "{e}");
}

//! Quantized inference (`Llama::quantize`, umi-model's `qmatmul.rs`): Q8_0 against an independent
//! numpy Q8_0 forward (`assets/tiny/q8/make_q8_reference.py`, from GGML's definition of the
//! format), against the float64 reference of `assets/tiny/make_tiny.py` (off by the error of
//! 8-bit weights and activations, about 2 % RMS on these tiny random models) and with LoRA
//! adapters applied on top as in f32.

use serde_json::Value;
use umi_model::burn::tensor::Device;
use umi_model::{load_model, load_peft};
use umi_tests::{assert_close, assets, load_folder, logits, reference_cases_of};

/// `q8_reference.json`'s flattened logits per sequence for `folder`: the short sequences
/// (8-bit products, `"sequences"`) or the long ones (f32 against dequantized weights,
/// `"dense_"`; every product in 8 bits, `"prompt8_"`).
fn q8_reference(folder: &str) -> Vec<(Vec<u32>, Vec<f64>)> {
    q8_reference_of(folder, "")
}

fn q8_reference_of(folder: &str, prefix: &str) -> Vec<(Vec<u32>, Vec<f64>)> {
    let path = assets().join("tiny/q8/q8_reference.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let seqs: Vec<Vec<u32>> =
        serde_json::from_value(all[folder][format!("{prefix}sequences")].clone()).unwrap();
    let logits: Vec<Vec<Vec<f64>>> =
        serde_json::from_value(all[folder][format!("{prefix}logits")].clone()).unwrap();
    seqs.into_iter()
        .zip(logits)
        .map(|(s, l)| (s, l.into_iter().flatten().collect()))
        .collect()
}

/// The root-mean-square of `a − b` relative to that of `b`.
fn rms_rel(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// The largest |a − b| and the largest |b|.
fn gap(a: &[f32], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0.0, f64::max);
    (diff, b.iter().fold(0.0, |m, v| m.max(v.abs())))
}

fn as_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn q8_logits_stay_within_quantization_error_of_the_reference() {
    let device = Device::flex();
    // Untied head (a quantized lm_head projection) and tied (the quantized embedding as head).
    for folder in ["llama-gqa", "llama-tied"] {
        let mut model = load_folder(&assets().join("tiny").join(folder), &device);
        let cases = reference_cases_of(folder);
        let f32_logits: Vec<Vec<f32>> = cases
            .iter()
            .map(|c| logits(&model, &c.tokens, &mut model.new_cache()))
            .collect();
        let bytes = model.quantize(umi_model::QFormat::Q8_0);
        // every projection (the head too when untied) and the embedding: 1 byte per weight
        // plus a 4-byte scale per 32; no f32 weight is left
        let params: usize = model
            .projections()
            .iter()
            .map(|(_, p)| p.d_input() * p.d_output())
            .sum::<usize>()
            + model.config.vocab_size * model.config.hidden_size;
        assert_eq!(bytes, params + params / 8, "{folder}: Q8_0 bytes");
        assert_eq!(
            model.embed_tokens.val().dims(),
            [0, 0],
            "{folder}: f32 embedding"
        );
        for (name, p) in model.projections() {
            assert_eq!(p.weight.val().dims(), [0, 0], "{folder}: f32 {name}");
        }
        let q8_cases = q8_reference(folder);
        assert_eq!(q8_cases.len(), cases.len());
        for ((case, f32_out), (q8_tokens, q8_want)) in cases.iter().zip(&f32_logits).zip(&q8_cases)
        {
            assert_eq!(&case.tokens, q8_tokens);
            let got = logits(&model, &case.tokens, &mut model.new_cache());
            // The same arithmetic as the independent Q8_0 forward (f32 sums in another order).
            let what = format!("{folder} q8 logits for {q8_tokens:?}");
            assert_close(&got, q8_want, 0.0, 2e-3, &what);
            let (err, scale) = gap(&got, &case.logits);
            let rms = rms_rel(&got, &case.logits);
            eprintln!(
                "{folder} {:?}: max |q8 - reference| = {err:.2e} of {scale:.2}, relative RMS {rms:.2e}",
                case.tokens
            );
            assert!(
                rms < 0.04 && err < 0.04 * scale,
                "{folder}: q8 error {err} (RMS {rms})"
            );
            // the Q8_0 path really ran: it does not give the f32 numbers
            let (moved, _) = gap(&got, &as_f64(f32_out));
            assert!(
                moved > 1e-6,
                "{folder}: quantized logits equal the f32 ones"
            );
        }
    }
}

/// A prompt (more rows than `QUANTIZED_MAX_ROWS`) runs in f32 against the dequantized
/// weights, or, where this CPU holds Q8_0 interleaved (AVX-512 VNNI; the tiny models' widths
/// are multiples of 16), in 8 bits as a decoding step does: each against its own reference.
#[test]
fn prompts_run_in_f32_or_in_8_bits_on_interleaved_weights() {
    let device = Device::flex();
    let (prefix, path) = if umi_model::qmatmul::interleaves_q8_0() {
        ("prompt8_", "8-bit")
    } else {
        ("dense_", "f32")
    };
    for folder in ["llama-gqa", "llama-tied"] {
        let mut model = load_folder(&assets().join("tiny").join(folder), &device);
        model.quantize(umi_model::QFormat::Q8_0);
        let cases = q8_reference_of(folder, prefix);
        assert!(!cases.is_empty());
        let other = q8_reference_of(
            folder,
            if prefix == "dense_" {
                "prompt8_"
            } else {
                "dense_"
            },
        );
        for ((tokens, want), (_, other)) in cases.into_iter().zip(other) {
            assert!(tokens.len() > 8, "a prompt longer than QUANTIZED_MAX_ROWS");
            let got = logits(&model, &tokens, &mut model.new_cache());
            let what = format!("{folder} {path} prompt q8 logits for {tokens:?}");
            assert_close(&got, &want, 0.0, 2e-3, &what);
            // the two references differ by far more than the tolerance: the path is told apart
            let (apart, _) = gap(&got, &other);
            assert!(
                apart > 1e-2,
                "{folder}: {path} logits also match the other path"
            );
        }
    }
}

#[test]
fn loading_in_q8_equals_quantizing_the_f32_model() {
    let device = Device::flex();
    for file in ["tiny/gguf/tiny-f32.gguf", "tiny/gguf/tiny-q8_0.gguf"] {
        let path = assets().join(file);
        let mut after = load_model(&path, &device).unwrap().model;
        after.quantize(umi_model::QFormat::Q8_0);
        let direct = umi_model::load_model_quantized(&path, &device, umi_model::QFormat::Q8_0)
            .unwrap()
            .model;
        assert!(direct.is_quantized());
        assert_eq!(direct.quantized_bytes(), after.quantized_bytes(), "{file}");
        // short (8-bit) and long (dense) inputs, and decoding on a cache
        for tokens in [
            vec![1u32, 11, 48, 85],
            (0..12).map(|i| i * 19 + 2).collect(),
        ] {
            let a = logits(&after, &tokens, &mut after.new_cache());
            let b = logits(&direct, &tokens, &mut direct.new_cache());
            assert_eq!(a, b, "{file}: logits for {tokens:?}");
        }
    }
}

#[test]
fn merging_into_a_quantized_model_uses_its_dequantized_weights() {
    let device = Device::flex();
    let dir = assets().join("tiny/peft/adapter");
    let path = assets().join("tiny/gguf/tiny-f32.gguf");
    let ids = [1u32, 11, 48, 85, 122, 159, 196, 233, 7, 9];
    let mut q8 = umi_model::load_model_quantized(&path, &device, umi_model::QFormat::Q8_0)
        .unwrap()
        .model;
    load_peft(&mut q8, &dir, &device).unwrap();
    let unmerged = logits(&q8, &ids, &mut q8.new_cache());
    let adapted: Vec<bool> = q8
        .projections()
        .iter()
        .map(|(_, p)| p.lora.is_some())
        .collect();
    assert!(adapted.iter().any(|&a| a));
    umi_model::merge_lora(&mut q8);
    for ((name, p), adapted) in q8.projections().into_iter().zip(adapted) {
        assert!(p.lora.is_none(), "{name} keeps its adapter");
        // merged weights are f32 again; the others stay in Q8_0
        assert_eq!(p.quantized.is_none(), adapted, "{name}");
        assert_eq!(p.weight.val().dims()[0] > 0, adapted, "{name}");
    }
    let merged = logits(&q8, &ids, &mut q8.new_cache());
    if umi_model::qmatmul::interleaves_q8_0() {
        // the long input ran in 8 bits before merging (interleaved weights), in f32 through
        // the merged projections after: apart by the activations' 8-bit rounding
        let rms = rms_rel(&merged, &as_f64(&unmerged));
        assert!(rms < 0.03, "merged vs unmerged: relative RMS {rms}");
    } else {
        // the long input ran in f32 against the dequantized weights before merging, so
        // merging changes the arithmetic only by the order of the sums
        let (err, scale) = gap(&merged, &as_f64(&unmerged));
        assert!(err < 1e-3 * scale.max(1.0), "merged vs unmerged: {err}");
    }
    // the base model stays quantized (the embedding): saving it is refused
    let out = std::env::temp_dir().join(format!("umi-q8-save-{}", std::process::id()));
    let e = umi_model::save_hf(&q8, &out).unwrap_err().to_string();
    assert!(e.contains("Q8_0"), "{e}");
    assert!(!out.exists());
}

/// The logits of `tokens` run through one cache: the first 3 as a prompt, then one at a time.
fn step_by_step(model: &umi_model::Llama, tokens: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    let mut step = logits(model, &tokens[..3], &mut cache);
    for t in &tokens[3..] {
        step.extend(logits(model, &[*t], &mut cache));
    }
    step
}

#[test]
fn q8_decoding_with_the_kv_cache_equals_recomputation() {
    let device = Device::flex();
    let mut model = load_folder(&assets().join("tiny/llama-gqa"), &device);
    model.quantize(umi_model::QFormat::Q8_0);
    let tokens = [1u32, 17, 42, 99, 3, 250, 7, 128];
    let full = logits(&model, &tokens, &mut model.new_cache());
    let step = step_by_step(&model, &tokens);
    // activations are quantized per token, so a token's numbers do not depend on its batch
    let (err, _) = gap(&step, &as_f64(&full));
    assert!(err < 1e-4, "incremental vs full q8 logits differ by {err}");
}

#[test]
fn an_f16_cache_moves_q8_logits_by_its_rounding_and_decodes_as_it_recomputes() {
    let device = Device::flex();
    let mut model = load_folder(&assets().join("tiny/llama-gqa"), &device);
    model.quantize(umi_model::QFormat::Q8_0);
    let tokens = [1u32, 17, 42, 99, 3, 250, 7, 128];
    let f32_cache = logits(&model, &tokens, &mut model.new_cache());
    model.kv_cache_f16 = true;
    let full = logits(&model, &tokens, &mut model.new_cache());
    // keys and values rounded to f16 (2^-11 relative): the logits move. The tiny model's
    // random weights amplify it (1.4e-2 relative RMS when written); SmolLM2's real ones do not
    // (3.6e-4, tests/tests/smollm2.rs)
    let rms = rms_rel(&full, &as_f64(&f32_cache));
    eprintln!("f16 vs f32 cache: relative RMS {rms:.2e}");
    assert!(rms > 0.0, "the f16 cache changed nothing: was it used?");
    assert!(
        rms < 3e-2,
        "the f16 cache moved the logits by {rms} (relative RMS)"
    );
    // both ways of running the sequence read the same f16 values
    let step = step_by_step(&model, &tokens);
    let (err, _) = gap(&step, &as_f64(&full));
    assert!(
        err < 1e-4,
        "incremental vs full logits with an f16 cache differ by {err}"
    );
}

/// The tiny f32 model's logits for `ids` with the tiny PEFT adapter (float64), and how far the
/// adapter moves them from the base model's (largest |Δ|, and the largest |logit|).
fn f32_adapter_reference(ids: &[u32], device: &Device) -> (Vec<f64>, f64, f64) {
    let dir = assets().join("tiny/peft/adapter");
    let mut f32_model = load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), device)
        .unwrap()
        .model;
    let base = logits(&f32_model, ids, &mut f32_model.new_cache());
    load_peft(&mut f32_model, &dir, device).unwrap();
    let want = as_f64(&logits(&f32_model, ids, &mut f32_model.new_cache()));
    let (effect, scale) = gap(&base, &want);
    (want, effect, scale)
}

#[test]
fn lora_adapters_apply_on_top_of_q8_weights() {
    let device = Device::flex();
    let dir = assets().join("tiny/peft/adapter");
    let ids = [1u32, 11, 48, 85, 122, 159, 196, 233];
    let (want, effect, scale) = f32_adapter_reference(&ids, &device);
    assert!(effect > 0.1, "the adapter changes the logits by {effect}");

    // quantize first, then attach the adapter (how the agent swaps role adapters)
    let mut q8 = load_model(&assets().join("tiny/gguf/tiny-f32.gguf"), &device)
        .unwrap()
        .model;
    q8.quantize(umi_model::QFormat::Q8_0);
    load_peft(&mut q8, &dir, &device).unwrap();
    let got = logits(&q8, &ids, &mut q8.new_cache());
    let (err, _) = gap(&got, &want);
    let rms = rms_rel(&got, &want);
    eprintln!(
        "adapter effect {effect:.3}, q8 + adapter vs f32 + adapter {err:.2e} (scale {scale:.2}), relative RMS {rms:.2e}"
    );
    assert!(
        rms < 0.04 && err < 0.25 * effect,
        "q8 + adapter off by {err} (RMS {rms})"
    );
}

/// `merge_lora_quantized` (`umi bench --merge-adapter`; the agent keeps its adapters attached,
/// EVAL.md): the adapters merged into a copy of the Q8_0 weights, which stay Q8_0. The merged
/// copy is as close to the f32 model with its adapter as the attached adapter is, and the model
/// it was copied from (sharing the weights) is untouched.
#[test]
fn adapters_merged_into_q8_weights_match_the_attached_adapter() {
    let device = Device::flex();
    let dir = assets().join("tiny/peft/adapter");
    let ids = [1u32, 11, 48, 85, 122, 159, 196, 233];
    let path = assets().join("tiny/gguf/tiny-f32.gguf");
    let (want, effect, _) = f32_adapter_reference(&ids, &device);

    let mut shared = umi_model::load_model_quantized(&path, &device, umi_model::QFormat::Q8_0)
        .unwrap()
        .model;
    let before = logits(&shared, &ids, &mut shared.new_cache());
    load_peft(&mut shared, &dir, &device).unwrap();
    let attached = logits(&shared, &ids, &mut shared.new_cache());
    let adapted = shared
        .projections()
        .iter()
        .filter(|(_, p)| p.lora.is_some())
        .count();
    assert!(adapted > 0);

    let mut role = shared.clone();
    assert_eq!(umi_model::merge_lora_quantized(&mut role), adapted);
    for (name, p) in role.projections() {
        assert!(p.lora.is_none(), "{name} keeps its adapter");
        let q = p.quantized.as_ref().expect("still quantized");
        assert_eq!(q.0.format(), umi_model::QFormat::Q8_0, "{name}");
    }
    let merged = logits(&role, &ids, &mut role.new_cache());
    let (err_merged, _) = gap(&merged, &want);
    let (err_attached, _) = gap(&attached, &want);
    let rms = rms_rel(&merged, &want);
    eprintln!(
        "adapter effect {effect:.3}; vs f32 + adapter: merged {err_merged:.2e} (RMS {rms:.2e}), attached {err_attached:.2e}"
    );
    assert!(
        rms < 0.04 && err_merged < 0.25 * effect,
        "merged q8 off by {err_merged} (RMS {rms})"
    );
    // the merge rounds once more: it stays within twice the attached adapter's error
    assert!(
        err_merged < 2.0 * err_attached + 1e-3,
        "merged {err_merged} vs attached {err_attached}"
    );
    // the copy it was merged from still runs its attached adapter on the base weights
    assert_eq!(logits(&shared, &ids, &mut shared.new_cache()), attached);
    shared.take_adapters();
    assert_eq!(logits(&shared, &ids, &mut shared.new_cache()), before);
}

/// Q4_1 projections (`--quant q4_1`, the embedding in Q8_0): parity with the same model held
/// in f32 with the dequantized weights. Prompts longer than `QUANTIZED_MAX_ROWS` run in f32
/// against those very weights (equal up to summation order; the tied head, the Q8_0 embedding,
/// in 8 bits where it is interleaved); short inputs (decoding) differ only by the 8-bit
/// rounding of the activations. Against the float64 reference the error is
/// that of 4-bit weights.
#[test]
fn q4_1_logits_equal_the_dequantized_model_up_to_activation_rounding() {
    use umi_model::QFormat;
    use umi_model::burn::module::Param;
    use umi_model::burn::tensor::{Tensor, TensorData};
    let device = Device::flex();
    for folder in ["llama-gqa", "llama-tied"] {
        let mut model = load_folder(&assets().join("tiny").join(folder), &device);
        let bytes = model.quantize(QFormat::Q4_1);
        let projections: usize = model
            .projections()
            .iter()
            .map(|(_, p)| p.d_input() * p.d_output())
            .sum();
        let embedding = model.config.vocab_size * model.config.hidden_size;
        // 4 bits per projection weight plus two f32 per 32; the embedding in Q8_0
        assert_eq!(
            bytes,
            projections / 2 + projections / 4 + embedding + embedding / 8,
            "{folder}: Q4_1 bytes"
        );
        for (name, p) in model.projections() {
            let q = p.quantized.as_ref().expect("quantized");
            assert_eq!(q.0.format(), QFormat::Q4_1, "{folder}: {name}");
        }
        let embed = model.embed_quantized.as_ref().expect("quantized embedding");
        assert_eq!(embed.0.format(), QFormat::Q8_0, "{folder}: embedding");

        // the f32 twin: every weight replaced by its dequantized values
        let mut twin = load_folder(&assets().join("tiny").join(folder), &device);
        for ((_, p), (_, t)) in model.projections().into_iter().zip(twin.projections_mut()) {
            t.weight = Param::from_tensor(p.weight_f32());
        }
        let [vocab, hidden] = [model.config.vocab_size, model.config.hidden_size];
        twin.embed_tokens = Param::from_tensor(Tensor::from_data(
            TensorData::new(embed.0.dequantize(), [vocab, hidden]),
            &device,
        ));
        assert!(!twin.is_quantized());

        let long: Vec<u32> = (0..12).map(|i| i * 19 + 2).collect();
        let got = logits(&model, &long, &mut model.new_cache());
        let want = as_f64(&logits(&twin, &long, &mut twin.new_cache()));
        if model.config.tie_word_embeddings && embed.0.interleaved() {
            // the tied head is the Q8_0 embedding, interleaved: 8-bit for a prompt too
            let rms = rms_rel(&got, &want);
            assert!(rms < 0.03, "{folder}: prompt logits moved by {rms}");
        } else {
            assert_close(
                &got,
                &want,
                0.0,
                2e-4,
                &format!("{folder} dense q4_1 logits"),
            );
        }

        for case in reference_cases_of(folder) {
            assert!(case.tokens.len() <= 8, "decoding-sized input");
            let got = logits(&model, &case.tokens, &mut model.new_cache());
            let want = as_f64(&logits(&twin, &case.tokens, &mut twin.new_cache()));
            let rms = rms_rel(&got, &want);
            let rms_ref = rms_rel(&got, &case.logits);
            eprintln!(
                "{folder} {:?}: q4_1 vs dequantized twin relative RMS {rms:.2e}, vs reference {rms_ref:.2e}",
                case.tokens
            );
            assert!(
                rms < 0.03,
                "{folder}: activation rounding moved logits by {rms}"
            );
            assert!(rms > 1e-7, "{folder}: the 4-bit kernel did not run");
            // a 4-bit step is range/15 against Q8_0's range/254: ~17x Q8_0's weight error
            // (Q8_0 is about 2 % RMS on these tiny random models; 4-bit about 26 %)
            assert!(rms_ref < 0.4, "{folder}: Q4_1 error {rms_ref}");
        }
    }
}

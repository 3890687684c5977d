//! Hugging Face export of a model's tokenizer (issue 15, item 12): umi's export reloads in umi
//! with the same BOS behaviour, chat template and token ids, and `transformers` reads the same
//! files the same way. `assets/tiny/hf-export/` holds umi's export of `tiny-spm.gguf`'s tokenizer
//! (SentencePiece, `add_bos_token`) with SmolLM2's ChatML template; `make_reference.py` beside it
//! wrote `expected.json` with transformers 5.24 (`AutoTokenizer`, `apply_chat_template`).
//! `UMI_BLESS=1` rewrites the export files (then rerun the script).

use umi_model::save_hf_tokenizer;
use umi_model::{ChatTemplate, Device, SMOLLM_DEFAULT_SYSTEM, load_hf_folder, load_model, save_hf};
use umi_tests::{assets, logits};

#[test]
fn exported_tokenizer_reloads_in_umi_and_reads_as_transformers_reads_it() {
    let device = Device::flex();
    let fixture = assets().join("tiny/hf-export");
    let mut loaded = load_model(&assets().join("tiny/gguf/tiny-spm.gguf"), &device).unwrap();
    loaded.chat_template = ChatTemplate::ChatMl {
        default_system: Some(SMOLLM_DEFAULT_SYSTEM.into()),
    };
    let out = std::env::temp_dir().join(format!("umi-hf-export-{}", std::process::id()));
    save_hf(&loaded.model, &out).unwrap();
    save_hf_tokenizer(&loaded.tokenizer, &loaded.chat_template, 128, &out).unwrap();
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        let got = std::fs::read_to_string(out.join(name)).unwrap();
        if std::env::var_os("UMI_BLESS").is_some() {
            std::fs::write(fixture.join(name), &got).unwrap();
        }
        let want = std::fs::read_to_string(fixture.join(name)).unwrap();
        assert!(
            got == want,
            "{name} differs from the fixture (UMI_BLESS=1 rewrites it)"
        );
    }

    let back = load_hf_folder(&out, &device).unwrap();
    assert!(loaded.tokenizer.adds_bos(), "tiny-spm asks for BOS");
    assert!(back.tokenizer.adds_bos(), "the export keeps add_bos_token");
    assert_eq!(
        back.chat_template, loaded.chat_template,
        "the export keeps the chat template"
    );

    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let chat = case["chat"].as_str().unwrap();
        let chat_ids: Vec<u32> = serde_json::from_value(case["chat_ids"].clone()).unwrap();
        for (what, tok, template) in [
            ("gguf", &loaded.tokenizer, &loaded.chat_template),
            ("export", &back.tokenizer, &back.chat_template),
        ] {
            assert_eq!(
                tok.encode(text, true).unwrap(),
                ids,
                "{what}: ids of {text:?}"
            );
            assert_eq!(
                template.user_prompt(text),
                chat,
                "{what}: chat prompt of {text:?}"
            );
            assert_eq!(
                tok.encode(chat, true).unwrap(),
                chat_ids,
                "{what}: ids of the chat prompt of {text:?}"
            );
        }
    }
    // and the weights: the exported folder computes the GGUF model's logits
    let tokens = [1u32, 40, 41, 42, 7];
    let a = logits(&loaded.model, &tokens, &mut loaded.model.new_cache());
    let b = logits(&back.model, &tokens, &mut back.model.new_cache());
    let a: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    umi_tests::assert_close(&b, &a, 1e-6, 1e-6, "exported vs GGUF logits");
    let _ = std::fs::remove_dir_all(&out);
}

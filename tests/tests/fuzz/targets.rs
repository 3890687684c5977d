//! The fuzzing targets: each parser or loader umi exposes to files and model output, with its
//! seeds and the check that runs on every mutated input.

use super::*;

/// A scratch folder for one target's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umi-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok_or_err<T, E>(r: Result<T, E>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(_) => Outcome::Err,
    }
}

/// A `tokenizer.json` with a word-level vocabulary of `vocab` tokens `w0`, `w1`, ...
fn word_level_tokenizer(vocab: usize) -> Vec<u8> {
    let words: serde_json::Map<String, Value> =
        (0..vocab).map(|i| (format!("w{i}"), json!(i))).collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": words, "unk_token": "w0"}
    })
    .to_string()
    .into_bytes()
}

/// A copy of the tiny Hugging Face folder `src` (under `assets/tiny`) with a word-level
/// tokenizer, in `dir`.
fn hf_folder(src: &str, dir: &Path) {
    let src = assets().join("tiny").join(src);
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.join("tokenizer.json"), word_level_tokenizer(256)).unwrap();
}

fn gguf_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![read_asset("tiny/gguf/tiny-q4_0.gguf")];
    let mut bad: Vec<_> = std::fs::read_dir(assets().join("tiny/gguf/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    bad.sort();
    seeds.extend(bad.iter().map(|p| std::fs::read(p).unwrap()));
    seeds
}

/// GGUF files, loaded from a file (`load_model`, as the CLI) or from memory
/// (`load_gguf_bytes`, as the web app), alternately.
pub(super) fn gguf_target() -> Target {
    let dir = scratch("gguf");
    let device = Device::flex();
    Target {
        name: "gguf",
        kind: Kind::Binary { hot: 8192 },
        seeds: gguf_seeds(),
        corpus: vec![
            ("empty file", 0, vec![]),
            ("magic only", 1, b"GGUF".to_vec()),
            ("header claiming 2^63 tensors", 1, {
                let mut b = b"GGUF".to_vec();
                b.extend(3u32.to_le_bytes());
                b.extend(i64::MAX.to_le_bytes());
                b.extend(i64::MAX.to_le_bytes());
                b
            }),
        ],
        run: Box::new(move |input, i| {
            if i % 2 == 0 {
                let path = dir.join("model.gguf");
                std::fs::write(&path, input).unwrap();
                ok_or_err(load_model(&path, &device))
            } else {
                ok_or_err(load_gguf_bytes(
                    input.to_vec(),
                    "fuzz.gguf",
                    &device,
                    umi_model::WeightDtype::F32,
                    &mut |_| {},
                ))
            }
        }),
    }
}

/// The length of a safetensors file's header, plus its 8-byte length prefix.
pub(super) fn safetensors_header_end(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// `seed` (a safetensors file) with `extra` more one-element tensors in its header.
fn many_tensors(seed: &[u8], extra: usize) -> Vec<u8> {
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    let st = SafeTensors::deserialize(seed).unwrap();
    let one = 0f32.to_le_bytes();
    let mut views: Vec<(String, TensorView)> = st.tensors();
    views.extend((0..extra).map(|i| {
        (
            format!("extra.{i}"),
            TensorView::new(Dtype::F32, vec![1], &one).unwrap(),
        )
    }));
    safetensors::serialize(views, None).unwrap()
}

/// `model.safetensors` of `assets/tiny/llama-gqa`, loaded as a whole folder (`load_model`).
pub(super) fn safetensors_target() -> Target {
    let dir = scratch("safetensors");
    hf_folder("llama-gqa", &dir);
    let seed = read_asset("tiny/llama-gqa/model.safetensors");
    let hot = safetensors_header_end(&seed);
    let device = Device::flex();
    let corpus = vec![
        ("empty file", 0, vec![]),
        ("header length 2^64-1", 0, u64::MAX.to_le_bytes().to_vec()),
        ("header length beyond the file", 0, {
            let mut b = (1u64 << 40).to_le_bytes().to_vec();
            b.extend(b"{}");
            b
        }),
        (
            "20,000 extra tensors in the header",
            0,
            many_tensors(&seed, 20_000),
        ),
    ];
    Target {
        name: "safetensors",
        kind: Kind::Binary { hot },
        seeds: vec![seed],
        corpus,
        run: Box::new(move |input, _| {
            std::fs::write(dir.join("model.safetensors"), input).unwrap();
            ok_or_err(load_model(&dir, &device))
        }),
    }
}

/// The sharded folder `assets/tiny/llama-gqa-sharded`: input 0 mod 3 replaces the index
/// (`model.safetensors.index.json`, JSON mutations), the others one of the two shards.
pub(super) fn sharded_target() -> Target {
    let dir = scratch("sharded");
    hf_folder("llama-gqa-sharded", &dir);
    let names = [
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let originals: Vec<Vec<u8>> = names
        .iter()
        .map(|n| read_asset(&format!("tiny/llama-gqa-sharded/{n}")))
        .collect();
    let device = Device::flex();
    let index: Value = serde_json::from_slice(&originals[0]).unwrap();
    let shard_name = |name: &str| {
        let mut index = index.clone();
        let first = index["weight_map"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        index["weight_map"][first] = json!(name);
        serde_json::to_vec(&index).unwrap()
    };
    let corpus = vec![
        ("shard /dev/zero", 0, shard_name("/dev/zero")),
        ("shard ../x", 0, shard_name("../x")),
        (
            "shard through ..",
            0,
            shard_name("model-00001-of-00002.safetensors/../../../etc/passwd"),
        ),
        ("shard is the folder", 0, shard_name(".")),
        ("shard is empty", 0, shard_name("")),
        (
            "weight_map is a list",
            0,
            br#"{"weight_map": ["a"]}"#.to_vec(),
        ),
    ];
    Target {
        name: "safetensors-sharded",
        kind: Kind::Json,
        seeds: vec![originals[0].clone()],
        corpus,
        run: Box::new(move |input, i| {
            // the index gets the JSON input; shards get it as bytes (see `sharded_input`)
            let which = i % 3;
            for (n, (name, original)) in names.iter().zip(&originals).enumerate() {
                let bytes = if n == which { input } else { original };
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            ok_or_err(load_model(&dir, &device))
        }),
    }
}

/// `config.json` of `assets/tiny/llama-gqa`: parsed (`LlamaConfig::from_json`, which validates)
/// and, on even inputs, loaded with the folder's weights and tokenizer (`load_model`).
pub(super) fn config_target() -> Target {
    let dir = scratch("config");
    hf_folder("llama-gqa", &dir);
    let device = Device::flex();
    let config: Value = serde_json::from_slice(&read_asset("tiny/llama-gqa/config.json")).unwrap();
    let with = |edits: Value| {
        let mut c = config.clone();
        for (k, v) in edits.as_object().unwrap() {
            c[k] = v.clone();
        }
        serde_json::to_vec(&c).unwrap()
    };
    let mut corpus = Vec::new();
    for (what, edits) in [
        (
            "context length 1e12",
            json!({"max_position_embeddings": 1_000_000_000_000u64}),
        ),
        ("1e9 layers", json!({"num_hidden_layers": 1_000_000_000})),
        (
            "heads × head_dim overflowing",
            json!({"num_attention_heads": 1u64 << 32, "head_dim": 1u64 << 32}),
        ),
        ("head_dim 0", json!({"head_dim": 0})),
        (
            "no heads",
            json!({"num_attention_heads": 0, "num_key_value_heads": 0}),
        ),
        (
            "kv heads not dividing heads",
            json!({"num_key_value_heads": 3}),
        ),
        ("hidden size 2^63", json!({"hidden_size": 1u64 << 63})),
        ("vocab 0", json!({"vocab_size": 0})),
        ("vocab 2^40", json!({"vocab_size": 1u64 << 40})),
        (
            "bos outside the vocabulary",
            json!({"bos_token_id": 1_000_000_000}),
        ),
        ("eos u32::MAX", json!({"eos_token_id": [2, u32::MAX]})),
        ("rope_theta 0", json!({"rope_theta": 0.0})),
        ("rms_norm_eps negative", json!({"rms_norm_eps": -1.0})),
    ] {
        // each as a whole load (even index) and parsed alone (odd)
        corpus.push((what, 0, with(edits.clone())));
        corpus.push((what, 1, with(edits)));
    }
    Target {
        name: "config.json",
        kind: Kind::Json,
        seeds: vec![read_asset("tiny/llama-gqa/config.json")],
        corpus,
        run: Box::new(move |input, i| {
            if i % 2 == 0 {
                std::fs::write(dir.join("config.json"), input).unwrap();
                ok_or_err(load_model(&dir, &device))
            } else {
                let text = String::from_utf8_lossy(input);
                ok_or_err(LlamaConfig::from_json(&text, "config.json"))
            }
        }),
    }
}

/// `tokenizer.json`: a word-level one, and the byte-level BPE and SentencePiece tokenizers of
/// the tiny GGUF files written as `tokenizer.json`; read (`Tokenizer::from_bytes`, as the
/// loader) and used to encode and decode a text.
pub(super) fn tokenizer_target() -> Target {
    let mut seeds = vec![word_level_tokenizer(64)];
    for file in ["tiny-q4_0.gguf", "tiny-spm.gguf"] {
        let gguf = GgufFile::open(&assets().join("tiny/gguf").join(file)).unwrap();
        let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
        seeds.push(tokenizer.to_json().unwrap().into_bytes());
    }
    let mut padded: Value = serde_json::from_slice(&word_level_tokenizer(64)).unwrap();
    padded["padding"] = json!({"strategy": {"Fixed": 1_000_000_000}, "direction": "Right",
        "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "w0"});
    let mut truncated = padded.clone();
    truncated["padding"] = Value::Null;
    truncated["truncation"] = json!({"direction": "Right", "max_length": 0,
        "strategy": "LongestFirst", "stride": 1_000_000_000});
    let corpus = vec![
        ("padding Fixed 1e9", 0, serde_json::to_vec(&padded).unwrap()),
        (
            "truncation to 0, stride 1e9",
            0,
            serde_json::to_vec(&truncated).unwrap(),
        ),
        ("BPE merge without the subword prefix", 0, {
            let mut t: Value = serde_json::from_slice(&seeds[2]).unwrap();
            t["model"]["continuing_subword_prefix"] = json!("▁");
            serde_json::to_vec(&t).unwrap()
        }),
        ("decoder cut off", 0, {
            let mut t = seeds[1].clone();
            let at = String::from_utf8_lossy(&t).find("\"decoder\"").unwrap() + 11;
            t.truncate(at + 3);
            t
        }),
    ];
    Target {
        name: "tokenizer.json",
        kind: Kind::Json,
        seeds,
        corpus,
        run: Box::new(|input, _| {
            let tokenizer =
                match Tokenizer::from_bytes(input, "tokenizer.json", Some(1), vec![2], true)
                    .or_else(|_| {
                        Tokenizer::from_bytes(input, "tokenizer.json", None, vec![], false)
                    }) {
                    Ok(t) => t,
                    Err(_) => return Outcome::Err,
                };
            let Ok(ids) = tokenizer.encode("w1 w5 Hello, world! héllo 🙂 w63", true) else {
                return Outcome::Err;
            };
            ok_or_err(tokenizer.decode(&ids, false))
        }),
    }
}

/// Tool docs as `umi run --tools` reads them (`load_tool_specs`), then the host allow-list
/// (`HttpTools::new`) and the prompt's tool list (`tool_doc`, `tool_names`).
pub(super) fn tool_docs_target() -> Target {
    let base = "http://127.0.0.1:8080";
    let docs = umi_tools::server::tool_docs(base);
    let functions: Vec<Value> = docs["tools"]
        .as_array()
        .or(docs.as_array())
        .unwrap()
        .iter()
        .map(|d| {
            let properties: serde_json::Map<String, Value> = d["input"]
                .as_object()
                .map(|o| {
                    o.keys()
                        .map(|k| (k.clone(), json!({"type": "string", "description": k})))
                        .collect()
                })
                .unwrap_or_default();
            json!({"type": "function", "function": {
                "name": d["Name"], "description": d["function"],
                "parameters": {"type": "object", "properties": properties}}})
        })
        .collect();
    let many: Vec<Value> = (0..100_000)
        .map(|i| json!({"Name": format!("tool_{i}"), "function": "f", "input": {}}))
        .collect();
    let corpus = vec![
        ("100,000 tools", 0, serde_json::to_vec(&many).unwrap()),
        (
            "templated host",
            0,
            serde_json::to_vec(&json!([{"Name": "t", "http":
            {"method": "GET", "url": "http://{host}/x"}}]))
            .unwrap(),
        ),
        (
            "OpenAPI server variable host",
            0,
            serde_json::to_vec(&json!({"openapi": "3.0.0",
            "servers": [{"url": "http://{h}:{p}", "variables": {"h": {"default": "evil"}}}],
            "paths": {"/x": {"get": {"operationId": "x"}}}}))
            .unwrap(),
        ),
        (
            "userinfo and IPv6 hosts",
            0,
            serde_json::to_vec(&json!([
            {"Name": "a", "http": {"method": "GET", "url": "http://u:p@127.0.0.1@evil/x"}},
            {"Name": "b", "http": {"method": "GET", "url": "http://[::1]:99999/x"}},
            {"Name": "c", "http": {"method": "GET", "url": "http://%31%32%37.0.0.1/x"}}]))
            .unwrap(),
        ),
    ];
    let seeds = [
        docs,
        umi_tools::server::openapi(base),
        Value::Array(functions),
    ]
    .iter()
    .map(|v| serde_json::to_vec_pretty(v).unwrap())
    .collect();
    Target {
        name: "tool docs",
        kind: Kind::Json,
        seeds,
        corpus,
        run: Box::new(|input, _| {
            let text = String::from_utf8_lossy(input);
            match umi_tools::load_tool_specs(&text, "fuzz") {
                Ok(specs) => {
                    let docs: Vec<_> = specs.iter().map(|s| s.doc()).collect();
                    for spec in &specs {
                        let _ = spec.host();
                    }
                    let _ = umi_data::prompt::check_tool_docs(&docs);
                    let _ = umi_data::tool_doc(&docs);
                    let _ = umi_data::tool_names(&docs);
                    let _tools = umi_tools::HttpTools::new(specs, Duration::from_secs(1));
                    Outcome::Ok
                }
                Err(_) => Outcome::Err,
            }
        }),
    }
}

/// Planner and caller generations: `parse_planner_output` (both defaults), `parse_action` and
/// its input as JSON, and the evaluator's `parse_output`.
pub(super) fn model_output_target() -> Target {
    let seeds = [
        "Action: currency_convert\nAction Input: {\"amount\": 100, \"from\": \"USD\", \"to\": \"EUR\"}",
        "Action: get_weather\nAction Input: {\"city\": \"Paris\"}\n</s>",
        " Action:  calc \n Action Input: {\"expression\": \"2*(3+4)\"} Action Input: {}",
        "I will convert the amount first.\n Next: caller.",
        ": The answer is ready. Next: conclusion. extra",
        "None of the tools can do this. Next: give up.",
        "Next: caller. Next: conclusion. Next: give up.",
        "assistant: Let me look. Next: caller.</s>caller: Action: day_of_week\nAction Input: {\"date\": \"2026-12-25\"}</s>",
        "assistant: Done. Next: conclusion.</s>conclusion: 100 USD is 92 EUR.</s>",
        "Thought: é日本語🙂 Action:\u{00a0}名前\nAction Input: {\"k\": \"\\ud83d\\ude42\"}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let corpus = vec![
        ("1 MB without markers", 0, "é".repeat(1 << 19).into_bytes()),
        (
            "100,000 markers",
            0,
            "Action: Action Input: Next: caller."
                .repeat(100_000)
                .into_bytes(),
        ),
        (
            "66 KB action input",
            0,
            format!(
                "Action: calc\nAction Input: {{\"q\": \"{}\"}}",
                "x".repeat(66_000)
            )
            .into_bytes(),
        ),
        ("markers only", 0, b"Action Input:Action:".to_vec()),
        (
            "invalid UTF-8",
            0,
            b"Action: \xff\xfe\nAction Input: {\"\xc3\"}".to_vec(),
        ),
    ];
    Target {
        name: "model output",
        kind: Kind::Text,
        seeds,
        corpus,
        run: Box::new(|input, _| {
            let text = String::from_utf8_lossy(input);
            let _ = parse_planner_output(&text, NoMarkerDefault::Caller);
            let _ = parse_planner_output(&text, NoMarkerDefault::Summarizer);
            let _ = umi_eval::parse_output(&text);
            match parse_action(&text) {
                Some(action) => {
                    let _ = action.input_json();
                    let _ = action.to_text();
                    Outcome::Ok
                }
                None => Outcome::Err,
            }
        }),
    }
}

/// α-UMi conversation files as `umi data` reads them (`readers::read`), then the role samples
/// of every role made from what was kept.
pub(super) fn alpha_umi_target() -> Target {
    let dir = scratch("alpha-umi");
    let expected: Vec<Value> =
        serde_json::from_slice(&read_asset("reference/toolbench_stage2_expected.json")).unwrap();
    let mut seeds: Vec<Vec<u8>> = vec![
        serde_json::to_vec(&expected[..2]).unwrap(),
        serde_json::to_vec_pretty(&expected[2..3]).unwrap(),
        serde_json::to_vec(&json!([{
            "tools": umi_tools::server::tool_docs("http://127.0.0.1:8080")["tools"].as_array().map(|t| t[..2].to_vec()),
            "instruction": "What is 2+2?",
            "conversations": [
                {"from": "user", "value": "What is 2+2?"},
                {"from": "assistant", "value": "I will compute it. Next: caller."},
                {"from": "caller", "value": "Action: calculator\nAction Input: {\"expression\": \"2+2\"}"},
                {"from": "observation", "value": "{\"result\": 4}"},
                {"from": "assistant", "value": "It is 4. Next: conclusion."},
                {"from": "conclusion", "value": "2+2 is 4."}
            ]
        }]))
        .unwrap(),
    ];
    // two records of the real α-UMi training data, when `../shared/data` is there
    let shared =
        shared_data().join("alpha-umi-toolbench/train-example/raw_data/raw_data_stage_2.json");
    if let Some(records) = std::fs::read(&shared)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<Value>>(&b).ok())
    {
        seeds.push(serde_json::to_vec(&records[..2.min(records.len())]).unwrap());
    }
    let record = |turns: usize, tools: usize| {
        let mut r = expected[0].clone();
        let conv = r["conversations"].as_array().unwrap().clone();
        r["conversations"] = Value::Array(conv.iter().cycle().take(turns).cloned().collect());
        let t = r["tools"].as_array().unwrap().clone();
        r["tools"] = Value::Array(t.iter().cycle().take(tools).cloned().collect());
        r
    };
    let good = serde_json::to_string(&expected[..1]).unwrap();
    let corpus = vec![
        (
            "4,000 turns",
            0,
            serde_json::to_vec(&[record(4000, 2)]).unwrap(),
        ),
        (
            "100,000 tools",
            0,
            serde_json::to_vec(&[record(4, 100_000)]).unwrap(),
        ),
        ("BOM", 0, format!("\u{feff}{good}").into_bytes()),
        (
            "NaN record",
            0,
            format!("[{{\"x\": NaN}}, {}", &good[1..]).into_bytes(),
        ),
        (
            "lone surrogate",
            0,
            format!("[{{\"x\": \"\\ud800\"}}, {}", &good[1..]).into_bytes(),
        ),
        (
            "multi-byte character outside strings",
            0,
            format!("[é, NaN, {}", &good[1..]).into_bytes(),
        ),
        (
            "20,000 nested arrays",
            0,
            format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(),
        ),
    ];
    Target {
        name: "α-UMi JSON",
        kind: Kind::Json,
        seeds,
        corpus,
        run: Box::new(move |input, _| {
            let path = dir.join("data.json");
            std::fs::write(&path, input).unwrap();
            match read(DataFormat::AlphaUmi, &path) {
                Ok((conversations, _)) => {
                    for c in conversations.iter().take(4) {
                        for role in [
                            Role::Backbone,
                            Role::Planner,
                            Role::Caller,
                            Role::Summarizer,
                        ] {
                            let _ = umi_data::role_samples(c, role, PromptSet::ToolBench);
                        }
                    }
                    Outcome::Ok
                }
                Err(_) => Outcome::Err,
            }
        }),
    }
}

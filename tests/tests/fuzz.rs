//! Seeded, bounded mutation fuzzing of every parser umi feeds untrusted input to: GGUF files,
//! safetensors folders (single and sharded with `model.safetensors.index.json`), `config.json`,
//! `tokenizer.json`, tool docs (ToolBench docs, OpenAPI, function schemas), model outputs (the
//! planner's `Next:` markers and the caller's `Action:`), and α-UMi conversation JSON.
//!
//! Seeds are the repository's fixtures; each input is a seed after 1–4 mutations drawn from a
//! `SmallRng` seeded per target (byte-level: bit flips, random bytes, interesting little-endian
//! integers, truncation, chunk deletion/duplication, splices; for JSON and text also
//! structure-aware edits). Every input goes through the public loader the CLI uses inside
//! `catch_unwind`; the test fails on any panic, or when one input's heap peak (counted by the
//! allocator below) exceeds [`HEAP_CAP`]. Counts per target are printed (`--nocapture`) and
//! recorded in `RELIABILITY.md`.
//!
//! `UMI_FUZZ_ITERS` sets the inputs per target (default [`DEFAULT_ITERS`]), `UMI_FUZZ_SEED` the
//! seed (default 0), `UMI_FUZZ_TARGETS` a comma-separated subset of targets. Inputs that panic
//! are written to `$TMPDIR/umi-fuzz-crashes/`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use umi_data::readers::{DataFormat, read};
use umi_data::{NoMarkerDefault, PromptSet, Role, parse_action, parse_planner_output};
use umi_model::burn::tensor::Device;
use umi_model::weights::GgufFile;
use umi_model::{LlamaConfig, Tokenizer, load_gguf_bytes, load_model};
use umi_tests::{assets, shared_data};

/// Inputs per target when `UMI_FUZZ_ITERS` is unset: 8 targets × 3,000 = 24,000 mutated inputs
/// (plus the corpus), about 10 s in a release build on 2 cores.
const DEFAULT_ITERS: usize = 3000;

/// Most heap one input may hold at once above what was live before it.
const HEAP_CAP: usize = 256 << 20;

/// Longest one input may take (a hang or quadratic blow-up otherwise).
const SLOW_CAP: Duration = Duration::from_secs(10);

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// The one `unsafe` of the tests package (its lints deny `unsafe_code` rather than forbid it
// for this): `GlobalAlloc` is an unsafe trait. Every call is forwarded unchanged to `System`.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What one input did.
enum Outcome {
    Ok,
    Err,
}

/// How one input is mutated.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Binary files: byte-level mutations, mostly in the first `hot` bytes (headers).
    Binary { hot: usize },
    /// JSON: byte-level and structure-aware mutations.
    Json,
    /// Free text (model outputs): byte-level mutations plus marker insertions.
    Text,
}

/// One fuzz target: its seeds, its corpus of known-bad inputs, and how an input runs.
struct Target {
    name: &'static str,
    kind: Kind,
    seeds: Vec<Vec<u8>>,
    /// Hand-made inputs run unmutated before the fuzzing: (what it is, input index, bytes);
    /// the index chooses the path for targets that alternate (see each target).
    corpus: Vec<(&'static str, usize, Vec<u8>)>,
    run: Run,
}

/// How a target runs input `i`.
type Run = Box<dyn Fn(&[u8], usize) -> Outcome>;

/// Counts of one target.
#[derive(Default)]
struct Stats {
    corpus: usize,
    /// How each corpus case ended: `Ok`, `Err` or `PANIC`.
    corpus_outcomes: Vec<String>,
    inputs: usize,
    ok: usize,
    err: usize,
    panics: Vec<String>,
    slowest: Duration,
    peak: usize,
}

fn read_asset(rel: &str) -> Vec<u8> {
    std::fs::read(assets().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

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
fn gguf_target() -> Target {
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
                    &mut |_| {},
                ))
            }
        }),
    }
}

/// The length of a safetensors file's header, plus its 8-byte length prefix.
fn safetensors_header_end(bytes: &[u8]) -> usize {
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
fn safetensors_target() -> Target {
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
fn sharded_target() -> Target {
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
fn config_target() -> Target {
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
fn tokenizer_target() -> Target {
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
fn tool_docs_target() -> Target {
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
fn model_output_target() -> Target {
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
fn alpha_umi_target() -> Target {
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

// ---------------------------------------------------------------------------------------------
// Mutations

/// Little-endian integers that break size and offset arithmetic.
const INTERESTING: [i64; 16] = [
    0,
    1,
    -1,
    2,
    255,
    256,
    65535,
    i32::MAX as i64,
    1 << 31,
    u32::MAX as i64,
    1 << 32,
    1_000_000_000,
    i64::MAX,
    i64::MIN,
    -2,
    1 << 40,
];

/// Number literals for structure-aware JSON edits.
const NUMBERS: [&str; 18] = [
    "0",
    "-1",
    "1e9",
    "1000000000",
    "4294967295",
    "4294967296",
    "2147483648",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e309",
    "-1e309",
    "1e-400",
    "0.5",
    "NaN",
    "Infinity",
    "1.7976931348623157e308",
];

/// Strings for structure-aware edits: escapes serde rejects or Python accepts, control
/// characters, bidi and multi-byte text.
const STRINGS: [&str; 12] = [
    "\\ud800",
    "\\udfff\\ud800",
    "\\u0000",
    "\\uDBFF\\uDFFF",
    "\\ud83d\\ude42",
    "\u{feff}",
    "é日本語🙂",
    "\u{202e}evil",
    "\\",
    "\\x41",
    "Next: give up.",
    "Action Input:",
];

/// Text pieces for model-output edits.
const MARKERS: [&str; 12] = [
    "Action:",
    "Action Input:",
    "Next: caller.",
    "Next: conclusion.",
    "Next: give up.",
    ": ",
    "</s>",
    "assistant: ",
    "caller: ",
    "conclusion: ",
    "é",
    "🙂",
];

fn offset(rng: &mut SmallRng, len: usize, kind: Kind) -> usize {
    match kind {
        Kind::Binary { hot } if hot < len && rng.random_bool(0.8) => rng.random_range(0..hot),
        _ => rng.random_range(0..len),
    }
}

/// One byte-level mutation of `data` (`other` is another seed, for splices).
fn mutate_bytes(rng: &mut SmallRng, data: &mut Vec<u8>, other: &[u8], kind: Kind) {
    if data.is_empty() {
        data.extend_from_slice(&other[..other.len().min(64)]);
        return;
    }
    let len = data.len();
    match rng.random_range(0..8) {
        0 => {
            for _ in 0..rng.random_range(1..=8) {
                let at = offset(rng, len, kind);
                data[at] ^= 1 << rng.random_range(0..8);
            }
        }
        1 => {
            let at = offset(rng, len, kind);
            let n = rng.random_range(1..=16).min(len - at);
            rng.fill(&mut data[at..at + n]);
        }
        2 => {
            let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
            if len >= width {
                let at = offset(rng, len - width + 1, kind);
                let value = INTERESTING[rng.random_range(0..INTERESTING.len())];
                data[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }
        3 => data.truncate(offset(rng, len, kind)),
        4 => {
            let at = offset(rng, len, kind);
            let n = rng.random_range(1..=256).min(len - at);
            data.drain(at..at + n);
        }
        5 => {
            let at = offset(rng, len, kind);
            let n = rng.random_range(1..=256).min(len - at);
            let chunk = data[at..at + n].to_vec();
            let to = rng.random_range(0..=len);
            data.splice(
                to..to,
                chunk
                    .iter()
                    .copied()
                    .cycle()
                    .take(n * rng.random_range(1..=4)),
            );
        }
        6 => {
            let at = offset(rng, len, kind);
            let junk: Vec<u8> = (0..rng.random_range(1..=32))
                .map(|_| rng.random())
                .collect();
            data.splice(at..at, junk);
        }
        _ => {
            // splice: a prefix of this input and a suffix of the other seed
            if !other.is_empty() {
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
}

/// Every node of `v` as a JSON pointer.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let key = k.replace('~', "~0").replace('/', "~1");
                pointers(x, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
}

/// A JSON value that strains a reader.
fn nasty_value(rng: &mut SmallRng, around: &Value) -> Value {
    match rng.random_range(0..10) {
        0 => json!(INTERESTING[rng.random_range(0..INTERESTING.len())]),
        1 => json!(-(rng.random_range(1..1u64 << 40) as f64) * 1e10),
        2 => Value::Null,
        3 => json!(rng.random_bool(0.5)),
        4 => json!([]),
        5 => json!({}),
        6 => {
            let n = [1usize << 10, 1 << 16, 1 << 20][rng.random_range(0..3)];
            Value::String("A".repeat(n))
        }
        7 => {
            let mut v = around.clone();
            for _ in 0..rng.random_range(2..200) {
                v = if rng.random_bool(0.5) {
                    json!([v])
                } else {
                    json!({ "k": v })
                };
            }
            v
        }
        8 => Value::String(String::new()),
        _ => match around {
            Value::Array(a) if !a.is_empty() => {
                let n = rng.random_range(2..=64);
                Value::Array(a.iter().cycle().take(a.len() * n).cloned().collect())
            }
            Value::String(s) => Value::String(s.repeat(rng.random_range(2..=64))),
            _ => json!("0"),
        },
    }
}

/// One structure-aware mutation of the JSON text `data`: a node replaced, removed or moved
/// (when it parses), or a number or escape rewritten in the text.
fn mutate_json(rng: &mut SmallRng, data: &mut Vec<u8>) {
    if rng.random_bool(0.5)
        && let Ok(mut value) = serde_json::from_slice::<Value>(data)
    {
        let mut all = Vec::new();
        pointers(&value, String::new(), &mut all);
        let at = all[rng.random_range(0..all.len())].clone();
        let other = all[rng.random_range(0..all.len())].clone();
        let other_value = value.pointer(&other).cloned().unwrap_or(Value::Null);
        let (parent, key) = at.rsplit_once('/').unwrap_or(("", ""));
        match rng.random_range(0..4) {
            0 if !at.is_empty() => {
                // remove the node
                match value.pointer_mut(parent) {
                    Some(Value::Object(o)) => {
                        o.remove(&key.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(i) = key.parse::<usize>() {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            1 => {
                // another node copied here
                if let Some(node) = value.pointer_mut(&at) {
                    *node = other_value;
                }
            }
            _ => {
                if let Some(node) = value.pointer_mut(&at) {
                    *node = nasty_value(rng, node);
                }
            }
        }
        *data = if rng.random_bool(0.5) {
            serde_json::to_vec(&value).unwrap()
        } else {
            serde_json::to_vec_pretty(&value).unwrap()
        };
        return;
    }
    // text-level: a number replaced, an escape or a BOM inserted, or deep brackets
    let text = String::from_utf8_lossy(data).into_owned();
    let len = text.len();
    let at = (0..8)
        .map(|_| rng.random_range(0..=len))
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let out = match rng.random_range(0..4) {
        0 => {
            // the number starting at or after `at`
            match text[at..].find(|c: char| c.is_ascii_digit() || c == '-') {
                Some(s) => {
                    let s = at + s;
                    let e = text[s + 1..]
                        .find(|c: char| !(c.is_ascii_digit() || "eE.+-".contains(c)))
                        .map_or(len, |e| s + 1 + e);
                    let n = NUMBERS[rng.random_range(0..NUMBERS.len())];
                    format!("{}{n}{}", &text[..s], &text[e..])
                }
                None => text,
            }
        }
        1 => {
            // an escape inside the next string
            match text[at..].find('"') {
                Some(q) => {
                    let q = at + q + 1;
                    let s = STRINGS[rng.random_range(0..STRINGS.len())];
                    format!("{}{s}{}", &text[..q], &text[q..])
                }
                None => text,
            }
        }
        2 => format!("\u{feff}{text}"),
        _ => {
            let depth = rng.random_range(100..20_000);
            let (open, close) = if rng.random_bool(0.5) {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            format!(
                "{}{}1{}{}",
                &text[..at],
                open.repeat(depth),
                close.repeat(depth),
                &text[at..]
            )
        }
    };
    *data = out.into_bytes();
}

/// One model-output edit: a marker or multi-byte character inserted, text repeated.
fn mutate_text(rng: &mut SmallRng, data: &mut Vec<u8>) {
    let at = rng.random_range(0..=data.len());
    if rng.random_bool(0.8) {
        let piece = MARKERS[rng.random_range(0..MARKERS.len())];
        data.splice(at..at, piece.bytes());
    } else {
        let n = rng.random_range(2..=1000);
        let chunk = data[at..].to_vec();
        data.extend(std::iter::repeat_n(chunk, n).flatten().take(1 << 20));
    }
}

/// A JSON mutation of the header of the safetensors file `data`, the length prefix updated
/// (kept one time in eight); `false` when `data` has no readable header.
fn mutate_header(rng: &mut SmallRng, data: &mut Vec<u8>) -> bool {
    let Some(end) = data
        .get(..8)
        .map(|b| 8usize.saturating_add(u64::from_le_bytes(b.try_into().unwrap()) as usize))
        .filter(|&end| end <= data.len())
    else {
        return false;
    };
    let mut header = data[8..end].to_vec();
    mutate_json(rng, &mut header);
    let len = if rng.random_bool(0.125) {
        end - 8
    } else {
        header.len()
    };
    let mut out = (len as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend_from_slice(&data[end..]);
    *data = out;
    true
}

/// Input `i` of `target`: a seed after 1–4 mutations.
fn input(rng: &mut SmallRng, target: &Target, i: usize) -> Vec<u8> {
    let seeds = &target.seeds;
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    let other = &seeds[rng.random_range(0..seeds.len())];
    // the sharded target's shard inputs: mutate a shard, not the index
    let (mut data, kind) = if target.name == "safetensors-sharded" && !i.is_multiple_of(3) {
        let shard = read_asset(&format!(
            "tiny/llama-gqa-sharded/model-0000{}-of-00002.safetensors",
            i % 3
        ));
        let hot = safetensors_header_end(&shard);
        (shard, Kind::Binary { hot })
    } else {
        (std::mem::take(&mut data), target.kind)
    };
    // half the inputs one mutation (to get past the first checks), half 2–4
    let rounds = if rng.random_bool(0.5) {
        1
    } else {
        rng.random_range(2..=4)
    };
    for _ in 0..rounds {
        match kind {
            Kind::Json if rng.random_bool(0.6) => mutate_json(rng, &mut data),
            Kind::Binary { .. } if data.starts_with(b"GGUF") => {
                mutate_bytes(rng, &mut data, other, kind)
            }
            Kind::Binary { .. } if rng.random_bool(0.5) && mutate_header(rng, &mut data) => {}
            Kind::Text if rng.random_bool(0.6) => mutate_text(rng, &mut data),
            _ => mutate_bytes(rng, &mut data, other, kind),
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------

/// The last panic's message and place, captured by the fuzzing hook.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

fn fuzz(target: &Target, iters: usize, seed: u64) -> Stats {
    let name_hash = target.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = SmallRng::seed_from_u64(seed ^ name_hash);
    let crashes = std::env::temp_dir().join("umi-fuzz-crashes");
    let mut stats = Stats::default();
    let corpus = target
        .corpus
        .iter()
        .map(|(what, i, data)| (Some(what.to_string()), *i, data.clone()));
    // the seeds themselves first, unmutated
    let seeds = target.seeds.iter().enumerate();
    let seeds = seeds.map(|(k, data)| (Some(format!("seed {k}")), 0, data.clone()));
    let fuzzed = (0..iters).map(|i| (None, i, input(&mut rng, target, i)));
    for (what, i, data) in seeds.chain(corpus).chain(fuzzed) {
        stats.corpus += usize::from(what.is_some());
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| (target.run)(&data, i)));
        let took = start.elapsed();
        if let Some(what) = &what {
            let outcome = match &result {
                Ok(Outcome::Ok) => "Ok",
                Ok(Outcome::Err) => "Err",
                Err(_) => "PANIC",
            };
            let ms = took.as_secs_f64() * 1e3;
            stats
                .corpus_outcomes
                .push(format!("{what}: {outcome} ({ms:.0} ms)"));
        }
        stats.peak = stats
            .peak
            .max(PEAK.load(Ordering::Relaxed).saturating_sub(before));
        stats.slowest = stats.slowest.max(took);
        stats.inputs += 1;
        match result {
            Ok(Outcome::Ok) => stats.ok += 1,
            Ok(Outcome::Err) => stats.err += 1,
            Err(_) => {
                std::fs::create_dir_all(&crashes).unwrap();
                let label = what.as_ref().map_or(format!("seed{seed}-{i}"), |w| {
                    format!(
                        "corpus-{}",
                        w.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                    )
                });
                let file = crashes.join(format!(
                    "{}-{label}.bin",
                    target
                        .name
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                ));
                std::fs::write(&file, &data).unwrap();
                let message = LAST_PANIC.lock().unwrap().clone();
                stats.panics.push(format!(
                    "{} ({}): {message}",
                    what.map_or(format!("input {i}"), |w| format!("corpus case {w:?}")),
                    file.display()
                ));
            }
        }
    }
    stats
}

#[test]
fn fuzz_parsers() {
    let iters = env_usize("UMI_FUZZ_ITERS", DEFAULT_ITERS);
    let seed = env_usize("UMI_FUZZ_SEED", 0) as u64;
    let only = std::env::var("UMI_FUZZ_TARGETS").ok();
    let targets = [
        gguf_target as fn() -> Target,
        safetensors_target,
        sharded_target,
        config_target,
        tokenizer_target,
        tool_docs_target,
        model_output_target,
        alpha_umi_target,
    ];
    // a warm-up load, so one-time allocations (the backend's) do not count as an input's
    std::fs::create_dir_all(std::env::temp_dir()).unwrap();
    load_gguf_bytes(
        read_asset("tiny/gguf/tiny-q4_0.gguf"),
        "warm-up",
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();

    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap() = info.to_string().replace('\n', " ");
    }));
    let start = Instant::now();
    let mut rows = Vec::new();
    for make in targets {
        let target = make();
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|t| t.trim() == target.name))
        {
            continue;
        }
        let stats = fuzz(&target, iters, seed);
        rows.push((target.name, target.seeds.len(), stats));
    }
    let elapsed = start.elapsed();
    std::panic::set_hook(hook);
    // the targets' scratch folders
    let prefix = format!("umi-fuzz-{}-", std::process::id());
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }

    println!(
        "\numi fuzz: {iters} inputs per target, seed {seed}, {:.1} s\n",
        elapsed.as_secs_f64()
    );
    println!(
        "| target | seeds | corpus | inputs | Ok | Err | panics | slowest input | peak heap per input |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut total = 0;
    for (name, seeds, s) in &rows {
        total += s.inputs;
        println!(
            "| {name} | {seeds} | {} | {} | {} | {} | {} | {:.1} ms | {:.1} MiB |",
            s.corpus,
            s.inputs,
            s.ok,
            s.err,
            s.panics.len(),
            s.slowest.as_secs_f64() * 1e3,
            s.peak as f64 / (1 << 20) as f64
        );
    }
    println!("\n{total} inputs in all\n\ncorpus:");
    for (name, _, s) in &rows {
        println!("- {name}: {}", s.corpus_outcomes.join("; "));
    }
    let mut failures = Vec::new();
    for (name, _, s) in &rows {
        for p in &s.panics {
            println!("PANIC {name}: {p}");
        }
        if !s.panics.is_empty() {
            failures.push(format!("{name}: {} panics", s.panics.len()));
        }
        if s.slowest > SLOW_CAP {
            failures.push(format!(
                "{name}: an input took {:.1} s (cap {} s)",
                s.slowest.as_secs_f64(),
                SLOW_CAP.as_secs()
            ));
        }
        if s.peak > HEAP_CAP {
            failures.push(format!(
                "{name}: an input held {} MiB of heap (cap {} MiB)",
                s.peak >> 20,
                HEAP_CAP >> 20
            ));
        }
    }
    assert!(failures.is_empty(), "fuzzing failed: {failures:#?}");
}

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
use umi_model::{LlamaConfig, Tokenizer, WeightDtype, load_gguf_bytes, load_model};
use umi_tests::{assets, shared_data};

mod targets;
use targets::*;

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
        WeightDtype::F32,
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

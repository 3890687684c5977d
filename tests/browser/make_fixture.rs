//! `make-browser-fixture`: builds the model the web app's browser test runs.
//!
//! The browser test has to check the whole α-UMi loop in the page (planner rationale → caller
//! action → a real tool call → planner conclusion → summarizer answer) against a trace known in
//! advance. A random tiny model only produces noise, and a real model is too large and too slow
//! there, so this program makes a tiny Llama that *memorises* one scenario, with umi's own
//! training code:
//!
//! 1. the tokenizer is SmolLM2's (built from the GGUF's metadata), so prompts stay ~1k tokens;
//! 2. the scenario ("What day of the week is 2026-12-25?" answered with the demo server's
//!    deterministic, stateless `weekday` tool) is scripted through the real [`Agent`] with a
//!    [`ScriptedGenerator`] and the real [`HttpTools`](umi_tools::HttpTools), which yields the exact four prompts the
//!    agent sends and the real observation;
//! 3. a 2-layer Llama (random init, fixed seed) is fully fine-tuned with umi-train's [`Trainer`]
//!    on the four (prompt → output + `</s>`) samples, whole prompts as the agent sends them,
//!    until the loss is ~1e-3. It trains over the ~300 token ids the samples use plus one id
//!    standing for all others, then is expanded to SmolLM2's 49,152 ids with every other
//!    LM-head row a copy of that id's row ([`ExpandedWeights`]): greedy decoding is unchanged,
//!    and a step no longer pays for a 49k-wide LM head at every prompt position (~1 min
//!    instead of ~15 on two cores);
//! 4. the saved folder is loaded back with [`load_model`] and run through the [`Agent`] with
//!    greedy decoding against the same tool server: the trajectory must equal the scenario, or
//!    nothing is written;
//! 5. `--out` receives `config.json`, `model.safetensors`, `tokenizer.json` (a Hugging Face
//!    folder) and `scenario.json` (query, tool, rationales, action, observation, answer, prompt
//!    lengths);
//! 6. for the fine-tuning check, `train.json`, one α-UMi record the model has *not* memorised
//!    (the scenario with another date and weekday), and `train_reference.json`: the settings of
//!    a short LoRA run of the planner on it and the per-step losses umi-train gives natively
//!    (CPU, flex) from the saved folder — the same data path, batches, adapter initialisation
//!    (seeded on the host) and schedule as the web app's worker, so the browser must reproduce
//!    them up to f32 rounding on another backend;
//! 7. for the DPO check, `dpo_pairs.jsonl`: planner preference pairs on the scenario's prompts
//!    (the memorised step chosen, a wrong step rejected) with token ids cut to a short max length
//!    and the reference log-probabilities of the shipped planner adapter (what
//!    `umi reward export --recompute-ref --max-len N` writes), and `dpo_reference.json`: the
//!    settings of a 3-step DPO run continuing that adapter and its native per-step losses,
//!    reward margins and accuracies (`TrainConfig::dpo`, as the web app's worker sets it up).
//!
//! The browser test loads the folder into the web app, starts `umi tools serve`, asks the query
//! and compares the rendered trace with `scenario.json`. The prompts do not contain the server's
//! port (the tool docs the prompts show have no URL), so the test may serve the tools on any port.
//!
//! ```text
//! umi tools serve --port 8093 &
//! make-browser-fixture --tools http://127.0.0.1:8093 \
//!     --tokenizer-gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --out tests/browser/fixture
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde_json::{Value, json};
use umi_agent::decide::STOP;
use umi_agent::{Agent, LlamaGenerator, ScriptedGenerator, StopReason};
use umi_data::batch::{Batch, IGNORE_INDEX};
use umi_data::readers::parse_alpha_umi;
use umi_data::{PromptSet, Role, Trajectory, role_samples};
use umi_model::burn::tensor::{Int, Tensor, TensorData};
use umi_model::weights::{GgufFile, HostTensor, RandomWeights, WeightSource, build_llama};
use umi_model::{
    Backend, ChatTemplate, GenerationConfig, Llama, LlamaConfig, LoraConfig, TokenIds, Tokenizer,
    load_model, save_hf,
};
mod training;
use training::{write_dpo_reference, write_train_reference};

use umi_train::{TrainConfig, Trainer, TrainerState, tokenize_examples};

/// The tool the scenario calls: deterministic and stateless.
const TOOL: &str = "weekday";
/// The date asked about.
const DATE: &str = "2026-12-25";
/// Tokens the agent may generate per call (the web app's and `umi run`'s default).
const MAX_NEW_TOKENS: usize = 256;
/// The model's context window.
const MAX_POSITIONS: usize = 4096;
/// The date and weekday of the fine-tuning record (`train.json`), which the model has not seen.
const TRAIN_DATE: &str = "2027-03-14";
/// The date the imported adapter's planner writes instead of [`DATE`]: the same digits, so its
/// tokens are among those the memorising run trained (every other token shares one LM-head row,
/// see `ExpandedWeights`, and no adapter could pick it out).
const IMPORT_DATE: &str = "2025-06-12";
const TRAIN_WEEKDAY: &str = "Sunday";
/// The short LoRA run the browser repeats (`train_reference.json`): planner, few steps, short
/// examples (SwiftShader runs ~1 GFLOP/s), dropout 0 (no randomness beyond the seeded
/// adapter initialisation), a learning rate high enough to move the loss in a few steps.
const TRAIN_STEPS: usize = 6;
const TRAIN_MAX_LEN: usize = 48;
const TRAIN_RANK: usize = 4;
const TRAIN_ALPHA: f64 = 8.0;
const TRAIN_LR: f64 = 1e-2;
/// The DPO run the browser repeats (`dpo_reference.json`): the planner's shipped adapter
/// continued for 3 steps on pairs whose prompts are cut to their last [`DPO_PROMPT_TOKENS`]
/// tokens or so (SwiftShader is slow; the max length is the longest step plus this), β 0.1 (the
/// panel's default), and a learning rate high enough to move the loss after the warm-up step.
const DPO_STEPS: usize = 3;
const DPO_PROMPT_TOKENS: usize = 32;
const DPO_BETA: f64 = 0.1;
const DPO_LR: f64 = 1e-2;
/// `umi train dpo --max-step-tokens`'s default (and the web app's).
const DPO_MAX_STEP_TOKENS: usize = 256;

#[derive(Parser)]
#[command(
    name = "make-browser-fixture",
    about = "Train a tiny Llama that memorises one α-UMi scenario, for the web app's browser test"
)]
struct Args {
    /// The running demo tool server (`umi tools serve --port PORT`).
    #[arg(long)]
    tools: String,
    /// GGUF file whose tokenizer metadata gives the tokenizer (SmolLM2's).
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    tokenizer_gguf: PathBuf,
    /// Output folder (created; the four files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    /// Width of the residual stream.
    #[arg(long, default_value_t = 64)]
    hidden_size: usize,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// AdamW learning rate (cosine decay over --max-steps, no warm-up).
    #[arg(long, default_value_t = 1e-2)]
    learning_rate: f64,
    /// Training stops once the loss is below this.
    #[arg(long, default_value_t = 1e-3)]
    target_loss: f64,
    /// Cap on optimizer steps.
    #[arg(long, default_value_t = 400)]
    max_steps: usize,
}

/// What the agent must do, and the prompts it sends on the way.
struct Scenario {
    query: String,
    planner_1: String,
    caller: String,
    planner_2: String,
    answer: String,
    observation: String,
    /// `(role, prompt, output)` of the four generations, in order.
    samples: Vec<(Role, String, String)>,
    trajectory: Trajectory,
}

fn main() -> Result<()> {
    let start = Instant::now();
    let args = Args::parse();
    let base_url = args.tools.trim_end_matches('/').trim_end_matches("/tools");

    // a. tokenizer
    let gguf = GgufFile::open(&args.tokenizer_gguf)
        .with_context(|| format!("opening {}", args.tokenizer_gguf.display()))?;
    let gguf_tokenizer = Tokenizer::from_gguf(&gguf)?;
    let tokenizer_json = gguf_tokenizer.to_json()?;
    drop(gguf);

    // b. tool docs from the running server
    let url = format!("{base_url}/tools");
    let docs_text = ureq::get(&url)
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .with_context(|| format!("reading tool docs from {url} (is `umi tools serve` running?)"))?;
    let specs = umi_tools::load_tool_specs(&docs_text, &url)?;
    ensure!(
        specs.iter().any(|s| s.name == TOOL),
        "{url} has no `{TOOL}` tool; is it umi's demo tool server?"
    );
    let docs: Vec<_> = specs.iter().map(|s| s.doc()).collect();
    let tools = || umi_tools::HttpTools::new(specs.clone(), Duration::from_secs(20));

    // c. the scenario, with the real observation and the exact prompts
    let scenario = script_scenario(&docs, &tools)?;

    // d. a tiny random Llama with SmolLM2's vocabulary
    let eos = gguf_tokenizer.eos_ids().to_vec();
    let config = LlamaConfig {
        vocab_size: gguf_tokenizer.vocab_size(),
        hidden_size: args.hidden_size,
        intermediate_size: 2 * args.hidden_size,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        head_dim: None,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: MAX_POSITIONS,
        tie_word_embeddings: false,
        bos_token_id: gguf_tokenizer.bos_id(),
        eos_token_id: TokenIds::from_ids(&eos),
        hidden_act: "silu".into(),
        attention_bias: false,
        mlp_bias: false,
        rope_scaling: None,
    };
    // The tokenizer exactly as the saved folder will be loaded (`load_hf_folder`: no
    // tokenizer_config.json, so no BOS added and no chat template).
    let tokenizer = Tokenizer::from_bytes(
        tokenizer_json.as_bytes(),
        "tokenizer.json",
        config.bos_token_id,
        config.eos_token_ids(),
        false,
    )?;
    let device = Backend::Cpu.device()?;
    let params = count_params(&config);

    // e. training examples: prompt ids (as LlamaGenerator encodes them) then output + "</s>"
    let mut examples = Vec::new();
    let mut prompt_tokens = Vec::new();
    for (_, prompt, output) in &scenario.samples {
        let prompt_ids = tokenizer.encode(prompt, true)?;
        let target_ids = tokenizer.encode(&format!("{output}{STOP}"), false)?;
        ensure!(
            prompt_ids.len() + MAX_NEW_TOKENS < MAX_POSITIONS,
            "a prompt of {} tokens + {MAX_NEW_TOKENS} new tokens does not fit {MAX_POSITIONS} positions",
            prompt_ids.len()
        );
        prompt_tokens.push(prompt_ids.len());
        examples.push((prompt_ids, target_ids));
    }
    let target_tokens: usize = examples.iter().map(|(_, t)| t.len()).sum();

    // The training vocabulary: the ids the four samples use, plus one id standing for every
    // other token (see `expand_vocabulary`).
    let used: Vec<u32> = examples
        .iter()
        .flat_map(|(p, t)| p.iter().chain(t))
        .copied()
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .collect();
    let compact_id = |id: u32| used.binary_search(&id).expect("a used id") as u32;
    let compact = LlamaConfig {
        vocab_size: used.len() + 1,
        ..config.clone()
    };
    let batches: Vec<Batch> = examples
        .iter()
        .map(|(prompt, target)| {
            let prompt: Vec<u32> = prompt.iter().map(|&t| compact_id(t)).collect();
            let target: Vec<u32> = target.iter().map(|&t| compact_id(t)).collect();
            let mut ids = prompt.clone();
            ids.extend_from_slice(&target);
            let mut labels = vec![IGNORE_INDEX; prompt.len()];
            labels.extend(target.iter().map(|&t| t as i64));
            Batch {
                attention_mask: vec![vec![1; ids.len()]],
                input_ids: vec![ids],
                labels: vec![labels],
            }
        })
        .collect();
    println!(
        "model: {params} parameters (hidden {}, 2 layers, vocab {}); prompts {prompt_tokens:?} tokens, \
         {target_tokens} target tokens; training vocabulary {} ids",
        config.hidden_size, config.vocab_size, compact.vocab_size
    );

    let model = build_llama(
        &compact,
        &mut RandomWeights {
            config: compact.clone(),
            seed: args.seed,
        },
        &device,
    )?;
    let train_config = TrainConfig {
        learning_rate: args.learning_rate,
        epochs: 1,
        warmup_ratio: 0.0,
        weight_decay: 0.0,
        batch_size: 1,
        gradient_accumulation_steps: batches.len(),
        max_grad_norm: 1.0,
        max_len: MAX_POSITIONS,
        seed: args.seed,
        lora: None,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, train_config, args.max_steps, &device)?;
    let train_start = Instant::now();
    let mut last = None;
    while trainer.step < args.max_steps {
        let stats = pollster::block_on(trainer.train_step(&batches))?;
        let reached = stats.loss < args.target_loss;
        if stats.step == 1 || stats.step.is_multiple_of(25) || reached {
            println!(
                "step {:>3}: loss {:.5}, grad norm {:.3}, lr {:.2e} ({:.1} s)",
                stats.step,
                stats.loss,
                stats.grad_norm,
                stats.learning_rate,
                train_start.elapsed().as_secs_f64()
            );
        }
        last = Some(stats);
        if reached {
            break;
        }
    }
    let train_seconds = train_start.elapsed().as_secs_f64();
    let last = last.context("no training step ran (--max-steps 0?)")?;
    if last.loss >= args.target_loss {
        println!(
            "warning: the loss is still {:.5} after {} steps (target {}); verifying anyway",
            last.loss, last.step, args.target_loss
        );
    }
    let model = build_llama(
        &config,
        &mut ExpandedWeights {
            compact: umi_model::hf_state_dict(&trainer.inference_model())?,
            used: used.clone(),
            random: RandomWeights {
                config: config.clone(),
                seed: args.seed,
            },
        },
        &device,
    )?;

    // g (first half). write into a temporary folder beside --out, then verify what was written
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        args.out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "fixture".into()),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = write_and_verify(
        &tmp,
        &model,
        &tokenizer_json,
        &scenario,
        &examples,
        &tools,
        &docs,
    );
    let (margin, full_loss) = match result {
        Ok(verified) => verified,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let scenario_json = json!({
        "query": scenario.query,
        "tools_url": base_url,
        "tool": TOOL,
        "planner_rationale_1": scenario.trajectory.steps[0].rationale.0,
        "action": {"name": TOOL, "input": scenario.trajectory.steps[0].action.as_ref().map(|a| a.input.clone())},
        "observation": scenario.observation,
        "planner_rationale_2": scenario.trajectory.steps[1].rationale.0,
        "answer": scenario.answer,
        "prompt_tokens": prompt_tokens,
        "planner_text_1": scenario.planner_1,
        "caller_text": scenario.caller,
        "planner_text_2": scenario.planner_2,
        "stop_reason": "Conclusion",
        "max_new_tokens": MAX_NEW_TOKENS,
    });
    std::fs::write(
        tmp.join("scenario.json"),
        serde_json::to_string_pretty(&scenario_json)? + "\n",
    )?;

    // g (second half). move the verified files into --out, one rename each
    std::fs::create_dir_all(&args.out)?;
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "scenario.json",
    ] {
        std::fs::rename(tmp.join(file), args.out.join(file))
            .with_context(|| format!("moving {file} into {}", args.out.display()))?;
    }
    let _ = std::fs::remove_dir_all(&tmp);

    // g2. a "shipped agent" for the fixture: fresh role adapters (B = 0, so the memorised run
    // is unchanged) and agent/index.json naming them, which the page installs on load
    write_shipped_agent(&args.out)?;

    // h. the fine-tuning record and the native LoRA losses on it
    let reference = write_train_reference(&args.out, &scenario, &docs)?;

    // i. an adapter to import in the page: the planner's first step with IMPORT_DATE
    let imported = write_import_adapter(&args.out, &scenario)?;

    // j. preference pairs and the native DPO losses on them
    let dpo_losses = write_dpo_reference(&args.out, &scenario)?;

    let bytes = |f: &str| {
        std::fs::metadata(args.out.join(f))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    println!("\nfixture written to {}", args.out.display());
    println!("  query:        {}", scenario.query);
    println!("  planner #0:   {}", scenario.planner_1);
    println!("  caller:       {}", scenario.caller.replace('\n', " | "));
    println!("  observation:  {}", scenario.observation);
    println!("  planner #1:   {}", scenario.planner_2);
    println!("  summarizer:   {}", scenario.answer);
    println!(
        "  model:        {params} parameters, model.safetensors {} bytes, tokenizer.json {} bytes",
        bytes("model.safetensors"),
        bytes("tokenizer.json")
    );
    println!("  prompts:      {prompt_tokens:?} tokens");
    println!(
        "  training:     {} steps in {train_seconds:.1} s, final loss {:.5} ({full_loss:.5} over the whole vocabulary); smallest logit margin on the targets {margin:.2}",
        last.step, last.loss
    );
    println!(
        "  fine-tuning:  {TRAIN_STEPS} LoRA steps of the planner on train.json: losses {:?}",
        reference
    );
    println!("  import:       planner adapter whose first step is {imported:?}");
    println!(
        "  DPO:          {DPO_STEPS} steps on dpo_pairs.jsonl from the shipped planner adapter: losses {dpo_losses:?}"
    );
    println!("  total:        {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Writes `train.json` (the scenario's trajectory as an α-UMi record, with [`TRAIN_DATE`] and
/// [`TRAIN_WEEKDAY`] instead of its own) and `train_reference.json` (a short LoRA run of the
/// planner on it, from the fixture folder in `out`, on the CPU) into `out`; returns the losses.
///
/// The run is set up as the web app's worker sets up one from its panel (`web/src/worker/train.rs`):
/// the record parsed with `parse_alpha_umi`, `role_samples` with the ToolBench prompts,
/// `tokenize_examples`, `TrainConfig::local(planner)` with the panel's fields, fresh adapters
/// (seed 42), `TrainerState::next_step_batches`.
/// `out/agent/index.json` mapping the fixture (its URL ends in `fixture`) to
/// `out/agent/fixture/{planner,caller,summarizer}`: fresh PEFT adapters for the fixture model,
/// whose `B = 0` leaves its outputs unchanged. The browser test serves `out/agent` as the app's
/// `agent/` and checks the page installs them.
fn write_shipped_agent(out: &Path) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let mut loaded = load_model(out, &device)?;
    let config = LoraConfig {
        r: 2,
        lora_alpha: 4.0,
        lora_dropout: 0.0,
        ..LoraConfig::default()
    };
    umi_model::attach_lora(&mut loaded.model, &config, 7, &device)?;
    for role in ["planner", "caller", "summarizer"] {
        umi_model::save_peft(
            &loaded.model,
            &config,
            Some("fixture"),
            &out.join("agent/fixture").join(role),
        )?;
    }
    let index = json!({"models": {"fixture": {"folder": "fixture", "raw_prompts": false}}});
    std::fs::write(
        out.join("agent/index.json"),
        serde_json::to_string_pretty(&index)? + "\n",
    )?;
    Ok(())
}

/// Writes `out/import/planner/` (a PEFT adapter the browser test imports for the planner) and
/// `out/import/expected.json`: a LoRA run on the scenario's first planner prompt alone, with
/// [`IMPORT_DATE`] in place of [`DATE`] in its target, until the adapter writes that text greedily
/// with a clear margin; returns that text, which the page must reproduce.
fn write_import_adapter(out: &Path, scenario: &Scenario) -> Result<String> {
    const STEPS: usize = 80;
    let device = Backend::Cpu.device()?;
    let loaded = load_model(out, &device)?;
    let (_, prompt, _) = &scenario.samples[0];
    let target = scenario.planner_1.replace(DATE, IMPORT_DATE);
    ensure!(
        target != scenario.planner_1,
        "the first planner step names no date"
    );
    let prompt_ids = loaded.tokenizer.encode(prompt, true)?;
    let target_ids = loaded.tokenizer.encode(&format!("{target}{STOP}"), false)?;
    let mut ids = prompt_ids.clone();
    ids.extend_from_slice(&target_ids);
    let mut labels = vec![IGNORE_INDEX; prompt_ids.len()];
    labels.extend(target_ids.iter().map(|&t| i64::from(t)));
    let batch = Batch {
        attention_mask: vec![vec![1; ids.len()]],
        input_ids: vec![ids],
        labels: vec![labels],
    };
    let lora = LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        lora_dropout: 0.0,
        ..LoraConfig::default()
    };
    let config = TrainConfig {
        learning_rate: 3e-3,
        warmup_ratio: 0.0,
        max_len: MAX_POSITIONS,
        lora: Some(lora.clone()),
        ..TrainConfig::local(Role::Planner)
    };
    let tokenizer = loaded.tokenizer.clone();
    let mut trainer = Trainer::new(loaded.model, config, STEPS, &device)?;
    let mut loss = f64::NAN;
    while trainer.step < STEPS {
        loss = pollster::block_on(trainer.train_step(std::slice::from_ref(&batch)))?.loss;
    }
    let model = trainer.inference_model();
    let generation = GenerationConfig {
        max_new_tokens: MAX_NEW_TOKENS,
        stop_strings: vec![STOP.to_string()],
        ..GenerationConfig::default()
    };
    let output = pollster::block_on(umi_model::generate(
        &model,
        &tokenizer,
        &prompt_ids,
        &generation,
        |_| true,
    ))?;
    ensure!(
        output.text == target,
        "after {STEPS} LoRA steps (loss {loss:.5}) the adapter writes {:?}, not {target:?}",
        output.text
    );
    umi_model::save_peft(&model, &lora, Some("fixture"), &out.join("import/planner"))?;
    std::fs::write(
        out.join("import/expected.json"),
        serde_json::to_string_pretty(&json!({
            "role": "planner",
            "query": scenario.query,
            "planner_text": target,
            "loss": loss,
        }))? + "\n",
    )?;
    Ok(target)
}

/// Runs the agent on the scenario with scripted outputs and the real tools: a first pass reads
/// the observation, a second (with the conclusion and the answer built from it) the prompts.
fn script_scenario(
    docs: &[serde_json::Map<String, Value>],
    tools: &impl Fn() -> umi_tools::HttpTools,
) -> Result<Scenario> {
    let query = format!("What day of the week is {DATE}?");
    let planner_1 =
        format!("I should ask the {TOOL} tool which day of the week {DATE} is.\nNext: caller.");
    let caller = format!("Action: {TOOL}\nAction Input: {{\"date\": \"{DATE}\"}}");
    let run = |outputs: [String; 4]| -> Result<(Trajectory, StopReason, ScriptedGenerator)> {
        let script = [Role::Planner, Role::Caller, Role::Planner, Role::Summarizer]
            .into_iter()
            .zip(outputs)
            .map(|(role, text)| (role, &*text.leak()));
        let mut agent = Agent::new(ScriptedGenerator::new(script), tools(), docs.to_vec());
        let (trajectory, stop) = pollster::block_on(agent.run(&query, |_| {}))?;
        Ok((trajectory, stop, agent.generator))
    };

    let (first, _, _) = run([
        planner_1.clone(),
        caller.clone(),
        "Done. Next: conclusion.".into(),
        "Done.".into(),
    ])?;
    let observation = first
        .steps
        .first()
        .and_then(|s| s.observation.as_ref())
        .map(|o| o.0.clone())
        .context("the scripted run made no tool call")?;
    let parsed: Value = serde_json::from_str(&observation)
        .with_context(|| format!("the {TOOL} tool answered {observation:?}, not JSON"))?;
    let Some(weekday) = parsed["response"]["weekday"].as_str() else {
        bail!("the {TOOL} tool answered {observation}, without response.weekday");
    };
    let planner_2 = format!("The {TOOL} tool says that {DATE} is a {weekday}.\nNext: conclusion.");
    let answer = format!("{DATE} is a {weekday}.");

    let outputs = [
        planner_1.clone(),
        caller.clone(),
        planner_2.clone(),
        answer.clone(),
    ];
    let (trajectory, stop, generator) = run(outputs.clone())?;
    ensure!(
        stop == StopReason::Conclusion && trajectory.steps.len() == 2,
        "the scripted run ended with {stop:?} after {} steps",
        trajectory.steps.len()
    );
    ensure!(
        trajectory.steps[0].observation.as_ref().map(|o| &o.0) == Some(&observation),
        "the {TOOL} tool answered differently on the second call; it must be deterministic"
    );
    ensure!(
        trajectory.final_answer.as_ref().map(|a| a.0.as_str()) == Some(answer.as_str())
            && answer.contains(weekday),
        "the scripted answer did not come through"
    );
    ensure!(generator.prompts.len() == 4, "expected four generations");
    let samples = generator
        .prompts
        .into_iter()
        .zip(outputs)
        .map(|((role, prompt), output)| (role, prompt, output))
        .collect();
    Ok(Scenario {
        query,
        planner_1,
        caller,
        planner_2,
        answer,
        observation,
        samples,
        trajectory,
    })
}

/// Saves the model and tokenizer into `dir`, loads the folder back as the web app and `umi run`
/// do, checks greedy predictions on the training targets and runs the agent against the tools:
/// the trajectory must be the scenario's. Returns the smallest logit margin (target logit minus
/// the best other) over the target tokens and their mean loss over the whole vocabulary.
fn write_and_verify(
    dir: &Path,
    model: &Llama,
    tokenizer_json: &str,
    scenario: &Scenario,
    examples: &[(Vec<u32>, Vec<u32>)],
    tools: &impl Fn() -> umi_tools::HttpTools,
    docs: &[serde_json::Map<String, Value>],
) -> Result<(f32, f64)> {
    save_hf(model, dir)?;
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json)?;
    let device = Backend::Cpu.device()?;
    let loaded = load_model(dir, &device)?;
    ensure!(
        loaded.chat_template == ChatTemplate::Raw,
        "the fixture must have no chat template"
    );

    // teacher-forced margins on the four targets
    let mut margin = f32::INFINITY;
    let (mut nll, mut count) = (0.0f64, 0usize);
    let mut per_sample = Vec::new();
    for (prompt, target) in examples {
        let mut ids = prompt.clone();
        ids.extend_from_slice(target);
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(
                ids.iter().map(|&t| t as i64).collect::<Vec<_>>(),
                [1, ids.len()],
            ),
            &device,
        );
        let m = &loaded.model;
        let hidden =
            m.forward_hidden(input, &mut m.new_cache())
                .narrow(1, prompt.len() - 1, target.len());
        let logits: Vec<f32> = m
            .logits(hidden)
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
        let vocab = m.config.vocab_size;
        let mut worst = (f32::INFINITY, 0);
        for (k, (row, &want)) in logits.chunks(vocab).zip(target).enumerate() {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
            nll += f64::from(max) + sum.ln() - f64::from(row[want as usize]);
            count += 1;
            let other = row
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != want as usize)
                .map(|(_, &v)| v)
                .fold(f32::NEG_INFINITY, f32::max);
            if row[want as usize] - other < worst.0 {
                worst = (row[want as usize] - other, k);
            }
        }
        margin = margin.min(worst.0);
        let token = loaded
            .tokenizer
            .decode(&target[worst.1..=worst.1], false)
            .unwrap_or_default();
        per_sample.push(format!("{:.2} at {token:?}", worst.0));
    }
    let full_loss = nll / count.max(1) as f64;
    println!(
        "whole-vocabulary loss on the targets {full_loss:.5}; smallest logit margins per sample: {}",
        per_sample.join(", ")
    );

    ensure!(
        margin > 0.0,
        "verification failed: greedy decoding does not reproduce every target token of the \
         four samples (smallest margin {margin:.3}); train longer (--max-steps) or with a higher \
         --learning-rate"
    );

    let generator = LlamaGenerator::shared(
        loaded,
        GenerationConfig {
            max_new_tokens: MAX_NEW_TOKENS,
            ..GenerationConfig::default()
        },
    );
    let mut agent = Agent::new(generator, tools(), docs.to_vec());
    let (trajectory, stop) = pollster::block_on(agent.run(&scenario.query, |_| {}))?;
    if stop != StopReason::Conclusion || trajectory != scenario.trajectory {
        let (want, got) = (scenario.trajectory.to_turns(), trajectory.to_turns());
        let at = want
            .iter()
            .zip(&got)
            .position(|(w, g)| w != g)
            .unwrap_or(want.len().min(got.len()));
        let show = |t: Option<&umi_data::Turn>| {
            t.map_or("(nothing)".to_string(), |t| {
                let v: String = t.value.chars().take(300).collect();
                format!("{}: {v:?}", t.from.as_str())
            })
        };
        bail!(
            "verification failed: the agent's run with the trained model differs from the \
             scenario at turn {at} (stop {stop:?}, expected Conclusion)\n  expected {}\n  got      {}",
            show(want.get(at)),
            show(got.get(at))
        );
    }
    Ok((margin, full_loss))
}

/// Parameters of a model built from `config` (untied head).
fn count_params(c: &LlamaConfig) -> usize {
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let q = c.num_attention_heads * c.head_dim();
    let kv = c.num_kv_heads() * c.head_dim();
    let layer = 2 * h + h * q + 2 * h * kv + q * h + 3 * h * i;
    2 * v * h + h + c.num_hidden_layers * layer
}

/// The full-vocabulary model from one trained on the samples' ids only (`used`, in order, then
/// one id for everything else): layers and norms as trained; embedding rows of used ids as
/// trained, the others as initialised; LM-head rows of used ids as trained, and every other row
/// a copy of the trained "everything else" row.
///
/// Every unused token thus gets exactly the logit the "everything else" id had in training, so
/// greedy decoding (an argmax) picks what the small model picks, with the same margins: the
/// LM head over 49k tokens at every prompt position, which dominated a training step, is not
/// needed to train.
struct ExpandedWeights {
    compact: std::collections::BTreeMap<String, HostTensor>,
    used: Vec<u32>,
    random: RandomWeights,
}

impl WeightSource for ExpandedWeights {
    fn origin(&self) -> String {
        "the trained model, expanded to the full vocabulary".into()
    }

    fn tensor(&mut self, name: &str) -> umi_model::Result<Option<HostTensor>> {
        let Some(small) = self.compact.get(name) else {
            return Ok(None);
        };
        let h = self.random.config.hidden_size;
        let row = |i: usize| &small.data[i * h..(i + 1) * h];
        let mut full = match name {
            "model.embed_tokens.weight" => self.random.tensor(name)?.expect("a random embedding"),
            "lm_head.weight" => {
                let v = self.random.config.vocab_size;
                HostTensor {
                    shape: vec![v, h],
                    data: row(self.used.len()).repeat(v),
                }
            }
            _ => return Ok(Some(small.clone())),
        };
        for (i, &id) in self.used.iter().enumerate() {
            let at = id as usize * h;
            full.data[at..at + h].copy_from_slice(row(i));
        }
        Ok(Some(full))
    }
}

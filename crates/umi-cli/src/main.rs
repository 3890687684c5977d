//! `umi`: the native command line of umi.
//!
//! Run with: `cargo run --release -- generate --prompt "What is the capital of France?"`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod data;
mod dpo;
mod eval;
mod models;
mod reward;
mod train;
use models::{ModelCache, RoleModelArgs};
use umi_model::{Backend, GenerationConfig, argmax, generate, next_token_logits};

/// The default model, placed by `scripts/setup.sh`.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(
    name = "umi",
    version,
    about = "α-UMi multi-LLM tool agent: native command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming tokens as they come.
    Generate(GenerateArgs),
    /// Measure prefill and decode speed and peak memory; prints one JSON line
    /// (scripts/bench/run.sh compares it with peers in BENCHMARKS.md).
    Bench(BenchArgs),
    /// Run the α-UMi agent on a query against HTTP tools, printing the trajectory as it happens.
    Run(RunArgs),
    /// Tool server commands.
    #[command(subcommand)]
    Tools(ToolsCommand),
    /// Score a model set-up on reference trajectories with the paper's static metrics, or
    /// (`umi eval live`) on live tools by pass rate.
    Eval(eval::EvalArgs),
    /// Data commands: read datasets, write role training sets and TRL JSONL.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// GLPFT training: `global` (backbone) then `local --role R` (full or LoRA).
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Process-based self-rewarding: judge-training data (`eft`).
    #[command(subcommand)]
    Reward(reward::RewardCommand),
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Serve the demo tools over HTTP (docs at /tools, OpenAPI at /openapi.json).
    Serve {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Where the to-do list, calendar and alarms are kept.
        #[arg(long, default_value = ".umi/tool-state.json")]
        state: PathBuf,
        /// Origin (`http://host:port`) of a web page allowed to call the tools; repeat for
        /// more, `*` for any page. Default: the web app as scripts/web.sh serves it
        /// (http://127.0.0.1:8000 and http://localhost:8000).
        #[arg(long = "cors-origin")]
        cors_origins: Vec<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The user's query.
    #[arg(long)]
    query: String,
    #[command(flatten)]
    models: RoleModelArgs,
    /// Tool docs: a tool server URL (its /tools is read) or a JSON file.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    tools: String,
    /// multi (planner, caller, summarizer) or single (one backbone model).
    #[arg(long, default_value = "multi")]
    mode: umi_agent::AgentMode,
    /// Planner decisions before giving up.
    #[arg(long, default_value_t = 10)]
    max_steps: usize,
    /// Upper bound on tokens per generation (the α-UMi reference's 512).
    #[arg(long, default_value_t = 512)]
    max_new_tokens: usize,
    /// Write the trajectory here in α-UMi conversation format (usable as training data).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Hosts (`host` or `host:port`) tools may call; default: the hosts named in the tool docs.
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Observations are truncated to this many characters (ToolBench's default).
    #[arg(long, default_value_t = 1024)]
    max_observation_chars: usize,
    /// Seconds a tool call (and reading tool docs from a URL) may take, at least 1.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    tool_timeout: u64,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Model: a .gguf file or a Hugging Face folder.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Prompt length; token i is `(i·7919 + 13) mod vocab_size`.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Greedy tokens decoded after the prompt (EOS does not stop them).
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
    /// Weight format for generation: f32 or q8_0 (CPU only).
    #[arg(long, value_enum, default_value_t = models::Quant::F32)]
    quant: models::Quant,
    /// Time LoRA training steps instead of generation (scripts/bench/peer_peft_train.py is the
    /// PyTorch + PEFT twin): `--batch-size` rows of `--prompt-tokens` tokens, every position a
    /// label, LoRA r 8 / α 16 / dropout 0 on all seven projections, AdamW lr 1e-4, clipping at
    /// 1.0; one warm-up step, then `--runs` timed steps.
    #[arg(long)]
    train: bool,
    /// Rows per training step (with --train).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Model: a .gguf file or a Hugging Face folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// Upper bound on generated tokens.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Seed for sampling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stop when the output contains this string (repeatable).
    #[arg(long = "stop")]
    stop_strings: Vec<String>,
    /// Send the prompt as is, without the model's chat template.
    #[arg(long)]
    raw: bool,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Generate(args) => run_generate(args),
        Command::Bench(args) => run_bench(args),
        Command::Run(args) => run_agent(args),
        Command::Eval(args) => eval::run(args, &mut ModelCache::default()),
        Command::Data(command) => data::run(command),
        Command::Train(command) => train::run(command),
        Command::Reward(command) => reward::run(command),
        Command::Tools(ToolsCommand::Serve {
            port,
            state,
            cors_origins,
        }) => {
            let mut options = umi_tools::server::ServeOptions::default();
            if !cors_origins.is_empty() {
                options.allowed_origins = cors_origins;
            }
            let server =
                umi_tools::server::serve_with(&format!("127.0.0.1:{port}"), &state, &options)
                    .map_err(anyhow::Error::msg)?;
            eprintln!(
                "umi tools: serving at {} (docs: {0}/tools, OpenAPI: {0}/openapi.json; state: {}; pages allowed from: {})",
                server.url,
                state.display(),
                options.allowed_origins.join(", ")
            );
            server.wait();
            Ok(())
        }
    }
}

fn run_generate(args: GenerateArgs) -> Result<()> {
    if !args.model.exists() && args.model == Path::new(DEFAULT_MODEL) {
        bail!(
            "the default model {DEFAULT_MODEL} is not installed; run `scripts/setup.sh` first \
             (or pass --model PATH)"
        );
    }
    let device = args.backend.device()?;
    eprintln!("backend: {}", args.backend);
    let loaded = models::load_with_progress(&args.model, &device)?;

    let prompt = if args.raw {
        args.prompt.clone()
    } else {
        loaded.chat_template.user_prompt(&args.prompt)
    };
    let ids = loaded.tokenizer.encode(&prompt, true)?;
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        stop_strings: args.stop_strings,
    };
    let mut stdout = std::io::stdout();
    let output = pollster::block_on(generate(
        &loaded.model,
        &loaded.tokenizer,
        &ids,
        &config,
        |_, delta| {
            let _ = write!(stdout, "{delta}");
            let _ = stdout.flush();
            true
        },
    ))?;
    println!();
    eprintln!(
        "[{} prompt tokens at {:.1} tok/s, {} new tokens at {:.1} tok/s, stop: {:?}]",
        output.prompt_tokens,
        output.prefill_tokens_per_second(),
        output.tokens.len(),
        output.decode_tokens_per_second(),
        output.finish_reason
    );
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn run_bench(args: BenchArgs) -> Result<()> {
    if args.runs == 0 || args.prompt_tokens == 0 {
        bail!("--runs and --prompt-tokens must be positive");
    }
    if args.train {
        return run_train_bench(args);
    }
    let device = args.backend.device()?;
    let mut loaded = models::load_with_progress(&args.model, &device)?;
    args.quant.apply(&mut loaded, &device)?;
    let model = &loaded.model;
    let vocab = model.config.vocab_size;
    if args.prompt_tokens + args.new_tokens > model.max_positions() {
        bail!(
            "{} + {} tokens exceed the model's context of {}",
            args.prompt_tokens,
            args.new_tokens,
            model.max_positions()
        );
    }
    let prompt: Vec<u32> = (0..args.prompt_tokens)
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let mut cache = model.new_cache();
        let t = Instant::now();
        let mut logits = pollster::block_on(next_token_logits(model, &prompt, &mut cache))?;
        prefill.push(args.prompt_tokens as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..args.new_tokens {
            let next = argmax(&logits);
            logits = pollster::block_on(next_token_logits(model, &[next], &mut cache))?;
        }
        decode.push(args.new_tokens as f64 / t.elapsed().as_secs_f64());
        eprintln!(
            "run {}: prefill {:.1} tok/s, decode {:.1} tok/s",
            run + 1,
            prefill[run],
            decode[run]
        );
    }
    let line = serde_json::json!({
        "system": format!("umi {} (burn {} {})", env!("CARGO_PKG_VERSION"), "0.22.1", if args.backend == Backend::Cpu { "flex CPU" } else { "wgpu" }),
        "model": args.model.display().to_string(),
        "precision": match args.quant {
            models::Quant::F32 => "f32",
            models::Quant::Q8_0 => "Q8_0",
        },
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "prefill_tok_s": median(prefill),
        "decode_tok_s": median(decode),
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
    Ok(())
}

/// `umi bench --train`: LoRA training tokens/s and peak memory (see [`BenchArgs::train`]).
fn run_train_bench(args: BenchArgs) -> Result<()> {
    use umi_data::batch::Batch;
    use umi_model::LoraConfig;
    use umi_train::{TrainConfig, Trainer};

    if args.batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    let device = args.backend.device()?;
    let loaded = models::load_with_progress(&args.model, &device)?;
    let vocab = loaded.model.config.vocab_size;
    if args.prompt_tokens > loaded.model.max_positions() {
        bail!(
            "--prompt-tokens {} exceeds the model's context of {}",
            args.prompt_tokens,
            loaded.model.max_positions()
        );
    }
    // row r is the prompt rule shifted by r, so rows differ
    let rows: Vec<Vec<u32>> = (0..args.batch_size)
        .map(|r| {
            (0..args.prompt_tokens)
                .map(|i| (((i + r) * 7919 + 13) % vocab) as u32)
                .collect()
        })
        .collect();
    let batch = Batch {
        labels: rows
            .iter()
            .map(|row| row.iter().map(|&t| i64::from(t)).collect())
            .collect(),
        attention_mask: vec![vec![1; args.prompt_tokens]; args.batch_size],
        input_ids: rows,
    };
    let config = TrainConfig {
        learning_rate: 1e-4,
        warmup_ratio: 0.0,
        weight_decay: 0.0,
        batch_size: args.batch_size,
        gradient_accumulation_steps: 1,
        max_grad_norm: 1.0,
        max_len: args.prompt_tokens,
        lora: Some(LoraConfig {
            lora_dropout: 0.0,
            ..LoraConfig::default()
        }),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(loaded.model, config, args.runs + 1, &device)?;
    let mut rates = Vec::new();
    for step in 0..=args.runs {
        let t = Instant::now();
        let stats = pollster::block_on(trainer.train_step(std::slice::from_ref(&batch)))?;
        let rate = stats.tokens as f64 / t.elapsed().as_secs_f64();
        eprintln!(
            "step {}{}: loss {:.4}, {rate:.1} tok/s",
            step + 1,
            if step == 0 { " (warm-up)" } else { "" },
            stats.loss
        );
        if step > 0 {
            rates.push(rate);
        }
    }
    let line = serde_json::json!({
        "system": format!("umi {} (burn {} {})", env!("CARGO_PKG_VERSION"), "0.22.1", if args.backend == Backend::Cpu { "flex CPU" } else { "wgpu" }),
        "model": args.model.display().to_string(),
        "precision": "f32",
        "task": "lora-train",
        "batch_size": args.batch_size,
        "seq_len": args.prompt_tokens,
        "train_tok_s": median(rates),
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
    Ok(())
}

fn load_tools(source: &str, timeout_secs: u64) -> Result<Vec<umi_tools::ToolSpec>> {
    Ok(umi_tools::load_tool_specs_from(
        source,
        std::time::Duration::from_secs(timeout_secs),
    )?)
}

fn run_agent(args: RunArgs) -> Result<()> {
    use std::io::IsTerminal;
    use umi_agent::{Agent, AgentMode};

    let mode = args.mode;
    let specs = load_tools(&args.tools, args.tool_timeout)?;
    if specs.is_empty() {
        bail!("{} lists no tools", args.tools);
    }
    let device = args.backend.device()?;
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        ..Default::default()
    };
    let mut generator = args
        .models
        .clone()
        .or_shipped_agent(mode == AgentMode::Multi)
        .generator(&mut ModelCache::default(), &device, config)?;
    // While a role writes, a live line on stderr (terminals only) says who, how far and how
    // fast; each finished step is printed above it.
    let live = indicatif::ProgressBar::new_spinner();
    live.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
    );
    let writing = std::rc::Rc::new(std::cell::RefCell::new(LiveStep::default()));
    generator.on_text = Some(Box::new({
        let (live, writing) = (live.clone(), writing.clone());
        move |role, delta| live.set_message(writing.borrow_mut().push(role, delta))
    }));

    let color = std::io::stdout().is_terminal();
    let paint = move |code: &str, text: &str| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let docs = specs.iter().map(|s| s.doc()).collect();
    let mut tools =
        umi_tools::HttpTools::new(specs, std::time::Duration::from_secs(args.tool_timeout));
    if !args.allow_hosts.is_empty() {
        tools = tools.with_allowed_hosts(args.allow_hosts.clone())?;
    }
    let mut agent = Agent::new(generator, tools, docs);
    agent.config.mode = mode;
    agent.config.max_steps = args.max_steps;
    agent.config.max_observation_chars = args.max_observation_chars;
    println!("{} {}", paint("1", "user:"), args.query);
    let result = pollster::block_on(agent.run(&args.query, |event| {
        *writing.borrow_mut() = LiveStep::default();
        live.suspend(|| print_event(event, &paint))
    }));
    live.finish_and_clear();
    let (trajectory, stop) = result?;
    if let Some(path) = args.json {
        let record = umi_agent::RunRecord::new(&trajectory, &agent.tool_docs, stop);
        std::fs::write(&path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("trajectory written to {}", path.display());
    }
    Ok(())
}

/// Prints one agent event as a line of the transcript (`paint(ansi_code, text)` colours it).
fn print_event(event: &umi_agent::AgentEvent, paint: &dyn Fn(&str, &str) -> String) {
    use umi_agent::AgentEvent;
    match event {
        AgentEvent::Rationale { step, text, next } => {
            println!(
                "{} {text} [{}]",
                paint("32", &format!("planner #{step}:")),
                next.marker()
            )
        }
        AgentEvent::Action {
            action: Some(a), ..
        } => {
            println!(
                "{} Action: {} | Action Input: {}",
                paint("34", "caller:"),
                a.name,
                a.input
            )
        }
        AgentEvent::Action { action: None, .. } => {
            println!("{} (no action could be parsed)", paint("34", "caller:"))
        }
        AgentEvent::Observation { text, .. } => println!("{} {text}", paint("2", "observation:")),
        AgentEvent::Answer(text) => println!("{} {text}", paint("33", "summarizer:")),
        AgentEvent::Done(reason) => println!("{} {reason:?}", paint("1", "stop:")),
    }
}

/// What the live line of `umi run` shows while a role writes.
#[derive(Default)]
struct LiveStep {
    role: Option<umi_data::Role>,
    pieces: usize,
    started: Option<Instant>,
    text: String,
}

impl LiveStep {
    /// Adds a piece of `role`'s output (one token's text) and returns the line to show.
    fn push(&mut self, role: umi_data::Role, delta: &str) -> String {
        if self.role != Some(role) {
            *self = Self {
                role: Some(role),
                started: Some(Instant::now()),
                ..Self::default()
            };
        }
        self.pieces += 1;
        self.text.push_str(delta);
        let seconds = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let flat = self.text.replace('\n', " ");
        let tail: String = flat
            .chars()
            .skip(flat.chars().count().saturating_sub(60))
            .collect();
        format!(
            "{role:?} writing: {} tokens, {:.1} tok/s  …{tail}",
            self.pieces,
            self.pieces as f64 / seconds.max(1e-3)
        )
    }
}

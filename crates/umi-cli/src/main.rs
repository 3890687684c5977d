//! `umi`: the native command line of umi.
//!
//! Run with: `cargo run --release -- generate --prompt "What is the capital of France?"`

use anyhow::Result;
use clap::{Parser, Subcommand};

mod allocator;
mod bench;
mod data;
mod dpo;
mod eval;
mod eval_live;
mod fs;
mod generate;
mod models;
mod reward;
mod run;
mod steps;
mod train;
use models::ModelCache;

/// jemalloc as the allocator, set per workload by [`allocator::configure`].
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    Generate(generate::GenerateArgs),
    /// Measure prefill and decode speed and peak memory; prints one JSON line
    /// (scripts/bench/run.sh compares it with peers in BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Run the α-UMi agent on a query against HTTP tools, printing the trajectory as it happens.
    Run(run::RunArgs),
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
    Serve(umi_tools::server::ServeArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    allocator::configure(cli.command.trains());
    // The whole command runs on a worker of the rayon pool that the CPU kernels use (burn's CPU
    // backend and the Q8_0 products), so each of the ~200 parallel products per decoded token
    // starts from a pool thread instead of waking the pool from outside and blocking on it:
    // 1.3× the decode speed of SmolLM2 on 2 cores (BENCHMARKS.md). RAYON_NUM_THREADS still sets
    // the thread count.
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("umi-worker-{i}"))
        .stack_size(16 << 20)
        .build()?
        .install(|| run(cli))
}

impl Command {
    /// Whether the command trains (its allocator settings: [`allocator::settings`]).
    fn trains(&self) -> bool {
        match self {
            Command::Train(_) => true,
            Command::Bench(args) => args.train,
            _ => false,
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(args) => generate::run_generate(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Run(args) => run::run_agent(args),
        Command::Eval(args) => eval::run(args, &mut ModelCache::default()),
        Command::Data(command) => data::run(command),
        Command::Train(command) => train::run(command),
        Command::Reward(command) => reward::run(command),
        Command::Tools(ToolsCommand::Serve(args)) => args.run().map_err(anyhow::Error::msg),
    }
}

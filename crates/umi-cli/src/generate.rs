//! `umi generate`: text from a prompt, streamed.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use umi_model::{Backend, GenerationConfig, Progress, generate};

use crate::DEFAULT_MODEL;
use crate::models;

#[derive(clap::Args)]
pub(crate) struct GenerateArgs {
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

pub(crate) fn run_generate(args: GenerateArgs) -> Result<()> {
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
        ..GenerationConfig::default()
    };
    let mut stdout = std::io::stdout();
    let output = pollster::block_on(generate(
        &loaded.model,
        &loaded.tokenizer,
        &ids,
        &config,
        |progress| {
            if let Progress::Token { text, .. } = progress {
                let _ = write!(stdout, "{text}");
                let _ = stdout.flush();
            }
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

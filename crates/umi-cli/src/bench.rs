//! `umi bench`: prefill and decode speed, or LoRA training speed, and peak memory as one JSON
//! line (`scripts/bench/run.sh` compares it with peers in BENCHMARKS.md).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use umi_model::{
    Backend, GenerationConfig, Sampler, argmax, next_token_logits, next_token_logits_batch,
    sample_each,
};

use crate::DEFAULT_MODEL;
use crate::models;

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
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
    pub train: bool,
    /// Rows per training step (with --train).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Also time batched sampling: this many continuations of the prompt decoded as one batch
    /// (temperature 0.5, top-p 0.95, as self-rewarding samples candidate steps), against one
    /// sampled stream in the same run; `--new-tokens` each, EOS ignored.
    #[arg(long, default_value_t = 0)]
    samples: usize,
    /// A LoRA adapter folder (PEFT layout, e.g. a role of the shipped agent) attached for
    /// generation, unmerged, as `umi run` applies each role's adapter.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Merge `--adapter` into the weights instead: on a GPU into f32/f16 weights
    /// (`umi_model::merge_lora`, what the agent does there at each role's turn, timed), on the
    /// CPU into Q8_0 weights (`umi_model::merge_lora_quantized`: the base model's speed, other
    /// logits; EVAL.md: not used by the agent).
    #[arg(long, requires = "adapter")]
    merge_adapter: bool,
}

/// Decode tokens/s of `rows` sampled continuations of `prompt` decoded as one batch (all of
/// them counted), `new_tokens` steps after one shared prefill.
fn sampled_decode(
    model: &umi_model::Llama,
    prompt: &[u32],
    rows: usize,
    new_tokens: usize,
) -> Result<f64> {
    let mut cache = model.new_cache();
    let first = pollster::block_on(next_token_logits(model, prompt, &mut cache))?;
    for layer in cache.iter_mut() {
        layer.share_prefix();
    }
    let mut samplers = (0..rows)
        .map(|r| {
            Sampler::new(&GenerationConfig {
                temperature: 0.5,
                top_p: 0.95,
                seed: r as u64,
                ..Default::default()
            })
        })
        .collect::<umi_model::Result<Vec<_>>>()?;
    let mut logits = vec![first; rows];
    let t = Instant::now();
    for _ in 0..new_tokens {
        let next = sample_each(&mut samplers, &logits);
        logits = pollster::block_on(next_token_logits_batch(model, &next, &mut cache))?;
    }
    Ok((rows * new_tokens) as f64 / t.elapsed().as_secs_f64())
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

pub(crate) fn run_bench(args: BenchArgs) -> Result<()> {
    if args.runs == 0 || args.prompt_tokens == 0 {
        bail!("--runs and --prompt-tokens must be positive");
    }
    if args.train {
        return run_train_bench(args);
    }
    let device = args.backend.device()?;
    let mut loaded = args.quant.load(&args.model, &device)?;
    if let Some(dir) = &args.adapter {
        let (_, adapters) = umi_model::read_peft(&loaded.model, dir, &device)
            .with_context(|| format!("reading the adapter in {}", dir.display()))?;
        loaded.model.set_adapters(&adapters);
        if args.merge_adapter && loaded.model.is_on_gpu() && !loaded.model.is_quantized() {
            let t = Instant::now();
            umi_model::merge_lora(&mut loaded.model);
            // the GPU runs lazily: reading one value of the last merged weight back waits
            // for every merge queued before it
            if let Some((_, p)) = loaded.model.projections().last() {
                let _ = p.weight.val().slice([0..1, 0..1]).into_data();
            }
            eprintln!(
                "merged the adapter into the weights in {:.3} s",
                t.elapsed().as_secs_f64()
            );
        } else if args.merge_adapter {
            if loaded.model.quantized_format() != Some(umi_model::QFormat::Q8_0) {
                bail!(
                    "--merge-adapter merges into Q8_0 weights on the CPU backend (add --quant q8_0) or into f32/f16 weights on a GPU backend"
                );
            }
            umi_model::merge_lora_quantized(&mut loaded.model);
        }
    }
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
    let (mut one_stream, mut batched) = (Vec::new(), Vec::new());
    if args.samples > 0 {
        for run in 0..args.runs {
            one_stream.push(sampled_decode(model, &prompt, 1, args.new_tokens)?);
            batched.push(sampled_decode(
                model,
                &prompt,
                args.samples,
                args.new_tokens,
            )?);
            eprintln!(
                "run {}: sampled decode, 1 stream {:.1} tok/s, {} in a batch {:.1} tok/s",
                run + 1,
                one_stream[run],
                args.samples,
                batched[run]
            );
        }
    }
    let mut line = serde_json::json!({
        "system": format!("umi {} (burn {} {})", env!("CARGO_PKG_VERSION"), "0.22.1", if args.backend == Backend::Cpu { "flex CPU" } else { "wgpu" }),
        "model": args.model.display().to_string(),
        "precision": match args.quant {
            models::Quant::F32 => "f32",
            models::Quant::Q8_0 => "Q8_0",
            models::Quant::Q4_1 => "Q4_1",
            models::Quant::F16 => "f16",
            models::Quant::Auto if args.backend == Backend::Cpu => "f16",
            models::Quant::Auto => "f32",
        },
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "prefill_tok_s": median(prefill),
        "decode_tok_s": median(decode),
        "peak_rss_mib": peak_rss_mib(),
    });
    if let Some(dir) = &args.adapter {
        line["adapter"] = dir.display().to_string().into();
        line["adapter_merged"] = args.merge_adapter.into();
    }
    if args.samples > 0 {
        line["samples"] = args.samples.into();
        line["sampled_one_stream_tok_s"] = median(one_stream).into();
        line["sampled_batch_tok_s"] = median(batched).into();
    }
    println!("{line}");
    Ok(())
}

/// `umi bench --train`: LoRA training tokens/s and peak memory (see [`BenchArgs::train`]).
pub(crate) fn run_train_bench(args: BenchArgs) -> Result<()> {
    use umi_data::batch::Batch;
    use umi_model::LoraConfig;
    use umi_train::{TrainConfig, Trainer};

    if args.batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    if args.adapter.is_some() {
        bail!("--adapter is for generation; --train attaches fresh adapters");
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

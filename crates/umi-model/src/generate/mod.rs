//! Autoregressive decoding: greedy by default (α-UMi evaluates greedily), temperature / top-p
//! sampling with a seed, stop on EOS ids and stop strings, a per-token streaming callback.
//!
//! The device side ([`Llama::forward`] with a [`KvCache`]) and the host side ([`Sampler`],
//! stop checks, text streaming) are split so that an async driver (the browser, where reads
//! from the GPU must be awaited) reuses everything but the read.

use web_time::{Duration, Instant}; // std::time::Instant panics on wasm32

use burn::tensor::{Int, Tensor, TensorData};

use crate::cache::{KvCache, PrefixCache};
use crate::llama::Llama;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// How to decode.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0` means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling mass in `(0, 1]`; `1` disables it. Ignored when greedy.
    pub top_p: f64,
    /// Seed of the sampler's random generator.
    pub seed: u64,
    /// Generation stops when the text contains any of these; the stop string is not returned.
    pub stop_strings: Vec<String>,
    /// Most prompt tokens per prefill forward; `0` (the default) prefills the whole prompt in
    /// one. Smaller chunks let a slow device report [`Progress::Prefill`] and be stopped
    /// between chunks (the browser on a software adapter); the logits differ from a one-pass
    /// prefill only by float rounding.
    pub prefill_chunk: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 42,
            stop_strings: Vec::new(),
            prefill_chunk: 0,
        }
    }
}

/// What [`generate`] reports while it works; the callback's `false` stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// `done` of the `total` prompt tokens that need a forward pass (those not taken from a
    /// [`PrefixCache`]) are prefilled: reported with `done = 0` before the first chunk and after
    /// every chunk ([`GenerationConfig::prefill_chunk`]).
    Prefill {
        /// Tokens prefilled so far.
        done: usize,
        /// Tokens to prefill.
        total: usize,
    },
    /// A token was generated.
    Token {
        /// Its id.
        id: u32,
        /// The text it adds (empty while a multi-byte character is incomplete).
        text: &'a str,
    },
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token was produced.
    Eos,
    /// A stop string appeared in the text.
    StopString(String),
    /// `max_new_tokens` were generated.
    Length,
    /// The streaming callback asked to stop.
    Cancelled,
}

/// What [`generate`] returns.
#[derive(Debug, Clone)]
pub struct GenerationOutput {
    /// Generated text (without the EOS token or the stop string).
    pub text: String,
    /// Generated token ids (the EOS id, if produced, is included).
    pub tokens: Vec<u32>,
    /// Number of prompt tokens.
    pub prompt_tokens: usize,
    /// Of those, the leading tokens taken from a [`PrefixCache`] instead of being prefilled.
    pub cached_tokens: usize,
    /// Time spent on the prompt (prefill of its uncached tokens).
    pub prefill_time: Duration,
    /// Time spent generating after the prompt.
    pub decode_time: Duration,
    /// Why it stopped.
    pub finish_reason: FinishReason,
}

impl GenerationOutput {
    /// Prefilled (uncached) prompt tokens per second.
    pub fn prefill_tokens_per_second(&self) -> f64 {
        (self.prompt_tokens - self.cached_tokens) as f64 / self.prefill_time.as_secs_f64().max(1e-9)
    }

    /// Generated tokens per second (the first token comes from the prefill, so it is not counted).
    pub fn decode_tokens_per_second(&self) -> f64 {
        self.tokens.len().saturating_sub(1) as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// Picks the next token from a row of logits on the host.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f64,
    top_p: f64,
    rng: crate::rng::SplitMix64,
    /// `e^((logit - max) / T)` per id, reused from call to call.
    weights: Vec<f32>,
    /// The ids that may be in the nucleus, with their weights.
    candidates: Vec<(u32, f64)>,
}

impl Sampler {
    /// A sampler for `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Generation`] if the temperature is negative or `top_p` is outside `(0, 1]`.
    pub fn new(config: &GenerationConfig) -> Result<Self> {
        if !config.temperature.is_finite() || config.temperature < 0.0 {
            return Err(Error::Generation(format!(
                "temperature must be >= 0, got {}",
                config.temperature
            )));
        }
        if config.top_p.is_nan() || config.top_p <= 0.0 || config.top_p > 1.0 {
            return Err(Error::Generation(format!(
                "top_p must be in (0, 1], got {}",
                config.top_p
            )));
        }
        Ok(Self {
            temperature: config.temperature,
            top_p: config.top_p,
            rng: crate::rng::SplitMix64::new(config.seed, "sampler"),
            weights: Vec::new(),
            candidates: Vec::new(),
        })
    }

    /// Chooses a token id from `logits` (`[vocab_size]`): greedy at temperature 0, otherwise
    /// from the nucleus (the shortest run of the most probable ids, ties by id, whose share of
    /// the mass reaches `top_p`) in proportion to `e^((logit - max) / T)`.
    ///
    /// The weights are computed in f32 in one vectorised pass (the f64 `exp` of every id of a
    /// 49,152-token vocabulary and a partial sort of them all took about 6 % of the CPU time of
    /// a batched sampling step, on one thread while the others waited). The nucleus is then
    /// looked for among the ids whose weight is at least a threshold, 2⁻¹⁰ of the largest
    /// first and lower when their mass falls short of `top_p`: every id above the threshold
    /// comes before every id below it in the order, so when the run ends among them it is the
    /// run the whole sorted vocabulary gives. `top_p = 1` keeps every id.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.temperature == 0.0 {
            return argmax(logits);
        }
        let scale = (1.0 / self.temperature) as f32;
        self.weights.resize(logits.len(), 0.0);
        let weights = &mut self.weights;
        let total = crate::ops::simd::vectorized(
            #[inline(always)]
            || {
                let max = crate::ops::simd::max(logits);
                crate::ops::simd::exp_scaled_sum(weights, logits, max, scale)
            },
        );
        let total = f64::from(total);
        let descending = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let mut threshold = if self.top_p < 1.0 { 1.0 / 1024.0 } else { 0.0 };
        let cut = loop {
            self.candidates.clear();
            self.candidates.extend(
                self.weights
                    .iter()
                    .enumerate()
                    .filter(|&(_, &w)| w >= threshold)
                    .map(|(i, &w)| (i as u32, f64::from(w))),
            );
            self.candidates.sort_unstable_by(descending);
            let mut kept = 0.0;
            let cut = self.candidates.iter().position(|p| {
                kept += p.1 / total;
                kept >= self.top_p
            });
            match cut {
                Some(i) => break i + 1,
                None if threshold == 0.0 => break self.candidates.len(),
                // (below f32's smallest normal the next try keeps every id)
                None if threshold < 1e-30 => threshold = 0.0,
                None => threshold /= 1024.0,
            }
        };
        let nucleus = &self.candidates[..cut];
        let Some(last) = nucleus.last() else {
            return argmax(logits); // no finite weight at all (NaN or -inf logits)
        };
        let mass: f64 = nucleus.iter().map(|p| p.1).sum();
        let mut r = self.rng.unit() * mass;
        for (id, p) in nucleus {
            r -= p;
            if r <= 0.0 {
                return *id;
            }
        }
        last.0
    }
}

/// Each sampler's next token from its row of logits (`samplers[i]` over `logits[i]`), the rows
/// over rayon's threads as [`generate_many`] samples them.
///
/// # Panics
///
/// If `samplers` and `logits` differ in length (a caller's bug).
pub fn sample_each(samplers: &mut [Sampler], logits: &[Vec<f32>]) -> Vec<u32> {
    assert_eq!(
        samplers.len(),
        logits.len(),
        "sample_each: one row of logits per sampler"
    );
    each_row(samplers.iter_mut().zip(logits).collect(), |(s, l)| {
        s.sample(l)
    })
}

/// `f` of every item, in order: natively over rayon's threads when there are several (the
/// rows of a batch sample, decode and look for their stop strings independently; on one
/// thread, 6 SmolLM2 candidates' sampling over the 49,152-token vocabulary was about 4 % of a
/// batched decode step while the other thread waited, 2026-12-06), one after the other in
/// the browser.
fn each_row<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(not(target_family = "wasm"))]
    if items.len() > 1 {
        use rayon::prelude::*;
        return items.into_par_iter().map(f).collect();
    }
    items.into_iter().map(f).collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Rows of logits (`[rows, vocab_size]`) read back to the host, row after row.
///
/// The read is awaited (`into_data_async`): in the browser a synchronous read from the GPU is
/// impossible, and awaiting it hands the event loop back to the page between tokens.
///
/// # Errors
///
/// [`Error::Generation`] when the device cannot read the logits back.
async fn read_logits(logits: Tensor<2>) -> Result<Vec<f32>> {
    let [rows, vocab_size] = logits.dims();
    logits
        .reshape([rows * vocab_size])
        .into_data_async()
        .await
        .map_err(|e| Error::Generation(format!("reading the logits back failed: {e:?}")))?
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Generation(format!("the logits are not floats: {e:?}")))
}

/// Feeds `tokens` (one sequence) through the model, extending `cache`, and returns the logits of
/// the last position on the host. Only the last position goes through the LM head.
///
/// # Shapes
///
/// - returns `[vocab_size]` logits
///
/// # Errors
///
/// [`Error::Generation`] when the device cannot read the logits back.
pub async fn next_token_logits(
    model: &Llama,
    tokens: &[u32],
    cache: &mut [KvCache],
) -> Result<Vec<f32>> {
    let device = model.embed_tokens.val().device();
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &device);
    let hidden = model.forward_hidden(input, cache);
    let [_, seq_len, hidden_size] = hidden.dims();
    let last = hidden.narrow(1, seq_len - 1, 1).reshape([1, hidden_size]);
    Ok(head_logits(model, last)
        .await?
        .pop()
        .expect("one row of logits"))
}

/// Final-norm hidden states (`[rows, hidden_size]`) through the LM head, each row's logits
/// read back to the host (awaited, as [`read_logits`] explains). A quantized head
/// ([`Llama::quantized_head`]) of a few rows (or interleaved: the products
/// [`Llama::logits`] would run) multiplies on the host straight into each row's vector
/// ([`QMatrix::matmul_by_token`](crate::qmatmul::QMatrix::matmul_by_token)): the same values,
/// without building a logits tensor and reading it back.
///
/// # Shapes
///
/// - hidden: `[rows, hidden_size]`
/// - returns `rows` rows of `[vocab_size]` logits
///
/// # Errors
///
/// [`Error::Generation`] when the device cannot read the logits back.
async fn head_logits(model: &Llama, hidden: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [rows, hidden_size] = hidden.dims();
    #[cfg(not(target_family = "wasm"))]
    if let Some(head) = model.quantized_head()
        && (rows <= crate::linear::QUANTIZED_MAX_ROWS || head.interleaved())
    {
        return Ok(crate::ops::host_values(hidden, |x| {
            head.matmul_by_token(x, rows)
        }));
    }
    let logits = model.logits(hidden.reshape([rows, 1, hidden_size])); // [rows, 1, vocab_size]
    let vocab_size = logits.dims()[2];
    let flat = read_logits(logits.reshape([rows, vocab_size])).await?;
    Ok(flat.chunks(vocab_size).map(<[f32]>::to_vec).collect())
}

/// Feeds one new token per sequence of a batch (`tokens[r]` continues row `r` of `cache`) and
/// returns each row's next-token logits on the host: one forward for all rows, which reads
/// the weights once (decoding is memory-bound, so a few rows cost little more than one).
///
/// # Shapes
///
/// - cache: `[tokens.len(), num_kv_heads, len, head_dim]` per layer
/// - returns `tokens.len()` rows of `[vocab_size]` logits
///
/// # Errors
///
/// [`Error::Generation`] when `tokens` is empty or the device cannot read the logits back.
pub async fn next_token_logits_batch(
    model: &Llama,
    tokens: &[u32],
    cache: &mut [KvCache],
) -> Result<Vec<Vec<f32>>> {
    if tokens.is_empty() {
        return Err(Error::Generation(
            "a batch needs at least one sequence".into(),
        ));
    }
    let device = model.embed_tokens.val().device();
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [tokens.len(), 1]), &device);
    let hidden = model.forward_hidden(input, cache); // [rows, 1, hidden_size]
    let [rows, _, hidden_size] = hidden.dims();
    head_logits(model, hidden.reshape([rows, hidden_size])).await
}

/// Incremental detokenisation for streaming: turns the growing decoded text into deltas.
///
/// Holds back an incomplete UTF-8 sequence (decoded as U+FFFD) and any tail that could be the
/// start of a stop string, so that the streamed deltas always add up to the final text.
#[derive(Debug, Default)]
pub struct TextStream {
    emitted: String,
    stop_strings: Vec<String>,
}

impl TextStream {
    /// A stream that holds back possible beginnings of `stop_strings`.
    pub fn new(stop_strings: &[String]) -> Self {
        Self {
            emitted: String::new(),
            stop_strings: stop_strings
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
        }
    }

    /// The text emitted so far.
    pub fn text(&self) -> &str {
        &self.emitted
    }

    /// Returns the text that can be shown now, given the full decoded text so far.
    pub fn push(&mut self, full: &str) -> String {
        if full.ends_with('\u{FFFD}') || !full.starts_with(&self.emitted) {
            return String::new();
        }
        let mut safe = full.len();
        for stop in &self.stop_strings {
            for (k, _) in stop.char_indices().skip(1) {
                if full.ends_with(&stop[..k]) {
                    safe = safe.min(full.len() - k);
                }
            }
        }
        if safe <= self.emitted.len() || !full.is_char_boundary(safe) {
            return String::new();
        }
        let delta = full[self.emitted.len()..safe].to_string();
        self.emitted.push_str(&delta);
        delta
    }

    /// Returns whatever of `final_text` has not been emitted yet.
    pub fn finish(&mut self, final_text: &str) -> String {
        match final_text.strip_prefix(self.emitted.as_str()) {
            Some(rest) => {
                let rest = rest.to_string();
                self.emitted = final_text.to_string();
                rest
            }
            None => String::new(),
        }
    }
}

/// Generates a continuation of `prompt` (token ids, BOS already included if wanted).
///
/// Async because every read from the device is awaited (the browser cannot block on the GPU);
/// native callers drive it with `pollster::block_on`.
///
/// `on_progress` is called with [`Progress::Prefill`] around every prefill chunk and with
/// [`Progress::Token`] after every generated token; returning `false` stops generation
/// ([`FinishReason::Cancelled`]; stopped during the prefill, no token is generated).
///
/// # Errors
///
/// [`Error::ContextOverflow`] if the prompt plus `max_new_tokens` do not fit the model's
/// context; [`Error::Generation`] for an empty prompt or bad sampling settings;
/// [`Error::Tokenizer`] if decoding fails.
pub async fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    config: &GenerationConfig,
    on_progress: impl FnMut(Progress<'_>) -> bool,
) -> Result<GenerationOutput> {
    generate_cached(
        model,
        tokenizer,
        prompt,
        config,
        &mut PrefixCache::new(),
        on_progress,
    )
    .await
}

/// [`generate`] reusing the keys and values of the prompt in `prefix` for the tokens this
/// prompt shares with it ([`PrefixCache::reusable`]), and leaving this prompt's there for the
/// next call (when stopped during the prefill, the part prefilled so far). `prefix` must have
/// been filled by the same model with the same weights.
///
/// # Errors
///
/// As [`generate`].
pub async fn generate_cached(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    config: &GenerationConfig,
    prefix: &mut PrefixCache,
    mut on_progress: impl FnMut(Progress<'_>) -> bool,
) -> Result<GenerationOutput> {
    check_prompt(model, prompt, config.max_new_tokens)?;
    let mut sampler = Sampler::new(config)?;
    let eos = tokenizer.eos_ids();
    let (cached_tokens, mut cache) = prefix.take_prefix(prompt, model);
    let mut tokens: Vec<u32> = Vec::new();
    let mut stream = TextStream::new(&config.stop_strings);
    let mut finish_reason = FinishReason::Length;

    let start = Instant::now();
    let Some(mut logits) = prefill(
        model,
        prompt,
        cached_tokens,
        config.prefill_chunk,
        &mut cache,
        &mut on_progress,
    )
    .await?
    else {
        prefix.store(&prompt[..cache[0].len()], &cache);
        return Ok(GenerationOutput {
            text: String::new(),
            tokens,
            prompt_tokens: prompt.len(),
            cached_tokens,
            prefill_time: start.elapsed(),
            decode_time: Duration::ZERO,
            finish_reason: FinishReason::Cancelled,
        });
    };
    prefix.store(prompt, &cache);
    let prefill_time = start.elapsed();
    let decode_start = Instant::now();
    let mut text = String::new();
    for step in 0..config.max_new_tokens {
        let next = sampler.sample(&logits);
        tokens.push(next);
        if eos.contains(&next) {
            finish_reason = FinishReason::Eos;
            break;
        }
        text = tokenizer.decode(&tokens, true)?;
        if let Some(stop) = cut_at_stop_string(&mut text, &config.stop_strings) {
            finish_reason = FinishReason::StopString(stop);
            break;
        }
        let delta = stream.push(&text);
        if !on_progress(Progress::Token {
            id: next,
            text: &delta,
        }) {
            finish_reason = FinishReason::Cancelled;
            break;
        }
        if step + 1 < config.max_new_tokens {
            logits = next_token_logits(model, &[next], &mut cache).await?;
        }
    }
    let rest = stream.finish(&text);
    if !rest.is_empty() {
        on_progress(Progress::Token {
            id: *tokens.last().unwrap_or(&0),
            text: &rest,
        });
    }
    Ok(GenerationOutput {
        text,
        tokens,
        prompt_tokens: prompt.len(),
        cached_tokens,
        prefill_time,
        decode_time: decode_start.elapsed(),
        finish_reason,
    })
}

/// Runs `prompt[cached..]` through the model into `cache` in chunks of at most `chunk` tokens
/// (`0`: one pass), reporting [`Progress::Prefill`] before the first and after every chunk, and
/// returns the last position's logits, or `None` when `on_progress` asked to stop (`cache` then
/// holds the chunks done).
async fn prefill(
    model: &Llama,
    prompt: &[u32],
    cached: usize,
    chunk: usize,
    cache: &mut [KvCache],
    on_progress: &mut impl FnMut(Progress<'_>) -> bool,
) -> Result<Option<Vec<f32>>> {
    let new = &prompt[cached..];
    let total = new.len();
    if !on_progress(Progress::Prefill { done: 0, total }) {
        return Ok(None);
    }
    let chunk = if chunk == 0 { total } else { chunk };
    let mut done = 0;
    while total - done > chunk {
        let part = &new[done..done + chunk];
        let device = model.embed_tokens.val().device();
        let ids: Vec<i64> = part.iter().map(|&t| t as i64).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, part.len()]), &device);
        let hidden = model.forward_hidden(input, cache); // [1, chunk, hidden_size]
        // Reading one value back waits for the chunk (a GPU queues work otherwise), so the
        // progress is real and a stop takes effect after this chunk.
        hidden
            .narrow(2, 0, 1)
            .narrow(1, part.len() - 1, 1)
            .into_data_async()
            .await
            .map_err(|e| Error::Generation(format!("reading the prefill back failed: {e:?}")))?;
        done += chunk;
        if !on_progress(Progress::Prefill { done, total }) {
            return Ok(None);
        }
    }
    let logits = next_token_logits(model, &new[done..], cache).await?;
    if !on_progress(Progress::Prefill { done: total, total }) {
        return Ok(None);
    }
    Ok(Some(logits))
}

/// A prompt that can be continued by `max_new_tokens`: not empty, and within the context.
fn check_prompt(model: &Llama, prompt: &[u32], max_new_tokens: usize) -> Result<()> {
    if prompt.is_empty() {
        return Err(Error::Generation("the prompt is empty".into()));
    }
    if prompt.len() + max_new_tokens > model.max_positions() {
        return Err(Error::ContextOverflow {
            prompt_tokens: prompt.len(),
            max_new_tokens,
            max_positions: model.max_positions(),
        });
    }
    Ok(())
}

/// One sequence of a batch ([`generate_many`], [`RaggedBatch`]) while it runs: its sampler,
/// tokens and text.
#[derive(Debug)]
struct Sequence {
    sampler: Sampler,
    tokens: Vec<u32>,
    text: String,
}

impl Sequence {
    fn new(config: &GenerationConfig) -> Result<Self> {
        Ok(Self {
            sampler: Sampler::new(config)?,
            tokens: Vec::new(),
            text: String::new(),
        })
    }

    /// Samples the next token from `logits` and returns why the sequence stops there, if it
    /// does: EOS, a stop string (cut from the text), `max_new_tokens` reached (a budget of 0
    /// stops before sampling). The text is the tokens decoded, as [`generate_cached`] keeps it.
    fn advance(
        &mut self,
        logits: &[f32],
        config: &GenerationConfig,
        tokenizer: &Tokenizer,
    ) -> Result<Option<FinishReason>> {
        if config.max_new_tokens == 0 {
            return Ok(Some(FinishReason::Length));
        }
        let token = self.sampler.sample(logits);
        self.tokens.push(token);
        if tokenizer.eos_ids().contains(&token) {
            return Ok(Some(FinishReason::Eos));
        }
        self.text = tokenizer.decode(&self.tokens, true)?;
        if let Some(stop) = cut_at_stop_string(&mut self.text, &config.stop_strings) {
            return Ok(Some(FinishReason::StopString(stop)));
        }
        Ok((self.tokens.len() >= config.max_new_tokens).then_some(FinishReason::Length))
    }

    /// The token sampled last (the next input of a running sequence).
    fn last(&self) -> u32 {
        *self
            .tokens
            .last()
            .expect("a running sequence has sampled a token")
    }
}

/// Cuts `text` at the earliest of `stop_strings` it contains and returns that stop string.
fn cut_at_stop_string(text: &mut String, stop_strings: &[String]) -> Option<String> {
    let (stop, at) = stop_strings
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (s, at)))
        .min_by_key(|(_, at)| *at)?;
    text.truncate(at);
    Some(stop.clone())
}

/// One sequence of [`generate_many`] while it runs.
struct Row<'a> {
    config: &'a GenerationConfig,
    sequence: Sequence,
    finish_reason: Option<FinishReason>,
    decode_time: Duration,
}

/// Continues one prompt with `configs.len()` sequences decoded together as a batch: the `w`
/// candidate steps of a decision point (psrlm-design.md §2.4), each with its own seed.
///
/// The prompt is prefilled once (reusing `prefix` as [`generate_cached`] does), its keys and
/// values are shared by every sequence ([`KvCache::share_prefix`]: attention reads them once
/// per step for all of them), and each decode step is one forward over the sequences still
/// running ([`next_token_logits_batch`]). A sequence
/// leaves the batch when it stops (EOS, a stop string, its own `max_new_tokens`). Sequence `r`
/// samples with `configs[r]`, so it gets the tokens [`generate_cached`] gives for that config,
/// up to the rounding of batched products (attention sums the shared prefix and the own
/// positions separately; greedy and sampled tokens agree in the tests).
///
/// # Errors
///
/// As [`generate`], for any of the configs; [`Error::Generation`] when `configs` is empty.
pub async fn generate_many(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    configs: &[GenerationConfig],
    prefix: &mut PrefixCache,
) -> Result<Vec<GenerationOutput>> {
    if prompt.is_empty() {
        return Err(Error::Generation("the prompt is empty".into()));
    }
    if configs.is_empty() {
        return Err(Error::Generation("no sequences to generate".into()));
    }
    let max_new_tokens = configs.iter().map(|c| c.max_new_tokens).max().unwrap_or(0);
    check_prompt(model, prompt, max_new_tokens)?;
    let mut rows = configs
        .iter()
        .map(|config| {
            Ok(Row {
                config,
                sequence: Sequence::new(config)?,
                finish_reason: None,
                decode_time: Duration::ZERO,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (cached_tokens, mut cache) = prefix.take_prefix(prompt, model);

    let start = Instant::now();
    let first = next_token_logits(model, &prompt[cached_tokens..], &mut cache).await?;
    prefix.store(prompt, &cache);
    cache.iter_mut().for_each(KvCache::share_prefix);
    let prefill_time = start.elapsed();
    let decode_start = Instant::now();
    // `running[i]` is the row of `rows` at batch position i (and row i of the cache's own
    // positions); `logits[i]` its next-token logits.
    let mut running: Vec<usize> = (0..rows.len()).collect();
    let mut logits = vec![first; rows.len()];
    while !running.is_empty() {
        let mut next = Vec::with_capacity(running.len());
        let mut kept = Vec::with_capacity(running.len());
        // the running rows are those not finished, in order
        let advancing: Vec<(&mut Row, &Vec<f32>)> = rows
            .iter_mut()
            .filter(|row| row.finish_reason.is_none())
            .zip(&logits)
            .collect();
        let advanced = each_row(advancing, |(row, logits)| {
            row.sequence.advance(logits, row.config, tokenizer)
        });
        for ((i, &r), finish_reason) in running.iter().enumerate().zip(advanced) {
            let row = &mut rows[r];
            row.finish_reason = finish_reason?;
            if row.finish_reason.is_some() {
                row.decode_time = decode_start.elapsed();
            } else {
                kept.push(i);
                next.push(row.sequence.last());
            }
        }
        if kept.is_empty() {
            break;
        }
        if kept.len() < running.len() {
            // (before the first step the sequences hold no own positions yet: nothing to drop)
            cache.iter_mut().for_each(|l| l.select_rows(&kept));
        }
        running = kept.iter().map(|&i| running[i]).collect();
        logits = next_token_logits_batch(model, &next, &mut cache).await?;
    }
    Ok(rows
        .into_iter()
        .map(|row| GenerationOutput {
            text: row.sequence.text,
            tokens: row.sequence.tokens,
            prompt_tokens: prompt.len(),
            cached_tokens,
            prefill_time,
            decode_time: row.decode_time,
            finish_reason: row.finish_reason.unwrap_or(FinishReason::Length),
        })
        .collect())
}

/// Sequences with prompts of their own decoded together, each joining when its prompt is
/// prefilled and leaving when it stops (continuous batching, as vLLM and llama.cpp's server
/// schedule requests): every decode step is one [`Llama::forward_ragged`] over the sequences
/// still running, so the weights are read once per step for all of them. `K` names a
/// sequence for its caller (e.g. which request it answers).
///
/// A sequence gets the tokens [`generate_cached`] gives its prompt and config alone, up to the
/// rounding of batched products (a test checks greedy identity on quantized weights). The
/// model is passed to every call rather than held, so that a caller that swaps adapters
/// between roles keeps one batch per role; it must be the same model, with the same
/// adapters, for every call on one batch.
#[derive(Debug)]
pub struct RaggedBatch<K> {
    rows: Vec<RaggedRow<K>>,
}

impl<K> Default for RaggedBatch<K> {
    fn default() -> Self {
        Self { rows: Vec::new() }
    }
}

/// One sequence of a [`RaggedBatch`].
#[derive(Debug)]
struct RaggedRow<K> {
    key: K,
    config: GenerationConfig,
    sequence: Sequence,
    /// One per layer, this sequence's alone.
    cache: Vec<KvCache>,
    /// The next token's logits (`[vocab_size]`).
    logits: Vec<f32>,
    prompt_tokens: usize,
    cached_tokens: usize,
    prefill_time: Duration,
    decode_start: Instant,
}

impl<K> RaggedBatch<K> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sequences running.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no sequence is running.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Prefills `prompt` (reusing and then replacing `prefix`'s keys and values as
    /// [`generate_cached`] does) and adds its sequence, decoded with `config`, to the batch.
    ///
    /// # Errors
    ///
    /// [`Error::Generation`] for an empty prompt or a bad sampling setting,
    /// [`Error::ContextOverflow`] when the prompt and `max_new_tokens` exceed the context;
    /// nothing joins then.
    pub async fn join(
        &mut self,
        model: &Llama,
        key: K,
        prompt: &[u32],
        config: GenerationConfig,
        prefix: &mut PrefixCache,
    ) -> Result<()> {
        check_prompt(model, prompt, config.max_new_tokens)?;
        let sequence = Sequence::new(&config)?;
        let start = Instant::now();
        let (cached_tokens, mut cache) = prefix.take_prefix(prompt, model);
        let logits = next_token_logits(model, &prompt[cached_tokens..], &mut cache).await?;
        prefix.store(prompt, &cache);
        self.rows.push(RaggedRow {
            key,
            config,
            sequence,
            cache,
            logits,
            prompt_tokens: prompt.len(),
            cached_tokens,
            prefill_time: start.elapsed(),
            decode_start: Instant::now(),
        });
        Ok(())
    }

    /// Samples every sequence's next token; the sequences that stop (EOS, a stop string, their
    /// `max_new_tokens`) leave the batch and are returned with their outputs, in the order
    /// they joined; the others advance by one forward over all of them.
    ///
    /// # Errors
    ///
    /// [`Error::Generation`] when the tokenizer or the device fails.
    pub async fn step(
        &mut self,
        model: &Llama,
        tokenizer: &Tokenizer,
    ) -> Result<Vec<(K, GenerationOutput)>> {
        let mut finished = Vec::new();
        let mut running = Vec::with_capacity(self.rows.len());
        let advancing: Vec<_> = self
            .rows
            .iter_mut()
            .map(|row| (&mut row.sequence, &row.logits, &row.config))
            .collect();
        let advanced = each_row(advancing, |(sequence, logits, config)| {
            sequence.advance(logits, config, tokenizer)
        });
        for (row, finish_reason) in std::mem::take(&mut self.rows).into_iter().zip(advanced) {
            match finish_reason? {
                Some(finish_reason) => {
                    let output = GenerationOutput {
                        text: row.sequence.text,
                        tokens: row.sequence.tokens,
                        prompt_tokens: row.prompt_tokens,
                        cached_tokens: row.cached_tokens,
                        prefill_time: row.prefill_time,
                        decode_time: row.decode_start.elapsed(),
                        finish_reason,
                    };
                    finished.push((row.key, output));
                }
                None => running.push(row),
            }
        }
        self.rows = running;
        if self.rows.is_empty() {
            return Ok(finished);
        }
        let next: Vec<u32> = self.rows.iter().map(|r| r.sequence.last()).collect();
        let mut caches: Vec<Vec<KvCache>> = self
            .rows
            .iter_mut()
            .map(|r| std::mem::take(&mut r.cache))
            .collect();
        let hidden = model.forward_ragged_hidden(&next, &mut caches); // [rows, hidden_size]
        for (row, cache) in self.rows.iter_mut().zip(caches) {
            row.cache = cache;
        }
        for (row, logits) in self.rows.iter_mut().zip(head_logits(model, hidden).await?) {
            row.logits = logits;
        }
        Ok(finished)
    }
}

#[cfg(test)]
mod tests;

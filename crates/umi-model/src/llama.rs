//! The Llama decoder (Touvron et al. 2023) as Hugging Face's `LlamaForCausalLM` computes it:
//! RMSNorm → grouped-query attention with RoPE → residual → RMSNorm → SwiGLU MLP → residual,
//! then a final RMSNorm and the LM head (optionally tied to the token embedding).

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor};

use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::linear::LoraLinear;
use crate::ops::{Causal, attention, attention_with_prefix, swiglu};
use crate::rope::RotaryEmbedding;

/// Root-mean-square layer norm: `x / sqrt(mean(x²) + eps) · weight`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[hidden_size]`
    pub weight: Param<Tensor<1>>,
    /// ε added to the mean square.
    #[module(skip)]
    pub eps: f64,
}

impl RmsNorm {
    /// Normalises the last dimension.
    ///
    /// # Shapes
    ///
    /// - x: `[batch_size, seq_len, hidden_size]`
    /// - output: same
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        crate::ops::rms_norm(x, self.weight.val(), self.eps)
    }
}

/// Grouped-query self-attention with rotate-half RoPE and a [`KvCache`].
#[derive(Module, Debug)]
pub struct Attention {
    /// `[hidden_size, num_heads·head_dim]`
    pub q_proj: LoraLinear,
    /// `[hidden_size, num_kv_heads·head_dim]`
    pub k_proj: LoraLinear,
    /// `[hidden_size, num_kv_heads·head_dim]`
    pub v_proj: LoraLinear,
    /// `[num_heads·head_dim, hidden_size]`
    pub o_proj: LoraLinear,
    /// Query heads.
    #[module(skip)]
    pub num_heads: usize,
    /// Key/value heads.
    #[module(skip)]
    pub num_kv_heads: usize,
    /// Width of one head.
    #[module(skip)]
    pub head_dim: usize,
}

impl Attention {
    /// Attends from `x` to the cached positions and to `x` itself (causally).
    ///
    /// # Shapes
    ///
    /// - x: `[batch_size, seq_len, hidden_size]`
    /// - output: `[batch_size, seq_len, hidden_size]`
    pub fn forward(&self, x: Tensor<3>, rope: &RotaryEmbedding, cache: &mut KvCache) -> Tensor<3> {
        let [q, k, v] = self.project(x);
        self.o_proj.forward(self.attend([q, k, v], rope, cache))
    }

    /// [`Attention::forward`] for sequences that each continue their own cache by one token
    /// (continuous batching: different prompts, different lengths): the projections run once
    /// for all of them, RoPE and attention per sequence at its own position.
    ///
    /// # Shapes
    ///
    /// - x: `[caches.len(), 1, hidden_size]`
    /// - output: same
    pub fn forward_ragged(
        &self,
        x: Tensor<3>,
        rope: &RotaryEmbedding,
        caches: &mut [&mut KvCache],
    ) -> Tensor<3> {
        let [q, k, v] = self.project(x);
        let outs: Vec<Tensor<3>> = caches
            .iter_mut()
            .enumerate()
            .map(|(s, cache)| {
                let one = |t: &Tensor<3>| t.clone().narrow(0, s, 1);
                self.attend([one(&q), one(&k), one(&v)], rope, cache)
            })
            .collect();
        self.o_proj.forward(Tensor::cat(outs, 0))
    }

    /// The q, k and v projections of `x` (`[batch_size, seq_len, hidden_size]`), in one pass.
    fn project(&self, x: Tensor<3>) -> [Tensor<3>; 3] {
        LoraLinear::forward_many(&[&self.q_proj, &self.k_proj, &self.v_proj], x)
            .try_into()
            .expect("three projections")
    }

    /// RoPE, the cache and attention for projected queries, keys and values
    /// (`[batch_size, seq_len, heads·head_dim]` each); the heads' outputs before `o_proj`,
    /// `[batch_size, seq_len, num_heads·head_dim]`.
    fn attend(
        &self,
        [q, k, v]: [Tensor<3>; 3],
        rope: &RotaryEmbedding,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let [batch_size, seq_len, _] = q.dims();
        let (num_heads, num_kv_heads, head_dim) =
            (self.num_heads, self.num_kv_heads, self.head_dim);
        let start = cache.len();
        let q = q
            .reshape([batch_size, seq_len, num_heads, head_dim])
            .swap_dims(1, 2); // [batch_size, num_heads, seq_len, head_dim]
        let k = k
            .reshape([batch_size, seq_len, num_kv_heads, head_dim])
            .swap_dims(1, 2); // [batch_size, num_kv_heads, seq_len, head_dim]
        let v = v
            .reshape([batch_size, seq_len, num_kv_heads, head_dim])
            .swap_dims(1, 2);
        // The 1/√head_dim scale goes on the queries, `own_len / head_dim` times fewer values than
        // on the scores (exact for head_dim 64, a power of two, as SmolLM2's and TinyLlama's),
        // right after their rotation: on a GPU, burn's fusion makes the two one kernel.
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q = rope.forward(q, start).mul_scalar(scale);
        let k = rope.forward(k, start);
        let shared = cache.shared();
        let own_start = start - cache.shared_len();
        let (k, v) = cache.append(k, v); // [batch_size, num_kv_heads, own_len, head_dim]

        // Grouped-query attention without copying K/V: query head h uses KV head h / n_rep, so the
        // n_rep query heads of one group are stacked along the sequence axis.
        let n_rep = num_heads / num_kv_heads;
        let rows = n_rep * seq_len;
        let q = q.reshape([batch_size, num_kv_heads, rows, head_dim]);
        // new position i sees the earlier positions and itself (one new position sees them all)
        let causal = (seq_len > 1).then_some(Causal {
            period: seq_len,
            offset: own_start,
        });
        let out = match shared {
            None => attention(q, k, v, causal), // [batch_size, num_kv_heads, n_rep·seq_len, head_dim]
            // A prefix shared by every sequence (KvCache::share_prefix): read once for all.
            Some(prefix) => attention_with_prefix(q, prefix, k, v, causal),
        };
        out.reshape([batch_size, num_heads, seq_len, head_dim])
            .swap_dims(1, 2) // [batch_size, seq_len, num_heads, head_dim]
            .reshape([batch_size, seq_len, num_heads * head_dim])
    }
}

/// SwiGLU feed-forward block: `down(silu(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[hidden_size, intermediate_size]`
    pub gate_proj: LoraLinear,
    /// `[hidden_size, intermediate_size]`
    pub up_proj: LoraLinear,
    /// `[intermediate_size, hidden_size]`
    pub down_proj: LoraLinear,
}

impl Mlp {
    /// # Shapes
    ///
    /// - x: `[batch_size, seq_len, hidden_size]`
    /// - output: same
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [gate, up]: [Tensor<3>; 2] =
            LoraLinear::forward_many(&[&self.gate_proj, &self.up_proj], x)
                .try_into()
                .expect("two projections"); // [batch_size, seq_len, intermediate_size] each
        self.down_proj.forward(swiglu(gate, up))
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Self-attention.
    pub self_attn: Attention,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// Feed-forward block.
    pub mlp: Mlp,
}

impl DecoderLayer {
    /// # Shapes
    ///
    /// - x: `[batch_size, seq_len, hidden_size]`
    /// - output: same
    pub fn forward(&self, x: Tensor<3>, rope: &RotaryEmbedding, cache: &mut KvCache) -> Tensor<3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }

    /// [`DecoderLayer::forward`] for sequences with caches of their own
    /// ([`Attention::forward_ragged`]).
    ///
    /// # Shapes
    ///
    /// - x: `[caches.len(), 1, hidden_size]`
    /// - output: same
    pub fn forward_ragged(
        &self,
        x: Tensor<3>,
        rope: &RotaryEmbedding,
        caches: &mut [&mut KvCache],
    ) -> Tensor<3> {
        let h = x.clone()
            + self
                .self_attn
                .forward_ragged(self.input_layernorm.forward(x), rope, caches);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// A Llama causal language model.
///
/// Parameter names follow Hugging Face (`embed_tokens`, `layers.N.self_attn.q_proj`, ...).
/// Projection weights are stored `[in, out]` (see [`LoraLinear`]).
#[derive(Module, Debug)]
pub struct Llama {
    /// Token embedding, `[vocab_size, hidden_size]`.
    pub embed_tokens: Param<Tensor<2>>,
    /// Decoder layers.
    pub layers: Vec<DecoderLayer>,
    /// Final norm.
    pub norm: RmsNorm,
    /// LM head `[hidden_size, vocab_size]`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<LoraLinear>,
    /// RoPE tables.
    pub rotary: RotaryEmbedding,
    /// The hyperparameters the model was built from.
    #[module(skip)]
    pub config: LlamaConfig,
    /// The token embedding quantized (`[vocab_size, hidden_size]`, always Q8_0), replacing
    /// `embed_tokens` (then empty) for inference: lookups dequantize its rows and a tied LM
    /// head multiplies with it. Set by [`Llama::quantize`] or a quantized load.
    #[module(skip)]
    pub embed_quantized: Option<crate::linear::QuantizedWeight>,
    /// Whether [`Llama::new_cache`] makes caches that store keys and values in f16
    /// ([`KvCache::in_f16`]), as llama.cpp's default cache does: half the bytes each decode
    /// step reads. Off by default (the logits tests compare f32 caches with their references);
    /// `umi`'s quantized inference (`--quant`) turns it on. CPU backend only: elsewhere the
    /// caches stay f32.
    #[module(skip)]
    pub kv_cache_f16: bool,
}

impl Llama {
    /// Runs the decoder over `tokens`, appending their keys and values to `cache`, and returns
    /// the logits of every position.
    ///
    /// The position of `tokens[.., 0]` is `cache[0].len()`; it offsets RoPE and the causal mask.
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch_size, seq_len]`
    /// - output (logits): `[batch_size, seq_len, vocab_size]`
    ///
    /// # Panics
    ///
    /// If `cache.len() != num_hidden_layers`, or if the cache would exceed
    /// `max_position_embeddings` (callers check with [`Llama::max_positions`] first).
    pub fn forward(&self, tokens: Tensor<2, Int>, cache: &mut [KvCache]) -> Tensor<3> {
        self.logits(self.forward_hidden(tokens, cache))
    }

    /// The decoder without the LM head: final-norm hidden states.
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch_size, seq_len]`
    /// - output: `[batch_size, seq_len, hidden_size]`
    ///
    /// # Panics
    ///
    /// As [`Llama::forward`].
    pub fn forward_hidden(&self, tokens: Tensor<2, Int>, cache: &mut [KvCache]) -> Tensor<3> {
        assert_eq!(
            cache.len(),
            self.layers.len(),
            "one KvCache per layer is needed ({} layers, {} caches)",
            self.layers.len(),
            cache.len()
        );
        let [batch_size, seq_len] = tokens.dims();
        let start = cache[0].len();
        assert!(
            start + seq_len <= self.max_positions(),
            "{start} cached + {seq_len} new positions exceed max_position_embeddings = {}",
            self.max_positions()
        );
        let hidden_size = self.config.hidden_size;
        let x = self.embed(tokens.reshape([batch_size * seq_len]));
        let mut x = x.reshape([batch_size, seq_len, hidden_size]); // [batch_size, seq_len, hidden_size]
        for (layer, layer_cache) in self.layers.iter().zip(cache.iter_mut()) {
            x = layer.forward(x, &self.rotary, layer_cache);
        }
        self.norm.forward(x)
    }

    /// The embeddings of `ids` (`[n]` → `[n, hidden_size]`), dequantized rows when the
    /// embedding is held quantized.
    fn embed(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        match &self.embed_quantized {
            #[cfg(not(target_family = "wasm"))]
            Some(q) => {
                let [n] = ids.dims();
                let device = ids.device();
                let ids: Vec<usize> = ids
                    .into_data()
                    .convert::<i64>()
                    .iter::<i64>()
                    .map(|id| usize::try_from(id).unwrap_or(usize::MAX))
                    .collect();
                let data = burn::tensor::TensorData::new(
                    q.0.gather_rows(&ids),
                    [n, self.config.hidden_size],
                );
                Tensor::<2>::from_data(data, &device)
            }
            _ => {
                let rows = self.embed_tokens.val().select(0, ids);
                if rows.dtype() == burn::tensor::DType::F16 {
                    rows.cast(burn::tensor::FloatDType::F32)
                } else {
                    rows
                }
            }
        }
    }

    /// The next-token logits of sequences that each continue a cache of their own by one
    /// token: `tokens[s]` extends `caches[s]` (one [`KvCache`] per layer), whose lengths may
    /// all differ. The projections and the LM head run once for every sequence (the weights
    /// are read once per step, as in a batch sharing one prompt); RoPE, the cache and
    /// attention run per sequence at its own position. Each sequence's logits are those
    /// [`Llama::forward`] gives it alone, up to the rounding of batched products (equal on
    /// quantized weights, whose integer products do not depend on the batch).
    ///
    /// # Shapes
    ///
    /// - output: `[tokens.len(), vocab_size]`
    ///
    /// # Panics
    ///
    /// If `tokens` and `caches` differ in length or are empty, a sequence has not one cache
    /// per layer, or a cache would exceed `max_position_embeddings`.
    pub fn forward_ragged(&self, tokens: &[u32], caches: &mut [Vec<KvCache>]) -> Tensor<2> {
        self.logits(self.forward_ragged_hidden(tokens, caches).unsqueeze_dim(1)) // [n, 1, vocab_size]
            .reshape([tokens.len(), self.config.vocab_size])
    }

    /// [`Llama::forward_ragged`] without the LM head: each sequence's final-norm hidden state.
    ///
    /// # Shapes
    ///
    /// - output: `[tokens.len(), hidden_size]`
    ///
    /// # Panics
    ///
    /// As [`Llama::forward_ragged`].
    pub fn forward_ragged_hidden(&self, tokens: &[u32], caches: &mut [Vec<KvCache>]) -> Tensor<2> {
        assert!(
            !tokens.is_empty() && tokens.len() == caches.len(),
            "forward_ragged: {} tokens for {} caches",
            tokens.len(),
            caches.len()
        );
        for cache in caches.iter() {
            assert_eq!(
                cache.len(),
                self.layers.len(),
                "one KvCache per layer is needed"
            );
            assert!(
                cache[0].len() < self.max_positions(),
                "{} cached positions leave no room under max_position_embeddings = {}",
                cache[0].len(),
                self.max_positions()
            );
        }
        let n = tokens.len();
        let device = self.norm.weight.val().device();
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(ids, [n]), &device);
        let mut x = self.embed(ids).reshape([n, 1, self.config.hidden_size]);
        for (l, layer) in self.layers.iter().enumerate() {
            let mut layer_caches: Vec<&mut KvCache> =
                caches.iter_mut().map(|c| &mut c[l]).collect();
            x = layer.forward_ragged(x, &self.rotary, &mut layer_caches);
        }
        self.norm.forward(x).reshape([n, self.config.hidden_size])
    }

    /// The LM head as a quantized matrix whose product [`Llama::logits`] takes as it is
    /// (the tied embedding held quantized, or a quantized `lm_head` without an adapter), for
    /// callers that want the logits on the host without a tensor in between
    /// ([`QMatrix::matmul_by_token`](crate::qmatmul::QMatrix::matmul_by_token)); `None`
    /// otherwise.
    #[cfg(not(target_family = "wasm"))]
    pub fn quantized_head(&self) -> Option<&crate::qmatmul::QMatrix> {
        match &self.lm_head {
            None => self.embed_quantized.as_ref().map(|q| &*q.0),
            Some(head) if head.lora.is_none() => head.quantized.as_ref().map(|q| &*q.0),
            Some(_) => None,
        }
    }

    /// Projects hidden states to vocabulary logits with the LM head (or the tied embedding).
    ///
    /// # Shapes
    ///
    /// - hidden: `[batch_size, seq_len, hidden_size]`
    /// - output: `[batch_size, seq_len, vocab_size]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [batch_size, seq_len, hidden_size] = hidden.dims();
                let hidden = hidden.reshape([batch_size * seq_len, hidden_size]);
                let logits = match &self.embed_quantized {
                    #[cfg(not(target_family = "wasm"))]
                    Some(q) => crate::linear::quantized_product(&q.0, hidden),
                    _ => crate::ops::matmul_weight(
                        hidden,
                        self.embed_tokens.val(),
                        crate::ops::WeightLayout::OutIn,
                    ), // [tokens, vocab_size]
                };
                logits.reshape([batch_size, seq_len, self.config.vocab_size])
            }
        }
    }

    /// The LM head's weight as one plain product with the final hidden states,
    /// `[vocab_size, hidden_size]` (the layout of Hugging Face files): the tied token embedding,
    /// or `lm_head` without an adapter; `None` when the head is quantized or adapted (then
    /// [`Llama::logits`] is the way to the logits). What [`crate::ops::linear_cross_entropy`]
    /// takes, autodiff tracking included (a trained embedding gets its gradient).
    pub fn head_weight(&self) -> Option<Tensor<2>> {
        match &self.lm_head {
            None => self
                .embed_quantized
                .is_none()
                .then(|| self.embed_tokens.val()),
            Some(head) if head.lora.is_none() && head.quantized.is_none() => {
                Some(head.weight.val().transpose())
            }
            Some(_) => None,
        }
    }

    /// One empty [`KvCache`] per layer.
    /// In f16 when [`Llama::kv_cache_f16`] is set and the model is on the CPU backend.
    pub fn new_cache(&self) -> Vec<KvCache> {
        let caches = KvCache::for_layers(self.layers.len());
        #[cfg(feature = "flex")]
        if self.kv_cache_f16 && crate::ops::host::is_flex(&self.norm.weight.val().device()) {
            return caches.into_iter().map(KvCache::in_f16).collect();
        }
        caches
    }

    /// Holds the token embedding, every projection's base weight and the LM head in f16
    /// (half the memory and the bytes read per token), as loading with
    /// [`WeightDtype::F16`](crate::WeightDtype) does: their products return f32
    /// ([`crate::ops::matmul_weight`]: on a GPU with `shader-f16`, the WebGPU feature of
    /// [`crate::GpuInfo::shader_f16`], the activations meet them in f16; on the CPU they are
    /// converted to f32 as they are read); norms, rotary tables, attention, the residual
    /// stream and LoRA adapters stay f32. Weights held quantized are left as they are.
    pub fn half(&mut self) {
        let half = |p: &mut burn::module::Param<Tensor<2>>| {
            if p.val().dtype() != burn::tensor::DType::F16 {
                *p = burn::module::Param::from_tensor(p.val().cast(burn::tensor::FloatDType::F16));
            }
        };
        if self.embed_quantized.is_none() {
            half(&mut self.embed_tokens);
        }
        for (_, p) in self.projections_mut() {
            if p.quantized.is_none() {
                half(&mut p.weight);
                // on the CPU, `[out, in]` in memory as loaded (`linear::held_out_in`)
                p.weight =
                    burn::module::Param::from_tensor(crate::linear::held_out_in(p.weight.val()));
            }
        }
    }

    /// Whether the base weights are held in f16 ([`Llama::half`]).
    pub fn is_half(&self) -> bool {
        self.embed_tokens.val().dtype() == burn::tensor::DType::F16
    }

    /// Whether the weights live on a GPU backend (wgpu: Vulkan, Metal, DX12, WebGPU) rather
    /// than on the CPU backend.
    pub fn is_on_gpu(&self) -> bool {
        #[cfg(feature = "flex")]
        {
            !crate::ops::host::is_flex(&self.norm.weight.val().device())
        }
        // (without the CPU backend, wgpu is the only one)
        #[cfg(not(feature = "flex"))]
        {
            true
        }
    }

    /// Bytes the projections' dense weights take (`q/k/v/o/gate/up/down` of every layer and
    /// an untied LM head, at their dtype: 4 per value in f32, 2 in f16); what a merged copy
    /// of them adds (`umi_agent::LlamaGenerator::set_merge_adapters`). Quantized projections
    /// hold an empty dense weight and count 0 ([`Llama::quantized_bytes`] counts their blocks).
    pub fn projection_bytes(&self) -> usize {
        self.projections()
            .iter()
            .map(|(_, p)| {
                let w = p.weight.val();
                w.shape().num_elements() * w.dtype().size()
            })
            .sum()
    }

    /// Whether any weight is held quantized ([`Llama::quantize`]) instead of f32.
    pub fn is_quantized(&self) -> bool {
        self.embed_quantized.is_some()
            || self
                .projections()
                .iter()
                .any(|(_, p)| p.quantized.is_some())
    }

    /// The context window (`max_position_embeddings`).
    pub fn max_positions(&self) -> usize {
        self.rotary.max_positions()
    }
}

/// Quantized weights for CPU inference (`qmatmul.rs`).
#[cfg(not(target_family = "wasm"))]
impl Llama {
    /// Puts every projection's weight in `format` and the token embedding (which a tied LM
    /// head shares) in Q8_0, and drops their f32 values, so the model holds about 1.1 bytes
    /// per weight (Q8_0) or 0.75 per projection weight (Q4_1) instead of 4: decoding
    /// multiplies in integers, prompts in f32 against slices dequantized on the fly,
    /// embedding lookups dequantize their rows ([`QMatrix`](crate::qmatmul::QMatrix)). The
    /// embedding stays 8-bit as in llama.cpp's Q4_1 files (its `token_embd` is Q8_0): as the
    /// LM head it decides every token. Loading with [`crate::load_model_quantized`] gives the
    /// same model without ever holding the f32 weights. Returns the bytes the quantized
    /// weights take ([`Llama::quantized_bytes`]). Weights whose input width is not a multiple
    /// of 32 stay f32; weights already quantized are kept.
    ///
    /// For inference on the CPU backend (on a GPU every projection would read its input back
    /// to the host). LoRA adapters stay f32 and can be attached, swapped and trained on top;
    /// [`crate::merge_lora`] merges into the dequantized weight (the result is f32 again);
    /// saving the base model ([`crate::save_hf`]) is refused.
    pub fn quantize(&mut self, format: crate::qmatmul::QFormat) -> usize {
        for (_, p) in self.projections_mut() {
            if p.quantized.is_some() {
                continue;
            }
            let [d_in, d_out] = p.weight.shape().dims::<2>();
            let device = p.weight.val().device();
            let data = host_f32(p.weight.val());
            if let Some(q) = crate::qmatmul::QMatrix::from_columns(format, &data, d_in, d_out) {
                p.quantized = Some(crate::linear::QuantizedWeight::new(q));
                p.weight = burn::module::Param::from_tensor(crate::linear::empty_weight(&device));
            }
        }
        if self.embed_quantized.is_none() {
            let [vocab, hidden] = self.embed_tokens.shape().dims::<2>();
            let device = self.embed_tokens.val().device();
            let data = host_f32(self.embed_tokens.val());
            let embedding = crate::qmatmul::QFormat::Q8_0;
            if let Some(q) = crate::qmatmul::QMatrix::from_rows(embedding, &data, vocab, hidden) {
                self.embed_quantized = Some(crate::linear::QuantizedWeight::new(q));
                self.embed_tokens =
                    burn::module::Param::from_tensor(crate::linear::empty_weight(&device));
            }
        }
        self.quantized_bytes()
    }

    /// The format of the quantized projections (`None` for an f32 model); with
    /// [`Llama::quantize`] they all share one.
    pub fn quantized_format(&self) -> Option<crate::qmatmul::QFormat> {
        self.projections()
            .iter()
            .find_map(|(_, p)| p.quantized.as_ref().map(|q| q.0.format()))
    }

    /// Bytes the quantized weights take (values plus f32 block constants); 0 for an f32
    /// model.
    pub fn quantized_bytes(&self) -> usize {
        self.projections()
            .iter()
            .filter_map(|(_, p)| p.quantized.as_ref())
            .chain(&self.embed_quantized)
            .map(|q| q.0.bytes())
            .sum()
    }
}

#[cfg(not(target_family = "wasm"))]
fn host_f32(t: burn::tensor::Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 after convert")
}

//! `KvCache`: keys and values of past positions for incremental decoding.

use burn::tensor::Tensor;

/// Keys and values of one attention layer for the positions seen so far.
///
/// Stored per KV head (grouped-query attention keeps `num_kv_heads`, not `num_heads`, so the
/// cache is `num_heads / num_kv_heads` times smaller). `len()` is the position of the next token.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// `[batch_size, num_kv_heads, len, head_dim]`
    k: Option<Tensor<4>>,
    /// `[batch_size, num_kv_heads, len, head_dim]`
    v: Option<Tensor<4>>,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// One empty cache per layer.
    pub fn for_layers(num_layers: usize) -> Vec<Self> {
        (0..num_layers).map(|_| Self::new()).collect()
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every cached position.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Appends new keys and values and returns all of them.
    ///
    /// # Shapes
    ///
    /// - k, v: `[batch_size, num_kv_heads, seq_len, head_dim]`
    /// - output: `[batch_size, num_kv_heads, len + seq_len, head_dim]` each
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let seq_len = k.dims()[2];
        let k_all = match self.k.take() {
            Some(past) => Tensor::cat(vec![past, k], 2),
            None => k,
        };
        let v_all = match self.v.take() {
            Some(past) => Tensor::cat(vec![past, v], 2),
            None => v,
        };
        self.k = Some(k_all.clone());
        self.v = Some(v_all.clone());
        self.len += seq_len;
        (k_all, v_all)
    }

    /// Repeats the cached positions for `times` sequences: a prompt prefix computed once as a
    /// batch of one, then continued by `times` sequences that all attend to it. Under autodiff
    /// the gradients of the copies flow back summed into the one prefix computation.
    ///
    /// # Shapes
    ///
    /// - before: `[1, num_kv_heads, len, head_dim]` (an empty cache stays empty)
    /// - after: `[times, num_kv_heads, len, head_dim]`
    ///
    /// # Panics
    ///
    /// If the cache holds more than one sequence.
    pub fn repeat_batch(&mut self, times: usize) {
        for t in [&mut self.k, &mut self.v] {
            if let Some(x) = t.take() {
                assert_eq!(
                    x.dims()[0],
                    1,
                    "only a cache of one sequence can be repeated"
                );
                *t = Some(x.repeat_dim(0, times));
            }
        }
    }

    /// Keeps only the first `len` positions (nothing changes when `len >= self.len()`).
    ///
    /// # Shapes
    ///
    /// - after: `[batch_size, num_kv_heads, min(len, self.len()), head_dim]`
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        if len == 0 {
            self.reset();
            return;
        }
        for t in [&mut self.k, &mut self.v] {
            if let Some(x) = t.take() {
                *t = Some(x.narrow(2, 0, len));
            }
        }
        self.len = len;
    }
}

/// The keys and values of the last prompt a model read, so that the next prompt that begins
/// the same way prefills only its new tokens (vLLM's and llama.cpp's prompt caching, for one
/// sequence).
///
/// α-UMi prompts of one role share most of their text: every prompt starts with the same tool
/// documentation, and a role's prompt one step later repeats the conversation so far with a
/// few turns added. Reuse is by token ids (the longest common prefix), so it is exact: the keys
/// and values of a position depend only on the tokens up to it. The cache belongs to one set of
/// weights: clear it (or use another) when the model or its adapters change.
#[derive(Debug, Clone, Default)]
pub struct PrefixCache {
    tokens: Vec<u32>,
    layers: Vec<KvCache>,
}

impl PrefixCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leading tokens of `prompt` have cached keys and values: the longest common
    /// prefix with the cached prompt, less one so that at least the last prompt token is run
    /// (its logits start generation).
    pub fn reusable(&self, prompt: &[u32]) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        common.min(prompt.len().saturating_sub(1))
    }

    /// The per-layer caches holding the first `len` tokens of the cached prompt (`len` from
    /// [`PrefixCache::reusable`]); empty caches when `len` is 0 or nothing is cached.
    pub fn take_prefix(&self, len: usize, num_layers: usize) -> Vec<KvCache> {
        if len == 0 || self.layers.len() != num_layers {
            return KvCache::for_layers(num_layers);
        }
        self.layers
            .iter()
            .map(|layer| {
                let mut layer = layer.clone();
                layer.truncate(len);
                layer
            })
            .collect()
    }

    /// Remembers `prompt` and the caches holding exactly its keys and values.
    pub fn store(&mut self, prompt: &[u32], layers: &[KvCache]) {
        self.tokens = prompt.to_vec();
        self.layers = layers.to_vec();
    }

    /// Forgets the cached prompt (e.g. after the weights changed).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

//! `KvCache`: keys and values of past positions for incremental decoding.

use burn::tensor::Tensor;

/// Keys and values of one attention layer for the positions seen so far.
///
/// Stored per KV head (grouped-query attention keeps `num_kv_heads`, not `num_heads`, so the
/// cache is `num_heads / num_kv_heads` times smaller). `len()` is the position of the next token.
///
/// Outside autodiff (generation) the keys and values live in buffers with room for more
/// positions than are filled, grown by doubling: a new token is written in place and attention
/// reads a view of the filled part, so decoding copies nothing per token (llama.cpp's and
/// vLLM's preallocated cache). Under autodiff (training) appending concatenates, so that every
/// gradient flows through the ordinary `cat` backward.
///
/// Several sequences that continue one prompt can share its keys and values instead of each
/// holding a copy ([`KvCache::share_prefix`]): attention then reads the prompt once for all of
/// them, which is what makes batched sampling cheap on a long prompt.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// `[batch_size, num_kv_heads, capacity ≥ len, head_dim]`; positions from `len` on unused.
    k: Option<Tensor<4>>,
    /// `[batch_size, num_kv_heads, capacity ≥ len, head_dim]`
    v: Option<Tensor<4>>,
    /// Positions filled in `k` and `v` (after the shared ones).
    len: usize,
    /// Keys and values of the first positions, one copy for every sequence of the batch:
    /// `[1, num_kv_heads, shared_len, head_dim]` each.
    shared: Option<(Tensor<4>, Tensor<4>)>,
    /// Whether new keys and values are stored in f16 ([`KvCache::in_f16`]).
    f16: bool,
}

/// Positions a growing cache buffer starts with (it doubles from there).
const MIN_CAPACITY: usize = 64;

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// One empty cache per layer.
    pub fn for_layers(num_layers: usize) -> Vec<Self> {
        (0..num_layers).map(|_| Self::new()).collect()
    }

    /// The same cache storing the keys and values it receives from now on in f16 instead of
    /// f32, as llama.cpp's default cache does: half the bytes that every decode step reads
    /// (a 2,048-token SmolLM2 cache is 94 MB in f32, more than half of the 151 MB of its Q8_0
    /// weights), at a rounding of 2⁻¹¹ relative to each value. Inference only: under autodiff
    /// the values stay as they come. [`crate::Llama::new_cache`] asks for it when
    /// [`crate::Llama::kv_cache_f16`] is set.
    pub fn in_f16(mut self) -> Self {
        self.f16 = true;
        self
    }

    /// Number of cached positions (shared ones included).
    pub fn len(&self) -> usize {
        self.shared_len() + self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positions the buffers of the sequences' own positions hold before they must grow
    /// (equal to their number under autodiff).
    pub fn capacity(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Bytes its buffers hold (keys, values and the shared prefix), whole capacity counted.
    pub fn bytes(&self) -> usize {
        let size = |t: &Tensor<4>| t.shape().num_elements() * t.dtype().size();
        let own = [&self.k, &self.v]
            .into_iter()
            .flatten()
            .map(size)
            .sum::<usize>();
        own + self.shared.as_ref().map_or(0, |(k, v)| size(k) + size(v))
    }

    /// Number of positions every sequence shares ([`KvCache::share_prefix`]).
    pub fn shared_len(&self) -> usize {
        self.shared.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    /// The shared keys and values, if any.
    ///
    /// # Shapes
    ///
    /// - `[1, num_kv_heads, shared_len, head_dim]` each
    pub fn shared(&self) -> Option<(Tensor<4>, Tensor<4>)> {
        self.shared.clone()
    }

    /// Makes the cached positions (a prompt, as one sequence) a prefix shared by however many
    /// sequences continue it: their new positions are appended per sequence, and attention
    /// reads the prefix once for all of them instead of from a copy per sequence
    /// ([`KvCache::repeat_batch`], which training uses). Inference only (no autodiff).
    ///
    /// # Shapes
    ///
    /// - before: `[1, num_kv_heads, len, head_dim]`
    /// - after: shared `[1, num_kv_heads, len, head_dim]`; own positions empty
    ///
    /// # Panics
    ///
    /// If the cache holds more than one sequence or already has a shared prefix.
    pub fn share_prefix(&mut self) {
        assert!(self.shared.is_none(), "the prefix is already shared");
        let len = self.len;
        if let (Some(k), Some(v)) = (self.k.take(), self.v.take()) {
            assert_eq!(k.dims()[0], 1, "only a cache of one sequence can be shared");
            if len > 0 {
                self.shared = Some((k.narrow(2, 0, len), v.narrow(2, 0, len)));
            }
        }
        self.len = 0;
    }

    /// Forgets every cached position (the choice of [`KvCache::in_f16`] stays).
    pub fn reset(&mut self) {
        *self = Self {
            f16: self.f16,
            ..Self::default()
        };
    }

    /// Appends new keys and values and returns all of them.
    ///
    /// # Shapes
    ///
    /// - k, v: `[batch_size, num_kv_heads, seq_len, head_dim]`
    /// - output: `[batch_size, num_kv_heads, len + seq_len, head_dim]` each
    ///
    /// With a shared prefix ([`KvCache::share_prefix`]), only the sequences' own positions
    /// are returned (`[batch_size, num_kv_heads, len - shared_len + seq_len, head_dim]`);
    /// [`KvCache::shared`] gives the rest.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (start, end) = (self.len, self.len + k.dims()[2]);
        self.len = end;
        if k.is_autodiff() || v.is_autodiff() {
            let k_all = concat(self.k.take(), start, k);
            let v_all = concat(self.v.take(), start, v);
            self.k = Some(k_all.clone());
            self.v = Some(v_all.clone());
            return (k_all, v_all);
        }
        let (k, v) = if self.f16 {
            (
                k.cast(burn::tensor::FloatDType::F16),
                v.cast(burn::tensor::FloatDType::F16),
            )
        } else {
            (k, v)
        };
        let k_all = write(&mut self.k, start, k);
        let v_all = write(&mut self.v, start, v);
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
        assert!(
            self.shared.is_none(),
            "a cache with a shared prefix cannot be repeated"
        );
        let len = self.len;
        for t in [&mut self.k, &mut self.v] {
            if let Some(x) = t.take() {
                assert_eq!(
                    x.dims()[0],
                    1,
                    "only a cache of one sequence can be repeated"
                );
                *t = Some(x.narrow(2, 0, len).repeat_dim(0, times));
            }
        }
    }

    /// Keeps the sequences at `rows` (in that order) and drops the others: batched decoding
    /// removes a sequence that has stopped so that the next steps compute only the running ones.
    /// A shared prefix stays as it is.
    ///
    /// # Shapes
    ///
    /// - before: `[batch_size, num_kv_heads, len, head_dim]` (own positions)
    /// - after: `[rows.len(), num_kv_heads, len, head_dim]`
    ///
    /// # Panics
    ///
    /// If `rows` is empty or names a sequence the cache does not hold.
    pub fn select_rows(&mut self, rows: &[usize]) {
        assert!(!rows.is_empty(), "a cache keeps at least one sequence");
        let len = self.len;
        for t in [&mut self.k, &mut self.v] {
            if let Some(x) = t.take() {
                let batch_size = x.dims()[0];
                assert!(
                    rows.iter().all(|&r| r < batch_size),
                    "rows {rows:?} outside a batch of {batch_size}"
                );
                let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
                let ids = Tensor::<1, burn::tensor::Int>::from_data(
                    burn::tensor::TensorData::new(ids, [rows.len()]),
                    &x.device(),
                );
                *t = Some(x.narrow(2, 0, len).select(0, ids));
            }
        }
    }

    /// Keeps only the first `len` positions (nothing changes when `len >= self.len()`).
    ///
    /// # Shapes
    ///
    /// - after: `[batch_size, num_kv_heads, min(len, self.len()), head_dim]`
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        if len == 0 {
            self.reset();
            return;
        }
        let shared_len = self.shared_len();
        if len <= shared_len {
            // keep part of the shared prefix; the sequences' own positions go
            if let Some((k, v)) = self.shared.take() {
                self.shared = Some((k.narrow(2, 0, len), v.narrow(2, 0, len)));
            }
            self.len = 0;
            return;
        }
        let len = len - shared_len;
        // The buffers keep their size: positions from `len` on are overwritten by the next
        // append (a shared buffer is copied first, so other holders keep what they saw).
        self.len = len;
    }
}

/// `past[.., .., ..len] ++ new` along the sequence axis (the autodiff path).
fn concat(past: Option<Tensor<4>>, len: usize, new: Tensor<4>) -> Tensor<4> {
    match past {
        Some(past) if len > 0 => {
            let past = if past.dims()[2] > len {
                past.narrow(2, 0, len)
            } else {
                past
            };
            Tensor::cat(vec![past, new], 2)
        }
        _ => new,
    }
}

/// Writes `new` at positions `start..` of `buffer` (growing it by doubling when it is full) and
/// returns a view of positions `..start + seq_len`. The write happens in place when the buffer
/// has no other holder; the returned view is such a holder only until the caller drops it.
fn write(buffer: &mut Option<Tensor<4>>, start: usize, new: Tensor<4>) -> Tensor<4> {
    let [batch_size, heads, seq_len, head_dim] = new.dims();
    let end = start + seq_len;
    let capacity = buffer.as_ref().map_or(0, |b| b.dims()[2]);
    let fits = buffer
        .as_ref()
        .is_some_and(|b| b.dims()[0] == batch_size && capacity >= end);
    let full = if fits {
        buffer.take().expect("checked above")
    } else {
        let grown = end.max(2 * capacity).max(MIN_CAPACITY);
        let empty = Tensor::zeros(
            [batch_size, heads, grown, head_dim],
            (&new.device(), new.dtype()),
        );
        match buffer.take() {
            Some(past) if start > 0 => empty.slice_assign(
                [0..batch_size, 0..heads, 0..start, 0..head_dim],
                past.narrow(2, 0, start),
            ),
            _ => empty,
        }
    };
    let full = full.slice_assign([0..batch_size, 0..heads, start..end, 0..head_dim], new);
    *buffer = Some(full.clone());
    full.narrow(2, 0, end)
}

/// The keys and values of the last prompts a model read, so that a prompt that begins like one
/// of them prefills only its new tokens (vLLM's and llama.cpp's prompt caching, for several
/// sequences).
///
/// α-UMi prompts of one role share most of their text: every prompt starts with the same tool
/// documentation, and a role's prompt one step later repeats the conversation so far with a
/// few turns added. Reuse is by token ids (the longest common prefix), so it is exact: the keys
/// and values of a position depend only on the tokens up to it.
///
/// The cache holds several prompts (several trajectories decided at once, `umi eval --batch`,
/// each find their own last prompt) and is bounded: at most `max_entries` prompts and
/// `max_bytes` of keys and values; beyond either bound the least recently used prompt goes
/// (the newest stays even when it alone is over the byte bound). A prompt that is a prefix of a
/// newly stored one is dropped, since the new one serves every lookup the old one did.
/// The cache belongs to one set of weights: clear it (or use another) when the model or its
/// adapters change.
#[derive(Debug, Clone)]
pub struct PrefixCache {
    /// Least recently used first.
    entries: Vec<PrefixEntry>,
    max_entries: usize,
    max_bytes: usize,
}

/// One cached prompt of a [`PrefixCache`].
#[derive(Debug, Clone)]
struct PrefixEntry {
    tokens: Vec<u32>,
    layers: Vec<KvCache>,
    bytes: usize,
}

impl Default for PrefixCache {
    fn default() -> Self {
        Self::with_limits(Self::DEFAULT_MAX_ENTRIES, Self::DEFAULT_MAX_BYTES)
    }
}

impl PrefixCache {
    /// Prompts a [`PrefixCache::new`] cache holds at most: enough for the 4 decisions that
    /// `umi eval` runs at once by default, with room to spare.
    pub const DEFAULT_MAX_ENTRIES: usize = 8;
    /// Bytes of keys and values a [`PrefixCache::new`] cache holds at most (512 MiB: eight
    /// 4k-token SmolLM2 prompts in f16, or two in f32).
    pub const DEFAULT_MAX_BYTES: usize = 512 << 20;

    /// An empty cache with the default bounds ([`PrefixCache::DEFAULT_MAX_ENTRIES`],
    /// [`PrefixCache::DEFAULT_MAX_BYTES`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache holding at most `max_entries` prompts (at least 1) and `max_bytes` bytes
    /// of keys and values (the newest prompt is kept even when it alone is larger).
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: Vec::new(),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The entry sharing the longest prefix with `prompt` (the most recently used one among
    /// equals) and how many of its tokens `prompt` can reuse: that prefix less one, so that at
    /// least the last prompt token is run (its logits start generation); `None` when no entry
    /// gives a token to reuse.
    fn best(&self, prompt: &[u32]) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let common = e
                    .tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (i, common)
            })
            .max_by_key(|&(i, common)| (common, i))
            .map(|(i, common)| (i, common.min(prompt.len().saturating_sub(1))))
            .filter(|&(_, reusable)| reusable > 0)
    }

    /// How many leading tokens of `prompt` have cached keys and values: the longest common
    /// prefix with any cached prompt, less one so that at least the last prompt token is run
    /// (its logits start generation).
    pub fn reusable(&self, prompt: &[u32]) -> usize {
        self.best(prompt).map_or(0, |(_, len)| len)
    }

    /// The per-layer caches holding the first [`PrefixCache::reusable`] tokens of `prompt`, and
    /// that number; `model`'s empty caches ([`crate::Llama::new_cache`]) and 0 when no cached
    /// prompt begins like it. The prompt used becomes the most recently used.
    pub fn take_prefix(&mut self, prompt: &[u32], model: &crate::Llama) -> (usize, Vec<KvCache>) {
        let Some((i, len)) = self.best(prompt) else {
            return (0, model.new_cache());
        };
        if self.entries[i].layers.len() != model.layers.len() {
            return (0, model.new_cache());
        }
        let entry = self.entries.remove(i);
        let layers = entry
            .layers
            .iter()
            .map(|layer| {
                let mut layer = layer.clone();
                layer.truncate(len);
                layer
            })
            .collect();
        self.entries.push(entry);
        (len, layers)
    }

    /// Remembers `prompt` and the caches holding exactly its keys and values, as the most
    /// recently used prompt; then drops the least recently used ones beyond the bounds.
    pub fn store(&mut self, prompt: &[u32], layers: &[KvCache]) {
        if prompt.is_empty() {
            return;
        }
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.tokens.starts_with(prompt))
        {
            // an entry already holds this prompt (or a longer one beginning with it)
            let entry = self.entries.remove(i);
            self.entries.push(entry);
            return;
        }
        self.entries.retain(|e| !prompt.starts_with(&e.tokens));
        self.entries.push(PrefixEntry {
            tokens: prompt.to_vec(),
            layers: layers.to_vec(),
            bytes: layers.iter().map(KvCache::bytes).sum(),
        });
        while self.entries.len() > 1
            && (self.entries.len() > self.max_entries || self.bytes() > self.max_bytes)
        {
            self.entries.remove(0);
        }
    }

    /// Forgets every cached prompt (e.g. after the weights changed); the bounds stay.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Number of cached prompts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Tokens of the most recently stored or used prompt (0 when empty).
    pub fn newest_tokens(&self) -> usize {
        self.entries.last().map_or(0, |e| e.tokens.len())
    }

    /// Bytes of keys and values held, counting each buffer's whole capacity.
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.bytes).sum()
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{DType, Device, Distribution, Tensor};

    use super::KvCache;

    #[test]
    fn an_f16_cache_stores_f16_and_returns_the_rounded_values() {
        let device = Device::flex();
        let mut cache = KvCache::new().in_f16();
        let step = |seed: f64| {
            Tensor::<4>::random([1, 2, 3, 8], Distribution::Uniform(-seed, seed), &device)
        };
        let (k1, v1) = (step(1.0), step(2.0));
        cache.append(k1.clone(), v1.clone());
        let (k, v) = cache.append(step(3.0), step(4.0));
        assert_eq!(k.dtype(), DType::F16);
        assert_eq!(v.dtype(), DType::F16);
        assert_eq!(k.dims(), [1, 2, 6, 8]);
        // the first positions come back as their f16 roundings, 2⁻¹¹ relative at most
        let first: Vec<f32> = k
            .narrow(2, 0, 3)
            .cast(burn::tensor::FloatDType::F32)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let want: Vec<f32> = k1.into_data().try_to_vec::<f32>().unwrap();
        for (got, want) in first.iter().zip(&want) {
            assert!((got - want).abs() <= want.abs() / 2048.0, "{got} vs {want}");
        }
        // reset keeps the choice
        cache.reset();
        let (k, _) = cache.append(step(1.0), step(1.0));
        assert_eq!(k.dtype(), DType::F16);
        // a plain cache keeps f32
        let mut plain = KvCache::new();
        assert_eq!(plain.append(step(1.0), step(1.0)).0.dtype(), DType::F32);
    }
}

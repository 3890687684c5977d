//! Attention of a few new positions over the cached ones, `softmax(q · kᵀ) · v`, the decode step
//! of [`crate::llama::Attention`].
//!
//! Composed from burn operations, one decode step of one layer is a batched matmul for the
//! scores, the softmax, and a second batched matmul, each allocating its output, and the
//! `[rows, head_dim] × [head_dim, positions]` products are too small for the matmul to split
//! over threads: on SmolLM2 Q8_0 decoding with 2 threads they were 15 % of the main thread's
//! time while the other thread waited (perf, 2026-12-02). On the CPU backend (flex),
//! [`attention`] with few new positions is one kernel: each query row computes its scores
//! against the keys it may see, their softmax and the weighted sum of the values, reading the
//! cache's keys and values in place (strided views of its buffers, no copy), with the rows of
//! all heads split over rayon's threads. [`attention_with_prefix`] is the same kernel for
//! sequences that continue one shared prompt (candidate sampling, `KvCache::share_prefix`):
//! each row reads the prefix's keys and values, then its own sequence's, under one softmax.
//! Prompts (many new positions), autodiff tensors (training) and other backends (wgpu /
//! WebGPU) take the composed path.

use burn::tensor::Tensor;

use super::{Causal, softmax_causal};

/// New positions up to which the CPU kernel is used; longer prompts multiply as matrices.
#[cfg(feature = "flex")]
const MAX_KERNEL_POSITIONS: usize = 8;

/// `softmax(q · kᵀ) · v` over the last two axes, under an optional [`Causal`] mask (as
/// [`softmax_causal`]); `q` is expected already scaled by `1/√head_dim`.
///
/// # Shapes
///
/// - q: `[batch_size, heads, rows, head_dim]` (rows: the stacked query heads of a KV group
///   times the new positions)
/// - k, v: `[batch_size, heads, columns, head_dim]` (any strides)
/// - output: `[batch_size, heads, rows, head_dim]`
///
/// # Panics
///
/// If the mask does not fit the shapes (see [`softmax_causal`]) or `k` and `v` differ in
/// shape: a caller's bug, the attention code builds them from the same dimensions.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: Option<Causal>) -> Tensor<4> {
    assert_eq!(
        k.dims(),
        v.dims(),
        "attention: keys and values differ in shape"
    );
    #[cfg(feature = "flex")]
    if let Some((period, offset)) = kernel_mask(&[&q, &k, &v], causal) {
        return Tensor::from_dispatch(
            <burn::backend::Dispatch as flex::AttentionBackend>::attention(
                q.into_dispatch(),
                k.into_dispatch(),
                v.into_dispatch(),
                period,
                offset,
            ),
        );
    }
    softmax_causal(q.matmul(k.swap_dims(2, 3)), causal).matmul(v)
}

/// [`attention`] of sequences that continue one shared prefix ([`crate::KvCache::share_prefix`]):
/// every query row sees all of the prefix's positions, then its own sequence's positions under
/// `causal` (whose `offset` counts the sequence's own positions before the new ones). The
/// softmax runs over both together; the prefix is read once for all sequences.
///
/// # Shapes
///
/// - q: `[batch_size, heads, rows, head_dim]`, scaled by `1/√head_dim`
/// - k_prefix, v_prefix: `[1, heads, prefix_len, head_dim]`
/// - k, v: `[batch_size, heads, columns, head_dim]` (any strides)
/// - output: `[batch_size, heads, rows, head_dim]`
///
/// # Panics
///
/// As [`attention`], and if the prefix's keys and values differ in shape.
pub fn attention_with_prefix(
    q: Tensor<4>,
    (k_prefix, v_prefix): (Tensor<4>, Tensor<4>),
    k: Tensor<4>,
    v: Tensor<4>,
    causal: Option<Causal>,
) -> Tensor<4> {
    assert_eq!(
        k.dims(),
        v.dims(),
        "attention: keys and values differ in shape"
    );
    assert_eq!(
        k_prefix.dims(),
        v_prefix.dims(),
        "attention: the prefix's keys and values differ in shape"
    );
    #[cfg(feature = "flex")]
    if let Some((period, offset)) = kernel_mask(&[&q, &k, &v, &k_prefix, &v_prefix], causal) {
        return Tensor::from_dispatch(
            <burn::backend::Dispatch as flex::AttentionBackend>::attention_with_prefix(
                q.into_dispatch(),
                k_prefix.into_dispatch(),
                v_prefix.into_dispatch(),
                k.into_dispatch(),
                v.into_dispatch(),
                period,
                offset,
            ),
        );
    }
    composed_with_prefix(q, (k_prefix, v_prefix), k, v, causal)
}

/// The CPU kernel's `(period, offset)` (`(0, 0)`: no mask) when it serves this call: flex
/// tensors, none under autodiff, at most [`MAX_KERNEL_POSITIONS`] new positions; `None` for
/// the composed path. `tensors` starts with `q` and the sequences' own keys.
///
/// # Panics
///
/// If the mask does not fit the scores ([`Causal::check`]).
#[cfg(feature = "flex")]
fn kernel_mask(tensors: &[&Tensor<4>], causal: Option<Causal>) -> Option<(usize, usize)> {
    let (q, k) = (tensors[0], tensors[1]);
    let served = crate::ops::host::is_flex(&q.device())
        && tensors.iter().all(|t| !t.is_autodiff())
        && causal.is_none_or(|c| c.period <= MAX_KERNEL_POSITIONS);
    if !served {
        return None;
    }
    if let Some(c) = causal {
        c.check(q.dims()[2], k.dims()[2]);
    }
    Some(causal.map_or((0, 0), |c| (c.period, c.offset)))
}

/// [`attention_with_prefix`] from burn's operations: the queries of all sequences meet the
/// prefix's keys in one product, then one softmax over prefix and own scores.
fn composed_with_prefix(
    q: Tensor<4>,
    (k_prefix, v_prefix): (Tensor<4>, Tensor<4>),
    k: Tensor<4>,
    v: Tensor<4>,
    causal: Option<Causal>,
) -> Tensor<4> {
    let [batch_size, heads, rows, head_dim] = q.dims();
    let scores = q.clone().matmul(k.swap_dims(2, 3)); // [batch_size, heads, rows, own_len]
    let prefix_len = k_prefix.dims()[2];
    let q_all = q
        .swap_dims(0, 1)
        .reshape([1, heads, batch_size * rows, head_dim]);
    let prefix_scores = q_all
        .matmul(k_prefix.swap_dims(2, 3)) // [1, heads, batch_size·rows, prefix_len]
        .reshape([heads, batch_size, rows, prefix_len])
        .swap_dims(0, 1);
    let causal = causal.map(|c| Causal {
        offset: prefix_len + c.offset,
        ..c
    });
    let probs = softmax_causal(Tensor::cat(vec![prefix_scores, scores], 3), causal);
    let own_len = probs.dims()[3] - prefix_len;
    let own = probs.clone().narrow(3, prefix_len, own_len).matmul(v);
    let from_prefix = probs
        .narrow(3, 0, prefix_len)
        .swap_dims(0, 1)
        .reshape([1, heads, batch_size * rows, prefix_len])
        .matmul(v_prefix)
        .reshape([heads, batch_size, rows, head_dim])
        .swap_dims(0, 1);
    from_prefix + own
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::TensorMetadata;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, backend_extension};
    use burn::tensor::TensorData;
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    use crate::ops::host::{as_f32, cast_back, dense_f32, values};
    use crate::ops::simd;
    use crate::ops::softmax::SoftmaxBackend;

    /// Multiply-adds from which a call is split over threads.
    const PARALLEL_WORK: usize = 1 << 15;

    /// Attention of query rows over keys and values as one kernel where the backend has one.
    #[backend_extension(Flex, Autodiff)]
    pub trait AttentionBackend: Backend {
        /// `softmax(q · kᵀ) · v`; with `period > 0`, row `r` (of each batch and head) sees
        /// columns `0..=offset + r % period` only.
        fn attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> FloatTensor<Self>;

        /// [`attention`](AttentionBackend::attention) where every row also sees all positions
        /// of a prefix `[1, heads, prefix_len, head_dim]` shared by the batch, before its own.
        fn attention_with_prefix(
            q: FloatTensor<Self>,
            k_prefix: FloatTensor<Self>,
            v_prefix: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> FloatTensor<Self>;
    }

    /// An f32 tensor whose last axis is contiguous (a copy otherwise), read in place through
    /// the strides of its other axes.
    struct Rows {
        tensor: FlexTensor,
    }

    impl Rows {
        fn new(t: FlexTensor) -> Self {
            let t = as_f32(t);
            let layout = t.layout();
            let plain =
                layout.strides().last() == Some(&1) && layout.strides().iter().all(|&s| s >= 0);
            Self {
                tensor: if plain { t } else { t.to_contiguous() },
            }
        }

        /// The values and where each row starts, looked up once per call.
        fn view(&self) -> View<'_> {
            let layout = self.tensor.layout();
            let s = layout.strides();
            View {
                values: self.tensor.storage::<f32>(),
                offset: layout.start_offset(),
                strides: [s[0] as usize, s[1] as usize, s[2] as usize],
            }
        }
    }

    /// A [`Rows`]'s storage with the strides of its three leading axes.
    struct View<'a> {
        values: &'a [f32],
        offset: usize,
        strides: [usize; 3],
    }

    impl<'a> View<'a> {
        /// The first `n` rows of batch `b`, head `h`.
        fn rows(&self, b: usize, h: usize, n: usize, head_dim: usize) -> Strided<'a> {
            let [sb, sh, stride] = self.strides;
            let start = self.offset + b * sb + h * sh;
            let end = if n == 0 {
                start
            } else {
                start + (n - 1) * stride + head_dim
            };
            Strided {
                values: &self.values[start..end],
                stride,
                n,
                head_dim,
            }
        }
    }

    /// `n` rows of `head_dim` values, `stride` apart.
    #[derive(Clone, Copy)]
    struct Strided<'a> {
        values: &'a [f32],
        stride: usize,
        n: usize,
        head_dim: usize,
    }

    impl<'a> Strided<'a> {
        /// No rows.
        const EMPTY: Strided<'static> = Strided {
            values: &[],
            stride: 0,
            n: 0,
            head_dim: 0,
        };

        #[inline(always)]
        fn row(&self, j: usize) -> &'a [f32] {
            &self.values[j * self.stride..j * self.stride + self.head_dim]
        }
    }

    /// One query row: its scores against `keys`, their softmax, and the weighted sum of
    /// `values` into `out`. A `pulp` kernel so that the loops are compiled for the CPU's SIMD
    /// level (a closure would not be inlined into `simd::vectorized`'s context).
    struct AttendRow<'a> {
        q: &'a [f32],
        /// A shared prefix's keys and values (`n == 0` without one), seen before `keys`.
        prefix_keys: Strided<'a>,
        prefix_values: Strided<'a>,
        keys: Strided<'a>,
        values: Strided<'a>,
        /// `2 · (prefix_keys.n + keys.n)` values: the logits, then the probabilities.
        scratch: &'a mut [f32],
        out: &'a mut [f32],
    }

    impl pulp::WithSimd for AttendRow<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) {
            let AttendRow {
                q,
                prefix_keys,
                prefix_values,
                keys,
                values,
                scratch,
                out,
            } = self;
            let np = prefix_keys.n;
            let (logits, probs) = scratch.split_at_mut(np + keys.n);
            scores(q, prefix_keys, &mut logits[..np]);
            scores(q, keys, &mut logits[np..]);
            let sum = simd::exp_shifted_sum(probs, logits, simd::max(logits));
            let inv = 1.0 / sum;
            out.fill(0.0);
            weighted_sum(&probs[..np], inv, prefix_values, out);
            weighted_sum(&probs[np..], inv, values, out);
        }
    }

    /// `out += Σ_j probs[j] · scale · values[j]`.
    #[inline(always)]
    fn weighted_sum(probs: &[f32], scale: f32, values: Strided<'_>, out: &mut [f32]) {
        for (j, &p) in probs.iter().enumerate() {
            let weight = p * scale;
            for (o, &x) in out.iter_mut().zip(values.row(j)) {
                *o += weight * x;
            }
        }
    }

    /// `out[j] = q · keys[j]`.
    #[inline(always)]
    fn scores(q: &[f32], keys: Strided<'_>, out: &mut [f32]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = simd::dot(q, keys.row(j));
        }
    }

    impl AttentionBackend for Flex {
        fn attention(
            q: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            period: usize,
            offset: usize,
        ) -> FlexTensor {
            attend(q, None, k, v, period, offset)
        }

        fn attention_with_prefix(
            q: FlexTensor,
            k_prefix: FlexTensor,
            v_prefix: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            period: usize,
            offset: usize,
        ) -> FlexTensor {
            attend(q, Some((k_prefix, v_prefix)), k, v, period, offset)
        }
    }

    /// The kernel of both [`AttentionBackend`] methods: one [`AttendRow`] per query row, rows
    /// over rayon's threads when the call is large.
    fn attend(
        q: FlexTensor,
        prefix: Option<(FlexTensor, FlexTensor)>,
        k: FlexTensor,
        v: FlexTensor,
        period: usize,
        offset: usize,
    ) -> FlexTensor {
        let dtype = q.dtype();
        let q = dense_f32(q);
        let dims = q.layout().shape().as_slice().to_vec();
        let [_, heads, rows, head_dim] = [dims[0], dims[1], dims[2], dims[3]];
        let (k, v) = (Rows::new(k), Rows::new(v));
        let columns = k.tensor.layout().shape().as_slice()[2];
        let prefix = prefix.map(|(kp, vp)| (Rows::new(kp), Rows::new(vp)));
        let prefix_len = prefix
            .as_ref()
            .map_or(0, |(kp, _)| kp.tensor.layout().shape().as_slice()[2]);
        let prefix_views = prefix.as_ref().map(|(kp, vp)| (kp.view(), vp.view()));
        let (k, v) = (k.view(), v.view());
        let qs = values(&q);
        let mut out = vec![0f32; qs.len()];
        let row = |scratch: &mut Vec<f32>, index: usize, out: &mut [f32]| {
            let (bh, r) = (index / rows, index % rows);
            let (b, h) = (bh / heads, bh % heads);
            let visible = if period == 0 {
                columns
            } else {
                (offset + r % period + 1).min(columns)
            };
            let (prefix_keys, prefix_values) = match &prefix_views {
                Some((kp, vp)) => (
                    kp.rows(0, h, prefix_len, head_dim),
                    vp.rows(0, h, prefix_len, head_dim),
                ),
                None => (Strided::EMPTY, Strided::EMPTY),
            };
            pulp::Arch::new().dispatch(AttendRow {
                q: &qs[index * head_dim..(index + 1) * head_dim],
                prefix_keys,
                prefix_values,
                keys: k.rows(b, h, visible, head_dim),
                values: v.rows(b, h, visible, head_dim),
                scratch: &mut scratch[..2 * (prefix_len + visible)],
                out,
            });
        };
        let width = head_dim.max(1);
        // one scratch buffer per rayon task (per call when run serially), not per row
        let scratch = || vec![0f32; 2 * (prefix_len + columns)];
        if out.len() * (prefix_len + columns) >= PARALLEL_WORK {
            out.par_chunks_mut(width)
                .enumerate()
                .for_each_init(scratch, |s, (i, o)| row(s, i, o));
        } else {
            let mut s = scratch();
            out.chunks_mut(width)
                .enumerate()
                .for_each(|(i, o)| row(&mut s, i, o));
        }
        cast_back(FlexTensor::from_data(TensorData::new(out, dims)), dtype)
    }

    /// Under autodiff, the composed form (differentiable pieces); [`super::attention`] sends
    /// autodiff tensors to burn's operations before reaching here.
    impl<B: Backend + AttentionBackend + SoftmaxBackend, C: CheckpointStrategy> AttentionBackend
        for Autodiff<B, C>
    {
        fn attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> FloatTensor<Self> {
            let scores = Self::float_matmul(q, Self::float_swap_dims(k, 2, 3));
            let probs = if period == 0 {
                <Self as SoftmaxBackend>::softmax_last(scores)
            } else {
                <Self as SoftmaxBackend>::softmax_last_causal(scores, period, offset)
            };
            Self::float_matmul(probs, v)
        }

        fn attention_with_prefix(
            q: FloatTensor<Self>,
            k_prefix: FloatTensor<Self>,
            v_prefix: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> FloatTensor<Self> {
            // the prefix repeated for every sequence, before its own positions
            let batch_size = k.shape().as_slice()[0];
            let (k_prefix, v_prefix) = (
                Self::float_repeat_dim(k_prefix, 0, batch_size),
                Self::float_repeat_dim(v_prefix, 0, batch_size),
            );
            let prefix_len = k_prefix.shape().as_slice()[2];
            let k = Self::float_cat(vec![k_prefix, k], 2);
            let v = Self::float_cat(vec![v_prefix, v], 2);
            let offset = if period == 0 { 0 } else { prefix_len + offset };
            Self::attention(q, k, v, period, offset)
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::{attention, attention_with_prefix, composed_with_prefix};
    use crate::ops::{Causal, max_abs_diff, softmax_causal};

    /// The composed reference: matmul, masked softmax, matmul.
    fn composed(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: Option<Causal>) -> Tensor<4> {
        softmax_causal(q.matmul(k.swap_dims(2, 3)), causal).matmul(v)
    }

    /// Keys and values as the cache holds them: a narrowed view of a larger buffer.
    fn cache_view(
        batch: usize,
        heads: usize,
        len: usize,
        head_dim: usize,
        device: &Device,
    ) -> Tensor<4> {
        Tensor::<4>::random(
            [batch, heads, len + 7, head_dim],
            Distribution::Normal(0.0, 1.0),
            device,
        )
        .narrow(2, 0, len)
    }

    #[test]
    fn one_new_position_over_a_cache_view_equals_the_composed_form() {
        let device = Device::flex();
        assert!(
            crate::ops::host::is_flex(&device),
            "the kernel is what is tested"
        );
        // 2 sequences, 3 KV heads, 3 stacked query heads of 1 new position, 40 positions
        let q = Tensor::<4>::random([2, 3, 3, 64], Distribution::Normal(0.0, 0.5), &device);
        let (k, v) = (
            cache_view(2, 3, 40, 64, &device),
            cache_view(2, 3, 40, 64, &device),
        );
        let fused = attention(q.clone(), k.clone(), v.clone(), None);
        let diff = max_abs_diff(fused, composed(q, k, v, None));
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn a_few_new_positions_keep_the_causal_mask() {
        let device = Device::flex();
        let (period, offset) = (4, 9);
        let causal = Some(Causal { period, offset });
        // 2 stacked query heads of 4 new positions after 9 cached ones, one large enough to
        // be split over threads
        for (heads, head_dim) in [(2, 8), (4, 64)] {
            let q = Tensor::<4>::random(
                [1, heads, 2 * period, head_dim],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let k = cache_view(1, heads, offset + period, head_dim, &device);
            let v = cache_view(1, heads, offset + period, head_dim, &device);
            let fused = attention(q.clone(), k.clone(), v.clone(), causal);
            let diff = max_abs_diff(fused, composed(q.clone(), k.clone(), v.clone(), causal));
            assert!(diff < 1e-5, "{diff}");
            // the mask matters: without it the first row would read later positions
            let unmasked = max_abs_diff(
                attention(q.clone(), k.clone(), v.clone(), None),
                composed(q, k, v, causal),
            );
            assert!(unmasked > 1e-3, "the mask changed nothing: {unmasked}");
        }
    }

    #[test]
    fn a_shared_prefix_equals_attention_over_the_prefix_copied_into_every_sequence() {
        let device = Device::flex();
        // 3 sequences after a 20-position prefix, 2 KV heads of 64; each sequence has 5 own
        // positions cached, then 1 (no mask) or 3 (causal) new ones
        let (batch, heads, head_dim, prefix_len) = (3, 2, 64, 20);
        let k_prefix = cache_view(1, heads, prefix_len, head_dim, &device);
        let v_prefix = cache_view(1, heads, prefix_len, head_dim, &device);
        for (period, own_cached) in [(1, 5), (3, 5)] {
            let causal = (period > 1).then_some(Causal {
                period,
                offset: own_cached,
            });
            let q = Tensor::<4>::random(
                [batch, heads, 3 * period, head_dim],
                Distribution::Normal(0.0, 0.5),
                &device,
            );
            let k = cache_view(batch, heads, own_cached + period, head_dim, &device);
            let v = cache_view(batch, heads, own_cached + period, head_dim, &device);
            let prefix = (k_prefix.clone(), v_prefix.clone());
            let fused =
                attention_with_prefix(q.clone(), prefix.clone(), k.clone(), v.clone(), causal);
            // the reference: the prefix copied in front of each sequence's own positions
            let copied = |p: &Tensor<4>, own: &Tensor<4>| {
                Tensor::cat(vec![p.clone().repeat_dim(0, batch), own.clone()], 2)
            };
            let full_causal = causal.map(|c| Causal {
                offset: prefix_len + c.offset,
                ..c
            });
            let want = composed(
                q.clone(),
                copied(&k_prefix, &k),
                copied(&v_prefix, &v),
                full_causal,
            );
            let diff = max_abs_diff(fused, want.clone());
            assert!(diff < 1e-5, "kernel, period {period}: {diff}");
            let diff = max_abs_diff(composed_with_prefix(q, prefix, k, v, causal), want);
            assert!(diff < 1e-5, "composed, period {period}: {diff}");
        }
    }

    #[test]
    fn autodiff_tensors_take_the_differentiable_path() {
        let device = Device::flex().autodiff();
        let q = Tensor::<4>::random([1, 2, 2, 8], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let k = Tensor::<4>::random([1, 2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<4>::random([1, 2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let grads = attention(q.clone(), k, v, None).sum().backward();
        assert!(q.grad(&grads).is_some());
    }
}

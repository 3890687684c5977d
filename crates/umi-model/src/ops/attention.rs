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
//! all heads split over rayon's threads. Prompts (many new positions), autodiff tensors
//! (training) and other backends (wgpu / WebGPU) take the composed path.

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
    if crate::ops::host::is_flex(&q.device())
        && !q.is_autodiff()
        && !k.is_autodiff()
        && !v.is_autodiff()
        && causal.is_none_or(|c| c.period <= MAX_KERNEL_POSITIONS)
    {
        let [_, _, rows, _] = q.dims();
        let columns = k.dims()[2];
        let (period, offset) = causal.map_or((0, 0), |c| (c.period, c.offset));
        assert!(
            period == 0 || (rows.is_multiple_of(period) && columns == offset + period),
            "attention over {rows} x {columns} scores with period {period} and offset {offset}"
        );
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

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, backend_extension};
    use burn::tensor::{DType, FloatDType, TensorData};
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    use crate::ops::host::{cast_back, dense_f32, values};
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
    }

    /// An f32 tensor whose last axis is contiguous (a copy otherwise), read in place through
    /// the strides of its other axes.
    struct Rows {
        tensor: FlexTensor,
    }

    impl Rows {
        fn new(t: FlexTensor) -> Self {
            let t = if t.dtype() == DType::F32 {
                t
            } else {
                Flex::float_cast(t, FloatDType::F32)
            };
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
        keys: Strided<'a>,
        values: Strided<'a>,
        /// `2 · keys.n` values: the logits, then the probabilities.
        scratch: &'a mut [f32],
        out: &'a mut [f32],
    }

    impl pulp::WithSimd for AttendRow<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) {
            let AttendRow {
                q,
                keys,
                values,
                scratch,
                out,
            } = self;
            let (logits, probs) = scratch.split_at_mut(keys.n);
            scores(q, keys, logits);
            let sum = simd::exp_shifted_sum(probs, logits, simd::max(logits));
            let inv = 1.0 / sum;
            out.fill(0.0);
            for (j, &p) in probs.iter().enumerate() {
                let weight = p * inv;
                for (o, &x) in out.iter_mut().zip(values.row(j)) {
                    *o += weight * x;
                }
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
            let dtype = q.dtype();
            let q = dense_f32(q);
            let dims = q.layout().shape().as_slice().to_vec();
            let [_, heads, rows, head_dim] = [dims[0], dims[1], dims[2], dims[3]];
            let (k, v) = (Rows::new(k), Rows::new(v));
            let columns = k.tensor.layout().shape().as_slice()[2];
            let (k, v) = (k.view(), v.view());
            let qs = values(&q);
            let mut out = vec![0f32; qs.len()];
            let row = |index: usize, out: &mut [f32]| {
                let (bh, r) = (index / rows, index % rows);
                let (b, h) = (bh / heads, bh % heads);
                let visible = if period == 0 {
                    columns
                } else {
                    (offset + r % period + 1).min(columns)
                };
                let mut scratch = vec![0f32; 2 * visible];
                pulp::Arch::new().dispatch(AttendRow {
                    q: &qs[index * head_dim..(index + 1) * head_dim],
                    keys: k.rows(b, h, visible, head_dim),
                    values: v.rows(b, h, visible, head_dim),
                    scratch: &mut scratch,
                    out,
                });
            };
            let width = head_dim.max(1);
            if out.len() * columns >= PARALLEL_WORK {
                out.par_chunks_mut(width)
                    .enumerate()
                    .for_each(|(i, o)| row(i, o));
            } else {
                out.chunks_mut(width)
                    .enumerate()
                    .for_each(|(i, o)| row(i, o));
            }
            cast_back(FlexTensor::from_data(TensorData::new(out, dims)), dtype)
        }
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
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::attention;
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

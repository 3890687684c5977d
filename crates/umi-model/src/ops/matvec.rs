//! `x · W` for the few rows of a decode step against an f32 weight: a projection (`W` stored
//! `[in, out]`) or the tied LM head (the embedding `E`, `[vocab, hidden]`, so `x · Eᵀ`).
//!
//! Decoding multiplies one row per sequence with every weight of the model, so it is bound by
//! how fast the weights stream from memory. burn's matmul on the CPU backend (the `gemm`
//! crate) ran these `[1, in] × [in, out]` products on one thread: 78 % of SmolLM2 f32
//! decoding's samples, at 0.58× llama.cpp's f32 decode speed (perf and BENCHMARKS.md,
//! 2026-12-04). On the CPU backend (flex), [`matmul_weight`] with at most
//! [`MAX_KERNEL_ROWS`] rows is a kernel of its own: `[in, out]` weights are split into blocks
//! of consecutive input rows, each read front to back once by one of rayon's threads into
//! partial sums that are added in block order (so the result does not depend on the thread
//! count); `[out, in]` weights are split into blocks of output rows, each a dot product per
//! token. Longer inputs (prompts, compute-bound), autodiff tensors (training) and other
//! backends (wgpu / WebGPU) take burn's matmul.

use burn::tensor::Tensor;

/// Rows of `x` up to which the CPU kernel is used; longer inputs multiply as matrices.
#[cfg(feature = "flex")]
pub const MAX_KERNEL_ROWS: usize = 8;

/// How a weight matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[in, out]`: burn's layout of a linear weight (`x · W`).
    InOut,
    /// `[out, in]`: PyTorch's layout, the token embedding used as a tied LM head (`x · Wᵀ`).
    OutIn,
}

/// `x · W` (`layout` [`WeightLayout::InOut`]) or `x · Wᵀ` ([`WeightLayout::OutIn`]).
/// A weight held in f16 ([`crate::Llama::half`]) meets `x` cast to f16 and the product is
/// returned in f32.
///
/// # Shapes
///
/// - x: `[tokens, in]`
/// - w: `[in, out]` or `[out, in]`
/// - output: `[tokens, out]`
///
/// # Panics
///
/// If the inner dimensions differ (a caller's bug: the model builds both from its config).
pub fn matmul_weight(x: Tensor<2>, w: Tensor<2>, layout: WeightLayout) -> Tensor<2> {
    let w_in = match layout {
        WeightLayout::InOut => w.dims()[0],
        WeightLayout::OutIn => w.dims()[1],
    };
    assert_eq!(
        x.dims()[1],
        w_in,
        "matmul_weight: x is {:?}, the weight {:?} ({layout:?})",
        x.dims(),
        w.dims()
    );
    if w.dtype() == burn::tensor::DType::F16 && x.dtype() != burn::tensor::DType::F16 {
        // a weight held in f16 (`Llama::half`): the activations meet it in f16 and the
        // product returns to f32, where norms, attention and the residual stream stay
        use burn::tensor::FloatDType;
        return matmul_weight(x.cast(FloatDType::F16), w, layout).cast(FloatDType::F32);
    }
    #[cfg(feature = "flex")]
    {
        let served = x.dims()[0] <= MAX_KERNEL_ROWS
            && w.dims().iter().all(|&d| d > 0)
            && crate::ops::host::is_flex(&x.device())
            && !x.is_autodiff()
            && !w.is_autodiff()
            && w.dtype() == burn::tensor::DType::F32;
        if served {
            return Tensor::from_dispatch(
                <burn::backend::Dispatch as flex::MatmulWeightBackend>::matmul_weight(
                    x.into_dispatch(),
                    w.into_dispatch(),
                    layout == WeightLayout::OutIn,
                ),
            );
        }
    }
    match layout {
        WeightLayout::InOut => x.matmul(w),
        WeightLayout::OutIn => x.matmul(w.transpose()),
    }
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, backend_extension};
    use burn::tensor::TensorData;
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    use crate::ops::host::{cast_back, dense_f32, values};
    use crate::ops::simd;

    /// Input rows of an `[in, out]` weight per task: 18 tasks for SmolLM2's 576-wide inputs
    /// (an even split over 2 threads, as 9 tasks of 64 rows were not), 64 for TinyLlama's
    /// 2048. Fixed, so that the order of the partial sums (and the result) does not depend on
    /// the number of threads.
    const IN_ROWS_PER_TASK: usize = 32;
    /// Weights (values) from which the products are split over threads: smaller ones (a LoRA
    /// adapter's `A` and `B`, 9,216 values per projection on SmolLM2 at rank 16) cost less
    /// than waking the thread pool (rayon's idle spinning was 15 % of an adapter's decode
    /// samples when they were split).
    const PARALLEL_WEIGHT: usize = 1 << 16;
    /// Output rows of an `[out, in]` weight per task.
    const OUT_ROWS_PER_TASK: usize = 256;

    /// The product of a few rows with an f32 weight, as one kernel where the backend has one.
    #[backend_extension(Flex, Autodiff)]
    pub trait MatmulWeightBackend: Backend {
        /// `x · w` (`w` `[in, out]`), or `x · wᵀ` when `transposed` (`w` `[out, in]`).
        fn matmul_weight(
            x: FloatTensor<Self>,
            w: FloatTensor<Self>,
            transposed: bool,
        ) -> FloatTensor<Self>;
    }

    impl MatmulWeightBackend for Flex {
        fn matmul_weight(x: FlexTensor, w: FlexTensor, transposed: bool) -> FlexTensor {
            crate::ops::awake::keep_awake();
            let dtype = x.dtype();
            let (x, w) = (dense_f32(x), dense_f32(w));
            let [tokens, d_in] = dims2(&x);
            let (xs, ws) = (values(&x), values(&w));
            let d_out = dims2(&w)[if transposed { 0 } else { 1 }];
            let out = if tokens == 0 {
                Vec::new()
            } else if transposed {
                out_in(xs, ws, tokens, d_in, d_out)
            } else {
                in_out(xs, ws, tokens, d_in, d_out)
            };
            cast_back(
                FlexTensor::from_data(TensorData::new(out, [tokens, d_out])),
                dtype,
            )
        }
    }

    /// Under autodiff, burn's matmul (never reached: [`super::matmul_weight`] sends autodiff
    /// tensors to burn's operations).
    impl<B: Backend + MatmulWeightBackend, C: CheckpointStrategy> MatmulWeightBackend
        for Autodiff<B, C>
    {
        fn matmul_weight(
            x: FloatTensor<Self>,
            w: FloatTensor<Self>,
            transposed: bool,
        ) -> FloatTensor<Self> {
            let w = if transposed {
                Self::float_swap_dims(w, 0, 1)
            } else {
                w
            };
            Self::float_matmul(x, w)
        }
    }

    fn dims2(t: &FlexTensor) -> [usize; 2] {
        let s = t.layout().shape().as_slice();
        [s[0], s[1]]
    }

    /// `x · w` for `w` `[in, out]`: blocks of input rows, each streamed once into partial sums
    /// `[tokens, out]`, added in block order.
    fn in_out(x: &[f32], w: &[f32], tokens: usize, d_in: usize, d_out: usize) -> Vec<f32> {
        let task = |task: usize| {
            let rows = task * IN_ROWS_PER_TASK..((task + 1) * IN_ROWS_PER_TASK).min(d_in);
            let mut acc = vec![0f32; tokens * d_out];
            pulp::Arch::new().dispatch(Axpy {
                x,
                w,
                rows,
                d_in,
                d_out,
                acc: &mut acc,
            });
            acc
        };
        let tasks = 0..d_in.div_ceil(IN_ROWS_PER_TASK);
        // the same blocks either way, so the sum does not depend on the path taken
        let partials: Vec<Vec<f32>> = if w.len() < PARALLEL_WEIGHT {
            tasks.map(task).collect()
        } else {
            tasks.into_par_iter().map(task).collect()
        };
        let mut partials = partials.into_iter();
        let mut out = partials
            .next()
            .unwrap_or_else(|| vec![0f32; tokens * d_out]);
        for p in partials {
            for (o, v) in out.iter_mut().zip(&p) {
                *o += v;
            }
        }
        out
    }

    /// `acc[t] += Σ_{i ∈ rows} x[t, i] · w[i, ..]` for every token `t`, compiled for the CPU's
    /// SIMD level.
    struct Axpy<'a> {
        x: &'a [f32],
        w: &'a [f32],
        rows: std::ops::Range<usize>,
        d_in: usize,
        d_out: usize,
        acc: &'a mut [f32],
    }

    impl pulp::WithSimd for Axpy<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) {
            let Axpy {
                x,
                w,
                rows,
                d_in,
                d_out,
                acc,
            } = self;
            for i in rows {
                let w_row = &w[i * d_out..(i + 1) * d_out];
                for (t, acc) in acc.chunks_exact_mut(d_out).enumerate() {
                    let xv = x[t * d_in + i];
                    for (a, &wv) in acc.iter_mut().zip(w_row) {
                        *a += xv * wv;
                    }
                }
            }
        }
    }

    /// `x · wᵀ` for `w` `[out, in]`: blocks of output rows, one dot product per token each.
    fn out_in(x: &[f32], w: &[f32], tokens: usize, d_in: usize, d_out: usize) -> Vec<f32> {
        // `[out, tokens]` here, transposed at the end when there is more than one token
        let mut out_t = vec![0f32; d_out * tokens];
        out_t
            .par_chunks_mut(OUT_ROWS_PER_TASK * tokens)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * OUT_ROWS_PER_TASK;
                pulp::Arch::new().dispatch(Dots {
                    x,
                    w: &w[first * d_in..(first + out.len() / tokens) * d_in],
                    d_in,
                    out,
                });
            });
        if tokens == 1 {
            return out_t;
        }
        let mut out = vec![0f32; tokens * d_out];
        for (o, row) in out_t.chunks_exact(tokens).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                out[t * d_out + o] = v;
            }
        }
        out
    }

    /// `out[o, t] = w[o] · x[t]`, compiled for the CPU's SIMD level.
    struct Dots<'a> {
        x: &'a [f32],
        w: &'a [f32],
        d_in: usize,
        /// `[rows of w, tokens]`.
        out: &'a mut [f32],
    }

    impl pulp::WithSimd for Dots<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) {
            let Dots { x, w, d_in, out } = self;
            let tokens = x.len() / d_in;
            for (w_row, out) in w.chunks_exact(d_in).zip(out.chunks_exact_mut(tokens)) {
                for (y, x_row) in out.iter_mut().zip(x.chunks_exact(d_in)) {
                    *y = simd::dot(w_row, x_row);
                }
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::{MAX_KERNEL_ROWS, WeightLayout, matmul_weight};
    use crate::ops::max_abs_diff;

    fn random(shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), device)
    }

    /// Both layouts, 1 to 9 rows (9: burn's matmul), widths that do not divide into the task
    /// sizes, against burn's matmul.
    #[test]
    fn the_kernel_equals_burns_matmul() {
        let device = Device::flex();
        for (d_in, d_out) in [(576, 192), (37, 1000), (1536, 5), (3, 300)] {
            let w_in_out = random([d_in, d_out], &device);
            let w_out_in = random([d_out, d_in], &device);
            for tokens in 0..=MAX_KERNEL_ROWS + 1 {
                let x = random([tokens, d_in], &device);
                let got = matmul_weight(x.clone(), w_in_out.clone(), WeightLayout::InOut);
                let want = x.clone().matmul(w_in_out.clone());
                assert_eq!(got.dims(), [tokens, d_out]);
                let err = max_abs_diff(got, want);
                assert!(err < 1e-4, "[{d_in}, {d_out}], {tokens} rows: {err}");
                let got = matmul_weight(x.clone(), w_out_in.clone(), WeightLayout::OutIn);
                let want = x.matmul(w_out_in.clone().transpose());
                let err = max_abs_diff(got, want);
                assert!(err < 1e-4, "[{d_out}, {d_in}]ᵀ, {tokens} rows: {err}");
            }
        }
    }

    /// Batched decoding relies on it: a row's product does not depend on the other rows, bit
    /// for bit.
    #[test]
    fn a_rows_product_does_not_depend_on_its_batch() {
        let device = Device::flex();
        let (d_in, d_out) = (576, 192);
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let w = match layout {
                WeightLayout::InOut => random([d_in, d_out], &device),
                WeightLayout::OutIn => random([d_out, d_in], &device),
            };
            let x = random([MAX_KERNEL_ROWS, d_in], &device);
            let all = matmul_weight(x.clone(), w.clone(), layout);
            for t in 0..MAX_KERNEL_ROWS {
                let one = matmul_weight(x.clone().narrow(0, t, 1), w.clone(), layout);
                assert_eq!(
                    all.clone().narrow(0, t, 1).into_data(),
                    one.into_data(),
                    "{layout:?} row {t}"
                );
            }
        }
    }
}

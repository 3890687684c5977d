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
//! token; a weight viewed transposed (the projections' `[out, in]` values viewed `[in, out]`
//! on the CPU) is read in the order its values are held. Longer inputs (prompts,
//! compute-bound), autodiff tensors (training) and other backends (wgpu / WebGPU) take burn's
//! matmul.

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
/// A weight held in f16 ([`crate::Llama::half`]) is read as f16 and multiplied in f32 on the
/// CPU (a few rows: converted row by row in the kernel; more: converted whole for burn's
/// GEMM); on a GPU it meets `x` cast to f16 and the product is returned in f32.
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
    use burn::tensor::{DType, FloatDType};
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&x.device()) {
        let served = w.dims().iter().all(|&d| d > 0)
            && !x.is_autodiff()
            && !w.is_autodiff()
            && matches!(w.dtype(), DType::F32 | DType::F16);
        if served {
            return Tensor::from_dispatch(
                <burn::backend::Dispatch as flex::MatmulWeightBackend>::matmul_weight(
                    x.into_dispatch(),
                    w.into_dispatch(),
                    layout == WeightLayout::OutIn,
                ),
            );
        }
        if w.dtype() == DType::F16 {
            // training on the CPU: the weight converted to f32 for this product
            return matmul_weight(x, w.cast(FloatDType::F32), layout);
        }
    }
    if w.dtype() == DType::F16 && x.dtype() != DType::F16 {
        // a weight held in f16 on a GPU (`Llama::half`): the activations meet it in f16 and
        // the product returns to f32, where norms, attention and the residual stream stay
        return matmul_weight(x.cast(FloatDType::F16), w, layout).cast(FloatDType::F32);
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
    use burn::tensor::{DType, TensorData, f16};
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    use crate::ops::host::{cast_back, dense, dense_f32, dims2, transpose_2d, values};
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
    /// Output rows of an `[out, in]` weight per task, at most: fewer where that gives each
    /// thread at least 4 tasks (SmolLM2's 192 key/value outputs were one task, on one thread).
    /// Each output is one dot product wherever it runs, so the split does not move a value.
    const OUT_ROWS_PER_TASK: usize = 256;
    /// Output rows per task, at least.
    const MIN_OUT_ROWS_PER_TASK: usize = 16;

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
            let x = dense_f32(x);
            // a weight viewed transposed (`linear::held_out_in`: `[out, in]` values viewed
            // `[in, out]`) is read in the order its values are held
            let (w, transposed) = if w.layout().contiguous_offsets().is_some() {
                (w, transposed)
            } else {
                let held = Flex::float_swap_dims(w.clone(), 0, 1);
                if held.layout().contiguous_offsets().is_some() {
                    (held, !transposed)
                } else {
                    (w, transposed)
                }
            };
            let [tokens, d_in] = dims2(&x);
            if tokens > super::MAX_KERNEL_ROWS {
                return cast_back(prompt_product(x, w, transposed), dtype);
            }
            // f16 weights are read as they are held and converted a row at a time
            let w = if w.dtype() == DType::F16 {
                dense(w)
            } else {
                dense_f32(w)
            };
            let xs = values(&x);
            let d_out = dims2(&w)[if transposed { 0 } else { 1 }];
            let out = if tokens == 0 {
                Vec::new()
            } else if w.dtype() == DType::F16 {
                let ws = w.as_slice::<f16>().expect("dense f16");
                product(xs, ws, transposed, tokens, d_in, d_out)
            } else {
                product(xs, values(&w), transposed, tokens, d_in, d_out)
            };
            cast_back(
                FlexTensor::from_data(TensorData::new(out, [tokens, d_out])),
                dtype,
            )
        }
    }

    /// A prompt's product (more than [`super::MAX_KERNEL_ROWS`] rows: compute-bound) as one
    /// GEMM (the `gemm` crate, through burn) with both operands row-major: `x · w` for `w`
    /// `[in, out]`; for `w` `[out, in]`, `(w · xᵀ)ᵀ` with `xᵀ` copied row-major (the
    /// activations, a small fraction of the weight), where `x · wᵀ` read through strides ran
    /// TinyLlama's 512-token prompt 20 % slower. An f16 weight is converted to f32 first
    /// (burn's f16 GEMM ran prompts at 0.6× the f32 one).
    fn prompt_product(x: FlexTensor, w: FlexTensor, transposed: bool) -> FlexTensor {
        let w = dense_f32(w);
        if !transposed {
            return Flex::float_matmul(x, w);
        }
        let x_t = transpose_2d(&x);
        transpose_2d(&dense_f32(Flex::float_matmul(w, x_t)))
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

    /// `x · wᵀ` (`transposed`, `w` `[out, in]`) or `x · w` (`w` `[in, out]`).
    fn product<W: WeightElement>(
        x: &[f32],
        w: &[W],
        transposed: bool,
        tokens: usize,
        d_in: usize,
        d_out: usize,
    ) -> Vec<f32> {
        if transposed {
            out_in(x, w, tokens, d_in, d_out)
        } else {
            in_out(x, w, tokens, d_in, d_out)
        }
    }

    /// A weight's element: f32 rows are used as they are, f16 rows converted into a buffer
    /// ([`simd::f16_to_f32`]: 16 values per instruction on AVX-512).
    pub(super) trait WeightElement: Copy + Send + Sync + Sized {
        /// `w` (a row) as f32: itself, or converted into `buf`.
        fn row<'a>(w: &'a [Self], buf: &'a mut Vec<f32>) -> &'a [f32];

        /// [`Axpy`]'s work: `acc[t] += Σ_{i ∈ rows} x[t, i] · w[i, ..]`.
        fn axpy_rows(
            x: &[f32],
            w: &[Self],
            rows: std::ops::Range<usize>,
            d_in: usize,
            d_out: usize,
            acc: &mut [f32],
        ) {
            portable_axpy(x, w, rows, d_in, d_out, acc);
        }

        /// [`Dots`]' work: `out[o, t] = w[o] · x[t]`.
        fn dots(x: &[f32], w: &[Self], d_in: usize, out: &mut [f32]) {
            portable_dots(x, w, d_in, out);
        }
    }

    /// [`Axpy`] compiled for the CPU's SIMD level (pulp), rows converted by
    /// [`WeightElement::row`].
    fn portable_axpy<W: WeightElement>(
        x: &[f32],
        w: &[W],
        rows: std::ops::Range<usize>,
        d_in: usize,
        d_out: usize,
        acc: &mut [f32],
    ) {
        pulp::Arch::new().dispatch(Axpy {
            x,
            w,
            rows,
            d_in,
            d_out,
            acc,
        });
    }

    /// [`Dots`] compiled for the CPU's SIMD level (pulp), rows converted by
    /// [`WeightElement::row`].
    fn portable_dots<W: WeightElement>(x: &[f32], w: &[W], d_in: usize, out: &mut [f32]) {
        pulp::Arch::new().dispatch(Dots { x, w, d_in, out });
    }

    impl WeightElement for f32 {
        #[inline(always)]
        fn row<'a>(w: &'a [f32], _buf: &'a mut Vec<f32>) -> &'a [f32] {
            w
        }

        fn dots(x: &[f32], w: &[f32], d_in: usize, out: &mut [f32]) {
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = <archmage::X64V4Token as archmage::SimdToken>::summon() {
                return wide::dots_f32(token, x, w, d_in, out);
            }
            portable_dots(x, w, d_in, out);
        }
    }

    /// f16 weights: on AVX-512 converted in registers as they are multiplied
    /// ([`wide`]: each row read once, no buffer); elsewhere a row at a time into a buffer.
    impl WeightElement for f16 {
        #[inline(always)]
        fn row<'a>(w: &'a [f16], buf: &'a mut Vec<f32>) -> &'a [f32] {
            buf.resize(w.len(), 0.0);
            simd::f16_to_f32(w, buf);
            buf
        }

        fn axpy_rows(
            x: &[f32],
            w: &[f16],
            rows: std::ops::Range<usize>,
            d_in: usize,
            d_out: usize,
            acc: &mut [f32],
        ) {
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = <archmage::X64V4Token as archmage::SimdToken>::summon() {
                return wide::axpy_rows(token, x, w, rows, d_in, d_out, acc);
            }
            portable_axpy(x, w, rows, d_in, d_out, acc);
        }

        fn dots(x: &[f32], w: &[f16], d_in: usize, out: &mut [f32]) {
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = <archmage::X64V4Token as archmage::SimdToken>::summon() {
                return wide::dots(token, x, w, d_in, out);
            }
            portable_dots(x, w, d_in, out);
        }
    }

    /// The portable f16 paths ([`Axpy`] and [`Dots`] converting a row at a time: CPUs without
    /// AVX-512, which the machines running the tests have) against the f32 ones on the same
    /// values.
    #[cfg(test)]
    mod portable_f16 {
        use super::*;

        #[test]
        fn the_portable_f16_paths_equal_the_f32_ones() {
            let (d_in, d_out, tokens) = (37, 70, 3);
            let w32: Vec<f32> = (0..d_in * d_out)
                .map(|i| f16::from_f32(((i * 7919) % 1000) as f32 / 500.0 - 1.0).to_f32())
                .collect();
            let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
            let x: Vec<f32> = (0..tokens * d_in)
                .map(|i| (i % 13) as f32 / 7.0 - 0.9)
                .collect();
            let (mut a16, mut a32) = (vec![0f32; tokens * d_out], vec![0f32; tokens * d_out]);
            portable_axpy(&x, &w16, 0..d_in, d_in, d_out, &mut a16);
            portable_axpy(&x, &w32, 0..d_in, d_in, d_out, &mut a32);
            assert_eq!(a16, a32, "axpy");
            // the same values read as `[out, in]` rows of length d_in
            let (mut o16, mut o32) = (vec![0f32; d_out * tokens], vec![0f32; d_out * tokens]);
            portable_dots(&x, &w16, d_in, &mut o16);
            portable_dots(&x, &w32, d_in, &mut o32);
            assert_eq!(o16, o32, "dots");
        }
    }

    /// The f16-weight products on AVX-512: 16 weights per `vcvtph2ps`, multiplied as they
    /// are converted.
    #[cfg(target_arch = "x86_64")]
    mod wide {
        use archmage::prelude::*;
        use burn::tensor::f16;
        use half::slice::HalfFloatSliceExt;

        /// [`super::Axpy`]'s work for an f16 `w` `[in, out]`.
        #[arcane(import_intrinsics)]
        pub(super) fn axpy_rows(
            _token: X64V4Token,
            x: &[f32],
            w: &[f16],
            rows: std::ops::Range<usize>,
            d_in: usize,
            d_out: usize,
            acc: &mut [f32],
        ) {
            let tokens = acc.len() / d_out;
            let whole = d_out / 16 * 16;
            for i in rows {
                crate::ops::simd::prefetch_ahead(w, i * d_out..(i + 1) * d_out);
                let row = &w[i * d_out..(i + 1) * d_out];
                let bits: &[u16] = row.reinterpret_cast();
                for t in 0..tokens {
                    let xv = x[t * d_in + i];
                    let xb = _mm512_set1_ps(xv);
                    let acc = &mut acc[t * d_out..(t + 1) * d_out];
                    for j in (0..whole).step_by(16) {
                        let s: &[u16; 16] = bits[j..j + 16].try_into().expect("16 values");
                        let a: &mut [f32; 16] =
                            (&mut acc[j..j + 16]).try_into().expect("16 values");
                        let wv = _mm512_cvtph_ps(_mm256_loadu_si256(s));
                        _mm512_storeu_ps(a, _mm512_fmadd_ps(xb, wv, _mm512_loadu_ps(a)));
                    }
                    for j in whole..d_out {
                        acc[j] += xv * row[j].to_f32();
                    }
                }
            }
        }

        /// Defines `$name`, [`super::Dots`]' work for a `w` `[out, in]` of `$elem`: four
        /// accumulators of 16 lanes (independent chains of FMAs, so the loads, not the
        /// additions' latency, set the pace). `$load` reads the 16 weights of `$row` from
        /// `$at` as f32 lanes, `$value` one weight `$w` as f32 (the tails).
        macro_rules! dots_kernel {
            ($(#[$doc:meta])* $name:ident, $elem:ty,
             |$row:ident, $at:ident| $load:expr, |$w:ident| $value:expr) => {
                $(#[$doc])*
                #[arcane(import_intrinsics)]
                pub(super) fn $name(
                    _token: X64V4Token,
                    x: &[f32],
                    w: &[$elem],
                    d_in: usize,
                    out: &mut [f32],
                ) {
                    let tokens = x.len() / d_in;
                    let by64 = d_in / 64 * 64;
                    let by16 = d_in / 16 * 16;
                    for (o, ($row, out)) in w
                        .chunks_exact(d_in)
                        .zip(out.chunks_exact_mut(tokens))
                        .enumerate()
                    {
                        crate::ops::simd::prefetch_ahead(w, o * d_in..(o + 1) * d_in);
                        for (y, x_row) in out.iter_mut().zip(x.chunks_exact(d_in)) {
                            let mut acc = [_mm512_setzero_ps(); 4];
                            for j in (0..by64).step_by(64) {
                                for (k, a) in acc.iter_mut().enumerate() {
                                    let $at = j + 16 * k;
                                    let v: &[f32; 16] =
                                        x_row[$at..$at + 16].try_into().expect("16 values");
                                    *a = _mm512_fmadd_ps($load, _mm512_loadu_ps(v), *a);
                                }
                            }
                            for $at in (by64..by16).step_by(16) {
                                let v: &[f32; 16] =
                                    x_row[$at..$at + 16].try_into().expect("16 values");
                                acc[0] = _mm512_fmadd_ps($load, _mm512_loadu_ps(v), acc[0]);
                            }
                            let sum = _mm512_add_ps(
                                _mm512_add_ps(acc[0], acc[1]),
                                _mm512_add_ps(acc[2], acc[3]),
                            );
                            let mut lanes = [0f32; 16];
                            _mm512_storeu_ps(&mut lanes, sum);
                            let mut total: f32 = lanes.iter().sum();
                            for j in by16..d_in {
                                let $w = $row[j];
                                total += $value * x_row[j];
                            }
                            *y = total;
                        }
                    }
                }
            };
        }

        dots_kernel!(
            /// [`super::Dots`]' work for an f32 `w` `[out, in]`.
            dots_f32,
            f32,
            |row, at| {
                let r: &[f32; 16] = row[at..at + 16].try_into().expect("16 values");
                _mm512_loadu_ps(r)
            },
            |w| w
        );

        dots_kernel!(
            /// [`super::Dots`]' work for an f16 `w` `[out, in]`: 16 weights per `vcvtph2ps`.
            dots,
            f16,
            |row, at| {
                let bits: &[u16] = row[at..at + 16].reinterpret_cast();
                let s: &[u16; 16] = bits.try_into().expect("16 values");
                _mm512_cvtph_ps(_mm256_loadu_si256(s))
            },
            |w| w.to_f32()
        );
    }

    /// `x · w` for `w` `[in, out]`: blocks of input rows, each streamed once into partial sums
    /// `[tokens, out]`, added in block order.
    fn in_out<W: WeightElement>(
        x: &[f32],
        w: &[W],
        tokens: usize,
        d_in: usize,
        d_out: usize,
    ) -> Vec<f32> {
        let task = |task: usize| {
            let rows = task * IN_ROWS_PER_TASK..((task + 1) * IN_ROWS_PER_TASK).min(d_in);
            let mut acc = vec![0f32; tokens * d_out];
            W::axpy_rows(x, w, rows, d_in, d_out, &mut acc);
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
    struct Axpy<'a, W> {
        x: &'a [f32],
        w: &'a [W],
        rows: std::ops::Range<usize>,
        d_in: usize,
        d_out: usize,
        acc: &'a mut [f32],
    }

    impl<W: WeightElement> pulp::WithSimd for Axpy<'_, W> {
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
            let mut buf = Vec::new();
            for i in rows {
                simd::prefetch_ahead(w, i * d_out..(i + 1) * d_out);
                let w_row = W::row(&w[i * d_out..(i + 1) * d_out], &mut buf);
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
    fn out_in<W: WeightElement>(
        x: &[f32],
        w: &[W],
        tokens: usize,
        d_in: usize,
        d_out: usize,
    ) -> Vec<f32> {
        let per_task = d_out
            .div_ceil(4 * rayon::current_num_threads())
            .clamp(MIN_OUT_ROWS_PER_TASK, OUT_ROWS_PER_TASK);
        // `[out, tokens]` here, transposed at the end when there is more than one token
        let mut out_t = vec![0f32; d_out * tokens];
        out_t
            .par_chunks_mut(per_task * tokens)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * per_task;
                W::dots(
                    x,
                    &w[first * d_in..(first + out.len() / tokens) * d_in],
                    d_in,
                    out,
                );
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
    struct Dots<'a, W> {
        x: &'a [f32],
        w: &'a [W],
        d_in: usize,
        /// `[rows of w, tokens]`.
        out: &'a mut [f32],
    }

    impl<W: WeightElement> pulp::WithSimd for Dots<'_, W> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) {
            let Dots { x, w, d_in, out } = self;
            let tokens = x.len() / d_in;
            let mut buf = Vec::new();
            for (w_row, out) in w.chunks_exact(d_in).zip(out.chunks_exact_mut(tokens)) {
                let w_row = W::row(w_row, &mut buf);
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

    /// Both layouts, each held as it is and as a transposed view of the other's values (the
    /// projections on the CPU: `linear::held_out_in`), 0 to 9 rows and a prompt's 40 (more
    /// than `MAX_KERNEL_ROWS`: the GEMM), widths that do not divide into the task sizes,
    /// against burn's matmul of the same values.
    #[test]
    fn the_kernel_equals_burns_matmul() {
        let device = Device::flex();
        for (d_in, d_out) in [(576, 192), (37, 1000), (1536, 5), (3, 300)] {
            let w_in_out = random([d_in, d_out], &device);
            let w_out_in = random([d_out, d_in], &device);
            // the same values as views of the other layout
            let view_in_out = w_out_in.clone().transpose();
            let view_out_in = w_in_out.clone().transpose();
            for tokens in (0..=MAX_KERNEL_ROWS + 1).chain([40]) {
                let x = random([tokens, d_in], &device);
                for (w, name) in [(&w_in_out, "held"), (&view_in_out, "viewed")] {
                    let got = matmul_weight(x.clone(), w.clone(), WeightLayout::InOut);
                    let want = x.clone().matmul(w.clone());
                    assert_eq!(got.dims(), [tokens, d_out]);
                    let err = max_abs_diff(got, want);
                    assert!(err < 1e-4, "[{d_in}, {d_out}] {name}, {tokens} rows: {err}");
                }
                for (w, name) in [(&w_out_in, "held"), (&view_out_in, "viewed")] {
                    let got = matmul_weight(x.clone(), w.clone(), WeightLayout::OutIn);
                    let want = x.clone().matmul(w.clone().transpose());
                    assert_eq!(got.dims(), [tokens, d_out]);
                    let err = max_abs_diff(got, want);
                    assert!(
                        err < 1e-4,
                        "[{d_out}, {d_in}]ᵀ {name}, {tokens} rows: {err}"
                    );
                }
            }
        }
    }

    /// f16 weights (AVX-512: converted in registers; elsewhere row by row; 9 rows: converted
    /// whole for burn's matmul) against the f32 kernel on the same values, with widths that
    /// leave tails of every length below 16 and 64, and each row alone equal to it in a batch.
    #[test]
    fn f16_weights_equal_their_f32_values() {
        use burn::tensor::FloatDType;
        let device = Device::flex();
        for (d_in, d_out) in [(576, 192), (37, 1000), (1536, 5), (3, 300), (100, 77)] {
            for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
                let shape = match layout {
                    WeightLayout::InOut => [d_in, d_out],
                    WeightLayout::OutIn => [d_out, d_in],
                };
                let w16 = random(shape, &device).cast(FloatDType::F16);
                let w32 = w16.clone().cast(FloatDType::F32);
                for tokens in 0..=MAX_KERNEL_ROWS + 1 {
                    let x = random([tokens, d_in], &device);
                    let got = matmul_weight(x.clone(), w16.clone(), layout);
                    assert_eq!(got.dtype(), burn::tensor::DType::F32);
                    assert_eq!(got.dims(), [tokens, d_out]);
                    let want = matmul_weight(x.clone(), w32.clone(), layout);
                    let err = max_abs_diff(got.clone(), want);
                    assert!(
                        err < 1e-4,
                        "{layout:?} [{d_in}, {d_out}], {tokens} rows: {err}"
                    );
                    if tokens <= MAX_KERNEL_ROWS {
                        for t in 0..tokens {
                            let one = matmul_weight(x.clone().narrow(0, t, 1), w16.clone(), layout);
                            assert_eq!(
                                got.clone().narrow(0, t, 1).into_data(),
                                one.into_data(),
                                "{layout:?} row {t} of {tokens}"
                            );
                        }
                    }
                }
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

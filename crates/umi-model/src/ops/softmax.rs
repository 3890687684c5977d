//! Softmax over the last axis, the attention probabilities of [`crate::llama`].
//!
//! burn 0.22 computes softmax from differentiable pieces (max, subtract, exp, sum, divide), so a
//! training step's backward pass runs the chain rule through each of them and computes every
//! exponential again (`Exp`'s backward recomputes `exp(x)`); the causal mask was a host-built
//! `-inf` tensor added to the scores in every layer. On SmolLM2 LoRA training on the CPU that was
//! about a fifth of the main thread's time (perf, 2026-12-01). On the CPU backend (flex)
//! [`softmax_causal`] is one kernel forward, `y = exp(x - max) / Σ exp(x - max)` over the columns
//! each row may see (the causal mask is an index bound, not a tensor), and one backward from the
//! saved output, `dx = y ⊙ (dy − Σ dy ⊙ y)` (the softmax Jacobian-vector product; masked
//! entries have `y = 0`), both split over rows with rayon; an autodiff node of its own (a burn
//! backend extension) keeps `y` for the backward. On other backends (wgpu / WebGPU) it is the
//! additive mask and burn's `softmax`, as before.

use burn::tensor::Tensor;

/// A causal mask over the last two axes of attention scores `[…, rows, columns]`: row `r` may
/// attend to columns `0..=offset + r % period` (later ones get probability 0). `period` is the
/// number of new positions (the rows stack `rows / period` query heads of one KV group, each over
/// the same positions) and `offset` the number of positions before them (cached, or a shared
/// prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Causal {
    /// New positions per stacked head (`seq_len`).
    pub period: usize,
    /// Positions before the new ones.
    pub offset: usize,
}

impl Causal {
    /// Checks that the mask fits `rows × columns` scores: `rows` a multiple of `period > 0`
    /// and `columns == offset + period`.
    ///
    /// # Panics
    ///
    /// If it does not fit: a caller's bug, the attention code builds the mask and the scores
    /// from the same shapes.
    pub fn check(self, rows: usize, columns: usize) {
        let Causal { period, offset } = self;
        assert!(
            period > 0 && rows.is_multiple_of(period) && columns == offset + period,
            "causal mask with period {period} and offset {offset} over {rows} x {columns} scores"
        );
    }
}

/// `softmax(x, D - 1)`: rows of the last axis sum to 1. Entries of `-inf` (masked positions)
/// get probability 0; each row needs one finite entry.
///
/// # Shapes
///
/// - x, output: any shape; the last axis is normalised
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&x.device()) {
        return Tensor::from_dispatch(
            <burn::backend::Dispatch as flex::SoftmaxBackend>::softmax_last(x.into_dispatch()),
        );
    }
    burn::tensor::activation::softmax(x, D - 1)
}

/// [`softmax_last`] of attention scores under a [`Causal`] mask (`None`: no mask). On the CPU
/// backend the mask is applied inside the kernel; elsewhere an additive `-inf` mask is built and
/// added first.
///
/// # Shapes
///
/// - x, output: `[batch_size, heads, rows, offset + period]`
///
/// # Panics
///
/// If the last axis is not `offset + period` long or `rows` is not a multiple of `period` (a
/// caller's bug: the attention code builds both from the same shapes).
pub fn softmax_causal(x: Tensor<4>, causal: Option<Causal>) -> Tensor<4> {
    let Some(Causal { period, offset }) = causal else {
        return softmax_last(x);
    };
    let [_, _, rows, columns] = x.dims();
    Causal { period, offset }.check(rows, columns);
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&x.device()) {
        return Tensor::from_dispatch(
            <burn::backend::Dispatch as flex::SoftmaxBackend>::softmax_last_causal(
                x.into_dispatch(),
                period,
                offset,
            ),
        );
    }
    let mask = causal_mask(rows / period, period, offset, &x.device());
    softmax_last(x + mask.unsqueeze::<4>())
}

/// Additive causal mask for `seq_len` new positions after `start` earlier ones, repeated for the
/// `n_rep` stacked query heads of a KV group: `0` where attending is allowed, `-inf` elsewhere.
///
/// # Shapes
///
/// - output: `[n_rep · seq_len, start + seq_len]`
fn causal_mask(
    n_rep: usize,
    seq_len: usize,
    start: usize,
    device: &burn::tensor::Device,
) -> Tensor<2> {
    let total_len = start + seq_len;
    let mut mask = Vec::with_capacity(n_rep * seq_len * total_len);
    for _ in 0..n_rep {
        for i in 0..seq_len {
            mask.extend((0..total_len).map(|j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            }));
        }
    }
    Tensor::from_data(
        burn::tensor::TensorData::new(mask, [n_rep * seq_len, total_len]),
        device,
    )
}

#[cfg(feature = "flex")]
pub(crate) use flex::SoftmaxBackend;

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::TensorMetadata;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, backend_extension};
    use burn_flex::{Flex, FlexTensor};

    use crate::ops::host::{cast_back, dense_f32, map_rows, values};
    use crate::ops::simd;

    /// Softmax over the last axis and its backward, as one kernel each where the backend has
    /// one.
    #[backend_extension(Flex, Autodiff)]
    pub trait SoftmaxBackend: Backend {
        /// `softmax(x)` over the last axis.
        fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
        /// `softmax(x)` over the last axis of `[…, rows, columns]` scores where row `r` sees
        /// columns `0..=offset + r % period` only ([`super::Causal`]).
        fn softmax_last_causal(
            x: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> FloatTensor<Self>;
        /// The gradient of `x` from the output `y` of a softmax above (masked or not) and the
        /// gradient `grad` of `y`: `y ⊙ (grad − Σ_last grad ⊙ y)`.
        fn softmax_last_backward(
            y: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self>;
    }

    /// `out[..visible] = softmax(row[..visible])`, the rest 0.
    #[inline(always)]
    fn softmax_row(out: &mut [f32], row: &[f32], visible: usize) {
        let (row, (out, masked)) = (&row[..visible], out.split_at_mut(visible));
        let sum = simd::exp_shifted_sum(out, row, simd::max(row));
        let inv = 1.0 / sum;
        out.iter_mut().for_each(|o| *o *= inv);
        masked.fill(0.0);
    }

    /// The softmax kernel; `visible(row index, columns)` is how many leading columns a row sees.
    fn softmax_kernel(x: FlexTensor, visible: impl Fn(usize, usize) -> usize + Sync) -> FlexTensor {
        let dtype = x.dtype();
        let x = dense_f32(x);
        let values = values(&x);
        let out = map_rows(x.layout().shape(), |r, out| {
            let n = out.len();
            let row = &values[r * n..(r + 1) * n];
            simd::vectorized(
                #[inline(always)]
                || softmax_row(out, row, visible(r, n).min(n)),
            );
        });
        cast_back(out, dtype)
    }

    impl SoftmaxBackend for Flex {
        fn softmax_last(x: FlexTensor) -> FlexTensor {
            softmax_kernel(x, |_, n| n)
        }

        fn softmax_last_causal(x: FlexTensor, period: usize, offset: usize) -> FlexTensor {
            let dims = x.layout().shape().as_slice();
            let rows = dims.len().checked_sub(2).map_or(1, |d| dims[d]).max(1);
            let period = period.max(1);
            softmax_kernel(x, move |r, _| offset + (r % rows) % period + 1)
        }

        fn softmax_last_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
            let dtype = y.dtype();
            let (y, grad) = (dense_f32(y), dense_f32(grad));
            let shape = y.layout().shape().clone();
            let (ys, gs) = (values(&y), values(&grad));
            let out = map_rows(&shape, |r, out| {
                let n = out.len();
                let (y, g) = (&ys[r * n..(r + 1) * n], &gs[r * n..(r + 1) * n]);
                simd::vectorized(
                    #[inline(always)]
                    || {
                        let dot = simd::dot(y, g);
                        for ((o, &yi), &gi) in out.iter_mut().zip(y).zip(g) {
                            *o = yi * (gi - dot);
                        }
                    },
                );
            });
            cast_back(out, dtype)
        }
    }

    /// The autodiff node: the forward of the wrapped backend, its output kept for the backward.
    #[derive(Debug)]
    struct SoftmaxLast;

    impl<B: Backend + SoftmaxBackend> Backward<B, 1> for SoftmaxLast {
        type State = FloatTensor<B>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [parent] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            if let Some(parent) = parent {
                grads.register::<B>(parent.id, B::softmax_last_backward(ops.state, grad));
            }
        }
    }

    /// [`SoftmaxLast`] around a forward `f` of the wrapped backend.
    fn tracked<B: Backend + SoftmaxBackend, C: CheckpointStrategy>(
        x: FloatTensor<Autodiff<B, C>>,
        f: impl FnOnce(FloatTensor<B>) -> FloatTensor<B>,
    ) -> FloatTensor<Autodiff<B, C>> {
        match SoftmaxLast
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = f(x.primitive().clone());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(f(x.primitive().clone())),
        }
    }

    impl<B: Backend + SoftmaxBackend, C: CheckpointStrategy> SoftmaxBackend for Autodiff<B, C> {
        fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
            tracked::<B, C>(x, B::softmax_last)
        }

        fn softmax_last_causal(
            x: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> FloatTensor<Self> {
            tracked::<B, C>(x, |x| B::softmax_last_causal(x, period, offset))
        }

        fn softmax_last_backward(
            y: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            // differentiable pieces (a second derivative through the fused backward is never
            // needed by umi, but stays correct)
            let last = y.shape().num_dims().saturating_sub(1);
            let dot = Self::float_sum_dim(Self::float_mul(grad.clone(), y.clone()), last);
            Self::float_mul(y, Self::float_sub(grad, dot))
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor, TensorData};

    use super::{Causal, causal_mask, softmax_causal, softmax_last};
    use crate::ops::max_abs_diff;

    /// Scores with a causal `-inf` mask, like attention's.
    fn scores(device: &Device) -> Tensor<3> {
        let x = Tensor::<3>::random([3, 5, 7], Distribution::Normal(0.0, 3.0), device);
        let mut mask = vec![0f32; 5 * 7];
        for i in 0..5 {
            for j in 0..7 {
                if j > i + 2 {
                    mask[i * 7 + j] = f32::NEG_INFINITY;
                }
            }
        }
        x + Tensor::<2>::from_data(TensorData::new(mask, [5, 7]), device).unsqueeze::<3>()
    }

    #[test]
    fn the_fused_softmax_and_its_gradient_equal_burns() {
        let device = Device::flex().autodiff();
        assert!(
            crate::ops::host::is_flex(&device),
            "the fused kernel is what is tested"
        );
        let x = scores(&device);
        // a strided input: the kernel reads it densely
        let x = x.swap_dims(0, 1).swap_dims(0, 1);
        let upstream = Tensor::<3>::random([3, 5, 7], Distribution::Normal(0.0, 1.0), &device);

        let reference = |fused: bool| {
            let x = x.clone().detach().require_grad();
            let y = if fused {
                softmax_last(x.clone())
            } else {
                burn::tensor::activation::softmax(x.clone(), 2)
            };
            let loss = (y.clone() * upstream.clone()).sum();
            let grads = loss.backward();
            (y.detach(), x.grad(&grads).unwrap())
        };
        let (y_fused, g_fused) = reference(true);
        let (y_burn, g_burn) = reference(false);
        assert!(max_abs_diff(y_fused.clone(), y_burn) < 1e-6);
        let g_burn = Tensor::<3>::from_data(g_burn.into_data(), &Device::flex());
        let g_fused = Tensor::<3>::from_data(g_fused.into_data(), &Device::flex());
        assert!(max_abs_diff(g_fused, g_burn) < 1e-5);
        // masked entries get 0 and rows sum to 1
        let y = y_fused.into_data();
        let y = y.as_slice::<f32>().unwrap();
        assert_eq!(y[6], 0.0, "row 0 attends to columns 0..3 only");
        for row in y.chunks(7) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn without_autodiff_it_is_the_same_forward() {
        let device = Device::flex();
        let x = scores(&device);
        let diff = max_abs_diff(
            softmax_last(x.clone()),
            burn::tensor::activation::softmax(x, 2),
        );
        assert!(diff < 1e-6, "{diff}");
    }

    /// The causal kernel against the additive mask + burn's softmax, forward and gradient: 2 KV
    /// heads, 3 stacked query heads of 4 new positions after 5 earlier ones.
    #[test]
    fn the_causal_kernel_equals_the_additive_mask() {
        let device = Device::flex().autodiff();
        let (period, offset) = (4, 5);
        let shape = [2, 2, 3 * period, offset + period];
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 2.0), &device);
        let upstream = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = x.clone().detach().require_grad();
            let y = if fused {
                softmax_causal(x.clone(), Some(Causal { period, offset }))
            } else {
                let mask = causal_mask(3, period, offset, &x.device());
                burn::tensor::activation::softmax(x.clone() + mask.unsqueeze::<4>(), 3)
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let g = x.grad(&grads).unwrap();
            (
                y.detach().into_data().try_to_vec::<f32>().unwrap(),
                g.into_data().try_to_vec::<f32>().unwrap(),
            )
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        assert!(diff(&y1, &y2) < 1e-6 && diff(&g1, &g2) < 1e-5);
        // row 1 of the second stacked head (position offset + 1) sees columns 0..=6
        let row = &y1[(period + 1) * (offset + period)..(period + 2) * (offset + period)];
        assert!(row[..7].iter().all(|&p| p > 0.0) && row[7..].iter().all(|&p| p == 0.0));
        assert_eq!(softmax_causal(x.clone(), None).dims(), shape);
    }
}

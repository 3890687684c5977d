//! Softmax over the last axis, the attention probabilities of [`crate::llama`].
//!
//! burn 0.22 computes softmax from differentiable pieces (max, subtract, exp, sum, divide), so a
//! training step's backward pass runs the chain rule through each of them and computes every
//! exponential again (`Exp`'s backward recomputes `exp(x)`): on SmolLM2 LoRA training on the CPU
//! that was about a fifth of the main thread's time (perf, 2026-12-01). On the CPU backend (flex)
//! [`softmax_last`] is one kernel forward, `y = exp(x - max) / Σ exp(x - max)` row by row, and one
//! backward from the saved output, `dx = y ⊙ (dy − Σ dy ⊙ y)` (the softmax Jacobian-vector product),
//! both split over rows with rayon; an autodiff node of its own (a burn backend extension) keeps
//! `y` for the backward. On other backends (wgpu / WebGPU) it is burn's `softmax`.

use burn::tensor::Tensor;

/// `softmax(x, D - 1)`: rows of the last axis sum to 1. Entries of `-inf` (masked positions)
/// get probability 0; each row needs one finite entry.
///
/// # Shapes
///
/// - x, output: any shape; the last axis is normalised
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if flex::is_flex(&x.device()) {
        return Tensor::from_dispatch(
            <burn::backend::Dispatch as flex::SoftmaxBackend>::softmax_last(x.into_dispatch()),
        );
    }
    burn::tensor::activation::softmax(x, D - 1)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::TensorMetadata;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ops::{ActivationOps, FloatTensorOps};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, backend_extension};
    use burn::tensor::{DType, Device, TensorData};
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    /// Whether `device` (or the device an autodiff device wraps) is the CPU backend.
    pub fn is_flex(device: &Device) -> bool {
        matches!(
            device.clone().inner().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        )
    }

    /// Softmax over the last axis and its backward, as one kernel each where the backend has
    /// one.
    #[backend_extension(Flex, Autodiff)]
    pub trait SoftmaxBackend: Backend {
        /// `softmax(x)` over the last axis.
        fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
        /// The gradient of `x` from the output `y` of [`SoftmaxBackend::softmax_last`] and the
        /// gradient `grad` of `y`: `y ⊙ (grad − Σ_last grad ⊙ y)`.
        fn softmax_last_backward(
            y: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self>;
    }

    /// Rows of at least this many values are split over threads.
    const PARALLEL_ELEMENTS: usize = 1 << 14;

    /// The values of `t` in row-major order (a copy only when `t` is strided).
    fn dense(t: &FlexTensor) -> FlexTensor {
        if t.layout().contiguous_offsets().is_some() {
            t.clone()
        } else {
            t.to_contiguous()
        }
    }

    /// Applies `row(out_row, inputs…)` to every row of the last axis, over threads when large.
    fn map_rows(
        shape: &burn::tensor::Shape,
        inputs: &[&[f32]],
        row: impl Fn(&mut [f32], &[&[f32]]) + Sync,
    ) -> FlexTensor {
        let n = *shape.as_slice().last().unwrap_or(&1);
        let mut out = vec![0f32; shape.num_elements()];
        if n > 0 {
            let job = |(r, o): (usize, &mut [f32])| {
                let rows: Vec<&[f32]> = inputs.iter().map(|x| &x[r * n..(r + 1) * n]).collect();
                row(o, &rows);
            };
            if out.len() >= PARALLEL_ELEMENTS {
                out.par_chunks_mut(n).enumerate().for_each(job);
            } else {
                out.chunks_mut(n).enumerate().for_each(job);
            }
        }
        FlexTensor::from_data(TensorData::new(out, shape.clone()))
    }

    impl SoftmaxBackend for Flex {
        fn softmax_last(x: FlexTensor) -> FlexTensor {
            if x.dtype() != DType::F32 {
                let last = x.layout().num_dims().saturating_sub(1);
                return <Flex as ActivationOps<Flex>>::softmax(x, last);
            }
            let x = dense(&x);
            let values = x.as_slice::<f32>().expect("dense f32");
            map_rows(x.layout().shape(), &[values], |out, rows| {
                let row = rows[0];
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                out.iter_mut().for_each(|o| *o *= inv);
            })
        }

        fn softmax_last_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
            if y.dtype() != DType::F32 || grad.dtype() != DType::F32 {
                let last = y.layout().num_dims().saturating_sub(1);
                let dot = Flex::float_sum_dim(Flex::float_mul(grad.clone(), y.clone()), last);
                return Flex::float_mul(y, Flex::float_sub(grad, dot));
            }
            let (y, grad) = (dense(&y), dense(&grad));
            let shape = y.layout().shape().clone();
            let (ys, gs) = (
                y.as_slice::<f32>().expect("dense f32"),
                grad.as_slice::<f32>().expect("dense f32"),
            );
            map_rows(&shape, &[ys, gs], |out, rows| {
                let (y, g) = (rows[0], rows[1]);
                let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
                for ((o, &yi), &gi) in out.iter_mut().zip(y).zip(g) {
                    *o = yi * (gi - dot);
                }
            })
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

    impl<B: Backend + SoftmaxBackend, C: CheckpointStrategy> SoftmaxBackend for Autodiff<B, C> {
        fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
            match SoftmaxLast
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = B::softmax_last(x.primitive().clone());
                    prep.finish(y.clone(), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.primitive().clone())),
            }
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

    use super::softmax_last;

    fn max_abs_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        let (a, b) = (a.into_data(), b.into_data());
        a.as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(b.as_slice::<f32>().unwrap())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

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
            super::flex::is_flex(&device),
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
}

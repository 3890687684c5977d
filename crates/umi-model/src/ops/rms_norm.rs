//! Root-mean-square layer norm (Zhang & Sennrich 2019; `LlamaRMSNorm` in transformers'
//! `modeling_llama.py`): `y = x · r · w` per row, with `r = 1 / sqrt(mean(x²) + ε)`.
//!
//! Composed from burn's operations it is seven passes (square, mean, add, square root,
//! reciprocal, two products), each with a buffer of its own, twice per layer and once at the
//! end; a decode step of SmolLM2 ran 427 of them on one thread, and under autodiff each is a
//! graph node with a backward pass. On the CPU backend (flex) [`rms_norm`] is one pass over the
//! rows (over rayon's threads when large), and one autodiff node whose backward is one pass
//! too, from the kept input:
//!
//! - `dx = r · (dy ⊙ w − x · r² · Σ_j (dy_j · w_j · x_j) / n)` per row (`n` the row's width),
//! - `dw = Σ_rows dy ⊙ x · r`, summed over fixed blocks of rows in order (the same result
//!   whatever the number of threads), only when `w` is trained.
//!
//! Elsewhere (wgpu / WebGPU) it is burn's operations.

use burn::tensor::Tensor;

/// `x · r · weight` with `r = 1 / sqrt(mean(x²) + eps)` over the last axis of `x`.
///
/// # Shapes
///
/// - x: `[batch_size, seq_len, hidden_size]`
/// - weight: `[hidden_size]`
/// - output: `[batch_size, seq_len, hidden_size]`
///
/// # Panics
///
/// If `weight` is not as wide as `x`'s rows (a caller's bug: the weights loader checks the
/// checkpoint's shapes).
pub fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    assert_eq!(
        x.dims()[2],
        weight.dims()[0],
        "rms_norm: rows of {:?} against a weight of {:?}",
        x.dims(),
        weight.dims()
    );
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&x.device()) {
        return Tensor::from_dispatch(<burn::backend::Dispatch as flex::RmsNormBackend>::rms_norm(
            x.into_dispatch(),
            weight.into_dispatch(),
            eps,
        ));
    }
    composed(x, weight, eps)
}

/// [`rms_norm`] from burn's operations (the other backends, and the tests' reference).
///
/// Written `x · (r · weight)` rather than `x · r · weight`: burn's fusion (wgpu) cannot take
/// the weight's reshape into a chain already begun, so in the second order the last product
/// ran as a kernel of its own (a launch more per norm, two per layer, on a decode step).
fn composed(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    let mean_square = x.clone().square().mean_dim(2); // [batch_size, seq_len, 1]
    let inv_rms = mean_square.add_scalar(eps).sqrt().recip();
    x * (inv_rms * weight.unsqueeze::<3>())
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension};
    use burn::tensor::TensorData;
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    use crate::ops::host::{PARALLEL_ELEMENTS, cast_back, dense_f32, for_chunks, values};
    use crate::ops::simd;

    /// Rows per task (and per partial sum of `dw`): fixed, so that `dw` does not depend on
    /// the number of threads.
    const ROWS: usize = 32;

    /// The norm and its backward, as one pass each where the backend has one.
    #[backend_extension(Flex, Autodiff)]
    pub trait RmsNormBackend: Backend {
        /// `x · r · weight` per row of the last axis, `r = 1 / sqrt(mean(x²) + eps)`.
        fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64)
        -> FloatTensor<Self>;

        /// The gradients of `x` and (only when `want_dw`; an empty tensor otherwise) of
        /// `weight`, from the gradient `grad` of the output.
        fn rms_norm_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            eps: f64,
            want_dw: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);
    }

    /// `1 / sqrt(mean(x²) + eps)` of one row (its squares summed in SIMD lanes,
    /// [`simd::dot`]: the same order at every SIMD level).
    #[inline(always)]
    fn inv_rms(x: &[f32], eps: f64) -> f32 {
        1.0 / (simd::dot(x, x) / x.len() as f32 + eps as f32).sqrt()
    }

    impl RmsNormBackend for Flex {
        fn rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
            let dtype = x.dtype();
            let shape = x.layout().shape().clone();
            let (x, weight) = (dense_f32(x), dense_f32(weight));
            let (xs, w) = (values(&x), values(&weight));
            let n = w.len();
            let mut out = vec![0f32; xs.len()];
            for_chunks(&mut out, ROWS * n, |task, out| {
                let at = task * ROWS * n;
                simd::vectorized(
                    #[inline(always)]
                    || {
                        for (o, x) in out.chunks_exact_mut(n).zip(xs[at..].chunks_exact(n)) {
                            let r = inv_rms(x, eps);
                            for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                                *o = x * r * w;
                            }
                        }
                    },
                )
            });
            cast_back(FlexTensor::from_data(TensorData::new(out, shape)), dtype)
        }

        fn rms_norm_backward(
            x: FlexTensor,
            weight: FlexTensor,
            grad: FlexTensor,
            eps: f64,
            want_dw: bool,
        ) -> (FlexTensor, FlexTensor) {
            let dtype = x.dtype();
            let shape = x.layout().shape().clone();
            let (x, weight, grad) = (dense_f32(x), dense_f32(weight), dense_f32(grad));
            let (xs, w, dys) = (values(&x), values(&weight), values(&grad));
            let n = w.len();
            let mut dx = vec![0f32; xs.len()];
            // each block of rows: its rows' dx, and its share of dw (when wanted)
            let block = |(task, dx): (usize, &mut [f32])| -> Vec<f32> {
                let at = task * ROWS * n;
                let mut dw = vec![0f32; if want_dw { n } else { 0 }];
                simd::vectorized(
                    #[inline(always)]
                    || {
                        for (i, dx) in dx.chunks_exact_mut(n).enumerate() {
                            let row = at + i * n;
                            let (x, dy) = (&xs[row..row + n], &dys[row..row + n]);
                            let r = inv_rms(x, eps);
                            // dy ⊙ w first (in dx), then its dot product with x
                            for ((dx, &g), &w) in dx.iter_mut().zip(dy).zip(w) {
                                *dx = g * w;
                            }
                            let c = r * r * simd::dot(dx, x) / n as f32;
                            for (dx, &x) in dx.iter_mut().zip(x) {
                                *dx = r * (*dx - x * c);
                            }
                            for ((dw, &g), &x) in dw.iter_mut().zip(dy).zip(x) {
                                *dw += g * x * r;
                            }
                        }
                    },
                );
                dw
            };
            let partials: Vec<Vec<f32>> = if xs.len() >= PARALLEL_ELEMENTS {
                dx.par_chunks_mut(ROWS * n.max(1))
                    .enumerate()
                    .map(block)
                    .collect()
            } else {
                dx.chunks_mut(ROWS * n.max(1))
                    .enumerate()
                    .map(block)
                    .collect()
            };
            let mut dw = vec![0f32; if want_dw { n } else { 0 }];
            for partial in &partials {
                for (dw, &p) in dw.iter_mut().zip(partial) {
                    *dw += p;
                }
            }
            let dw_len = dw.len();
            (
                cast_back(FlexTensor::from_data(TensorData::new(dx, shape)), dtype),
                cast_back(FlexTensor::from_data(TensorData::new(dw, [dw_len])), dtype),
            )
        }
    }

    /// The autodiff node: `x`, the weight and ε kept for the backward.
    #[derive(Debug)]
    struct RmsNorm;

    impl<B: Backend + RmsNormBackend> Backward<B, 2> for RmsNorm {
        type State = (FloatTensor<B>, FloatTensor<B>, f64);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [x_parent, w_parent] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let (x, weight, eps) = ops.state;
            let (dx, dw) = B::rms_norm_backward(x, weight, grad, eps, w_parent.is_some());
            if let Some(parent) = x_parent {
                grads.register::<B>(parent.id, dx);
            }
            if let Some(parent) = w_parent {
                grads.register::<B>(parent.id, dw);
            }
        }
    }

    impl<B: Backend + RmsNormBackend, C: CheckpointStrategy> RmsNormBackend for Autodiff<B, C> {
        fn rms_norm(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            eps: f64,
        ) -> FloatTensor<Self> {
            let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
            match RmsNorm
                .prepare::<C>([x.node(), weight.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let out = B::rms_norm(xp.clone(), wp.clone(), eps);
                    prep.finish((xp, wp, eps), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::rms_norm(xp, wp, eps)),
            }
        }

        fn rms_norm_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            eps: f64,
            want_dw: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            // values, not differentiated further (umi never takes a second derivative)
            let (dx, dw) = B::rms_norm_backward(
                x.primitive().clone(),
                weight.primitive().clone(),
                grad.primitive().clone(),
                eps,
                want_dw,
            );
            (Self::from_inner(dx), Self::from_inner(dw))
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::{composed, rms_norm};
    use crate::ops::max_abs_diff;

    /// The fused pass and the gradients of `x` and of the weight against burn's composed
    /// form: a decode step's row, a block of rows with a partial last task, enough rows to
    /// split over threads (in fixed blocks), rows of very different scales, and the weight
    /// both trained and frozen (as under LoRA: no `dw` then).
    #[test]
    fn the_fused_norm_and_its_gradients_equal_burns() {
        let device = Device::flex().autodiff();
        let host3 = |t: Tensor<3>| Tensor::<3>::from_data(t.into_data(), &Device::flex());
        let host1 = |t: Tensor<1>| Tensor::<1>::from_data(t.into_data(), &Device::flex());
        for (batch_size, seq_len, width, train_weight) in [
            (1, 1, 64, true),
            (2, 37, 96, true),
            (1, 512, 576, true),
            (2, 40, 576, false),
        ] {
            let shape = [batch_size, seq_len, width];
            let scales = Tensor::<3>::random(
                [batch_size, seq_len, 1],
                Distribution::Uniform(-3.0, 3.0),
                &device,
            )
            .exp();
            let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device) * scales;
            let weight = Tensor::<1>::random([width], Distribution::Normal(1.0, 0.3), &device);
            let upstream = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let x = x.clone().detach().require_grad();
                let w = if train_weight {
                    weight.clone().detach().require_grad()
                } else {
                    weight.clone().detach()
                };
                let y = if fused {
                    rms_norm(x.clone(), w.clone(), 1e-5)
                } else {
                    composed(x.clone(), w.clone(), 1e-5)
                };
                let grads = (y.clone() * upstream.clone()).sum().backward();
                let dw = w.grad(&grads).map(host1);
                (host3(y.detach()), host3(x.grad(&grads).unwrap()), dw)
            };
            let (y0, dx0, dw0) = run(false);
            let (y1, dx1, dw1) = run(true);
            let at = format!("{shape:?}, weight trained {train_weight}");
            let relative = |a: f32, b: Tensor<3>| a / b.abs().max().into_scalar::<f32>().max(1e-30);
            assert!(
                relative(max_abs_diff(y1, y0.clone()), y0) < 1e-5,
                "output, {at}"
            );
            assert!(
                relative(max_abs_diff(dx1, dx0.clone()), dx0) < 1e-4,
                "dx, {at}"
            );
            match (dw0, dw1) {
                (Some(dw0), Some(dw1)) => {
                    let scale = dw0.clone().abs().max().into_scalar::<f32>();
                    assert!(max_abs_diff(dw1, dw0) / scale < 1e-4, "dw, {at}");
                }
                (None, None) => assert!(!train_weight, "no dw for a trained weight, {at}"),
                _ => panic!("dw given for only one of the two forms, {at}"),
            }
        }
    }

    /// Without autodiff (decoding) the fused pass is the same norm.
    #[test]
    fn without_autodiff_it_is_the_same_norm() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 5, 64], Distribution::Normal(0.0, 3.0), &device);
        let w = Tensor::<1>::random([64], Distribution::Normal(1.0, 0.3), &device);
        let want = composed(x.clone(), w.clone(), 1e-6);
        assert!(max_abs_diff(rms_norm(x, w, 1e-6), want) < 1e-5);
    }
}

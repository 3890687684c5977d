//! SwiGLU, the Llama MLP's gate: `silu(gate) ⊙ up` with `silu(g) = g·σ(g) = g / (1 + e^-g)`
//! (Shazeer 2020; `LlamaMLP` in transformers' `modeling_llama.py`).
//!
//! burn 0.22's `silu(g) * up` is three operations (sigmoid, two products), three
//! `[tokens, intermediate_size]` buffers in the forward pass and three more in the backward,
//! with libm's scalar `expf` for the sigmoid. On the CPU backend (flex) [`swiglu`] is one kernel
//! forward and one backward, from the saved inputs, for both gradients:
//! `∂/∂up = dy ⊙ silu(g)`, `∂/∂g = dy ⊙ up ⊙ σ(g)·(1 + g·(1 − σ(g)))`, with [`simd::exp`];
//! an autodiff node of its own (a burn backend extension) keeps `g` and `up`. On other backends
//! (wgpu / WebGPU) it is the same formula in burn's operations.
//!
//! [`simd::exp`]: crate::ops::simd::exp

use burn::tensor::Tensor;

/// `silu(gate) ⊙ up`, element-wise.
///
/// # Shapes
///
/// - gate, up, output: the same shape (`[batch_size, seq_len, intermediate_size]` in the MLP)
///
/// # Panics
///
/// If the shapes of `gate` and `up` differ (a caller's bug: the MLP's two projections have the
/// same width).
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    assert_eq!(
        gate.dims(),
        up.dims(),
        "swiglu: gate and up differ in shape"
    );
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&gate.device()) {
        return Tensor::from_dispatch(<burn::backend::Dispatch as flex::SwiGluBackend>::swiglu(
            gate.into_dispatch(),
            up.into_dispatch(),
        ));
    }
    if gate.is_autodiff() {
        // training: burn's stable form, whose gradient stays finite where e^-g overflows
        return burn::tensor::activation::silu(gate) * up;
    }
    composed(gate, up)
}

/// [`swiglu`] from burn's operations, `silu(g) = g / (1 + e^-g)` written out (inference):
/// burn 0.22's `sigmoid` goes through `log_sigmoid` with casts to f32 and back, operations
/// burn's fusion (wgpu) left as a kernel each on decode steps; these five fuse into one. Where
/// `e^-g` overflows (g < −88) the quotient is −0, silu's limit.
fn composed<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    gate.clone() / gate.neg().exp().add_scalar(1.0) * up
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ops::{ActivationOps, FloatTensorOps};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, backend_extension};
    use burn::tensor::TensorData;
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    use crate::ops::host::{PARALLEL_ELEMENTS, cast_back, dense_f32, for_chunks, values};
    use crate::ops::simd;

    /// Values per task of the element-wise loops.
    const CHUNK: usize = 4096;

    /// SwiGLU and its backward, as one kernel each where the backend has one.
    #[backend_extension(Flex, Autodiff)]
    pub trait SwiGluBackend: Backend {
        /// `silu(gate) ⊙ up`.
        fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
        /// The gradients of `gate` and `up` from the gradient `grad` of the output.
        fn swiglu_backward(
            gate: FloatTensor<Self>,
            up: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);
    }

    /// `σ(g)`.
    #[inline(always)]
    fn sigmoid(g: f32) -> f32 {
        1.0 / (1.0 + simd::exp(-g))
    }

    impl SwiGluBackend for Flex {
        fn swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
            let dtype = gate.dtype();
            let shape = gate.layout().shape().clone();
            let (gate, up) = (dense_f32(gate), dense_f32(up));
            let (g, u) = (values(&gate), values(&up));
            let mut out = vec![0f32; g.len()];
            for_chunks(&mut out, CHUNK, |c, out| {
                let (g, u) = (&g[c * CHUNK..], &u[c * CHUNK..]);
                simd::vectorized(
                    #[inline(always)]
                    || {
                        for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
                            *o = g * sigmoid(g) * u;
                        }
                    },
                )
            });
            cast_back(FlexTensor::from_data(TensorData::new(out, shape)), dtype)
        }

        fn swiglu_backward(
            gate: FlexTensor,
            up: FlexTensor,
            grad: FlexTensor,
        ) -> (FlexTensor, FlexTensor) {
            let dtype = gate.dtype();
            let shape = gate.layout().shape().clone();
            let (gate, up, grad) = (dense_f32(gate), dense_f32(up), dense_f32(grad));
            let (g, u, dy) = (values(&gate), values(&up), values(&grad));
            let (mut dg, mut du) = (vec![0f32; g.len()], vec![0f32; g.len()]);
            let job = |(c, (dg, du)): (usize, (&mut [f32], &mut [f32]))| {
                let at = c * CHUNK;
                let (g, u, dy) = (&g[at..], &u[at..], &dy[at..]);
                simd::vectorized(
                    #[inline(always)]
                    || {
                        for (i, (dg, du)) in dg.iter_mut().zip(du.iter_mut()).enumerate() {
                            let s = sigmoid(g[i]);
                            *du = dy[i] * g[i] * s;
                            *dg = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                        }
                    },
                )
            };
            if g.len() >= PARALLEL_ELEMENTS {
                dg.par_chunks_mut(CHUNK)
                    .zip(du.par_chunks_mut(CHUNK))
                    .enumerate()
                    .for_each(job);
            } else {
                dg.chunks_mut(CHUNK)
                    .zip(du.chunks_mut(CHUNK))
                    .enumerate()
                    .for_each(job);
            }
            let tensor = |v: Vec<f32>| {
                cast_back(
                    FlexTensor::from_data(TensorData::new(v, shape.clone())),
                    dtype,
                )
            };
            (tensor(dg), tensor(du))
        }
    }

    /// The autodiff node: the wrapped backend's forward, its two inputs kept for the backward.
    #[derive(Debug)]
    struct SwiGlu;

    impl<B: Backend + SwiGluBackend> Backward<B, 2> for SwiGlu {
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [gate_parent, up_parent] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let (gate, up) = ops.state;
            let (d_gate, d_up) = B::swiglu_backward(gate, up, grad);
            if let Some(parent) = gate_parent {
                grads.register::<B>(parent.id, d_gate);
            }
            if let Some(parent) = up_parent {
                grads.register::<B>(parent.id, d_up);
            }
        }
    }

    impl<B: Backend + SwiGluBackend, C: CheckpointStrategy> SwiGluBackend for Autodiff<B, C> {
        fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
            match SwiGlu
                .prepare::<C>([gate.node(), up.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (g, u) = (gate.primitive().clone(), up.primitive().clone());
                    let out = B::swiglu(g.clone(), u.clone());
                    prep.finish((g, u), out)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::swiglu(gate.primitive().clone(), up.primitive().clone()))
                }
            }
        }

        fn swiglu_backward(
            gate: FloatTensor<Self>,
            up: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            // differentiable pieces (umi never takes a second derivative, but it stays correct):
            // ∂/∂g = dy ⊙ up ⊙ (σ + silu − silu ⊙ σ)
            let s = Self::sigmoid(gate.clone());
            let silu = Self::float_mul(gate, s.clone());
            let d_up = Self::float_mul(grad.clone(), silu.clone());
            let factor = Self::float_add(
                s.clone(),
                Self::float_sub(silu.clone(), Self::float_mul(silu, s)),
            );
            let d_gate = Self::float_mul(Self::float_mul(grad, up), factor);
            (d_gate, d_up)
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::swiglu;
    use crate::ops::max_abs_diff;

    /// The fused kernel and its gradients against burn's `silu(g) * up`, on a tensor large
    /// enough to be split over threads (and with a tail shorter than a task), and on a strided
    /// one.
    #[test]
    fn the_fused_swiglu_and_its_gradients_equal_burns() {
        let device = Device::flex().autodiff();
        assert!(crate::ops::host::is_flex(&device));
        for shape in [[2, 3, 5], [3, 50, 130]] {
            let gate = Tensor::<3>::random(shape, Distribution::Normal(0.0, 4.0), &device);
            let up = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let upstream = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool, strided: bool| {
                let g = gate.clone().detach().require_grad();
                let u = up.clone().detach().require_grad();
                let (gi, ui) = if strided {
                    (
                        g.clone().swap_dims(0, 2).swap_dims(0, 2),
                        u.clone().swap_dims(1, 2).swap_dims(1, 2),
                    )
                } else {
                    (g.clone(), u.clone())
                };
                let y = if fused {
                    swiglu(gi, ui)
                } else {
                    burn::tensor::activation::silu(gi) * ui
                };
                let grads = (y.clone() * upstream.clone()).sum().backward();
                let host = |t: Tensor<3>| Tensor::<3>::from_data(t.into_data(), &Device::flex());
                (
                    host(y.detach()),
                    host(g.grad(&grads).unwrap()),
                    host(u.grad(&grads).unwrap()),
                )
            };
            let (y0, dg0, du0) = run(false, false);
            for strided in [false, true] {
                let (y1, dg1, du1) = run(true, strided);
                assert!(max_abs_diff(y1, y0.clone()) < 1e-5);
                assert!(max_abs_diff(dg1, dg0.clone()) < 1e-5);
                assert!(max_abs_diff(du1, du0.clone()) < 1e-5);
            }
        }
    }

    #[test]
    fn without_autodiff_it_is_the_same_forward() {
        let device = Device::flex();
        let gate = Tensor::<3>::random([2, 7, 33], Distribution::Normal(0.0, 5.0), &device);
        let up = Tensor::<3>::random([2, 7, 33], Distribution::Normal(0.0, 1.0), &device);
        let want = burn::tensor::activation::silu(gate.clone()) * up.clone();
        assert!(max_abs_diff(swiglu(gate, up), want) < 1e-5);
    }

    /// The GPU path's written-out form equals burn's `silu(g) · up`, also where `e^-g`
    /// overflows f32 (g < −88: silu is −0 there, not NaN) and for large positive g.
    #[test]
    fn the_written_out_form_is_burns_silu() {
        let device = Device::flex();
        let gate = Tensor::<3>::random([2, 7, 33], Distribution::Normal(0.0, 5.0), &device);
        let up = Tensor::<3>::random([2, 7, 33], Distribution::Normal(0.0, 1.0), &device);
        let want = burn::tensor::activation::silu(gate.clone()) * up.clone();
        assert!(max_abs_diff(super::composed(gate, up), want) < 1e-5);

        let gate = Tensor::<1>::from_data([-200.0, -89.0, -20.0, 0.0, 3.0, 90.0, 500.0], &device);
        let up = Tensor::<1>::ones([7], &device);
        let got = super::composed(gate.clone(), up.clone()).into_data();
        let want = (burn::tensor::activation::silu(gate) * up).into_data();
        for (g, w) in got.iter::<f32>().zip(want.iter::<f32>()) {
            assert!(
                g.is_finite() && (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{g} vs {w}"
            );
        }
    }
}

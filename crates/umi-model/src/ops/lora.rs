//! A LoRA adapter's share of a projection for training: `y + s · (x · A) · B` (Hu et al. 2021,
//! §4.1; PEFT's `lora.Linear.forward`), with `s = alpha / r`.
//!
//! Composed from burn's operations under autodiff it is two products, a scaling and a sum
//! forward and, backward, four products and two scalings, each its own graph node. Every
//! product has one side of rank `r` (8 or 16), so `tokens · in · r` stays under the size from
//! which burn-flex splits a GEMM over threads: on 1 × 512 tokens of SmolLM2 they ran on one
//! thread while the other waited (a quarter of the training thread's samples were such small
//! GEMMs, perf 2026-12-06), and the two `[tokens, out]` scalings and the sum were serial
//! passes. On the CPU backend (flex) [`lora_add`] is one node: forward by blocks of
//! [`ROWS`] tokens or more over rayon's threads (`x · A`, then `(x · A) · B` added into `y` with the
//! scaling in the same pass), and backward from the kept `x · A`:
//!
//! - `dH = s · dY · Bᵀ` and `dX = dH · Aᵀ` by blocks of tokens,
//! - `dA = Xᵀ · dH` by blocks of input features,
//! - `dBᵀ = s · dYᵀ · H` by blocks of output features (then transposed, `[r, out]`),
//!
//! where `H = x · A`; `dY` reaches `y` unchanged. Each output value is one GEMM's sum over the
//! whole shared axis wherever its block runs, so the result does not depend on the number of
//! threads. Elsewhere (wgpu / WebGPU, no autodiff) it is burn's operations.

use burn::tensor::Tensor;

/// `y + scaling · (x · a) · b`.
///
/// # Shapes
///
/// - y: `[tokens, out]`, x: `[tokens, in]`, a: `[in, r]`, b: `[r, out]`; output `[tokens, out]`
///
/// # Panics
///
/// If the shapes disagree (a caller's bug: [`crate::LoraLinear`] builds them).
pub fn lora_add(y: Tensor<2>, x: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scaling: f64) -> Tensor<2> {
    let ([tokens, d_in], [a_in, rank], [b_rank, d_out]) = (x.dims(), a.dims(), b.dims());
    assert!(
        a_in == d_in && b_rank == rank && y.dims() == [tokens, d_out],
        "lora_add: y {:?}, x {:?}, A {:?}, B {:?} disagree",
        y.dims(),
        x.dims(),
        a.dims(),
        b.dims()
    );
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&x.device()) {
        let (out, _) = <burn::backend::Dispatch as flex::LoraBackend>::lora_add(
            y.into_dispatch(),
            x.into_dispatch(),
            a.into_dispatch(),
            b.into_dispatch(),
            scaling,
        );
        return Tensor::from_dispatch(out);
    }
    y + x.matmul(a).matmul(b).mul_scalar(scaling)
}

/// Tokens (forward, `dX`) or features (`dA`, `dB`) per task, at least.
#[cfg(feature = "flex")]
pub const ROWS: usize = 64;

/// Rows per task for `n` rows: [`ROWS`], or an eighth of them when that is more (8 tasks: an
/// even share for 2 or 4 threads; 4 × 512 tokens of SmolLM2 in blocks of 64 spent more on
/// 32 GEMM calls per product than the split gained). A function of `n` alone, so a value
/// never depends on the number of threads.
#[cfg(feature = "flex")]
fn rows_per_task(n: usize) -> usize {
    n.div_ceil(8).max(ROWS)
}

#[cfg(feature = "flex")]
pub(super) mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension};
    use burn::tensor::TensorData;
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    use crate::ops::host::{
        cast_back, columns_t_view as columns_t, dense_f32, dims2, row_view as rows, transpose_2d,
        values,
    };
    use crate::ops::simd;

    /// A LoRA adapter's share as one node where the backend has a kernel.
    #[backend_extension(Flex, Autodiff)]
    pub trait LoraBackend: Backend {
        /// `y + scaling · (x · a) · b`, and `x · a` (`[tokens, r]`) for the backward pass.
        fn lora_add(
            y: FloatTensor<Self>,
            x: FloatTensor<Self>,
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            scaling: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);

        /// The gradients of `x` (only when `want_dx`; an empty tensor otherwise), `a` and `b`
        /// from the gradient `grad` of the output and `h = x · a`.
        #[allow(clippy::too_many_arguments)]
        fn lora_backward(
            x: FloatTensor<Self>,
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            h: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            scaling: f64,
            want_dx: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    /// A `[n_rows, width]` matrix filled by blocks of [`super::rows_per_task`] rows over
    /// rayon's threads: the rows from `row` are `scale · product(row, count)` (a `[count,
    /// width]` tensor). Each value is one GEMM's sum wherever its block runs.
    fn by_blocks(
        n_rows: usize,
        width: usize,
        scale: f32,
        product: impl Fn(usize, usize) -> FlexTensor + Sync,
    ) -> Vec<f32> {
        let mut out = vec![0f32; n_rows * width];
        let block = super::rows_per_task(n_rows);
        out.par_chunks_mut(block * width.max(1))
            .enumerate()
            .for_each(|(c, out)| {
                let part = product(c * block, out.len() / width.max(1));
                for (o, &v) in out.iter_mut().zip(values(&part)) {
                    *o = scale * v;
                }
            });
        out
    }

    impl LoraBackend for Flex {
        fn lora_add(
            y: FlexTensor,
            x: FlexTensor,
            a: FlexTensor,
            b: FlexTensor,
            scaling: f64,
        ) -> (FlexTensor, FlexTensor) {
            let dtype = y.dtype();
            let (y, x, a, b) = (dense_f32(y), dense_f32(x), dense_f32(a), dense_f32(b));
            let ([tokens, d_out], rank) = (dims2(&y), dims2(&a)[1]);
            let s = scaling as f32;
            let mut out = vec![0f32; tokens * d_out];
            let mut h = vec![0f32; tokens * rank];
            let ys = values(&y);
            let block = super::rows_per_task(tokens);
            out.par_chunks_mut(block * d_out.max(1))
                .zip(h.par_chunks_mut(block * rank.max(1)))
                .enumerate()
                .for_each(|(c, (out, h))| {
                    let (row, n) = (c * block, h.len() / rank.max(1));
                    let hc = Flex::float_matmul(rows(&x, row, n), a.clone()); // [n, r]
                    h.copy_from_slice(values(&hc));
                    let d = Flex::float_matmul(hc, b.clone()); // [n, out]
                    let (d, y) = (values(&d), &ys[row * d_out..(row + n) * d_out]);
                    simd::vectorized(
                        #[inline(always)]
                        || {
                            for ((o, &y), &d) in out.iter_mut().zip(y).zip(d) {
                                *o = y + s * d;
                            }
                        },
                    );
                });
            let out = FlexTensor::from_data(TensorData::new(out, [tokens, d_out]));
            let h = FlexTensor::from_data(TensorData::new(h, [tokens, rank]));
            (cast_back(out, dtype), h)
        }

        fn lora_backward(
            x: FlexTensor,
            a: FlexTensor,
            b: FlexTensor,
            h: FlexTensor,
            grad: FlexTensor,
            scaling: f64,
            want_dx: bool,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let dtype = x.dtype();
            let (x, a, b, h, g) = (
                dense_f32(x),
                dense_f32(a),
                dense_f32(b),
                dense_f32(h),
                dense_f32(grad),
            );
            let ([tokens, d_in], [rank, d_out]) = (dims2(&x), dims2(&b));
            let s = scaling as f32;
            // dH = s · dY · Bᵀ, then dX = dH · Aᵀ, by blocks of tokens
            let bt = b.clone().transpose(0, 1); // [out, r]
            let dh = by_blocks(tokens, rank, s, |row, n| {
                Flex::float_matmul(rows(&g, row, n), bt.clone())
            });
            let dh = FlexTensor::from_data(TensorData::new(dh, [tokens, rank]));
            let at = a.clone().transpose(0, 1); // [r, in]
            let dx = if want_dx {
                by_blocks(tokens, d_in, 1.0, |row, n| {
                    Flex::float_matmul(rows(&dh, row, n), at.clone())
                })
            } else {
                Vec::new()
            };
            // dA = Xᵀ · dH ([in, r]), by blocks of input features
            let da = by_blocks(d_in, rank, 1.0, |col, n| {
                Flex::float_matmul(columns_t(&x, col, n), dh.clone())
            });
            // dBᵀ = s · dYᵀ · H ([out, r]), by blocks of output features
            let dbt = by_blocks(d_out, rank, s, |col, n| {
                Flex::float_matmul(columns_t(&g, col, n), h.clone())
            });
            let db = transpose_2d(&FlexTensor::from_data(TensorData::new(dbt, [d_out, rank])));
            let dx = FlexTensor::from_data(TensorData::new(
                dx,
                if want_dx { [tokens, d_in] } else { [0, 0] },
            ));
            let da = FlexTensor::from_data(TensorData::new(da, [d_in, rank]));
            (
                cast_back(dx, dtype),
                cast_back(da, dtype),
                cast_back(db, dtype),
            )
        }
    }

    /// The autodiff node: `x`, `A`, `B` and `H = x · A` kept for the backward pass.
    #[derive(Debug)]
    struct Lora {
        scaling: f64,
    }

    impl<B: Backend + LoraBackend> Backward<B, 4> for Lora {
        type State = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
        );

        fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [y_parent, x_parent, a_parent, b_parent] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let (x, a, b, h) = ops.state;
            let (dx, da, db) =
                B::lora_backward(x, a, b, h, grad.clone(), self.scaling, x_parent.is_some());
            for (parent, g) in [
                (y_parent, grad),
                (x_parent, dx),
                (a_parent, da),
                (b_parent, db),
            ] {
                if let Some(parent) = parent {
                    grads.register::<B>(parent.id, g);
                }
            }
        }
    }

    impl<B: Backend + LoraBackend, C: CheckpointStrategy> LoraBackend for Autodiff<B, C> {
        fn lora_add(
            y: FloatTensor<Self>,
            x: FloatTensor<Self>,
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            scaling: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let (yp, xp, ap, bp) = (
                y.primitive().clone(),
                x.primitive().clone(),
                a.primitive().clone(),
                b.primitive().clone(),
            );
            match (Lora { scaling })
                .prepare::<C>([y.node(), x.node(), a.node(), b.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (out, h) = B::lora_add(yp, xp.clone(), ap.clone(), bp.clone(), scaling);
                    let h_out = Self::from_inner(h.clone());
                    (prep.finish((xp, ap, bp, h), out), h_out)
                }
                OpsKind::UnTracked(prep) => {
                    let (out, h) = B::lora_add(yp, xp, ap, bp, scaling);
                    (prep.finish(out), Self::from_inner(h))
                }
            }
        }

        fn lora_backward(
            x: FloatTensor<Self>,
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            h: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            scaling: f64,
            want_dx: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // values, not differentiated further (umi never takes a second derivative)
            let (dx, da, db) = B::lora_backward(
                x.primitive().clone(),
                a.primitive().clone(),
                b.primitive().clone(),
                h.primitive().clone(),
                grad.primitive().clone(),
                scaling,
                want_dx,
            );
            (
                Self::from_inner(dx),
                Self::from_inner(da),
                Self::from_inner(db),
            )
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::{ROWS, lora_add};
    use crate::ops::max_abs_diff;

    /// The node's output and the gradients of all four inputs against burn's composed
    /// `y + s · (x · a) · b`, for token, input and output counts around the block size
    /// ([`ROWS`]: a partial last block, a single short block; past 8 blocks, where a task takes
    /// more rows), ranks 8 and 16; and with `x` not tracked (no `dX` asked) and strided inputs.
    #[test]
    fn the_lora_node_and_its_gradients_equal_burns_composed_form() {
        let device = Device::flex().autodiff();
        let host = |t: Tensor<2>| Tensor::<2>::from_data(t.into_data(), &Device::flex());
        for (tokens, d_in, d_out, rank, x_tracked) in [
            (3, 5, 7, 8, true),
            (ROWS + 13, 2 * ROWS + 1, 130, 8, true),
            (2 * ROWS, 96, ROWS, 16, false),
            (9 * ROWS + 5, 40, 9 * ROWS + 70, 8, true),
        ] {
            let y = Tensor::<2>::random([tokens, d_out], Distribution::Normal(0.0, 1.0), &device);
            let x = Tensor::<2>::random([tokens, d_in], Distribution::Normal(0.0, 1.0), &device);
            let a = Tensor::<2>::random([d_in, rank], Distribution::Normal(0.0, 0.5), &device);
            let b = Tensor::<2>::random([rank, d_out], Distribution::Normal(0.0, 0.5), &device);
            let upstream =
                Tensor::<2>::random([tokens, d_out], Distribution::Normal(0.0, 1.0), &device);
            let scaling = 2.5;
            let run = |fused: bool, strided: bool| {
                let yi = y.clone().detach().require_grad();
                let xi = if x_tracked {
                    x.clone().detach().require_grad()
                } else {
                    x.clone().detach()
                };
                let ai = a.clone().detach().require_grad();
                let bi = b.clone().detach().require_grad();
                let (xs, bs) = if strided {
                    (
                        xi.clone().swap_dims(0, 1).swap_dims(0, 1),
                        bi.clone().swap_dims(0, 1).swap_dims(0, 1),
                    )
                } else {
                    (xi.clone(), bi.clone())
                };
                let out = if fused {
                    lora_add(yi.clone(), xs, ai.clone(), bs, scaling)
                } else {
                    yi.clone() + xs.matmul(ai.clone()).matmul(bs).mul_scalar(scaling)
                };
                let grads = (out.clone() * upstream.clone()).sum().backward();
                let dx = if x_tracked {
                    Some(host(xi.grad(&grads).expect("dX")))
                } else {
                    assert!(xi.grad(&grads).is_none());
                    None
                };
                (
                    host(out.detach()),
                    host(yi.grad(&grads).expect("dY")),
                    dx,
                    host(ai.grad(&grads).expect("dA")),
                    host(bi.grad(&grads).expect("dB")),
                )
            };
            let want = run(false, false);
            for strided in [false, true] {
                let got = run(true, strided);
                let case = format!("{tokens}x{d_in}->{d_out}, r {rank}, strided {strided}");
                // f32 sums in another order: within 1e-5 of the largest value
                let close = |name: &str, g: Tensor<2>, w: Tensor<2>| {
                    let scale = w.clone().abs().max().into_scalar::<f32>().max(1.0);
                    let diff = max_abs_diff(g, w);
                    assert!(diff <= 1e-5 * scale, "{name}, {case}: {diff} of {scale}");
                };
                close("output", got.0, want.0.clone());
                close("dY", got.1, want.1.clone());
                if let (Some(g), Some(w)) = (got.2, want.2.clone()) {
                    close("dX", g, w);
                }
                close("dA", got.3, want.3.clone());
                close("dB", got.4, want.4.clone());
            }
        }
    }

    #[test]
    fn without_autodiff_it_is_the_same_forward() {
        let device = Device::flex();
        let y = Tensor::<2>::random([70, 33], Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<2>::random([70, 20], Distribution::Normal(0.0, 1.0), &device);
        let a = Tensor::<2>::random([20, 8], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([8, 33], Distribution::Normal(0.0, 1.0), &device);
        let want = y.clone()
            + x.clone()
                .matmul(a.clone())
                .matmul(b.clone())
                .mul_scalar(2.0);
        assert!(max_abs_diff(lora_add(y, x, a, b, 2.0), want) < 1e-4);
    }
}

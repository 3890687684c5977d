//! The LM head and the cross-entropy loss in one operation: `mean_i (logsumexp(h_i · Wᵀ) −
//! (h_i · Wᵀ)[t_i])`, the causal-LM loss of the positions that predict a target (Hugging Face's
//! `ForCausalLMLoss`, mean reduction).
//!
//! Composed from burn's operations the logits of every target position are one
//! `[targets, vocab_size]` tensor (SmolLM2: 49,152 per position, 403 MB for a 4 × 512 batch), and
//! `log_softmax`, `gather` and their backward read and write it, or a tensor of its size, about a
//! dozen times, each pass a fresh allocation. On the CPU backend (flex) [`linear_cross_entropy`]
//! takes the positions 128 at a time: their logits (one GEMM), the softmax and the loss of each
//! row in place, then the gradient of the hidden states `(softmax − onehot) · W / targets` (a
//! second GEMM) and, when the head's weight is trained, its gradient `(softmax − onehot)ᵀ · h /
//! targets`, all during the forward pass; the autodiff node keeps only these gradients and scales
//! them by the upstream gradient in the backward pass. Same multiply-adds as the composed form,
//! no logits tensor beyond one block (as Liger Kernel's fused linear cross-entropy). Other
//! backends (wgpu / WebGPU) take the composed form.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

/// Mean negative log-likelihood of `targets` under the logits `hidden · weightᵀ`.
///
/// # Shapes
///
/// - hidden: `[n, hidden_size]`, the final hidden states of the positions that predict a target
/// - weight: `[vocab_size, hidden_size]`, the LM head as Hugging Face stores it (or the tied
///   token embedding)
/// - targets: `n` token ids, each below `vocab_size`
/// - output: `[1]`
///
/// # Panics
///
/// If the widths differ, `targets.len() != n`, `n == 0` or a target is not below `vocab_size`
/// (a caller's bug: the loss code checks labels against the vocabulary first).
pub fn linear_cross_entropy(hidden: Tensor<2>, weight: Tensor<2>, targets: &[usize]) -> Tensor<1> {
    let ([n, width], [vocab_size, w_width]) = (hidden.dims(), weight.dims());
    assert!(
        width == w_width && n == targets.len() && n > 0,
        "linear_cross_entropy: hidden {:?}, weight {:?}, {} targets",
        hidden.dims(),
        weight.dims(),
        targets.len()
    );
    assert!(
        targets.iter().all(|&t| t < vocab_size),
        "linear_cross_entropy: a target is not below the vocabulary size {vocab_size}"
    );
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&hidden.device()) {
        return Tensor::from_dispatch(
            <burn::backend::Dispatch as flex::LinearCrossEntropyBackend>::linear_cross_entropy(
                hidden.into_dispatch(),
                weight.into_dispatch(),
                targets.to_vec(),
            ),
        );
    }
    composed(hidden, weight, targets)
}

/// [`linear_cross_entropy`] from burn's operations: logits, `log_softmax`, `gather`, mean.
fn composed(hidden: Tensor<2>, weight: Tensor<2>, targets: &[usize]) -> Tensor<1> {
    let n = targets.len();
    let device = hidden.device();
    let logits = crate::ops::matmul_weight(hidden, weight, crate::ops::WeightLayout::OutIn);
    let ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, 1]), &device);
    log_softmax(logits, 1)
        .gather(1, ids)
        .neg()
        .sum()
        .div_scalar(n as f64)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension};
    use burn::tensor::{Shape, TensorData};
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    use crate::ops::host::{as_f32, cast_back, dense_f32, values};
    use crate::ops::simd;

    /// Target positions per block: the logits of one block are `ROWS × vocab_size` values
    /// (25 MB for SmolLM2), enough rows for the GEMMs to run at full speed.
    const ROWS: usize = 128;

    /// The LM head and cross-entropy as one operation where the backend has one.
    #[backend_extension(Flex, Autodiff)]
    pub trait LinearCrossEntropyBackend: Backend {
        /// The mean loss `[1]` (see [`super::linear_cross_entropy`]).
        fn linear_cross_entropy(
            hidden: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            targets: Vec<usize>,
        ) -> FloatTensor<Self>;

        /// The mean loss `[1]` with the gradients of the mean loss with respect to `hidden`
        /// (`[n, hidden_size]`) and, when `weight_grad`, to `weight` (`[vocab_size,
        /// hidden_size]`; `[0]` otherwise).
        fn linear_cross_entropy_with_grads(
            hidden: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            targets: Vec<usize>,
            weight_grad: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    /// The loss (summed over the rows) and, with `grads`, the gradients of the mean loss.
    fn fused(
        hidden: FlexTensor,
        weight: FlexTensor,
        targets: &[usize],
        grads: bool,
        weight_grad: bool,
    ) -> (f64, Vec<f32>, Option<FlexTensor>) {
        let hidden = dense_f32(hidden);
        let weight = as_f32(weight); // strided views are multiplied as they are
        let dims = hidden.layout().shape().as_slice().to_vec();
        let (n, width) = (dims[0], dims[1]);
        let vocab_size = weight.layout().shape().as_slice()[0];
        let weight_t = weight.transpose(0, 1); // [hidden_size, vocab_size]
        let scale = 1.0 / n as f32;
        let mut loss = 0f64;
        let mut d_hidden = Vec::with_capacity(if grads { n * width } else { 0 });
        let mut d_weight: Option<FlexTensor> = None;
        for start in (0..n).step_by(ROWS) {
            let len = ROWS.min(n - start);
            let h = hidden.narrow(0, start, len);
            let mut logits = Flex::float_matmul(h.clone(), weight_t.clone()); // [len, vocab_size]
            let rows_targets = &targets[start..start + len];
            let losses: Vec<f64> = logits
                .storage_mut::<f32>()
                .par_chunks_mut(vocab_size)
                .zip(rows_targets)
                .map(|(row, &t)| {
                    let picked = row[t];
                    simd::vectorized(
                        #[inline(always)]
                        || {
                            let (max, sum) = simd::exp_shifted_in_place(row);
                            if grads {
                                // the gradient of the mean loss: (softmax − onehot) / n
                                let inv = scale / sum;
                                row.iter_mut().for_each(|x| *x *= inv);
                                row[t] -= scale;
                            }
                            f64::from(max) + f64::from(sum).ln() - f64::from(picked)
                        },
                    )
                })
                .collect();
            loss += losses.iter().sum::<f64>();
            if grads {
                let d_h = Flex::float_matmul(logits.clone(), weight.clone()); // [len, hidden_size]
                d_hidden.extend_from_slice(values(&d_h));
                if weight_grad {
                    let d_w = Flex::float_matmul(logits.transpose(0, 1), h); // [vocab, hidden]
                    d_weight = Some(match d_weight {
                        Some(acc) => Flex::float_add(acc, d_w),
                        None => d_w,
                    });
                }
            }
        }
        (loss, d_hidden, d_weight)
    }

    /// A `[1]` tensor holding `value`.
    fn scalar(value: f64) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(vec![value as f32], [1]))
    }

    impl LinearCrossEntropyBackend for Flex {
        fn linear_cross_entropy(
            hidden: FlexTensor,
            weight: FlexTensor,
            targets: Vec<usize>,
        ) -> FlexTensor {
            let dtype = hidden.dtype();
            let (loss, _, _) = fused(hidden, weight, &targets, false, false);
            cast_back(scalar(loss / targets.len() as f64), dtype)
        }

        fn linear_cross_entropy_with_grads(
            hidden: FlexTensor,
            weight: FlexTensor,
            targets: Vec<usize>,
            weight_grad: bool,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let dtype = hidden.dtype();
            let shape = hidden.layout().shape().clone();
            let (loss, d_hidden, d_weight) = fused(hidden, weight, &targets, true, weight_grad);
            let d_hidden = FlexTensor::from_data(TensorData::new(d_hidden, shape));
            let d_weight = d_weight
                .unwrap_or_else(|| FlexTensor::from_data(TensorData::new(Vec::<f32>::new(), [0])));
            (
                cast_back(scalar(loss / targets.len() as f64), dtype),
                cast_back(d_hidden, dtype),
                cast_back(d_weight, dtype),
            )
        }
    }

    /// The autodiff node: the gradients of the mean loss computed in the forward pass, scaled
    /// by the upstream gradient.
    #[derive(Debug)]
    struct LinearCrossEntropy;

    impl<B: Backend + LinearCrossEntropyBackend> Backward<B, 2> for LinearCrossEntropy {
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [hidden_parent, weight_parent] = ops.parents;
            let grad = grads.consume::<B>(&ops.node); // [1]
            let upstream = B::float_reshape(grad, Shape::new([1, 1]));
            let (d_hidden, d_weight) = ops.state;
            if let Some(parent) = hidden_parent {
                grads.register::<B>(parent.id, B::float_mul(d_hidden, upstream.clone()));
            }
            if let Some(parent) = weight_parent {
                grads.register::<B>(parent.id, B::float_mul(d_weight, upstream));
            }
        }
    }

    impl<B: Backend + LinearCrossEntropyBackend, C: CheckpointStrategy> LinearCrossEntropyBackend
        for Autodiff<B, C>
    {
        fn linear_cross_entropy(
            hidden: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            targets: Vec<usize>,
        ) -> FloatTensor<Self> {
            let weight_grad = weight.is_tracked();
            match LinearCrossEntropy
                .prepare::<C>([hidden.node(), weight.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (loss, d_hidden, d_weight) = B::linear_cross_entropy_with_grads(
                        hidden.primitive().clone(),
                        weight.primitive().clone(),
                        targets,
                        weight_grad,
                    );
                    prep.finish((d_hidden, d_weight), loss)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::linear_cross_entropy(
                    hidden.primitive().clone(),
                    weight.primitive().clone(),
                    targets,
                )),
            }
        }

        fn linear_cross_entropy_with_grads(
            hidden: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            targets: Vec<usize>,
            weight_grad: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // values, not differentiated further (umi never takes a second derivative of the loss)
            let (loss, d_hidden, d_weight) = B::linear_cross_entropy_with_grads(
                hidden.primitive().clone(),
                weight.primitive().clone(),
                targets,
                weight_grad,
            );
            (
                Self::from_inner(loss),
                Self::from_inner(d_hidden),
                Self::from_inner(d_weight),
            )
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::{composed, linear_cross_entropy};

    /// The fused loss and its gradients (hidden states and a trained head weight) against the
    /// composed form, over more positions than one block (a partial last block), with a
    /// strided weight view (a tied embedding is viewed as it is stored).
    #[test]
    fn the_fused_loss_and_its_gradients_equal_the_composed_form() {
        let device = Device::flex().autodiff();
        assert!(crate::ops::host::is_flex(&device));
        let (n, width, vocab) = (300, 24, 517);
        let hidden = Tensor::<2>::random([n, width], Distribution::Normal(0.0, 1.0), &device);
        // the weight held [hidden, vocab] and viewed [vocab, hidden]: a strided view
        let held = Tensor::<2>::random([width, vocab], Distribution::Normal(0.0, 0.5), &device);
        let targets: Vec<usize> = (0..n).map(|i| (i * 7919 + 13) % vocab).collect();
        let run = |fused: bool| {
            let h = hidden.clone().detach().require_grad();
            let w = held.clone().detach().require_grad();
            let loss = if fused {
                linear_cross_entropy(h.clone(), w.clone().transpose(), &targets)
            } else {
                composed(h.clone(), w.clone().transpose(), &targets)
            };
            // a non-unit upstream gradient, as gradient accumulation weighs micro-batches
            let grads = loss.clone().mul_scalar(0.75).backward();
            let host = |t: Tensor<2>| {
                t.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32")
            };
            (
                loss.into_scalar::<f32>(),
                host(h.grad(&grads).expect("hidden grad")),
                host(w.grad(&grads).expect("weight grad")),
            )
        };
        let ((l1, dh1, dw1), (l2, dh2, dw2)) = (run(true), run(false));
        let max_diff = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        assert!((l1 - l2).abs() < 1e-5 * l2.abs(), "{l1} vs {l2}");
        assert!(max_diff(&dh1, &dh2) < 1e-6, "{}", max_diff(&dh1, &dh2));
        assert!(max_diff(&dw1, &dw2) < 1e-6, "{}", max_diff(&dw1, &dw2));
        // the gradients are not all zero (the comparison above could not fail otherwise)
        assert!(dh1.iter().any(|&g| g.abs() > 1e-5) && dw1.iter().any(|&g| g.abs() > 1e-5));
    }

    /// A frozen head (LoRA training): only the hidden states get a gradient; and without
    /// autodiff the same loss value.
    #[test]
    fn a_frozen_head_and_plain_tensors_give_the_same_loss() {
        let device = Device::flex().autodiff();
        let hidden = Tensor::<2>::random([5, 8], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<2>::random([11, 8], Distribution::Normal(0.0, 1.0), &device);
        let targets = [0, 10, 3, 3, 7];
        let h = hidden.clone().require_grad();
        let loss = linear_cross_entropy(h.clone(), weight.clone(), &targets);
        let grads = loss.clone().backward();
        assert!(h.grad(&grads).is_some() && weight.grad(&grads).is_none());
        let plain = Device::flex();
        let on_plain = |t: Tensor<2>| Tensor::<2>::from_data(t.into_data(), &plain);
        let value = linear_cross_entropy(on_plain(hidden.clone()), on_plain(weight), &targets);
        let (a, b) = (loss.into_scalar::<f32>(), value.into_scalar::<f32>());
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

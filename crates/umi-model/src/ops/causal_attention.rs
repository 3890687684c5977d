//! Causal attention for training on the CPU backend (flex): forward and backward block by block
//! of [`BLOCK`] query positions, each block's products over only the keys it may see.
//!
//! Composed from burn's operations, a training sequence's attention is two whole
//! `[rows, positions]` products forward and four backward, half of whose multiply-adds are
//! multiplied by the mask's zeros, and the probabilities kept for the backward pass are the whole
//! matrix (38 MB per layer for SmolLM2 at 4 × 512). Here each block of [`BLOCK`] positions of one
//! query head is one task (over rayon's threads): its scores over the keys before its last
//! position (one GEMM), the masked softmax in place, its output (a second GEMM), and only those
//! probabilities are kept. The backward pass, per block again: `dP = dO · Vᵀ`, `dS = P ⊙ (dP −
//! rowsum(dP ⊙ P))` (the softmax's Jacobian-vector product), `dQ = dS · K`, and the block's
//! shares of `dK = dSᵀ · Q` and `dV = Pᵀ · dO`, summed over blocks afterwards. For `n` blocks
//! that is `(n + 1) / 2n` of the composed form's multiply-adds and memory: 9/16 at 512
//! positions. The GEMMs are burn-flex's (the `gemm` crate) on views of the tensors' storage.

/// Query positions per block.
#[cfg(feature = "flex")]
pub const BLOCK: usize = 64;

#[cfg(feature = "flex")]
pub(super) mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension};
    use burn::tensor::{DType, Shape, TensorData};
    use burn_flex::{Flex, FlexTensor, Layout};
    use rayon::prelude::*;

    use super::BLOCK;
    use crate::ops::host::{cast_back, dense_f32, plain_f32, values};
    use crate::ops::simd;

    /// Causal attention for training as one node where the backend has a kernel.
    #[backend_extension(Flex, Autodiff)]
    pub trait CausalAttentionBackend: Backend {
        /// `softmax(q · kᵀ) · v` where row `r` of each batch and head sees the columns
        /// `0..=offset + r % period`; returns the output and the probabilities the backward
        /// pass reads (block by block, flat).
        fn causal_attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);

        /// The gradients of `q`, `k` and `v` from the gradient `grad` of the output and the
        /// probabilities [`causal_attention`](CausalAttentionBackend::causal_attention) returned.
        #[allow(clippy::too_many_arguments)]
        fn causal_attention_backward(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            probs: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    /// One block: batch `b`, KV head `h`, stacked query head `r`, positions `start..start +
    /// len` of the period; it sees keys `0..seen`; its probabilities start at `probs` in the
    /// flat buffer.
    #[derive(Clone, Copy)]
    struct Block {
        b: usize,
        h: usize,
        row: usize,
        len: usize,
        first_visible: usize,
        seen: usize,
        probs: usize,
    }

    /// The blocks of a call, in the order of the output's rows, and the probabilities' length.
    fn blocks(dims: [usize; 4], period: usize, offset: usize) -> (Vec<Block>, usize) {
        let [batch_size, heads, rows, _] = dims;
        let mut out = Vec::new();
        let mut probs = 0;
        for b in 0..batch_size {
            for h in 0..heads {
                for r in 0..rows / period {
                    for start in (0..period).step_by(BLOCK) {
                        let len = BLOCK.min(period - start);
                        let seen = offset + start + len;
                        out.push(Block {
                            b,
                            h,
                            row: r * period + start,
                            len,
                            first_visible: offset + start + 1,
                            seen,
                            probs,
                        });
                        probs += len * seen;
                    }
                }
            }
        }
        (out, probs)
    }

    /// Rows `row..row + n` of batch `b`, head `h` of a 4-D tensor, as a `[n, head_dim]` view.
    fn rows(t: &FlexTensor, (b, h): (usize, usize), row: usize, n: usize) -> FlexTensor {
        let layout = t.layout();
        let s = layout.strides();
        let head_dim = layout.shape().as_slice()[3];
        let start =
            layout.start_offset() + b * s[0] as usize + h * s[1] as usize + row * s[2] as usize;
        let view = Layout::new(Shape::new([n, head_dim]), vec![s[2], s[3]], start);
        FlexTensor::from_arc(t.data_arc(), view, DType::F32)
    }

    /// `n` values of a flat tensor from `start`, as a `[rows, columns]` view.
    fn matrix(t: &FlexTensor, start: usize, rows: usize, columns: usize) -> FlexTensor {
        let view = Layout::new(
            Shape::new([rows, columns]),
            vec![columns as isize, 1],
            t.layout().start_offset() + start,
        );
        FlexTensor::from_arc(t.data_arc(), view, DType::F32)
    }

    /// `out` split into consecutive pieces of the given lengths.
    fn split(mut out: &mut [f32], lengths: impl Iterator<Item = usize>) -> Vec<&mut [f32]> {
        let mut pieces = Vec::new();
        for n in lengths {
            let (piece, rest) = out.split_at_mut(n);
            pieces.push(piece);
            out = rest;
        }
        pieces
    }

    impl CausalAttentionBackend for Flex {
        fn causal_attention(
            q: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            period: usize,
            offset: usize,
        ) -> (FlexTensor, FlexTensor) {
            let dtype = q.dtype();
            let (q, k, v) = (plain_f32(q), plain_f32(k), plain_f32(v));
            let dims: [usize; 4] = q.layout().shape().dims();
            let head_dim = dims[3];
            let (blocks, n_probs) = blocks(dims, period, offset);
            let mut out = vec![0f32; dims.iter().product()];
            let mut probs = vec![0f32; n_probs];
            let outs = split(&mut out, blocks.iter().map(|b| b.len * head_dim));
            let block_probs = split(&mut probs, blocks.iter().map(|b| b.len * b.seen));
            blocks
                .par_iter()
                .zip(outs)
                .zip(block_probs)
                .for_each(|((block, out), probs)| {
                    let at = (block.b, block.h);
                    let keys = rows(&k, at, 0, block.seen);
                    let mut scores = Flex::float_matmul(
                        rows(&q, at, block.row, block.len),
                        keys.transpose(0, 1),
                    ); // [len, seen]
                    let s = scores.storage_mut::<f32>();
                    simd::vectorized(
                        #[inline(always)]
                        || {
                            for (i, row) in s.chunks_exact_mut(block.seen).enumerate() {
                                let visible = block.first_visible + i;
                                let (row, masked) = row.split_at_mut(visible);
                                let (_, sum) = simd::exp_shifted_in_place(row);
                                let inv = 1.0 / sum;
                                row.iter_mut().for_each(|x| *x *= inv);
                                masked.fill(0.0);
                            }
                        },
                    );
                    probs.copy_from_slice(s);
                    let o = Flex::float_matmul(scores, rows(&v, at, 0, block.seen)); // [len, hd]
                    out.copy_from_slice(values(&o));
                });
            let out = FlexTensor::from_data(TensorData::new(out, dims));
            let probs = FlexTensor::from_data(TensorData::new(probs, [n_probs]));
            (cast_back(out, dtype), probs)
        }

        fn causal_attention_backward(
            q: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            probs: FlexTensor,
            grad: FlexTensor,
            period: usize,
            offset: usize,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let dtype = q.dtype();
            let (q, k, v, grad) = (plain_f32(q), plain_f32(k), plain_f32(v), plain_f32(grad));
            let probs = dense_f32(probs);
            let dims: [usize; 4] = q.layout().shape().dims();
            let kv_dims: [usize; 4] = k.layout().shape().dims();
            let head_dim = dims[3];
            let (blocks, _) = blocks(dims, period, offset);
            let mut dq = vec![0f32; dims.iter().product()];
            let dqs = split(&mut dq, blocks.iter().map(|b| b.len * head_dim));
            // each block's dQ rows, and its shares of dK and dV ([seen, head_dim] each)
            let shares: Vec<(FlexTensor, FlexTensor)> = blocks
                .par_iter()
                .zip(dqs)
                .map(|(block, dq)| {
                    let at = (block.b, block.h);
                    let (keys, vals) = (rows(&k, at, 0, block.seen), rows(&v, at, 0, block.seen));
                    let d_out = rows(&grad, at, block.row, block.len);
                    let p = matrix(&probs, block.probs, block.len, block.seen);
                    let mut ds = Flex::float_matmul(d_out.clone(), vals.transpose(0, 1)); // dP
                    let p_values =
                        &values(&probs)[block.probs..block.probs + block.len * block.seen];
                    simd::vectorized(
                        #[inline(always)]
                        || {
                            for (dp, p) in ds
                                .storage_mut::<f32>()
                                .chunks_exact_mut(block.seen)
                                .zip(p_values.chunks_exact(block.seen))
                            {
                                let dot = simd::dot(dp, p);
                                for (d, &p) in dp.iter_mut().zip(p) {
                                    *d = p * (*d - dot);
                                }
                            }
                        },
                    );
                    let d_q = Flex::float_matmul(ds.clone(), keys); // [len, head_dim]
                    dq.copy_from_slice(values(&d_q));
                    let d_k =
                        Flex::float_matmul(ds.transpose(0, 1), rows(&q, at, block.row, block.len));
                    let d_v = Flex::float_matmul(p.transpose(0, 1), d_out);
                    (d_k, d_v)
                })
                .collect();
            // the shares summed per batch and head, over the rows each block saw
            let positions = kv_dims[2];
            let per_head = positions * head_dim;
            let mut dk = vec![0f32; kv_dims.iter().product()];
            let mut dv = vec![0f32; kv_dims.iter().product()];
            let per_head_blocks = blocks.len() / (dims[0] * dims[1]);
            dk.par_chunks_mut(per_head)
                .zip(dv.par_chunks_mut(per_head))
                .zip(shares.par_chunks(per_head_blocks))
                .for_each(|((dk, dv), shares)| {
                    for (d_k, d_v) in shares {
                        let n = d_k.layout().shape().num_elements();
                        for (acc, &x) in dk[..n].iter_mut().zip(values(d_k)) {
                            *acc += x;
                        }
                        for (acc, &x) in dv[..n].iter_mut().zip(values(d_v)) {
                            *acc += x;
                        }
                    }
                });
            let tensor = |values: Vec<f32>, dims: [usize; 4]| {
                cast_back(FlexTensor::from_data(TensorData::new(values, dims)), dtype)
            };
            (tensor(dq, dims), tensor(dk, kv_dims), tensor(dv, kv_dims))
        }
    }

    /// The autodiff node: q, k, v and the probabilities kept for the backward pass.
    #[derive(Debug)]
    struct CausalAttention {
        period: usize,
        offset: usize,
    }

    impl<B: Backend + CausalAttentionBackend> Backward<B, 3> for CausalAttention {
        type State = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
        );

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [q_parent, k_parent, v_parent] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let (q, k, v, probs) = ops.state;
            let (dq, dk, dv) =
                B::causal_attention_backward(q, k, v, probs, grad, self.period, self.offset);
            for (parent, g) in [(q_parent, dq), (k_parent, dk), (v_parent, dv)] {
                if let Some(parent) = parent {
                    grads.register::<B>(parent.id, g);
                }
            }
        }
    }

    impl<B: Backend + CausalAttentionBackend, C: CheckpointStrategy> CausalAttentionBackend
        for Autodiff<B, C>
    {
        fn causal_attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let (qp, kp, vp) = (
                q.primitive().clone(),
                k.primitive().clone(),
                v.primitive().clone(),
            );
            match (CausalAttention { period, offset })
                .prepare::<C>([q.node(), k.node(), v.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (out, probs) =
                        B::causal_attention(qp.clone(), kp.clone(), vp.clone(), period, offset);
                    let probs_out = Self::from_inner(probs.clone());
                    (prep.finish((qp, kp, vp, probs), out), probs_out)
                }
                OpsKind::UnTracked(prep) => {
                    let (out, probs) = B::causal_attention(qp, kp, vp, period, offset);
                    (prep.finish(out), Self::from_inner(probs))
                }
            }
        }

        fn causal_attention_backward(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            probs: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            period: usize,
            offset: usize,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // values, not differentiated further (umi never takes a second derivative)
            let (dq, dk, dv) = B::causal_attention_backward(
                q.primitive().clone(),
                k.primitive().clone(),
                v.primitive().clone(),
                probs.primitive().clone(),
                grad.primitive().clone(),
                period,
                offset,
            );
            (
                Self::from_inner(dq),
                Self::from_inner(dk),
                Self::from_inner(dv),
            )
        }
    }
}

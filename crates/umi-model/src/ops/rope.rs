//! Rotary position embedding in Hugging Face's rotate-half layout (Su et al. 2021;
//! `apply_rotary_pos_emb` in transformers' `modeling_llama.py`): `x·cos + rotate_half(x)·sin`
//! with `rotate_half([x1, x2]) = [-x2, x1]`, the tables read from position `start` on.
//!
//! Composed from burn's operations it is a negation, a concatenation, two products and a sum
//! for each of `q` and `k` in every layer, each a serial pass with a buffer of its own, and
//! under autodiff five graph nodes and their backward passes. On the CPU backend (flex)
//! [`rope`] is one pass that reads `x` through its strides (the projections' heads view, no
//! copy), over rayon's threads when large, and one autodiff node whose backward is the same
//! pass rotated the other way: `dx_j = dy_j·cos_j + dy_{j+h}·sin_{j+h}` for the first half
//! (`h = head_dim / 2`) and `dx_j = dy_j·cos_j − dy_{j−h}·sin_{j−h}` for the second. Elsewhere
//! (wgpu / WebGPU) it is burn's operations, with `rotate_half` as one product by a signed
//! permutation (`x · R`) rather than a negation and a concatenation: on a GPU every operation
//! that burn's fusion cannot merge is a kernel launch, and the concatenation was three per
//! tensor (a negation and two slice assignments) where the product is one. The product is
//! exact: each output is one input times ±1 plus zeros.

use burn::tensor::Tensor;

/// `x·cos + rotate_half(x)·sin`, where position `s` of `x` takes row `start + s` of the tables.
///
/// # Shapes
///
/// - x: `[batch_size, heads, seq_len, head_dim]` (any strides), `head_dim` even
/// - cos, sin: `[positions, head_dim]`, with `start + seq_len <= positions`
/// - rotate_half: `[head_dim, head_dim]`, the signed permutation `R` with
///   `x · R = rotate_half(x)` ([`crate::rope::RotaryEmbedding::rotate_half`])
/// - output: `[batch_size, heads, seq_len, head_dim]`
///
/// # Panics
///
/// If the tables are shorter than `start + seq_len` or not `head_dim` wide (a caller's bug:
/// [`crate::rope::RotaryEmbedding`] builds them for the model's context and checks positions
/// before the forward pass).
pub fn rope(
    x: Tensor<4>,
    cos: &Tensor<2>,
    sin: &Tensor<2>,
    rotate_half: &Tensor<2>,
    start: usize,
) -> Tensor<4> {
    let [_, _, seq_len, head_dim] = x.dims();
    let [positions, width] = cos.dims();
    assert!(
        start + seq_len <= positions
            && width == head_dim
            && sin.dims() == cos.dims()
            && rotate_half.dims() == [head_dim, head_dim],
        "rope: positions {start}..{} of tables {:?} / {:?} / {:?} for heads of {head_dim}",
        start + seq_len,
        cos.dims(),
        sin.dims(),
        rotate_half.dims()
    );
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&x.device()) {
        return Tensor::from_dispatch(<burn::backend::Dispatch as flex::RopeBackend>::rope(
            x.into_dispatch(),
            cos.clone().into_dispatch(),
            sin.clone().into_dispatch(),
            start,
            false,
        ));
    }
    by_product(x, cos, sin, rotate_half, start)
}

/// [`rope`] from burn's operations, `rotate_half(x)` as the product `x · R` (the other
/// backends).
fn by_product(
    x: Tensor<4>,
    cos: &Tensor<2>,
    sin: &Tensor<2>,
    rotate_half: &Tensor<2>,
    start: usize,
) -> Tensor<4> {
    let seq_len = x.dims()[2];
    let cos = cos.clone().narrow(0, start, seq_len).unsqueeze::<4>(); // [1, 1, seq_len, head_dim]
    let sin = sin.clone().narrow(0, start, seq_len).unsqueeze::<4>();
    let rotated = x.clone().matmul(rotate_half.clone().unsqueeze::<4>()); // [1, 1, hd, hd]
    x * cos + rotated * sin
}

/// [`rope`] from burn's operations as transformers writes it, `rotate_half` by concatenation
/// (the tests' reference).
#[cfg(test)]
fn composed(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>, start: usize) -> Tensor<4> {
    let [_, _, seq_len, head_dim] = x.dims();
    let half = head_dim / 2;
    let cos = cos.clone().narrow(0, start, seq_len).unsqueeze::<4>(); // [1, 1, seq_len, head_dim]
    let sin = sin.clone().narrow(0, start, seq_len).unsqueeze::<4>();
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, backend_extension};
    use burn::tensor::TensorData;
    use burn_flex::{Flex, FlexTensor};

    use crate::ops::host::{cast_back, dense_f32, for_chunks, plain_f32, values};

    /// The rotation, or its transpose (its backward), as one pass where the backend has one.
    #[backend_extension(Flex, Autodiff)]
    pub trait RopeBackend: Backend {
        /// `x·cos + rotate_half(x)·sin`, position `s` of `x` at row `start + s` of the tables;
        /// with `transpose`, the transpose of that linear map (the gradient of `x` from the
        /// output's gradient `x`).
        fn rope(
            x: FloatTensor<Self>,
            cos: FloatTensor<Self>,
            sin: FloatTensor<Self>,
            start: usize,
            transpose: bool,
        ) -> FloatTensor<Self>;
    }

    /// Heads of `head_dim` values per task (64 KiB of f32 at 64 values per head).
    const HEADS_PER_TASK: usize = 256;

    impl RopeBackend for Flex {
        /// `x` (`[batch_size, heads, seq_len, head_dim]`, read through its strides when its
        /// last axis is contiguous) rotated, dense, in `x`'s float type.
        fn rope(
            x: FlexTensor,
            cos: FlexTensor,
            sin: FlexTensor,
            start: usize,
            transpose: bool,
        ) -> FlexTensor {
            let dtype = x.dtype();
            let x = plain_f32(x);
            let (cos, sin) = (dense_f32(cos), dense_f32(sin));
            let (cos, sin) = (values(&cos), values(&sin));
            let layout = x.layout();
            let shape = layout.shape().clone();
            let dims = shape.as_slice();
            let (heads, seq_len, head_dim) = (dims[1], dims[2], dims[3]);
            let s = layout.strides();
            let (sb, sh, ss) = (s[0] as usize, s[1] as usize, s[2] as usize);
            let offset = layout.start_offset();
            let xs = x.storage::<f32>();
            let half = head_dim / 2;
            let mut out = vec![0f32; shape.num_elements()];
            for_chunks(&mut out, HEADS_PER_TASK * head_dim, |task, out| {
                for (i, o) in out.chunks_exact_mut(head_dim).enumerate() {
                    let row = task * HEADS_PER_TASK + i; // (b, h, s) in order
                    let (bh, p) = (row / seq_len, row % seq_len);
                    let (b, h) = (bh / heads, bh % heads);
                    let at = offset + b * sb + h * sh + p * ss;
                    let (x1, x2) = xs[at..at + head_dim].split_at(half);
                    let table = (start + p) * head_dim;
                    let (c1, c2) = cos[table..table + head_dim].split_at(half);
                    let (s1, s2) = sin[table..table + head_dim].split_at(half);
                    let (o1, o2) = o.split_at_mut(half);
                    // [o1; o2] = [[c1, -s1], [s2, c2]] · [x1; x2], or its transpose
                    if transpose {
                        for j in 0..half {
                            o1[j] = x1[j] * c1[j] + x2[j] * s2[j];
                            o2[j] = x2[j] * c2[j] - x1[j] * s1[j];
                        }
                    } else {
                        for j in 0..half {
                            o1[j] = x1[j] * c1[j] - x2[j] * s1[j];
                            o2[j] = x2[j] * c2[j] + x1[j] * s2[j];
                        }
                    }
                }
            });
            cast_back(FlexTensor::from_data(TensorData::new(out, shape)), dtype)
        }
    }

    /// The autodiff node: the tables, `start` and the direction kept for the backward (the map
    /// is linear in `x`, so `x` itself is not needed); the backward is the transposed map.
    #[derive(Debug)]
    struct Rope;

    impl<B: Backend + RopeBackend> Backward<B, 1> for Rope {
        type State = (FloatTensor<B>, FloatTensor<B>, usize, bool);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [parent] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let (cos, sin, start, transpose) = ops.state;
            if let Some(parent) = parent {
                grads.register::<B>(parent.id, B::rope(grad, cos, sin, start, !transpose));
            }
        }
    }

    impl<B: Backend + RopeBackend, C: CheckpointStrategy> RopeBackend for Autodiff<B, C> {
        fn rope(
            x: FloatTensor<Self>,
            cos: FloatTensor<Self>,
            sin: FloatTensor<Self>,
            start: usize,
            transpose: bool,
        ) -> FloatTensor<Self> {
            let (cos, sin) = (cos.primitive().clone(), sin.primitive().clone());
            match Rope.prepare::<C>([x.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let out = B::rope(
                        x.primitive().clone(),
                        cos.clone(),
                        sin.clone(),
                        start,
                        transpose,
                    );
                    prep.finish((cos, sin, start, transpose), out)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::rope(x.primitive().clone(), cos, sin, start, transpose))
                }
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::{by_product, composed, rope};
    use crate::ops::max_abs_diff;
    use crate::rope::RotaryEmbedding;

    /// The fused pass and its gradient against burn's composed form, on SmolLM2's tables
    /// (θ 10⁵, 64-value heads) and on random tables whose halves differ (so the backward's
    /// `sin_{j±h}` terms are checked, not only the duplicated halves HF's tables have): a
    /// heads view of a projection (strided, as the attention passes it), a dense tensor, a
    /// later start, and enough heads to split over threads.
    #[test]
    fn the_fused_rope_and_its_gradient_equal_burns() {
        let device = Device::flex().autodiff();
        let tables = RotaryEmbedding::new(64, 700, 100_000.0, &device);
        let (hf_cos, hf_sin) = tables.tables();
        let rotate_half = tables.rotate_half();
        let random = || Tensor::<2>::random([700, 64], Distribution::Normal(0.0, 1.0), &device);
        for (cos, sin) in [(hf_cos, hf_sin), (random(), random())] {
            for (batch_size, heads, seq_len, start) in
                [(1, 3, 1, 0), (2, 9, 40, 3), (1, 9, 512, 130)]
            {
                let projected = Tensor::<3>::random(
                    [batch_size, seq_len, heads * 64],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                );
                let upstream = Tensor::<4>::random(
                    [batch_size, heads, seq_len, 64],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                );
                let run = |fused: bool, strided: bool| {
                    let p = projected.clone().detach().require_grad();
                    let x = if strided {
                        p.clone()
                            .reshape([batch_size, seq_len, heads, 64])
                            .swap_dims(1, 2)
                    } else {
                        let dense = p
                            .clone()
                            .reshape([batch_size, seq_len, heads, 64])
                            .swap_dims(1, 2);
                        Tensor::<4>::from_data(dense.to_data(), &device).require_grad()
                    };
                    let y = if fused {
                        rope(x.clone(), &cos, &sin, &rotate_half, start)
                    } else {
                        composed(x.clone(), &cos, &sin, start)
                    };
                    let grads = (y.clone() * upstream.clone()).sum().backward();
                    let host =
                        |t: Tensor<4>| Tensor::<4>::from_data(t.into_data(), &Device::flex());
                    let dx = if strided {
                        p.grad(&grads)
                            .unwrap()
                            .reshape([batch_size, seq_len, heads, 64])
                            .swap_dims(1, 2)
                    } else {
                        x.grad(&grads).unwrap()
                    };
                    (host(y.detach()), host(dx))
                };
                for strided in [true, false] {
                    let (y0, dx0) = run(false, strided);
                    let (y1, dx1) = run(true, strided);
                    let at =
                        format!("{batch_size}x{heads}x{seq_len} from {start}, strided {strided}");
                    assert!(max_abs_diff(y1, y0) < 1e-5, "output, {at}");
                    assert!(max_abs_diff(dx1, dx0) < 1e-5, "gradient, {at}");
                }
            }
        }
    }

    /// Without autodiff (decoding) the fused pass is the same rotation.
    #[test]
    fn without_autodiff_it_is_the_same_rotation() {
        let device = Device::flex();
        let tables = RotaryEmbedding::new(64, 64, 10_000.0, &device);
        let (cos, sin) = tables.tables();
        let x = Tensor::<4>::random([2, 3, 5, 64], Distribution::Normal(0.0, 2.0), &device);
        let want = composed(x.clone(), &cos, &sin, 7);
        let rotated = rope(x, &cos, &sin, &tables.rotate_half(), 7);
        assert!(max_abs_diff(rotated, want) < 1e-5);
    }

    /// The GPU path's form, `rotate_half` as a product by a signed permutation, equals
    /// transformers' concatenation exactly (each output is one input times ±1), values and
    /// gradients, on a strided heads view and from a later start; its matrix rotates a basis
    /// vector as `rotate_half` does.
    #[test]
    fn rotate_half_as_a_product_is_the_concatenation() {
        let device = Device::flex().autodiff();
        let tables = RotaryEmbedding::new(8, 16, 10_000.0, &device);
        let basis = Tensor::<2>::from_data([[0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0]], &device);
        let rotated = basis.matmul(tables.rotate_half()).into_data();
        assert_eq!(
            rotated.try_to_vec::<f32>().unwrap(),
            [0.0, -2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
        );

        let tables = RotaryEmbedding::new(64, 300, 100_000.0, &device);
        let (cos, sin) = tables.tables();
        let rotate_half = tables.rotate_half();
        let projected =
            Tensor::<3>::random([2, 37, 3 * 64], Distribution::Normal(0.0, 3.0), &device);
        let upstream = Tensor::<4>::random([2, 3, 37, 64], Distribution::Normal(0.0, 1.0), &device);
        let run = |product: bool| {
            let p = projected.clone().detach().require_grad();
            let x = p.clone().reshape([2, 37, 3, 64]).swap_dims(1, 2);
            let y = if product {
                by_product(x, &cos, &sin, &rotate_half, 200)
            } else {
                composed(x, &cos, &sin, 200)
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let host3 = |t: Tensor<3>| Tensor::<3>::from_data(t.into_data(), &Device::flex());
            let host4 = |t: Tensor<4>| Tensor::<4>::from_data(t.into_data(), &Device::flex());
            (host4(y.detach()), host3(p.grad(&grads).unwrap()))
        };
        let ((y0, dx0), (y1, dx1)) = (run(false), run(true));
        assert!(max_abs_diff(y1, y0) < 1e-6, "output");
        assert!(max_abs_diff(dx1, dx0) < 1e-6, "gradient");
    }
}

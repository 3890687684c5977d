//! Helpers the CPU (flex) kernels of [`crate::ops`] share: backend detection, dense f32 views,
//! and filling an output row by row over rayon's threads.

use burn::backend::ops::FloatTensorOps;
use burn::tensor::{DType, Device, FloatDType, Shape, TensorData};
use burn_flex::{Flex, FlexTensor, Layout};
use rayon::prelude::*;

/// Tensors of at least this many values are split over threads.
pub const PARALLEL_ELEMENTS: usize = 1 << 14;

/// Whether `device` (or the device an autodiff device wraps) is the CPU backend.
pub fn is_flex(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    )
}

/// The CPU backend's tensor inside `t` (the same values, shared: no copy) when `t` is a float
/// tensor on it that autodiff does not track; `None` otherwise. For kernels that read a burn
/// tensor's values in place: `into_data` copied them three times (into a vector, then into
/// aligned bytes, then out as `f32`s), and for a decode step's quantized products, logits and
/// norms those copies were most of the main thread's serial time (2026-12-07).
pub fn flex_float<const D: usize>(t: &burn::tensor::Tensor<D>) -> Option<FlexTensor> {
    use burn::backend::{
        BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind,
    };
    match t.clone().into_dispatch() {
        DispatchTensor {
            kind: DispatchTensorKind::Flex(BackendTensor::Float(t)),
            autodiff: DispatchAutodiffContext::Disabled,
        } => Some(t),
        _ => None,
    }
}

/// `t` as dense f32 (a copy only when `t` is strided or of another float type; a strided
/// f16 tensor is made dense first, so that [`as_f32`] converts it in one pass over threads).
pub fn dense_f32(t: FlexTensor) -> FlexTensor {
    as_f32(dense(t))
}

/// `t` contiguous, in its own dtype (a copy only when `t` is strided).
pub fn dense(t: FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// `t` as f32, strides kept (a cast only when `t` is of another float type). A dense f16
/// tensor is converted 16 values per instruction ([`crate::ops::simd::f16_to_f32`]) over
/// rayon's threads: burn's cast converted one value per call on one thread (9 % of a SmolLM2
/// f16 prompt's samples, the other thread idle meanwhile; perf, 2026-12-06).
pub fn as_f32(t: FlexTensor) -> FlexTensor {
    match t.dtype() {
        DType::F32 => t,
        DType::F16 => match t.as_slice::<half::f16>() {
            Some(values) => {
                let mut out = vec![0f32; values.len()];
                for_chunks(&mut out, F16_TASK, |i, o| {
                    crate::ops::simd::f16_to_f32(&values[i * F16_TASK..][..o.len()], o);
                });
                FlexTensor::from_data(TensorData::new(out, t.layout().shape().clone()))
            }
            None => Flex::float_cast(t, FloatDType::F32),
        },
        _ => Flex::float_cast(t, FloatDType::F32),
    }
}

/// `t` as f32 with a contiguous last axis and non-negative strides, to be read in place
/// through its strides (a copy only when it is not so already).
pub fn plain_f32(t: FlexTensor) -> FlexTensor {
    let t = as_f32(t);
    let s = t.layout().strides();
    if s.last() == Some(&1) && s.iter().all(|&s| s >= 0) {
        t
    } else {
        t.to_contiguous()
    }
}

/// Values per conversion task of [`as_f32`] (64 KiB of f16).
const F16_TASK: usize = 1 << 15;

/// The values of a tensor [`dense_f32`] returned.
pub fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("dense f32")
}

/// `out` (f32) in the float type `dtype`.
pub fn cast_back(out: FlexTensor, dtype: DType) -> FlexTensor {
    match dtype {
        DType::F64 => Flex::float_cast(out, FloatDType::F64),
        DType::F16 => Flex::float_cast(out, FloatDType::F16),
        DType::BF16 => Flex::float_cast(out, FloatDType::BF16),
        _ => out,
    }
}

/// The two dimensions of a matrix.
///
/// # Panics
///
/// If `t` has fewer than two axes (a caller's bug: the kernels' matrices are 2-D).
pub fn dims2(t: &FlexTensor) -> [usize; 2] {
    let s = t.layout().shape().as_slice();
    [s[0], s[1]]
}

/// Rows `row..row + n` of a dense f32 `[rows, cols]` tensor, as a view (no copy).
pub fn row_view(t: &FlexTensor, row: usize, n: usize) -> FlexTensor {
    let cols = dims2(t)[1];
    let view = Layout::new(
        Shape::new([n, cols]),
        vec![cols as isize, 1],
        t.layout().start_offset() + row * cols,
    );
    FlexTensor::from_arc(t.data_arc(), view, DType::F32)
}

/// Columns `col..col + n` of a dense f32 `[rows, cols]` tensor, transposed: a `[n, rows]`
/// view (no copy).
pub fn columns_t_view(t: &FlexTensor, col: usize, n: usize) -> FlexTensor {
    let [rows, cols] = dims2(t);
    let view = Layout::new(
        Shape::new([n, rows]),
        vec![1, cols as isize],
        t.layout().start_offset() + col,
    );
    FlexTensor::from_arc(t.data_arc(), view, DType::F32)
}

/// Fills `out` chunk by chunk: `f(index, chunk)` for consecutive chunks of `n` values (the last
/// may be shorter); over threads when `out` is large.
pub fn for_chunks(out: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if n == 0 {
        return;
    }
    let job = |(r, o): (usize, &mut [f32])| f(r, o);
    if out.len() >= PARALLEL_ELEMENTS {
        out.par_chunks_mut(n).enumerate().for_each(job);
    } else {
        out.chunks_mut(n).enumerate().for_each(job);
    }
}

/// A tensor of `shape` filled row by row of its last axis: `row(index, out_row)`, where `index`
/// counts rows over all leading axes; over threads when large.
pub fn map_rows(shape: &Shape, row: impl Fn(usize, &mut [f32]) + Sync) -> FlexTensor {
    let n = *shape.as_slice().last().unwrap_or(&1);
    let mut out = vec![0f32; shape.num_elements()];
    for_chunks(&mut out, n, row);
    FlexTensor::from_data(TensorData::new(out, shape.clone()))
}

/// A dense f32 `[rows, cols]` tensor's transpose, `[cols, rows]`, written row-major over
/// rayon's threads: blocks of [`TRANSPOSE_BLOCK`] output rows, each read from the input as
/// one cache line per input row. burn's `to_contiguous` of a swapped view copied on one
/// thread: 9 % of a SmolLM2 prompt's samples, the other thread idle (perf, 2026-12-06).
///
/// # Panics
///
/// If `t` is not a dense f32 matrix (a caller's bug: callers pass [`dense_f32`]'s results).
pub fn transpose_2d(t: &FlexTensor) -> FlexTensor {
    let dims = t.layout().shape().as_slice().to_vec();
    assert_eq!(dims.len(), 2, "transpose_2d: a matrix, got {dims:?}");
    let (rows, cols) = (dims[0], dims[1]);
    let x = values(t);
    let mut out = vec![0f32; rows * cols];
    // (no rows: chunks of 0 values, nothing to write)
    for_chunks(&mut out, TRANSPOSE_BLOCK * rows, |b, o| {
        let c0 = b * TRANSPOSE_BLOCK;
        let width = o.len() / rows;
        // tiles of TRANSPOSE_BLOCK input rows: each output row gets that many values in a row
        for i0 in (0..rows).step_by(TRANSPOSE_BLOCK) {
            let i1 = (i0 + TRANSPOSE_BLOCK).min(rows);
            for c in 0..width {
                let o = &mut o[c * rows + i0..c * rows + i1];
                for (i, v) in o.iter_mut().enumerate() {
                    *v = x[(i0 + i) * cols + c0 + c];
                }
            }
        }
    });
    FlexTensor::from_data(TensorData::new(out, [cols, rows]))
}

/// Output rows (input columns) per task of [`transpose_2d`]: one 64-byte line of f32.
const TRANSPOSE_BLOCK: usize = 16;

#[cfg(test)]
mod tests {
    use burn::backend::ops::FloatTensorOps;
    use burn::tensor::TensorData;
    use burn_flex::{Flex, FlexTensor};

    #[test]
    fn transpose_2d_equals_the_swapped_view_copied() {
        // shapes around the block width and the parallel threshold, a partial last block
        for (rows, cols) in [(1, 1), (3, 17), (16, 16), (513, 40), (129, 577)] {
            let x: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 7.0).collect();
            let t = FlexTensor::from_data(TensorData::new(x, [rows, cols]));
            let want = Flex::float_swap_dims(t.clone(), 0, 1).to_contiguous();
            let got = super::transpose_2d(&t);
            assert_eq!(got.layout().shape().as_slice(), &[cols, rows]);
            assert_eq!(super::values(&got), super::values(&want), "{rows} x {cols}");
        }
    }

    /// `host_values` reads a tensor's values as `into_data` gives them: in place for a CPU
    /// tensor (dense, or a strided view made dense), through the fallback for one autodiff
    /// tracks (for which `flex_float` has none).
    #[test]
    fn host_values_are_the_tensors_data() {
        use burn::tensor::{Device, Distribution, FloatDType, Tensor};
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 3, 5], Distribution::Normal(0.0, 1.0), &device);
        let want = |t: &Tensor<3>| {
            t.clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let swapped = x.clone().swap_dims(1, 2);
        let half = x.clone().cast(FloatDType::F16);
        for (name, t) in [("dense", &x), ("strided", &swapped), ("f16", &half)] {
            assert!(super::flex_float(t).is_some(), "{name}");
            let got = crate::ops::host_values(t.clone(), <[f32]>::to_vec);
            assert_eq!(got, want(t), "{name}");
        }
        let tracked =
            Tensor::<3>::from_data(x.to_data(), &device.clone().autodiff()).require_grad();
        assert!(super::flex_float(&tracked).is_none(), "an autodiff tensor");
        assert_eq!(crate::ops::host_values(tracked, <[f32]>::to_vec), want(&x));
    }
}

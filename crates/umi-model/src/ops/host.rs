//! Helpers the CPU (flex) kernels of [`crate::ops`] share: backend detection, dense f32 views,
//! and filling an output row by row over rayon's threads.

use burn::backend::ops::FloatTensorOps;
use burn::tensor::{DType, Device, FloatDType, Shape, TensorData};
use burn_flex::{Flex, FlexTensor};
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

/// `t` as dense f32 (a copy only when `t` is strided or of another float type).
pub fn dense_f32(t: FlexTensor) -> FlexTensor {
    dense(as_f32(t))
}

/// `t` contiguous, in its own dtype (a copy only when `t` is strided).
pub fn dense(t: FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// `t` as f32, strides kept (a cast only when `t` is of another float type).
pub fn as_f32(t: FlexTensor) -> FlexTensor {
    if t.dtype() == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::F32)
    }
}

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

//! Vectorised f32 loops for the CPU kernels of [`crate::ops`]: `exp` without a libm call, and
//! sums and maxima over lane-wise accumulators, compiled for the best SIMD level of the CPU.
//!
//! The CPU build targets baseline x86-64 (SSE2), and libm's `expf` is a scalar call: in the
//! softmax and SwiGLU kernels it was 8-11 % of a SmolLM2 LoRA training step (perf,
//! 2026-12-01). [`vectorized`] runs a closure inside `pulp`'s runtime dispatch, so the loops
//! it inlines are compiled with AVX-512 or AVX2 where the CPU has them, and [`exp`] is plain
//! float arithmetic that those loops vectorise. In the browser (wasm32, no run-time dispatch)
//! the same loops run as compiled, so every target computes the same values in the same order.

/// Bytes ahead of a weight stream's reads at which [`prefetch_ahead`] asks for cache lines.
/// The hardware prefetchers alone did not keep the weights streaming on a 2-core Xeon
/// (Sapphire Rapids) virtual machine: the hot instructions of a decode step were the weight
/// loads, and the more work a kernel does per byte, the fewer bytes ahead its out-of-order
/// window reaches. Processes alternating on that host (2026-12-07), SmolLM2, 512-token
/// prompt: Q8_0 (the interleaved VNNI kernel), 6 sampled sequences in a batch median 374 →
/// 497 tok/s (1 KiB ahead 414, 2 KiB 451, 6–12 KiB no better than 4), one greedy stream 106 →
/// 123 tok/s, prefill 6 of 8 pairs faster; f16 weights (`matvec`) decode 62.0 → 88.3 tok/s
/// (8 of 8 pairs faster); f32 46.7 → 50.2 (8 of 8). In f32 the samples then sit on the
/// prefetches themselves: the core's outstanding misses are the limit (`prefetcht1` no
/// different).
pub const PREFETCH_BYTES: usize = 4096;

/// Asks the CPU for the cache lines of `values[range]` moved [`PREFETCH_BYTES`] further on
/// (those of them inside `values`), while the caller reads `values[range]`: a weight streamed
/// front to back reaches the core before the kernel asks for it. x86-64 `prefetcht0`; nothing
/// on other targets. A hint: no value changes.
#[inline(always)]
pub fn prefetch_ahead<T>(values: &[T], range: std::ops::Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        let size = size_of::<T>().max(1);
        let (step, shift) = ((64 / size).max(1), PREFETCH_BYTES / size);
        let mut at = range.start + shift;
        while at < range.end + shift {
            match values.get(at) {
                Some(value) => safe_arch::prefetch_t0(value),
                None => break,
            }
            at += step;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, range);
}

/// Accumulators per reduction: a multiple of every vector width (4, 8, 16 f32 lanes), so the
/// compiler keeps them in registers and the sum order does not depend on the SIMD level.
const LANES: usize = 16;

/// Runs `f` compiled for the best SIMD level of this CPU (pulp's dispatch): the
/// `#[inline(always)]` loops `f` calls are vectorised with that level's instructions.
///
/// Mark the closure itself `#[inline(always)]` (`vectorized(#[inline(always)] || ...)`): a
/// plain closure is compiled as its own function at the baseline level (SSE2, `xmm` registers
/// only in the disassembly), and the loops inside it with it, whatever level dispatch picked.
#[cfg(not(target_family = "wasm"))]
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    use pulp::{Arch, Simd, WithSimd};
    struct Run<F>(F);
    impl<R, F: FnOnce() -> R> WithSimd for Run<F> {
        type Output = R;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) -> R {
            (self.0)()
        }
    }
    Arch::new().dispatch(Run(f))
}

/// [`vectorized`] in the browser: `f` as compiled (wasm32 has no run-time SIMD dispatch).
#[cfg(target_family = "wasm")]
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `out[i] = e^((x[i] - shift) · scale)` for every `i`; returns `Σ out` (lane-wise
/// accumulators, so the order of the sum is the same at every SIMD level and on every target).
///
/// # Panics
///
/// If `out` and `x` differ in length.
#[inline(always)]
pub fn exp_scaled_sum(out: &mut [f32], x: &[f32], shift: f32, scale: f32) -> f32 {
    assert_eq!(out.len(), x.len(), "exp_scaled_sum: lengths differ");
    let mut acc = [0f32; LANES];
    let (out_main, out_tail) = out.split_at_mut(x.len() / LANES * LANES);
    let (x_main, x_tail) = x.split_at(out_main.len());
    for (o, v) in out_main
        .chunks_exact_mut(LANES)
        .zip(x_main.chunks_exact(LANES))
    {
        for ((o, &v), a) in o.iter_mut().zip(v).zip(&mut acc) {
            *o = exp((v - shift) * scale);
            *a += *o;
        }
    }
    let mut sum = sum_lanes(acc);
    for (o, &v) in out_tail.iter_mut().zip(x_tail) {
        *o = exp((v - shift) * scale);
        sum += *o;
    }
    sum
}

/// `Σ acc` as a tree: the upper half of the lanes added to the lower, then again down to one
/// lane (4 vector additions), rather than a left-to-right fold, which the compiler must keep in
/// order (floating-point addition does not associate): 15 dependent additions with a shuffle
/// each, as much work as the 4 multiply-adds of a 64-value dot product. The order is the same
/// at every SIMD level and on every target.
#[inline(always)]
fn sum_lanes(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// `e^x` within 2 ulp of the true value for `x ≤ 88`: `e^x = 2^n · e^r` with `n = round(x /
/// ln 2)` and `|r| ≤ ln 2 / 2`, `e^r` from its degree-7 Taylor polynomial (relative error below
/// 1.2e-8 there) and `2^n` written into the exponent bits. Returns 0 below -87 (where `e^x` is
/// under f32's smallest normal, 1.2e-38), 2^127·e^(88 - 127 ln 2) ≈ 1.65e38 above 88 (never
/// reached by umi's kernels: softmax exponents are ≤ 0, SiLU's `e^-x` saturates its sigmoid at
/// 0), and NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const HI: f32 = 88.0;
    const LO: f32 = -87.0;
    // 1.5·2²³: adding it rounds a float of magnitude < 2²² to the nearest integer in the low
    // mantissa bits
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split in two so that n·LN2_HI is exact for |n| ≤ 127 (Cody and Waite)
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let clamped = if x > HI { HI } else { x };
    let t = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // the integer n sits in t's low mantissa bits, offset by ROUND's bits 0x4B40_0000
    let n = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let two_n = f32::from_bits((n.wrapping_add(127) as u32) << 23);
    if x < LO { 0.0 } else { p * two_n }
}

/// `out[i] = e^(x[i] - shift)` for every `i`; returns `Σ out` ([`exp_scaled_sum`] with scale 1,
/// whose product is exact).
///
/// # Panics
///
/// If `out` and `x` differ in length.
#[inline(always)]
pub fn exp_shifted_sum(out: &mut [f32], x: &[f32], shift: f32) -> f32 {
    exp_scaled_sum(out, x, shift, 1.0)
}

/// `x[i] = e^(x[i] - max x)` in place; returns `(max x, Σ x)` after (lane-wise accumulators, as
/// [`exp_scaled_sum`]). A softmax row's exponentials without a second buffer.
#[inline(always)]
pub fn exp_shifted_in_place(x: &mut [f32]) -> (f32, f32) {
    let shift = max(x);
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (v, a) in c.iter_mut().zip(&mut acc) {
            *v = exp(*v - shift);
            *a += *v;
        }
    }
    let mut sum = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        sum += *v;
    }
    (shift, acc.iter().sum::<f32>() + sum)
}

/// The largest value of `x` (`-inf` when empty; NaNs are skipped, as `f32::max` does).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    tail.iter()
        .chain(&acc)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `Σ a[i]·b[i]` over the shorter of the two.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    sum_lanes(acc) + tail
}

/// `dst[i] = src[i]` as f32 (f16 keys and values, f16 weights): 16 values per instruction on
/// AVX-512 (`vcvtph2ps`), `half`'s conversion elsewhere.
///
/// # Panics
///
/// If the lengths differ.
#[cfg(feature = "flex")]
#[inline]
pub(crate) fn f16_to_f32(src: &[half::f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if let Some(token) = <archmage::X64V4Token as archmage::SimdToken>::summon() {
        wide::f16_to_f32(token, src, dst);
        return;
    }
    use half::slice::HalfFloatSliceExt;
    src.convert_to_f32_slice(dst);
}

#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod wide {
    use archmage::prelude::*;

    /// [`super::f16_to_f32`] on AVX-512.
    #[arcane(import_intrinsics)]
    pub(super) fn f16_to_f32(_token: X64V4Token, src: &[half::f16], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        let bits: &[u16] = src.reinterpret_cast();
        let whole = bits.len() / 16 * 16;
        for (s, d) in bits[..whole]
            .chunks_exact(16)
            .zip(dst[..whole].chunks_exact_mut(16))
        {
            let s: &[u16; 16] = s.try_into().expect("16 values");
            let d: &mut [f32; 16] = d.try_into().expect("16 values");
            _mm512_storeu_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256(s)));
        }
        src[whole..].convert_to_f32_slice(&mut dst[whole..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp` against f64's over [-87, 88]: at most 2 ulp (relative 2.4e-7) off.
    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0f64;
        let steps = 200_000;
        for i in 0..=steps {
            let x = -87.0 + 175.0 * i as f32 / steps as f32;
            let want = (x as f64).exp();
            let got = vectorized(|| exp(x)) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.4e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-90.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1e9).is_finite());
    }

    #[test]
    fn the_loops_equal_their_scalar_definitions() {
        let x: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 9.0 - 5.0)
            .collect();
        let mut out = vec![0f32; x.len()];
        let sum = vectorized(|| exp_shifted_sum(&mut out, &x, 2.0));
        for (o, v) in out.iter().zip(&x) {
            assert!(((o - (v - 2.0).exp()) / o).abs() < 3e-7);
        }
        assert!((sum - out.iter().sum::<f32>()).abs() < 1e-5 * sum);
        let want = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(vectorized(|| max(&x)), want);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let want: f64 = x.iter().zip(&out).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((vectorized(|| dot(&x, &out)) as f64 - want).abs() < 1e-6 * want.abs());
    }
}

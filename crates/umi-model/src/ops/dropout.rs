//! Dropout (Srivastava et al. 2014) as LoRA applies it to an adapter's input while training
//! (PEFT's `lora_dropout`): each value kept with probability `1 − p` and scaled by `1 / (1 − p)`,
//! otherwise zeroed; every call draws a fresh mask.
//!
//! burn 0.22 draws a Bernoulli mask with a ChaCha generator value by value on one thread: 5-7 %
//! of a SmolLM2 LoRA training step on the CPU (perf, 2026-12-01), 1.2 billion draws a step at
//! batch 8. On the CPU backend (flex) the mask is drawn on the host from splitmix64 outputs,
//! computed independently per value ([`SplitMix64::at`]) and so over all threads, the stream's
//! start taken from burn's seeded generator: training stays reproducible for a seed. Elsewhere
//! (wgpu / WebGPU) it is burn's `random` Bernoulli mask.
//!
//! [`SplitMix64::at`]: crate::SplitMix64::at

use burn::tensor::{Distribution, Tensor};

/// `x ⊙ m / (1 − p)` with `m` a fresh Bernoulli(1 − p) mask of `x`'s shape; gradients flow to
/// `x` through the same mask.
///
/// # Shapes
///
/// - x, output: any shape
///
/// # Panics
///
/// If `p` is not in `[0, 1)` ([`crate::LoraConfig::validate`] checks the configured value).
pub fn dropout<const D: usize>(x: Tensor<D>, p: f64) -> Tensor<D> {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout probability {p} is not in [0, 1)"
    );
    if p == 0.0 {
        return x;
    }
    let keep = 1.0 - p;
    #[cfg(feature = "flex")]
    if crate::ops::host::is_flex(&x.device()) {
        let mask = host_mask(x.dims(), keep, &x.device());
        return x * mask;
    }
    let mask = Tensor::<D>::random(x.dims(), Distribution::Bernoulli(keep), &x.device());
    x * mask.div_scalar(keep)
}

/// A `[dims]` tensor of `1 / keep` (probability `keep`) and `0`, drawn on the host.
#[cfg(feature = "flex")]
fn host_mask<const D: usize>(
    dims: [usize; D],
    keep: f64,
    device: &burn::tensor::Device,
) -> Tensor<D> {
    // the stream's start from burn's generator (three uniform f32s, 24 random bits each), so
    // that `seed` reproduces the masks
    let draws = Tensor::<1>::random([3], Distribution::Default, device)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 after convert");
    let state = draws.iter().fold(0u64, |acc, &u| {
        (acc << 24) ^ ((u * (1 << 24) as f32) as u64)
    });
    let mask = mask_values(state, keep, dims.iter().product());
    Tensor::from_data(burn::tensor::TensorData::new(mask, dims), device)
}

/// `n` mask values from the splitmix64 stream starting at `state`: `1 / keep` where output `i`'s
/// high 32 bits fall under `keep · 2³²`, `0` elsewhere; over threads when `n` is large.
#[cfg(feature = "flex")]
fn mask_values(state: u64, keep: f64, n: usize) -> Vec<f32> {
    const CHUNK: usize = 4096;
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0f32; n];
    crate::ops::host::for_chunks(&mut mask, CHUNK, |c, chunk| {
        let first = (c * CHUNK) as u64;
        crate::ops::simd::vectorized(
            #[inline(always)]
            || {
                for (i, m) in chunk.iter_mut().enumerate() {
                    let z = crate::SplitMix64::at(state, first + i as u64);
                    *m = if z >> 32 < threshold { scale } else { 0.0 };
                }
            },
        )
    });
    mask
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::dropout;

    /// The mask keeps about 1 − p of the values and scales them by 1 / (1 − p), the gradient
    /// flows through the same mask, and every call draws a fresh one.
    #[test]
    fn the_host_mask_has_the_right_statistics_and_gradient() {
        let device = Device::flex().autodiff();
        assert!(crate::ops::host::is_flex(&device));
        let shape = [64, 1024];
        let x = Tensor::<2>::ones(shape, &device).require_grad();
        let y = dropout(x.clone(), 0.25);
        let grads = y.clone().sum().backward();
        let y = y.detach().into_data().try_into_vec::<f32>().unwrap();
        let g = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let n = y.len() as f64;
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64;
        // 4 standard deviations of a binomial(65536, 0.75)
        assert!(
            (kept / n - 0.75).abs() < 4.0 * (0.75f64 * 0.25 / n).sqrt(),
            "kept {kept}"
        );
        assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
        assert!(g == y, "the gradient of the sum of dropout(x) is the mask");
        let again = dropout(Tensor::<2>::ones(shape, &device), 0.25);
        assert!(
            again.into_data().try_into_vec::<f32>().unwrap() != y,
            "a fresh mask per call"
        );
    }

    /// The values depend on the stream's start only (burn's seeded generator picks it), the
    /// same over threads as one by one.
    #[test]
    fn the_mask_is_a_function_of_its_stream() {
        let n = 100_000;
        let a = super::mask_values(7, 0.9, n);
        assert!(a == super::mask_values(7, 0.9, n));
        assert!(a != super::mask_values(8, 0.9, n));
        let mut stream = crate::SplitMix64::from_state(7);
        let serial: Vec<f32> = (0..n)
            .map(|_| {
                let keep = (stream.next_u64() >> 32) < (0.9 * 4_294_967_296.0) as u64;
                if keep { (1.0 / 0.9f64) as f32 } else { 0.0 }
            })
            .collect();
        assert!(a == serial);
    }

    #[test]
    fn zero_probability_is_the_identity() {
        let x = Tensor::<2>::ones([3, 4], &Device::flex());
        let y = dropout(x.clone(), 0.0);
        assert_eq!(y.into_data(), x.into_data());
    }
}

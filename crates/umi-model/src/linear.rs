//! `LoraLinear`: a bias-free projection with an optional low-rank adapter.

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor};

/// A bias-free linear projection `y = x·W (+ s·(x·A)·B)`, the form of every Llama projection.
///
/// The weight is stored `[in, out]` (burn's row layout), i.e. transposed with respect to
/// Hugging Face / PyTorch's `[out, in]`; loaders transpose once at load time.
///
/// The optional [`LoraAdapter`] is the slot fine-tuning fills (LoRA, Hu et al. 2021): it is
/// computed as `(x·A)·B`, never as a dense `A·B` delta, so its cost is `O(r·(in + out))` per token.
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// Base weight, `[in, out]` (on the CPU backend its values held `[out, in]` and viewed
    /// transposed: [`holds_out_in`]); empty (`[0, 0]`) when the weight is held quantized instead.
    pub weight: Param<Tensor<2>>,
    /// Low-rank adapter, if one is attached.
    pub lora: Option<LoraAdapter>,
    /// The base weight quantized (Q8_0 or Q4_1), replacing `weight` for inference (CPU only,
    /// no gradient; see [`crate::Llama::quantize`]). The adapter stays f32.
    #[module(skip)]
    pub quantized: Option<QuantizedWeight>,
}

/// The quantized form of a projection's base weight (native builds; nothing on wasm32).
#[derive(Debug, Clone)]
pub struct QuantizedWeight(
    #[cfg(not(target_family = "wasm"))] pub std::sync::Arc<crate::qmatmul::QMatrix>,
);

#[cfg(not(target_family = "wasm"))]
impl QuantizedWeight {
    /// Shares `weight` (cheap to clone, as the adapters' copies of the model are).
    pub fn new(weight: crate::qmatmul::QMatrix) -> Self {
        Self(std::sync::Arc::new(weight))
    }
}

/// Low-rank adapter: `A` is `[in, r]`, `B` is `[r, out]`, `scaling` is `alpha / r`.
///
/// Matches PEFT's `lora_A.weight` (`[r, in]` = `Aᵀ`) and `lora_B.weight` (`[out, r]` = `Bᵀ`).
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// Down projection, `[in, r]`.
    pub a: Param<Tensor<2>>,
    /// Up projection, `[r, out]`.
    pub b: Param<Tensor<2>>,
    /// `alpha / r`.
    #[module(skip)]
    pub scaling: f64,
    /// Dropout probability on the adapter's input, applied only while `training`.
    #[module(skip)]
    pub dropout: f64,
    /// Whether dropout is active (set by the trainer; off for inference).
    #[module(skip)]
    pub training: bool,
}

/// Inputs of at most this many rows (tokens of a batch) are multiplied with a quantized weight
/// in integer arithmetic; longer ones in f32 against the weight dequantized slice by slice
/// ([`QMatrix::for_dense_slices`](crate::qmatmul::QMatrix::for_dense_slices)), except on
/// weights in the VNNI kernel's layout
/// ([`QMatrix::interleaved`](crate::qmatmul::QMatrix::interleaved)), which run every input in
/// integer arithmetic (faster than f32 there).
#[cfg(not(target_family = "wasm"))]
pub const QUANTIZED_MAX_ROWS: usize = 8;

/// `x · Wᵀ` for a quantized `W` of any number of input rows: integer dot products up to
/// [`QUANTIZED_MAX_ROWS`] rows (decoding, memory-bound) or for any number of rows on an
/// interleaved `W`, f32 GEMM against dequantized slices of `W` beyond (a prompt,
/// compute-bound).
///
/// # Shapes
///
/// - x: `[tokens, in]`; output: `[tokens, out]`
#[cfg(not(target_family = "wasm"))]
pub(crate) fn quantized_product(w: &crate::qmatmul::QMatrix, x: Tensor<2>) -> Tensor<2> {
    if x.dims()[0] <= QUANTIZED_MAX_ROWS || w.interleaved() {
        return quantized_matmul(w, x);
    }
    let device = x.device();
    let cols = w.cols();
    let mut parts = w.for_dense_slices(|slice, n| {
        let slice =
            Tensor::<2>::from_data(burn::tensor::TensorData::new(slice, [n, cols]), &device);
        x.clone().matmul(slice.transpose()) // [tokens, n]
    });
    if parts.len() == 1 {
        parts.pop().expect("one slice")
    } else {
        Tensor::cat(parts, 1)
    }
}

/// `x · Wᵢᵀ` with quantized `Wᵢ` on the host, all in one pass ([`QMatrix::matmul_many`]):
/// `[tokens, in]` → `[tokens, out_i]` each.
///
/// [`QMatrix::matmul_many`]: crate::qmatmul::QMatrix::matmul_many
#[cfg(not(target_family = "wasm"))]
pub(crate) fn quantized_matmul_many(
    ws: &[&crate::qmatmul::QMatrix],
    x: Tensor<2>,
) -> Vec<Tensor<2>> {
    let [tokens, _] = x.dims();
    let device = x.device();
    crate::ops::host_values(x, |x| crate::qmatmul::QMatrix::matmul_many(ws, x, tokens))
        .into_iter()
        .zip(ws)
        .map(|(y, w)| {
            Tensor::from_data(
                burn::tensor::TensorData::new(y, [tokens, w.rows()]),
                &device,
            )
        })
        .collect()
}

/// `x · Wᵀ` with a quantized `W` on the host: `[tokens, in]` → `[tokens, out]`.
#[cfg(not(target_family = "wasm"))]
pub(crate) fn quantized_matmul(w: &crate::qmatmul::QMatrix, x: Tensor<2>) -> Tensor<2> {
    quantized_matmul_many(&[w], x).pop().expect("one product")
}

/// An empty `[0, 0]` tensor: the f32 slot of a weight held quantized.
#[cfg(not(target_family = "wasm"))]
pub(crate) fn empty_weight(device: &Device) -> Tensor<2> {
    Tensor::from_data(
        burn::tensor::TensorData::new(Vec::<f32>::new(), [0, 0]),
        device,
    )
}

/// Whether projection weights on `device` are held `[out, in]` in memory and viewed `[in, out]`
/// ([`held_out_in`]): on the CPU backend, where decoding's few-row products read each output's
/// weights as one contiguous row (dot products over `[out, in]` rows streamed 20–30 % more
/// bytes per second than sums of scaled `[in, out]` rows on the 2-core host, 2026-12-05; the
/// layout of Hugging Face and GGUF files, so loading no longer transposes). burn's matmul
/// (prompts, training) takes the view's strides as they are.
pub(crate) fn holds_out_in(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        crate::ops::host::is_flex(device)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// `w` (`[in, out]`) with its values held `[out, in]` in memory and viewed transposed, when
/// [`holds_out_in`] its device (a copy unless it is already so); unchanged elsewhere.
pub(crate) fn held_out_in(w: Tensor<2>) -> Tensor<2> {
    let device = w.device();
    if !holds_out_in(&device) {
        return w;
    }
    let dtype = w.dtype();
    let data = w.transpose().into_data();
    Tensor::<2>::from_data(data, (&device, dtype)).transpose()
}

impl LoraLinear {
    /// Wraps a `[in, out]` weight without an adapter.
    pub fn new(weight: Tensor<2>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            lora: None,
            quantized: None,
        }
    }

    /// A projection whose weight is held quantized only (`[out, in]`, as [`QMatrix`] stores
    /// it), without an adapter; `device` is where adapters and activations live.
    ///
    /// [`QMatrix`]: crate::qmatmul::QMatrix
    #[cfg(not(target_family = "wasm"))]
    pub fn quantized(weight: crate::qmatmul::QMatrix, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(empty_weight(device)),
            lora: None,
            quantized: Some(QuantizedWeight::new(weight)),
        }
    }

    /// Input width.
    pub fn d_input(&self) -> usize {
        #[cfg(not(target_family = "wasm"))]
        if let Some(q) = &self.quantized {
            return q.0.cols();
        }
        self.weight.shape().dims::<2>()[0]
    }

    /// Output width.
    pub fn d_output(&self) -> usize {
        #[cfg(not(target_family = "wasm"))]
        if let Some(q) = &self.quantized {
            return q.0.rows();
        }
        self.weight.shape().dims::<2>()[1]
    }

    /// The base weight in f32, `[in, out]`: `weight` (cast when held in f16), or the quantized
    /// weight dequantized.
    pub fn weight_f32(&self) -> Tensor<2> {
        #[cfg(not(target_family = "wasm"))]
        if let Some(q) = &self.quantized {
            let device = self.weight.val().device();
            let data = burn::tensor::TensorData::new(q.0.dequantize(), [q.0.rows(), q.0.cols()]);
            return Tensor::<2>::from_data(data, &device).transpose();
        }
        let w = self.weight.val();
        if w.dtype() == burn::tensor::DType::F16 {
            w.cast(burn::tensor::FloatDType::F32)
        } else {
            w
        }
    }

    /// Attaches a fresh adapter of rank `rank`: `A ~ N(0, 1/rank)`, `B = 0`, so the layer's
    /// output is unchanged until `B` is trained (as PEFT initialises LoRA).
    ///
    /// # Panics
    ///
    /// If `rank == 0`.
    pub fn with_lora(mut self, rank: usize, alpha: f64, device: &Device) -> Self {
        assert!(rank > 0, "LoRA rank must be positive");
        let std = (1.0 / rank as f64).sqrt();
        let a = Tensor::random(
            [self.d_input(), rank],
            Distribution::Normal(0.0, std),
            device,
        );
        let b = Tensor::zeros([rank, self.d_output()], device);
        self.lora = Some(LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scaling: alpha / rank as f64,
            dropout: 0.0,
            training: false,
        });
        self
    }

    /// Applies the projection to the last dimension.
    ///
    /// # Shapes
    ///
    /// - x: `[batch_size, seq_len, in]`
    /// - output: `[batch_size, seq_len, out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch_size, seq_len, d_in] = x.dims();
        if self.is_half_on_gpu(&x) {
            return self.forward_half(x.clone().cast(FloatDType::F16), x);
        }
        let x = x.reshape([batch_size * seq_len, d_in]); // [tokens, in]
        let y = match &self.quantized {
            #[cfg(not(target_family = "wasm"))]
            Some(q) => quantized_product(&q.0, x.clone()),
            _ => crate::ops::matmul_weight(
                x.clone(),
                self.weight.val(),
                crate::ops::WeightLayout::InOut,
            ), // [tokens, out]
        };
        self.finish(x, y, batch_size, seq_len)
    }

    /// [`LoraLinear::forward`] of several projections of the same input (a layer's q/k/v or
    /// gate/up): when all have quantized weights and the input is a few rows, their base products
    /// run in one pass over the weights ([`QMatrix::matmul_many`]); otherwise one by one.
    /// The results are those of `forward`, in order.
    ///
    /// # Shapes
    ///
    /// - x: `[batch_size, seq_len, in]`
    /// - output i: `[batch_size, seq_len, out_i]`
    ///
    /// [`QMatrix::matmul_many`]: crate::qmatmul::QMatrix::matmul_many
    pub fn forward_many(projections: &[&Self], x: Tensor<3>) -> Vec<Tensor<3>> {
        #[cfg(not(target_family = "wasm"))]
        {
            let [batch_size, seq_len, d_in] = x.dims();
            let quantized: Option<Vec<&crate::qmatmul::QMatrix>> = projections
                .iter()
                .map(|p| p.quantized.as_ref().map(|q| &*q.0))
                .collect();
            if let Some(ws) = quantized.filter(|_| batch_size * seq_len <= QUANTIZED_MAX_ROWS) {
                let x = x.reshape([batch_size * seq_len, d_in]);
                return quantized_matmul_many(&ws, x.clone())
                    .into_iter()
                    .zip(projections)
                    .map(|(y, p)| p.finish(x.clone(), y, batch_size, seq_len))
                    .collect();
            }
        }
        if projections.iter().all(|p| p.is_half_on_gpu(&x)) {
            // weights held in f16 on a GPU (`Llama::half`): the input cast to f16 once for all
            // the projections rather than once each (a kernel launch each on wgpu); the same
            // products as `forward`'s
            let x16 = x.clone().cast(FloatDType::F16);
            return projections
                .iter()
                .map(|p| p.forward_half(x16.clone(), x.clone()))
                .collect();
        }
        projections.iter().map(|p| p.forward(x.clone())).collect()
    }

    /// Whether `x` (f32) meets this projection's weight held in f16 on a GPU ([`crate::Llama::half`]),
    /// which [`Self::forward_half`] serves.
    fn is_half_on_gpu(&self, x: &Tensor<3>) -> bool {
        self.quantized.is_none()
            && self.weight.dtype() == DType::F16
            && x.dtype() != DType::F16
            && !holds_out_in(&x.device())
    }

    /// `forward` of a weight held in f16 on a GPU: the activations meet the weight in f16 and
    /// the product returns to f32, where norms, attention and the residual stream stay.
    ///
    /// The order of the operations is what lets burn's fusion (wgpu) take them into few
    /// kernels, found by counting launches (`scripts/bench/wgpu_launches.sh`): `x16` is cast
    /// before any reshape of `x` (the cast then joins the kernel that wrote `x`), and the
    /// adapter's term is computed before the base product, so that the product's kernel also
    /// casts its result, scales the term and adds it. Other orders left whole segments of the
    /// decoder unfused: 2,378 launches per decode token with a role adapter on lavapipe, 1,508 in
    /// this order.
    ///
    /// # Shapes
    ///
    /// - x16: `[batch_size, seq_len, in]` (f16), x: the same in f32
    /// - output: `[batch_size, seq_len, out]` (f32)
    fn forward_half(&self, x16: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
        let [batch_size, seq_len, d_in] = x.dims();
        let tokens = batch_size * seq_len;
        let x16 = x16.reshape([tokens, d_in]);
        let delta =
            (self.lora.as_ref()).map(|lora| lora.term(lora.input(x.reshape([tokens, d_in])))); // [tokens, out]
        let layout = crate::ops::WeightLayout::InOut;
        let y = crate::ops::matmul_weight(x16, self.weight.val(), layout).cast(FloatDType::F32);
        let y = match delta {
            Some(delta) => y + delta,
            None => y,
        };
        let d_out = y.dims()[1];
        y.reshape([batch_size, seq_len, d_out])
    }

    /// [`Self::add_lora`], then the tokens back into their batch: the last step of `forward`.
    ///
    /// # Shapes
    ///
    /// - x: `[tokens, in]`, y: `[tokens, out]` with `tokens = batch_size · seq_len`
    /// - output: `[batch_size, seq_len, out]`
    fn finish(&self, x: Tensor<2>, y: Tensor<2>, batch_size: usize, seq_len: usize) -> Tensor<3> {
        let y = self.add_lora(x, y);
        let d_out = y.dims()[1];
        y.reshape([batch_size, seq_len, d_out])
    }

    /// `y + scaling · (x · A) · B` when an adapter is attached (with dropout on `x` while
    /// training), `y` otherwise.
    ///
    /// # Shapes
    ///
    /// - x: `[tokens, in]`, y: `[tokens, out]`; output: `[tokens, out]`
    fn add_lora(&self, x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
        let Some(lora) = &self.lora else {
            return y;
        };
        let x = lora.input(x);
        #[cfg(feature = "flex")]
        if x.is_autodiff() && crate::ops::host::is_flex(&x.device()) {
            // training on the CPU: one node, its small products over all threads
            return crate::ops::lora_add(y, x, lora.a.val(), lora.b.val(), lora.scaling);
        }
        y + lora.term(x)
    }
}

impl LoraAdapter {
    /// `x` with dropout while training, as it is otherwise.
    fn input(&self, x: Tensor<2>) -> Tensor<2> {
        if self.training {
            crate::ops::dropout(x, self.dropout)
        } else {
            x
        }
    }

    /// `scaling · (x · A) · B` (`x` as given: dropout is [`Self::input`]'s).
    ///
    /// # Shapes
    ///
    /// - x: `[tokens, in]`; output: `[tokens, out]`
    fn term(&self, x: Tensor<2>) -> Tensor<2> {
        // a decode step's few rows take umi's kernel (burn's gemm spent 11 % of a SmolLM2 Q8_0
        // decode with the planner adapter packing these tiny products); longer inputs and
        // autodiff tensors fall back to burn's matmul
        let layout = crate::ops::WeightLayout::InOut;
        let xa = crate::ops::matmul_weight(x, self.a.val(), layout);
        let delta = crate::ops::matmul_weight(xa, self.b.val(), layout); // [tokens, out]
        delta.mul_scalar(self.scaling)
    }
}

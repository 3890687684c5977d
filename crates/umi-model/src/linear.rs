//! `LoraLinear`: a bias-free projection with an optional low-rank adapter.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

/// A bias-free linear projection `y = x·W (+ s·(x·A)·B)`, the form of every Llama projection.
///
/// The weight is stored `[in, out]` (burn's row layout), i.e. transposed with respect to
/// Hugging Face / PyTorch's `[out, in]`; loaders transpose once at load time.
///
/// The optional [`LoraAdapter`] is the slot fine-tuning fills (LoRA, Hu et al. 2021): it is
/// computed as `(x·A)·B`, never as a dense `A·B` delta, so its cost is `O(r·(in + out))` per token.
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// Base weight, `[in, out]`; empty (`[0, 0]`) when the weight is held in Q8_0 instead.
    pub weight: Param<Tensor<2>>,
    /// Low-rank adapter, if one is attached.
    pub lora: Option<LoraAdapter>,
    /// The base weight in Q8_0, replacing `weight` for inference (CPU only, no gradient; see
    /// [`crate::Llama::quantize_q8_0`]). The adapter stays f32.
    #[module(skip)]
    pub q8: Option<QuantizedWeight>,
}

/// The Q8_0 form of a projection's base weight (native builds; nothing on wasm32).
#[derive(Debug, Clone)]
pub struct QuantizedWeight(
    #[cfg(not(target_family = "wasm"))] pub std::sync::Arc<crate::qmatmul::Q8Matrix>,
);

#[cfg(not(target_family = "wasm"))]
impl QuantizedWeight {
    /// Shares `weight` (cheap to clone, as the adapters' copies of the model are).
    pub fn new(weight: crate::qmatmul::Q8Matrix) -> Self {
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

/// Inputs of at most this many rows (tokens of a batch) are multiplied with a Q8_0 weight in
/// 8-bit; longer ones in f32 against the weight dequantized slice by slice
/// ([`Q8Matrix::for_dense_slices`](crate::qmatmul::Q8Matrix::for_dense_slices)).
#[cfg(not(target_family = "wasm"))]
pub const Q8_MAX_ROWS: usize = 8;

/// `x · Wᵀ` for a Q8_0 `W` of any number of input rows: 8-bit dot products up to
/// [`Q8_MAX_ROWS`] rows (decoding, memory-bound), f32 GEMM against dequantized slices of `W`
/// beyond (a prompt, compute-bound).
///
/// # Shapes
///
/// - x: `[tokens, in]`; output: `[tokens, out]`
#[cfg(not(target_family = "wasm"))]
pub(crate) fn q8_product(w: &crate::qmatmul::Q8Matrix, x: Tensor<2>) -> Tensor<2> {
    if x.dims()[0] <= Q8_MAX_ROWS {
        return q8_matmul(w, x);
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

/// `x · Wᵢᵀ` with Q8_0 `Wᵢ` on the host, all in one pass ([`Q8Matrix::matmul_many`]):
/// `[tokens, in]` → `[tokens, out_i]` each.
///
/// [`Q8Matrix::matmul_many`]: crate::qmatmul::Q8Matrix::matmul_many
#[cfg(not(target_family = "wasm"))]
pub(crate) fn q8_matmul_many(ws: &[&crate::qmatmul::Q8Matrix], x: Tensor<2>) -> Vec<Tensor<2>> {
    let [tokens, _] = x.dims();
    let device = x.device();
    let data = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 after convert");
    crate::qmatmul::Q8Matrix::matmul_many(ws, &data, tokens)
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

/// `x · Wᵀ` with a Q8_0 `W` on the host: `[tokens, in]` → `[tokens, out]`.
#[cfg(not(target_family = "wasm"))]
pub(crate) fn q8_matmul(w: &crate::qmatmul::Q8Matrix, x: Tensor<2>) -> Tensor<2> {
    q8_matmul_many(&[w], x).pop().expect("one product")
}

/// An empty `[0, 0]` tensor: the f32 slot of a weight held in Q8_0.
#[cfg(not(target_family = "wasm"))]
pub(crate) fn empty_weight(device: &Device) -> Tensor<2> {
    Tensor::from_data(
        burn::tensor::TensorData::new(Vec::<f32>::new(), [0, 0]),
        device,
    )
}

impl LoraLinear {
    /// Wraps a `[in, out]` weight without an adapter.
    pub fn new(weight: Tensor<2>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            lora: None,
            q8: None,
        }
    }

    /// A projection whose weight is held in Q8_0 only (`[out, in]`, as [`Q8Matrix`] stores
    /// it), without an adapter; `device` is where adapters and activations live.
    ///
    /// [`Q8Matrix`]: crate::qmatmul::Q8Matrix
    #[cfg(not(target_family = "wasm"))]
    pub fn quantized(weight: crate::qmatmul::Q8Matrix, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(empty_weight(device)),
            lora: None,
            q8: Some(QuantizedWeight::new(weight)),
        }
    }

    /// Input width.
    pub fn d_input(&self) -> usize {
        #[cfg(not(target_family = "wasm"))]
        if let Some(q) = &self.q8 {
            return q.0.cols();
        }
        self.weight.shape().dims::<2>()[0]
    }

    /// Output width.
    pub fn d_output(&self) -> usize {
        #[cfg(not(target_family = "wasm"))]
        if let Some(q) = &self.q8 {
            return q.0.rows();
        }
        self.weight.shape().dims::<2>()[1]
    }

    /// The base weight in f32, `[in, out]`: `weight`, or the Q8_0 weight dequantized.
    pub fn weight_f32(&self) -> Tensor<2> {
        #[cfg(not(target_family = "wasm"))]
        if let Some(q) = &self.q8 {
            let device = self.weight.val().device();
            let data = burn::tensor::TensorData::new(q.0.dequantize(), [q.0.rows(), q.0.cols()]);
            return Tensor::<2>::from_data(data, &device).transpose();
        }
        self.weight.val()
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
        let x = x.reshape([batch_size * seq_len, d_in]); // [tokens, in]
        let y = match &self.q8 {
            #[cfg(not(target_family = "wasm"))]
            Some(q) => q8_product(&q.0, x.clone()),
            _ => x.clone().matmul(self.weight.val()), // [tokens, out]
        };
        let y = self.add_lora(x, y);
        let d_out = y.dims()[1];
        y.reshape([batch_size, seq_len, d_out])
    }

    /// [`LoraLinear::forward`] of several projections of the same input (a layer's q/k/v or
    /// gate/up): when all have Q8_0 weights and the input is a few rows, their base products
    /// run in one pass over the weights ([`Q8Matrix::matmul_many`]); otherwise one by one.
    /// The results are those of `forward`, in order.
    ///
    /// # Shapes
    ///
    /// - x: `[batch_size, seq_len, in]`
    /// - output i: `[batch_size, seq_len, out_i]`
    ///
    /// [`Q8Matrix::matmul_many`]: crate::qmatmul::Q8Matrix::matmul_many
    pub fn forward_many(projections: &[&Self], x: Tensor<3>) -> Vec<Tensor<3>> {
        #[cfg(not(target_family = "wasm"))]
        {
            let [batch_size, seq_len, d_in] = x.dims();
            let q8: Option<Vec<&crate::qmatmul::Q8Matrix>> = projections
                .iter()
                .map(|p| p.q8.as_ref().map(|q| &*q.0))
                .collect();
            if let Some(q8) = q8.filter(|_| batch_size * seq_len <= Q8_MAX_ROWS) {
                let x = x.reshape([batch_size * seq_len, d_in]);
                return q8_matmul_many(&q8, x.clone())
                    .into_iter()
                    .zip(projections)
                    .map(|(y, p)| {
                        let y = p.add_lora(x.clone(), y);
                        let d_out = y.dims()[1];
                        y.reshape([batch_size, seq_len, d_out])
                    })
                    .collect();
            }
        }
        projections.iter().map(|p| p.forward(x.clone())).collect()
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
        let x = if lora.training {
            crate::ops::dropout(x, lora.dropout)
        } else {
            x
        };
        let delta = x.matmul(lora.a.val()).matmul(lora.b.val()); // [tokens, out]
        y + delta.mul_scalar(lora.scaling)
    }
}

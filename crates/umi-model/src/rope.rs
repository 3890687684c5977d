//! Rotary position embedding (RoPE, Su et al. 2021) in Hugging Face's rotate-half layout.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

/// Precomputed `cos`/`sin` tables for rotate-half RoPE, as `transformers`' `LlamaRotaryEmbedding`:
/// `inv_freq[i] = θ^(-2i/head_dim)`, angles `pos · inv_freq` duplicated over both halves, and
/// `rope(x) = x·cos + rotate_half(x)·sin` with `rotate_half([x1, x2]) = [-x2, x1]`.
///
/// GGUF checkpoints, written for llama.cpp's interleaved RoPE, have their q/k rows un-permuted at
/// load time so that this one layout serves every format.
#[derive(Module, Debug)]
pub struct RotaryEmbedding {
    /// `[max_position_embeddings, head_dim]`
    cos: Tensor<2>,
    /// `[max_position_embeddings, head_dim]`
    sin: Tensor<2>,
    /// `[head_dim, head_dim]`: the signed permutation `R` with `x · R = rotate_half(x)`
    /// (`R[j + h][j] = −1` and `R[j][j + h] = 1` for `j < h = head_dim / 2`), with which the
    /// GPU path rotates in one product instead of a negation and a concatenation
    /// ([`crate::ops::rope`]).
    rotate_half: Tensor<2>,
}

impl RotaryEmbedding {
    /// Builds the tables for positions `0..max_positions`.
    pub fn new(head_dim: usize, max_positions: usize, theta: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        for pos in 0..max_positions {
            for j in 0..head_dim {
                let i = j % half;
                let inv_freq = theta.powf(-((2 * i) as f64) / head_dim as f64);
                let angle = pos as f64 * inv_freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let mut rotate_half = vec![0.0f32; head_dim * head_dim];
        for j in 0..half {
            rotate_half[(j + half) * head_dim + j] = -1.0;
            rotate_half[j * head_dim + j + half] = 1.0;
        }
        let shape = [max_positions, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            rotate_half: Tensor::from_data(
                TensorData::new(rotate_half, [head_dim, head_dim]),
                device,
            ),
        }
    }

    /// Rotates `x` whose first position is `start`.
    ///
    /// # Shapes
    ///
    /// - x: `[batch_size, num_heads, seq_len, head_dim]`
    /// - output: same
    pub fn forward(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        crate::ops::rope(x, &self.cos, &self.sin, &self.rotate_half, start)
    }

    /// The `(cos, sin)` tables, `[max_positions, head_dim]` each.
    pub fn tables(&self) -> (Tensor<2>, Tensor<2>) {
        (self.cos.clone(), self.sin.clone())
    }

    /// The signed permutation `R`, `[head_dim, head_dim]`, with `x · R = rotate_half(x)`.
    pub fn rotate_half(&self) -> Tensor<2> {
        self.rotate_half.clone()
    }

    /// Number of positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }
}

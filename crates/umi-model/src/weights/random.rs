//! Random weights for a [`LlamaConfig`]: test and benchmark models that need no file.

use super::{HostTensor, WeightSource};
use crate::config::LlamaConfig;
use crate::rng::SplitMix64;

/// A [`WeightSource`] of random weights for `config`: every projection, embedding and LM head
/// drawn from N(0, 0.02²) (Hugging Face's `initializer_range`), norms at 1. Each tensor has
/// its own stream, [`SplitMix64`] seeded by `seed` and the tensor's name, so a tensor's values
/// depend only on the seed, its name and its shape, on every platform.
#[derive(Debug, Clone)]
pub struct RandomWeights {
    /// The shapes to draw.
    pub config: LlamaConfig,
    /// The seed of every tensor's stream.
    pub seed: u64,
}

impl WeightSource for RandomWeights {
    fn origin(&self) -> String {
        format!("random initialisation (seed {})", self.seed)
    }

    fn tensor(&mut self, name: &str) -> crate::Result<Option<HostTensor>> {
        let c = &self.config;
        let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let q = c.num_attention_heads * c.head_dim();
        let kv = c.num_kv_heads() * c.head_dim();
        let last = name.trim_end_matches(".weight").rsplit('.').next();
        let shape = match last.unwrap_or_default() {
            "embed_tokens" | "lm_head" => vec![v, h],
            "input_layernorm" | "post_attention_layernorm" | "norm" => {
                return Ok(Some(HostTensor {
                    shape: vec![h],
                    data: vec![1.0; h],
                }));
            }
            "q_proj" => vec![q, h],
            "k_proj" | "v_proj" => vec![kv, h],
            "o_proj" => vec![h, q],
            "gate_proj" | "up_proj" => vec![i, h],
            "down_proj" => vec![h, i],
            _ => return Ok(None),
        };
        let mut stream = SplitMix64::new(self.seed, name);
        let n: usize = shape.iter().product();
        let mut data = Vec::with_capacity(n + 1);
        while data.len() < n {
            // Box–Muller
            let (u1, u2) = (stream.unit().max(f64::MIN_POSITIVE), stream.unit());
            let r = (-2.0 * u1.ln()).sqrt() * 0.02;
            let t = std::f64::consts::TAU * u2;
            data.push((r * t.cos()) as f32);
            data.push((r * t.sin()) as f32);
        }
        data.truncate(n);
        Ok(Some(HostTensor { shape, data }))
    }
}

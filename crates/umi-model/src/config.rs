//! `LlamaConfig`: the hyperparameters of a Llama model, with Hugging Face `config.json` names.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Hyperparameters of a Llama-architecture decoder, named as in Hugging Face `config.json`
/// (`transformers.LlamaConfig`), so a `config.json` deserialises into it directly.
///
/// Covers TinyLlama-1.1B ([`LlamaConfig::tiny_llama_1_1b`]) and SmolLM2-135M
/// ([`LlamaConfig::smollm2_135m`]); GGUF metadata is mapped onto the same struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Number of tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); equals `num_attention_heads` when
    /// absent, as in Hugging Face.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base frequency θ.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Context window in tokens.
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the token embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id(s); Hugging Face allows an int or a list.
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// MLP activation; only `silu` is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Biases on the attention projections; not supported (Llama has none).
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the MLP projections; not supported (Llama has none).
    #[serde(default)]
    pub mlp_bias: bool,
    /// RoPE scaling (Llama 3.x, long-context variants); not supported yet, must be `null`.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
}

/// One token id or several, as `eos_token_id` may be in Hugging Face configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }

    /// `ids` as a config field (the inverse of [`TokenIds::to_vec`]): `None` when empty, one id
    /// as [`TokenIds::One`], several as [`TokenIds::Many`].
    pub fn from_ids(ids: &[u32]) -> Option<TokenIds> {
        match ids {
            [] => None,
            [one] => Some(TokenIds::One(*one)),
            many => Some(TokenIds::Many(many.to_vec())),
        }
    }
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_position_embeddings() -> usize {
    2048
}
fn default_hidden_act() -> String {
    "silu".to_string()
}

impl LlamaConfig {
    /// Largest `vocab_size` umi loads (the largest Llama-family vocabularies have about 256k
    /// tokens). These limits are generous for every Llama-family model and refuse a damaged or
    /// hostile file before anything is allocated from its sizes.
    pub const MAX_VOCAB_SIZE: usize = 1 << 22;
    /// Largest `hidden_size`, and largest `num_attention_heads × head_dim` and
    /// `num_key_value_heads × head_dim` (the widths of the attention projections).
    pub const MAX_HIDDEN_SIZE: usize = 1 << 16;
    /// Largest `intermediate_size`.
    pub const MAX_INTERMEDIATE_SIZE: usize = 1 << 18;
    /// Largest `num_hidden_layers`.
    pub const MAX_LAYERS: usize = 1024;
    /// Largest `head_dim`.
    pub const MAX_HEAD_DIM: usize = 1024;
    /// Largest context window (`max_position_embeddings`), in tokens.
    pub const MAX_CONTEXT: usize = 1 << 20;
    /// Largest `max_position_embeddings × head_dim`: the size of each RoPE table, in f32 values
    /// (512 MiB; a 1M-token window with `head_dim` 128).
    pub const MAX_ROPE_TABLE: usize = 1 << 27;

    /// TinyLlama-1.1B (`TinyLlama/TinyLlama-1.1B-Chat-v1.0`): 22 layers, hidden 2048, 32 heads
    /// with 4 KV heads, vocab 32000, untied head.
    pub fn tiny_llama_1_1b() -> Self {
        Self {
            vocab_size: 32_000,
            hidden_size: 2048,
            intermediate_size: 5632,
            num_hidden_layers: 22,
            num_attention_heads: 32,
            num_key_value_heads: Some(4),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_id: Some(TokenIds::One(2)),
            hidden_act: default_hidden_act(),
            attention_bias: false,
            mlp_bias: false,
            rope_scaling: None,
        }
    }

    /// SmolLM2-135M (`HuggingFaceTB/SmolLM2-135M-Instruct`): 30 layers, hidden 576, 9 heads with
    /// 3 KV heads, vocab 49152, tied embeddings, θ = 100000.
    pub fn smollm2_135m() -> Self {
        Self {
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: Some(3),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            bos_token_id: Some(1),
            eos_token_id: Some(TokenIds::One(2)),
            hidden_act: default_hidden_act(),
            attention_bias: false,
            mlp_bias: false,
            rope_scaling: None,
        }
    }

    /// Parses a Hugging Face `config.json` and [validates](Self::validate) it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `file` when the JSON is malformed or describes something umi
    /// cannot run.
    pub fn from_json(json: &str, file: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(json).map_err(|e| Error::Config {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// Number of key/value heads.
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Number of weights [`build_llama`](crate::weights::build_llama) loads: the embedding, per
    /// layer two norms, the four attention and three MLP projections, the final norm, and the LM
    /// head when it is not tied (SmolLM2-135M: 134,515,008). Computed in `u64`, so any config
    /// that passed [`Self::validate`] fits.
    pub fn num_parameters(&self) -> u64 {
        let hidden = self.hidden_size as u64;
        let head_dim = self.head_dim() as u64;
        let q_out = self.num_attention_heads as u64 * head_dim;
        let kv_out = self.num_kv_heads() as u64 * head_dim;
        let inter = self.intermediate_size as u64;
        let vocab = self.vocab_size as u64;
        let layer = 2 * hidden + 2 * q_out * hidden + 2 * kv_out * hidden + 3 * inter * hidden;
        let head = if self.tie_word_embeddings {
            0
        } else {
            vocab * hidden
        };
        vocab * hidden + self.num_hidden_layers as u64 * layer + hidden + head
    }

    /// End-of-sequence ids (empty when the config names none).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// Checks that the configuration describes a model umi can build, with sizes within umi's
    /// limits ([`Self::MAX_VOCAB_SIZE`], [`Self::MAX_HIDDEN_SIZE`],
    /// [`Self::MAX_INTERMEDIATE_SIZE`], [`Self::MAX_LAYERS`], [`Self::MAX_HEAD_DIM`],
    /// [`Self::MAX_CONTEXT`], [`Self::MAX_ROPE_TABLE`]), so that a damaged or hostile file is
    /// refused before anything is allocated from it. Every loader calls it (`config.json`, GGUF
    /// metadata, [`build_llama`](crate::weights::build_llama)).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `file` and the offending field: a size that is zero, above its
    /// limit or whose product overflows; heads that do not divide; a BOS/EOS id outside the
    /// vocabulary; an unsupported feature.
    pub fn validate(&self, file: &str) -> Result<()> {
        self.validate_named(file, &|field| field.to_string())
    }

    /// [`LlamaConfig::validate`], naming each field `name(field)` in messages (GGUF files add
    /// their own metadata keys).
    pub(crate) fn validate_named(
        &self,
        file: &str,
        name: &dyn Fn(&'static str) -> String,
    ) -> Result<()> {
        let fail = |message: String| {
            Err(Error::Config {
                file: file.to_string(),
                message,
            })
        };
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
            ("head_dim", self.head_dim.unwrap_or(1)),
        ] {
            if value == 0 {
                return fail(format!("{} must be positive", name(field)));
            }
        }
        for (field, value, limit) in [
            ("vocab_size", self.vocab_size, Self::MAX_VOCAB_SIZE),
            ("hidden_size", self.hidden_size, Self::MAX_HIDDEN_SIZE),
            (
                "intermediate_size",
                self.intermediate_size,
                Self::MAX_INTERMEDIATE_SIZE,
            ),
            (
                "num_hidden_layers",
                self.num_hidden_layers,
                Self::MAX_LAYERS,
            ),
            ("head_dim", self.head_dim(), Self::MAX_HEAD_DIM),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                Self::MAX_CONTEXT,
            ),
        ] {
            if value > limit {
                return fail(format!(
                    "{} = {value} exceeds umi's limit of {limit}",
                    name(field)
                ));
            }
        }
        for (field, value, limit) in [
            (
                "num_attention_heads",
                self.num_attention_heads,
                Self::MAX_HIDDEN_SIZE,
            ),
            (
                "num_key_value_heads",
                self.num_kv_heads(),
                Self::MAX_HIDDEN_SIZE,
            ),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                Self::MAX_ROPE_TABLE,
            ),
        ] {
            match value.checked_mul(self.head_dim()) {
                Some(product) if product <= limit => {}
                product => {
                    return fail(format!(
                        "{} × {} = {} exceeds umi's limit of {limit}",
                        name(field),
                        name("head_dim"),
                        product.map_or("more than usize::MAX".into(), |p| p.to_string())
                    ));
                }
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            return fail(format!(
                "{} = {} is not a multiple of {} = {}",
                name("num_attention_heads"),
                self.num_attention_heads,
                name("num_key_value_heads"),
                self.num_kv_heads()
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return fail(format!(
                "{} = {} is not a multiple of {} = {}",
                name("hidden_size"),
                self.hidden_size,
                name("num_attention_heads"),
                self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return fail(format!(
                "{} = {} must be even for RoPE",
                name("head_dim"),
                self.head_dim()
            ));
        }
        let ids = self.bos_token_id.iter().map(|&id| ("bos_token_id", id));
        let ids = ids.chain(
            self.eos_token_ids()
                .into_iter()
                .map(|id| ("eos_token_id", id)),
        );
        for (field, id) in ids {
            if id as usize >= self.vocab_size {
                return fail(format!(
                    "{} = {id} is outside the vocabulary ({} = {})",
                    name(field),
                    name("vocab_size"),
                    self.vocab_size
                ));
            }
        }
        if self.hidden_act != "silu" {
            return fail(format!(
                "hidden_act = {:?} is not supported (only \"silu\")",
                self.hidden_act
            ));
        }
        if self.attention_bias || self.mlp_bias {
            return fail(
                "attention_bias / mlp_bias are not supported (Llama has no biases)".into(),
            );
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return fail(format!(
                "rope_scaling = {} is not supported yet (only plain RoPE)",
                self.rope_scaling
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            ));
        }
        if self.rms_norm_eps.is_nan()
            || self.rms_norm_eps <= 0.0
            || self.rope_theta.is_nan()
            || self.rope_theta <= 0.0
        {
            return fail(format!(
                "{} and {} must be positive",
                name("rms_norm_eps"),
                name("rope_theta")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_config_json_fills_defaults() {
        let json = r#"{"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
            "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
            "rms_norm_eps": 1e-05, "max_position_embeddings": 2048, "eos_token_id": 2,
            "bos_token_id": 1, "tie_word_embeddings": false, "rope_scaling": null,
            "torch_dtype": "bfloat16", "model_type": "llama"}"#;
        let config = LlamaConfig::from_json(json, "config.json").unwrap();
        assert_eq!(config.head_dim(), 64);
        assert_eq!(config.num_kv_heads(), 4);
        assert_eq!(config.rope_theta, 10_000.0);
        assert_eq!(config.eos_token_ids(), vec![2]);
        assert_eq!(config, LlamaConfig::tiny_llama_1_1b());
    }

    #[test]
    fn bad_configs_name_the_field() {
        let mut config = LlamaConfig::smollm2_135m();
        config.num_key_value_heads = Some(4);
        let err = config.validate("x/config.json").unwrap_err().to_string();
        assert!(
            err.contains("x/config.json") && err.contains("num_key_value_heads = 4"),
            "{err}"
        );

        let err = LlamaConfig::from_json(r#"{"vocab_size": 10}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.json") && err.contains("hidden_size"),
            "{err}"
        );

        let mut config = LlamaConfig::smollm2_135m();
        config.rope_scaling = Some(serde_json::json!({"rope_type": "llama3"}));
        let err = config.validate("c.json").unwrap_err().to_string();
        assert!(err.contains("rope_scaling"), "{err}");
    }

    #[test]
    fn sizes_are_bounded_and_checked_before_anything_is_allocated() {
        type Edit = fn(&mut LlamaConfig);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |c| c.max_position_embeddings = 1_000_000_000,
                "max_position_embeddings = 1000000000 exceeds umi's limit of 1048576",
            ),
            (
                |c| c.num_hidden_layers = 1 << 40,
                "num_hidden_layers = 1099511627776 exceeds umi's limit of 1024",
            ),
            (
                |c| c.vocab_size = 1 << 40,
                "vocab_size = 1099511627776 exceeds",
            ),
            (|c| c.head_dim = Some(0), "head_dim must be positive"),
            (
                |c| c.num_key_value_heads = Some(0),
                "num_key_value_heads must be positive",
            ),
            (
                // 3 · 2^60 heads of 64: the product overflows usize
                |c| {
                    c.num_attention_heads = 3 << 60;
                    c.head_dim = Some(64);
                },
                "num_attention_heads × head_dim = more than usize::MAX",
            ),
            (
                |c| {
                    (c.num_attention_heads, c.num_key_value_heads) = (1024, Some(1024));
                    c.head_dim = Some(128);
                },
                "num_attention_heads × head_dim = 131072 exceeds umi's limit of 65536",
            ),
            (
                |c| {
                    c.max_position_embeddings = 1 << 20;
                    c.head_dim = Some(256);
                },
                "max_position_embeddings × head_dim = 268435456 exceeds",
            ),
            (
                |c| {
                    c.num_attention_heads = 7;
                    c.num_key_value_heads = Some(7);
                },
                "hidden_size = 576 is not a multiple of num_attention_heads = 7",
            ),
            (
                |c| c.bos_token_id = Some(49_152),
                "bos_token_id = 49152 is outside the vocabulary (vocab_size = 49152)",
            ),
            (
                |c| c.eos_token_id = Some(TokenIds::Many(vec![2, u32::MAX])),
                "eos_token_id = 4294967295 is outside the vocabulary",
            ),
        ];
        for (edit, want) in cases {
            let mut config = LlamaConfig::smollm2_135m();
            edit(&mut config);
            let err = config.validate("m/config.json").unwrap_err().to_string();
            assert!(err.contains("m/config.json") && err.contains(want), "{err}");
        }
        // the same from the file itself
        let json = r#"{"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 1e9}"#;
        let err = LlamaConfig::from_json(json, "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.json"), "{err}");
        let json = json.replace("1e9", "1000000000");
        let err = LlamaConfig::from_json(&json, "c.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_position_embeddings = 1000000000"),
            "{err}"
        );
        // a 1M-token window with head_dim 128 is still accepted
        let mut config = LlamaConfig::tiny_llama_1_1b();
        config.max_position_embeddings = 1 << 20;
        config.validate("c.json").unwrap();
    }
}

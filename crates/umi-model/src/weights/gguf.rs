//! GGUF v3 checkpoints (llama.cpp): header and metadata parsed by `gguf-rs-lib`, tensors
//! dequantized to f32 at load, q/k rows un-permuted back to Hugging Face's rotate-half order.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::Path;

use gguf_rs_lib::format::metadata::MetadataValue;
use gguf_rs_lib::reader::file_reader::GGUFFileReader;

use super::quant::{GgmlType, SUPPORTED_GGML_TYPES, dequantize};
use super::{HostTensor, WeightSource};
use crate::config::{LlamaConfig, TokenIds};
use crate::{Error, Result};

/// An open GGUF file: metadata in memory, tensor data read on request.
pub struct GgufFile<R: Read + Seek> {
    name: String,
    reader: GGUFFileReader<R>,
    num_heads: usize,
    num_kv_heads: usize,
}

impl GgufFile<BufReader<File>> {
    /// Opens a GGUF file from disk.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if it cannot be read; [`Error::Format`] naming the file when the magic,
    /// version, metadata or tensor table is invalid or the file is truncated.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(BufReader::new(file), path.display().to_string())
    }
}

impl GgufFile<Cursor<Vec<u8>>> {
    /// Parses a GGUF file held in memory (a browser download, a test fixture); `name` is used
    /// in error messages.
    ///
    /// # Errors
    ///
    /// As [`GgufFile::open`].
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Self> {
        Self::from_reader(Cursor::new(bytes), name.to_string())
    }
}

impl<R: Read + Seek> GgufFile<R> {
    fn from_reader(reader: R, name: String) -> Result<Self> {
        let reader = GGUFFileReader::new(reader).map_err(|e| Error::Format {
            file: name.clone(),
            format: "GGUF",
            message: e.to_string(),
        })?;
        let mut file = Self {
            name,
            reader,
            num_heads: 0,
            num_kv_heads: 0,
        };
        let arch = file.string("general.architecture")?;
        if arch != "llama" {
            return Err(file.config_error(format!(
                "general.architecture is {arch:?}; only \"llama\" is supported"
            )));
        }
        file.num_heads = file.usize("llama.attention.head_count")?;
        file.num_kv_heads = file.usize_or("llama.attention.head_count_kv", file.num_heads)?;
        Ok(file)
    }

    /// The file name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A metadata value by key.
    pub fn metadata(&self, key: &str) -> Option<&MetadataValue> {
        self.reader.metadata().get(key)
    }

    fn config_error(&self, message: String) -> Error {
        Error::Config {
            file: self.name.clone(),
            message,
        }
    }

    /// A string metadata value.
    pub(crate) fn string(&self, key: &str) -> Result<String> {
        match self.metadata(key) {
            Some(MetadataValue::String(s)) => Ok(s.clone()),
            Some(other) => {
                Err(self.config_error(format!("{key} should be a string, found {other:?}")))
            }
            None => Err(self.config_error(format!("metadata key {key} is missing"))),
        }
    }

    /// An optional string metadata value.
    pub(crate) fn string_opt(&self, key: &str) -> Option<String> {
        match self.metadata(key) {
            Some(MetadataValue::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>> {
        match self.metadata(key) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .or_else(|| value.as_u64().map(|v| v as f64))
                .or_else(|| value.as_i64().map(|v| v as f64))
                .map(Some)
                .ok_or_else(|| {
                    self.config_error(format!("{key} should be a number, found {value:?}"))
                }),
        }
    }

    /// An optional whole number in `0..=u32::MAX` (sizes and token ids; larger sizes are then
    /// refused by [`LlamaConfig::validate`] with the key named).
    fn whole(&self, key: &str) -> Result<Option<u32>> {
        match self.number(key)? {
            Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 => Ok(Some(v as u32)),
            Some(v) => Err(self.config_error(format!(
                "{key} = {v} is not a whole number between 0 and {}",
                u32::MAX
            ))),
            None => Ok(None),
        }
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.whole(key)?
            .map(|v| v as usize)
            .ok_or_else(|| self.config_error(format!("metadata key {key} is missing")))
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.whole(key)?.map_or(default, |v| v as usize))
    }

    /// An optional token id.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key when the value is not a whole number in `0..=u32::MAX`.
    pub(crate) fn token_id(&self, key: &str) -> Result<Option<u32>> {
        self.whole(key)
    }

    /// A string-array metadata value (tokens, merges).
    pub(crate) fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.metadata(key) {
            None => Ok(None),
            Some(MetadataValue::Array(array)) => array
                .values
                .iter()
                .map(|v| match v {
                    MetadataValue::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.config_error(format!("{key} should be an array of strings"))),
            Some(other) => Err(self.config_error(format!(
                "{key} should be an array, found {:?}",
                other.value_type()
            ))),
        }
    }

    /// A numeric-array metadata value (scores, token types).
    pub(crate) fn numbers(&self, key: &str) -> Result<Option<Vec<f64>>> {
        match self.metadata(key) {
            None => Ok(None),
            Some(MetadataValue::Array(array)) => array
                .values
                .iter()
                .map(|v| {
                    v.as_f64()
                        .or_else(|| v.as_i64().map(|x| x as f64))
                        .or_else(|| v.as_u64().map(|x| x as f64))
                })
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.config_error(format!("{key} should be an array of numbers"))),
            Some(other) => Err(self.config_error(format!(
                "{key} should be an array, found {:?}",
                other.value_type()
            ))),
        }
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.reader.get_tensor_info(name).is_some()
    }

    /// The model hyperparameters from the `llama.*` metadata, named as Hugging Face does.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the file and the key when a required key is missing or the
    /// values describe an unsupported model (RoPE scaling, odd head sizes).
    pub fn config(&self) -> Result<LlamaConfig> {
        let hidden_size = self.usize("llama.embedding_length")?;
        let num_attention_heads = self.num_heads;
        let head_dim = self.usize_or(
            "llama.rope.dimension_count",
            hidden_size / num_attention_heads.max(1),
        )?;
        let vocab_size = match self.whole("llama.vocab_size")? {
            Some(v) => v as usize,
            None => self
                .strings("tokenizer.ggml.tokens")?
                .map(|t| t.len())
                .ok_or_else(|| {
                    self.config_error(
                        "neither llama.vocab_size nor tokenizer.ggml.tokens is present".into(),
                    )
                })?,
        };
        if let Some(kind) = self.string_opt("llama.rope.scaling.type")
            && kind != "none"
        {
            return Err(self.config_error(format!(
                "llama.rope.scaling.type = {kind:?} is not supported yet"
            )));
        }
        let config = LlamaConfig {
            vocab_size,
            hidden_size,
            intermediate_size: self.usize("llama.feed_forward_length")?,
            num_hidden_layers: self.usize("llama.block_count")?,
            num_attention_heads,
            num_key_value_heads: Some(self.num_kv_heads),
            head_dim: Some(head_dim),
            rms_norm_eps: self
                .number("llama.attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5),
            rope_theta: self.number("llama.rope.freq_base")?.unwrap_or(10_000.0),
            max_position_embeddings: self.usize_or("llama.context_length", 2048)?,
            tie_word_embeddings: !self.has_tensor("output.weight"),
            bos_token_id: self.token_id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: self
                .token_id("tokenizer.ggml.eos_token_id")?
                .map(TokenIds::One),
            hidden_act: "silu".into(),
            attention_bias: false,
            mlp_bias: false,
            rope_scaling: None,
        };
        config.validate_named(&self.name, &|field| match gguf_key(field) {
            Some(key) => format!("{key} ({field})"),
            None => field.to_string(),
        })?;
        Ok(config)
    }
}

/// The GGUF metadata key a [`LlamaConfig`] field comes from, for messages.
fn gguf_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "vocab_size" => "llama.vocab_size",
        "hidden_size" => "llama.embedding_length",
        "intermediate_size" => "llama.feed_forward_length",
        "num_hidden_layers" => "llama.block_count",
        "num_attention_heads" => "llama.attention.head_count",
        "num_key_value_heads" => "llama.attention.head_count_kv",
        "head_dim" => "llama.rope.dimension_count",
        "max_position_embeddings" => "llama.context_length",
        "rms_norm_eps" => "llama.attention.layer_norm_rms_epsilon",
        "rope_theta" => "llama.rope.freq_base",
        "bos_token_id" => "tokenizer.ggml.bos_token_id",
        "eos_token_id" => "tokenizer.ggml.eos_token_id",
        _ => return None,
    })
}

/// Hugging Face tensor name → llama.cpp GGUF tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let part = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

/// Undoes llama.cpp's q/k row permutation (`convert_hf_to_gguf.py`'s `permute`): within each
/// head, GGUF row `2·i + j` is Hugging Face row `j·(head_dim/2) + i`.
fn unpermute_rows(data: &[f32], rows: usize, cols: usize, num_heads: usize) -> Vec<f32> {
    let head_dim = rows / num_heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..num_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * cols;
                let dst = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

impl<R: Read + Seek> WeightSource for GgufFile<R> {
    fn origin(&self) -> String {
        self.name.clone()
    }

    fn display_name(&self, name: &str) -> String {
        match gguf_name(name) {
            Some(gguf) => format!("`{gguf}` (Hugging Face `{name}`)"),
            None => format!("`{name}`"),
        }
    }

    fn tensor(&mut self, name: &str) -> Result<Option<HostTensor>> {
        let Some(raw) = self.raw(name)? else {
            return Ok(None);
        };
        let mut data = self.dequantize(&raw, &raw.bytes, raw.values)?;
        if let (Some(heads), &[rows, cols]) = (raw.heads, &raw.shape[..]) {
            data = unpermute_rows(&data, rows, cols, heads);
        }
        Ok(Some(HostTensor {
            shape: raw.shape,
            data,
        }))
    }

    /// Dequantizes the tensor's bytes a block of rows at a time (blocks of whole heads for
    /// the q and k rows it reorders).
    fn tensor_by_rows(
        &mut self,
        name: &str,
        rows_per_block: usize,
        start: &mut dyn FnMut(&[usize]) -> Result<()>,
        block: &mut dyn FnMut(&[f32]),
    ) -> Result<bool> {
        let Some(raw) = self.raw(name)? else {
            return Ok(false);
        };
        start(&raw.shape)?;
        let (rows, cols) = match raw.shape[..] {
            [rows, cols] => (rows, cols),
            _ => (1, raw.values),
        };
        let row_bytes = raw.ty.bytes_for(cols);
        let Some(row_bytes) = row_bytes.filter(|_| rows > 0 && cols > 0) else {
            // rows that are not whole blocks (or no rows): the tensor whole
            let data = self.dequantize(&raw, &raw.bytes, raw.values)?;
            super::hand_over_rows(&raw.shape, &data, rows_per_block, block);
            return Ok(true);
        };
        let head_rows = raw.heads.map_or(1, |heads| rows / heads);
        let block_rows = rows_per_block.max(1).div_ceil(head_rows) * head_rows;
        for bytes in raw.bytes.chunks(block_rows * row_bytes) {
            let n = bytes.len() / row_bytes;
            let mut data = self.dequantize(&raw, bytes, n * cols)?;
            if raw.heads.is_some() {
                data = unpermute_rows(&data, n, cols, n / head_rows);
            }
            block(&data);
        }
        Ok(true)
    }
}

/// A tensor's bytes as the file holds them ([`GgufFile::raw`]).
struct RawTensor {
    /// The file's name of it.
    gguf: String,
    ty: GgmlType,
    /// Hugging Face's shape, outermost first.
    shape: Vec<usize>,
    values: usize,
    bytes: Vec<u8>,
    /// The heads whose rows llama.cpp permuted (q and k projections).
    heads: Option<usize>,
}

impl<R: Read + Seek> GgufFile<R> {
    /// The tensor Hugging Face calls `name`, undecoded, or `None` when the file lacks it.
    fn raw(&mut self, name: &str) -> Result<Option<RawTensor>> {
        let Some(gguf) = gguf_name(name) else {
            return Ok(None);
        };
        let Some(info) = self.reader.get_tensor_info(&gguf) else {
            return Ok(None);
        };
        let type_id = info.tensor_type() as u32;
        let dims: Vec<usize> = info.shape().dims().iter().map(|&d| d as usize).collect();
        let ty = GgmlType::from_id(type_id).ok_or_else(|| Error::UnsupportedDtype {
            file: self.name.clone(),
            tensor: format!("`{gguf}`"),
            dtype: format!("{:?} (ggml type {type_id})", info.tensor_type()),
            supported: SUPPORTED_GGML_TYPES,
        })?;
        let shape: Vec<usize> = dims.iter().rev().copied().collect(); // ne order is innermost first
        let values = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::Format {
                file: self.name.clone(),
                format: "GGUF",
                message: format!("tensor `{gguf}`: shape {shape:?} overflows"),
            })?;
        let heads = if name.ends_with("q_proj.weight") {
            Some(self.num_heads)
        } else if name.ends_with("k_proj.weight") {
            Some(self.num_kv_heads)
        } else {
            None
        };
        if let (Some(heads), &[rows, cols]) = (heads, &shape[..])
            && (heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2))
        {
            return Err(Error::ShapeMismatch {
                file: self.name.clone(),
                tensor: format!("`{gguf}`"),
                expected: vec![heads * (rows / heads.max(1)), cols],
                got: shape,
            });
        }
        let bytes = self
            .reader
            .load_tensor_data(&gguf)
            .map_err(|e| Error::Format {
                file: self.name.clone(),
                format: "GGUF",
                message: format!("tensor `{gguf}`: {e}"),
            })?
            .map(|d| d.into_owned())
            .unwrap_or_default();
        let heads = heads.filter(|_| shape.len() == 2);
        Ok(Some(RawTensor {
            gguf,
            ty,
            shape,
            values,
            bytes,
            heads,
        }))
    }

    /// `n` values of `raw`'s type from `bytes` in f32.
    fn dequantize(&self, raw: &RawTensor, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
        dequantize(raw.ty, bytes, n).map_err(|message| Error::Format {
            file: self.name.clone(),
            format: "GGUF",
            message: format!("tensor `{}`: {message}", raw.gguf),
        })
    }
}

/// The bytes of a GGUF file with metadata only: a valid tiny Llama config (vocab 256, hidden 64,
/// 2 layers, 4 heads, 2 KV heads, context 128, BOS 1, EOS 2) with `edits` added or replacing
/// keys.
#[cfg(test)]
pub(crate) fn metadata_only(edits: Vec<(&str, MetadataValue)>) -> Vec<u8> {
    use MetadataValue::{String as S, U32};
    let base = [
        ("general.architecture", S("llama".into())),
        ("llama.embedding_length", U32(64)),
        ("llama.feed_forward_length", U32(128)),
        ("llama.block_count", U32(2)),
        ("llama.attention.head_count", U32(4)),
        ("llama.attention.head_count_kv", U32(2)),
        ("llama.context_length", U32(128)),
        ("llama.vocab_size", U32(256)),
        ("tokenizer.ggml.bos_token_id", U32(1)),
        ("tokenizer.ggml.eos_token_id", U32(2)),
    ];
    let mut builder = gguf_rs_lib::builder::GGUFBuilder::new();
    for (key, value) in base.into_iter().chain(edits) {
        builder = builder.add_metadata(key, value);
    }
    builder.build_to_bytes().unwrap().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use MetadataValue::{F64, I32, U32, U64};

    /// Read by rows (the quantized load), every tensor of a GGUF file in each type is the
    /// tensor read whole, the q and k rows un-permuted head by head (a block is rounded up to
    /// whole heads).
    #[test]
    fn tensors_read_by_rows_are_the_tensors_read_whole() {
        use crate::weights::test_support::{by_rows_equals_whole, weight_names};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny/gguf");
        let names = weight_names(4);
        for file in [
            "tiny-f32.gguf",
            "tiny-q8_0.gguf",
            "tiny-q4_1.gguf",
            "tiny-q4_0.gguf",
        ] {
            let mut gguf = GgufFile::open(&dir.join(file)).unwrap();
            for rows in [1, 3, 1000] {
                let found = by_rows_equals_whole(&mut gguf, &names, rows);
                assert!(found > 10, "{file}: {found} tensors");
            }
        }
    }

    #[test]
    fn metadata_sizes_are_bounded_and_name_the_key() {
        let config = |edits| {
            GgufFile::from_bytes(metadata_only(edits), "m.gguf").and_then(|file| file.config())
        };
        config(vec![]).unwrap();
        for (edits, want) in [
            (
                vec![("llama.context_length", U32(1_000_000_000))],
                "llama.context_length (max_position_embeddings) = 1000000000 exceeds",
            ),
            (
                vec![("llama.block_count", U32(100_000))],
                "llama.block_count (num_hidden_layers) = 100000 exceeds",
            ),
            (
                vec![("llama.rope.dimension_count", U32(0))],
                "llama.rope.dimension_count (head_dim) must be positive",
            ),
            (
                vec![("llama.attention.head_count_kv", U32(3))],
                "llama.attention.head_count (num_attention_heads) = 4 is not a multiple of",
            ),
            (
                vec![
                    ("llama.attention.head_count", U32(1 << 30)),
                    ("llama.rope.dimension_count", U32(16)),
                ],
                "llama.attention.head_count (num_attention_heads) × llama.rope.dimension_count \
                 (head_dim) = 17179869184 exceeds",
            ),
            (
                vec![("tokenizer.ggml.bos_token_id", U32(256))],
                "tokenizer.ggml.bos_token_id (bos_token_id) = 256 is outside the vocabulary",
            ),
            (
                vec![("tokenizer.ggml.eos_token_id", I32(-1))],
                "tokenizer.ggml.eos_token_id = -1 is not a whole number",
            ),
            (
                vec![("llama.attention.head_count", U64(1 << 40))],
                "llama.attention.head_count = 1099511627776 is not a whole number",
            ),
            (
                vec![("llama.embedding_length", F64(64.5))],
                "llama.embedding_length = 64.5 is not a whole number",
            ),
        ] {
            let err = config(edits).unwrap_err().to_string();
            assert!(err.contains("m.gguf") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // 2 heads of head_dim 4, one column: HF rows 0..8
        let hf: Vec<f32> = (0..8).map(|v| v as f32).collect();
        // llama.cpp permute: reshape(n_head, 2, half, cols).swapaxes(1, 2)
        let (heads, half) = (2, 2);
        let mut gguf = vec![0.0; 8];
        for h in 0..heads {
            for i in 0..half {
                for j in 0..2 {
                    gguf[h * 4 + 2 * i + j] = hf[h * 4 + j * half + i];
                }
            }
        }
        assert_eq!(gguf, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(unpermute_rows(&gguf, 8, 1, 2), hf);
    }

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.12.mlp.down_proj.weight").unwrap(),
            "blk.12.ffn_down.weight"
        );
        assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
        assert!(gguf_name("model.layers.0.unknown").is_none());
    }
}

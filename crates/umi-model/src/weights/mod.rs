//! Weight loading: every checkpoint format becomes a [`WeightSource`] of Hugging Face-named,
//! `[out, in]`-shaped f32 tensors, and [`build_llama`] turns one into a [`Llama`] on a device.
//!
//! Tensors are requested one at a time, so only one dequantized tensor lives on the host at
//! once on top of the file itself (and, in the browser, uploads stay below binding limits).

pub(crate) mod gguf;
mod quant;
mod random;
pub(crate) mod safetensors;

pub use gguf::GgufFile;
pub use quant::{GgmlType, QFormat, dequantize};
pub use random::RandomWeights;
pub use safetensors::{SafetensorsFolder, is_plain_relative};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::LlamaConfig;
use crate::linear::LoraLinear;
use crate::llama::{Attention, DecoderLayer, Llama, Mlp, RmsNorm};
use crate::params::{EMBED_TOKENS, FINAL_NORM, LM_HEAD, LayerPart, layer_module, weight_name};
use crate::rope::RotaryEmbedding;
use crate::{Error, Result};

/// A tensor on the host in row-major order with Hugging Face's shape convention
/// (`[out, in]` for projections).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Transposes a 2-D tensor (`[rows, cols]` → `[cols, rows]`).
    ///
    /// # Panics
    ///
    /// If the tensor is not 2-D.
    pub fn transposed(&self) -> HostTensor {
        let [rows, cols] = self.shape[..] else {
            panic!(
                "transposed() needs a 2-D tensor, got shape {:?}",
                self.shape
            )
        };
        let mut data = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                data[c * rows + r] = self.data[r * cols + c];
            }
        }
        HostTensor {
            shape: vec![cols, rows],
            data,
        }
    }
}

/// A checkpoint seen as Hugging Face-named f32 tensors.
pub trait WeightSource {
    /// The file (or folder) the weights come from, for error messages.
    fn origin(&self) -> String;

    /// The tensor called `name` in Hugging Face naming (`model.layers.0.self_attn.q_proj.weight`),
    /// converted to f32 in `[out, in]` layout, or `None` when the checkpoint does not have it.
    ///
    /// # Errors
    ///
    /// When the tensor exists but cannot be read (bad data type, truncated data).
    fn tensor(&mut self, name: &str) -> Result<Option<HostTensor>>;

    /// The tensor [`WeightSource::tensor`] would give, in blocks of whole rows, so that a
    /// caller converting it as it goes (quantizing at load) never holds it whole in f32:
    /// `start` gets its shape first (an error from it ends the read), then `block` its values
    /// row-major, about `rows_per_block` rows at a time (a source may round that up, to whole
    /// heads of rows it reorders). `Ok(false)` when the checkpoint does not have the tensor.
    /// The default reads the tensor whole, then hands it over in blocks.
    ///
    /// # Errors
    ///
    /// As [`WeightSource::tensor`], or `start`'s.
    fn tensor_by_rows(
        &mut self,
        name: &str,
        rows_per_block: usize,
        start: &mut dyn FnMut(&[usize]) -> Result<()>,
        block: &mut dyn FnMut(&[f32]),
    ) -> Result<bool> {
        let Some(tensor) = self.tensor(name)? else {
            return Ok(false);
        };
        start(&tensor.shape)?;
        hand_over_rows(&tensor.shape, &tensor.data, rows_per_block, block);
        Ok(true)
    }

    /// How the tensor Hugging Face calls `name` is named in this checkpoint, quoted, for messages.
    fn display_name(&self, name: &str) -> String {
        format!("`{name}`")
    }

    /// [`WeightSource::origin`] and [`WeightSource::display_name`] of `name`: what an error
    /// about the tensor names.
    fn names(&self, name: &str) -> (String, String) {
        (self.origin(), self.display_name(name))
    }
}

/// Hands `data` (a tensor of `shape`, row-major) to `block` in blocks of `rows_per_block`
/// whole rows (at least one; the last block shorter).
pub(crate) fn hand_over_rows(
    shape: &[usize],
    data: &[f32],
    rows_per_block: usize,
    block: &mut dyn FnMut(&[f32]),
) {
    let row: usize = shape.iter().skip(1).product();
    if row == 0 {
        return;
    }
    for values in data.chunks(row * rows_per_block.max(1)) {
        block(values);
    }
}

/// Builds a [`Llama`] on `device` from `source`, checking every tensor against `config`.
/// Tensors are asked for by the names [`Llama::named_params`] gives them (Hugging Face's).
///
/// # Errors
///
/// [`Error::MissingTensor`] or [`Error::ShapeMismatch`] naming the file, the tensor and the
/// expected shape; whatever `source` reports for unreadable tensors.
pub fn build_llama(
    config: &LlamaConfig,
    source: &mut dyn WeightSource,
    device: &Device,
) -> Result<Llama> {
    build_llama_with_progress(config, source, device, &mut |_| {})
}

/// How far [`build_llama_with_progress`] is: weights read, converted and placed on the device
/// so far, of all the model has ([`LlamaConfig::num_parameters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    /// Weights loaded so far (counted in values, not bytes).
    pub params_done: u64,
    /// Weights of the whole model.
    pub params_total: u64,
}

impl LoadProgress {
    /// `params_done / params_total`, in `[0, 1]`.
    pub fn fraction(&self) -> f64 {
        if self.params_total == 0 {
            1.0
        } else {
            self.params_done as f64 / self.params_total as f64
        }
    }
}

/// [`build_llama`], calling `on_progress` after each tensor is on the device (the browser shows
/// it: converting and uploading SmolLM2 takes seconds to minutes there). The last call has
/// `params_done == params_total`.
///
/// # Errors
///
/// As [`build_llama`].
pub fn build_llama_with_progress(
    config: &LlamaConfig,
    source: &mut dyn WeightSource,
    device: &Device,
    on_progress: &mut dyn FnMut(LoadProgress),
) -> Result<Llama> {
    build(
        config,
        source,
        device,
        Hold::Float(WeightDtype::F32),
        on_progress,
    )
}

/// The precision a model's token embedding, projections and LM head are held in on the device
/// (norms stay f32). f16 halves the memory and the bytes read per token, on the CPU and on a
/// GPU with `shader-f16` ([`crate::GpuInfo::shader_f16`]; see [`Llama::half`]): each tensor is converted
/// on the host as it is read, so no f32 copy of the model is ever on the device and the largest
/// tensor a GPU must bind is half the f32 one ([`WeightDtype::bytes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightDtype {
    /// 4 bytes per weight: every backend, training included.
    #[default]
    F32,
    /// 2 bytes per weight: inference (a GPU needs `shader-f16`).
    F16,
}

impl WeightDtype {
    /// Bytes per weight.
    pub fn bytes(self) -> u64 {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 => 2,
        }
    }
}

/// How [`build`] holds the weights: a float precision, or quantized (native CPU inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// On the device in this precision.
    Float(WeightDtype),
    /// Projections in this format, the embedding in Q8_0, on the host.
    #[cfg_attr(
        target_family = "wasm",
        expect(dead_code, reason = "quantized weights are native only")
    )]
    Quantized(QFormat),
}

/// The model from `source`, its weights held as `hold` says: in f32 or f16 on the device, or
/// with every projection put in a quantized format and the token embedding in Q8_0 as they
/// are read (native only: [`crate::load_model_quantized`]), so the f32 weights never all live
/// at once (peak memory: the quantized model plus a block of rows of one tensor, read by
/// [`WeightSource::tensor_by_rows`]); the model then equals the
/// f32 one after [`Llama::quantize`] (or [`Llama::half`]).
pub(crate) fn build(
    config: &LlamaConfig,
    source: &mut dyn WeightSource,
    device: &Device,
    hold: Hold,
    on_progress: &mut dyn FnMut(LoadProgress),
) -> Result<Llama> {
    config.validate(&source.origin())?;
    let hidden = config.hidden_size;
    let head_dim = config.head_dim();
    let q_out = config.num_attention_heads * head_dim;
    let kv_out = config.num_kv_heads() * head_dim;
    let inter = config.intermediate_size;

    let mut loader = Loader {
        source,
        device,
        progress: LoadProgress {
            params_done: 0,
            params_total: config.num_parameters(),
        },
        on_progress,
        hold,
    };
    let (embed_tokens, embed_quantized) =
        loader.embedding(&weight_name(EMBED_TOKENS), config.vocab_size, hidden)?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let name = |part: LayerPart| weight_name(&layer_module(i, part));
        let norm = |loader: &mut Loader, part: LayerPart| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: Param::from_tensor(loader.tensor(&name(part), &[hidden])?),
                eps: config.rms_norm_eps,
            })
        };
        let input_layernorm = norm(&mut loader, LayerPart::InputLayernorm)?;
        let post_attention_layernorm = norm(&mut loader, LayerPart::PostAttentionLayernorm)?;
        let self_attn = Attention {
            q_proj: loader.linear(&name(LayerPart::QProj), q_out, hidden)?,
            k_proj: loader.linear(&name(LayerPart::KProj), kv_out, hidden)?,
            v_proj: loader.linear(&name(LayerPart::VProj), kv_out, hidden)?,
            o_proj: loader.linear(&name(LayerPart::OProj), hidden, q_out)?,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_kv_heads(),
            head_dim,
        };
        let mlp = Mlp {
            gate_proj: loader.linear(&name(LayerPart::GateProj), inter, hidden)?,
            up_proj: loader.linear(&name(LayerPart::UpProj), inter, hidden)?,
            down_proj: loader.linear(&name(LayerPart::DownProj), hidden, inter)?,
        };
        layers.push(DecoderLayer {
            input_layernorm,
            self_attn,
            post_attention_layernorm,
            mlp,
        });
    }
    let norm = RmsNorm {
        weight: Param::from_tensor(loader.tensor(&weight_name(FINAL_NORM), &[hidden])?),
        eps: config.rms_norm_eps,
    };
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(loader.linear(&weight_name(LM_HEAD), config.vocab_size, hidden)?)
    };
    Ok(Llama {
        embed_tokens: Param::from_tensor(embed_tokens),
        layers,
        norm,
        lm_head,
        rotary: RotaryEmbedding::new(
            head_dim,
            config.max_position_embeddings,
            config.rope_theta,
            device,
        ),
        config: config.clone(),
        embed_quantized,
        kv_cache_f16: false,
    })
}

/// [`Error::MissingTensor`] for a tensor named as [`WeightSource::names`] gives it.
fn missing((file, tensor): (String, String)) -> Error {
    Error::MissingTensor { file, tensor }
}

/// [`Error::ShapeMismatch`] when a tensor has the shape `got`, not `expected`; `names` (as
/// [`WeightSource::names`]) is asked for only then.
fn check_shape(
    expected: &[usize],
    got: &[usize],
    names: impl FnOnce() -> (String, String),
) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    let (file, tensor) = names();
    Err(Error::ShapeMismatch {
        file,
        tensor,
        expected: expected.to_vec(),
        got: got.to_vec(),
    })
}

/// Values (of f32) a quantized load converts at a time: 4 MiB, against up to a whole
/// embedding (TinyLlama: 65.5 M values, 262 MB) when each tensor was read whole in f32 first.
#[cfg(not(target_family = "wasm"))]
const QUANTIZE_ROWS_VALUES: usize = 1 << 20;

struct Loader<'a> {
    source: &'a mut dyn WeightSource,
    device: &'a Device,
    progress: LoadProgress,
    on_progress: &'a mut dyn FnMut(LoadProgress),
    /// The precision of the embedding, projections and LM head, or their quantized format.
    hold: Hold,
}

impl Loader<'_> {
    fn host(&mut self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let tensor = self
            .source
            .tensor(name)?
            .ok_or_else(|| missing(self.source.names(name)))?;
        check_shape(expected, &tensor.shape, || self.source.names(name))?;
        Ok(tensor)
    }

    fn tensor<const D: usize>(&mut self, name: &str, expected: &[usize]) -> Result<Tensor<D>> {
        let host = self.host(name, expected)?;
        Ok(self.upload(host))
    }

    /// Puts a tensor that was read on the device (in f32) and counts it as loaded.
    fn upload<const D: usize>(&mut self, host: HostTensor) -> Tensor<D> {
        let tensor = Tensor::from_data(TensorData::new(host.data, host.shape.clone()), self.device);
        self.loaded(&host.shape);
        tensor
    }

    /// [`Loader::upload`] for the embedding, a projection or the LM head: in f16 (converted
    /// on the host) when the model is held in f16.
    fn upload_weight<const D: usize>(&mut self, host: HostTensor) -> Tensor<D> {
        if self.hold != Hold::Float(WeightDtype::F16) {
            return self.upload(host);
        }
        let data = TensorData::new(host.data, host.shape.clone()).convert::<burn::tensor::f16>();
        let tensor = Tensor::from_data(data, (self.device, burn::tensor::DType::F16));
        self.loaded(&host.shape);
        tensor
    }

    /// The token embedding `[vocab, hidden]`: as an f32 tensor, or in Q8_0 (with an empty f32
    /// slot) when loading quantized (in any format: see [`Llama::quantize`]).
    fn embedding(
        &mut self,
        name: &str,
        vocab: usize,
        hidden: usize,
    ) -> Result<(Tensor<2>, Option<crate::linear::QuantizedWeight>)> {
        #[cfg(not(target_family = "wasm"))]
        if let Hold::Quantized(_) = self.hold
            && let Some(q) = self.quantized(name, QFormat::Q8_0, vocab, hidden)?
        {
            let q = crate::linear::QuantizedWeight::new(q);
            return Ok((crate::linear::empty_weight(self.device), Some(q)));
        }
        let host = self.host(name, &[vocab, hidden])?;
        Ok((self.upload_weight(host), None))
    }

    /// Loads an HF `[out, in]` projection as the `[in, out]` weight of a [`LoraLinear`]: on the
    /// CPU backend its `[out, in]` values as they are, viewed transposed
    /// ([`crate::linear::held_out_in`]); elsewhere transposed on the host. Quantized (which
    /// keeps `[out, in]`) when loading quantized.
    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<LoraLinear> {
        #[cfg(not(target_family = "wasm"))]
        if let Hold::Quantized(format) = self.hold
            && let Some(q) = self.quantized(name, format, out, inp)?
        {
            return Ok(LoraLinear::quantized(q, self.device));
        }
        let host = self.host(name, &[out, inp])?;
        if crate::linear::holds_out_in(self.device) {
            let weight: Tensor<2> = self.upload_weight(host);
            return Ok(LoraLinear::new(weight.transpose()));
        }
        Ok(LoraLinear::new(self.upload_weight(host.transposed())))
    }

    /// The `[rows, cols]` tensor `name` quantized in `format` as its rows are read
    /// ([`WeightSource::tensor_by_rows`], blocks of [`QUANTIZE_ROWS_VALUES`]), or `None` when
    /// `cols` is not a multiple of the block (the tensor then loads in f32).
    #[cfg(not(target_family = "wasm"))]
    fn quantized(
        &mut self,
        name: &str,
        format: QFormat,
        rows: usize,
        cols: usize,
    ) -> Result<Option<crate::qmatmul::QMatrix>> {
        let Some(mut builder) = crate::qmatmul::QMatrix::builder(format, rows, cols) else {
            return Ok(None);
        };
        let expected = [rows, cols];
        let names = self.source.names(name);
        let found = self.source.tensor_by_rows(
            name,
            (QUANTIZE_ROWS_VALUES / cols).max(1),
            &mut |shape| check_shape(&expected, shape, || names.clone()),
            &mut |values| builder.push(values),
        )?;
        if !found {
            return Err(missing(names));
        }
        self.loaded(&expected);
        Ok(Some(builder.finish()))
    }

    /// Counts a tensor of `shape` as loaded and reports it.
    fn loaded(&mut self, shape: &[usize]) {
        let values: u64 = shape.iter().map(|&d| d as u64).product();
        self.progress.params_done =
            (self.progress.params_done + values).min(self.progress.params_total);
        (self.on_progress)(self.progress);
    }
}

/// Checks shared by the sources' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::WeightSource;
    use crate::params::{EMBED_TOKENS, FINAL_NORM, LM_HEAD, LayerPart, layer_module, weight_name};

    /// The Hugging Face names of a Llama's weights with up to `layers` layers.
    pub(crate) fn weight_names(layers: usize) -> Vec<String> {
        let mut names = vec![
            weight_name(EMBED_TOKENS),
            weight_name(FINAL_NORM),
            weight_name(LM_HEAD),
        ];
        let norms = [LayerPart::InputLayernorm, LayerPart::PostAttentionLayernorm];
        for layer in 0..layers {
            for part in norms.into_iter().chain(LayerPart::PROJECTIONS) {
                names.push(weight_name(&layer_module(layer, part)));
            }
        }
        names
    }

    /// Asserts that every tensor of `names` read by rows
    /// ([`WeightSource::tensor_by_rows`], `rows_per_block`) is the tensor read whole: the same
    /// shape first, then blocks of whole rows (at least `rows_per_block` but the last) whose
    /// values, one after the other, are the whole tensor's. Returns how many `source` had.
    pub(crate) fn by_rows_equals_whole(
        source: &mut dyn WeightSource,
        names: &[String],
        rows_per_block: usize,
    ) -> usize {
        let mut found = 0;
        for name in names {
            let whole = source.tensor(name).unwrap();
            let mut shape = None;
            let mut blocks: Vec<Vec<f32>> = Vec::new();
            let had = source
                .tensor_by_rows(
                    name,
                    rows_per_block,
                    &mut |s| {
                        shape = Some(s.to_vec());
                        Ok(())
                    },
                    &mut |values| blocks.push(values.to_vec()),
                )
                .unwrap();
            assert_eq!(had, whole.is_some(), "{name}");
            let Some(whole) = whole else { continue };
            found += 1;
            assert_eq!(shape.as_ref(), Some(&whole.shape), "{name}");
            let row: usize = whole.shape.iter().skip(1).product();
            for (i, block) in blocks.iter().enumerate() {
                assert!(block.len().is_multiple_of(row), "{name}: block {i}");
                if i + 1 < blocks.len() {
                    assert!(block.len() >= row * rows_per_block, "{name}: block {i}");
                }
            }
            assert_eq!(
                blocks.concat(),
                whole.data,
                "{name}: {rows_per_block} rows per block"
            );
        }
        found
    }
}

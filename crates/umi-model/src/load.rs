//! One entry point for every checkpoint layout: a GGUF file, or a Hugging Face model folder.

use std::path::Path;

use burn::tensor::Device;

use crate::chat::ChatTemplate;
use crate::config::LlamaConfig;
use crate::llama::Llama;
use crate::tokenizer::Tokenizer;
use crate::weights::{GgufFile, Hold, LoadProgress, SafetensorsFolder, WeightDtype};
use crate::{Error, Result};

/// A model ready to generate: weights on a device, its tokenizer and its chat template.
#[derive(Debug)]
pub struct LoadedModel {
    /// The network.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its prompt format.
    pub chat_template: ChatTemplate,
    /// Where it was loaded from.
    pub origin: String,
}

/// Loads a model from `path`:
///
/// - a `.gguf` file (GGUF v3; F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, dequantized to f32),
///   tokenizer and chat template from its metadata;
/// - a Hugging Face folder (or a `.safetensors` file inside one) with `config.json`,
///   `model.safetensors` or shards + `model.safetensors.index.json`, `tokenizer.json`, and
///   optionally `tokenizer_config.json` (chat template, `add_bos_token`).
///
/// # Errors
///
/// An [`Error`] naming the file, the tensor and what was expected when anything does not fit.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    load(path, device, Hold::Float(WeightDtype::F32))
}

/// [`load_model`] with the token embedding, projections and LM head held in `dtype` on the
/// device ([`WeightDtype::F16`]: converted as each tensor is read, for inference on the CPU or
/// on a GPU with `shader-f16`; see [`crate::Llama::half`]).
///
/// # Errors
///
/// As [`load_model`].
pub fn load_model_in(path: &Path, device: &Device, dtype: WeightDtype) -> Result<LoadedModel> {
    load(path, device, Hold::Float(dtype))
}

/// [`load_model`] with every projection put in `format` and the token embedding in Q8_0 as
/// they are read (CPU inference; see [`Llama::quantize`]): the f32 weights never all live at
/// once, so peak memory stays near the quantized model's size. Adapters to merge need the
/// f32 model: [`load_model`], [`crate::merge_lora`], then [`Llama::quantize`].
///
/// # Errors
///
/// As [`load_model`].
#[cfg(not(target_family = "wasm"))]
pub fn load_model_quantized(
    path: &Path,
    device: &Device,
    format: crate::QFormat,
) -> Result<LoadedModel> {
    load(path, device, Hold::Quantized(format))
}

fn load(path: &Path, device: &Device, hold: Hold) -> Result<LoadedModel> {
    let is_gguf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        let mut gguf = GgufFile::open(path)?;
        return from_gguf(&mut gguf, device, hold, &mut |_| {});
    }
    let folder = if path.is_dir() {
        path
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        path.parent().unwrap_or(Path::new("."))
    } else if !path.exists() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    } else {
        return Err(Error::Format {
            file: path.display().to_string(),
            format: "model",
            message: "expected a .gguf file or a Hugging Face model folder".into(),
        });
    };
    hf_folder(folder, device, hold)
}

/// Loads a model from GGUF bytes already in memory (browser downloads, tests), its weights
/// held in `dtype` (as [`load_model_in`]), calling `on_progress` after each tensor is on the
/// device (see [`build_llama_with_progress`](crate::weights::build_llama_with_progress)).
///
/// # Errors
///
/// As [`load_model`].
pub fn load_gguf_bytes(
    bytes: Vec<u8>,
    name: &str,
    device: &Device,
    dtype: WeightDtype,
    on_progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    let mut gguf = GgufFile::from_bytes(bytes, name)?;
    from_gguf(&mut gguf, device, Hold::Float(dtype), on_progress)
}

fn from_gguf<R: std::io::Read + std::io::Seek>(
    gguf: &mut GgufFile<R>,
    device: &Device,
    hold: Hold,
    on_progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    let config = gguf.config()?;
    let tokenizer = Tokenizer::from_gguf(gguf)?;
    check_vocab(&tokenizer, &config, gguf.name(), true)?;
    let chat_template = ChatTemplate::detect(gguf.string_opt("tokenizer.chat_template").as_deref());
    let model = crate::weights::build(&config, gguf, device, hold, on_progress)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        origin: gguf.name().to_string(),
    })
}

fn check_vocab(tokenizer: &Tokenizer, config: &LlamaConfig, file: &str, exact: bool) -> Result<()> {
    let (tok, model) = (tokenizer.vocab_size(), config.vocab_size);
    if tok > model || (exact && tok != model) {
        return Err(Error::Tokenizer {
            file: file.to_string(),
            message: format!(
                "the tokenizer has {tok} tokens but the model's vocab_size is {model}"
            ),
        });
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Format {
            file: path.display().to_string(),
            format: "JSON",
            message: e.to_string(),
        })
}

/// Loads a Hugging Face model folder (see [`load_model`]).
///
/// # Errors
///
/// As [`load_model`].
pub fn load_hf_folder(folder: &Path, device: &Device) -> Result<LoadedModel> {
    hf_folder(folder, device, Hold::Float(WeightDtype::F32))
}

fn hf_folder(folder: &Path, device: &Device, hold: Hold) -> Result<LoadedModel> {
    let config_path = folder.join("config.json");
    let config_json = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
        path: config_path.clone(),
        source,
    })?;
    let tokenizer_config = read_json(&folder.join("tokenizer_config.json"))?;
    let tokenizer_path = folder.join("tokenizer.json");
    let tokenizer_json = std::fs::read(&tokenizer_path).map_err(|source| Error::Io {
        path: tokenizer_path.clone(),
        source,
    })?;
    let source = SafetensorsFolder::open(folder)?;
    let text = HfTextFiles {
        config_json: &config_json,
        tokenizer_json: &tokenizer_json,
        tokenizer_config,
    };
    from_hf_parts(text, source, folder, device, hold, &mut |_| {})
}

/// Loads a Hugging Face model from its files already in memory (browser uploads), given as
/// `(file name, bytes)`: `config.json`, `tokenizer.json`, optionally `tokenizer_config.json`,
/// and every `*.safetensors` shard (other files are ignored). `name` labels the model in errors.
/// The weights are held in `dtype` (as [`load_model_in`]); `on_progress` is called after each
/// tensor is on the device.
///
/// # Errors
///
/// As [`load_model`]; [`Error::Format`] naming the missing file when `config.json`,
/// `tokenizer.json` or any `.safetensors` file is absent.
pub fn load_hf_files(
    files: Vec<(String, Vec<u8>)>,
    name: &str,
    device: &Device,
    dtype: WeightDtype,
    on_progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    let folder = Path::new(name);
    let missing = |file: &str| Error::Format {
        file: folder.join(file).display().to_string(),
        format: "Hugging Face model",
        message: format!(
            "{file} is missing (pick config.json, tokenizer.json and the .safetensors files together)"
        ),
    };
    let mut config_json = None;
    let mut tokenizer_json = None;
    let mut tokenizer_config = None;
    let mut shards = Vec::new();
    for (file, bytes) in files {
        // a picked folder may prefix names with sub-folders
        let base = file.rsplit('/').next().unwrap_or(&file).to_string();
        match base.as_str() {
            "config.json" => config_json = Some(bytes),
            "tokenizer.json" => tokenizer_json = Some(bytes),
            "tokenizer_config.json" => {
                let value = serde_json::from_slice(&bytes).map_err(|e| Error::Format {
                    file: folder.join(&base).display().to_string(),
                    format: "JSON",
                    message: e.to_string(),
                })?;
                tokenizer_config = Some(value);
            }
            b if b.ends_with(".safetensors") => shards.push((base, bytes)),
            _ => {}
        }
    }
    let config_json = config_json.ok_or_else(|| missing("config.json"))?;
    let config_json = String::from_utf8(config_json).map_err(|e| Error::Format {
        file: folder.join("config.json").display().to_string(),
        format: "JSON",
        message: e.to_string(),
    })?;
    let tokenizer_json = tokenizer_json.ok_or_else(|| missing("tokenizer.json"))?;
    if shards.is_empty() {
        return Err(missing("model.safetensors"));
    }
    shards.sort_by(|a, b| a.0.cmp(&b.0));
    let source = SafetensorsFolder::from_files(folder, shards)?;
    let text = HfTextFiles {
        config_json: &config_json,
        tokenizer_json: &tokenizer_json,
        tokenizer_config,
    };
    from_hf_parts(
        text,
        source,
        folder,
        device,
        Hold::Float(dtype),
        on_progress,
    )
}

/// The small files of a Hugging Face model folder, read.
struct HfTextFiles<'a> {
    config_json: &'a str,
    tokenizer_json: &'a [u8],
    tokenizer_config: Option<serde_json::Value>,
}

fn from_hf_parts(
    text: HfTextFiles<'_>,
    mut source: SafetensorsFolder,
    folder: &Path,
    device: &Device,
    hold: Hold,
    on_progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    let HfTextFiles {
        config_json,
        tokenizer_json,
        tokenizer_config,
    } = text;
    let config_path = folder.join("config.json");
    let config = LlamaConfig::from_json(config_json, &config_path.display().to_string())?;
    let add_bos = tokenizer_config
        .as_ref()
        .and_then(|c| c.get("add_bos_token"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let tokenizer_path = folder.join("tokenizer.json").display().to_string();
    let tokenizer = Tokenizer::from_bytes(
        tokenizer_json,
        &tokenizer_path,
        config.bos_token_id,
        config.eos_token_ids(),
        add_bos,
    )?;
    check_vocab(&tokenizer, &config, &tokenizer_path, false)?;
    let chat_template = ChatTemplate::detect(
        tokenizer_config
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(|v| v.as_str()),
    );
    let model = crate::weights::build(&config, &mut source, device, hold, on_progress)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        origin: folder.display().to_string(),
    })
}

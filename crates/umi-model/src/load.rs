//! One entry point for every checkpoint layout: a GGUF file, or a Hugging Face model folder.

use std::path::Path;

use burn::tensor::Device;

use crate::chat::ChatTemplate;
use crate::config::LlamaConfig;
use crate::llama::Llama;
use crate::tokenizer::Tokenizer;
use crate::weights::{GgufFile, SafetensorsFolder, build_llama};
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
    let is_gguf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        let mut gguf = GgufFile::open(path)?;
        return from_gguf(&mut gguf, device);
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
    load_hf_folder(folder, device)
}

/// Loads a model from GGUF bytes already in memory (browser downloads, tests).
///
/// # Errors
///
/// As [`load_model`].
pub fn load_gguf_bytes(bytes: Vec<u8>, name: &str, device: &Device) -> Result<LoadedModel> {
    let mut gguf = GgufFile::from_bytes(bytes, name)?;
    from_gguf(&mut gguf, device)
}

fn from_gguf<R: std::io::Read + std::io::Seek>(
    gguf: &mut GgufFile<R>,
    device: &Device,
) -> Result<LoadedModel> {
    let config = gguf.config()?;
    let tokenizer = Tokenizer::from_gguf(gguf)?;
    check_vocab(&tokenizer, &config, gguf.name(), true)?;
    let chat_template = ChatTemplate::detect(gguf.string_opt("tokenizer.chat_template").as_deref());
    let model = build_llama(&config, gguf, device)?;
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
    let config_path = folder.join("config.json");
    let config_json = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
        path: config_path.clone(),
        source,
    })?;
    let config = LlamaConfig::from_json(&config_json, &config_path.display().to_string())?;
    let tokenizer_config = read_json(&folder.join("tokenizer_config.json"))?;
    let add_bos = tokenizer_config
        .as_ref()
        .and_then(|c| c.get("add_bos_token"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let tokenizer_path = folder.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(
        &tokenizer_path,
        config.bos_token_id,
        config.eos_token_ids(),
        add_bos,
    )?;
    check_vocab(
        &tokenizer,
        &config,
        &tokenizer_path.display().to_string(),
        false,
    )?;
    let chat_template = ChatTemplate::detect(
        tokenizer_config
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(|v| v.as_str()),
    );
    let mut source = SafetensorsFolder::open(folder)?;
    let model = build_llama(&config, &mut source, device)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        origin: folder.display().to_string(),
    })
}

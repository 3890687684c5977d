//! The one error type of `umi-model`.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Every variant names the file (or source) and, where it applies, the tensor, with what was
/// expected and what was found, so that a bad checkpoint can be fixed without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not in the format its name or header claims, or is damaged.
    #[error("{file}: invalid {format} file: {message}")]
    Format {
        /// The file (or a description of the source when loaded from bytes).
        file: String,
        /// `GGUF`, `safetensors`, `config.json`, ...
        format: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The model configuration is invalid or unsupported.
    #[error("{file}: invalid model config: {message}")]
    Config {
        /// Where the config came from.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("{file}: missing tensor {tensor}")]
    MissingTensor {
        /// The checkpoint file.
        file: String,
        /// The tensor's name in the checkpoint's own naming, quoted (`` `name` ``).
        tensor: String,
    },
    /// A tensor's shape does not match the configuration.
    #[error("{file}: tensor {tensor} has shape {got:?}, expected {expected:?} from the config")]
    ShapeMismatch {
        /// The checkpoint file.
        file: String,
        /// The tensor's name in the checkpoint's own naming.
        tensor: String,
        /// The shape the config implies (`[out, in]` for projections, as in Hugging Face).
        expected: Vec<usize>,
        /// The shape found in the file.
        got: Vec<usize>,
    },
    /// A tensor is stored in a data type umi cannot read.
    #[error("{file}: tensor {tensor} has unsupported data type {dtype} (supported: {supported})")]
    UnsupportedDtype {
        /// The checkpoint file.
        file: String,
        /// The tensor's name.
        tensor: String,
        /// The data type as the file names it.
        dtype: String,
        /// The data types that can be read.
        supported: &'static str,
    },
    /// The tokenizer could not be built or does not fit the model.
    #[error("{file}: tokenizer error: {message}")]
    Tokenizer {
        /// Where the tokenizer came from.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A prompt plus the requested new tokens do not fit the model's context window.
    #[error(
        "context overflow: {prompt_tokens} prompt tokens + {max_new_tokens} new tokens exceed the \
         model's max_position_embeddings = {max_positions}"
    )]
    ContextOverflow {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Requested new tokens.
        max_new_tokens: usize,
        /// The model's window.
        max_positions: usize,
    },
    /// A generation setting is out of range.
    #[error("invalid generation setting: {0}")]
    Generation(String),
    /// A device (backend) could not be initialised.
    #[error("device error: {0}")]
    Device(String),
}

/// `Result` with [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

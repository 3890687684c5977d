//! Hugging Face safetensors checkpoints: one `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`; f32, f16 and bf16 tensors.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use ::safetensors::{Dtype, SafeTensors};

use super::{HostTensor, WeightSource};
use crate::{Error, Result};

/// The safetensors files of a Hugging Face model folder, read into memory.
pub struct SafetensorsFolder {
    folder: PathBuf,
    /// (file name, bytes)
    files: Vec<(String, Vec<u8>)>,
    /// tensor name → index in `files`
    index: HashMap<String, usize>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn format_error(file: &Path, message: impl ToString) -> Error {
    Error::Format {
        file: file.display().to_string(),
        format: "safetensors",
        message: message.to_string(),
    }
}

/// Whether the shard name `name` (a `weight_map` value of `model.safetensors.index.json`) stays
/// inside the folder it is joined to: relative, without `..` or a root (symbolic links are not
/// followed here).
pub fn is_plain_relative(name: &str) -> bool {
    let mut components = Path::new(name).components();
    components
        .clone()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && components.any(|c| matches!(c, Component::Normal(_)))
}

impl SafetensorsFolder {
    /// Opens `folder/model.safetensors`, or the shards named by
    /// `folder/model.safetensors.index.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a file is missing, [`Error::Format`] naming the file when a header or
    /// the index is malformed, or naming the index and the entry when a shard name leaves the
    /// folder (an absolute path, `..`); such a file is never opened.
    pub fn open(folder: &Path) -> Result<Self> {
        let single = folder.join("model.safetensors");
        let index_path = folder.join("model.safetensors.index.json");
        let file_names: Vec<String> = if single.exists() {
            vec!["model.safetensors".to_string()]
        } else if index_path.exists() {
            let json: serde_json::Value = serde_json::from_slice(&read(&index_path)?)
                .map_err(|e| format_error(&index_path, e))?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| format_error(&index_path, "no \"weight_map\" object"))?;
            let mut names: Vec<String> = map
                .values()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| format_error(&index_path, "weight_map values must be file names"))?;
            if let Some(bad) = names.iter().find(|name| !is_plain_relative(name)) {
                return Err(format_error(
                    &index_path,
                    format!(
                        "weight_map names the shard {bad:?}, which is not a relative path inside \
                         the model folder (no absolute paths, no `..`)"
                    ),
                ));
            }
            names.sort();
            names.dedup();
            names
        } else {
            return Err(Error::Io {
                path: single,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "neither model.safetensors nor model.safetensors.index.json is in the folder",
                ),
            });
        };

        let files = file_names
            .into_iter()
            .map(|name| {
                let bytes = read(&folder.join(&name))?;
                Ok((name, bytes))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_files(folder, files)
    }

    /// The safetensors files of a model already in memory (browser uploads), as
    /// `(file name, bytes)`; `folder` only names them in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Format`] naming the file when a header is malformed.
    pub fn from_files(folder: &Path, files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, (name, bytes)) in files.iter().enumerate() {
            let path = folder.join(name);
            let tensors = SafeTensors::deserialize(bytes).map_err(|e| format_error(&path, e))?;
            for tensor_name in tensors.names() {
                index.insert(tensor_name.to_string(), i);
            }
        }
        Ok(Self {
            folder: folder.to_path_buf(),
            files,
            index,
        })
    }
}

impl WeightSource for SafetensorsFolder {
    fn origin(&self) -> String {
        match &self.files[..] {
            [(name, _)] => self.folder.join(name).display().to_string(),
            _ => self.folder.display().to_string(),
        }
    }

    fn tensor(&mut self, name: &str) -> Result<Option<HostTensor>> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let (file, bytes) = &self.files[i];
        let path = self.folder.join(file);
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| format_error(&path, e))?;
        let view = tensors.tensor(name).map_err(|e| format_error(&path, e))?;
        host_tensor(&view, name, &path.display().to_string()).map(Some)
    }
}

/// A safetensors tensor (F32, F16 or BF16) as f32 on the host.
///
/// # Errors
///
/// [`Error::UnsupportedDtype`] naming `file` and `name` for other types.
pub(crate) fn host_tensor(
    view: &safetensors::tensor::TensorView<'_>,
    name: &str,
    file: &str,
) -> Result<HostTensor> {
    let raw = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::UnsupportedDtype {
                file: file.to_string(),
                tensor: format!("`{name}`"),
                dtype: format!("{other:?}"),
                supported: "F32, F16, BF16",
            });
        }
    };
    Ok(HostTensor {
        shape: view.shape().to_vec(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_cannot_leave_the_model_folder() {
        let dir = std::env::temp_dir().join(format!("umi-shards-{}", std::process::id()));
        let folder = dir.join("model");
        std::fs::create_dir_all(&folder).unwrap();
        // A valid safetensors file outside the folder: only a rejection keeps it from loading.
        let shard = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../assets/tiny/llama-gqa/model.safetensors"),
        )
        .unwrap();
        std::fs::write(dir.join("outside.safetensors"), &shard).unwrap();
        std::fs::write(folder.join("inside.safetensors"), &shard).unwrap();
        for bad in [
            "../outside.safetensors",
            "sub/../../outside.safetensors",
            "/dev/zero",
            "",
        ] {
            let index = serde_json::json!({"weight_map": {
                "model.norm.weight": "inside.safetensors",
                "lm_head.weight": bad,
            }});
            std::fs::write(
                folder.join("model.safetensors.index.json"),
                index.to_string(),
            )
            .unwrap();
            let Err(e) = SafetensorsFolder::open(&folder) else {
                panic!("the shard {bad:?} was accepted");
            };
            let message = e.to_string();
            assert!(
                message.contains("model.safetensors.index.json")
                    && message.contains(&format!("{bad:?}")),
                "{message}"
            );
        }
        let index =
            serde_json::json!({"weight_map": {"model.norm.weight": "./inside.safetensors"}});
        std::fs::write(
            folder.join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        assert!(SafetensorsFolder::open(&folder).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Hugging Face safetensors checkpoints: one `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`; f32, f16 and bf16 tensors.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use ::safetensors::tensor::{Metadata, TensorView};
use ::safetensors::{Dtype, SafeTensors};

use super::{HostTensor, WeightSource};
use crate::{Error, Result};

/// The safetensors files of a Hugging Face model folder, with every file's header parsed
/// once into a tensor index. Files opened from disk are read a tensor at a time (so loading
/// holds one tensor of the file in memory, not the file: for TinyLlama's 2.2 GB of f16 put in
/// Q8_0 at load, the peak RSS fell from 3.6 GB to the quantized model plus one tensor);
/// files given as bytes (browser uploads) are read from memory.
pub struct SafetensorsFolder {
    folder: PathBuf,
    /// (file name, contents)
    files: Vec<(String, Shard)>,
    /// tensor name → where it is
    index: HashMap<String, Entry>,
}

/// One safetensors file.
enum Shard {
    /// The whole file in memory.
    Bytes(Vec<u8>),
    /// An open file whose header was checked against its length.
    File(std::fs::File),
}

/// Longest header read from disk (the format's own bound, 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Where one tensor is, from its file's header.
struct Entry {
    /// Index in `files`.
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Its bytes within the whole file.
    bytes: Range<usize>,
}

#[cfg(test)]
thread_local! {
    /// Headers parsed by this thread (tests check that each is parsed once).
    static HEADER_PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Parses and checks the header of the safetensors file `bytes` (offsets within the file,
/// sizes against the data): the header's length and its metadata.
fn read_header(bytes: &[u8], path: &Path) -> Result<(usize, Metadata)> {
    #[cfg(test)]
    HEADER_PARSES.with(|n| n.set(n.get() + 1));
    SafeTensors::read_metadata(bytes).map_err(|e| format_error(path, e))
}

/// Reads and checks the header of the safetensors file at `path` without reading its tensors:
/// the file, the header's length and its metadata. The checks are those of
/// [`SafeTensors::read_metadata`] on the whole file: tensors contiguous and sized by their
/// shapes (done by `Metadata`'s parser), and the data exactly filling the rest of the file.
fn read_file_header(path: &Path) -> Result<(std::fs::File, usize, Metadata)> {
    #[cfg(test)]
    HEADER_PARSES.with(|n| n.set(n.get() + 1));
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| format_error(path, "the file is shorter than a header's 8-byte length"))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES || 8 + n > file_len {
        return Err(format_error(
            path,
            format!("the header's length, {n} bytes, does not fit the file ({file_len} bytes)"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io)?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| format_error(path, format!("header: {e}")))?;
    let data_len = metadata
        .tensors()
        .values()
        .map(|info| info.data_offsets.1)
        .max()
        .unwrap_or(0) as u64;
    if 8 + n + data_len != file_len {
        return Err(format_error(
            path,
            format!(
                "the header describes {data_len} bytes of tensors, the file holds {} after it",
                file_len - 8 - n
            ),
        ));
    }
    Ok((file, n as usize, metadata))
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

        let mut index = HashMap::new();
        let mut files = Vec::with_capacity(file_names.len());
        for (i, name) in file_names.into_iter().enumerate() {
            let (file, header_len, metadata) = read_file_header(&folder.join(&name))?;
            index_tensors(&mut index, i, header_len, &metadata);
            files.push((name, Shard::File(file)));
        }
        Ok(Self {
            folder: folder.to_path_buf(),
            files,
            index,
        })
    }

    /// The safetensors files of a model already in memory (browser uploads), as
    /// `(file name, bytes)`; `folder` only names them in errors.
    ///
    /// Each header is parsed once here; tensors are then read through the index (re-parsing a
    /// header per tensor made loading quadratic in the number of tensors).
    ///
    /// # Errors
    ///
    /// [`Error::Format`] naming the file when a header is malformed.
    pub fn from_files(folder: &Path, files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, (name, bytes)) in files.iter().enumerate() {
            let (header_len, metadata) = read_header(bytes, &folder.join(name))?;
            index_tensors(&mut index, i, header_len, &metadata);
        }
        Ok(Self {
            folder: folder.to_path_buf(),
            files: files
                .into_iter()
                .map(|(name, bytes)| (name, Shard::Bytes(bytes)))
                .collect(),
            index,
        })
    }
}

/// Adds the tensors of file `file` (header of `header_len` bytes) to `index`.
fn index_tensors(
    index: &mut HashMap<String, Entry>,
    file: usize,
    header_len: usize,
    metadata: &Metadata,
) {
    let data_start = 8 + header_len; // u64 header length, header, data
    for (tensor_name, info) in metadata.tensors() {
        let (start, end) = info.data_offsets;
        let entry = Entry {
            file,
            dtype: info.dtype,
            shape: info.shape.clone(),
            bytes: data_start + start..data_start + end,
        };
        index.insert(tensor_name, entry);
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
        let Some(entry) = self.index.get(name) else {
            return Ok(None);
        };
        let (file, shard) = &mut self.files[entry.file];
        let path = self.folder.join(file);
        let outside = || format_error(&path, format!("tensor `{name}` lies outside the file"));
        // the header check guarantees the range is inside the file and fits the shape
        let read;
        let data = match shard {
            Shard::Bytes(bytes) => bytes.get(entry.bytes.clone()).ok_or_else(outside)?,
            Shard::File(f) => {
                let mut buffer = vec![0u8; entry.bytes.len()];
                f.seek(SeekFrom::Start(entry.bytes.start as u64))
                    .and_then(|_| f.read_exact(&mut buffer))
                    .map_err(|source| Error::Io {
                        path: path.clone(),
                        source,
                    })?;
                read = buffer;
                &read[..]
            }
        };
        let view = TensorView::new(entry.dtype, entry.shape.clone(), data)
            .map_err(|e| format_error(&path, format!("tensor `{name}`: {e}")))?;
        host_tensor(&view, name, &path.display().to_string()).map(Some)
    }

    /// Reads the tensor's bytes a block of rows at a time (from the file, or from the bytes in
    /// memory) and converts each block alone.
    fn tensor_by_rows(
        &mut self,
        name: &str,
        rows_per_block: usize,
        start: &mut dyn FnMut(&[usize]) -> Result<()>,
        block: &mut dyn FnMut(&[f32]),
    ) -> Result<bool> {
        let Some(entry) = self.index.get(name) else {
            return Ok(false);
        };
        let (file, shard) = &mut self.files[entry.file];
        let path = self.folder.join(file);
        let width = value_bytes(entry.dtype, name, &path.display().to_string())?;
        let values: usize = entry.shape.iter().product();
        if entry.bytes.len() != values * width {
            return Err(format_error(
                &path,
                format!(
                    "tensor `{name}`: shape {:?} in {:?} needs {} bytes, the header gives {}",
                    entry.shape,
                    entry.dtype,
                    values * width,
                    entry.bytes.len()
                ),
            ));
        }
        start(&entry.shape)?;
        let row: usize = entry.shape.iter().skip(1).product();
        if row == 0 || values == 0 {
            return Ok(true);
        }
        let step = row * rows_per_block.max(1) * width;
        let mut converted = Vec::new();
        match shard {
            Shard::Bytes(bytes) => {
                let outside =
                    || format_error(&path, format!("tensor `{name}` lies outside the file"));
                let data = bytes.get(entry.bytes.clone()).ok_or_else(outside)?;
                for raw in data.chunks(step) {
                    to_f32(entry.dtype, raw, &mut converted);
                    block(&converted);
                }
            }
            Shard::File(f) => {
                let io = |source| Error::Io {
                    path: path.clone(),
                    source,
                };
                f.seek(SeekFrom::Start(entry.bytes.start as u64))
                    .map_err(io)?;
                let mut raw = vec![0u8; step.min(entry.bytes.len())];
                let mut left = entry.bytes.len();
                while left > 0 {
                    let n = step.min(left);
                    f.read_exact(&mut raw[..n]).map_err(io)?;
                    to_f32(entry.dtype, &raw[..n], &mut converted);
                    block(&converted);
                    left -= n;
                }
            }
        }
        Ok(true)
    }
}

/// Bytes per value of a tensor of `dtype` that umi reads (F32, F16, BF16).
///
/// # Errors
///
/// [`Error::UnsupportedDtype`] naming `file` and `name` for other types.
fn value_bytes(dtype: Dtype, name: &str, file: &str) -> Result<usize> {
    match dtype {
        Dtype::F32 => Ok(4),
        Dtype::F16 | Dtype::BF16 => Ok(2),
        other => Err(Error::UnsupportedDtype {
            file: file.to_string(),
            tensor: format!("`{name}`"),
            dtype: format!("{other:?}"),
            supported: "F32, F16, BF16",
        }),
    }
}

/// Little-endian F32, F16 or BF16 bytes as f32 values into `out` (cleared first); other
/// types are refused before ([`value_bytes`]).
fn to_f32(dtype: Dtype, raw: &[u8], out: &mut Vec<f32>) {
    out.clear();
    match dtype {
        Dtype::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Dtype::F16 => out.extend(
            raw.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            raw.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        other => unreachable!("{other:?} is refused before its bytes are converted"),
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
    value_bytes(view.dtype(), name, file)?;
    let mut data = Vec::new();
    to_f32(view.dtype(), view.data(), &mut data);
    Ok(HostTensor {
        shape: view.shape().to_vec(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_header_is_parsed_once_however_many_tensors_are_read() {
        let folder =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny/llama-gqa-sharded");
        let parses = || HEADER_PARSES.with(|n| n.get());
        let before = parses();
        let mut source = SafetensorsFolder::open(&folder).unwrap();
        let names: Vec<String> = source.index.keys().cloned().collect();
        assert!(names.len() > 20, "{names:?}");
        for name in &names {
            let got = source.tensor(name).unwrap().unwrap();
            // the same tensor as a full parse of its shard finds
            let file = &source.files[source.index[name].file].0;
            let bytes = std::fs::read(folder.join(file)).unwrap();
            let shard = SafeTensors::deserialize(&bytes).unwrap();
            let want = host_tensor(&shard.tensor(name).unwrap(), name, file).unwrap();
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(parses() - before, 2, "one parse per shard");
    }

    /// Read by rows (the quantized load), every tensor of a folder on disk, of a sharded one
    /// and of files in memory, in f32, f16 and bf16, is the tensor read whole.
    #[test]
    fn tensors_read_by_rows_are_the_tensors_read_whole() {
        use crate::weights::test_support::{by_rows_equals_whole, weight_names};
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny");
        let names = weight_names(4);
        for folder in [
            "llama-gqa",
            "llama-gqa-f16",
            "llama-gqa-bf16",
            "llama-gqa-sharded",
        ] {
            let folder = tiny.join(folder);
            let mut on_disk = SafetensorsFolder::open(&folder).unwrap();
            let files: Vec<(String, Vec<u8>)> = on_disk
                .files
                .iter()
                .map(|(name, _)| (name.clone(), std::fs::read(folder.join(name)).unwrap()))
                .collect();
            let mut in_memory = SafetensorsFolder::from_files(&folder, files).unwrap();
            for rows in [1, 3, 1000] {
                let found = by_rows_equals_whole(&mut on_disk, &names, rows);
                assert!(found > 10, "{}: {found} tensors", folder.display());
                assert_eq!(by_rows_equals_whole(&mut in_memory, &names, rows), found);
            }
        }
    }

    /// Files read from disk a tensor at a time get the whole-file checks at open: a file cut
    /// short, one with bytes after its tensors, and a header length past the end are errors
    /// naming the file, never a panic or a short read later.
    #[test]
    fn damaged_files_on_disk_are_errors_naming_them() {
        let good = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../assets/tiny/llama-gqa/model.safetensors"),
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("umi-damaged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut huge_header = good.clone();
        huge_header[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
        let cases = [
            (
                "cut short",
                good[..good.len() - 10].to_vec(),
                "bytes of tensors",
            ),
            (
                "trailing bytes",
                [&good[..], &[0u8; 4]].concat(),
                "bytes of tensors",
            ),
            ("header past the end", huge_header, "does not fit the file"),
            ("no header", good[..5].to_vec(), "shorter than"),
        ];
        for (what, bytes, expected) in cases {
            std::fs::write(dir.join("model.safetensors"), &bytes).unwrap();
            let Err(e) = SafetensorsFolder::open(&dir) else {
                panic!("{what}: accepted");
            };
            let message = e.to_string();
            assert!(
                message.contains("model.safetensors") && message.contains(expected),
                "{what}: {message}"
            );
        }
        std::fs::write(dir.join("model.safetensors"), &good).unwrap();
        let mut source = SafetensorsFolder::open(&dir).unwrap();
        assert!(source.tensor("model.norm.weight").unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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

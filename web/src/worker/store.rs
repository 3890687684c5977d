//! The model store: models fetched from a URL (streamed, with progress, cached in the browser's
//! Cache API so a second visit loads offline) or picked from disk, checked against the GPU's
//! limits, then handed to `umi-model`'s loaders. Loaded models are kept by source, so one model
//! named for several roles is loaded once.

use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Reflect, Uint8Array};
use umi_model::weights::GgufFile;
use umi_model::{
    Device, GpuInfo, LlamaConfig, LoadProgress, LoadedModel, WeightDtype, load_gguf_bytes,
    load_hf_files, next_token_logits,
};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, ReadableStreamDefaultReader, Response, ResponseInit};

use crate::js::js_error;
use crate::protocol::{MeasuredSpeed, Progress, Stage};
use crate::worker::PREFILL_CHUNK;
use crate::worker::scope::{now_ms, scope, sleep_ms};

use crate::protocol::MODEL_CACHE as CACHE_NAME;

/// A file's bytes and whether they came from the cache.
struct Fetched {
    bytes: Vec<u8>,
    from_cache: bool,
}

async fn open_cache() -> Option<Cache> {
    // `caches` exists only in secure contexts (https, localhost, 127.0.0.1).
    let caches = scope().caches().ok()?;
    JsFuture::from(caches.open(CACHE_NAME))
        .await
        .ok()?
        .dyn_into()
        .ok()
}

/// Reads a response body chunk by chunk, reporting progress.
async fn read_body(
    response: Response,
    file: &str,
    from_cache: bool,
    progress: &dyn Fn(Progress),
) -> Result<Vec<u8>, String> {
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|s| s.parse::<u64>().ok());
    let report = |done: u64| {
        progress(Progress {
            stage: Stage::Download,
            file: file.to_string(),
            done,
            total,
            from_cache,
        })
    };
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    report(0);
    let Some(body) = response.body() else {
        return Ok(bytes);
    };
    let reader: ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|_| format!("{file}: the body cannot be read as a stream"))?;
    let mut last_report = 0;
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("reading {file} failed: {}", js_error(e)))?;
        if Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true)
        {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| format!("reading {file}: a chunk is not bytes"))?;
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        // one report per MiB keeps the DOM updates cheap
        if bytes.len() - last_report >= 1 << 20 {
            last_report = bytes.len();
            report(bytes.len() as u64);
        }
    }
    report(bytes.len() as u64);
    Ok(bytes)
}

/// Fetches `url` (from the cache when it is there, else from the network, then caches it).
/// `Ok(None)` when the server answers 404 and the file is `optional`.
async fn fetch_file(
    url: &str,
    optional: bool,
    progress: &dyn Fn(Progress),
) -> Result<Option<Fetched>, String> {
    let file = url.rsplit('/').next().unwrap_or(url).to_string();
    let cache = open_cache().await;
    if let Some(cache) = &cache
        && let Ok(hit) = JsFuture::from(cache.match_with_str(url)).await
        && let Ok(response) = hit.dyn_into::<Response>()
    {
        let bytes = read_body(response, &file, true, progress).await?;
        return Ok(Some(Fetched {
            bytes,
            from_cache: true,
        }));
    }
    let response: Response = JsFuture::from(scope().fetch_with_str(url))
        .await
        .map_err(|e| {
            format!(
                "fetching {url} failed: {} (is the server up, and does it allow this origin?)",
                js_error(e)
            )
        })?
        .dyn_into()
        .map_err(|_| format!("fetching {url}: not a response"))?;
    if optional && response.status() == 404 {
        return Ok(None);
    }
    if !response.ok() {
        return Err(format!(
            "fetching {url}: HTTP {} {}",
            response.status(),
            response.status_text()
        ));
    }
    let bytes = read_body(response, &file, false, progress).await?;
    if let Some(cache) = &cache {
        store_in_cache(cache, url, &bytes).await;
    }
    Ok(Some(Fetched {
        bytes,
        from_cache: false,
    }))
}

/// Puts `bytes` into the cache under `url`; a full quota only costs the next visit a download.
async fn store_in_cache(cache: &Cache, url: &str, bytes: &[u8]) {
    let init = ResponseInit::new();
    let headers = js_sys::Object::new();
    let _ = Reflect::set(
        &headers,
        &"content-length".into(),
        &bytes.len().to_string().into(),
    );
    init.set_headers(&headers);
    let body = Uint8Array::from(bytes);
    let stored = match Response::new_with_opt_buffer_source_and_init(Some(&body), &init) {
        Ok(response) => JsFuture::from(cache.put_with_str(url, &response))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = stored {
        web_sys::console::warn_1(&format!("could not cache {url}: {}", js_error(e)).into());
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A `.gguf` URL, or the base URL of a Hugging Face folder.
    Url(String),
    /// Files the user picked.
    Files(Vec<web_sys::File>),
}

impl ModelSource {
    /// The key the store keeps the model under.
    pub fn key(&self) -> String {
        match self {
            ModelSource::Url(url) => url.clone(),
            ModelSource::Files(files) => {
                let names: Vec<String> = files.iter().map(|f| f.name()).collect();
                format!("files: {}", names.join(", "))
            }
        }
    }
}

/// A loaded model and how it got here.
pub struct StoredModel {
    /// The model.
    pub model: Rc<LoadedModel>,
    /// Whether every byte came from the browser's cache.
    pub from_cache: bool,
    /// A one-line description.
    pub summary: String,
    /// Its speed on this adapter.
    pub speed: MeasuredSpeed,
}

/// Models by source key.
#[derive(Default)]
pub struct ModelStore {
    models: HashMap<String, Rc<StoredModel>>,
}

impl ModelStore {
    /// The model already loaded for `key`.
    pub fn get(&self, key: &str) -> Option<Rc<StoredModel>> {
        self.models.get(key).cloned()
    }

    /// Keeps a loaded model.
    pub fn insert(&mut self, key: String, model: Rc<StoredModel>) {
        self.models.insert(key, model);
    }
}

fn is_gguf(name: &str) -> bool {
    let path = name.split(['?', '#']).next().unwrap_or(name);
    path.to_ascii_lowercase().ends_with(".gguf")
}

/// The precision the GPU holds the weights in: f16 where the adapter has `shader-f16`, f32
/// elsewhere.
fn weight_dtype(gpu: &GpuInfo) -> WeightDtype {
    if gpu.shader_f16 {
        WeightDtype::F16
    } else {
        WeightDtype::F32
    }
}

/// The largest weight tensor of `config` in bytes once held in `dtype` on the GPU, with its
/// name.
fn largest_tensor(config: &LlamaConfig, dtype: WeightDtype) -> (&'static str, u64) {
    let hidden = config.hidden_size as u64;
    let q_out = (config.num_attention_heads * config.head_dim()) as u64;
    [
        (
            "model.embed_tokens.weight",
            config.vocab_size as u64 * hidden,
        ),
        ("mlp projections", config.intermediate_size as u64 * hidden),
        ("attention projections", q_out * hidden),
    ]
    .into_iter()
    .map(|(name, n)| (name, n * dtype.bytes()))
    .max_by_key(|(_, bytes)| *bytes)
    .unwrap_or(("", 0))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Checks that no tensor of `config` exceeds what the GPU can bind (burn allocates each
/// tensor in one buffer of at most `min(max_storage_buffer_binding_size, max_buffer_size)`).
/// Weights are held in f16 where the GPU has `shader-f16` ([`weight_dtype`]), so the check
/// uses that size.
fn check_fit(config: &LlamaConfig, gpu: &GpuInfo, file: &str) -> Result<(), String> {
    let dtype = weight_dtype(gpu);
    let (name, bytes) = largest_tensor(config, dtype);
    let limit = gpu.max_storage_buffer_binding_size.min(gpu.max_buffer_size);
    if bytes > limit {
        return Err(format!(
            "{file} does not fit this GPU: its largest tensor ({name}, {} in {}) exceeds the \
             largest buffer the GPU can bind ({}). Pick a smaller model.",
            mib(bytes),
            if dtype == WeightDtype::F16 {
                "f16"
            } else {
                "f32"
            },
            mib(limit)
        ));
    }
    Ok(())
}

/// Tokens of the warm-up prompt.
const WARM_UP_PROMPT: usize = 4;
/// Warm-up decode steps.
const WARM_UP_DECODE: usize = 2;
/// Timed decode steps of the speed measurement.
const TIMED_DECODE: usize = 4;

/// Runs a short prompt and a few decode steps before the model is reported ready: a model the
/// GPU cannot run fails here, at load, and the first run does not pay for compiling the common
/// kernels (cubecl compiles each kernel variant on first use, on the CPU: seconds on a
/// software adapter; variants for other lengths still compile when first met). Then measures
/// the speed a run will see: a prefill chunk of [`PREFILL_CHUNK`] tokens (once to compile its
/// kernels, once timed) and [`TIMED_DECODE`] decode steps after it.
async fn warm_up(
    loaded: &LoadedModel,
    name: &str,
    from_cache: bool,
    progress: &dyn Fn(Progress),
) -> Result<MeasuredSpeed, String> {
    progress(Progress {
        stage: Stage::WarmUp,
        file: name.to_string(),
        done: 0,
        total: None,
        from_cache,
    });
    sleep_ms(20).await;
    let model = &loaded.model;
    let mut cache = model.new_cache();
    let fail = |e: umi_model::Error| format!("{name}: the warm-up forward pass failed: {e}");
    let prompt = vec![0; WARM_UP_PROMPT.min(model.max_positions() / 2).max(1)];
    next_token_logits(model, &prompt, &mut cache)
        .await
        .map_err(fail)?;
    for _ in 0..WARM_UP_DECODE {
        next_token_logits(model, &[0], &mut cache)
            .await
            .map_err(fail)?;
    }

    let chunk = vec![0; PREFILL_CHUNK.min(model.max_positions() / 4).max(1)];
    next_token_logits(model, &chunk, &mut model.new_cache())
        .await
        .map_err(fail)?;
    let mut cache = model.new_cache();
    let start = now_ms();
    next_token_logits(model, &chunk, &mut cache)
        .await
        .map_err(fail)?;
    let prefill_ms = now_ms() - start;
    let start = now_ms();
    for _ in 0..TIMED_DECODE {
        next_token_logits(model, &[0], &mut cache)
            .await
            .map_err(fail)?;
    }
    let decode_ms = now_ms() - start;
    Ok(MeasuredSpeed {
        prefill_tokens_per_second: chunk.len() as f64 * 1e3 / prefill_ms.max(1e-3),
        decode_tokens_per_second: TIMED_DECODE as f64 * 1e3 / decode_ms.max(1e-3),
    })
}

fn describe(loaded: &LoadedModel, format: &str) -> String {
    use umi_model::burn::module::Module;
    let c = &loaded.model.config;
    format!(
        "{} ({format}{}; {:.1}M parameters, {} layers, hidden {}, vocab {})",
        loaded.origin,
        if loaded.model.is_half() {
            ", weights in f16 (shader-f16)"
        } else {
            ""
        },
        loaded.model.num_params() as f64 / 1e6,
        c.num_hidden_layers,
        c.hidden_size,
        c.vocab_size
    )
}

/// Reports the upload stage in weights placed on the GPU, each whole percent once (the loader
/// calls back per tensor; the page hears each report while the worker is still busy loading).
fn upload_progress<'a>(
    name: &'a str,
    from_cache: bool,
    progress: &'a dyn Fn(Progress),
) -> impl FnMut(LoadProgress) + 'a {
    let mut last_percent = None;
    move |p: LoadProgress| {
        let percent = (p.fraction() * 100.0).floor() as u32;
        if last_percent != Some(percent) {
            last_percent = Some(percent);
            progress(Progress {
                stage: Stage::Upload,
                file: name.to_string(),
                done: p.params_done,
                total: Some(p.params_total),
                from_cache,
            });
        }
    }
}

/// A model's files held in memory.
enum ModelBytes {
    /// One GGUF file.
    Gguf(Vec<u8>),
    /// A Hugging Face folder's files as `(file name, bytes)`.
    Hf(Vec<(String, Vec<u8>)>),
}

impl ModelBytes {
    /// The config when it can be read before loading (`None` for a folder without a readable
    /// `config.json`: the loader reports that with its context).
    ///
    /// # Errors
    ///
    /// A GGUF whose header does not parse.
    fn config(&self, name: &str) -> Result<Option<LlamaConfig>, String> {
        match self {
            // the header is parsed twice (here on a copy, to check the fit before any upload)
            Self::Gguf(bytes) => GgufFile::from_bytes(bytes.clone(), name)
                .and_then(|g| g.config())
                .map(Some)
                .map_err(|e| e.to_string()),
            Self::Hf(files) => Ok(files
                .iter()
                .find(|(f, _)| f.rsplit('/').next() == Some("config.json"))
                .and_then(|(_, b)| {
                    LlamaConfig::from_json(
                        &String::from_utf8_lossy(b),
                        &format!("{name}/config.json"),
                    )
                    .ok()
                })),
        }
    }
}

/// Parses `bytes`, checks that the model fits `gpu`, uploads it (reporting the parse and
/// upload stages), warms its kernels up and measures it.
async fn load_bytes(
    bytes: ModelBytes,
    name: &str,
    device: &Device,
    gpu: &GpuInfo,
    from_cache: bool,
    progress: &dyn Fn(Progress),
) -> Result<StoredModel, String> {
    let size = match &bytes {
        ModelBytes::Gguf(b) => b.len() as u64,
        ModelBytes::Hf(files) => files.iter().map(|(_, b)| b.len() as u64).sum(),
    };
    progress(Progress {
        stage: Stage::Parse,
        file: name.to_string(),
        done: 0,
        total: Some(size),
        from_cache,
    });
    sleep_ms(20).await;
    let config = bytes.config(name)?;
    let mut upload = upload_progress(name, from_cache, progress);
    if let Some(config) = &config {
        check_fit(config, gpu, name)?;
        // the upload stage starts at 0 % of the weights, as its per-tensor reports count them
        upload(LoadProgress {
            params_done: 0,
            params_total: config.num_parameters(),
        });
        sleep_ms(20).await;
    }
    let (loaded, format) = match bytes {
        ModelBytes::Gguf(bytes) => (
            load_gguf_bytes(bytes, name, device, weight_dtype(gpu), &mut upload),
            "GGUF",
        ),
        ModelBytes::Hf(files) => (
            load_hf_files(files, name, device, weight_dtype(gpu), &mut upload),
            "Hugging Face safetensors",
        ),
    };
    let loaded = loaded.map_err(|e| e.to_string())?;
    let speed = warm_up(&loaded, name, from_cache, progress).await?;
    let summary = describe(&loaded, format);
    Ok(StoredModel {
        model: Rc::new(loaded),
        from_cache,
        summary,
        speed,
    })
}

/// The files of a Hugging Face folder being downloaded.
struct Folder<'a> {
    base: &'a str,
    files: Vec<(String, Vec<u8>)>,
    all_cached: bool,
}

impl Folder<'_> {
    /// Fetches `base/file`; `Ok(false)` when it is `optional` and absent.
    async fn get(
        &mut self,
        file: &str,
        optional: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<bool, String> {
        match fetch_file(&format!("{}/{file}", self.base), optional, progress).await? {
            Some(fetched) => {
                self.all_cached &= fetched.from_cache;
                self.files.push((file.to_string(), fetched.bytes));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// The shard file names a `model.safetensors.index.json` lists, sorted and deduplicated.
fn shard_names(index: &[u8], base: &str) -> Result<Vec<String>, String> {
    let index: serde_json::Value = serde_json::from_slice(index)
        .map_err(|e| format!("{base}/model.safetensors.index.json: {e}"))?;
    let mut shards: Vec<String> = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // a shard name is a file beside the index: never another folder, host or query
    if let Some(bad) = shards.iter().find(|s| {
        !umi_model::weights::is_plain_relative(s) || s.contains([':', '?', '#', '\\', '%'])
    }) {
        return Err(format!(
            "{base}/model.safetensors.index.json: weight_map names the shard {bad:?}, which is not a file name inside the model folder"
        ));
    }
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        return Err(format!(
            "{base}/model.safetensors.index.json has no weight_map"
        ));
    }
    Ok(shards)
}

/// Downloads (or reads from the cache) and loads the model at `url`: a `.gguf` file, or else a
/// Hugging Face folder's base URL (`config.json`, `tokenizer.json`, optional
/// `tokenizer_config.json`, `model.safetensors` or the shards of
/// `model.safetensors.index.json`).
///
/// # Errors
///
/// A message naming the URL or file when a download fails, the model does not fit the GPU or
/// the loader rejects it.
pub async fn load_url(
    url: &str,
    device: &Device,
    gpu: &GpuInfo,
    progress: &dyn Fn(Progress),
) -> Result<StoredModel, String> {
    let name = url.to_string();
    if is_gguf(url) {
        let fetched = fetch_file(url, false, progress)
            .await?
            .ok_or_else(|| format!("{url}: not found"))?;
        return load_bytes(
            ModelBytes::Gguf(fetched.bytes),
            &name,
            device,
            gpu,
            fetched.from_cache,
            progress,
        )
        .await;
    }
    let base = url.trim_end_matches('/');
    let mut folder = Folder {
        base,
        files: Vec::new(),
        all_cached: true,
    };
    folder.get("config.json", false, progress).await?;
    folder.get("tokenizer.json", false, progress).await?;
    folder.get("tokenizer_config.json", true, progress).await?;
    if !folder.get("model.safetensors", true, progress).await? {
        let Some(index) = fetch_file(
            &format!("{base}/model.safetensors.index.json"),
            true,
            progress,
        )
        .await?
        else {
            return Err(format!(
                "{base}: neither model.safetensors nor model.safetensors.index.json was found \
                 (a URL not ending in .gguf is read as a Hugging Face folder)"
            ));
        };
        for shard in shard_names(&index.bytes, base)? {
            folder.get(&shard, false, progress).await?;
        }
    }
    let Folder {
        files, all_cached, ..
    } = folder;
    load_bytes(
        ModelBytes::Hf(files),
        &name,
        device,
        gpu,
        all_cached,
        progress,
    )
    .await
}

/// Loads a model from files the user picked: one `.gguf`, or `config.json` + `tokenizer.json`
/// (+ `tokenizer_config.json`) + `.safetensors` files.
///
/// # Errors
///
/// As [`load_url`].
pub async fn load_files(
    picked: &[web_sys::File],
    device: &Device,
    gpu: &GpuInfo,
    progress: &dyn Fn(Progress),
) -> Result<StoredModel, String> {
    let total: u64 = picked.iter().map(|f| f.size() as u64).sum();
    let mut done = 0;
    let mut files = Vec::new();
    for file in picked {
        let name = file.name();
        progress(Progress {
            stage: Stage::Download,
            file: name.clone(),
            done,
            total: Some(total),
            from_cache: false,
        });
        let buffer = JsFuture::from(file.array_buffer())
            .await
            .map_err(|e| format!("reading {name} failed: {}", js_error(e)))?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        done += bytes.len() as u64;
        files.push((name, bytes));
    }
    let ggufs: Vec<usize> = (0..files.len()).filter(|&i| is_gguf(&files[i].0)).collect();
    match ggufs[..] {
        [i] => {
            let (name, bytes) = files.swap_remove(i);
            load_bytes(ModelBytes::Gguf(bytes), &name, device, gpu, false, progress).await
        }
        [] => {
            let name = files
                .iter()
                .find(|(f, _)| f.ends_with(".safetensors"))
                .map(|(f, _)| f.clone())
                .unwrap_or_else(|| "picked files".into());
            load_bytes(ModelBytes::Hf(files), &name, device, gpu, false, progress).await
        }
        _ => Err(
            "pick one .gguf file, or a Hugging Face model's files (config.json, \
                  tokenizer.json and the .safetensors)"
                .into(),
        ),
    }
}

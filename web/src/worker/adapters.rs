//! Role adapters the user brings or makes: PEFT LoRA adapters imported from files, and those
//! the Fine-tune panel saves, kept in the Cache API ([`ADAPTER_CACHE`], under [`adapter_url`])
//! with the name of the model they belong to, and installed again when that model is loaded
//! after a reload.

use js_sys::{Reflect, Uint8Array};
use umi_data::{Role, RoleMap};
use umi_model::{AdapterSet, Device, LoadedModel, PeftFiles, peft_from_bytes};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response, ResponseInit};

use crate::js::js_error;
use crate::protocol::{ADAPTER_CACHE, ADAPTER_CONFIG, ADAPTER_MODEL, adapter_url};
use crate::worker::scope::scope;
use crate::worker::shipped::fetch;

async fn file_bytes(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("reading {}: {}", file.name(), js_error(e)))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Where an imported adapter comes from.
pub enum AdapterSource {
    /// Files the person picked: an `adapter_config.json` and an `adapter_model.safetensors`
    /// (any names ending so).
    Files(Vec<web_sys::File>),
    /// A folder URL holding `adapter_config.json` and `adapter_model.safetensors` (a PEFT
    /// output folder served over HTTP, e.g. `agent/smollm2-135m-instruct/planner` of this app).
    Url(String),
}

/// Imports `role`'s adapter from `source`: checked against `model`, kept in the Cache API with
/// `model`'s name. Returns the adapters, the Cache API URLs of its files (`None` when it could
/// not be kept) and a one-line description.
///
/// # Errors
///
/// A message saying which file is missing, unreadable or does not fit the model.
pub async fn import(
    role: Role,
    source: &AdapterSource,
    model: &LoadedModel,
    device: &Device,
) -> Result<(AdapterSet, Option<[String; 2]>, String), String> {
    let (config, config_name, weights, weights_name) = match source {
        AdapterSource::Files(files) => {
            let pick = |suffix: &str| {
                files
                    .iter()
                    .find(|f| f.name().ends_with(suffix))
                    .ok_or_else(|| {
                        format!(
                            "pick the adapter's two files: {ADAPTER_CONFIG} and {ADAPTER_MODEL} (got {})",
                            files
                                .iter()
                                .map(|f| f.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
            };
            let (config_file, weights_file) = (pick(".json")?, pick(".safetensors")?);
            (
                file_bytes(config_file).await?,
                config_file.name(),
                file_bytes(weights_file).await?,
                weights_file.name(),
            )
        }
        AdapterSource::Url(base) => {
            let base = base.trim().trim_end_matches('/');
            if base.is_empty() {
                return Err("type the URL of a folder with the adapter's two files".into());
            }
            let get = |file: &'static str| {
                let url = format!("{base}/{file}");
                async move {
                    match fetch(&url).await? {
                        Some(bytes) => Ok((bytes, url)),
                        None => Err(format!(
                            "{url} was not found (HTTP 404): the URL must be a folder with {ADAPTER_CONFIG} and {ADAPTER_MODEL}"
                        )),
                    }
                }
            };
            let (config, config_url) = get(ADAPTER_CONFIG).await?;
            let (weights, weights_url) = get(ADAPTER_MODEL).await?;
            (config, config_url, weights, weights_url)
        }
    };
    let config =
        String::from_utf8(config).map_err(|e| format!("{config_name} is not UTF-8 text: {e}"))?;
    let (lora, set) = peft_from_bytes(
        &model.model,
        &config,
        &weights,
        &config_name,
        &weights_name,
        device,
    )
    .map_err(|e| e.to_string())?;
    let bytes = weights.len();
    let files = PeftFiles {
        adapter_config: config,
        adapter_model: weights,
    };
    let (stored, urls) = store_adapter(role, &files, &model.origin).await;
    let kept = match &stored {
        Ok(()) => "kept in this browser for the next visits".to_string(),
        Err(e) => format!("not kept across reloads: {e}"),
    };
    Ok((
        set,
        stored.is_ok().then_some(urls),
        format!(
            "{}: imported {} (LoRA r = {}, {:.1} MB); {kept}",
            role.as_str(),
            weights_name,
            lora.r,
            bytes as f64 / 1e6
        ),
    ))
}

/// The body of `url` in `cache`, or `None`.
async fn cached(cache: &Cache, url: &str) -> Option<Vec<u8>> {
    let found = JsFuture::from(cache.match_with_str(url)).await.ok()?;
    let response: Response = found.dyn_into().ok()?;
    let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}

/// The adapters kept for `models` (each role's model must be the one its adapter was made for),
/// installed over whatever the roles had; returns them and a note per role restored or skipped.
pub async fn restore(
    models: &RoleMap<std::rc::Rc<LoadedModel>>,
    device: &Device,
) -> (RoleMap<Option<AdapterSet>>, Vec<String>) {
    let mut out: RoleMap<Option<AdapterSet>> = Default::default();
    let mut notes = Vec::new();
    let Ok(caches) = scope().caches() else {
        return (out, notes);
    };
    let Some(cache) = JsFuture::from(caches.open(ADAPTER_CACHE))
        .await
        .ok()
        .and_then(|c| c.dyn_into::<Cache>().ok())
    else {
        return (out, notes);
    };
    for role in [Role::Planner, Role::Caller, Role::Summarizer] {
        let model = models.get(role);
        let (Some(config), Some(weights), Some(base)) = (
            cached(&cache, &adapter_url(role, ADAPTER_CONFIG)).await,
            cached(&cache, &adapter_url(role, ADAPTER_MODEL)).await,
            cached(&cache, &adapter_url(role, BASE_MODEL)).await,
        ) else {
            continue;
        };
        let base = String::from_utf8_lossy(&base).into_owned();
        if base != model.origin {
            notes.push(format!(
                "{}: the adapter in this browser belongs to {base}, not installed",
                role.as_str()
            ));
            continue;
        }
        let config = String::from_utf8_lossy(&config).into_owned();
        match peft_from_bytes(
            &model.model,
            &config,
            &weights,
            ADAPTER_CONFIG,
            ADAPTER_MODEL,
            device,
        ) {
            Ok((_, set)) => {
                *out.get_mut(role) = Some(set);
                notes.push(format!(
                    "{}: adapter from this browser's storage",
                    role.as_str()
                ));
            }
            Err(e) => notes.push(format!(
                "{}: the adapter in this browser's storage does not load ({e})",
                role.as_str()
            )),
        }
    }
    (out, notes)
}

/// The cache entry naming the model an adapter belongs to (its `LoadedModel::origin`).
pub const BASE_MODEL: &str = "base_model.txt";

/// Stores `role`'s PEFT files in the Cache API ([`ADAPTER_CACHE`], under [`adapter_url`]), with
/// the name of the model they belong to (`base`, restored only onto it), and returns their URLs.
///
/// # Errors
///
/// A message when there is no Cache API (not a secure context) or a write fails (quota).
pub async fn store_adapter(
    role: Role,
    files: &umi_model::PeftFiles,
    base: &str,
) -> (Result<(), String>, [String; 2]) {
    let urls = [
        adapter_url(role, ADAPTER_CONFIG),
        adapter_url(role, ADAPTER_MODEL),
    ];
    let stored = async {
        let caches = scope()
            .caches()
            .map_err(|_| "no Cache API here (the page is not a secure context)".to_string())?;
        let cache: Cache = JsFuture::from(caches.open(ADAPTER_CACHE))
            .await
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| "caches.open gave no cache".to_string())?;
        let base_url = adapter_url(role, BASE_MODEL);
        for (url, (bytes, kind)) in urls.iter().chain([&base_url]).zip([
            (files.adapter_config.as_bytes(), "application/json"),
            (files.adapter_model.as_slice(), "application/octet-stream"),
            (base.as_bytes(), "text/plain"),
        ]) {
            let init = ResponseInit::new();
            let headers = js_sys::Object::new();
            let _ = Reflect::set(&headers, &"content-type".into(), &kind.into());
            init.set_headers(&headers);
            let body = Uint8Array::from(bytes);
            let response = Response::new_with_opt_buffer_source_and_init(Some(&body), &init)
                .map_err(js_error)?;
            JsFuture::from(cache.put_with_str(url, &response))
                .await
                .map_err(|e| format!("storing {url}: {}", js_error(e)))?;
        }
        Ok::<(), String>(())
    }
    .await;
    (stored, urls)
}

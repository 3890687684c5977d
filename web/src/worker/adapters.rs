//! Role adapters the user brings or makes: PEFT LoRA adapters imported from files, and those
//! the Fine-tune panel saves, kept in the Cache API ([`ADAPTER_CACHE`], under [`adapter_url`])
//! with the name of the model they belong to, and installed again when that model is loaded
//! after a reload.

use js_sys::Uint8Array;
use umi_data::{Role, RoleMap};
use umi_model::{AdapterSet, Device, LoadedModel, PeftFiles, peft_from_bytes};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response};

use crate::js::js_error;
use crate::protocol::{ADAPTER_CACHE, adapter_url};
use crate::worker::scope::scope;
use crate::worker::train::store_adapter;

/// The PEFT adapter's configuration file.
pub const CONFIG: &str = "adapter_config.json";
/// The PEFT adapter's weights file.
pub const WEIGHTS: &str = "adapter_model.safetensors";

async fn file_bytes(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("reading {}: {}", file.name(), js_error(e)))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Imports `role`'s adapter from the picked `files` (an `adapter_config.json` and an
/// `adapter_model.safetensors`, any names ending so): checked against `model`, kept in the Cache
/// API with `model`'s name. Returns the adapters, the Cache API URLs of its files (`None` when
/// it could not be kept) and a one-line description.
///
/// # Errors
///
/// A message saying which file is missing, unreadable or does not fit the model.
pub async fn import(
    role: Role,
    files: &[web_sys::File],
    model: &LoadedModel,
    device: &Device,
) -> Result<(AdapterSet, Option<[String; 2]>, String), String> {
    let pick = |suffix: &str| {
        files
            .iter()
            .find(|f| f.name().ends_with(suffix))
            .ok_or_else(|| {
                format!(
                    "pick the adapter's two files: {CONFIG} and {WEIGHTS} (got {})",
                    files
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    };
    let (config_file, weights_file) = (pick(".json")?, pick(".safetensors")?);
    let config = String::from_utf8(file_bytes(config_file).await?)
        .map_err(|e| format!("{} is not UTF-8 text: {e}", config_file.name()))?;
    let weights = file_bytes(weights_file).await?;
    let (lora, set) = peft_from_bytes(
        &model.model,
        &config,
        &weights,
        &config_file.name(),
        &weights_file.name(),
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
            weights_file.name(),
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
            cached(&cache, &adapter_url(role, CONFIG)).await,
            cached(&cache, &adapter_url(role, WEIGHTS)).await,
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
        match peft_from_bytes(&model.model, &config, &weights, CONFIG, WEIGHTS, device) {
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

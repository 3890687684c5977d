//! The α-UMi agent umi ships with a model: three role adapters (planner, caller, summarizer)
//! found through [`AGENT_INDEX`] beside the app and installed when that model is loaded, so the
//! page runs the trained agent by default (the native `umi run` does the same with
//! `assets/agent/`). The page's "zero-shot" option runs without them.

use std::collections::HashMap;

use serde::Deserialize;
use umi_data::{Role, RoleMap};
use umi_model::{AdapterSet, Device, LoadedModel, peft_from_bytes};

use crate::protocol::{AGENT_INDEX, model_file_name};

/// One entry of [`AGENT_INDEX`].
#[derive(Debug, Deserialize)]
struct Entry {
    folder: String,
    raw_prompts: bool,
}

#[derive(Debug, Deserialize)]
struct Index {
    models: HashMap<String, Entry>,
}

/// The shipped agent of a model.
pub struct Shipped {
    /// `agent/<folder>`.
    pub folder: String,
    /// The prompt format the adapters were trained with.
    pub raw_prompts: bool,
    /// Planner, caller, summarizer.
    pub adapters: RoleMap<AdapterSet>,
}

/// `url`'s body, or `None` when the server answers 404.
///
/// # Errors
///
/// A message naming `url` when the request fails or the server answers another error.
pub async fn fetch(url: &str) -> Result<Option<Vec<u8>>, String> {
    let response = gloo_net::http::Request::get(url)
        .send()
        .await
        .map_err(|e| format!("fetching {url} failed: {e}"))?;
    match response.status() {
        404 => Ok(None),
        200..=299 => Ok(Some(
            response
                .binary()
                .await
                .map_err(|e| format!("reading {url} failed: {e}"))?,
        )),
        status => Err(format!("fetching {url}: HTTP {status}")),
    }
}

/// The adapters shipped for the model at `model_url` (looked up by its file name in
/// [`AGENT_INDEX`]), read for `model`; `None` when the app has no index or the index does not
/// list this model.
///
/// # Errors
///
/// A message naming the file when the index or an adapter is unreadable, malformed or does not
/// fit `model`.
pub async fn shipped_agent(
    model_url: &str,
    model: &LoadedModel,
    device: &Device,
) -> Result<Option<Shipped>, String> {
    let Some(bytes) = fetch(AGENT_INDEX).await? else {
        return Ok(None);
    };
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
        format!("{AGENT_INDEX} is not {{\"models\": {{name: {{folder, raw_prompts}}}}}}: {e}")
    })?;
    let Some(entry) = index.models.get(model_file_name(model_url)) else {
        return Ok(None);
    };
    if !umi_model::weights::is_plain_relative(&entry.folder) {
        return Err(format!(
            "{AGENT_INDEX}: folder {:?} must be a plain relative path",
            entry.folder
        ));
    }
    let mut adapters: RoleMap<AdapterSet> = Default::default();
    for role in [Role::Planner, Role::Caller, Role::Summarizer] {
        let base = format!("agent/{}/{}", entry.folder, role.as_str());
        let config_url = format!("{base}/adapter_config.json");
        let weights_url = format!("{base}/adapter_model.safetensors");
        let missing = |url: &str| format!("{url} is missing ({AGENT_INDEX} lists it)");
        let config = fetch(&config_url)
            .await?
            .ok_or_else(|| missing(&config_url))?;
        let weights = fetch(&weights_url)
            .await?
            .ok_or_else(|| missing(&weights_url))?;
        let config = String::from_utf8(config).map_err(|e| format!("{config_url}: {e}"))?;
        let (_, set) = peft_from_bytes(
            &model.model,
            &config,
            &weights,
            &config_url,
            &weights_url,
            device,
        )
        .map_err(|e| e.to_string())?;
        *adapters.get_mut(role) = set;
    }
    Ok(Some(Shipped {
        folder: format!("agent/{}", entry.folder),
        raw_prompts: entry.raw_prompts,
        adapters,
    }))
}

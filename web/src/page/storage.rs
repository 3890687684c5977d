//! The "Storage" section: what the browser keeps for umi (the app shell the service worker
//! serves when there is no server, downloaded models, fine-tuned adapters), how much space this
//! site uses, and a way to clear the models and the app shell. Fine-tuned adapters are never
//! cleared from here: they are the user's work.
//!
//! DOM hooks for the browser test: `#storage-usage`, `#storage-caches` (one `li` per cache with
//! `data-cache` and `data-files`), `#storage-refresh`, `#storage-clear`.

use js_sys::{Array, Function, Promise, Reflect};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::Cache;

use crate::js::js_error;
use crate::protocol::{ADAPTER_CACHE, APP_SHELL_CACHE, MODEL_CACHE};

/// One Cache API cache of umi's and how many entries it holds.
#[derive(Debug, Clone, PartialEq)]
struct CacheEntry {
    name: String,
    files: u32,
}

impl CacheEntry {
    fn text(&self) -> String {
        let what = match self.name.as_str() {
            APP_SHELL_CACHE => {
                "the app shell (page, JavaScript, wasm, CSS): opens the app with no server"
            }
            MODEL_CACHE => "downloaded models: a reload loads them from here",
            ADAPTER_CACHE => {
                "imported and fine-tuned adapters (kept when clearing; export them from Adapters in use)"
            }
            _ => "other files",
        };
        format!("{}: {} files, {what}", self.name, self.files)
    }
}

/// `navigator.storage.estimate()` as text, or why it is unavailable.
async fn usage_text() -> Result<String, JsValue> {
    let navigator = web_sys::window()
        .ok_or_else(|| JsValue::from_str("no window"))?
        .navigator();
    let storage = Reflect::get(&navigator, &"storage".into())?;
    if storage.is_undefined() {
        return Ok("this browser does not report how much space the site uses".into());
    }
    let estimate: Function = Reflect::get(&storage, &"estimate".into())?.dyn_into()?;
    let promise: Promise = estimate.call0(&storage)?.dyn_into()?;
    let result = JsFuture::from(promise).await?;
    let mb = |key: &str| {
        Reflect::get(&result, &key.into())
            .ok()
            .and_then(|v| v.as_f64())
            .map(|b| b / 1e6)
    };
    Ok(match (mb("usage"), mb("quota")) {
        (Some(used), Some(quota)) => {
            format!("this site uses {used:.1} MB of the {quota:.0} MB the browser allows it")
        }
        (Some(used), None) => format!("this site uses {used:.1} MB"),
        _ => "the browser gave no storage estimate".into(),
    })
}

/// umi's caches (names starting with `umi-`) and their entry counts.
async fn umi_caches() -> Result<Vec<CacheEntry>, JsValue> {
    let caches = web_sys::window()
        .ok_or_else(|| JsValue::from_str("no window"))?
        .caches()?;
    let names: Array = JsFuture::from(caches.keys()).await?.dyn_into()?;
    let mut out = Vec::new();
    for name in names.iter().filter_map(|n| n.as_string()) {
        if !name.starts_with("umi-") {
            continue;
        }
        let cache: Cache = JsFuture::from(caches.open(&name)).await?.dyn_into()?;
        let keys: Array = JsFuture::from(cache.keys()).await?.dyn_into()?;
        out.push(CacheEntry {
            name,
            files: keys.length(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes the model and app-shell caches (not the adapters).
async fn clear() -> Result<(), JsValue> {
    let caches = web_sys::window()
        .ok_or_else(|| JsValue::from_str("no window"))?
        .caches()?;
    for name in [MODEL_CACHE, APP_SHELL_CACHE] {
        JsFuture::from(caches.delete(name)).await?;
    }
    Ok(())
}

/// The section. `loaded` changes when a model finishes loading (the list is read again then).
#[component]
pub fn Storage(
    /// Whether a model is loaded.
    loaded: RwSignal<bool>,
) -> impl IntoView {
    let usage = RwSignal::new("reading…".to_string());
    let entries = RwSignal::new(Vec::<CacheEntry>::new());
    let refresh = move || {
        spawn_local(async move {
            match usage_text().await {
                Ok(text) => usage.set(text),
                Err(e) => usage.set(format!("cannot read the storage estimate: {}", js_error(e))),
            }
            match umi_caches().await {
                Ok(list) => entries.set(list),
                Err(e) => usage.set(format!("cannot list the caches: {}", js_error(e))),
            }
        })
    };
    Effect::new(move |_| {
        loaded.track();
        refresh();
    });
    let on_clear = move |_| {
        spawn_local(async move {
            if let Err(e) = clear().await {
                usage.set(format!("clearing failed: {}", js_error(e)));
                return;
            }
            refresh();
        })
    };
    view! {
        <section id="storage">
            <h2>"Storage"</h2>
            <p id="storage-usage">{move || usage.get()}</p>
            <ul id="storage-caches">
                <For each=move || entries.get() key=|e| (e.name.clone(), e.files) let:entry>
                    <li data-cache=entry.name.clone() data-files=entry.files>
                        {entry.text()}
                    </li>
                </For>
            </ul>
            <div class="row">
                <button id="storage-refresh" on:click=move |_| refresh()>
                    "Refresh"
                </button>
                <button id="storage-clear" on:click=on_clear>
                    "Clear models and app shell"
                </button>
            </div>
        </section>
    }
}

//! The "Adapters" row of the Models section: import a role's PEFT LoRA adapter (its
//! `adapter_config.json` and `adapter_model.safetensors`) from files; the worker installs it for
//! the next runs and keeps it in the browser, so it is installed again when the same model is
//! loaded after a reload (the Fine-tune panel's adapters are kept the same way).
//!
//! The "Adapters in use" list shows which adapter each role runs with (shipped with the app,
//! or imported / fine-tuned in this browser) and exports its PEFT files.
//!
//! DOM hooks for the browser test: `#adapter-role`, `#adapter-files`, `#adapter-url`,
//! `#adapter-url-import`, `#adapter-status`,
//! `#adapter-list` (one `li` per role with an adapter, `data-role` and `data-origin`
//! `shipped`/`browser`, with `a.export` links carrying `data-file`).

use leptos::prelude::*;
use leptos::task::spawn_local;
use umi_data::Role;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, HtmlInputElement, Response, window};

use crate::js::js_error;
use crate::page::widgets::RoleSelect;
use crate::page::worker_link::{post, use_worker};
use crate::protocol::{
    ADAPTER_CACHE, ADAPTER_CONFIG, ADAPTER_MODEL, AdapterOrigin, InstalledAdapter, ToWorker,
};

/// The PEFT files of an adapter, in the order of [`InstalledAdapter::files`].
const PEFT_FILES: [&str; 2] = [ADAPTER_CONFIG, ADAPTER_MODEL];

/// A downloadable file: its name and a URL (an object URL for files in browser storage).
#[derive(Debug, Clone, PartialEq)]
pub struct Download {
    /// The file name the browser saves it under.
    pub name: &'static str,
    /// Where it is read from.
    pub href: String,
}

impl Download {
    /// Releases the object URL (nothing for a plain URL).
    pub fn revoke(&self) {
        if self.href.starts_with("blob:") {
            let _ = web_sys::Url::revoke_object_url(&self.href);
        }
    }
}

/// Object URLs for an adapter's two files kept in [`ADAPTER_CACHE`] under `urls`.
///
/// # Errors
///
/// A message when the Cache API is missing or a file is not in the cache.
pub async fn cached_downloads(urls: &[String; 2]) -> Result<Vec<Download>, String> {
    let caches = window().ok_or("no window")?.caches().map_err(js_error)?;
    let cache: Cache = JsFuture::from(caches.open(ADAPTER_CACHE))
        .await
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| "caches.open gave no cache".to_string())?;
    let mut out = Vec::new();
    for (url, name) in urls.iter().zip(PEFT_FILES) {
        let response: Response = JsFuture::from(cache.match_with_str(url))
            .await
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| format!("{url} is not in the cache"))?;
        let blob: web_sys::Blob = JsFuture::from(response.blob().map_err(js_error)?)
            .await
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| "not a blob".to_string())?;
        let href = web_sys::Url::create_object_url_with_blob(&blob).map_err(js_error)?;
        out.push(Download { name, href });
    }
    Ok(out)
}

/// What the list shows for one role.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    adapter: InstalledAdapter,
    /// The export links, or why there are none.
    downloads: Result<Vec<Download>, String>,
}

async fn rows_of(list: Vec<InstalledAdapter>) -> Vec<Row> {
    let mut rows = Vec::new();
    for adapter in list {
        let downloads = match (&adapter.files, adapter.origin) {
            (None, _) => Err("not kept in browser storage, so it cannot be exported".into()),
            (Some(urls), AdapterOrigin::Shipped) => Ok(urls
                .iter()
                .zip(PEFT_FILES)
                .map(|(href, name)| Download {
                    name,
                    href: href.clone(),
                })
                .collect()),
            (Some(urls), AdapterOrigin::Browser) => cached_downloads(urls).await,
        };
        rows.push(Row { adapter, downloads });
    }
    rows
}

fn describe(a: &InstalledAdapter) -> String {
    let from = match (a.origin, &a.files) {
        (AdapterOrigin::Shipped, Some([config, _])) => format!(
            "shipped with the app ({})",
            config.trim_end_matches(PEFT_FILES[0]).trim_end_matches('/')
        ),
        (AdapterOrigin::Shipped, None) => "shipped with the app".to_string(),
        (AdapterOrigin::Browser, _) => "imported or fine-tuned in this browser".to_string(),
    };
    format!("{}: {from}", a.role.as_str())
}

/// The adapters the roles run with, each with export links for its PEFT files.
#[component]
pub fn AdapterList(
    /// The worker's latest [`crate::protocol::FromWorker::Adapters`].
    installed: RwSignal<Vec<InstalledAdapter>>,
) -> impl IntoView {
    let rows = RwSignal::new(Vec::<Row>::new());
    // the latest list wins when reading an earlier one from the cache is still under way
    let generation = StoredValue::new(0u64);
    let revoke = |rows: &[Row]| {
        for row in rows {
            for d in row.downloads.iter().flatten() {
                d.revoke();
            }
        }
    };
    Effect::new(move |_| {
        let list = installed.get();
        generation.update_value(|g| *g += 1);
        let mine = generation.get_value();
        spawn_local(async move {
            let new = rows_of(list).await;
            if generation.get_value() != mine {
                revoke(&new);
                return;
            }
            revoke(&rows.get_untracked());
            rows.set(new);
        });
    });
    view! {
        <div class="row">
            <span class="row-label">"Adapters in use"</span>
            <ul id="adapter-list">
                <Show when=move || rows.with(Vec::is_empty)>
                    <li class="hint">"none: the roles run the base model (zero-shot)"</li>
                </Show>
                <For
                    each=move || rows.get()
                    key=|r| {
                        let hrefs: Vec<String> = r.downloads.iter().flatten().map(|d| d.href.clone()).collect();
                        (r.adapter.role.as_str(), r.adapter.origin.as_str(), hrefs)
                    }
                    children=|r| {
                        let links = match r.downloads.clone() {
                            Ok(downloads) => std::iter::once(view! { " · export " }.into_any())
                                .chain(
                                    downloads
                                        .into_iter()
                                        .map(|d| {
                                            view! {
                                                <a
                                                    class="export"
                                                    data-file=d.name
                                                    href=d.href
                                                    download=d.name
                                                >
                                                    {d.name}
                                                </a>
                                            }
                                                .into_any()
                                        }),
                                )
                                .collect::<Vec<_>>(),
                            Err(why) => vec![view! { <span class="hint">{format!(" ({why})")}</span> }.into_any()],
                        };
                        view! {
                            <li data-role=r.adapter.role.as_str() data-origin=r.adapter.origin.as_str()>
                                {describe(&r.adapter)}
                                {links}
                            </li>
                        }
                    }
                />
            </ul>
        </div>
    }
}

/// The row. `status` shows the last import's outcome (set from the worker's answer).
#[component]
pub fn AdapterImport(
    /// Whether a model is loaded (adapters belong to it).
    ready: RwSignal<bool>,
    /// The last import's outcome.
    status: RwSignal<String>,
) -> impl IntoView {
    let worker = use_worker();
    let role = RwSignal::new(Role::Planner);
    let pick = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let Some(list) = input.files() else {
            return;
        };
        let files: js_sys::Array = (0..list.length()).filter_map(|i| list.get(i)).collect();
        if files.length() == 0 {
            return;
        }
        status.set(format!("{}: importing…", role.get_untracked().as_str()));
        let message = ToWorker::ImportAdapter {
            role: role.get_untracked(),
            url: None,
        };
        if let Err(e) = post(worker, &message, Some(&files)) {
            status.set(format!("error: {e}"));
        }
        input.set_value(""); // picking the same files again imports again
    };
    let url = RwSignal::new(String::new());
    let import_url = move |_| {
        let folder = url.get_untracked().trim().to_string();
        if folder.is_empty() {
            status.set("error: type the URL of a folder with adapter_config.json and adapter_model.safetensors".into());
            return;
        }
        status.set(format!(
            "{}: importing {folder}…",
            role.get_untracked().as_str()
        ));
        let message = ToWorker::ImportAdapter {
            role: role.get_untracked(),
            url: Some(folder),
        };
        if let Err(e) = post(worker, &message, None) {
            status.set(format!("error: {e}"));
        }
    };
    view! {
        <div class="row">
            <label for="adapter-files">"Import an adapter"</label>
            <RoleSelect id="adapter-role" role=role />
            <input
                id="adapter-files"
                type="file"
                multiple
                accept=".json,.safetensors"
                on:change=pick
                disabled=move || !ready.get()
                title="adapter_config.json and adapter_model.safetensors (PEFT LoRA)"
            />
            <input
                id="adapter-url"
                type="text"
                placeholder="or a folder URL"
                title="a folder URL with adapter_config.json and adapter_model.safetensors"
                prop:value=move || url.get()
                on:input=move |ev| url.set(event_target_value(&ev))
            />
            <button id="adapter-url-import" on:click=import_url disabled=move || !ready.get()>
                "Import"
            </button>
            <span id="adapter-status" class="hint">
                {move || status.get()}
            </span>
        </div>
    }
}

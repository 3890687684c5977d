//! The "Adapters" row of the Models section: import a role's PEFT LoRA adapter (its
//! `adapter_config.json` and `adapter_model.safetensors`) from files; the worker installs it for
//! the next runs and keeps it in the browser, so it is installed again when the same model is
//! loaded after a reload (the Fine-tune panel's adapters are kept the same way).
//!
//! DOM hooks for the browser test: `#adapter-role`, `#adapter-files`, `#adapter-status`.

use leptos::prelude::*;
use umi_data::Role;
use web_sys::HtmlInputElement;

use crate::page::widgets::RoleSelect;
use crate::page::worker_link::{WorkerHandle, post};
use crate::protocol::ToWorker;

/// The row. `status` shows the last import's outcome (set from the worker's answer).
#[component]
pub fn AdapterImport(
    /// The model worker.
    worker: WorkerHandle,
    /// Whether a model is loaded (adapters belong to it).
    ready: RwSignal<bool>,
    /// The last import's outcome.
    status: RwSignal<String>,
) -> impl IntoView {
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
        };
        if let Err(e) = post(worker, &message, Some(&files)) {
            status.set(format!("error: {e}"));
        }
        input.set_value(""); // picking the same files again imports again
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
            <span id="adapter-status" class="hint">
                {move || status.get()}
            </span>
        </div>
    }
}

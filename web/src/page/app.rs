//! The page: GPU line, model store, agent form, live trace, fine-tuning panel, trajectory JSON.
//! It only renders:
//! the models and the agent run in the model worker (`worker/engine.rs`), which it talks to with
//! [`protocol`](crate::protocol) messages.
//!
//! DOM ids are stable hooks for the browser test (`tests/browser/app.test.mjs`); URL query
//! parameters prefill the form (`?model=…&tools=…&query=…`, also `planner`, `caller`,
//! `summarizer`, `mode`, `max_steps`, `max_new_tokens`, `raw=1`, and `max_binding_mib=N` to
//! pretend a smaller GPU); nothing runs by itself.

use js_sys::Reflect;
use leptos::prelude::*;
use leptos::task::spawn_local;
use umi_agent::{AgentMode, LiveRun, Speed};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::JsFuture;
use web_sys::{HtmlInputElement, MessageEvent, Worker};

use crate::js::js_error;
use crate::page::adapters::{AdapterImport, AdapterList};
use crate::page::finetune::{FineTune, TrainPanel};
use crate::page::storage::Storage;
use crate::page::trace::{Trace, TraceView};
use crate::page::widgets::TextInput;
use crate::page::worker_link::{WorkerHandle, post, provide_worker};
use crate::protocol::{
    FromWorker, MeasuredSpeed, ModelChoice, Progress, RunSettings, Stage, ToWorker, decode,
};

/// The model the set-up installs (`scripts/setup.sh`), served next to the app.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// `umi tools serve`'s default address.
pub const DEFAULT_TOOLS: &str = "http://127.0.0.1:8080";
/// The model worker's script, written by trunk next to `index.html` (`data-loader-shim`).
const WORKER_URL: &str = "./umi-worker_loader.js";

/// Where the GPU stands.
#[derive(Debug, Clone, PartialEq)]
enum GpuStatus {
    /// The worker is starting WebGPU.
    Starting,
    /// Ready: the adapter's summary.
    Ready(String),
    /// No WebGPU here, with the reason.
    Missing(String),
}

impl GpuStatus {
    /// Whether the adapter is a software (CPU) emulation of a GPU: `isFallbackAdapter`, or a
    /// known software rasteriser (SwiftShader, llvmpipe, lavapipe, WARP).
    fn is_software(&self) -> bool {
        match self {
            GpuStatus::Ready(summary) => {
                let s = summary.to_lowercase();
                [
                    "fallback adapter",
                    "swiftshader",
                    "llvmpipe",
                    "lavapipe",
                    "microsoft basic render",
                ]
                .iter()
                .any(|k| s.contains(k))
            }
            _ => false,
        }
    }

    /// The line `#gpu-info` shows.
    fn text(&self) -> String {
        match self {
            GpuStatus::Starting => "GPU: starting WebGPU…".into(),
            GpuStatus::Ready(summary) => format!("GPU: {summary}"),
            GpuStatus::Missing(why) => format!("WebGPU missing: {why}"),
        }
    }
}

/// A URL query parameter of the page.
fn query_param(name: &str) -> Option<String> {
    let search = window().location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
        .filter(|v| !v.is_empty())
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 20) as f64)
}

/// The line under the progress bar.
fn progress_text(p: &Progress, eta_seconds: Option<f64>) -> String {
    let cached = if p.from_cache { " (from cache)" } else { "" };
    let eta = match eta_seconds {
        Some(s) if s >= 90.0 => format!(", about {:.0} min left", s / 60.0),
        Some(s) if s >= 1.0 => format!(", about {s:.0} s left"),
        _ => String::new(),
    };
    match (p.stage, p.total) {
        (Stage::Download, Some(total)) if total > 0 => format!(
            "download {}: {} / {} MiB ({:.0}%{eta}){cached}",
            p.file,
            mib(p.done),
            mib(total),
            100.0 * p.done as f64 / total as f64
        ),
        (Stage::Download, _) => format!("download {}: {} MiB{cached}", p.file, mib(p.done)),
        (Stage::Upload, Some(total)) if total > 0 => format!(
            "{} {}: {:.0}%{eta}{cached}",
            Stage::Upload.label(),
            p.file,
            100.0 * p.done as f64 / total as f64
        ),
        (stage, _) => format!("{}: {}{cached}", stage.label(), p.file),
    }
}

/// Writes `text` to the clipboard (`navigator.clipboard.writeText`).
async fn copy_to_clipboard(text: &str) -> Result<(), String> {
    let clipboard = Reflect::get(&window().navigator(), &"clipboard".into()).map_err(js_error)?;
    let write: js_sys::Function = Reflect::get(&clipboard, &"writeText".into())
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| "this browser has no clipboard API".to_string())?;
    let promise: js_sys::Promise = write
        .call1(&clipboard, &text.into())
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| "writeText returned no promise".to_string())?;
    JsFuture::from(promise).await.map_err(js_error)?;
    Ok(())
}

/// The application.
#[component]
pub fn App() -> impl IntoView {
    let param = |name: &str, default: &str| {
        RwSignal::new(query_param(name).unwrap_or_else(|| default.to_string()))
    };
    // the form
    let model_url = param("model", DEFAULT_MODEL);
    let planner_url = param("planner", "");
    let caller_url = param("caller", "");
    let summarizer_url = param("summarizer", "");
    let per_role = RwSignal::new(
        ["planner", "caller", "summarizer"]
            .iter()
            .any(|r| query_param(r).is_some()),
    );
    let tools_url = param("tools", DEFAULT_TOOLS);
    let tools_json = RwSignal::new(String::new());
    let query = param("query", "");
    // an unknown ?mode= falls back to multi
    let mode = RwSignal::new(
        query_param("mode")
            .and_then(|m| m.parse::<AgentMode>().ok())
            .unwrap_or_default(),
    );
    let max_steps = param("max_steps", "10");
    let max_new_tokens = param("max_new_tokens", "256");
    let raw_prompts = RwSignal::new(query_param("raw").is_some_and(|v| v == "1" || v == "true"));
    // run without the shipped (or fine-tuned) adapters
    let zero_shot = RwSignal::new(false);
    // the prompt format of the shipped adapters, restored when zero-shot is switched off
    let shipped_raw: RwSignal<Option<bool>> = RwSignal::new(None);

    // GPU and models (in the worker)
    let gpu = RwSignal::new(GpuStatus::Starting);
    let model_status = RwSignal::new("no model loaded".to_string());
    let model_ready = RwSignal::new(false);
    let loading = RwSignal::new(false);
    let progress = RwSignal::new(None::<Progress>);
    let measured = RwSignal::new(None::<MeasuredSpeed>);
    // the stage and file under way and when it started (ms, performance.now())
    let stage_start = StoredValue::new(None::<(Stage, String, f64)>);
    let progress_eta = RwSignal::new(None::<f64>);
    let adapter_status = RwSignal::new(String::new());
    let installed_adapters = RwSignal::new(Vec::new());

    // the run
    let trace = Trace::new();
    let speed = RwSignal::new(Speed::default());
    // status and speed read off the run's events
    let live_run = StoredValue::new(LiveRun::default());
    let run_status = RwSignal::new("idle".to_string());
    let running = RwSignal::new(false);
    let record = RwSignal::new(String::new());
    let copy_status = RwSignal::new(String::new());

    // fine-tuning (in the worker)
    let panel = TrainPanel::new();

    let worker: WorkerHandle = StoredValue::new_local(None);
    provide_worker(worker);
    let send =
        move |message: &ToWorker, files: Option<&js_sys::Array>| post(worker, message, files);
    let on_message = move |message: FromWorker| match message {
        FromWorker::Ready => {
            let max_binding_mib = query_param("max_binding_mib").and_then(|v| v.parse().ok());
            if let Err(e) = send(&ToWorker::Init { max_binding_mib }, None) {
                gpu.set(GpuStatus::Missing(e));
            }
        }
        FromWorker::Gpu(Ok(summary)) => gpu.set(GpuStatus::Ready(summary)),
        FromWorker::Gpu(Err(why)) => gpu.set(GpuStatus::Missing(why)),
        FromWorker::Progress(p) => {
            // the stage's rate so far gives the time left (download and upload count their work)
            let now = window().performance().map_or(0.0, |t| t.now());
            let started = stage_start.get_value();
            let eta = match (p.total, &started) {
                (Some(total), Some((stage, file, t0)))
                    if *stage == p.stage && *file == p.file && p.done > 0 && now > *t0 =>
                {
                    Some((now - t0) / 1e3 * (total.saturating_sub(p.done)) as f64 / p.done as f64)
                }
                _ => None,
            };
            if started
                .as_ref()
                .is_none_or(|(stage, file, _)| *stage != p.stage || *file != p.file)
            {
                stage_start.set_value(Some((p.stage, p.file.clone(), now)));
            }
            progress_eta.set(eta);
            progress.set(Some(p));
        }
        FromWorker::MeasuredSpeed(s) => measured.set(Some(s)),
        FromWorker::Adapters(list) => installed_adapters.set(list),
        FromWorker::AdapterImported { role: _, result } => adapter_status.set(match result {
            Ok(text) => text,
            Err(e) => format!("error: {e}"),
        }),
        FromWorker::ShippedAgent {
            folder: _,
            raw_prompts: raw,
        } => {
            shipped_raw.set(Some(raw));
            if !zero_shot.get_untracked() {
                raw_prompts.set(raw);
            }
        }
        FromWorker::Loaded(result) => {
            match result {
                Ok(summary) => {
                    model_status.set(format!("ready: {summary}"));
                    model_ready.set(true);
                    panel.reset();
                }
                Err(e) => model_status.set(format!("error: {e}")),
            }
            progress.set(None);
            loading.set(false);
        }
        FromWorker::Status(status) => {
            if running.get_untracked() {
                run_status.set(status);
            }
        }
        FromWorker::Event(event) => {
            let now = window().performance().map_or(0.0, |t| t.now());
            let status = live_run.try_update_value(|live| {
                let status = live.event(&event, now);
                speed.set(live.speed);
                status
            });
            if let (Some(Some(status)), true) = (status, running.get_untracked()) {
                run_status.set(status);
            }
            trace.event(&event);
        }
        FromWorker::StepJudged { step, result } => {
            run_status.set(match &result {
                Ok(j) => format!(
                    "judged planner step #{step}: the taken step ranks {} of {}",
                    j.rank_of_taken(),
                    j.candidates.len()
                ),
                Err(e) => format!("judging planner step #{step} failed: {e}"),
            });
            trace.judged(step, result);
        }
        FromWorker::Finished { stop, record: r } => {
            trace.settle();
            trace.judgeable.set(true);
            panel.recorded.update(|n| *n += 1); // the worker keeps the trajectory for training
            record.set(r);
            run_status.set(format!("done: {stop}"));
            running.set(false);
        }
        FromWorker::Stopped => {
            trace.settle();
            run_status.set("stopped".into());
            running.set(false);
        }
        FromWorker::Failed(e) => {
            trace.settle();
            trace.push("error", "error".into(), e.clone());
            run_status.set(format!("error: {e}"));
            running.set(false);
        }
        other => {
            panel.on_message(&other);
        }
    };
    match Worker::new(WORKER_URL) {
        Ok(w) => {
            let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                match decode::<FromWorker>(&event.data()) {
                    Ok((message, _)) => on_message(message),
                    Err(e) => leptos::logging::error!("umi: {e}"),
                }
            });
            w.set_onmessage(Some(handler.as_ref().unchecked_ref()));
            handler.forget(); // lives as long as the page
            let on_error =
                Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
                    let message = Reflect::get(&event, &"message".into())
                        .ok()
                        .and_then(|m| m.as_string())
                        .unwrap_or_else(|| "the model worker failed".into());
                    gpu.set(GpuStatus::Missing(message));
                });
            w.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            on_error.forget();
            worker.set_value(Some(w));
        }
        Err(e) => gpu.set(GpuStatus::Missing(format!(
            "the model worker could not start: {}",
            js_error(e)
        ))),
    }
    let load = move |choice: ModelChoice, files: Option<js_sys::Array>| {
        if loading.get_untracked() || running.get_untracked() || panel.training.get_untracked() {
            return;
        }
        if !matches!(gpu.get_untracked(), GpuStatus::Ready(_)) {
            model_status.set(format!("error: {}", gpu.get_untracked().text()));
            return;
        }
        loading.set(true);
        measured.set(None);
        model_ready.set(false);
        model_status.set("loading…".into());
        if let Err(e) = send(&ToWorker::Load(choice), files.as_ref()) {
            model_status.set(format!("error: {e}"));
            loading.set(false);
        }
    };
    let load_urls = move |_| {
        let all = model_url.get_untracked().trim().to_string();
        let role = |s: RwSignal<String>| {
            let url = s.get_untracked().trim().to_string();
            if per_role.get_untracked() && !url.is_empty() {
                url
            } else {
                all.clone()
            }
        };
        let urls = [role(planner_url), role(caller_url), role(summarizer_url)];
        load(ModelChoice::Urls(urls), None);
    };
    let load_picked = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let Some(list) = input.files() else {
            return;
        };
        let files: js_sys::Array = (0..list.length()).filter_map(|i| list.get(i)).collect();
        if files.length() > 0 {
            load(ModelChoice::Files, Some(files));
        }
    };

    let start = move |_| {
        if running.get_untracked() || loading.get_untracked() || panel.training.get_untracked() {
            return;
        }
        if !model_ready.get_untracked() {
            run_status.set("error: load a model first".into());
            return;
        }
        let number = |s: RwSignal<String>, name: &str| {
            s.get_untracked()
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("error: {name} must be a positive number"))
        };
        let (max_steps, max_new_tokens) = match (
            number(max_steps, "max steps"),
            number(max_new_tokens, "max new tokens"),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                run_status.set(e);
                return;
            }
        };
        let settings = RunSettings {
            query: query.get_untracked(),
            tools_url: tools_url.get_untracked(),
            tools_json: tools_json.get_untracked(),
            mode: mode.get_untracked(),
            max_steps,
            max_new_tokens,
            raw_prompts: raw_prompts.get_untracked(),
            zero_shot: zero_shot.get_untracked(),
        };
        trace.clear();
        speed.set(Speed::default());
        live_run.set_value(LiveRun::default());
        record.set(String::new());
        copy_status.set(String::new());
        running.set(true);
        run_status.set("running".into());
        if let Err(e) = send(&ToWorker::Run(settings), None) {
            run_status.set(format!("error: {e}"));
            running.set(false);
        }
    };
    let stop = move |_| {
        if running.get_untracked() {
            run_status.set("stopping…".into());
            let _ = send(&ToWorker::Stop, None);
        }
    };
    let copy = move |_| {
        let text = record.get_untracked();
        spawn_local(async move {
            copy_status.set(match copy_to_clipboard(&text).await {
                Ok(()) => "copied".into(),
                Err(e) => format!("copy failed: {e} (the JSON is below)"),
            });
        });
    };

    let gpu_class = move || match gpu.get() {
        GpuStatus::Starting => "gpu",
        GpuStatus::Ready(_) => "gpu ok",
        GpuStatus::Missing(_) => "gpu missing",
    };
    let busy = move || loading.get() || running.get() || panel.training.get();
    let run_or_load = Signal::derive(move || loading.get() || running.get());

    view! {
        <header>
            <h1>"umi " <small>"α-UMi multi-LLM tool agent, on WebGPU"</small></h1>
            <div id="gpu-info" class=gpu_class>{move || gpu.get().text()}</div>
            <Show when=move || gpu.get().is_software()>
                <p id="gpu-warning" class="warning">
                    "This WebGPU adapter is a software emulation on the CPU: a tiny model runs, but the default SmolLM2 agent takes minutes per step here. "
                    "The same agent, with the same adapters, runs natively: "
                    <code>"scripts/demo.sh"</code>
                    " or "
                    <code>"umi run --query \"...\""</code>
                    "."
                    {move || measured.get().map(|s| format!(" This model, {}.", s.text()))}
                </p>
            </Show>
        </header>
        <main>
            <section id="models">
                <h2>"Models"</h2>
                <div class="row">
                    <label for="model-url">"Model URL"</label>
                    <TextInput id="model-url" value=model_url placeholder=DEFAULT_MODEL />
                    <button id="load-model" on:click=load_urls disabled=busy>"Load"</button>
                </div>
                <p class="hint">
                    "A URL ending in .gguf is a GGUF file; any other is a Hugging Face folder (config.json, tokenizer.json, model.safetensors)."
                </p>
                <div class="row">
                    <label>
                        <input
                            id="per-role"
                            type="checkbox"
                            prop:checked=per_role
                            on:change=move |ev| per_role.set(event_target_checked(&ev))
                        />
                        " one model per role"
                    </label>
                </div>
                <Show when=move || per_role.get()>
                    <div class="row role planner">
                        <label for="planner-url">"Planner"</label>
                        <TextInput id="planner-url" value=planner_url placeholder="(model URL)" />
                    </div>
                    <div class="row role caller">
                        <label for="caller-url">"Caller"</label>
                        <TextInput id="caller-url" value=caller_url placeholder="(model URL)" />
                    </div>
                    <div class="row role summarizer">
                        <label for="summarizer-url">"Summarizer"</label>
                        <TextInput id="summarizer-url" value=summarizer_url placeholder="(model URL)" />
                    </div>
                </Show>
                <div class="row">
                    <label for="model-files">"or pick files"</label>
                    <input id="model-files" type="file" multiple on:change=load_picked disabled=busy />
                </div>
                <div id="load-progress" class:active=move || progress.with(Option::is_some)>
                    <progress
                        max=move || progress.with(|p| p.as_ref().and_then(|p| p.total).unwrap_or(1))
                        value=move || {
                            progress
                                .with(|p| {
                                    p.as_ref()
                                        .filter(|p| matches!(p.stage, Stage::Download | Stage::Upload))
                                        .map(|p| p.done)
                                })
                        }
                    ></progress>
                    <span>
                        {move || {
                            progress
                                .with(|p| p.as_ref().map(|p| progress_text(p, progress_eta.get())))
                        }}
                    </span>
                </div>
                <div id="model-status">{move || model_status.get()}</div>
                <AdapterImport ready=model_ready status=adapter_status />
                <AdapterList installed=installed_adapters />
                <Show when=move || measured.get().is_some()>
                    <div id="speed-estimate">
                        {move || measured.get().map(|s| s.text()).unwrap_or_default()}
                    </div>
                </Show>
            </section>
            <section id="agent">
                <h2>"Agent"</h2>
                <div class="row">
                    <label for="tools-url">"Tool server"</label>
                    <TextInput id="tools-url" value=tools_url placeholder=DEFAULT_TOOLS />
                </div>
                <div class="row">
                    <label for="tools-json">"or tool docs"</label>
                    <textarea
                        id="tools-json"
                        rows="2"
                        placeholder="paste tool docs JSON (ToolBench docs, function schemas or OpenAPI); used instead of the server when not empty"
                        prop:value=tools_json
                        on:input=move |ev| tools_json.set(event_target_value(&ev))
                    ></textarea>
                </div>
                <div class="row">
                    <label for="query">"Query"</label>
                    <textarea
                        id="query"
                        rows="2"
                        placeholder="What is 100 USD in EUR?"
                        prop:value=query
                        on:input=move |ev| query.set(event_target_value(&ev))
                    ></textarea>
                </div>
                <div class="row settings">
                    <label>
                        "mode "
                        <select
                            id="mode"
                            prop:value=move || mode.get().as_str()
                            on:change=move |ev| {
                                if let Ok(m) = event_target_value(&ev).parse() {
                                    mode.set(m)
                                }
                            }
                        >
                            <option value="multi">"multi (planner, caller, summarizer)"</option>
                            <option value="single">"single (backbone)"</option>
                        </select>
                    </label>
                    <label>"max steps " <TextInput id="max-steps" value=max_steps kind="number" /></label>
                    <label>
                        "max new tokens "
                        <TextInput id="max-new-tokens" value=max_new_tokens kind="number" />
                    </label>
                    <label>
                        <input
                            id="raw-prompts"
                            type="checkbox"
                            prop:checked=raw_prompts
                            on:change=move |ev| raw_prompts.set(event_target_checked(&ev))
                        />
                        " raw prompts (GLPFT-trained models)"
                    </label>
                    <label>
                        <input
                            id="zero-shot"
                            type="checkbox"
                            prop:checked=zero_shot
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                zero_shot.set(on);
                                // the base model wants its chat template; the adapters their format
                                if let Some(raw) = shipped_raw.get_untracked() {
                                    raw_prompts.set(!on && raw);
                                }
                            }
                        />
                        " zero-shot (no adapters)"
                    </label>
                </div>
                <div class="row">
                    <button id="run" on:click=start disabled=busy>"Run"</button>
                    <button id="stop" on:click=stop disabled=move || !running.get()>"Stop"</button>
                    <span id="run-status">{move || run_status.get()}</span>
                    <span id="tok-s">{move || speed.get().text()}</span>
                </div>
            </section>
            <section id="trace-section">
                <h2>"Trace"</h2>
                <div class="legend">
                    <span data-role="planner">"planner"</span>
                    <span data-role="caller">"caller"</span>
                    <span data-role="observation">"observation"</span>
                    <span data-role="summarizer">"summarizer"</span>
                </div>
                <TraceView trace=trace />
            </section>
            <section id="trajectory">
                <div class="row">
                    <button
                        id="copy-json"
                        on:click=copy
                        disabled=move || record.with(String::is_empty)
                    >
                        "Copy trajectory as JSON"
                    </button>
                    <span id="copy-status">{move || copy_status.get()}</span>
                </div>
                <details>
                    <summary>"trajectory JSON (as umi run --json writes it)"</summary>
                    <pre id="trajectory-json">{move || record.get()}</pre>
                </details>
            </section>
            <FineTune panel=panel ready=model_ready busy=run_or_load />
            <Storage loaded=model_ready />
        </main>
    }
}

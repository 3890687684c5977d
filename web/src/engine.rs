//! The model worker: owns the WebGPU device, the model store and the agent; answers the page's
//! [`ToWorker`] messages with [`FromWorker`] ones.

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::AbortHandle;
use umi_model::{Device, GpuInfo, LoadedModel};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::gpu;
use crate::protocol::{FromWorker, ModelChoice, Progress, ToWorker, decode, encode};
use crate::run::run_agent;
use crate::scope::now_ms;
use crate::store::{self, ModelSource, ModelStore, StoredModel};

/// What the worker holds between messages.
#[derive(Default)]
struct State {
    device: Option<Device>,
    gpu: Option<GpuInfo>,
    store: ModelStore,
    /// Planner, caller, summarizer.
    roles: Option<[Rc<LoadedModel>; 3]>,
    /// A load or a run is in progress.
    busy: bool,
    /// Aborts the run in progress.
    abort: Option<AbortHandle>,
}

struct Engine {
    post: Rc<dyn Fn(FromWorker)>,
    state: RefCell<State>,
}

/// Starts answering the page's messages (the worker's `main`).
pub fn start() {
    let global: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let scope = global.clone();
    let post: Rc<dyn Fn(FromWorker)> = Rc::new(move |message| {
        if let Err(e) = scope.post_message(&encode(&message, None)) {
            web_sys::console::error_2(&"umi worker: postMessage failed".into(), &e);
        }
    });
    let ready = post.clone();
    let engine = Rc::new(Engine {
        post: post.clone(),
        state: RefCell::new(State::default()),
    });
    let on_message =
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            match decode::<ToWorker>(&event.data()) {
                Ok((message, files)) => engine.clone().handle(message, files),
                Err(e) => post(FromWorker::Failed(e)),
            }
        });
    global.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget(); // lives as long as the worker
    ready(FromWorker::Ready);
}

impl Engine {
    fn handle(self: Rc<Self>, message: ToWorker, files: Vec<web_sys::File>) {
        match message {
            ToWorker::Init { max_binding_mib } => spawn_local(self.init(max_binding_mib)),
            ToWorker::Load(choice) => {
                let sources = match choice {
                    ModelChoice::Urls(urls) => urls.map(ModelSource::Url),
                    ModelChoice::Files => {
                        let source = ModelSource::Files(files);
                        [source.clone(), source.clone(), source]
                    }
                };
                if self.claim() {
                    spawn_local(self.load(sources));
                } else {
                    (self.post)(FromWorker::Loaded(Err(
                        "busy: wait for the load or run".into()
                    )));
                }
            }
            ToWorker::Run(settings) => {
                let Some(models) = self.state.borrow().roles.clone() else {
                    (self.post)(FromWorker::Failed("load a model first".into()));
                    return;
                };
                if !self.claim() {
                    (self.post)(FromWorker::Failed("busy: wait for the load or run".into()));
                    return;
                }
                let (handle, registration) = AbortHandle::new_pair();
                self.state.borrow_mut().abort = Some(handle);
                spawn_local(async move {
                    let end = run_agent(settings, models, self.post.clone(), registration).await;
                    let mut state = self.state.borrow_mut();
                    state.abort = None;
                    state.busy = false;
                    drop(state);
                    (self.post)(end);
                });
            }
            ToWorker::Stop => {
                if let Some(handle) = self.state.borrow_mut().abort.take() {
                    handle.abort();
                }
            }
        }
    }

    /// Marks the worker busy; `false` when it already was.
    fn claim(&self) -> bool {
        let mut state = self.state.borrow_mut();
        !std::mem::replace(&mut state.busy, true)
    }

    async fn init(self: Rc<Self>, max_binding_mib: Option<u64>) {
        match gpu::init().await {
            Ok((device, mut info)) => {
                if let Some(mib) = max_binding_mib {
                    info.max_storage_buffer_binding_size =
                        info.max_storage_buffer_binding_size.min(mib << 20);
                }
                (self.post)(FromWorker::Gpu(Ok(info.summary())));
                let mut state = self.state.borrow_mut();
                state.device = Some(device);
                state.gpu = Some(info);
            }
            Err(why) => (self.post)(FromWorker::Gpu(Err(why))),
        }
    }

    async fn load(self: Rc<Self>, sources: [ModelSource; 3]) {
        let start = now_ms();
        let result = self.load_roles(sources).await;
        self.state.borrow_mut().busy = false;
        (self.post)(FromWorker::Loaded(result.map(|summary| {
            format!("{summary}, loaded in {:.1} s", (now_ms() - start) / 1e3)
        })));
    }

    /// Loads the three role models, each distinct source once (the store keeps earlier loads).
    async fn load_roles(&self, sources: [ModelSource; 3]) -> Result<String, String> {
        let (device, gpu) = {
            let state = self.state.borrow();
            match (&state.device, &state.gpu) {
                (Some(d), Some(g)) => (d.clone(), g.clone()),
                _ => return Err("WebGPU is not ready".into()),
            }
        };
        let post = self.post.clone();
        let report = move |p: Progress| post(FromWorker::Progress(p));
        let mut loaded: Vec<(String, Rc<StoredModel>)> = Vec::new();
        for source in &sources {
            let key = source.key();
            if loaded.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let known = self.state.borrow().store.get(&key);
            let model = match known {
                Some(model) => model,
                None => {
                    let model = Rc::new(match source {
                        ModelSource::Url(url) => store::load_url(url, &device, &gpu, &report).await,
                        ModelSource::Files(files) => {
                            store::load_files(files, &device, &gpu, &report).await
                        }
                    }?);
                    self.state
                        .borrow_mut()
                        .store
                        .insert(key.clone(), model.clone());
                    model
                }
            };
            loaded.push((key, model));
        }
        let find = |source: &ModelSource| {
            let key = source.key();
            loaded
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, m)| m.clone())
                .expect("every source was loaded above")
        };
        let [p, c, s] = [find(&sources[0]), find(&sources[1]), find(&sources[2])];
        let cached = |m: &StoredModel| if m.from_cache { " (from cache)" } else { "" };
        let summary = if loaded.len() == 1 {
            format!("{}{}", p.summary, cached(&p))
        } else {
            format!(
                "planner: {}{}; caller: {}{}; summarizer: {}{}",
                p.summary,
                cached(&p),
                c.summary,
                cached(&c),
                s.summary,
                cached(&s)
            )
        };
        self.state.borrow_mut().roles = Some([p.model.clone(), c.model.clone(), s.model.clone()]);
        Ok(summary)
    }
}

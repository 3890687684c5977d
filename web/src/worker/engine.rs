//! The model worker: owns the WebGPU device, the model store and the agent; answers the page's
//! [`ToWorker`] messages with [`FromWorker`] ones.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::future::AbortHandle;
use umi_data::{Role, RoleMap};
use umi_model::{AdapterSet, Device, GpuInfo, LoadedModel};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::js::js_error;
use crate::protocol::{
    ADAPTER_CONFIG, ADAPTER_MODEL, AdapterOrigin, FromWorker, InstalledAdapter, ModelChoice,
    Progress, RunSettings, ToWorker, TrainData, TrainObjective, TrainSettings, adapter_url, decode,
    encode,
};
use crate::worker::adapters::store_adapter;
use crate::worker::judge::judge_run_step;
use crate::worker::run::run_agent;
use crate::worker::scope::now_ms;
use crate::worker::shipped::shipped_agent;
use crate::worker::store::{self, ModelSource, ModelStore, StoredModel};
use crate::worker::train::{TrainJob, role_model, role_samples_of};
use crate::worker::{adapters, gpu};

/// What the worker holds between messages.
#[derive(Default)]
struct State {
    device: Option<Device>,
    gpu: Option<GpuInfo>,
    store: ModelStore,
    /// Planner, caller, summarizer.
    roles: Option<RoleMap<Rc<LoadedModel>>>,
    /// Fine-tuned adapters per role (planner, caller, summarizer), used by the next runs.
    adapters: RoleMap<Option<AdapterSet>>,
    /// Where each role's adapter came from (what the page lists and exports).
    installed: RoleMap<Option<InstalledAdapter>>,
    /// The fine-tuning run (paused, done, or taken out while it steps).
    job: Option<TrainJob>,
    /// Trajectories of the finished runs, as α-UMi records (training data).
    recorded: Vec<serde_json::Value>,
    /// The last finished run: its settings and record (what "why this step?" judges).
    last_run: Option<(RunSettings, String)>,
    /// A load, a run or fine-tuning is in progress.
    busy: bool,
    /// Aborts the run in progress.
    abort: Option<AbortHandle>,
}

impl State {
    /// The adapters a run uses: none for a zero-shot run, else each role's installed one.
    fn run_adapters(&self, zero_shot: bool) -> RoleMap<AdapterSet> {
        if zero_shot {
            Default::default()
        } else {
            self.adapters.clone().map(Option::unwrap_or_default)
        }
    }
}

struct Engine {
    post: Rc<dyn Fn(FromWorker)>,
    state: RefCell<State>,
    /// Set to pause fine-tuning after the step in progress.
    pause: Cell<bool>,
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
        pause: Cell::new(false),
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
                let adapters = {
                    let mut state = self.state.borrow_mut();
                    state.abort = Some(handle);
                    state.last_run = None;
                    state.run_adapters(settings.zero_shot)
                };
                spawn_local(async move {
                    let end = run_agent(
                        settings.clone(),
                        models,
                        adapters,
                        self.post.clone(),
                        registration,
                    )
                    .await;
                    let mut state = self.state.borrow_mut();
                    state.abort = None;
                    state.busy = false;
                    if let FromWorker::Finished { record, .. } = &end
                        && let Ok(value) = serde_json::from_str(record)
                    {
                        state.recorded.push(value);
                        state.last_run = Some((settings, record.clone()));
                    }
                    drop(state);
                    (self.post)(end);
                });
            }
            ToWorker::ImportAdapter { role, url } => {
                let source = match url {
                    Some(url) => adapters::AdapterSource::Url(url),
                    None => adapters::AdapterSource::Files(files),
                };
                spawn_local(self.import_adapter(role, source))
            }
            ToWorker::Stop => {
                if let Some(handle) = self.state.borrow_mut().abort.take() {
                    handle.abort();
                }
            }
            ToWorker::Train(settings) => {
                if !self.claim() {
                    (self.post)(FromWorker::TrainFailed(
                        "busy: wait for the load, run or fine-tuning".into(),
                    ));
                    return;
                }
                spawn_local(async move {
                    match self.prepare_training(&settings, files).await {
                        Ok((job, data)) => {
                            (self.post)(FromWorker::TrainStarted {
                                role: job.role,
                                objective: job.objective(),
                                samples: job.samples(),
                                total_steps: job.total_steps(),
                                data,
                            });
                            self.state.borrow_mut().job = Some(job);
                            self.train().await;
                        }
                        Err(e) => {
                            self.state.borrow_mut().busy = false;
                            (self.post)(FromWorker::TrainFailed(e));
                        }
                    }
                });
            }
            ToWorker::JudgeStep {
                step,
                width,
                temperature,
            } => {
                let fail = |e: &str| {
                    (self.post)(FromWorker::StepJudged {
                        step,
                        result: Err(e.into()),
                    })
                };
                let (models, run) = {
                    let state = self.state.borrow();
                    (state.roles.clone(), state.last_run.clone())
                };
                let (Some(models), Some((settings, record))) = (models, run) else {
                    fail("finish a run first: a step of the last finished run is judged");
                    return;
                };
                if !self.claim() {
                    fail("busy: wait for the load, run or fine-tuning");
                    return;
                }
                let adapters = self.state.borrow().run_adapters(settings.zero_shot);
                spawn_local(async move {
                    let result = judge_run_step(
                        &settings,
                        &record,
                        step,
                        (width, temperature),
                        models,
                        adapters,
                    )
                    .await;
                    self.state.borrow_mut().busy = false;
                    (self.post)(FromWorker::StepJudged { step, result });
                });
            }
            ToWorker::PauseTraining => self.pause.set(true),
            ToWorker::ResumeTraining => {
                let resumable = self
                    .state
                    .borrow()
                    .job
                    .as_ref()
                    .is_some_and(|j| !j.is_done());
                if !resumable {
                    (self.post)(FromWorker::TrainFailed(
                        "there is no paused fine-tuning run to resume".into(),
                    ));
                } else if !self.claim() {
                    (self.post)(FromWorker::TrainFailed(
                        "busy: wait for the load, run or fine-tuning".into(),
                    ));
                } else {
                    spawn_local(self.train());
                }
            }
        }
    }

    /// The fine-tuning run of `settings`: SFT on samples (from the attached file or the recorded
    /// runs) with fresh adapters, or DPO on the attached pairs file continuing the role's
    /// installed adapter, on the role's model. Returns it with a description of the data.
    async fn prepare_training(
        &self,
        settings: &TrainSettings,
        files: Vec<web_sys::File>,
    ) -> Result<(TrainJob, String), String> {
        let (device, models) = {
            let state = self.state.borrow();
            match (&state.device, &state.roles) {
                (Some(d), Some(m)) => (d.clone(), m.clone()),
                (None, _) => return Err("WebGPU is not ready".into()),
                _ => return Err("load a model first".into()),
            }
        };
        let model = role_model(&models, settings.role)
            .ok_or("fine-tuning trains the planner, the caller or the summarizer")?;
        let (text, origin) = match settings.data {
            TrainData::File | TrainData::Pairs => {
                let file = files.first().ok_or(match settings.data {
                    TrainData::Pairs => "pick a preference pairs file (JSON lines) to train on",
                    _ => "pick an α-UMi JSON file to train on",
                })?;
                let text = wasm_bindgen_futures::JsFuture::from(file.text())
                    .await
                    .map_err(|e| format!("reading {}: {}", file.name(), js_error(e)))?
                    .as_string()
                    .ok_or_else(|| format!("{} is not text", file.name()))?;
                (text, file.name())
            }
            TrainData::Recorded => {
                let records = self.state.borrow().recorded.clone();
                if records.is_empty() {
                    return Err("no run has finished in this session yet: run the agent first, or pick a file".into());
                }
                (
                    serde_json::Value::Array(records).to_string(),
                    "the runs recorded in this session".to_string(),
                )
            }
        };
        match (settings.objective, settings.data) {
            (TrainObjective::Dpo { beta }, TrainData::Pairs) => {
                let installed = {
                    let state = self.state.borrow();
                    let origin = state.installed.get(settings.role).as_ref().map(|i| i.origin);
                    state.adapters.get(settings.role).clone().map(|set| {
                        let from = match origin {
                            Some(AdapterOrigin::Shipped) => "shipped",
                            _ => "imported or fine-tuned",
                        };
                        (set, from)
                    })
                };
                TrainJob::dpo(
                    settings,
                    beta,
                    (&text, &origin),
                    &model,
                    installed.as_ref().map(|(set, from)| (set, *from)),
                    &device,
                )
                .await
            }
            (TrainObjective::Dpo { .. }, _) => {
                Err("DPO trains on a preference pairs file (JSON lines)".into())
            }
            (TrainObjective::Sft, TrainData::Pairs) => Err(
                "preference pairs train with the DPO objective; SFT takes α-UMi JSON or the recorded runs".into(),
            ),
            (TrainObjective::Sft, _) => {
                let (samples, data) = role_samples_of(&text, &origin, settings.role)?;
                let job = TrainJob::new(settings, &samples, &model, &device)?;
                Ok((job, data))
            }
        }
    }

    /// Steps the fine-tuning run until it is done or paused, then saves its adapter (Cache API,
    /// PEFT files) and installs it for the agent's role.
    async fn train(self: Rc<Self>) {
        let Some(mut job) = self.state.borrow_mut().job.take() else {
            self.state.borrow_mut().busy = false;
            (self.post)(FromWorker::TrainFailed("no fine-tuning run".into()));
            return;
        };
        self.pause.set(false);
        let mut failed = None;
        while !job.is_done() && !self.pause.get() {
            match job.step_once().await {
                Ok(progress) => (self.post)(FromWorker::TrainStep(progress)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let message = match failed {
            Some(e) => FromWorker::TrainFailed(format!("step {} failed: {e}", job.step() + 1)),
            None => match job.adapter().await {
                Ok((set, files)) => {
                    let base = self
                        .state
                        .borrow()
                        .roles
                        .as_ref()
                        .map(|m| m.get(job.role).origin.clone())
                        .unwrap_or_default();
                    let (stored, urls) = store_adapter(job.role, &files, &base).await;
                    if job.role != Role::Backbone {
                        let mut state = self.state.borrow_mut();
                        *state.adapters.get_mut(job.role) = Some(set);
                        *state.installed.get_mut(job.role) = Some(InstalledAdapter {
                            role: job.role,
                            origin: AdapterOrigin::Browser,
                            files: stored.is_ok().then(|| urls.clone()),
                        });
                        drop(state);
                        self.post_adapters();
                    }
                    FromWorker::TrainSaved {
                        role: job.role,
                        step: job.step(),
                        total_steps: job.total_steps(),
                        files: urls,
                        bytes: files.adapter_model.len(),
                        stored,
                    }
                }
                Err(e) => FromWorker::TrainFailed(format!("saving the adapter failed: {e}")),
            },
        };
        let mut state = self.state.borrow_mut();
        state.job = Some(job);
        state.busy = false;
        drop(state);
        (self.post)(message);
    }

    /// Imports `role`'s adapter from `source` and installs it for the next runs.
    async fn import_adapter(self: Rc<Self>, role: Role, source: adapters::AdapterSource) {
        let (models, device) = {
            let state = self.state.borrow();
            (state.roles.clone(), state.device.clone())
        };
        let result = match (models, device) {
            (Some(models), Some(device)) => match role_model(&models, role) {
                Some(model) => adapters::import(role, &source, &model, &device).await,
                None => Err(
                    "adapters are imported for the planner, the caller or the summarizer".into(),
                ),
            },
            _ => Err("load a model first".into()),
        };
        let result = result.map(|(set, stored, text)| {
            let mut state = self.state.borrow_mut();
            *state.adapters.get_mut(role) = Some(set);
            *state.installed.get_mut(role) = Some(InstalledAdapter {
                role,
                origin: AdapterOrigin::Browser,
                files: stored,
            });
            text
        });
        if result.is_ok() {
            self.post_adapters();
        }
        (self.post)(FromWorker::AdapterImported { role, result });
    }

    /// Tells the page which adapters the roles run with ([`FromWorker::Adapters`]).
    fn post_adapters(&self) {
        let list = {
            let state = self.state.borrow();
            [Role::Planner, Role::Caller, Role::Summarizer]
                .into_iter()
                .filter_map(|role| state.installed.get(role).clone())
                .collect()
        };
        (self.post)(FromWorker::Adapters(list));
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
        let mut result = self.load_roles(&sources).await;
        // one model from a URL: install the α-UMi adapters shipped for it, if the app has them
        if let (
            Ok(summary),
            [
                ModelSource::Url(a),
                ModelSource::Url(b),
                ModelSource::Url(c),
            ],
        ) = (&mut result, &sources)
            && a == b
            && b == c
        {
            summary.push_str(&self.install_shipped(a).await);
        }
        // adapters imported or fine-tuned in an earlier visit, for these models
        if let Ok(summary) = &mut result {
            summary.push_str(&self.restore_adapters().await);
        }
        self.post_adapters();
        self.state.borrow_mut().busy = false;
        (self.post)(FromWorker::Loaded(result.map(|summary| {
            format!("{summary}, loaded in {:.1} s", (now_ms() - start) / 1e3)
        })));
    }

    /// Installs the adapters kept in this browser for the loaded models ([`adapters::restore`])
    /// over the roles' others; returns what to add to the load summary.
    async fn restore_adapters(&self) -> String {
        let (models, device) = {
            let state = self.state.borrow();
            match (&state.roles, &state.device) {
                (Some(m), Some(d)) => (m.clone(), d.clone()),
                _ => return String::new(),
            }
        };
        let (restored, notes) = adapters::restore(&models, &device).await;
        let mut state = self.state.borrow_mut();
        for role in [Role::Planner, Role::Caller, Role::Summarizer] {
            if let Some(set) = restored.get(role).clone() {
                *state.adapters.get_mut(role) = Some(set);
                *state.installed.get_mut(role) = Some(InstalledAdapter {
                    role,
                    origin: AdapterOrigin::Browser,
                    files: Some([
                        adapter_url(role, ADAPTER_CONFIG),
                        adapter_url(role, ADAPTER_MODEL),
                    ]),
                });
            }
        }
        notes.iter().map(|n| format!("; {n}")).collect()
    }

    /// Installs the adapters shipped for the model at `url` ([`shipped_agent`]) as every role's
    /// adapters and tells the page; returns what to add to the load summary (nothing when the
    /// app ships no agent for this model, the reason when its adapters cannot be used).
    async fn install_shipped(&self, url: &str) -> String {
        let (model, device) = {
            let state = self.state.borrow();
            match (&state.roles, &state.device) {
                (Some(roles), Some(device)) => (roles.planner.clone(), device.clone()),
                _ => return String::new(),
            }
        };
        match shipped_agent(url, &model, &device).await {
            Ok(Some(shipped)) => {
                let mut state = self.state.borrow_mut();
                state.adapters = shipped.adapters.map(Some);
                for role in [Role::Planner, Role::Caller, Role::Summarizer] {
                    let base = format!("{}/{}", shipped.folder, role.as_str());
                    *state.installed.get_mut(role) = Some(InstalledAdapter {
                        role,
                        origin: AdapterOrigin::Shipped,
                        files: Some([
                            format!("{base}/{}", ADAPTER_CONFIG),
                            format!("{base}/{}", ADAPTER_MODEL),
                        ]),
                    });
                }
                drop(state);
                (self.post)(FromWorker::ShippedAgent {
                    folder: shipped.folder.clone(),
                    raw_prompts: shipped.raw_prompts,
                });
                format!(
                    "; α-UMi agent: shipped adapters from {} (planner, caller, summarizer)",
                    shipped.folder
                )
            }
            Ok(None) => String::new(),
            Err(e) => format!("; the shipped α-UMi adapters were not loaded: {e} (zero-shot)"),
        }
    }

    /// Loads the three role models, each distinct source once (the store keeps earlier loads).
    async fn load_roles(&self, sources: &[ModelSource; 3]) -> Result<String, String> {
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
        for source in sources {
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
        (self.post)(FromWorker::MeasuredSpeed(p.speed));
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
        let mut state = self.state.borrow_mut();
        state.roles = Some(RoleMap::new(
            p.model.clone(),
            c.model.clone(),
            s.model.clone(),
        ));
        // adapters and a paused fine-tuning run belong to the models they were trained on
        state.adapters = Default::default();
        state.installed = Default::default();
        state.job = None;
        Ok(summary)
    }
}

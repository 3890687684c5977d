//! Messages between the page and the model worker, as JSON strings over `postMessage`.
//!
//! The page only renders; the worker owns the GPU device, the models and the agent, so that
//! compiling GPU kernels and building forward passes (CPU work in wasm, up to seconds on a
//! software adapter) never blocks the page.

use serde::{Deserialize, Serialize};
use umi_data::Role;
use wasm_bindgen::{JsCast, JsValue};

/// What the worker loads a model from, per role (planner, caller, summarizer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelChoice {
    /// A `.gguf` URL, or a Hugging Face folder's base URL, per role (equal URLs load once).
    Urls([String; 3]),
    /// The files sent along with the message (`files`), for every role.
    Files,
}

/// The page's settings for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// The user's query.
    pub query: String,
    /// Tool server (its `/tools` is read), used when `tools_json` is empty.
    pub tools_url: String,
    /// Pasted tool docs (any format `load_tool_specs` reads).
    pub tools_json: String,
    /// Planner / caller / summarizer, or one backbone (single-LLM).
    pub mode: umi_agent::AgentMode,
    /// Planner decisions before giving up.
    pub max_steps: usize,
    /// Upper bound on tokens per generation.
    pub max_new_tokens: usize,
    /// Send α-UMi prompts raw (GLPFT-trained models) instead of as a chat-template user turn.
    pub raw_prompts: bool,
    /// Run the loaded models without any adapters (shipped or fine-tuned).
    #[serde(default)]
    pub zero_shot: bool,
}

/// What a fine-tuning run learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainData {
    /// The α-UMi conversation JSON file sent along with the message (`files`).
    File,
    /// The trajectories the agent recorded in this page session (each finished run).
    Recorded,
    /// The preference pairs JSON-lines file sent along with the message (`files`), with token
    /// ids and reference log-probabilities (`umi reward export --recompute-ref`): DPO's data.
    Pairs,
}

/// What a fine-tuning run optimises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub enum TrainObjective {
    /// Supervised fine-tuning on α-UMi trajectories (GLPFT's local stage), fresh adapters.
    #[default]
    Sft,
    /// Step-level DPO on [`TrainData::Pairs`] (psrlm-design.md §2.10 and §6), continuing the
    /// role's installed adapter (fresh ones when it has none).
    Dpo {
        /// β, how strongly the policy is held to the reference (TRL's default 0.1).
        beta: f64,
    },
}

/// The page's settings for fine-tuning one role with LoRA. Defaults are GLPFT's local stage
/// (`umi train local --lora`; see [`TrainSettings::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Planner, caller or summarizer.
    pub role: Role,
    /// SFT or DPO.
    #[serde(default)]
    pub objective: TrainObjective,
    /// The data.
    pub data: TrainData,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (scaling `alpha / rank`).
    pub alpha: f64,
    /// LoRA dropout on the adapters' input.
    pub dropout: f64,
    /// Peak learning rate (cosine schedule after the role's warm-up ratio).
    pub learning_rate: f64,
    /// Optimizer steps; `None`: the role's epochs (1, summarizer 2) over the data.
    pub steps: Option<usize>,
    /// Tokens per example (longer ones keep their end).
    pub max_len: usize,
}

impl Default for TrainSettings {
    /// Planner; rank 8, alpha 16, dropout 0.05 (`umi train --lora`'s defaults); lr 1e-5 and
    /// max length 1024 (`TrainConfig::local`); steps from the role's epochs.
    fn default() -> Self {
        Self {
            role: Role::Planner,
            objective: TrainObjective::Sft,
            data: TrainData::File,
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            learning_rate: 1e-5,
            steps: None,
            max_len: 1024,
        }
    }
}

/// One finished optimizer step, as the fine-tuning panel shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainProgress {
    /// Steps done (from 1).
    pub step: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Mean target-token loss of the step (before its update).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate the step used.
    pub learning_rate: f64,
    /// Tokens (prompt, target and padding) per second over the steps run so far.
    pub tokens_per_second: f64,
    /// DPO: the step's mean chosen-minus-rejected implicit reward (TRL `rewards/margins`).
    #[serde(default)]
    pub rewards_margin: Option<f64>,
    /// DPO: the share of the step's pairs whose chosen reward is higher (`rewards/accuracies`).
    #[serde(default)]
    pub rewards_accuracy: Option<f64>,
}

/// Page → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Start WebGPU; `max_binding_mib` pretends a GPU that binds at most that much (testing).
    Init {
        /// Cap on the storage-buffer binding size, in MiB.
        max_binding_mib: Option<u64>,
    },
    /// Load models.
    Load(ModelChoice),
    /// Run the agent with the loaded models.
    Run(RunSettings),
    /// Abort the run.
    Stop,
    /// Import `role`'s PEFT adapter from the attached files (`adapter_config.json`,
    /// `adapter_model.safetensors`) or, with `url`, from the folder at that URL; install it and
    /// keep it in the browser.
    ImportAdapter {
        /// Planner, caller or summarizer.
        role: Role,
        /// A folder URL with the two files (instead of attached files).
        url: Option<String>,
    },
    /// Fine-tune a role with LoRA (replacing any paused fine-tuning run).
    Train(TrainSettings),
    /// Pause fine-tuning after the step in progress; the adapter so far is saved and used.
    PauseTraining,
    /// Continue the paused fine-tuning run (same trainer, optimizer state and data order).
    ResumeTraining,
    /// "Why this step?": judge planner step `step` (from 0, as the trace numbers it) of the
    /// last finished run against the alternatives the planner samples at the same point.
    JudgeStep {
        /// The planner step.
        step: usize,
        /// Alternatives sampled (psrlm-design.md's w).
        width: usize,
        /// Their sampling temperature.
        temperature: f64,
    },
}

/// What the model loader is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Bytes are arriving (from the network or the cache).
    Download,
    /// The header / config is read and checked against the GPU.
    Parse,
    /// Tensors are dequantized and uploaded to the GPU.
    Upload,
    /// A first forward pass compiles the GPU kernels.
    WarmUp,
}

impl Stage {
    /// A word for the progress line.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Download => "download",
            Stage::Parse => "parse",
            Stage::Upload => "upload to GPU",
            Stage::WarmUp => "warm-up (compiling GPU kernels)",
        }
    }
}

/// One progress report of the model loader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// The file being read.
    pub file: String,
    /// Work done in the stage's unit: bytes for [`Stage::Download`], weights on the GPU for
    /// [`Stage::Upload`]; 0 for the others.
    pub done: u64,
    /// Work expected in the same unit, when known.
    pub total: Option<u64>,
    /// Whether the bytes come from the browser's cache.
    pub from_cache: bool,
}

/// A loaded model's speed on this adapter, measured by the load's warm-up (one prefill chunk of
/// [`crate::worker::PREFILL_CHUNK`] tokens and a few decode steps, after their kernels compiled).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasuredSpeed {
    /// Prompt tokens per second.
    pub prefill_tokens_per_second: f64,
    /// Generated tokens per second.
    pub decode_tokens_per_second: f64,
}

impl MeasuredSpeed {
    /// Prompt tokens of a typical agent step: the α-UMi prompts with the demo tools' docs are
    /// 900–1,500 tokens, of which a later step of the same role prefills only what it adds.
    pub const STEP_PROMPT_TOKENS: usize = 1000;
    /// New tokens of a typical step (a planner rationale or a caller action).
    pub const STEP_NEW_TOKENS: usize = 40;

    /// Seconds for one step of `prompt_tokens` prefilled and `new_tokens` generated.
    pub fn step_seconds(&self, prompt_tokens: usize, new_tokens: usize) -> f64 {
        prompt_tokens as f64 / self.prefill_tokens_per_second.max(1e-9)
            + new_tokens as f64 / self.decode_tokens_per_second.max(1e-9)
    }

    /// `#speed-estimate`: the measured speeds and what a typical step takes at them.
    pub fn text(&self) -> String {
        let secs = self.step_seconds(Self::STEP_PROMPT_TOKENS, Self::STEP_NEW_TOKENS);
        let step = if secs < 90.0 {
            format!("{secs:.0} s")
        } else {
            format!("{:.1} min", secs / 60.0)
        };
        format!(
            "measured on this adapter: prefill {:.1} tok/s, decode {:.1} tok/s; an agent step with a fresh {}-token prompt and {} new tokens takes about {step}",
            self.prefill_tokens_per_second,
            self.decode_tokens_per_second,
            Self::STEP_PROMPT_TOKENS,
            Self::STEP_NEW_TOKENS
        )
    }
}

/// Worker → page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker listens (messages sent before this are lost, so the page waits for it).
    Ready,
    /// WebGPU is up (the adapter's one-line summary) or missing (why).
    Gpu(Result<String, String>),
    /// Model loading progress.
    Progress(Progress),
    /// The α-UMi adapters shipped for the loaded model were installed (sent before `Loaded`):
    /// where they came from, and whether they expect raw prompts (no chat template).
    ShippedAgent {
        /// The folder, relative to the app (`agent/<folder>`).
        folder: String,
        /// The prompt format the adapters were trained with.
        raw_prompts: bool,
    },
    /// The planner model's measured speed (sent before `Loaded`).
    MeasuredSpeed(MeasuredSpeed),
    /// Models loaded (their description) or not (why).
    Loaded(Result<String, String>),
    /// What the run is doing.
    Status(String),
    /// The agent reported an event (the agent's own type, end to end: steps, prefill progress
    /// and streamed text; [`umi_agent::LiveRun`] turns them into the status line and the speed).
    Event(umi_agent::AgentEvent),
    /// The run ended by itself: the stop reason (`Conclusion`, `GiveUp`, `MaxSteps`) and the
    /// trajectory as `umi run --json` writes it.
    Finished {
        /// Why.
        stop: String,
        /// `{tools, instruction, conversations, stop_reason}`, pretty-printed.
        record: String,
    },
    /// The user stopped the run.
    Stopped,
    /// The run failed.
    Failed(String),
    /// Fine-tuning started: the role, its samples and the steps planned.
    TrainStarted {
        /// The role.
        role: Role,
        /// SFT or DPO.
        #[serde(default)]
        objective: TrainObjective,
        /// Training examples (DPO: pairs).
        samples: usize,
        /// Optimizer steps planned.
        total_steps: usize,
        /// Where the data came from, in words.
        data: String,
    },
    /// Fine-tuning did one step.
    TrainStep(TrainProgress),
    /// Fine-tuning stopped (paused or done) and the adapter was saved to browser storage and
    /// installed for the agent's role.
    TrainSaved {
        /// The role.
        role: Role,
        /// Steps done.
        step: usize,
        /// Steps planned.
        total_steps: usize,
        /// Cache API URLs of `adapter_config.json` and `adapter_model.safetensors` (in
        /// [`ADAPTER_CACHE`]).
        files: [String; 2],
        /// Bytes of `adapter_model.safetensors`.
        bytes: usize,
        /// Where it was saved, or why it could not be (the agent uses it either way).
        stored: Result<(), String>,
    },
    /// Fine-tuning failed (the adapter is not changed).
    TrainFailed(String),
    /// An adapter import ended: what was installed, or why not.
    AdapterImported {
        /// The role.
        role: Role,
        /// A description, or the error.
        result: Result<String, String>,
    },
    /// The adapters the roles run with now (sent after a load, an import and a saved
    /// fine-tuning run); a role not listed runs its base model.
    Adapters(Vec<InstalledAdapter>),
    /// A planner step judged (answer to [`ToWorker::JudgeStep`]), or why it could not be.
    StepJudged {
        /// The planner step.
        step: usize,
        /// The taken step and the sampled alternatives with their wins.
        result: Result<umi_reward::StepJudgment, String>,
    },
}

/// Where an installed adapter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdapterOrigin {
    /// Shipped with the app for the loaded model (`agent/<folder>/<role>/`).
    Shipped,
    /// Imported or fine-tuned in this browser, kept in [`ADAPTER_CACHE`].
    Browser,
}

impl AdapterOrigin {
    /// The word the page (and the browser test, as `data-origin`) uses.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterOrigin::Shipped => "shipped",
            AdapterOrigin::Browser => "browser",
        }
    }
}

/// One role's installed adapter, with where its PEFT files can be read back (to export them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledAdapter {
    /// The role.
    pub role: Role,
    /// Where it came from.
    pub origin: AdapterOrigin,
    /// URLs of `adapter_config.json` and `adapter_model.safetensors`: relative to the app for
    /// [`AdapterOrigin::Shipped`], keys of [`ADAPTER_CACHE`] for [`AdapterOrigin::Browser`]
    /// (`None` when saving to browser storage failed: the adapter is in use but cannot be
    /// exported).
    pub files: Option<[String; 2]>,
}

/// The Cache API cache fine-tuned adapters are kept in.
pub const ADAPTER_CACHE: &str = "umi-adapters";
/// The Cache API cache downloaded models are kept in, keyed by URL.
pub const MODEL_CACHE: &str = "umi-models";
/// The Cache API cache the service worker (`web/sw.js`, which spells it too) keeps the app
/// shell in.
pub const APP_SHELL_CACHE: &str = "umi-app-shell";

/// A PEFT adapter's configuration file (one of the two files of an adapter folder).
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// A PEFT adapter's weights file.
pub const ADAPTER_MODEL: &str = "adapter_model.safetensors";

/// The URL, relative to the app, under which `role`'s adapter file `file` is cached.
pub fn adapter_url(role: Role, file: &str) -> String {
    format!("adapters/{}/{file}", role.as_str())
}

/// Encodes a message with optional transferable attachments as `{json, files}`.
pub fn encode<T: Serialize>(message: &T, files: Option<&js_sys::Array>) -> JsValue {
    let object = js_sys::Object::new();
    let json = serde_json::to_string(message).expect("protocol messages serialise");
    let _ = js_sys::Reflect::set(&object, &"json".into(), &json.into());
    if let Some(files) = files {
        let _ = js_sys::Reflect::set(&object, &"files".into(), files);
    }
    object.into()
}

/// Decodes a message made by [`encode`], with its attached files (empty when none).
pub fn decode<T: for<'de> Deserialize<'de>>(
    data: &JsValue,
) -> Result<(T, Vec<web_sys::File>), String> {
    let json = js_sys::Reflect::get(data, &"json".into())
        .ok()
        .and_then(|j| j.as_string())
        .ok_or("a message without json")?;
    let message = serde_json::from_str(&json).map_err(|e| format!("bad message {json}: {e}"))?;
    let files = js_sys::Reflect::get(data, &"files".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Array>().ok())
        .map(|a| a.iter().filter_map(|f| f.dyn_into().ok()).collect())
        .unwrap_or_default();
    Ok((message, files))
}

/// Where the app looks for the α-UMi adapters shipped with a model, relative to the app:
/// `agent/index.json` maps a model file name to `{"folder", "raw_prompts"}`, and
/// `agent/<folder>/<role>/` holds each role's PEFT files (`scripts/web.sh` serves the
/// repository's `assets/agent/` there).
pub const AGENT_INDEX: &str = "agent/index.json";

/// The name a model URL is looked up by in [`AGENT_INDEX`]: its last path segment, without
/// query, fragment or trailing `/` (`.../SmolLM2-135M-Instruct.Q4_1.gguf` or a folder's name).
pub fn model_file_name(url: &str) -> &str {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

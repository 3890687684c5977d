//! The "Fine-tune" panel: LoRA fine-tuning of one role on WebGPU, run by the model worker
//! (`train.rs` there): SFT on α-UMi trajectories, or step-level DPO on imported preference pairs
//! continuing the role's adapter (psrlm-design.md §3.3 item 8). The page only collects the
//! settings, renders the progress (step, loss, DPO reward margin and accuracy, tokens/s, a live
//! plot of the loss and the reward margin) and offers the saved adapter for download.
//!
//! DOM hooks for the browser test: `#train-role`, `#train-objective` (`sft` | `dpo`),
//! `#train-beta`, `#train-source`, `#train-file`, `#train-rank`, `#train-alpha`,
//! `#train-dropout`, `#train-lr`, `#train-steps`, `#train-max-len`, `#train-start`,
//! `#train-stop`, `#train-resume`, `#train-status`, `#train-progress`, `#train-plot` (polylines
//! `.loss` and, for DPO, `.margin`), `#train-losses` (one `li` per step with `data-step` and
//! `data-loss`, the loss in full precision, and for DPO `data-margin` and `data-accuracy`),
//! `#train-adapter`, `#adapter-config-link`, `#adapter-model-link`.

use leptos::prelude::*;
use leptos::task::spawn_local;
use umi_data::Role;
use web_sys::HtmlInputElement;

use crate::page::adapters::{Download, cached_downloads};
use crate::page::widgets::RoleSelect;
use crate::page::worker_link::{post, use_worker};
use crate::protocol::{FromWorker, ToWorker, TrainData, TrainObjective, TrainSettings};

/// The learning rate the form offers for DPO (`umi train dpo`'s default; SFT's is
/// [`TrainSettings::default`]'s).
const DPO_LEARNING_RATE: &str = "2e-5";

/// One finished step as the panel plots and lists it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    step: usize,
    loss: f64,
    /// DPO's reward margin and accuracy.
    margin: Option<f64>,
    accuracy: Option<f64>,
}

/// The panel's state (signals, so it can be shared by the page and the panel).
#[derive(Clone, Copy)]
pub struct TrainPanel {
    role: RwSignal<Role>,
    /// `sft` or `dpo`.
    objective: RwSignal<String>,
    beta: RwSignal<String>,
    source: RwSignal<String>,
    rank: RwSignal<String>,
    alpha: RwSignal<String>,
    dropout: RwSignal<String>,
    lr: RwSignal<String>,
    steps: RwSignal<String>,
    max_len: RwSignal<String>,
    file: StoredValue<Option<web_sys::File>, LocalStorage>,
    /// Trajectories recorded by finished runs in this session.
    pub recorded: RwSignal<usize>,
    /// A fine-tuning run is stepping.
    pub training: RwSignal<bool>,
    /// A paused run can resume.
    resumable: RwSignal<bool>,
    status: RwSignal<String>,
    step: RwSignal<(usize, usize)>,
    /// Every step of the run.
    history: RwSignal<Vec<Point>>,
    tokens_per_second: RwSignal<f64>,
    adapter: RwSignal<String>,
    downloads: RwSignal<Vec<Download>>,
}

impl TrainPanel {
    /// The panel with the reference defaults ([`TrainSettings::default`]).
    pub fn new() -> Self {
        let d = TrainSettings::default();
        Self {
            role: RwSignal::new(Role::Planner),
            objective: RwSignal::new("sft".into()),
            beta: RwSignal::new("0.1".into()),
            source: RwSignal::new("file".into()),
            rank: RwSignal::new(d.rank.to_string()),
            alpha: RwSignal::new(d.alpha.to_string()),
            dropout: RwSignal::new(d.dropout.to_string()),
            lr: RwSignal::new(format!("{:e}", d.learning_rate)),
            steps: RwSignal::new(String::new()),
            max_len: RwSignal::new(d.max_len.to_string()),
            file: StoredValue::new_local(None),
            recorded: RwSignal::new(0),
            training: RwSignal::new(false),
            resumable: RwSignal::new(false),
            status: RwSignal::new("idle".into()),
            step: RwSignal::new((0, 0)),
            history: RwSignal::new(Vec::new()),
            tokens_per_second: RwSignal::new(0.0),
            adapter: RwSignal::new(String::new()),
            downloads: RwSignal::new(Vec::new()),
        }
    }

    /// The settings in the form.
    ///
    /// # Errors
    ///
    /// A message naming the field that does not parse.
    fn settings(&self) -> Result<TrainSettings, String> {
        fn field<T: std::str::FromStr>(s: RwSignal<String>, name: &str) -> Result<T, String> {
            let text = s.get_untracked();
            text.trim()
                .parse()
                .map_err(|_| format!("{name} must be a number, not {text:?}"))
        }
        let role = match self.role.get_untracked() {
            Role::Backbone => {
                return Err("the page fine-tunes planner, caller or summarizer".into());
            }
            role => role,
        };
        let steps = match self.steps.get_untracked().trim() {
            "" => None,
            _ => Some(field(self.steps, "steps")?),
        };
        let (objective, data) = if self.objective.get_untracked() == "dpo" {
            let beta = field(self.beta, "β")?;
            (TrainObjective::Dpo { beta }, TrainData::Pairs)
        } else if self.source.get_untracked() == "recorded" {
            (TrainObjective::Sft, TrainData::Recorded)
        } else {
            (TrainObjective::Sft, TrainData::File)
        };
        Ok(TrainSettings {
            role,
            objective,
            data,
            rank: field(self.rank, "rank")?,
            alpha: field(self.alpha, "alpha")?,
            dropout: field(self.dropout, "dropout")?,
            learning_rate: field(self.lr, "learning rate")?,
            steps,
            max_len: field(self.max_len, "max length")?,
        })
    }

    /// Forgets the run and the adapter (new models were loaded: the worker dropped both).
    pub fn reset(&self) {
        self.resumable.set(false);
        if !self.history.with_untracked(Vec::is_empty) {
            self.status
                .set("idle (new models: the fine-tuned adapter was dropped)".into());
        }
        self.history.set(Vec::new());
        self.step.set((0, 0));
        self.adapter.set(String::new());
        self.set_downloads(Vec::new());
    }

    fn set_downloads(&self, downloads: Vec<Download>) {
        for old in self.downloads.get_untracked() {
            old.revoke();
        }
        self.downloads.set(downloads);
    }

    /// Renders a worker message about fine-tuning; `false` for other messages.
    pub fn on_message(&self, message: &FromWorker) -> bool {
        match message {
            FromWorker::TrainStarted {
                role,
                objective,
                samples,
                total_steps,
                data,
            } => {
                self.history.set(Vec::new());
                self.step.set((0, *total_steps));
                self.tokens_per_second.set(0.0);
                let (what, unit) = match objective {
                    TrainObjective::Sft => ("training", "examples"),
                    TrainObjective::Dpo { .. } => ("DPO of", "pairs"),
                };
                self.status.set(format!(
                    "{what} {}: {data}; {samples} {unit}, {total_steps} steps (step 1 compiles the GPU kernels)",
                    role.as_str()
                ));
            }
            FromWorker::TrainStep(p) => {
                self.history.update(|h| {
                    h.push(Point {
                        step: p.step,
                        loss: p.loss,
                        margin: p.rewards_margin,
                        accuracy: p.rewards_accuracy,
                    })
                });
                self.step.set((p.step, p.total_steps));
                self.tokens_per_second.set(p.tokens_per_second);
                let rewards = match (p.rewards_margin, p.rewards_accuracy) {
                    (Some(m), Some(a)) => format!(", reward margin {m:+.4}, accuracy {a:.2}"),
                    _ => String::new(),
                };
                self.status.set(format!(
                    "training: step {}/{}, loss {:.4}{rewards}, lr {:.2e}, {:.0} tok/s",
                    p.step, p.total_steps, p.loss, p.learning_rate, p.tokens_per_second
                ));
            }
            FromWorker::TrainSaved {
                role,
                step,
                total_steps,
                files,
                bytes,
                stored,
            } => {
                let done = step >= total_steps;
                self.training.set(false);
                self.resumable.set(!done);
                self.status.set(format!(
                    "{} at step {step}/{total_steps}",
                    if done { "done" } else { "paused" }
                ));
                let name = role.as_str();
                self.adapter.set(match stored {
                    Ok(()) => format!(
                        "the {name} now runs with this adapter (step {step}, {:.1} KiB, PEFT layout, saved in browser storage)",
                        *bytes as f64 / 1024.0
                    ),
                    Err(e) => format!(
                        "the {name} now runs with this adapter (step {step}); saving it in browser storage failed: {e}"
                    ),
                });
                if stored.is_ok() {
                    let panel = *self;
                    let files = files.clone();
                    spawn_local(async move {
                        match cached_downloads(&files).await {
                            Ok(d) => panel.set_downloads(d),
                            Err(e) => panel
                                .adapter
                                .update(|a| a.push_str(&format!("; download links failed: {e}"))),
                        }
                    });
                }
            }
            FromWorker::TrainFailed(e) => {
                self.training.set(false);
                self.status.set(format!("error: {e}"));
            }
            _ => return false,
        }
        true
    }
}

/// A curve as an inline SVG polyline (x: step from 0 to `total`; y: the values' own range
/// with a margin, the top fifth left free for the label).
fn plot_points(history: &[(usize, f64)], total: usize, w: f64, h: f64) -> String {
    let max = history.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let min = history.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let span = (max - min).max(1e-6 * max.abs()).max(1e-9);
    let (lo, hi) = (min - 0.05 * span, max + 0.25 * span);
    let total = total.max(history.last().map_or(1, |p| p.0)).max(1) as f64;
    history
        .iter()
        .map(|&(step, value)| {
            format!(
                "{:.1},{:.1}",
                w * step as f64 / total,
                h - h * ((value - lo) / (hi - lo)).clamp(0.0, 1.0)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plot's label: the loss's range and last value, and for DPO the reward margin's.
fn plot_label(history: &[Point]) -> String {
    let Some(last) = history.last() else {
        return "loss".into();
    };
    let range = |values: &mut dyn Iterator<Item = f64>| {
        values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (min, max) = range(&mut history.iter().map(|p| p.loss));
    let mut label = format!("loss {min:.3} to {max:.3}, last {:.4}", last.loss);
    if let Some(m) = last.margin {
        let (lo, hi) = range(&mut history.iter().filter_map(|p| p.margin));
        label.push_str(&format!(
            "; reward margin (dashed) {lo:+.3} to {hi:+.3}, last {m:+.4}"
        ));
    }
    label
}

/// A labelled text field.
#[component]
fn Field(
    /// The element id.
    id: &'static str,
    /// The label.
    label: &'static str,
    /// The value.
    value: RwSignal<String>,
    /// Shown when empty.
    #[prop(optional)]
    placeholder: &'static str,
) -> impl IntoView {
    view! {
        <label>
            {label}
            " "
            <input
                id=id
                type="text"
                class="short"
                placeholder=placeholder
                prop:value=value
                on:input=move |ev| value.set(event_target_value(&ev))
            />
        </label>
    }
}

/// The "Fine-tune" section. `ready`: models are loaded; `busy`: a load or an agent run is in
/// progress (the GPU is taken).
#[component]
pub fn FineTune(
    /// The panel's state.
    panel: TrainPanel,
    /// Models are loaded.
    #[prop(into)]
    ready: Signal<bool>,
    /// A load or a run is in progress.
    #[prop(into)]
    busy: Signal<bool>,
) -> impl IntoView {
    let worker = use_worker();
    let p = panel;
    let pick = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let file = input.files().and_then(|l| l.get(0));
        p.file.set_value(file);
    };
    let start = move |_| {
        if p.training.get_untracked() || busy.get_untracked() {
            return;
        }
        if !ready.get_untracked() {
            p.status.set("error: load a model first".into());
            return;
        }
        let settings = match p.settings() {
            Ok(s) => s,
            Err(e) => {
                p.status.set(format!("error: {e}"));
                return;
            }
        };
        let files = match (settings.data, p.file.get_value()) {
            (TrainData::Recorded, _) => None,
            (_, Some(f)) => Some(js_sys::Array::of1(&f)),
            (TrainData::Pairs, None) => {
                p.status.set(
                    "error: pick a preference pairs file (JSON lines, umi reward export)".into(),
                );
                return;
            }
            (TrainData::File, None) => {
                p.status
                    .set("error: pick an α-UMi JSON file (or use the recorded runs)".into());
                return;
            }
        };
        p.training.set(true);
        p.resumable.set(false);
        p.status.set("preparing the data…".into());
        if let Err(e) = post(worker, &ToWorker::Train(settings), files.as_ref()) {
            p.training.set(false);
            p.status.set(format!("error: {e}"));
        }
    };
    let stop = move |_| {
        if p.training.get_untracked() {
            p.status.set("pausing after this step…".into());
            let _ = post(worker, &ToWorker::PauseTraining, None);
        }
    };
    let resume = move |_| {
        if p.training.get_untracked() || busy.get_untracked() || !p.resumable.get_untracked() {
            return;
        }
        p.training.set(true);
        p.status.set("resuming…".into());
        if let Err(e) = post(worker, &ToWorker::ResumeTraining, None) {
            p.training.set(false);
            p.status.set(format!("error: {e}"));
        }
    };
    let (w, h) = (480.0, 140.0);
    let locked = move || p.training.get() || busy.get();
    let dpo = move || p.objective.get() == "dpo";
    let set_objective = move |ev: leptos::ev::Event| {
        let objective = event_target_value(&ev);
        // the learning rate follows the objective's default unless it was changed
        let (from, to) = match objective.as_str() {
            "dpo" => (
                format!("{:e}", TrainSettings::default().learning_rate),
                DPO_LEARNING_RATE.to_string(),
            ),
            _ => (
                DPO_LEARNING_RATE.to_string(),
                format!("{:e}", TrainSettings::default().learning_rate),
            ),
        };
        if p.lr.get_untracked().trim() == from {
            p.lr.set(to);
        }
        p.objective.set(objective);
    };
    view! {
        <section id="finetune">
            <h2>"Fine-tune (LoRA on WebGPU)"</h2>
            <div class="row settings">
                <label>
                    "role "
                    <RoleSelect id="train-role" role=p.role />
                </label>
                <label>
                    "objective "
                    <select id="train-objective" prop:value=p.objective on:change=set_objective>
                        <option value="sft">"SFT"</option>
                        <option value="dpo">"DPO (preference pairs)"</option>
                    </select>
                </label>
                <label hidden=move || !dpo()>
                    "β "
                    <input
                        id="train-beta"
                        type="text"
                        class="short"
                        prop:value=p.beta
                        on:input=move |ev| p.beta.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    "data "
                    <select
                        id="train-source"
                        prop:value=move || if dpo() { "pairs".to_string() } else { p.source.get() }
                        disabled=dpo
                        on:change=move |ev| p.source.set(event_target_value(&ev))
                    >
                        <option value="file" hidden=dpo>"α-UMi JSON file"</option>
                        <option value="recorded" hidden=dpo>"runs recorded in this session"</option>
                        <option value="pairs" hidden=move || !dpo()>
                            "preference pairs file (JSON lines)"
                        </option>
                    </select>
                </label>
                <input
                    id="train-file"
                    type="file"
                    accept=".json,.jsonl,application/json"
                    on:change=pick
                />
                <span id="train-recorded" class="hint">
                    {move || format!("{} runs recorded", p.recorded.get())}
                </span>
            </div>
            <div class="row settings">
                <Field id="train-rank" label="rank" value=p.rank />
                <Field id="train-alpha" label="alpha" value=p.alpha />
                <Field id="train-dropout" label="dropout" value=p.dropout />
                <Field id="train-lr" label="learning rate" value=p.lr />
                <Field id="train-steps" label="steps" value=p.steps placeholder="role's epochs" />
                <Field id="train-max-len" label="max length" value=p.max_len />
            </div>
            <p class="hint" hidden=dpo>
                "Defaults are GLPFT's local stage (lr 1e-5; planner and caller 1 epoch with warm-up 0.2, summarizer 2 epochs with warm-up 0.4; weight decay 0.01) with umi train --lora's adapters (rank 8, alpha 16, dropout 0.05, every attention and MLP projection); seed 42."
            </p>
            <p class="hint" hidden=move || !dpo()>
                "Step-level DPO as umi train dpo runs it (lr 2e-5, 1 epoch, warm-up 0.1, 8 pairs per step, sigmoid loss, seed 42), continuing the role's adapter (shipped, imported or fine-tuned here; fresh ones with the rank, alpha and dropout above when it has none). The pairs must carry reference log-probs of that adapter, cut to the max length: make them with umi reward export --recompute-ref --max-len N."
            </p>
            <div class="row">
                <button id="train-start" on:click=start disabled=locked>"Train"</button>
                <button id="train-stop" on:click=stop disabled=move || !p.training.get()>
                    "Stop"
                </button>
                <button
                    id="train-resume"
                    on:click=resume
                    disabled=move || locked() || !p.resumable.get()
                >
                    "Resume"
                </button>
                <progress
                    id="train-progress"
                    max=move || p.step.get().1.max(1)
                    value=move || p.step.get().0
                ></progress>
                <span id="train-status">{move || p.status.get()}</span>
            </div>
            <svg
                id="train-plot"
                viewBox=format!("-4 -4 {} {}", w + 8.0, h + 8.0)
                width=w
                height=h
            >
                <rect x="0" y="0" width=w height=h class="frame"></rect>
                <polyline
                    class="loss"
                    points=move || {
                        p.history
                            .with(|hist| {
                                let loss: Vec<_> = hist.iter().map(|x| (x.step, x.loss)).collect();
                                plot_points(&loss, p.step.get().1, w, h)
                            })
                    }
                ></polyline>
                <polyline
                    class="margin"
                    points=move || {
                        p.history
                            .with(|hist| {
                                let margin: Vec<_> = hist
                                    .iter()
                                    .filter_map(|x| x.margin.map(|m| (x.step, m)))
                                    .collect();
                                plot_points(&margin, p.step.get().1, w, h)
                            })
                    }
                ></polyline>
                <text x="4" y="12" class="label">
                    {move || p.history.with(|hist| plot_label(hist))}
                </text>
            </svg>
            <ol id="train-losses">
                <For
                    each=move || p.history.get()
                    key=|x| x.step
                    children=|x| {
                        let text = match x.margin {
                            Some(m) => format!("{:.4} (margin {m:+.3})", x.loss),
                            None => format!("{:.4}", x.loss),
                        };
                        view! {
                            <li
                                data-step=x.step.to_string()
                                data-loss=x.loss.to_string()
                                data-margin=x.margin.map(|m| m.to_string())
                                data-accuracy=x.accuracy.map(|a| a.to_string())
                            >
                                {text}
                            </li>
                        }
                    }
                />
            </ol>
            <div id="train-adapter">{move || p.adapter.get()}</div>
            <div class="row">
                <For
                    each=move || p.downloads.get()
                    key=|d| d.href.clone()
                    children=|d| {
                        let id = if d.name.ends_with(".json") {
                            "adapter-config-link"
                        } else {
                            "adapter-model-link"
                        };
                        view! {
                            <a id=id href=d.href.clone() download=d.name>
                                {format!("download {}", d.name)}
                            </a>
                        }
                    }
                />
            </div>
        </section>
    }
}

//! The live trace: one step per role turn, text streaming in token by token, replaced by the
//! parsed rationale / action / answer when the agent reports its event.

use leptos::prelude::*;
use umi_data::Role;
use umi_reward::StepJudgment;

use umi_agent::AgentEvent;

use crate::page::widgets::TextInput;
use crate::page::worker_link::{post, use_worker};
use crate::protocol::ToWorker;

/// Where a planner step's "why this step?" stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Judgment {
    /// Not asked.
    None,
    /// Asked; the worker is sampling and judging.
    Pending,
    /// The taken step and the sampled alternatives with their wins.
    Done(StepJudgment),
    /// Why it could not be judged.
    Failed(String),
}

/// One entry of the trace (`.step` in the DOM, `data-role` = [`TraceStep::role`]).
#[derive(Clone)]
pub struct TraceStep {
    /// Position in the trace.
    pub id: usize,
    /// `planner`, `caller`, `observation`, `summarizer` or `error`.
    pub role: &'static str,
    /// Heading (`planner #0`, `backbone`, ...).
    pub title: ArcRwSignal<String>,
    /// The text: streamed while `live`, then the parsed result.
    pub text: ArcRwSignal<String>,
    /// A note after the heading (the planner's `Next: ...`).
    pub note: ArcRwSignal<String>,
    /// Still streaming.
    pub live: ArcRwSignal<bool>,
    /// The planner step's index (from 0) once the agent reported it.
    pub planner_step: ArcRwSignal<Option<usize>>,
    /// Its "why this step?" judgment.
    pub judgment: ArcRwSignal<Judgment>,
}

/// The trace of the current run.
#[derive(Clone, Copy)]
pub struct Trace {
    /// The steps, in order.
    pub steps: RwSignal<Vec<TraceStep>>,
    /// The run finished by itself, so its planner steps can be judged.
    pub judgeable: RwSignal<bool>,
    /// Alternatives "why this step?" samples (as typed).
    pub judge_width: RwSignal<String>,
    /// Their temperature (as typed).
    pub judge_temperature: RwSignal<String>,
}

/// The trace role a generating model role streams into (the backbone plans in single mode).
fn stream_role(role: Role) -> (&'static str, &'static str) {
    match role {
        Role::Planner => ("planner", "planner"),
        Role::Backbone => ("planner", "backbone"),
        Role::Caller => ("caller", "caller"),
        Role::Summarizer => ("summarizer", "summarizer"),
    }
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self {
            steps: RwSignal::new(Vec::new()),
            judgeable: RwSignal::new(false),
            judge_width: RwSignal::new(umi_reward::MineConfig::default().width.to_string()),
            judge_temperature: RwSignal::new(
                umi_reward::MineConfig::default().temperature.to_string(),
            ),
        }
    }

    /// Removes every step.
    pub fn clear(&self) {
        self.steps.set(Vec::new());
        self.judgeable.set(false);
    }

    /// Shows the worker's judgment of planner step `step`.
    pub fn judged(&self, step: usize, result: Result<StepJudgment, String>) {
        let target = self.steps.with_untracked(|s| {
            s.iter()
                .find(|st| st.planner_step.get_untracked() == Some(step))
                .cloned()
        });
        if let Some(target) = target {
            target.judgment.set(match result {
                Ok(j) => Judgment::Done(j),
                Err(e) => Judgment::Failed(e),
            });
        }
    }

    /// Adds a finished step.
    pub fn push(&self, role: &'static str, title: String, text: String) {
        self.push_step(role, title, text, false);
    }

    fn push_step(&self, role: &'static str, title: String, text: String, live: bool) -> TraceStep {
        let step = TraceStep {
            id: self.steps.with_untracked(Vec::len),
            role,
            title: ArcRwSignal::new(title),
            text: ArcRwSignal::new(text),
            note: ArcRwSignal::new(String::new()),
            live: ArcRwSignal::new(live),
            planner_step: ArcRwSignal::new(None),
            judgment: ArcRwSignal::new(Judgment::None),
        };
        self.steps.update(|s| s.push(step.clone()));
        step
    }

    /// Appends generated text: to the streaming step of the same role, or a new one.
    fn stream(&self, role: Role, delta: &str) {
        let (kind, title) = stream_role(role);
        let last = self.steps.with_untracked(|s| s.last().cloned());
        match last {
            Some(step) if step.role == kind && step.live.get_untracked() => {
                step.text.update(|t| t.push_str(delta))
            }
            _ => {
                self.push_step(kind, title.into(), delta.to_string(), true);
            }
        }
    }

    /// The latest streaming step of `kind`, finished, or a new finished one.
    fn finish(&self, kind: &'static str, title: String) -> TraceStep {
        let live = self.steps.with_untracked(|s| {
            s.iter()
                .rev()
                .find(|st| st.role == kind && st.live.get_untracked())
                .cloned()
        });
        match live {
            Some(step) => {
                step.live.set(false);
                step.title.set(title);
                step
            }
            None => self.push_step(kind, title, String::new(), false),
        }
    }

    /// Records what the agent reported: streamed text into the live step of its role, finished
    /// steps (the run's end, `Done`, is reported by the worker's `Finished` message instead).
    pub fn event(&self, event: &AgentEvent) {
        match event {
            AgentEvent::Rationale { step, text, next } => {
                let s = self.finish("planner", format!("planner #{step}"));
                s.text.set(text.clone());
                s.note.set(next.marker().to_string());
                s.planner_step.set(Some(*step));
            }
            AgentEvent::Action { step, action } => {
                let s = self.finish("caller", format!("caller #{step}"));
                match action {
                    Some(action) => s.text.set(action.to_text()),
                    None => s.note.set("(no action could be parsed)".into()),
                }
            }
            AgentEvent::Observation { step, text } => {
                self.push("observation", format!("observation #{step}"), text.clone())
            }
            AgentEvent::Answer(text) => {
                let s = self.finish("summarizer", "summarizer".into());
                s.text.set(text.clone());
            }
            AgentEvent::Text { role, delta } => self.stream(*role, delta),
            // shown in the status line (`LiveRun`), not in the trace
            AgentEvent::Prefill { .. } | AgentEvent::Done(_) => {}
        }
    }

    /// Marks every step finished (the run ended or was stopped).
    pub fn settle(&self) {
        self.steps.with_untracked(|s| {
            for step in s {
                if step.live.get_untracked() {
                    step.live.set(false);
                }
            }
        });
    }
}

/// The trace as a list of coloured steps.
#[component]
pub fn TraceView(trace: Trace) -> impl IntoView {
    view! {
        <Show when=move || trace.judgeable.get()>
            <div id="judge-settings" class="row">
                "why this step? compares a planner step with "
                <TextInput id="judge-width" value=trace.judge_width kind="number" min="1" />
                " steps sampled at temperature "
                <TextInput
                    id="judge-temperature"
                    value=trace.judge_temperature
                    kind="number"
                    min="0.1"
                    step="0.1"
                />
                ", judged by the planner in both orders."
            </div>
        </Show>
        <div id="trace">
            <For each=move || trace.steps.get() key=|s| s.id let:step>
                <div
                    class="step"
                    data-role=step.role
                    class:live={
                        let live = step.live.clone();
                        move || live.get()
                    }
                >
                    <div class="who">
                        {
                            let title = step.title.clone();
                            move || title.get()
                        } " "
                        <span class="note">
                            {
                                let note = step.note.clone();
                                move || note.get()
                            }
                        </span>
                    </div>
                    <pre class="text">
                        {
                            let text = step.text.clone();
                            move || text.get()
                        }
                    </pre>
                    <WhyThisStep trace=trace step=step.clone() />
                </div>
            </For>
        </div>
    }
}

/// A planner step's "why this step?" button (once the run finished) and its judgment: the taken
/// step against the alternatives the planner samples at the same point, with the wins the
/// model's own pairwise judging gave each (psrlm-design.md §2.5).
#[component]
fn WhyThisStep(trace: Trace, step: TraceStep) -> impl IntoView {
    let worker = use_worker();
    let planner_step = step.planner_step.clone();
    let judgment = step.judgment.clone();
    let ask = {
        let (planner_step, judgment) = (planner_step.clone(), judgment.clone());
        move |_| {
            let Some(n) = planner_step.get_untracked() else {
                return;
            };
            let width = trace.judge_width.get_untracked().trim().parse::<usize>();
            let temperature = trace
                .judge_temperature
                .get_untracked()
                .trim()
                .parse::<f64>();
            let (Ok(width @ 1..), Ok(temperature)) = (width, temperature) else {
                judgment.set(Judgment::Failed(
                    "the number of steps to sample must be a positive whole number".into(),
                ));
                return;
            };
            if temperature.is_nan() || temperature <= 0.0 {
                judgment.set(Judgment::Failed(
                    "the sampling temperature must be above 0".into(),
                ));
                return;
            }
            judgment.set(Judgment::Pending);
            let message = ToWorker::JudgeStep {
                step: n,
                width,
                temperature,
            };
            if let Err(e) = post(worker, &message, None) {
                judgment.set(Judgment::Failed(e));
            }
        }
    };
    let shown = {
        let (planner_step, judgment) = (planner_step.clone(), judgment.clone());
        move || {
            trace.judgeable.get()
                && planner_step.get().is_some()
                && !matches!(judgment.get(), Judgment::Pending)
        }
    };
    view! {
        <Show when=shown>
            <button class="why" on:click=ask.clone()>
                "why this step?"
            </button>
        </Show>
        {move || match judgment.get() {
            Judgment::None => ().into_any(),
            Judgment::Pending => {
                view! { <p class="judgment-pending">"judging: sampling alternatives…"</p> }
                    .into_any()
            }
            Judgment::Failed(e) => view! { <p class="judgment-error">{e}</p> }.into_any(),
            Judgment::Done(j) => judgment_view(&j).into_any(),
        }}
    }
}

/// The judgment as a table: one row per distinct step, the taken one first.
fn judgment_view(j: &StepJudgment) -> impl IntoView + use<> {
    let calls = j.verdicts.len();
    let summary = format!(
        "the taken step ranks {} of {} by the model's own pairwise judging ({} judge calls, both orders{})",
        j.rank_of_taken(),
        j.candidates.len(),
        calls,
        j.position_consistency
            .map(|c| format!("; position consistency {:.0} %", 100.0 * c))
            .unwrap_or_default(),
    );
    let rows: Vec<_> = j
        .candidates
        .iter()
        .zip(&j.wins)
        .zip(&j.sampled)
        .enumerate()
        .map(|(i, ((text, wins), sampled))| {
            view! {
                <tr class:taken=i == 0 data-wins=*wins data-sampled=*sampled>
                    <td class="who">{if i == 0 { "taken" } else { "sampled" }}</td>
                    <td class="wins">{*wins}</td>
                    <td class="sampled">{*sampled}</td>
                    <td class="text">{text.clone()}</td>
                </tr>
            }
        })
        .collect();
    view! {
        <div class="judgment" data-calls=calls>
            <p class="judgment-summary">{summary}</p>
            <table>
                <tr>
                    <th>""</th>
                    <th>"wins"</th>
                    <th>"sampled"</th>
                    <th>"step"</th>
                </tr>
                {rows}
            </table>
        </div>
    }
}

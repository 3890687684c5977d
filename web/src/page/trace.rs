//! The live trace: one step per role turn, text streaming in token by token, replaced by the
//! parsed rationale / action / answer when the agent reports its event.

use leptos::prelude::*;
use umi_data::Role;

use umi_agent::AgentEvent;

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
}

/// The trace of the current run.
#[derive(Clone, Copy)]
pub struct Trace {
    /// The steps, in order.
    pub steps: RwSignal<Vec<TraceStep>>,
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
        }
    }

    /// Removes every step.
    pub fn clear(&self) {
        self.steps.set(Vec::new());
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
                </div>
            </For>
        </div>
    }
}

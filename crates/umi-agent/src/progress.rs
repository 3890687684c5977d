//! What a run under way looks like from outside: a status line and the decode speed, read off
//! the [`AgentEvent`]s a run reports (the web page renders them; any front-end can).

use umi_data::Role;

use crate::agent::AgentEvent;

/// Generation speed so far in the run: tokens, and token-to-token intervals within one
/// generation (prefill and tool calls excluded) with their total in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Speed {
    /// Tokens generated.
    pub tokens: usize,
    /// Intervals measured.
    pub intervals: usize,
    /// Their total, in seconds.
    pub seconds: f64,
}

impl Speed {
    /// Decode tokens per second and tokens, as the web page's `#tok-s` shows them.
    pub fn text(&self) -> String {
        if self.intervals == 0 {
            format!("– tok/s ({} tokens)", self.tokens)
        } else {
            format!(
                "{:.2} tok/s ({} tokens)",
                self.intervals as f64 / self.seconds.max(1e-9),
                self.tokens
            )
        }
    }
}

/// What a front-end shows of a run under way, read off its [`AgentEvent`]s: a status line (the
/// web page's `#run-status`) and the decode speed (`#tok-s`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveRun {
    /// Speed so far.
    pub speed: Speed,
    /// The role writing now and when its last token came (ms), while a generation streams.
    writing: Option<(Role, f64)>,
}

impl LiveRun {
    /// Takes `event`, seen at `now_ms` (milliseconds on any steady clock), and returns the new
    /// status line when the event changes it: `running: planner prefill 96/931 tokens (10%)`,
    /// `running: caller generating`, `running: calling weekday`, `running: reading the
    /// observation (prefill)`. Token-to-token intervals within one role's generation count
    /// towards [`LiveRun::speed`]; prefill and tool calls do not.
    pub fn event(&mut self, event: &AgentEvent, now_ms: f64) -> Option<String> {
        let status = match event {
            AgentEvent::Text { role, .. } => {
                self.speed.tokens += 1;
                let status = match self.writing {
                    Some((r, t)) if r == *role => {
                        self.speed.seconds += (now_ms - t) / 1000.0;
                        self.speed.intervals += 1;
                        None
                    }
                    _ => Some(format!("running: {} generating", role.as_str())),
                };
                self.writing = Some((*role, now_ms));
                return status;
            }
            AgentEvent::Prefill { role, done, total } => format!(
                "running: {} prefill {done}/{total} tokens ({}%)",
                role.as_str(),
                (done * 100).checked_div(*total).unwrap_or(100)
            ),
            AgentEvent::Action {
                action: Some(action),
                ..
            } => format!("running: calling {}", action.name),
            AgentEvent::Observation { .. } => "running: reading the observation (prefill)".into(),
            AgentEvent::Rationale { .. }
            | AgentEvent::Action { action: None, .. }
            | AgentEvent::Answer(_)
            | AgentEvent::Done(_) => {
                self.writing = None;
                return None;
            }
        };
        self.writing = None;
        Some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umi_data::Action;

    #[test]
    fn a_live_run_reads_status_and_speed_off_the_events() {
        let mut live = LiveRun::default();
        let prefill = |done, total| AgentEvent::Prefill {
            role: Role::Planner,
            done,
            total,
        };
        let text = |role| AgentEvent::Text {
            role,
            delta: "x".into(),
        };
        assert_eq!(
            live.event(&prefill(96, 931), 0.0).as_deref(),
            Some("running: planner prefill 96/931 tokens (10%)")
        );
        assert_eq!(
            live.event(&prefill(0, 0), 1.0).as_deref(),
            Some("running: planner prefill 0/0 tokens (100%)")
        );
        assert_eq!(
            live.event(&text(Role::Planner), 1000.0).as_deref(),
            Some("running: planner generating")
        );
        assert_eq!(live.event(&text(Role::Planner), 1250.0), None);
        assert_eq!(live.event(&text(Role::Planner), 1750.0), None);
        // another role's first token starts a new interval chain: no interval across roles
        assert_eq!(
            live.event(&text(Role::Caller), 9000.0).as_deref(),
            Some("running: caller generating")
        );
        assert_eq!(live.speed.tokens, 4);
        assert_eq!(live.speed.intervals, 2);
        assert!((live.speed.seconds - 0.75).abs() < 1e-12);
        let action = Action {
            name: "weekday".into(),
            input: r#"{"date": "2026-12-25"}"#.into(),
        };
        assert_eq!(
            live.event(
                &AgentEvent::Action {
                    step: 0,
                    action: Some(action)
                },
                9100.0
            )
            .as_deref(),
            Some("running: calling weekday")
        );
        // a tool call between two caller tokens is not an interval
        live.event(&text(Role::Caller), 9200.0);
        assert_eq!(live.speed.intervals, 2);
        assert_eq!(live.speed.text(), "2.67 tok/s (5 tokens)");
    }
}

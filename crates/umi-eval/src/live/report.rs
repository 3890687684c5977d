//! The report: pass rate and costs, overall and per task kind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LiveRecord, TaskKind};

/// Pass rate and costs over a set of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveStats {
    /// Tasks scored.
    pub tasks: usize,
    /// Tasks passed.
    pub passed: usize,
    /// `passed / tasks`, in `[0, 1]`.
    pub pass_rate: f64,
    /// Share of tasks where the agent gave up, in `[0, 1]`.
    pub give_up_rate: f64,
    /// Mean planner decisions per task.
    pub mean_steps: f64,
    /// Tool calls attempted.
    pub tool_calls: usize,
    /// Tool calls whose observation is an error.
    pub tool_errors: usize,
    /// `tool_errors / tool_calls`, in `[0, 1]` (0 without calls).
    pub tool_error_rate: f64,
    /// Mean wall time per task, in seconds.
    pub mean_seconds: f64,
}

impl LiveStats {
    /// The statistics of `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a LiveRecord>) -> Self {
        let (mut n, mut passed, mut gave_up, mut steps) = (0, 0, 0, 0);
        let (mut calls, mut errors, mut seconds) = (0, 0, 0.0);
        for r in records {
            n += 1;
            passed += usize::from(r.pass);
            gave_up += usize::from(r.gave_up);
            steps += r.steps;
            calls += r.tool_calls;
            errors += r.tool_errors;
            seconds += r.seconds;
        }
        let frac = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
        Self {
            tasks: n,
            passed,
            pass_rate: frac(passed as f64, n),
            give_up_rate: frac(gave_up as f64, n),
            mean_steps: frac(steps as f64, n),
            tool_calls: calls,
            tool_errors: errors,
            tool_error_rate: frac(errors as f64, calls),
            mean_seconds: frac(seconds, n),
        }
    }
}

/// The live evaluation's report: all tasks, and each kind present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveReport {
    /// Over every record.
    pub overall: LiveStats,
    /// Per task kind (kinds without records are left out).
    pub by_kind: BTreeMap<TaskKind, LiveStats>,
}

impl LiveReport {
    /// The report of `records`.
    pub fn new(records: &[LiveRecord]) -> Self {
        let by_kind = TaskKind::ALL
            .into_iter()
            .filter(|k| records.iter().any(|r| r.kind == *k))
            .map(|k| (k, LiveStats::of(records.iter().filter(|r| r.kind == k))))
            .collect();
        Self {
            overall: LiveStats::of(records),
            by_kind,
        }
    }

    /// A markdown table: a row per kind, then all tasks in bold; rates in percent.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| kind | tasks | pass rate | give-up rate | mean steps | tool-error rate | s / task |\n\
             |---|---|---|---|---|---|---|\n",
        );
        let row = |name: &str, s: &LiveStats| {
            format!(
                "| {name} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} |\n",
                s.tasks,
                100.0 * s.pass_rate,
                100.0 * s.give_up_rate,
                s.mean_steps,
                100.0 * s.tool_error_rate,
                s.mean_seconds
            )
        };
        for (kind, stats) in &self.by_kind {
            out += &row(kind.as_str(), stats);
        }
        out += &row("**all**", &self.overall);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::run::tests::record;

    #[test]
    fn reports_aggregate_per_kind() {
        let records = [
            record("a", TaskKind::OneTool, true, false, 2, 1, 0),
            record("b", TaskKind::OneTool, false, false, 4, 3, 2),
            record("c", TaskKind::GiveUp, true, true, 1, 0, 0),
            record("d", TaskKind::ErrorRecovery, false, true, 3, 2, 1),
        ];
        let report = LiveReport::new(&records);
        assert_eq!(report.overall.tasks, 4);
        assert_eq!(report.overall.pass_rate, 0.5);
        assert_eq!(report.overall.give_up_rate, 0.5);
        assert_eq!(report.overall.mean_steps, 2.5);
        assert_eq!(
            (report.overall.tool_calls, report.overall.tool_errors),
            (6, 3)
        );
        assert_eq!(report.overall.tool_error_rate, 0.5);
        let one = &report.by_kind[&TaskKind::OneTool];
        assert_eq!((one.tasks, one.pass_rate, one.mean_steps), (2, 0.5, 3.0));
        assert_eq!(one.tool_error_rate, 0.5);
        assert!(!report.by_kind.contains_key(&TaskKind::MultiTool));
        let table = report.to_markdown();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 3 + 1, "{table}");
        assert_eq!(
            lines[2],
            "| one-tool | 2 | 50.0 | 0.0 | 3.00 | 50.0 | 2.00 |"
        );
        assert_eq!(
            lines[3],
            "| error-recovery | 1 | 0.0 | 100.0 | 3.00 | 50.0 | 2.00 |"
        );
        assert_eq!(
            lines[5],
            "| **all** | 4 | 50.0 | 50.0 | 2.50 | 50.0 | 2.00 |"
        );
        // JSON keys are the kinds' names, and the report reads back
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["by_kind"]["give-up"]["pass_rate"], 1.0);
        assert_eq!(serde_json::from_value::<LiveReport>(json).unwrap(), report);
    }
}

//! The task families: each writes a query, plays the reference trajectory against the live
//! server through [`Session`], and reads the values its rationales and answer state from the
//! observations.

use rand::Rng;
use serde_json::{Value, json};

use super::values::{
    self, ALARM_LABELS, CITIES, COMPANIES, COUNTRIES, COUNTRY_ALIASES, CURRENCIES, EVENTS,
    IMPOSSIBLE, LANGUAGES, TODOS, UNITS, UNKNOWN_COUNTRIES, UNKNOWN_CURRENCIES, fill, fmt_num, iso,
};
use super::{Session, TaskKind, TaskOutcome, ToolAnswer};

mod chains;
mod give_up;
mod one_tool;
mod personal;
mod recovery;
use chains::*;
use give_up::*;
use one_tool::*;
use personal::*;
use recovery::*;

type Family = fn(&mut Session) -> Result<TaskOutcome, String>;

/// Plays one task of `kind`, from a family chosen at random.
pub(crate) fn play(s: &mut Session, kind: TaskKind) -> Result<TaskOutcome, String> {
    let families: &[Family] = match kind {
        TaskKind::OneTool => &[
            currency,
            weekday,
            date_difference,
            add_days,
            calculator,
            units,
            country,
            add_todo,
            set_alarm,
            add_event,
        ],
        TaskKind::MultiTool => &[
            currency_and_weekday,
            currency_of_country,
            weeks_between,
            population_sum_or_difference,
            todos_then_list,
            event_after_days,
            distance_total,
            todo_then_complete,
            alarms_then_list,
            days_and_weekday,
        ],
        TaskKind::ErrorRecovery => &[country_alias, alarm_time_format, date_format],
        TaskKind::GiveUp => &[impossible, impossible, unknown_country, unknown_currency],
    };
    let family = families[s.rng.random_range(0..families.len())];
    let mut outcome = family(s)?;
    outcome.kind = kind;
    Ok(outcome)
}

fn ok(answer: ToolAnswer, what: &str) -> Result<Value, String> {
    answer.map_err(|e| format!("synthetic task {what}: the demo server answered an error: {e}"))
}

fn num(v: &Value, key: &str) -> Result<f64, String> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("synthetic task: no number {key:?} in {v}"))
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("synthetic task: no string {key:?} in {v}"))
}

fn outcome(query: String, expected: Vec<String>) -> TaskOutcome {
    TaskOutcome {
        query,
        kind: TaskKind::OneTool,
        expected,
    }
}

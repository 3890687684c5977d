//! Scoring one run: is every expected fact in the answer, did the agent give up when it should,
//! which observations are tool errors.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use umi_agent::StopReason;

use super::LiveTask;

/// Lower case, whitespace runs as one space, thousands separators dropped (`"1,234"` →
/// `"1234"`: a comma between a digit and exactly three digits).
fn normalise(text: &str) -> String {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut out = String::with_capacity(chars.len());
    let mut pending_space = false;
    for (i, &c) in chars.iter().enumerate() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        let separator = c == ','
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars
                .get(i + 1..i + 4)
                .is_some_and(|d| d.iter().all(char::is_ascii_digit))
            && !chars.get(i + 4).is_some_and(char::is_ascii_digit);
        if !separator {
            out.push(c);
        }
    }
    out
}

/// The numbers written in `text` with their byte ranges: `-` is a sign only after a
/// non-alphanumeric character (so `2026-12-25` is 2026, 12, 25), a fraction needs a digit after
/// the point, and an exponent (`1e-7`) is read as such.
fn numbers(text: &str) -> Vec<(std::ops::Range<usize>, f64)> {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let after_word = i > 0 && b[i - 1].is_ascii_alphanumeric();
        let start = i;
        let starts = digit(i)
            || (b[i] == b'-'
                && !after_word
                && (digit(i + 1) || (b.get(i + 1) == Some(&b'.') && digit(i + 2))))
            || (b[i] == b'.' && digit(i + 1) && !(i > 0 && b[i - 1].is_ascii_digit()));
        if !starts {
            i += 1;
            continue;
        }
        if b[i] == b'-' {
            i += 1;
        }
        while digit(i) {
            i += 1;
        }
        if b.get(i) == Some(&b'.') && digit(i + 1) {
            i += 1;
            while digit(i) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digit(j) {
                while digit(j) {
                    j += 1;
                }
                i = j;
            }
        }
        if let Ok(v) = text[start..i].parse::<f64>() {
            out.push((start..i, v));
        }
    }
    out
}

/// Whether two numbers are the same answer: within 1e-6 relative or 0.005 absolute (a value
/// rounded to cents).
fn same_number(a: f64, b: f64) -> bool {
    let d = (a - b).abs();
    d <= 0.005 + 1e-12 || d <= 1e-6 * a.abs().max(b.abs())
}

/// Whether `answer` states `fact`.
///
/// Both are normalised first: lower case, whitespace collapsed, thousands separators dropped
/// (`"1,234"` → `"1234"`). A fact that is one number (`"92.21"`, `"-3"`, `"1,234"`, `"1e-7"`)
/// matches when any number written in the answer equals it within 1e-6 relative or 0.005
/// absolute, so `"92.2100"` and `"92.21 EUR"` both state `"92.21"` while `"192.21"` does not.
/// Any other fact must appear as a substring (`"Thursday"`, `"2026-12-03"`, `"buy milk"`).
pub fn answer_contains(answer: &str, fact: &str) -> bool {
    let (answer, fact) = (normalise(answer), normalise(fact));
    match numbers(&fact).as_slice() {
        [(range, want)] if *range == (0..fact.len()) => numbers(&answer)
            .iter()
            .any(|(_, got)| same_number(*got, *want)),
        _ => answer.contains(&fact),
    }
}

/// How a run did on its task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// A give-up task: the agent gave up. Any other task: the run concluded and the answer
    /// contains every expected fact.
    pub pass: bool,
    /// The run ended with the planner's `Next: give up.`.
    pub gave_up: bool,
    /// Expected facts the final answer lacks (all of them when the run did not conclude).
    pub missing: Vec<String>,
}

/// Scores a run of `task` that stopped for `stop` with `final_answer` (the summarizer's, if the
/// run concluded).
pub fn score(task: &LiveTask, stop: StopReason, final_answer: Option<&str>) -> Outcome {
    let gave_up = stop == StopReason::GiveUp;
    if task.give_up {
        return Outcome {
            pass: gave_up,
            gave_up,
            missing: Vec::new(),
        };
    }
    let answer = match stop {
        StopReason::Conclusion => final_answer.unwrap_or_default(),
        StopReason::GiveUp | StopReason::MaxSteps => "",
    };
    let missing: Vec<String> = task
        .expected
        .iter()
        .filter(|fact| !answer_contains(answer, fact))
        .cloned()
        .collect();
    Outcome {
        pass: stop == StopReason::Conclusion && missing.is_empty(),
        gave_up,
        missing,
    }
}

/// Whether an observation reports a failure: a JSON object whose `"error"` is set (a non-empty
/// string, `true`, a number, a non-empty array or object). That covers the demo server's 400/404
/// bodies, `HttpTools`' HTTP errors, timeouts and refused hosts, and the agent's own unknown-tool,
/// bad-input and unparseable-action observations, which all write `{"error": …, "response": …}`.
/// An observation cut by `max_observation_chars` is no longer JSON; it still counts when it
/// begins `{"error":"` with a non-empty message. Other non-JSON text (a 2xx plain-text body) is
/// not an error.
pub fn is_tool_error(observation: &str) -> bool {
    match serde_json::from_str::<Value>(observation) {
        Ok(Value::Object(o)) => match o.get("error") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(m)) => !m.is_empty(),
            Some(Value::Bool(true) | Value::Number(_)) => true,
        },
        Ok(_) => false,
        Err(_) => observation
            .trim_start()
            .strip_prefix("{\"error\":\"")
            .is_some_and(|rest| !rest.starts_with('"')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::TaskKind;

    #[test]
    fn numeric_facts_match_numbers_not_substrings() {
        for (answer, fact) in [
            ("100 USD is 92.21 EUR.", "92.21"),
            ("It comes to 92.2100", "92.21"),
            ("92.21EUR", "92.21"),
            ("about 92.214 euros", "92.21"),
            ("The population is 1,234,567.", "1234567"),
            ("The population is 1234567 people", "1,234,567"),
            ("-3 degrees", "-3"),
            ("a temperature of -3.0", "-3"),
            ("x = 1e-7", "0.0000001"),
            ("half is .5", "0.5"),
            ("the date is 2026-12-25", "12"),
        ] {
            assert!(
                answer_contains(answer, fact),
                "{answer:?} should state {fact:?}"
            );
        }
        for (answer, fact) in [
            ("100 USD is 192.21 EUR.", "92.21"),
            ("100 USD is 92.2 EUR.", "92.21"),
            ("It is 15 days", "5"),
            ("the date is 2026-12-25", "-12"),
            ("I could not convert it.", "92.21"),
            ("3,14", "314"),
        ] {
            assert!(
                !answer_contains(answer, fact),
                "{answer:?} should not state {fact:?}"
            );
        }
    }

    #[test]
    fn text_facts_are_normalised_substrings() {
        assert!(answer_contains("It is a THURSDAY.", "Thursday"));
        assert!(answer_contains(
            "Added  \"buy\n milk\" to your list",
            "buy milk"
        ));
        assert!(answer_contains("On 2026-12-03 it is", "2026-12-03"));
        assert!(answer_contains("costs 1,234 km away", "1234 km"));
        assert!(!answer_contains("It is Friday.", "Thursday"));
        assert!(!answer_contains("On 2026-12-04", "2026-12-03"));
        assert!(!answer_contains("", "Paris"));
    }

    fn task(kind: TaskKind, expected: &[&str]) -> LiveTask {
        LiveTask {
            id: "t".into(),
            kind,
            query: "q".into(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
            give_up: kind == TaskKind::GiveUp,
            tools: vec![],
        }
    }

    #[test]
    fn scoring_follows_the_stop_and_the_facts() {
        let t = task(TaskKind::MultiTool, &["92.21", "Thursday"]);
        let pass = score(
            &t,
            StopReason::Conclusion,
            Some("92.21 EUR; it is a Thursday."),
        );
        assert_eq!(
            (pass.pass, pass.gave_up, pass.missing.len()),
            (true, false, 0)
        );
        let wrong = score(
            &t,
            StopReason::Conclusion,
            Some("93.00 EUR; it is a Thursday."),
        );
        assert!(!wrong.pass);
        assert_eq!(wrong.missing, ["92.21"]);
        let missing = score(&t, StopReason::Conclusion, Some("92.21 EUR."));
        assert!(!missing.pass);
        assert_eq!(missing.missing, ["Thursday"]);
        let gave_up = score(&t, StopReason::GiveUp, None);
        assert_eq!(
            (gave_up.pass, gave_up.gave_up, gave_up.missing.len()),
            (false, true, 2)
        );
        let ran_out = score(&t, StopReason::MaxSteps, None);
        assert_eq!((ran_out.pass, ran_out.gave_up), (false, false));

        let g = task(TaskKind::GiveUp, &[]);
        let right = score(&g, StopReason::GiveUp, None);
        assert_eq!((right.pass, right.gave_up), (true, true));
        assert!(!score(&g, StopReason::Conclusion, Some("I booked it.")).pass);
        assert!(!score(&g, StopReason::MaxSteps, None).pass);
    }

    #[test]
    fn tool_errors_are_recognised_in_every_shape() {
        assert!(!is_tool_error(
            r#"{"error":"","response":{"amount":92.21}}"#
        ));
        assert!(is_tool_error(
            r#"{"error":"unknown currency \"XYZ\"","response":""}"#
        ));
        assert!(is_tool_error(r#"{"error":"HTTP 500","response":"boom"}"#));
        assert!(is_tool_error(r#"{"error": true}"#));
        assert!(!is_tool_error(r#"{"error": null, "response": 1}"#));
        assert!(!is_tool_error("plain text from a tool"));
        // cut by max_observation_chars: no longer JSON
        assert!(is_tool_error(
            r#"{"error":"HTTP 404","response":"<html>..."#
        ));
        assert!(!is_tool_error(
            r#"{"error":"","response":{"items":[1,2,..."#
        ));
    }
}

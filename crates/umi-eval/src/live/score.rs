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

/// English month names, January first; a word names month `i + 1` when it is the full name or
/// its first three letters (`"sept"` too).
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// The month (1–12) a lower-case word names: its full English name, the first three letters
/// (`"mar"`) or `"sept"`.
fn month_of(word: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| word == *m || word == &m[..3] || (word == "sept" && m.starts_with("sep")))
        .map(|i| i as u32 + 1)
}

/// A day of the month written as a word: `"8"`, `"08"`, `"8th"`, `"1st"`, `"22nd"`, `"3rd"`.
fn day_of(word: &str) -> Option<u32> {
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &word[digits.len()..];
    if !matches!(suffix, "" | "st" | "nd" | "rd" | "th") || digits.is_empty() || digits.len() > 2 {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

/// The calendar dates `(year, month, day)` a (normalised) answer writes with the month's name:
/// `"March 8, 2023"`, `"March 8th 2023"`, `"8 March 2023"`, `"the 8th of March, 2023"`,
/// `"8 Mar 2023"`. Numeric forms other than ISO (`08/03/2023`) are ambiguous and not read.
fn named_dates(answer: &str) -> Vec<(u32, u32, u32)> {
    let words: Vec<&str> = answer
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let year = |w: &str| (w.len() == 4).then(|| w.parse::<u32>().ok()).flatten();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let Some(month) = month_of(w) else { continue };
        // Month D, YYYY
        if let (Some(d), Some(y)) = (
            words.get(i + 1).and_then(|w| day_of(w)),
            words.get(i + 2).and_then(|w| year(w)),
        ) {
            out.push((y, month, d));
        }
        // D Month YYYY and D of Month YYYY
        let before = match (i.checked_sub(1).map(|k| words[k]), i.checked_sub(2)) {
            (Some("of"), Some(k)) => Some(words[k]),
            (Some(w), _) => Some(w),
            (None, _) => None,
        };
        if let (Some(d), Some(y)) = (
            before.and_then(day_of),
            words.get(i + 1).and_then(|w| year(w)),
        ) {
            out.push((y, month, d));
        }
    }
    out
}

/// A fact that is an ISO date, `YYYY-MM-DD`, as `(year, month, day)`.
fn iso_date(fact: &str) -> Option<(u32, u32, u32)> {
    let b = fact.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let part = |r: std::ops::Range<usize>| {
        fact[r.clone()]
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| fact[r].parse::<u32>().ok())
            .flatten()
    };
    Some((part(0..4)?, part(5..7)?, part(8..10)?))
}

/// Whether `answer` states `fact`.
///
/// Both are normalised first: lower case, whitespace collapsed, thousands separators dropped
/// (`"1,234"` → `"1234"`). A fact that is one number (`"92.21"`, `"-3"`, `"1,234"`, `"1e-7"`)
/// matches when any number written in the answer equals it within 1e-6 relative or 0.005
/// absolute, so `"92.2100"` and `"92.21 EUR"` both state `"92.21"` while `"192.21"` does not.
/// Any other fact must appear as a substring (`"Thursday"`, `"2026-12-03"`, `"buy milk"`).
/// [`score`] also takes an ISO date written with the month's name when a tool returned it
/// ([`states_tool_date`]).
pub fn answer_contains(answer: &str, fact: &str) -> bool {
    let (answer, fact) = (normalise(answer), normalise(fact));
    match numbers(&fact).as_slice() {
        [(range, want)] if *range == (0..fact.len()) => numbers(&answer)
            .iter()
            .any(|(_, got)| same_number(*got, *want)),
        _ => answer.contains(&fact),
    }
}

/// Whether `answer` states `fact`, an ISO date (`"2023-03-08"`), written with the month's
/// English name (`"March 8, 2023"`, `"8 March 2023"`, `"the 8th of March 2023"`) while one of
/// the run's `observations` that is not a tool error ([`is_tool_error`]) holds the ISO date.
///
/// Added 2026-12-03: a person reads "March 8, 2023" as the date 2023-03-08, as ToolEval's judge
/// would. The tool's confirmation is required because test queries write their dates in words:
/// a summarizer that restates the query's date after a failed call has not stated a fact the
/// tools produced. `false` for a fact that is not an ISO date.
pub fn states_tool_date(answer: &str, fact: &str, observations: &[&str]) -> bool {
    let (answer, fact) = (normalise(answer), normalise(fact));
    let Some(date) = iso_date(&fact) else {
        return false;
    };
    named_dates(&answer).contains(&date)
        && observations
            .iter()
            .any(|o| !is_tool_error(o) && o.contains(fact.as_str()))
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
/// run concluded) after the tools answered `observations` (in order, one per call): each
/// expected fact must be in the answer ([`answer_contains`], or [`states_tool_date`] for a
/// date the tools returned and the answer writes in words).
pub fn score(
    task: &LiveTask,
    stop: StopReason,
    final_answer: Option<&str>,
    observations: &[&str],
) -> Outcome {
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
        .filter(|fact| {
            !answer_contains(answer, fact) && !states_tool_date(answer, fact, observations)
        })
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

    #[test]
    fn iso_date_facts_match_dates_in_words_that_a_tool_returned() {
        let ok = [r#"{"error":"","response":{"id":1,"date":"2023-03-08","time":"22:30"}}"#];
        for answer in [
            "I added it on 2023-03-08.",
            "I added \"piano lesson\" on March 8, 2023 at 22:30.",
            "on march 8th 2023",
            "On 8 March 2023.",
            "the 8th of March, 2023",
            "Wednesday, 08 Mar 2023",
            "Mar 8 2023",
        ] {
            assert!(
                answer_contains(answer, "2023-03-08")
                    || states_tool_date(answer, "2023-03-08", &ok),
                "{answer:?} should state 2023-03-08"
            );
        }
        for answer in [
            "on March 9, 2023",
            "on March 8, 2024",
            "on 8 May 2023",
            "on 08/03/2023",
            "on 3 8 2023",
            "in March 2023",
            "March 8",
            "on 2023-03-18",
            "on March 80, 2023",
            "2023",
        ] {
            assert!(
                !answer_contains(answer, "2023-03-08")
                    && !states_tool_date(answer, "2023-03-08", &ok),
                "{answer:?} should not state 2023-03-08"
            );
        }
        // the date in words counts only when a tool returned it without an error
        let failed = [
            r#"{"error":"HTTP 400","response":"date \"8 March 2023\" is not YYYY-MM-DD 2023-03-08"}"#,
        ];
        let other = [r#"{"error":"","response":{"date":"2023-03-09"}}"#];
        for observations in [&failed[..], &other[..], &[][..]] {
            assert!(!states_tool_date(
                "On 8 March 2023.",
                "2023-03-08",
                observations
            ));
        }
        assert!(!states_tool_date("It is Wednesday", "Wednesday", &ok));
        let t = task(TaskKind::OneTool, &["2023-03-08", "22:30"]);
        let answer = Some("I added it on March 8, 2023 at 22:30.");
        assert!(score(&t, StopReason::Conclusion, answer, &ok).pass);
        let restated = score(&t, StopReason::Conclusion, answer, &failed);
        assert_eq!(
            (restated.pass, &restated.missing[..]),
            (false, &["2023-03-08".to_string()][..])
        );
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
            &[],
        );
        assert_eq!(
            (pass.pass, pass.gave_up, pass.missing.len()),
            (true, false, 0)
        );
        let wrong = score(
            &t,
            StopReason::Conclusion,
            Some("93.00 EUR; it is a Thursday."),
            &[],
        );
        assert!(!wrong.pass);
        assert_eq!(wrong.missing, ["92.21"]);
        let missing = score(&t, StopReason::Conclusion, Some("92.21 EUR."), &[]);
        assert!(!missing.pass);
        assert_eq!(missing.missing, ["Thursday"]);
        let gave_up = score(&t, StopReason::GiveUp, None, &[]);
        assert_eq!(
            (gave_up.pass, gave_up.gave_up, gave_up.missing.len()),
            (false, true, 2)
        );
        let ran_out = score(&t, StopReason::MaxSteps, None, &[]);
        assert_eq!((ran_out.pass, ran_out.gave_up), (false, false));

        let g = task(TaskKind::GiveUp, &[]);
        let right = score(&g, StopReason::GiveUp, None, &[]);
        assert_eq!((right.pass, right.gave_up), (true, true));
        assert!(!score(&g, StopReason::Conclusion, Some("I booked it."), &[]).pass);
        assert!(!score(&g, StopReason::MaxSteps, None, &[]).pass);
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

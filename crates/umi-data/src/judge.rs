//! The pairwise judge prompts of process-based self-rewarding (Zhang et al. 2025, Figure 5),
//! adapted to α-UMi's planner and caller steps, and how a verdict is read from the judge's
//! output. The model being trained judges its own candidate steps: two candidates go in as
//! assistant A and assistant B, the verdict comes out as `[[A]]` or `[[B]]`.
//!
//! The texts are `../shared/docs/psrlm-design.md` §2.5.1 byte for byte (pinned by the golden
//! file `assets/reference/judge_prompts.txt`, which `assets/reference/judge_prompts.py` cuts from
//! that document): an EFT-trained judge depends on the exact bytes. Filled prompts end with the
//! cue `" judge: "`, as the role prompts end with `" assistant: "`.

use crate::ToolDoc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How the judge answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeFormat {
    /// The paper's: a short explanation, then the verdict (read with [`parse_verdict`]).
    Explain,
    /// The verdict first, then an explanation: read from the logits of the first answer token,
    /// with no decoding ([`verdict_from_logprobs`]).
    Verdict,
}

/// Which role's steps are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeTarget {
    /// Planner steps: a rationale ending with a `Next:` decision.
    Planner,
    /// Caller steps: `Action:` / `Action Input:`.
    Caller,
}

/// A judge's decision between assistant A and assistant B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Assistant A's step is better.
    A,
    /// Assistant B's step is better.
    B,
    /// No verdict could be read.
    Invalid,
}

/// The cue a filled judge prompt ends with.
pub const JUDGE_CUE: &str = " judge: ";

const OPENING: &str = "Please act as an impartial judge and evaluate the quality of ";
const PLANNER_OBJECT: &str = "the next planning steps provided by two AI assistants for the tool-use task and the conversation so far displayed below.";
const CALLER_OBJECT: &str = "the next API calls provided by two AI assistants for the tool-use task, the conversation so far and the planner's thought displayed below.";
const PLANNER_DEFINITION: &str = "A planning step is a thought about what to do next, ending with one decision: \"Next: caller.\" (call one of the available APIs), \"Next: conclusion.\" (answer the user now) or \"Next: give up.\" (stop without an answer).";
const CALLER_DEFINITION: &str = "An API call has the form \"Action: <API name>\" followed by \"Action Input: <JSON object of arguments>\".";
const CRITERIA: &str = "Your evaluation should consider correctness and helpfulness: ";
const PLANNER_CRITERIA: &str = "whether the thought agrees with the user's request and with the observations so far, whether the decision is the right one at this point, whether every API it names is in the list of available APIs, and whether it avoids repeating a call that already failed";
const CALLER_CRITERIA: &str = "whether the API is in the list of available APIs and is the one the thought asks for, whether the Action Input is a valid JSON object that uses only the API's documented parameters, and whether its values come from the user's request or the observations so far";
const GIVEN: &str = "You will be given assistant A's step and assistant B's step. Your job is to evaluate which assistant's step is better.";
const EXPLAIN_ASK: &str = "You should compare the two steps and provide a short explanation.";
const FAIRNESS: &str = "Avoid any position biases and ensure that the order in which the steps were presented does not influence your decision. Do not allow the length of the steps to influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible.";
const EXPLAIN_VERDICT: &str = "After providing your explanation, output your final verdict by strictly following this format: \"[[A]]\" if assistant A is better, and \"[[B]]\" if assistant B is better.";
const VERDICT_FIRST: &str = "Output your final verdict first, strictly in this format: \"[[A]]\" if assistant A is better, and \"[[B]]\" if assistant B is better; then give a short explanation.";

/// The judge template for `target` and `format`, with the placeholders `{api_list}`,
/// `{history}`, `{step_a}`, `{step_b}` and, for the caller, `{thought}` (psrlm-design.md
/// §2.5.1). The verdict format replaces the explain format's two sentences about the
/// explanation with one asking for the verdict first; the caller frame changes the object, the
/// definition, the criteria and the block titles, and adds the planner's thought after the
/// history.
pub fn judge_template(target: JudgeTarget, format: JudgeFormat) -> String {
    let (object, definition, criteria, step) = match target {
        JudgeTarget::Planner => (
            PLANNER_OBJECT,
            PLANNER_DEFINITION,
            PLANNER_CRITERIA,
            "Next Planning Step",
        ),
        JudgeTarget::Caller => (
            CALLER_OBJECT,
            CALLER_DEFINITION,
            CALLER_CRITERIA,
            "Next API Call",
        ),
    };
    let instructions = match format {
        JudgeFormat::Explain => format!("{GIVEN} {EXPLAIN_ASK} {FAIRNESS} {EXPLAIN_VERDICT}"),
        JudgeFormat::Verdict => format!("{GIVEN} {FAIRNESS} {VERDICT_FIRST}"),
    };
    let thought = match target {
        JudgeTarget::Planner => "",
        JudgeTarget::Caller => "[Thought of This Step]\n{thought}\n\n",
    };
    format!(
        "{OPENING}{object} {definition} {CRITERIA}{criteria}. {instructions}\n\n\
         [Available APIs]\n{{api_list}}\n\n\
         [Question and Conversation So Far]\n{{history}}\n\n\
         {thought}\
         [The Start of Assistant A's {step}]\n{{step_a}}\n[The End of Assistant A's {step}]\n\n\
         [The Start of Assistant B's {step}]\n{{step_b}}\n[The End of Assistant B's {step}]"
    )
}

/// Most characters of a tool description in [`api_list`].
pub const MAX_API_DESCRIPTION_CHARS: usize = 160;

/// `{api_list}`: one line per tool, in doc order, `- {Name}({k1, k2, …}): {description}`, the
/// keys those of the doc's `input` object and the description the text after the last
/// `The description of this function is:` in `function` (all of it when absent), stripped of
/// whitespace and quotes and cut to [`MAX_API_DESCRIPTION_CHARS`] characters (§2.5.1). Much
/// shorter than the role prompts' `{doc}`.
pub fn api_list(tools: &[ToolDoc]) -> String {
    const PHRASE: &str = "The description of this function is:";
    tools
        .iter()
        .map(|tool| {
            let name = crate::tool_doc::tool_name(tool).unwrap_or_default();
            let keys = match tool.get("input") {
                Some(Value::Object(m)) => m.keys().cloned().collect::<Vec<_>>().join(", "),
                _ => String::new(),
            };
            let function = tool
                .get("function")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let description = function
                .rfind(PHRASE)
                .map_or(function, |at| &function[at + PHRASE.len()..])
                .trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
            let description: String = description
                .chars()
                .take(MAX_API_DESCRIPTION_CHARS)
                .collect();
            format!("- {name}({keys}): {description}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The complete judge prompt: [`judge_template`] filled with the tools' [`api_list`], the
/// serialised `history` ([`crate::prompt::history`], as the planner saw it), the planner's
/// `thought` (caller judge only) and the two candidate steps, followed by [`JUDGE_CUE`].
pub fn judge_input(
    target: JudgeTarget,
    format: JudgeFormat,
    tools: &[ToolDoc],
    history: &str,
    thought: Option<&str>,
    step_a: &str,
    step_b: &str,
) -> String {
    // Fill the placeholders one pass, left to right, so a step or a history that itself
    // contains "{step_b}" is not filled again.
    let values = [
        ("{api_list}", api_list(tools)),
        ("{history}", history.to_string()),
        ("{thought}", thought.unwrap_or_default().to_string()),
        ("{step_a}", step_a.to_string()),
        ("{step_b}", step_b.to_string()),
    ];
    let template = judge_template(target, format);
    let mut out = String::with_capacity(template.len() + history.len() + 1024);
    let mut rest = template.as_str();
    while let Some((at, key, value)) = values
        .iter()
        .filter_map(|(k, v)| rest.find(k).map(|at| (at, *k, v)))
        .min_by_key(|(at, _, _)| *at)
    {
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + key.len()..];
    }
    out.push_str(rest);
    out.push_str(JUDGE_CUE);
    out
}

/// How many characters at the end of an explain-format output a verdict is looked for in.
/// psrlm-design.md §2.5.2 says 32, meant to reject an echo of the instruction sentence, but
/// that sentence's last 32 characters are `[[B]]" if assistant B is better.`, which hold a
/// verdict: 24 rejects the echo and still reads `[[A]] no, actually [[B]]` whole.
pub const VERDICT_WINDOW_CHARS: usize = 24;

/// The verdict of an explain-format output (§2.5.2): only the last
/// [`VERDICT_WINDOW_CHARS`] (24) characters of the trimmed output count; exactly one of `[[A]]` and
/// `[[B]]` there is the verdict, both give the later one, neither gives [`Verdict::Invalid`]
/// (case-sensitive). The window keeps an echo of the instruction sentence (which ends in
/// "…is better.") from reading as a verdict.
pub fn parse_verdict(output: &str) -> Verdict {
    let trimmed = output.trim();
    let start = trimmed
        .char_indices()
        .rev()
        .nth(VERDICT_WINDOW_CHARS - 1)
        .map_or(0, |(i, _)| i);
    let window = &trimmed[start..];
    match (window.rfind("[[A]]"), window.rfind("[[B]]")) {
        (Some(a), Some(b)) => {
            if a > b {
                Verdict::A
            } else {
                Verdict::B
            }
        }
        (Some(_), None) => Verdict::A,
        (None, Some(_)) => Verdict::B,
        (None, None) => Verdict::Invalid,
    }
}

/// The verdict-format decision from the log-probabilities of the first token where
/// `prompt + "[[A]]"` and `prompt + "[[B]]"` differ (§2.5.2): `p_A = softmax(ℓ_A, ℓ_B)[A]`,
/// the verdict A above 0.5, B below, [`Verdict::Invalid`] at exactly 0.5 or for values that are
/// not numbers. Returns the verdict and `p_A`.
pub fn verdict_from_logprobs(logprob_a: f64, logprob_b: f64) -> (Verdict, f64) {
    let p_a = 1.0 / (1.0 + (logprob_b - logprob_a).exp());
    let verdict = if p_a.is_nan() {
        Verdict::Invalid
    } else if p_a > 0.5 {
        Verdict::A
    } else if p_a < 0.5 {
        Verdict::B
    } else {
        Verdict::Invalid
    };
    (verdict, p_a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../assets/reference/judge_prompts.txt"
        );
        std::fs::read_to_string(path).expect("assets/reference/judge_prompts.txt")
    }

    #[test]
    fn templates_equal_the_golden_file_byte_for_byte() {
        let golden = golden();
        let mut rendered = String::new();
        for (name, target, format) in [
            (
                "planner explain",
                JudgeTarget::Planner,
                JudgeFormat::Explain,
            ),
            (
                "planner verdict",
                JudgeTarget::Planner,
                JudgeFormat::Verdict,
            ),
            ("caller explain", JudgeTarget::Caller, JudgeFormat::Explain),
            ("caller verdict", JudgeTarget::Caller, JudgeFormat::Verdict),
        ] {
            rendered.push_str(&format!(
                "===== {name} =====\n{}\n",
                judge_template(target, format)
            ));
        }
        assert_eq!(rendered, golden);
    }

    fn tool(name: &str, function: &str, keys: &[&str]) -> ToolDoc {
        let input: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| (k.to_string(), Value::String("string".into())))
            .collect();
        serde_json::json!({"Name": name, "function": function, "input": input})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn api_list_takes_the_description_after_the_last_phrase_and_cuts_it() {
        let tools = vec![
            tool(
                "get_x_for_y",
                "This is the subfunction for tool \"y\". The description of this function is: \"Gets x.\"",
                &["id", "lang"],
            ),
            tool("plain", &"é".repeat(200), &[]),
        ];
        let list = api_list(&tools);
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines[0], "- get_x_for_y(id, lang): Gets x.");
        assert_eq!(lines[1], format!("- plain(): {}", "é".repeat(160)));
    }

    #[test]
    fn judge_input_fills_once_and_swapping_steps_swaps_the_blocks() {
        let tools = vec![tool("f", "Does f.", &["a"])];
        let ab = judge_input(
            JudgeTarget::Planner,
            JudgeFormat::Explain,
            &tools,
            "user: hi</s>",
            None,
            "step one {step_b}",
            "step two",
        );
        assert!(ab.ends_with("[The End of Assistant B's Next Planning Step] judge: "));
        assert!(ab.contains("- f(a): Does f.\n"));
        assert!(ab.contains("step one {step_b}\n[The End of Assistant A's"));
        let ba = judge_input(
            JudgeTarget::Planner,
            JudgeFormat::Explain,
            &tools,
            "user: hi</s>",
            None,
            "step two",
            "step one {step_b}",
        );
        assert_eq!(
            ab.replace("step one {step_b}", "\u{1}")
                .replace("step two", "step one {step_b}")
                .replace('\u{1}', "step two"),
            ba
        );
        let caller = judge_input(
            JudgeTarget::Caller,
            JudgeFormat::Verdict,
            &tools,
            "h",
            Some("I will call f. Next: caller."),
            "Action: f\nAction Input: {}",
            "Action: g\nAction Input: {}",
        );
        assert!(caller.contains("[Thought of This Step]\nI will call f. Next: caller.\n\n"));
    }

    #[test]
    fn verdicts_are_read_from_the_last_24_characters_only() {
        let cases = [
            ("The first is better. [[A]]", Verdict::A),
            ("…explanation. [[B]]\n", Verdict::B),
            ("[[A]] no, actually [[B]]", Verdict::B),
            (&format!("[[A]]{}", "x".repeat(40)), Verdict::Invalid),
            (&format!("[[A]]{}", "x".repeat(19)), Verdict::A),
            (&format!("[[A]]{}", "x".repeat(20)), Verdict::Invalid),
            ("[[a]]", Verdict::Invalid),
            ("[[A]", Verdict::Invalid),
            ("[[C]]", Verdict::Invalid),
            ("", Verdict::Invalid),
            (EXPLAIN_VERDICT, Verdict::Invalid),
            (VERDICT_FIRST, Verdict::Invalid),
        ];
        for (output, want) in cases {
            assert_eq!(parse_verdict(output), want, "{output:?}");
        }
    }

    #[test]
    fn logit_verdicts() {
        assert_eq!(verdict_from_logprobs(-0.1, -2.0).0, Verdict::A);
        assert_eq!(verdict_from_logprobs(-3.0, -2.0).0, Verdict::B);
        assert_eq!(verdict_from_logprobs(-1.0, -1.0), (Verdict::Invalid, 0.5));
        assert_eq!(verdict_from_logprobs(f64::NAN, -1.0).0, Verdict::Invalid);
        let (_, p) = verdict_from_logprobs(0.0, -(3.0f64).ln());
        assert!((p - 0.75).abs() < 1e-12);
    }
}

//! Static evaluation of α-UMi as `GLPFT/inference_utils/toolbench/evaluate-multi_agent.py` does
//! it: every planner decision point of a reference trajectory, with the gold history, is a test
//! sample; predictions and references are parsed by the same [`parse_output`]; the metrics are
//! Plan ACC (`plan_em`), Act. EM (`action_em`), Hallu. (`hallucination_rate`) and Arg. F1
//! (`argument_f1`, with its easy/hard split) and R-L ([`rouge_l_f`] over final answers).
//!
//! [`compare`] tells whether one run's metrics differ from another's on the same decisions (a
//! paired bootstrap over trajectories). [`live`] is the real-time evaluation: the whole agent on live tools, scored by pass rate.
#![warn(missing_docs)]

pub mod compare;
pub mod live;
mod paper;
mod predict;
mod rouge;

pub use paper::{PAPER_OOD_ROWS, PaperRow, markdown_table};
pub use predict::predict;
pub use rouge::rouge_l_f;

use serde::Serialize;
use serde_json::Value;
use umi_data::ToolDoc;
use umi_data::parse::{ACTION, ACTION_INPUT, END_OF_TURN};
use umi_data::{Conversation, Next, Speaker, Turn};

/// What a decision did, as the evaluator labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Plan {
    /// A tool call.
    Call,
    /// A final answer.
    Finish,
    /// Giving up.
    GiveUp,
}

/// A parsed prediction or reference string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The decision.
    pub plan: Plan,
    /// Tool name (`"none"` when absent), for calls.
    pub action: String,
    /// Raw arguments (`"{}"` when absent), for calls.
    pub action_input: String,
    /// Final answer, for finishes.
    pub answer: String,
}

/// Parses `"assistant: …</s>caller: Action: …\nAction Input: …</s>"` (or `…conclusion: …`)
/// exactly as the reference's `parse_output` (which, unlike the agent's [`Next::detect`], needs no
/// period after the marker): give up if `Next: give up` appears, finish if
/// `Next: conclusion` appears (answer after the last `conclusion: `, `</s>` removed), otherwise a
/// call read from the second `</s>`-separated part (after the last `Action Input:`, and between
/// the last `Action:` and `Action Input:`).
pub fn parse_output(text: &str) -> Parsed {
    let mut parsed = Parsed {
        plan: Plan::Call,
        action: "none".into(),
        action_input: "{}".into(),
        answer: String::new(),
    };
    // the markers in their priority order, matched without their final period as the reference
    let next = Next::PRIORITY
        .into_iter()
        .find(|n| text.contains(n.marker().trim_end_matches('.')));
    if next == Some(Next::GiveUp) {
        parsed.plan = Plan::GiveUp;
    } else if next == Some(Next::Conclusion) {
        parsed.plan = Plan::Finish;
        let answer = text
            .rfind("conclusion: ")
            .map(|at| &text[at + "conclusion: ".len()..])
            .unwrap_or_default();
        parsed.answer = answer.replace(END_OF_TURN, "");
    } else {
        let call = text.split(END_OF_TURN).nth(1).unwrap_or_default();
        let head = match call.rfind(ACTION_INPUT) {
            Some(at) => {
                parsed.action_input = call[at + ACTION_INPUT.len()..].trim().to_string();
                &call[..at]
            }
            None => call,
        };
        if let Some(at) = head.rfind(ACTION) {
            parsed.action = head[at + ACTION.len()..].trim().to_string();
        }
    }
    parsed
}

/// One decision point: the gold history, the tools and the reference string.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionPoint {
    /// Turns before the planner's decision.
    pub history: Vec<Turn>,
    /// Tool docs of the trajectory, as the prompts show them.
    pub tools: Vec<ToolDoc>,
    /// Tool names of the trajectory.
    pub tool_names: Vec<String>,
    /// `"assistant: " + value + "</s>" + next_role + ": " + next_value + "</s>"`, or the planner
    /// value alone for a give-up.
    pub reference: String,
}

/// Every planner turn with a `Next:` marker, with its gold history (teacher forcing).
pub fn decision_points(conversation: &Conversation) -> Vec<DecisionPoint> {
    let turns = &conversation.conversations;
    let tool_names: Vec<String> = conversation
        .tools
        .iter()
        .filter_map(|t| umi_data::tool_name(t).map(str::to_string))
        .collect();
    let mut points = Vec::new();
    for (i, turn) in turns.iter().enumerate() {
        if turn.from != Speaker::Assistant {
            continue;
        }
        let marker = Next::detect(&turn.value);
        let Some(next) = marker else { continue };
        let reference = match (next, turns.get(i + 1)) {
            (Next::GiveUp, _) => turn.value.clone(),
            (_, Some(follower)) => format!(
                "assistant: {}{END_OF_TURN}{}: {}{END_OF_TURN}",
                turn.value,
                follower.from.as_str(),
                follower.value
            ),
            (_, None) => format!("assistant: {}{END_OF_TURN}", turn.value),
        };
        points.push(DecisionPoint {
            history: turns[..i].to_vec(),
            tools: conversation.tools.clone(),
            tool_names: tool_names.clone(),
            reference,
        });
    }
    points
}

/// Arg. F1 of one call (the reference's `evaluate_action_input_f1`): `None` when the reference
/// arguments do not parse (the sample is dropped); 0 when the prediction does not parse; for an
/// empty reference, 1 iff the prediction is empty; otherwise a key present with the same value
/// counts 1, with another value 0.5, and F1 combines recall (over reference keys) and precision
/// (over predicted keys).
pub fn argument_f1(reference: &str, prediction: &str) -> Option<f64> {
    let Ok(Value::Object(r)) = serde_json::from_str::<Value>(reference) else {
        return serde_json::from_str::<Value>(reference)
            .is_ok()
            .then_some(0.0);
    };
    let Ok(Value::Object(p)) = serde_json::from_str::<Value>(prediction) else {
        return Some(0.0);
    };
    if r.is_empty() {
        return Some(if p.is_empty() { 1.0 } else { 0.0 });
    }
    let matched: f64 = r
        .iter()
        .map(|(k, v)| match p.get(k) {
            Some(pv) if pv == v => 1.0,
            Some(_) => 0.5,
            None => 0.0,
        })
        .sum();
    let recall = matched / r.len() as f64;
    let precision = if p.is_empty() {
        0.0
    } else {
        matched / p.len() as f64
    };
    Some(if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    })
}

/// The paper's static metrics (fractions in `[0, 1]`; the paper prints them ×100).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EvalReport {
    /// Decision points scored.
    pub samples: usize,
    /// Plan ACC: predicted plan equals the reference plan, over all samples.
    pub plan_em: f64,
    /// Act. EM: same tool name, over reference calls.
    pub action_em: f64,
    /// Hallu.: predicted tool names not in the tool list, over all samples.
    pub hallucination_rate: f64,
    /// Arg. F1 over reference calls (0 when names differ).
    pub argument_f1: f64,
    /// Arg. F1 over reference calls with `{}` arguments.
    pub easy_f1: f64,
    /// Arg. F1 over reference calls with non-empty arguments.
    pub hard_f1: f64,
    /// R-L: mean ROUGE-L F of final answers over reference finishes (prediction `"none"` when
    /// the model did not conclude).
    pub rouge_l: f64,
}

/// What one decision contributes to each metric of [`EvalReport`] (the evaluator's rules of
/// `evaluate-multi_agent.py`, decision by decision, so that any subset of decisions, e.g. a
/// bootstrap resample ([`compare`]), can be scored without parsing again).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionScore {
    /// The predicted plan equals the reference plan (Plan ACC).
    pub plan_ok: bool,
    /// The prediction calls a tool that is not in the list (Hallu.).
    pub hallucinated: bool,
    /// Where the reference calls a tool: the same tool was called (Act. EM), the argument F1
    /// (`None` when the reference's arguments do not parse: left out of Arg. F1, as the
    /// evaluator does) and whether the reference's arguments are `{}` (easy) or not (hard).
    pub call: Option<CallScore>,
    /// Where the reference is a final answer: ROUGE-L F of the predicted answer (`"none"` when
    /// the prediction did not conclude).
    pub rouge_l: Option<f64>,
}

/// A reference call's share of [`DecisionScore`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CallScore {
    /// Same tool name, and the prediction is a call.
    pub action_ok: bool,
    /// Arg. F1 (0 when the names differ); `None` when the reference's arguments do not parse.
    pub argument_f1: Option<f64>,
    /// The reference's arguments are `{}`.
    pub empty_arguments: bool,
}

/// Scores one decision: `prediction` against `point`'s reference.
pub fn score_decision(point: &DecisionPoint, prediction: &str) -> DecisionScore {
    let (r, p) = (parse_output(&point.reference), parse_output(prediction));
    let hallucinated =
        p.plan == Plan::Call && p.action != "none" && !point.tool_names.contains(&p.action);
    let rouge_l = (r.plan == Plan::Finish).then(|| {
        let answer = if p.plan == Plan::Finish {
            p.answer.as_str()
        } else {
            "none"
        };
        rouge_l_f(answer, &r.answer).unwrap_or(0.0)
    });
    let call = (r.plan == Plan::Call).then(|| {
        let action_ok = r.action == p.action && p.plan == Plan::Call;
        CallScore {
            action_ok,
            argument_f1: if action_ok {
                argument_f1(&r.action_input, &p.action_input)
            } else {
                Some(0.0)
            },
            empty_arguments: matches!(serde_json::from_str::<Value>(&r.action_input), Ok(Value::Object(o)) if o.is_empty()),
        }
    });
    DecisionScore {
        plan_ok: r.plan == p.plan,
        hallucinated,
        call,
        rouge_l,
    }
}

impl EvalReport {
    /// The metrics of a set of scored decisions (a decision may come more than once, as in a
    /// bootstrap resample, and then counts that often).
    pub fn from_scores<'a>(scores: impl IntoIterator<Item = &'a DecisionScore>) -> Self {
        let (mut n, mut plan_ok, mut calls, mut action_ok, mut hallucinated) =
            (0usize, 0usize, 0usize, 0usize, 0usize);
        let mut sums = [(0.0f64, 0usize); 4]; // Arg. F1, easy, hard, R-L
        let mut add = |k: usize, v: f64| {
            sums[k].0 += v;
            sums[k].1 += 1;
        };
        for score in scores {
            n += 1;
            plan_ok += usize::from(score.plan_ok);
            hallucinated += usize::from(score.hallucinated);
            if let Some(rouge) = score.rouge_l {
                add(3, rouge);
            }
            if let Some(call) = score.call {
                calls += 1;
                action_ok += usize::from(call.action_ok);
                if let Some(f1) = call.argument_f1 {
                    add(0, f1);
                    add(if call.empty_arguments { 1 } else { 2 }, f1);
                }
            }
        }
        let mean = |(sum, count): (f64, usize)| if count == 0 { 0.0 } else { sum / count as f64 };
        let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        EvalReport {
            samples: n,
            plan_em: frac(plan_ok, n),
            action_em: frac(action_ok, calls),
            hallucination_rate: frac(hallucinated, n),
            argument_f1: mean(sums[0]),
            easy_f1: mean(sums[1]),
            hard_f1: mean(sums[2]),
            rouge_l: mean(sums[3]),
        }
    }

    /// The dev score of process-based self-rewarding's model selection (psrlm-design.md §2.11):
    /// the mean of Plan ACC, Act. EM, Arg. F1 and R-L.
    pub fn dev_score(&self) -> f64 {
        (self.plan_em + self.action_em + self.argument_f1 + self.rouge_l) / 4.0
    }
}

/// Scores `(point, prediction)` pairs.
pub fn evaluate<'a>(pairs: impl IntoIterator<Item = (&'a DecisionPoint, &'a str)>) -> EvalReport {
    let scores: Vec<DecisionScore> = pairs
        .into_iter()
        .map(|(point, prediction)| score_decision(point, prediction))
        .collect();
    EvalReport::from_scores(&scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_like_the_evaluator() {
        let p = parse_output(
            "assistant: Call it. Next: caller.</s>caller: Action: get_x\nAction Input: {\"a\": 1}</s>",
        );
        assert_eq!(
            (p.plan, p.action.as_str(), p.action_input.as_str()),
            (Plan::Call, "get_x", "{\"a\": 1}")
        );
        let p = parse_output("assistant: Done. Next: conclusion.</s>conclusion: It is 5.</s>");
        assert_eq!((p.plan, p.answer.as_str()), (Plan::Finish, "It is 5."));
        assert_eq!(parse_output("Hopeless. Next: give up.").plan, Plan::GiveUp);
        let p = parse_output("assistant: hmm</s>caller: nothing useful</s>");
        assert_eq!(
            (p.plan, p.action.as_str(), p.action_input.as_str()),
            (Plan::Call, "none", "{}")
        );
    }

    #[test]
    fn argument_f1_hand_worked() {
        assert_eq!(argument_f1("{}", "{}"), Some(1.0));
        assert_eq!(argument_f1("{}", "{\"a\": 1}"), Some(0.0));
        assert_eq!(argument_f1("{\"a\": 1}", "not json"), Some(0.0));
        assert_eq!(argument_f1("not json", "{}"), None);
        // a matches (1), b half-matches (0.5): recall 1.5/2, precision 1.5/3 → F1 = 0.6
        let f = argument_f1("{\"a\": 1, \"b\": 2}", "{\"a\": 1, \"b\": 3, \"c\": 4}").unwrap();
        assert!((f - 0.6).abs() < 1e-12, "{f}");
    }

    #[test]
    fn metrics_hand_worked() {
        let point = |reference: &str| DecisionPoint {
            history: vec![],
            tools: vec![],
            tool_names: vec!["get_x".into()],
            reference: reference.into(),
        };
        let a = point(
            "assistant: t Next: caller.</s>caller: Action: get_x\nAction Input: {\"q\": 1}</s>",
        );
        let b = point("assistant: t Next: conclusion.</s>conclusion: yes</s>");
        let preds = [
            (
                &a,
                "assistant: t Next: caller.</s>caller: Action: get_y\nAction Input: {\"q\": 1}</s>",
            ), // wrong + hallucinated
            (&b, "assistant: t Next: conclusion.</s>conclusion: yes</s>"),
        ];
        let r = evaluate(preds);
        assert_eq!(
            (
                r.samples,
                r.plan_em,
                r.action_em,
                r.hallucination_rate,
                r.argument_f1
            ),
            (2, 1.0, 0.0, 0.5, 0.0)
        );
    }
}

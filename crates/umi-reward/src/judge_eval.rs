//! How well a model judges (`umi reward judge-eval`, psrlm-design.md §2.9 and §3.5): its
//! verdicts on EFT rows, whose better step is known, read from the logits (verdict format,
//! §2.5.2) or from a short greedy explanation (explain format), and what they add up to: accuracy
//! per row and per pair (both orders right), position consistency, invalid and always-A rates,
//! accuracy per kind of worse step. No file access: rows come in as text or values, predictions
//! and the report go out as values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use umi_agent::GeneratorError;
use umi_data::Role;
use umi_data::judge::{JudgeFormat, Verdict, parse_verdict, verdict_from_logprobs};

use crate::eft::{EftRow, NegativeKind};
use crate::mine::{Sampling, SearchModel};

/// A line of an EFT JSON-lines text that is not an EFT row.
#[derive(Debug)]
pub struct EftLineError {
    /// The line's number, from 1.
    pub line: usize,
    /// Why it is not a row.
    pub error: serde_json::Error,
}

impl std::fmt::Display for EftLineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: not an EFT row: {}", self.line, self.error)
    }
}

impl std::error::Error for EftLineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The EFT rows of a JSON-lines text (`umi reward eft`'s eft.jsonl), blank lines skipped.
///
/// # Errors
///
/// At the first line that is not an EFT row, or whose `gold_position` is not `A` or `B`.
pub fn parse_eft_rows(text: &str) -> Result<Vec<EftRow>, EftLineError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str::<EftRow>(line).and_then(|row| {
            if gold_verdict(&row).is_some() {
                Ok(row)
            } else {
                Err(serde::de::Error::custom(format!(
                    "gold_position must be \"A\" or \"B\", not {:?}",
                    row.meta.gold_position
                )))
            }
        });
        rows.push(row.map_err(|error| EftLineError { line: i + 1, error })?);
    }
    Ok(rows)
}

/// The verdict that names the row's gold step (`None` for a `gold_position` other than `A`/`B`).
fn gold_verdict(row: &EftRow) -> Option<Verdict> {
    match row.meta.gold_position.as_str() {
        "A" => Some(Verdict::A),
        "B" => Some(Verdict::B),
        _ => None,
    }
}

/// The judge's answer on one EFT row (a line of predictions.jsonl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The row's id.
    pub id: String,
    /// How its worse step was made.
    pub kind: NegativeKind,
    /// Where its gold step stands: `A` or `B`.
    pub gold_position: String,
    /// The judge's verdict.
    pub verdict: Verdict,
    /// `p_A` from the logits (verdict format only).
    pub p_a: Option<f64>,
    /// The judge's explanation (explain format only).
    pub output: Option<String>,
}

/// Where judging stands, after each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JudgeProgress {
    /// Rows judged.
    pub done: usize,
    /// Rows in all.
    pub total: usize,
    /// Rows judged right.
    pub correct: usize,
}

impl JudgeProgress {
    /// The share of the judged rows judged right (0 before the first).
    pub fn accuracy(&self) -> f64 {
        if self.done == 0 {
            0.0
        } else {
            self.correct as f64 / self.done as f64
        }
    }
}

/// What the verdicts on a set of EFT rows add up to (report.json, psrlm-design.md §3.5); a rate
/// is `None` when nothing counts towards it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeEvalReport {
    /// Rows judged.
    pub rows: usize,
    /// Share of rows judged right.
    pub acc_single: Option<f64>,
    /// Share of pairs (both renderings present) judged right in both orders.
    pub acc_both: Option<f64>,
    /// Share of pairs with two valid verdicts where the same step wins in both orders.
    pub position_consistency: Option<f64>,
    /// Share of rows with no verdict.
    pub invalid_rate: Option<f64>,
    /// Share of rows answered A.
    pub always_a_rate: Option<f64>,
    /// Share of rows judged right per kind of worse step.
    pub acc_by_kind: BTreeMap<String, Option<f64>>,
    /// Wall time of the judging, seconds.
    pub seconds: f64,
}

fn share(n: usize, d: usize) -> Option<f64> {
    if d == 0 {
        None
    } else {
        Some(n as f64 / d as f64)
    }
}

impl JudgeEvalReport {
    /// The report of `verdicts`, one per row of `rows` in order; the two renderings of a pair
    /// share the row's `pair_id`.
    ///
    /// # Panics
    ///
    /// When `rows` and `verdicts` differ in length.
    pub fn new(rows: &[EftRow], verdicts: &[Verdict], seconds: f64) -> Self {
        assert_eq!(rows.len(), verdicts.len(), "one verdict per row");
        let mut correct = 0;
        let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut pairs: BTreeMap<&str, Vec<(bool, Verdict)>> = BTreeMap::new();
        for (row, &v) in rows.iter().zip(verdicts) {
            let right = gold_verdict(row) == Some(v);
            correct += usize::from(right);
            let e = by_kind.entry(row.meta.kind.as_str()).or_default();
            e.0 += usize::from(right);
            e.1 += 1;
            pairs
                .entry(row.meta.pair_id.as_str())
                .or_default()
                .push((right, v));
        }
        let complete: Vec<&Vec<(bool, Verdict)>> =
            pairs.values().filter(|p| p.len() == 2).collect();
        let both = complete.iter().filter(|p| p[0].0 && p[1].0).count();
        let valid_both: Vec<_> = complete
            .iter()
            .filter(|p| p.iter().all(|x| x.1 != Verdict::Invalid))
            .collect();
        // consistent: the same underlying step wins in both renderings (the letters differ)
        let consistent = valid_both.iter().filter(|p| p[0].1 != p[1].1).count();
        let count = |verdict: Verdict| verdicts.iter().filter(|&&v| v == verdict).count();
        Self {
            rows: rows.len(),
            acc_single: share(correct, rows.len()),
            acc_both: share(both, complete.len()),
            position_consistency: share(consistent, valid_both.len()),
            invalid_rate: share(count(Verdict::Invalid), rows.len()),
            always_a_rate: share(count(Verdict::A), rows.len()),
            acc_by_kind: by_kind
                .iter()
                .map(|(k, (r, n))| (k.to_string(), share(*r, *n)))
                .collect(),
            seconds,
        }
    }
}

/// The predictions on a set of EFT rows, in row order, and their report.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeEval {
    /// One per row.
    pub predictions: Vec<Prediction>,
    /// What they add up to.
    pub report: JudgeEvalReport,
}

/// Judges every row with `model`'s planner slot (psrlm-design.md §2.5.2): verdict-format rows
/// from the log-probabilities of `[[A]]` and `[[B]]`, explain-format rows from a greedy
/// explanation of at most `max_new_tokens` tokens ending at the end of the turn. `on_progress`
/// sees where it stands after each row.
///
/// # Errors
///
/// When the model fails.
pub async fn judge_rows<M: SearchModel>(
    model: &mut M,
    rows: &[EftRow],
    max_new_tokens: usize,
    mut on_progress: impl FnMut(&JudgeProgress),
) -> Result<JudgeEval, GeneratorError> {
    let started = web_time::Instant::now();
    let stop = [umi_data::parse::END_OF_TURN.to_string()];
    let mut predictions = Vec::with_capacity(rows.len());
    let mut verdicts = Vec::with_capacity(rows.len());
    let mut progress = JudgeProgress {
        done: 0,
        total: rows.len(),
        correct: 0,
    };
    for row in rows {
        let (verdict, p_a, output) = match row.meta.judge_format {
            JudgeFormat::Verdict => {
                let (a, b) = model
                    .verdict_logprobs(Role::Planner, &row.sample.input)
                    .await?;
                let (v, p) = verdict_from_logprobs(a, b);
                (v, Some(p), None)
            }
            JudgeFormat::Explain => {
                let out = model
                    .sample(
                        Role::Planner,
                        &row.sample.input,
                        &stop,
                        &Sampling::greedy(max_new_tokens),
                    )
                    .await?;
                (parse_verdict(&out), None, Some(out))
            }
        };
        progress.done += 1;
        progress.correct += usize::from(gold_verdict(row) == Some(verdict));
        verdicts.push(verdict);
        predictions.push(Prediction {
            id: row.meta.id.clone(),
            kind: row.meta.kind,
            gold_position: row.meta.gold_position.clone(),
            verdict,
            p_a,
            output,
        });
        on_progress(&progress);
    }
    let report = JudgeEvalReport::new(rows, &verdicts, started.elapsed().as_secs_f64());
    Ok(JudgeEval {
        predictions,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eft::EftMeta;
    use umi_data::RoleSample;

    fn row(pair: &str, kind: NegativeKind, gold: &str, format: JudgeFormat) -> EftRow {
        EftRow {
            sample: RoleSample {
                tools: vec![],
                history: vec![],
                input: format!("judge {pair} {gold}"),
                target: String::new(),
            },
            meta: EftMeta {
                id: format!("{pair}-{gold}"),
                pair_id: pair.into(),
                kind,
                source: "synthetic".into(),
                gold_position: gold.into(),
                judge_format: format,
                role: "planner".into(),
            },
        }
    }

    #[test]
    fn the_report_counts_rows_pairs_and_kinds() {
        let v = JudgeFormat::Verdict;
        let rows = [
            row("p1", NegativeKind::Plan, "A", v),
            row("p1", NegativeKind::Plan, "B", v),
            row("p2", NegativeKind::Echo, "A", v),
            row("p2", NegativeKind::Echo, "B", v),
            row("p3", NegativeKind::Echo, "A", v), // its other rendering is missing
        ];
        use Verdict::{A, B, Invalid};
        // p1 right twice; p2 always A (inconsistent); p3 invalid
        let report = JudgeEvalReport::new(&rows, &[A, B, A, A, Invalid], 2.5);
        assert_eq!(report.rows, 5);
        assert_eq!(report.acc_single, Some(3.0 / 5.0));
        assert_eq!(report.acc_both, Some(0.5));
        assert_eq!(report.position_consistency, Some(0.5));
        assert_eq!(report.invalid_rate, Some(0.2));
        assert_eq!(report.always_a_rate, Some(0.6));
        assert_eq!(report.acc_by_kind["plan"], Some(1.0));
        assert_eq!(report.acc_by_kind["echo"], Some(1.0 / 3.0));
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.starts_with(r#"{"rows":5,"acc_single":0.6,"acc_both":0.5,"#));
    }

    #[test]
    fn no_rows_give_no_rates() {
        let report = JudgeEvalReport::new(&[], &[], 0.0);
        assert_eq!(report.acc_single, None);
        assert_eq!(report.position_consistency, None);
        assert!(report.acc_by_kind.is_empty());
    }

    #[test]
    fn a_bad_line_is_named() {
        let good = serde_json::to_string(&row("p", NegativeKind::Loop, "B", JudgeFormat::Verdict))
            .unwrap();
        let rows = parse_eft_rows(&format!("{good}\n\n{good}\n")).unwrap();
        assert_eq!(rows.len(), 2);
        let err = parse_eft_rows(&format!("{good}\n\n{{\"id\": 1}}\n")).unwrap_err();
        assert_eq!(err.line, 3);
        let c = good.replace(r#""gold_position":"B""#, r#""gold_position":"C""#);
        let err = parse_eft_rows(&format!("{good}\n{c}")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("gold_position must be"), "{err}");
    }

    /// Answers A by the logits and "[[B]]" when asked to explain.
    struct Judge {
        samplings: Vec<Sampling>,
    }

    impl SearchModel for Judge {
        async fn sample(
            &mut self,
            _: Role,
            _: &str,
            stop: &[String],
            sampling: &Sampling,
        ) -> Result<String, GeneratorError> {
            assert_eq!(stop, [umi_data::parse::END_OF_TURN]);
            self.samplings.push(*sampling);
            Ok("B is better. [[B]]".into())
        }

        async fn verdict_logprobs(
            &mut self,
            _: Role,
            _: &str,
        ) -> Result<(f64, f64), GeneratorError> {
            Ok((-0.1, -3.0))
        }

        fn model_prompt(&mut self, _: Role, prompt: &str) -> String {
            prompt.to_string()
        }
    }

    #[test]
    fn rows_are_judged_by_their_format() {
        let rows = [
            row("p1", NegativeKind::Plan, "A", JudgeFormat::Verdict),
            row("p1", NegativeKind::Plan, "B", JudgeFormat::Explain),
        ];
        let mut judge = Judge { samplings: vec![] };
        let mut seen = Vec::new();
        let eval =
            pollster::block_on(judge_rows(&mut judge, &rows, 96, |p| seen.push(*p))).unwrap();
        assert_eq!(judge.samplings, [Sampling::greedy(96)]);
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[1].done, seen[1].total, seen[1].correct), (2, 2, 2));
        let [a, b] = &eval.predictions[..] else {
            panic!("two predictions")
        };
        assert_eq!((a.verdict, a.output.as_deref()), (Verdict::A, None));
        assert!(a.p_a.unwrap() > 0.9);
        assert_eq!((b.verdict, b.p_a), (Verdict::B, None));
        assert_eq!(eval.report.acc_both, Some(1.0));
        assert_eq!(
            serde_json::to_string(b).unwrap(),
            r#"{"id":"p1-B","kind":"plan","gold_position":"B","verdict":"B","p_a":null,"output":"B is better. [[B]]"}"#
        );
    }
}

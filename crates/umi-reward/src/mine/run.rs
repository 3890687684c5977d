//! A mining run (`umi reward pairs`, psrlm-design.md §2.3 `--prefix gold`, §3.5 and §3.6): the
//! gold decision points of a split, [`mine_point`] at each one not done yet, the records and pairs
//! so far (search.jsonl and pairs.jsonl: appended point by point, so a rerun resumes) and the
//! report. No file access: a run resumes from the two files' texts and hands each point to a
//! callback that stores it.

use std::collections::{BTreeMap, HashSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use umi_agent::{GeneratorError, Usage};
use umi_data::conversation::Conversation;
use umi_data::readers::Split;

use super::{GoldPoint, MineConfig, MinedPair, SearchModel, SearchRecord, gold_points, mine_point};

/// The gold decision points of the `split` records of `conversations` (period `dev_every`),
/// from the first `limit` records of the split at most; trajectory indices are those of the
/// whole data set, so ids stay the same whatever the split.
pub fn split_points(
    conversations: &[Conversation],
    split: Split,
    dev_every: usize,
    limit: Option<usize>,
) -> Vec<GoldPoint> {
    conversations
        .iter()
        .enumerate()
        .filter(|(i, _)| split.keeps(*i, dev_every))
        .take(limit.unwrap_or(usize::MAX))
        .flat_map(|(t, c)| gold_points(t, c))
        .collect()
}

/// The valid JSON lines of `text`, and how many lines were not (blank lines skipped).
fn json_lines<T: DeserializeOwned>(text: &str) -> (Vec<T>, usize) {
    let (mut out, mut bad) = (Vec::new(), 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) => bad += 1,
        }
    }
    (out, bad)
}

/// `items` as JSON lines, each ending in a newline.
fn to_json_lines<T: Serialize>(items: &[T]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for item in items {
        out.push_str(&serde_json::to_string(item)?);
        out.push('\n');
    }
    Ok(out)
}

/// One point just mined, as a run's callback sees it.
#[derive(Debug, Clone, Copy)]
pub struct MinedPoint<'a> {
    /// What happened at the point (the next line of search.jsonl).
    pub record: &'a SearchRecord,
    /// The pair it gave (the next line of pairs.jsonl), if any.
    pub pair: Option<&'a MinedPair>,
    /// Records in the run with this one.
    pub records: usize,
    /// Pairs in the run with this one's.
    pub pairs: usize,
    /// Decision points given to the run, done or not.
    pub total: usize,
}

/// The records and pairs of a mining run so far; a rerun resumes it from its files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MiningRun {
    records: Vec<SearchRecord>,
    pairs: Vec<MinedPair>,
    done: HashSet<String>,
    torn: usize,
}

impl MiningRun {
    /// A run with nothing done.
    pub fn new() -> Self {
        Self::default()
    }

    /// The run recorded in the texts of its search.jsonl and pairs.jsonl (empty for a new run):
    /// the whole records are kept, lines that do not parse (a torn last line) are dropped and
    /// counted, and so are pairs whose point has no record (the pair is written first, so a
    /// record means its pair is there too).
    pub fn resume(search_jsonl: &str, pairs_jsonl: &str) -> Self {
        let (records, torn) = json_lines::<SearchRecord>(search_jsonl);
        let done: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        let (mut pairs, _) = json_lines::<MinedPair>(pairs_jsonl);
        pairs.retain(|p| done.contains(&p.pair.id));
        Self {
            records,
            pairs,
            done,
            torn,
        }
    }

    /// Every point's record, in mining order.
    pub fn records(&self) -> &[SearchRecord] {
        &self.records
    }

    /// The pairs mined, in mining order.
    pub fn pairs(&self) -> &[MinedPair] {
        &self.pairs
    }

    /// Distinct points with a record.
    pub fn points_done(&self) -> usize {
        self.done.len()
    }

    /// Lines of search.jsonl that [`MiningRun::resume`] dropped.
    pub fn torn_lines(&self) -> usize {
        self.torn
    }

    /// The points of `points` without a record yet, in order.
    pub fn remaining<'a>(&self, points: &'a [GoldPoint]) -> Vec<&'a GoldPoint> {
        points
            .iter()
            .filter(|p| !self.done.contains(&p.id))
            .collect()
    }

    /// The records as search.jsonl's text.
    ///
    /// # Errors
    ///
    /// When a record cannot be written as JSON.
    pub fn search_jsonl(&self) -> Result<String, serde_json::Error> {
        to_json_lines(&self.records)
    }

    /// The pairs as pairs.jsonl's text.
    ///
    /// # Errors
    ///
    /// When a pair cannot be written as JSON.
    pub fn pairs_jsonl(&self) -> Result<String, serde_json::Error> {
        to_json_lines(&self.pairs)
    }

    /// Mines every point of `points` not done yet, in order ([`mine_point`], psrlm-design.md
    /// §2.4–2.6). Each point joins the run once `on_point` accepts it (it stores the pair, then
    /// the record, so that a record on disk means its pair is too).
    ///
    /// # Errors
    ///
    /// When the model fails, or with `on_point`'s error; the run then holds the points before.
    pub async fn mine<M: SearchModel, E: From<GeneratorError>>(
        &mut self,
        model: &mut M,
        points: &[GoldPoint],
        config: &MineConfig,
        mut on_point: impl FnMut(MinedPoint<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for point in self.remaining(points) {
            let (record, pair) = mine_point(model, point, config).await?;
            on_point(MinedPoint {
                record: &record,
                pair: pair.as_ref(),
                records: self.records.len() + 1,
                pairs: self.pairs.len() + usize::from(pair.is_some()),
                total: points.len(),
            })?;
            self.pairs.extend(pair);
            self.done.insert(record.id.clone());
            self.records.push(record);
        }
        Ok(())
    }

    /// What the run gave so far (report.json).
    pub fn report(&self) -> MiningReport {
        MiningReport::new(&self.records, &self.pairs)
    }
}

/// What a mining run gave (report.json; psrlm-design.md §3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MiningReport {
    /// Points with a record.
    pub points: usize,
    /// Pairs mined.
    pub pairs: usize,
    /// Pairs per point.
    #[serde(rename = "yield")]
    pub pair_yield: f64,
    /// Points per outcome ([`crate::Outcome::name`]).
    pub outcomes: BTreeMap<String, usize>,
    /// Mean of the points' position consistency, where defined.
    pub mean_position_consistency: Option<f64>,
    /// Share of candidates whose raw output had a `Next:` marker.
    pub marker_rate: Option<f64>,
    /// Mean distinct candidates per point.
    pub mean_unique_candidates: Option<f64>,
    /// How the pairs relate to the gold steps (analysis only).
    pub gold_agreement: GoldAgreementRates,
    /// Share of candidates that pass the objective checks of psrlm-design.md §2.8
    /// ([`crate::check_planner_step`]), over the records that carry them (absent when none
    /// does: records written before the checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_rate: Option<f64>,
    /// Candidates failing each check, by [`crate::InvalidStep::name`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub invalid_candidates: BTreeMap<String, usize>,
    /// Shares of the pairs whose chosen and whose rejected step pass the checks (over the
    /// pairs that record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_valid_rate: Option<f64>,
    /// The rejected steps' share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_valid_rate: Option<f64>,
    /// Mean wall time per point, seconds.
    pub mean_seconds_per_point: Option<f64>,
    /// Mean model work per point, over the points that recorded it (psrlm-design.md §6's
    /// cost per decision); absent when none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_cost_per_point: Option<PointCost>,
}

/// Mean model work per decision point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointCost {
    /// Points it is the mean over.
    pub points: usize,
    /// Prompt tokens prefilled (not from a prefix cache).
    pub prefilled_tokens: f64,
    /// Prompt tokens taken from a prefix cache.
    pub cached_tokens: f64,
    /// Tokens sampled (candidates; judging reads logits and samples none).
    pub generated_tokens: f64,
    /// Judge calls (ordered pairs of distinct candidates).
    pub judge_calls: f64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl PointCost {
    /// The mean over the records with a [`SearchRecord::usage`]; `None` when there is none.
    pub fn mean(records: &[SearchRecord]) -> Option<Self> {
        let counted: Vec<(&SearchRecord, Usage)> = records
            .iter()
            .filter_map(|r| r.usage.map(|u| (r, u)))
            .collect();
        let n = counted.len();
        let avg = |f: &dyn Fn(&(&SearchRecord, Usage)) -> f64| {
            counted.iter().map(f).sum::<f64>() / n as f64
        };
        (n > 0).then(|| Self {
            points: n,
            prefilled_tokens: avg(&|(_, u)| u.prefilled_tokens as f64),
            cached_tokens: avg(&|(_, u)| u.cached_tokens as f64),
            generated_tokens: avg(&|(_, u)| u.generated_tokens as f64),
            judge_calls: avg(&|(r, _)| r.verdicts.len() as f64),
            seconds: avg(&|(r, _)| r.seconds),
        })
    }
}

/// Shares of the pairs whose chosen or rejected step makes the gold step's decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GoldAgreementRates {
    /// The chosen step's decision is the gold step's.
    pub chosen_plan_is_gold: Option<f64>,
    /// The rejected step's decision is the gold step's.
    pub rejected_plan_is_gold: Option<f64>,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl MiningReport {
    /// The report of these records and pairs; a mean is `None` over nothing.
    pub fn new(records: &[SearchRecord], pairs: &[MinedPair]) -> Self {
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for r in records {
            *outcomes.entry(r.outcome.name().into()).or_default() += 1;
        }
        let consistency: Vec<f64> = records
            .iter()
            .filter_map(|r| r.position_consistency)
            .collect();
        let agree = |f: &dyn Fn(&MinedPair) -> bool| {
            mean(
                &pairs
                    .iter()
                    .map(|p| f64::from(u8::from(f(p))))
                    .collect::<Vec<_>>(),
            )
        };
        let markers: Vec<f64> = records
            .iter()
            .flat_map(|r| r.had_marker.iter().map(|&m| f64::from(u8::from(m))))
            .collect();
        let unique: Vec<f64> = records
            .iter()
            .map(|r| (r.unique_index.iter().max().map_or(0, |m| m + 1)) as f64)
            .collect();
        let seconds: Vec<f64> = records.iter().map(|r| r.seconds).collect();
        let checked: Vec<f64> = records
            .iter()
            .flat_map(|r| r.invalid.iter().map(|i| f64::from(u8::from(i.is_none()))))
            .collect();
        let mut invalid_candidates: BTreeMap<String, usize> = BTreeMap::new();
        for why in records.iter().flat_map(|r| r.invalid.iter().flatten()) {
            *invalid_candidates.entry(why.name().into()).or_default() += 1;
        }
        let valid_share = |f: &dyn Fn(&MinedPair) -> Option<bool>| {
            mean(
                &pairs
                    .iter()
                    .filter_map(|p| f(p).map(|v| f64::from(u8::from(v))))
                    .collect::<Vec<_>>(),
            )
        };
        Self {
            points: records.len(),
            pairs: pairs.len(),
            pair_yield: pairs.len() as f64 / records.len().max(1) as f64,
            outcomes,
            mean_position_consistency: mean(&consistency),
            marker_rate: mean(&markers),
            mean_unique_candidates: mean(&unique),
            gold_agreement: GoldAgreementRates {
                chosen_plan_is_gold: agree(&|p| p.gold.chosen_plan == p.gold.plan),
                rejected_plan_is_gold: agree(&|p| p.gold.rejected_plan == p.gold.plan),
            },
            valid_rate: mean(&checked),
            invalid_candidates,
            chosen_valid_rate: valid_share(&|p| p.chosen_valid),
            rejected_valid_rate: valid_share(&|p| p.rejected_valid),
            mean_seconds_per_point: mean(&seconds),
            mean_cost_per_point: PointCost::mean(records),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mine::Sampling;
    use umi_data::Role;
    use umi_data::conversation::{Speaker, Turn};

    /// Samples "a good step" for even candidates and "a bad step" for odd ones; judges the good
    /// one better.
    struct Judge {
        samples: usize,
    }

    impl SearchModel for Judge {
        async fn sample(
            &mut self,
            _: Role,
            _: &str,
            _: &[String],
            _: &Sampling,
        ) -> Result<String, GeneratorError> {
            self.samples += 1;
            Ok(if self.samples.is_multiple_of(2) {
                "a good step. Next: caller."
            } else {
                "a bad step. Next: give up."
            }
            .into())
        }

        async fn verdict_logprobs(
            &mut self,
            _: Role,
            judge: &str,
        ) -> Result<(f64, f64), GeneratorError> {
            let a = judge.find("a good step").unwrap() < judge.find("a bad step").unwrap();
            Ok(if a { (-0.1, -3.0) } else { (-3.0, -0.1) })
        }

        fn model_prompt(&mut self, _: Role, prompt: &str) -> String {
            prompt.to_string()
        }
    }

    fn conversations(n: usize) -> Vec<Conversation> {
        (0..n)
            .map(|i| Conversation {
                tools: vec![],
                instruction: format!("q{i}"),
                conversations: vec![
                    Turn::new(Speaker::User, format!("q{i}")),
                    Turn::new(Speaker::Assistant, "call. Next: caller."),
                ],
            })
            .collect()
    }

    #[test]
    fn split_points_keep_the_data_sets_indices() {
        let points = split_points(&conversations(8), Split::Train, 3, Some(2));
        let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["t0001-d00", "t0002-d00"]);
    }

    #[test]
    fn a_run_resumes_where_its_files_end() {
        let points = split_points(&conversations(3), Split::All, 6, None);
        let config = MineConfig {
            width: 2,
            ..MineConfig::default()
        };
        let mut model = Judge { samples: 0 };
        let (mut search, mut pairs) = (String::new(), String::new());
        let mut run = MiningRun::new();
        let mut seen = Vec::new();
        let stop_after_two = pollster::block_on(run.mine(&mut model, &points, &config, |p| {
            if p.records == 3 {
                return Err(GeneratorError {
                    role: Role::Planner,
                    message: "stopped".into(),
                });
            }
            seen.push((p.records, p.pairs, p.total));
            pairs.push_str(&serde_json::to_string(p.pair.unwrap()).unwrap());
            pairs.push('\n');
            search.push_str(&serde_json::to_string(p.record).unwrap());
            search.push('\n');
            Ok(())
        }));
        assert!(stop_after_two.is_err());
        assert_eq!(seen, [(1, 1, 3), (2, 2, 3)]);
        assert_eq!(
            run.records().len(),
            2,
            "the refused point is not in the run"
        );
        assert_eq!(run.search_jsonl().unwrap(), search);
        assert_eq!(run.pairs_jsonl().unwrap(), pairs);

        // a torn record line, and a pair whose record is missing
        let second_record = search.lines().nth(1).unwrap().to_string();
        let torn = search.replace(&second_record, &second_record[..20]);
        let resumed = MiningRun::resume(&torn, &pairs);
        assert_eq!((resumed.points_done(), resumed.torn_lines()), (1, 1));
        assert_eq!(resumed.pairs().len(), 1);
        let left: Vec<&str> = resumed
            .remaining(&points)
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(left, ["t0001-d00", "t0002-d00"]);

        let mut resumed = resumed;
        pollster::block_on(resumed.mine(&mut model, &points, &config, |_| {
            Ok::<(), GeneratorError>(())
        }))
        .unwrap();
        assert_eq!(resumed.points_done(), 3);
        assert!(resumed.remaining(&points).is_empty());
        let report = resumed.report();
        assert_eq!(
            (report.points, report.pairs, report.pair_yield),
            (3, 3, 1.0)
        );
        assert_eq!(report.outcomes["pair"], 3);
        assert_eq!(report.marker_rate, Some(1.0));
        assert_eq!(report.mean_unique_candidates, Some(2.0));
        assert_eq!(report.gold_agreement.chosen_plan_is_gold, Some(1.0));
        assert_eq!(report.gold_agreement.rejected_plan_is_gold, Some(0.0));
        assert_eq!(
            report.valid_rate,
            Some(1.0),
            "every candidate passes the checks"
        );
        assert!(report.invalid_candidates.is_empty());
        assert_eq!(
            (report.chosen_valid_rate, report.rejected_valid_rate),
            (Some(1.0), Some(1.0))
        );
    }

    #[test]
    fn an_empty_run_reports_nothing() {
        let report = MiningRun::resume("", "").report();
        assert_eq!(
            (report.points, report.pairs, report.pair_yield),
            (0, 0, 0.0)
        );
        assert_eq!(report.mean_seconds_per_point, None);
        assert_eq!(report.valid_rate, None);
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.starts_with(r#"{"points":0,"pairs":0,"yield":0.0,"outcomes":{}"#));
    }
}

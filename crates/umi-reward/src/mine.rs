//! Mining step preference pairs at gold decision points (psrlm-design.md §2.3 `--prefix gold`,
//! §2.4–2.6): for each planner turn of a reference trajectory, the model samples `width`
//! candidate next steps from the gold history, judges every ordered pair of the distinct ones
//! itself (verdict format, read from the logits), and the best and worst by wins become a
//! chosen / rejected pair. The trajectory then goes on with the gold step; rewards come only
//! from the model's own judgments (the gold step is recorded for analysis, never used to
//! choose).

mod run;

use serde::{Deserialize, Serialize};
use umi_agent::{Generator, GeneratorError, LlamaGenerator, Usage};
use umi_data::conversation::{Conversation, Next, Speaker, Turn};
use umi_data::judge::{JudgeFormat, JudgeTarget, Verdict, judge_input, verdict_from_logprobs};
use umi_data::preference::PreferencePair;
use umi_data::{NoMarkerDefault, PromptSet, Role, history, parse_planner_output};

use crate::search::{
    ExecSignal, Outcome, dedupe, judge_pairs, outcome, position_consistency, score,
};
use crate::validity::{InvalidStep, check_planner_step};

pub use run::{GoldAgreementRates, MinedPoint, MiningReport, MiningRun, PointCost, split_points};

/// What mining needs from a model: sampled continuations and verdict log-probabilities.
/// [`LlamaGenerator`] is the real one; tests script one.
#[allow(async_fn_in_trait)] // used on one thread (wasm32 and the CLI alike); no Send bound wanted
pub trait SearchModel {
    /// One sampled continuation of `role`'s `prompt`, stopped at `stop`, with these sampling
    /// settings.
    async fn sample(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        sampling: &Sampling,
    ) -> Result<String, GeneratorError>;

    /// One continuation per entry of `samplings`, all of the same prompt: by default one
    /// [`SearchModel::sample`] after another; a model that decodes them as one batch
    /// ([`LlamaGenerator::generate_many`]) overrides it with the same results.
    async fn sample_many(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        samplings: &[Sampling],
    ) -> Result<Vec<String>, GeneratorError> {
        let mut out = Vec::with_capacity(samplings.len());
        for sampling in samplings {
            out.push(self.sample(role, prompt, stop, sampling).await?);
        }
        Ok(out)
    }

    /// `(ℓ_A, ℓ_B)`: the log-probabilities of the first tokens of `[[A]]` and `[[B]]` after
    /// the judge prompt.
    async fn verdict_logprobs(
        &mut self,
        role: Role,
        judge_prompt: &str,
    ) -> Result<(f64, f64), GeneratorError>;

    /// The text `role`'s model reads for `prompt` (its chat template, or the prompt itself):
    /// what a pair's `prompt` must be so that training sees what sampling saw.
    fn model_prompt(&mut self, role: Role, prompt: &str) -> String;
    /// The model work done since the last call (tokens prefilled, taken from a cache,
    /// generated), for the cost per decision; `None` for a model that does not count it.
    fn take_usage(&mut self) -> Option<Usage> {
        None
    }
}

/// How candidates are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Temperature (the paper: 0.5).
    pub temperature: f64,
    /// Nucleus mass (the paper: 0.95).
    pub top_p: f64,
    /// Most new tokens of a step.
    pub max_new_tokens: usize,
    /// The candidate's seed.
    pub seed: u64,
}

impl Sampling {
    /// Greedy decoding of at most `max_new_tokens` tokens, as α-UMi evaluates (and as
    /// [`umi_model::GenerationConfig::default`] decodes): temperature 0, so the nucleus mass and
    /// the seed (the defaults') play no part.
    pub fn greedy(max_new_tokens: usize) -> Self {
        let defaults = umi_model::GenerationConfig::default();
        Self {
            temperature: 0.0,
            top_p: defaults.top_p,
            max_new_tokens,
            seed: defaults.seed,
        }
    }
}

impl SearchModel for LlamaGenerator {
    async fn sample(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        sampling: &Sampling,
    ) -> Result<String, GeneratorError> {
        let saved = self.config.clone();
        self.config.temperature = sampling.temperature;
        self.config.top_p = sampling.top_p;
        self.config.max_new_tokens = sampling.max_new_tokens;
        self.config.seed = sampling.seed;
        let out = self.generate(role, prompt, stop).await;
        self.config = saved;
        out
    }

    async fn sample_many(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        samplings: &[Sampling],
    ) -> Result<Vec<String>, GeneratorError> {
        let configs: Vec<umi_model::GenerationConfig> = samplings
            .iter()
            .map(|s| umi_model::GenerationConfig {
                temperature: s.temperature,
                top_p: s.top_p,
                max_new_tokens: s.max_new_tokens,
                seed: s.seed,
                stop_strings: self.config.stop_strings.clone(),
                prefill_chunk: self.config.prefill_chunk,
            })
            .collect();
        self.generate_many(role, prompt, stop, &configs).await
    }

    async fn verdict_logprobs(
        &mut self,
        role: Role,
        judge_prompt: &str,
    ) -> Result<(f64, f64), GeneratorError> {
        self.choice_logprobs(role, judge_prompt, "[[A]]", "[[B]]")
            .await
    }

    fn model_prompt(&mut self, role: Role, prompt: &str) -> String {
        self.prompt_text(role, prompt)
    }
    fn take_usage(&mut self) -> Option<Usage> {
        Some(LlamaGenerator::take_usage(self))
    }
}

/// Settings of a mining run (psrlm-design.md §2.4–2.6 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MineConfig {
    /// Candidates sampled per decision point (the paper: 6).
    pub width: usize,
    /// Sampling temperature (the paper: 0.5).
    pub temperature: f64,
    /// Nucleus mass (the paper: 0.95).
    pub top_p: f64,
    /// Most new tokens of a planner step.
    pub max_new_tokens: usize,
    /// Fewest wins between best and worst for a pair (1: the paper's "max ≠ min").
    pub min_margin: u32,
    /// Base seed; candidate `k` of point `id` gets a seed derived from both.
    pub seed: u64,
    /// Whether the objective checks of each candidate ([`check_planner_step`], §2.8) steer
    /// the choice of best and worst (off: the paper; absent from settings written before it).
    #[serde(default, skip_serializing_if = "is_off")]
    pub exec_signal: ExecSignal,
}

fn is_off(signal: &ExecSignal) -> bool {
    *signal == ExecSignal::Off
}

impl Default for MineConfig {
    fn default() -> Self {
        Self {
            width: 6,
            temperature: 0.5,
            top_p: 0.95,
            max_new_tokens: 192,
            min_margin: 1,
            seed: 42,
            exec_signal: ExecSignal::Off,
        }
    }
}

/// A gold decision point: the turns before one planner turn of a reference trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldPoint {
    /// `t{trajectory}-d{decision}`.
    pub id: String,
    /// The trajectory's tool docs.
    pub tools: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The turns before the decision.
    pub history: Vec<Turn>,
    /// The gold planner turn (analysis only).
    pub gold: String,
}

/// Every planner turn with a `Next:` marker of `conversation` (index `t` in its data set), with
/// its gold history.
pub fn gold_points(t: usize, conversation: &Conversation) -> Vec<GoldPoint> {
    let turns = &conversation.conversations;
    let mut out = Vec::new();
    for (i, turn) in turns.iter().enumerate() {
        let has_marker = Next::detect(&turn.value).is_some();
        if turn.from == Speaker::Assistant && has_marker {
            out.push(GoldPoint {
                id: format!("t{t:04}-d{:02}", out.len()),
                tools: conversation.tools.clone(),
                history: turns[..i].to_vec(),
                gold: turn.value.clone(),
            });
        }
    }
    out
}

/// One attempted decision point (a line of `search.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRecord {
    /// The point's id.
    pub id: String,
    /// Every candidate step, in sampling order (after `parse_planner_output`).
    pub candidates: Vec<String>,
    /// Whether each candidate's raw output had a `Next:` marker.
    pub had_marker: Vec<bool>,
    /// Why each candidate fails the objective checks of §2.8 ([`check_planner_step`]), `None`
    /// where it passes (empty in records written before they were made).
    #[serde(default)]
    pub invalid: Vec<Option<InvalidStep>>,
    /// The distinct candidates' index per candidate.
    pub unique_index: Vec<usize>,
    /// `(i, j, verdict, p_A)` per judge call, `i` shown as A.
    pub verdicts: Vec<(usize, usize, Verdict, f64)>,
    /// Wins per distinct candidate.
    pub wins: Vec<u32>,
    /// What the point gave.
    pub outcome: Outcome,
    /// Position consistency of the judge at this point.
    pub position_consistency: Option<f64>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The model work the point took (absent in records of models that do not count it, and
    /// in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A mined pair (a line of `pairs.jsonl`): the pair itself (prompt, chosen and rejected text,
/// no token ids or reference log-probs: `umi train dpo` computes those with the starting
/// adapter) and how it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinedPair {
    /// Prompt, chosen, rejected, role, id.
    #[serde(flatten)]
    pub pair: PreferencePair,
    /// Candidates sampled.
    pub candidates: usize,
    /// Distinct candidates.
    pub unique_candidates: usize,
    /// Wins per distinct candidate.
    pub wins: Vec<u32>,
    /// Index of the chosen one among the distinct candidates.
    pub best: usize,
    /// Index of the rejected one.
    pub worst: usize,
    /// Wins of best − wins of worst.
    pub margin: u32,
    /// The judge's position consistency at this point.
    pub position_consistency: Option<f64>,
    /// Whether the chosen step passes the objective checks of §2.8 ([`check_planner_step`];
    /// absent in pairs mined before they were made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_valid: Option<bool>,
    /// Whether the rejected step does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_valid: Option<bool>,
    /// The judge format used.
    pub judge_format: JudgeFormat,
    /// The gold step's decision and the chosen and rejected ones' (analysis only).
    pub gold: GoldAgreement,
}

/// How the pair relates to the gold step (never used to choose it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldAgreement {
    /// The gold step's decision: `call`, `finish` or `give_up`.
    pub plan: String,
    /// The chosen step's.
    pub chosen_plan: String,
    /// The rejected step's.
    pub rejected_plan: String,
}

fn plan_of(step: &str) -> String {
    match Next::detect(step) {
        Some(Next::GiveUp) => "give_up",
        Some(Next::Conclusion) => "finish",
        Some(Next::Caller) => "call",
        None => "none",
    }
    .into()
}

/// The seed of candidate `k` at point `id`: the first draw of [`umi_model::SplitMix64`]'s
/// stream for the run's seed and the name `"{id}/k{k}"`, so every candidate's draw is fixed by
/// the run's seed and its place alone, on every platform.
pub fn candidate_seed(base: u64, id: &str, k: usize) -> u64 {
    umi_model::SplitMix64::new(base, &format!("{id}/k{k}")).next_u64()
}

/// The planner prompt at `point` and the `config.width` candidate steps sampled there
/// (parsed as the agent parses them), with whether each raw output had a `Next:` marker.
async fn sample_candidates<M: SearchModel>(
    model: &mut M,
    point: &GoldPoint,
    config: &MineConfig,
) -> Result<(String, Vec<String>, Vec<bool>), GeneratorError> {
    let hist = history(&point.history);
    let prompt = PromptSet::ToolBench.input(Role::Planner, &point.tools, &hist, "");
    let stop = [umi_data::parse::END_OF_TURN.to_string()];
    let samplings: Vec<Sampling> = (0..config.width)
        .map(|k| Sampling {
            temperature: config.temperature,
            top_p: config.top_p,
            max_new_tokens: config.max_new_tokens,
            seed: candidate_seed(config.seed, &point.id, k),
        })
        .collect();
    let mut candidates = Vec::with_capacity(config.width);
    let mut had_marker = Vec::with_capacity(config.width);
    for raw in model
        .sample_many(Role::Planner, &prompt, &stop, &samplings)
        .await?
    {
        let parsed = parse_planner_output(&raw, NoMarkerDefault::Caller);
        candidates.push(parsed.text);
        had_marker.push(parsed.had_marker);
    }
    Ok((prompt, candidates, had_marker))
}

/// Every ordered pair of the distinct `unique` steps at `point` judged by `model` (verdict
/// format, read from the logits): `(i, j, verdict, p_A)` per call, `i` shown as A; none for
/// fewer than two steps.
async fn judge_all<M: SearchModel>(
    model: &mut M,
    point: &GoldPoint,
    unique: &[String],
) -> Result<Vec<(usize, usize, Verdict, f64)>, GeneratorError> {
    let hist = history(&point.history);
    let mut verdicts = Vec::new();
    for (i, j) in judge_pairs(unique.len()) {
        let judge = judge_input(
            JudgeTarget::Planner,
            JudgeFormat::Verdict,
            &point.tools,
            &hist,
            None,
            &unique[i],
            &unique[j],
        );
        let (a, b) = model.verdict_logprobs(Role::Planner, &judge).await?;
        let (v, p) = verdict_from_logprobs(a, b);
        verdicts.push((i, j, v, p));
    }
    Ok(verdicts)
}

/// A step that was taken, judged against the alternatives the model samples at the same point
/// (the web app's "why this step?": psrlm-design.md's judge turned on a live trajectory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepJudgment {
    /// The taken step first (index 0), then the distinct sampled steps that differ from it.
    pub candidates: Vec<String>,
    /// How many of the `width` samples gave each candidate (the taken step: those equal to it).
    pub sampled: Vec<usize>,
    /// `(i, j, verdict, p_A)` per judge call, `i` shown as A.
    pub verdicts: Vec<(usize, usize, Verdict, f64)>,
    /// Wins per candidate (both orders of every pair judged).
    pub wins: Vec<u32>,
    /// Position consistency of the judge over these pairs.
    pub position_consistency: Option<f64>,
    /// The model work it took.
    pub usage: Option<Usage>,
}

impl StepJudgment {
    /// Where the taken step ranks by wins: 1 + the number of candidates with more wins.
    pub fn rank_of_taken(&self) -> usize {
        1 + self.wins.iter().filter(|&&w| w > self.wins[0]).count()
    }
}

/// Judges `point.gold` (the step taken there) against `config.width` steps sampled at the same
/// point, every ordered pair of the distinct ones, as [`mine_point`] judges its candidates.
///
/// # Errors
///
/// When the model fails.
pub async fn judge_step<M: SearchModel>(
    model: &mut M,
    point: &GoldPoint,
    config: &MineConfig,
) -> Result<StepJudgment, GeneratorError> {
    model.take_usage(); // only this judgment's work is counted
    let (_, samples, _) = sample_candidates(model, point, config).await?;
    let taken = parse_planner_output(&point.gold, NoMarkerDefault::Caller).text;
    let mut all = vec![taken];
    all.extend(samples);
    let (candidates, index) = dedupe(&all);
    let mut sampled = vec![0; candidates.len()];
    for &i in &index[1..] {
        sampled[i] += 1;
    }
    let verdicts = judge_all(model, point, &candidates).await?;
    let plain: Vec<(usize, usize, Verdict)> =
        verdicts.iter().map(|&(i, j, v, _)| (i, j, v)).collect();
    Ok(StepJudgment {
        wins: score(candidates.len(), &plain),
        position_consistency: position_consistency(candidates.len(), &plain),
        candidates,
        sampled,
        verdicts,
        usage: model.take_usage(),
    })
}

/// Samples, judges and selects at one gold decision point (planner steps, verdict-format
/// judge): the record of what happened, and the pair when the point gave one.
///
/// # Errors
///
/// When the model fails.
pub async fn mine_point<M: SearchModel>(
    model: &mut M,
    point: &GoldPoint,
    config: &MineConfig,
) -> Result<(SearchRecord, Option<MinedPair>), GeneratorError> {
    let started = web_time::Instant::now();
    model.take_usage(); // only this point's work is counted
    let (prompt, candidates, had_marker) = sample_candidates(model, point, config).await?;
    let (unique, unique_index) = dedupe(&candidates);
    let m = unique.len();
    let verdicts = judge_all(model, point, &unique).await?;
    let plain: Vec<(usize, usize, Verdict)> =
        verdicts.iter().map(|&(i, j, v, _)| (i, j, v)).collect();
    let invalid: Vec<Option<InvalidStep>> = candidates
        .iter()
        .zip(&had_marker)
        .map(|(step, &marker)| check_planner_step(step, marker, &point.tools).err())
        .collect();
    // a distinct step is valid when every sample that gave it is
    let mut valid = vec![true; m];
    for (k, &u) in unique_index.iter().enumerate() {
        valid[u] &= invalid[k].is_none();
    }
    let result = outcome(m, &plain, &valid, config.min_margin, config.exec_signal);
    let consistency = position_consistency(m, &plain);
    let wins = score(m, &plain);
    let pair = match result {
        Outcome::Pair {
            best,
            worst,
            margin,
        } => Some(MinedPair {
            pair: PreferencePair {
                id: point.id.clone(),
                role: Some("planner".into()),
                prompt: Some(model.model_prompt(Role::Planner, &prompt)),
                chosen: Some(unique[best].clone()),
                rejected: Some(unique[worst].clone()),
                ..PreferencePair::default()
            },
            candidates: candidates.len(),
            unique_candidates: m,
            wins: wins.clone(),
            best,
            worst,
            margin,
            position_consistency: consistency,
            chosen_valid: Some(valid[best]),
            rejected_valid: Some(valid[worst]),
            judge_format: JudgeFormat::Verdict,
            gold: GoldAgreement {
                plan: plan_of(&point.gold),
                chosen_plan: plan_of(&unique[best]),
                rejected_plan: plan_of(&unique[worst]),
            },
        }),
        _ => None,
    };
    let record = SearchRecord {
        id: point.id.clone(),
        candidates,
        had_marker,
        invalid,
        unique_index,
        verdicts,
        wins,
        outcome: result,
        position_consistency: consistency,
        seconds: started.elapsed().as_secs_f64(),
        usage: model.take_usage(),
    };
    Ok((record, pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples from a list in turn; judges by a fixed preference over step texts (the step
    /// containing "good" wins, then "ok"), always answering from its scores.
    struct Scripted {
        samples: Vec<&'static str>,
        next: usize,
        seeds: Vec<u64>,
        always_a: bool,
    }

    impl Scripted {
        /// Samples `samples` in turn; `always_a` answers "A" whatever the steps.
        fn new(samples: Vec<&'static str>, always_a: bool) -> Self {
            Self {
                samples,
                next: 0,
                seeds: Vec::new(),
                always_a,
            }
        }
    }

    fn quality(step: &str) -> i32 {
        if step.contains("good") {
            2
        } else if step.contains("ok") {
            1
        } else {
            0
        }
    }

    /// The text of the block between two markers of a judge prompt.
    fn block<'a>(prompt: &'a str, start: &str, end: &str) -> &'a str {
        let s = prompt.find(start).unwrap() + start.len();
        let e = prompt[s..].find(end).unwrap() + s;
        &prompt[s..e]
    }

    impl SearchModel for Scripted {
        async fn sample(
            &mut self,
            _: Role,
            _: &str,
            _: &[String],
            sampling: &Sampling,
        ) -> Result<String, GeneratorError> {
            self.seeds.push(sampling.seed);
            let s = self.samples[self.next % self.samples.len()];
            self.next += 1;
            Ok(s.to_string())
        }

        async fn verdict_logprobs(
            &mut self,
            _: Role,
            judge: &str,
        ) -> Result<(f64, f64), GeneratorError> {
            if self.always_a {
                return Ok((-0.1, -3.0));
            }
            let a = block(
                judge,
                "[The Start of Assistant A's Next Planning Step]\n",
                "\n[The End",
            );
            let b = block(
                judge,
                "[The Start of Assistant B's Next Planning Step]\n",
                "\n[The End",
            );
            Ok(if quality(a) >= quality(b) {
                (-0.1, -3.0)
            } else {
                (-3.0, -0.1)
            })
        }

        fn model_prompt(&mut self, _: Role, prompt: &str) -> String {
            prompt.to_string()
        }
    }

    fn point() -> GoldPoint {
        GoldPoint {
            id: "t0003-d01".into(),
            tools: vec![],
            history: vec![Turn::new(Speaker::User, "do it")],
            gold: "I call it. Next: caller.".into(),
        }
    }

    #[test]
    fn the_best_and_worst_by_self_judgment_become_the_pair() {
        let mut model = Scripted::new(
            vec![
                "an ok step. Next: caller.",
                "a bad step",
                "a good step. Next: conclusion.",
                "an ok step. Next: caller.",
            ],
            false,
        );
        let config = MineConfig {
            width: 4,
            ..MineConfig::default()
        };
        let (record, pair) = pollster::block_on(mine_point(&mut model, &point(), &config)).unwrap();
        assert_eq!(record.unique_index, [0, 1, 2, 0], "duplicates merged");
        assert_eq!(record.had_marker, [true, false, true, true]);
        assert_eq!(
            record.candidates[1], "a bad stepNext: caller.",
            "no marker: caller appended"
        );
        assert_eq!(record.verdicts.len(), 6);
        assert_eq!(record.wins, [2, 0, 4]);
        let pair = pair.expect("a pair");
        assert_eq!(
            pair.pair.chosen.as_deref(),
            Some("a good step. Next: conclusion.")
        );
        assert_eq!(
            pair.pair.rejected.as_deref(),
            Some("a bad stepNext: caller.")
        );
        assert_eq!((pair.best, pair.worst, pair.margin), (2, 1, 4));
        assert_eq!(
            record.invalid,
            [None, Some(InvalidStep::NoMarker), None, None],
            "the checks of §2.8 recorded for every candidate"
        );
        assert_eq!(
            (pair.chosen_valid, pair.rejected_valid),
            (Some(true), Some(false))
        );
        assert_eq!(pair.gold.plan, "call");
        assert_eq!(pair.gold.chosen_plan, "finish");
        assert!(
            pair.pair
                .prompt
                .as_deref()
                .unwrap()
                .ends_with(" assistant: ")
        );
        // seeds depend on the point and the candidate only
        let seeds = model.seeds.clone();
        assert_eq!(seeds.len(), 4);
        assert_ne!(seeds[0], seeds[1]);
        assert_eq!(seeds[2], candidate_seed(42, "t0003-d01", 2));
    }

    /// `--exec-signal filter` (§2.8): the rejected step is taken among the candidates that fail
    /// the objective checks (here the one without a marker, which the judge ranks second), the
    /// chosen one among those that pass; off (the paper), the judge's wins alone decide.
    #[test]
    fn the_exec_signal_filter_rejects_an_invalid_step_the_judge_does_not_rank_last() {
        let samples = vec![
            "a good step. Next: caller.",
            "an ok step without its marker",
            "a bad step. Next: caller.",
        ];
        let mine = |exec_signal| {
            let config = MineConfig {
                width: 3,
                exec_signal,
                ..MineConfig::default()
            };
            let mut model = Scripted::new(samples.clone(), false);
            pollster::block_on(mine_point(&mut model, &point(), &config)).unwrap()
        };
        let (record, off) = mine(ExecSignal::Off);
        assert_eq!(record.wins, [4, 2, 0]);
        let off = off.expect("a pair");
        assert_eq!((off.best, off.worst, off.margin), (0, 2, 4));
        assert_eq!(
            (off.chosen_valid, off.rejected_valid),
            (Some(true), Some(true))
        );
        let (record, filter) = mine(ExecSignal::Filter);
        assert_eq!(
            record.outcome,
            Outcome::Pair {
                best: 0,
                worst: 1,
                margin: 2
            }
        );
        let filter = filter.expect("a pair");
        assert_eq!(
            filter.pair.rejected.as_deref(),
            Some("an ok step without its markerNext: caller.")
        );
        assert_eq!(
            (filter.chosen_valid, filter.rejected_valid),
            (Some(true), Some(false))
        );
        let report = MiningReport::new(&[record], &[filter]);
        assert_eq!(report.valid_rate, Some(2.0 / 3.0));
        assert_eq!(
            report.invalid_candidates,
            [("no_marker".to_string(), 1)].into()
        );
        assert_eq!(
            (report.chosen_valid_rate, report.rejected_valid_rate),
            (Some(1.0), Some(0.0))
        );
        // settings without the field (written before it) read as off, and off is not written
        let json = serde_json::to_value(MineConfig::default()).unwrap();
        assert!(json.get("exec_signal").is_none());
        let back: MineConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.exec_signal, ExecSignal::Off);
    }

    /// The taken step is candidate 0, sampled copies of it are merged into it and counted, and
    /// it is judged against the distinct alternatives in both orders.
    #[test]
    fn a_taken_step_is_judged_against_the_sampled_alternatives() {
        let mut model = Scripted::new(
            vec![
                "a good step. Next: conclusion.",
                "an ok step. Next: caller.",
                "I call it. Next: caller.",
                "a good step. Next: conclusion.",
            ],
            false,
        );
        let config = MineConfig {
            width: 4,
            ..MineConfig::default()
        };
        let judged = pollster::block_on(judge_step(&mut model, &point(), &config)).unwrap();
        assert_eq!(
            judged.candidates,
            [
                "I call it. Next: caller.",
                "a good step. Next: conclusion.",
                "an ok step. Next: caller."
            ]
        );
        assert_eq!(judged.sampled, [1, 2, 1]);
        assert_eq!(judged.verdicts.len(), 6, "3 distinct steps, both orders");
        // quality: taken 0, good 2, ok 1; ties go to A
        assert_eq!(judged.wins, [0, 4, 2]);
        assert_eq!(judged.rank_of_taken(), 3);
        assert_eq!(judged.usage, None, "the scripted model counts nothing");
        assert_eq!(model.seeds.len(), 4);
    }

    #[test]
    fn a_judge_that_always_says_a_mines_nothing() {
        let mut model = Scripted::new(
            vec![
                "one. Next: caller.",
                "two. Next: caller.",
                "three. Next: give up.",
            ],
            true,
        );
        let config = MineConfig {
            width: 3,
            ..MineConfig::default()
        };
        let (record, pair) = pollster::block_on(mine_point(&mut model, &point(), &config)).unwrap();
        assert_eq!(record.outcome, Outcome::Tie);
        assert_eq!(record.position_consistency, Some(0.0));
        assert!(pair.is_none());
    }

    #[test]
    fn gold_points_are_the_planner_turns_with_a_marker() {
        let c = Conversation {
            tools: vec![],
            instruction: "q".into(),
            conversations: vec![
                Turn::new(Speaker::User, "q"),
                Turn::new(Speaker::Assistant, "call. Next: caller."),
                Turn::new(Speaker::Caller, "Action: f\nAction Input: {}"),
                Turn::new(Speaker::Observation, "{}"),
                Turn::new(Speaker::Assistant, "no marker here"),
                Turn::new(Speaker::Assistant, "done. Next: conclusion."),
            ],
        };
        let points = gold_points(9, &c);
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].id, "t0009-d01");
        assert_eq!(points[1].history.len(), 5);
    }

    /// The tiny test model (assets/tiny, f32 GGUF) on the CPU as every role's generator.
    fn tiny_generator(config: umi_model::GenerationConfig) -> LlamaGenerator {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../assets/tiny/gguf/tiny-f32.gguf"
        );
        let device = umi_model::Backend::Cpu.device().unwrap();
        let loaded = umi_model::load_model(path.as_ref(), &device).unwrap();
        LlamaGenerator::shared(loaded, config)
    }

    /// Batched candidates (`LlamaGenerator`'s `sample_many`, a shared prompt prefix): greedy
    /// ones equal the candidates generated one by one, on a real (tiny) model; sampled ones
    /// repeat for their seeds. (Sampled draws can differ from one-by-one ones: attention sums
    /// the shared prefix separately, and the tiny model's near-flat distributions turn that
    /// rounding into other draws.)
    #[test]
    fn batched_candidates_equal_candidates_generated_one_by_one() {
        let mut model = tiny_generator(umi_model::GenerationConfig::default());
        let prompt = "Plan the next step.";
        let greedy: Vec<Sampling> = (0..3)
            .map(|k| Sampling {
                temperature: 0.0,
                top_p: 1.0,
                max_new_tokens: 4 + 3 * k,
                seed: 0,
            })
            .collect();
        model.clear_prefix_caches();
        let batch =
            pollster::block_on(model.sample_many(Role::Planner, prompt, &[], &greedy)).unwrap();
        assert_eq!(batch.len(), 3);
        for (sampling, got) in greedy.iter().zip(&batch) {
            model.clear_prefix_caches(); // the same (uncached) prefill as the batch's
            let alone =
                pollster::block_on(model.sample(Role::Planner, prompt, &[], sampling)).unwrap();
            assert_eq!(got, &alone, "{sampling:?}");
        }
        let sampled: Vec<Sampling> = (0..4)
            .map(|k| Sampling {
                temperature: 0.8,
                top_p: 0.95,
                max_new_tokens: 8,
                seed: k,
            })
            .collect();
        let mut run =
            || pollster::block_on(model.sample_many(Role::Planner, prompt, &[], &sampled)).unwrap();
        let first = run();
        assert_eq!(first, run(), "a rerun draws the same candidates");
        assert_ne!(
            first[0], first[1],
            "different seeds give different candidates"
        );
    }

    /// What a point costs is counted as the model ran it: a batch prefills its prompt once and
    /// a repeat of it only its last token; the plain path (`umi reward pairs --plain`) prefills
    /// every candidate's prompt whole and gives the batch's greedy candidates; judging counts
    /// its prefill and samples nothing; taking the counts starts them again.
    #[test]
    fn usage_counts_prefill_once_per_batch_and_every_prompt_in_plain_mode() {
        let mut model = tiny_generator(umi_model::GenerationConfig {
            max_new_tokens: 16, // the tiny model's context is 128
            ..Default::default()
        });
        let prompt = "Plan the next step.";
        let n = model
            .prompt_length(Role::Planner, prompt)
            .unwrap()
            .unwrap()
            .tokens;
        let greedy: Vec<Sampling> = (0..3).map(|k| Sampling::greedy(4 + 3 * k)).collect();
        let run = |model: &mut LlamaGenerator| {
            let texts =
                pollster::block_on(model.sample_many(Role::Planner, prompt, &[], &greedy)).unwrap();
            (texts, SearchModel::take_usage(model).unwrap())
        };
        let (batched, first) = run(&mut model);
        assert_eq!((first.prefilled_tokens, first.cached_tokens), (n, 0));
        assert!(
            (3..=4 + 7 + 10).contains(&first.generated_tokens),
            "{first:?}"
        );
        let (again, second) = run(&mut model);
        assert_eq!(again, batched);
        assert_eq!((second.prefilled_tokens, second.cached_tokens), (1, n - 1));
        assert_eq!(second.generated_tokens, first.generated_tokens);
        model.plain = true;
        let (plain, cost) = run(&mut model);
        assert_eq!(
            plain, batched,
            "the plain path gives the same greedy candidates"
        );
        assert_eq!(
            (
                cost.prefilled_tokens,
                cost.cached_tokens,
                cost.generated_tokens
            ),
            (3 * n, 0, first.generated_tokens)
        );
        assert_eq!(SearchModel::take_usage(&mut model), Some(Usage::default()));

        model.plain = false;
        let judge = |model: &mut LlamaGenerator| {
            pollster::block_on(model.verdict_logprobs(Role::Planner, "Which is better?")).unwrap();
            SearchModel::take_usage(model).unwrap()
        };
        let fresh = judge(&mut model);
        assert_eq!(fresh.generated_tokens, 0);
        assert!(
            fresh.prefilled_tokens > 0 && fresh.cached_tokens == 0,
            "{fresh:?}"
        );
        let repeat = judge(&mut model);
        assert_eq!(
            (repeat.prefilled_tokens, repeat.cached_tokens),
            (1, fresh.prefilled_tokens - 1)
        );
    }
}

//! Process-based self-rewarding ("Process-based Self-Rewarding Language Models", Zhang et al.
//! 2025), adapted to α-UMi's planner and caller steps (`../shared/docs/psrlm-design.md`): at a
//! decision point the model samples `w` candidate next steps, judges every ordered pair of the
//! distinct ones itself ([`umi_data::judge`]), and the most and least preferred become a chosen /
//! rejected pair for step-level DPO (`umi_train::Trainer::dpo_step`).
//!
//! - [`eft`]: judge-training rows from gold trajectories, gold steps against objectively worse
//!   ones made from them, in both orders, and the rows of a split ([`EftSet`], §2.9);
//! - [`mine`]: the search at gold decision points: `width` sampled candidates, every ordered
//!   pair judged from the logits, the pair and the record of each point (§2.3–2.6), and the
//!   resumable run over a split's points with its report ([`MiningRun`], §3.5–3.6);
//! - [`judge_eval`]: how well a model judges, its verdicts on EFT rows and their report (§2.9,
//!   §3.5);
//! - [`search`]: duplicates merged, the ordered pairs to judge, wins counted from both orders,
//!   best / worst / margin and the outcome of a decision point (§2.5–2.6, §2.8);
//! - [`validity`]: the objective checks of a planner candidate (marker, echo, empty rationale,
//!   unlisted tool; §2.8), recorded always and steering the choice under `--exec-signal`.
//!
//! The workflows of `umi reward` live here, not in the CLI, so that any front-end runs the same
//! code: they take a [`SearchModel`] and a progress callback, and texts or values rather than
//! files (the crate builds for wasm32).
#![warn(missing_docs)]

pub mod eft;
pub mod judge_eval;
pub mod mine;
pub mod search;
pub mod validity;

pub use eft::{
    EftConfig, EftMeta, EftRow, EftSet, NegativeKind, eft_rows, synthetic_negatives, tool_families,
};
pub use judge_eval::{JudgeEval, JudgeEvalReport, JudgeProgress, Prediction, judge_rows};
pub use mine::{
    GoldAgreementRates, GoldPoint, MineConfig, MinedPair, MinedPoint, MiningReport, MiningRun,
    PointCost, Sampling, SearchModel, SearchRecord, StepJudgment, candidate_seed, gold_points,
    judge_step, mine_point, split_points,
};
pub use search::{
    ExecSignal, Outcome, dedupe, judge_pairs, outcome, position_consistency, score, select,
};
pub use validity::{InvalidStep, check_planner_step};

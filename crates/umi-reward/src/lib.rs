//! Process-based self-rewarding ("Process-based Self-Rewarding Language Models", Zhang et al.
//! 2025), adapted to α-UMi's planner and caller steps (`../shared/docs/psrlm-design.md`): at a
//! decision point the model samples `w` candidate next steps, judges every ordered pair of the
//! distinct ones itself ([`umi_data::judge`]), and the most and least preferred become a chosen /
//! rejected pair for step-level DPO (`umi_train::Trainer::dpo_step`).
//!
//! - [`eft`]: judge-training rows from gold trajectories, gold steps against objectively worse
//!   ones made from them, in both orders (§2.9);
//! - [`mine`]: the search at gold decision points: `width` sampled candidates, every ordered
//!   pair judged from the logits, the pair and the record of each point (§2.3–2.6);
//! - [`search`]: duplicates merged, the ordered pairs to judge, wins counted from both orders,
//!   best / worst / margin and the outcome of a decision point (§2.5–2.6, §2.8).
#![warn(missing_docs)]

pub mod eft;
pub mod mine;
pub mod search;

pub use eft::{
    EftConfig, EftMeta, EftRow, NegativeKind, eft_rows, synthetic_negatives, tool_families,
};
pub use mine::{
    GoldPoint, MineConfig, MinedPair, Sampling, SearchModel, SearchRecord, candidate_seed,
    gold_points, mine_point,
};
pub use search::{
    ExecSignal, Outcome, dedupe, judge_pairs, outcome, position_consistency, score, select,
};

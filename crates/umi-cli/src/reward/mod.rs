//! `umi reward`: process-based self-rewarding (psrlm-design.md §3.5), one file per command;
//! each parses its flags, calls `umi-reward` and renders progress and results.

use anyhow::Result;

mod eft;
mod export;
mod judge_eval;
mod pairs;

#[derive(clap::Subcommand)]
pub enum RewardCommand {
    /// Judge-training (EFT) rows from gold trajectories: each gold planner step against
    /// objectively worse steps made from it (another decision, an unlisted tool, the prompt's
    /// format line, the previous step again), in both orders.
    Eft(eft::EftArgs),
    /// How well a model judges: its verdicts on EFT rows (`umi reward eft`, e.g. the dev
    /// split), whose better step is known, read from the logits (verdict format) or from a
    /// short greedy explanation (explain format), through the planner slot of the model flags.
    JudgeEval(judge_eval::JudgeEvalArgs),
    /// Step preference pairs by self-judging at gold decision points: the planner samples
    /// --width candidate steps from each gold history, judges every ordered pair of the
    /// distinct ones itself (from the logits), and the best and worst by wins become a pair for
    /// `umi train dpo`. Resumable: a rerun with the same --out skips the points done.
    Pairs(pairs::PairsArgs),
    /// Pairs as umi records with token ids and reference log-probs (what `umi train dpo` trains
    /// on, and scripts/trl/dpo_umi.py trains on with TRL elsewhere): tokenized and cut as
    /// `umi train dpo` does, reference log-probs from --adapter where a row has none.
    Export(export::ExportArgs),
}

pub fn run(command: RewardCommand) -> Result<()> {
    match command {
        RewardCommand::Eft(args) => eft::run(args),
        RewardCommand::JudgeEval(args) => judge_eval::run(args),
        RewardCommand::Pairs(args) => pairs::run(args),
        RewardCommand::Export(args) => export::run(args),
    }
}

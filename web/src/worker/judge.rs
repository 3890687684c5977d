//! "Why this step?": a planner step of the last finished run judged against the alternatives
//! the planner samples at the same point ([`umi_reward::judge_step`]: the self-rewarding judge
//! of psrlm-design.md §2.5, verdicts read from the logits, every pair in both orders), with
//! the run's models, adapters and prompt format. The browser twin of the judging in
//! `umi reward pairs`.

use std::rc::Rc;

use umi_agent::AgentMode;
use umi_data::RoleMap;
use umi_data::conversation::{Conversation, Speaker};
use umi_model::{AdapterSet, LoadedModel};
use umi_reward::{GoldPoint, MineConfig, StepJudgment, judge_step};

use crate::protocol::RunSettings;
use crate::worker::run::run_generator;

/// Judges planner step `step` (from 0) of the run `record` (as `umi run --json` writes it) made
/// with `settings` against `width` alternatives sampled at `temperature` (top-p 0.95, at most
/// `MineConfig::default()`'s or the run's `max_new_tokens`), with the run's models and
/// `adapters`.
///
/// # Errors
///
/// A message when `width` is 0 or `temperature` not positive, the run was single-LLM (no
/// planner to judge), the record does not parse, it has no such step, or the model fails.
pub async fn judge_run_step(
    settings: &RunSettings,
    record: &str,
    step: usize,
    (width, temperature): (usize, f64),
    models: RoleMap<Rc<LoadedModel>>,
    adapters: RoleMap<AdapterSet>,
) -> Result<StepJudgment, String> {
    if width == 0 || temperature.is_nan() || temperature <= 0.0 {
        return Err(format!(
            "sample at least one alternative at a positive temperature (not {width} at {temperature})"
        ));
    }
    if settings.mode != AgentMode::Multi {
        return Err("judging compares planner steps: run the agent in multi-LLM mode".into());
    }
    let conversation: Conversation =
        serde_json::from_str(record).map_err(|e| format!("the last run's record: {e}"))?;
    let turns = &conversation.conversations;
    let at = turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.from == Speaker::Assistant)
        .nth(step)
        .map(|(i, _)| i)
        .ok_or_else(|| format!("the last run has no planner step #{step}"))?;
    let point = GoldPoint {
        id: format!("run-step{step}"),
        tools: conversation.tools.clone(),
        history: turns[..at].to_vec(),
        gold: turns[at].value.clone(),
    };
    let defaults = MineConfig::default();
    let config = MineConfig {
        width,
        temperature,
        max_new_tokens: defaults.max_new_tokens.min(settings.max_new_tokens),
        ..defaults
    };
    let mut generator = run_generator(settings, config.max_new_tokens, models, adapters);
    judge_step(&mut generator, &point, &config)
        .await
        .map_err(|e| e.to_string())
}

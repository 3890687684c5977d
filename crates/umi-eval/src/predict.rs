//! A model's prediction at one decision point, through the agent's own decision code
//! (`umi_agent::decide`), so evaluation prompts and parses exactly as live runs do.

use umi_agent::{AgentMode, Generator, GeneratorError, decide};
use umi_data::{NoMarkerDefault, PromptSet};

use crate::DecisionPoint;

/// Predicts the decision at `point` from its gold history and returns the string the reference
/// evaluator scores (see `umi_agent::Decision::prediction`).
///
/// # Errors
///
/// [`GeneratorError`] when a model cannot run.
pub async fn predict<G: Generator>(
    generator: &mut G,
    mode: AgentMode,
    set: PromptSet,
    point: &DecisionPoint,
) -> Result<String, GeneratorError> {
    // GLPFT's infer_pipeline.py sends an output with no marker to the caller.
    let no_marker = NoMarkerDefault::Caller;
    let decision = decide(
        generator,
        mode,
        set,
        no_marker,
        &point.tools,
        &point.history,
        &mut |_| {},
    )
    .await?;
    Ok(decision.prediction())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decision_points, evaluate};
    use umi_agent::ScriptedGenerator;
    use umi_data::{Conversation, Role};

    fn conversation() -> Conversation {
        serde_json::from_value(serde_json::json!({
            "tools": [{"Name": "get_x", "function": "gets x", "input": {}}],
            "instruction": "What is x?",
            "conversations": [
                {"from": "user", "value": "What is x?"},
                {"from": "assistant", "value": "I will get x.\n Next: caller."},
                {"from": "caller", "value": "Action: get_x\nAction Input: {\"k\": 1}"},
                {"from": "observation", "value": "{\"x\": 5}"},
                {"from": "assistant", "value": "x is 5. Next: conclusion."},
                {"from": "conclusion", "value": "x is 5."}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn multi_mode_predictions_score_like_references() {
        let points = decision_points(&conversation());
        let mut generator = ScriptedGenerator::new([
            (Role::Planner, "I will get x.\n Next: caller."),
            (Role::Caller, "Action: get_x\nAction Input: {\"k\": 1}"),
            (Role::Planner, "x is 5. Next: conclusion. trailing"),
            (Role::Summarizer, " x is 5."),
        ]);
        let preds: Vec<String> = points
            .iter()
            .map(|p| {
                pollster::block_on(predict(
                    &mut generator,
                    AgentMode::Multi,
                    PromptSet::ToolBench,
                    p,
                ))
                .unwrap()
            })
            .collect();
        // The caller sees the planner's turn in its history and as {thought}.
        let caller_prompt = &generator.prompts[1].1;
        assert!(caller_prompt.contains("assistant: I will get x.\n Next: caller.</s>"));
        let report = evaluate(points.iter().zip(preds.iter().map(String::as_str)));
        assert_eq!(
            (report.plan_em, report.action_em, report.argument_f1),
            (1.0, 1.0, 1.0),
            "{preds:?}"
        );
        // the rouge package's F has an epsilon in its denominator
        assert!((report.rouge_l - 1.0).abs() < 1e-6, "{}", report.rouge_l);
    }

    #[test]
    fn single_mode_output_is_scored_in_the_same_form() {
        let points = decision_points(&conversation());
        let mut generator = ScriptedGenerator::new([
            (
                Role::Backbone,
                "I will get x.\nAction: get_y\nAction Input: {\"k\": 2}",
            ),
            (Role::Backbone, "x is 5.\nconclusion: x is five"),
        ]);
        let preds: Vec<String> = points
            .iter()
            .map(|p| {
                pollster::block_on(predict(
                    &mut generator,
                    AgentMode::Single,
                    PromptSet::ToolBench,
                    p,
                ))
                .unwrap()
            })
            .collect();
        let report = evaluate(points.iter().zip(preds.iter().map(String::as_str)));
        assert_eq!(report.plan_em, 1.0);
        assert_eq!(report.action_em, 0.0);
        assert_eq!(
            report.hallucination_rate, 0.5,
            "get_y is not a tool: {preds:?}"
        );
        assert!(
            report.rouge_l > 0.3 && report.rouge_l < 1.0,
            "{}",
            report.rouge_l
        );
        // the backbone history is merged: the second prompt shows the call as one assistant turn
        assert!(generator.prompts[1].1.contains("Action: get_x"));
    }
}

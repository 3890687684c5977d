//! Static evaluation on the real OOD file: the decision points match the counts
//! `alpha-umi-reference.md` §1.6 gives, and scoring the references as predictions is perfect.

use umi_data::Conversation;
use umi_eval::{Plan, decision_points, evaluate, parse_output};
use umi_tests::shared_data;

#[test]
fn references_scored_as_predictions_are_perfect() {
    let path = shared_data().join("alpha-umi-toolbench/ood-train/out_of_domain_train300.json");
    let records: Vec<Conversation> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(records.len(), 300);
    let points: Vec<_> = records.iter().flat_map(decision_points).collect();
    let count = |plan| {
        points
            .iter()
            .filter(|p| parse_output(&p.reference).plan == plan)
            .count()
    };
    assert_eq!(
        (
            points.len(),
            count(Plan::Call),
            count(Plan::Finish),
            count(Plan::GiveUp)
        ),
        (1139, 838, 219, 82)
    );
    let report = evaluate(points.iter().map(|p| (p, p.reference.as_str())));
    assert_eq!(
        (
            report.plan_em,
            report.action_em,
            report.argument_f1,
            report.hallucination_rate
        ),
        (1.0, 1.0, 1.0, 0.0)
    );
    assert_eq!((report.easy_f1, report.hard_f1), (1.0, 1.0));
    assert!(
        (report.rouge_l - 1.0).abs() < 1e-6,
        "R-L {}",
        report.rouge_l
    );
}

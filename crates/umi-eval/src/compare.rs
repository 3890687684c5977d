//! Whether two static evaluations of the same decisions differ: a paired bootstrap over
//! trajectories. Process-based self-rewarding reports "the dev-metric change with its 95 %
//! paired-bootstrap interval" (psrlm-design.md §2.11; no claim of help unless the interval
//! excludes zero), and any two model set-ups scored on the same split are compared the same way.
//!
//! The decisions of one trajectory share its task, tools and history, so they are resampled
//! together: each resample draws as many trajectories as the split has, with replacement, and
//! scores every decision of each drawn trajectory in both runs ([`EvalReport::from_scores`]).
//! The interval of a metric is the 2.5th and 97.5th percentile of `after − before` over the
//! resamples (percentile bootstrap, Efron & Tibshirani 1993, §13.3).

use serde::Serialize;
use umi_util::SplitMix64;

use crate::{DecisionScore, EvalReport};

/// One metric of a [`PairedComparison`], as fractions in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricChange {
    /// The paper's name of the metric (`Plan ACC`, `Act. EM`, `Hallu.`, `Arg. F1`, `R-L`) or `S`
    /// for the dev score ([`EvalReport::dev_score`]).
    pub metric: &'static str,
    /// The first run's value on all decisions.
    pub before: f64,
    /// The second run's value on all decisions.
    pub after: f64,
    /// 2.5th percentile of `after − before` over the resamples.
    pub low: f64,
    /// 97.5th percentile of `after − before` over the resamples.
    pub high: f64,
}

impl MetricChange {
    /// `after − before` on all decisions.
    pub fn change(&self) -> f64 {
        self.after - self.before
    }

    /// Whether the 95 % interval excludes zero.
    pub fn significant(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// Two runs' metrics on the same decisions, with 95 % paired-bootstrap intervals of the changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedComparison {
    /// Decisions both runs scored.
    pub decisions: usize,
    /// Trajectories they come from (the unit of resampling).
    pub trajectories: usize,
    /// Bootstrap resamples drawn.
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Plan ACC, Act. EM, Hallu., Arg. F1, R-L and S, in that order.
    pub metrics: Vec<MetricChange>,
}

/// The metrics of a comparison, by name, from a report.
fn values(report: &EvalReport) -> [(&'static str, f64); 6] {
    [
        ("Plan ACC", report.plan_em),
        ("Act. EM", report.action_em),
        ("Hallu.", report.hallucination_rate),
        ("Arg. F1", report.argument_f1),
        ("R-L", report.rouge_l),
        ("S", report.dev_score()),
    ]
}

/// Compares `before` and `after`, the scores of the same decisions in the same order (decision
/// `i` of both belongs to trajectory `trajectory[i]`), with `resamples` bootstrap resamples of
/// the trajectories drawn from `seed`.
///
/// # Errors
///
/// A message when the three slices differ in length, there is no decision, or `resamples` is 0.
pub fn paired_bootstrap(
    before: &[DecisionScore],
    after: &[DecisionScore],
    trajectory: &[usize],
    resamples: usize,
    seed: u64,
) -> Result<PairedComparison, String> {
    if before.len() != after.len() || before.len() != trajectory.len() {
        return Err(format!(
            "the runs must score the same decisions: {} and {} scores for {} decisions",
            before.len(),
            after.len(),
            trajectory.len()
        ));
    }
    if before.is_empty() || resamples == 0 {
        return Err("nothing to compare: no decision or no resample".into());
    }
    // the decisions of each trajectory, trajectories in order of first appearance
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, &t) in trajectory.iter().enumerate() {
        match groups.iter_mut().find(|(id, _)| *id == t) {
            Some((_, members)) => members.push(i),
            None => groups.push((t, vec![i])),
        }
    }
    let (whole_before, whole_after) = (
        values(&EvalReport::from_scores(before)),
        values(&EvalReport::from_scores(after)),
    );
    let mut rng = SplitMix64::new(seed, "paired bootstrap");
    let mut changes: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); whole_before.len()];
    let (mut sample_before, mut sample_after) = (Vec::new(), Vec::new());
    for _ in 0..resamples {
        sample_before.clear();
        sample_after.clear();
        for _ in 0..groups.len() {
            let pick = (rng.next_u64() % groups.len() as u64) as usize;
            for &i in &groups[pick].1 {
                sample_before.push(&before[i]);
                sample_after.push(&after[i]);
            }
        }
        let b = values(&EvalReport::from_scores(sample_before.iter().copied()));
        let a = values(&EvalReport::from_scores(sample_after.iter().copied()));
        for (k, ((_, vb), (_, va))) in b.iter().zip(&a).enumerate() {
            changes[k].push(va - vb);
        }
    }
    let metrics = whole_before
        .iter()
        .zip(&whole_after)
        .zip(&mut changes)
        .map(|(((metric, before), (_, after)), changes)| {
            changes.sort_by(f64::total_cmp);
            MetricChange {
                metric,
                before: *before,
                after: *after,
                low: percentile(changes, 0.025),
                high: percentile(changes, 0.975),
            }
        })
        .collect();
    Ok(PairedComparison {
        decisions: before.len(),
        trajectories: groups.len(),
        resamples,
        seed,
        metrics,
    })
}

/// The `q`-quantile of sorted `values` (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl PairedComparison {
    /// A markdown table: each metric before and after (×100, as the paper prints them), the
    /// change and its 95 % interval; a change whose interval excludes zero is in bold.
    pub fn markdown(&self, before: &str, after: &str) -> String {
        let mut out = format!(
            "| metric | {before} | {after} | change | 95 % interval |\n|---|---:|---:|---:|---|\n"
        );
        for m in &self.metrics {
            let change = format!("{:+.2}", 100.0 * m.change());
            let change = if m.significant() {
                format!("**{change}**")
            } else {
                change
            };
            out += &format!(
                "| {} | {:.2} | {:.2} | {change} | [{:+.2}, {:+.2}] |\n",
                m.metric,
                100.0 * m.before,
                100.0 * m.after,
                100.0 * m.low,
                100.0 * m.high
            );
        }
        out += &format!(
            "\n{} decisions of {} trajectories; paired bootstrap over trajectories, {} resamples, seed {}. S = mean(Plan ACC, Act. EM, Arg. F1, R-L).\n",
            self.decisions, self.trajectories, self.resamples, self.seed
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallScore;

    fn call(ok: bool) -> DecisionScore {
        DecisionScore {
            plan_ok: true,
            hallucinated: false,
            call: Some(CallScore {
                action_ok: ok,
                argument_f1: Some(if ok { 1.0 } else { 0.0 }),
                empty_arguments: false,
            }),
            rouge_l: None,
        }
    }

    fn finish(rouge: f64, plan_ok: bool) -> DecisionScore {
        DecisionScore {
            plan_ok,
            hallucinated: false,
            call: None,
            rouge_l: Some(rouge),
        }
    }

    /// 12 trajectories of a call and an answer each: `good` of them called right.
    fn run(good: usize) -> (Vec<DecisionScore>, Vec<usize>) {
        let mut scores = Vec::new();
        let mut trajectory = Vec::new();
        for t in 0..12 {
            scores.push(call(t < good));
            scores.push(finish(0.5, true));
            trajectory.extend([t, t]);
        }
        (scores, trajectory)
    }

    #[test]
    fn the_same_run_twice_changes_nothing() {
        let (scores, trajectory) = run(5);
        let c = paired_bootstrap(&scores, &scores, &trajectory, 500, 1).unwrap();
        assert_eq!((c.decisions, c.trajectories), (24, 12));
        for m in &c.metrics {
            assert_eq!((m.change(), m.low, m.high), (0.0, 0.0, 0.0), "{m:?}");
            assert!(!m.significant());
        }
    }

    #[test]
    fn whole_run_values_are_the_evaluator_s_and_the_interval_holds_the_change() {
        let (before, trajectory) = run(3);
        let (after, _) = run(11);
        let c = paired_bootstrap(&before, &after, &trajectory, 2000, 7).unwrap();
        let act = &c.metrics[1];
        assert_eq!(act.metric, "Act. EM");
        assert_eq!(act.before, EvalReport::from_scores(&before).action_em);
        assert!((act.before - 3.0 / 12.0).abs() < 1e-12);
        assert!((act.after - 11.0 / 12.0).abs() < 1e-12);
        assert!(
            act.low <= act.change() && act.change() <= act.high,
            "{act:?}"
        );
        // 8 of 12 trajectories gain a right call, none loses one: every resample gains
        assert!(act.low > 0.0 && act.significant(), "{act:?}");
        // Plan ACC and R-L are the same in both runs
        assert_eq!((c.metrics[0].low, c.metrics[0].high), (0.0, 0.0));
        assert_eq!((c.metrics[4].low, c.metrics[4].high), (0.0, 0.0));
        let s = &c.metrics[5];
        assert!((s.change() - (act.change() + c.metrics[3].change()) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn a_change_within_noise_is_not_significant_and_reruns_repeat() {
        // one trajectory gains, another loses: the interval straddles zero
        let (before, trajectory) = run(6);
        let mut after = before.clone();
        after[0] = call(false);
        after[14] = call(true);
        let c = paired_bootstrap(&before, &after, &trajectory, 1000, 3).unwrap();
        let act = &c.metrics[1];
        assert_eq!(act.change(), 0.0);
        assert!(act.low < 0.0 && act.high > 0.0, "{act:?}");
        assert_eq!(
            c,
            paired_bootstrap(&before, &after, &trajectory, 1000, 3).unwrap()
        );
    }

    #[test]
    fn mismatched_runs_are_refused() {
        let (scores, trajectory) = run(2);
        assert!(paired_bootstrap(&scores, &scores[1..], &trajectory, 10, 0).is_err());
        assert!(paired_bootstrap(&scores, &scores, &trajectory, 0, 0).is_err());
        assert!(paired_bootstrap(&[], &[], &[], 10, 0).is_err());
    }
}

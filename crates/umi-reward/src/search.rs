//! From judged candidates to a preference pair: psrlm-design.md §2.5 (both orders), §2.6
//! (scoring, best / worst, ties) and §2.8 (validity signals). Pure bookkeeping: the sampling and
//! the judge calls happen elsewhere and arrive here as step texts and verdicts.
//!
//! A verdict `(i, j, v)` is the judge's answer with candidate `i` shown as assistant A and
//! candidate `j` as assistant B.

use serde::{Deserialize, Serialize};
use umi_data::judge::Verdict;

/// Whether the objective validity checks of §2.8 steer the choice of best and worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecSignal {
    /// The judge's wins only (the paper).
    #[default]
    Off,
    /// Best among valid candidates only; worst among invalid ones when there are any.
    Filter,
    /// Wins first, validity breaks ties (a valid candidate beats an invalid one of equal wins).
    Tiebreak,
}

/// What one decision point gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A preference pair: candidate `best` chosen over `worst` (indices into the unique
    /// candidates), `margin` = wins of best − wins of worst.
    Pair {
        /// The chosen candidate.
        best: usize,
        /// The rejected candidate.
        worst: usize,
        /// Their difference in wins.
        margin: u32,
    },
    /// The judge did not separate the candidates by `min_margin` wins.
    Tie,
    /// Fewer than two distinct candidates.
    TooFewUnique,
    /// More than half the judge calls gave no verdict.
    JudgeInvalid,
    /// `ExecSignal::Filter` with no valid candidate.
    NoValid,
}

impl Outcome {
    /// The outcome's name in reports: `pair`, `tie`, `too_few_unique`, `judge_invalid` or
    /// `no_valid`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pair { .. } => "pair",
            Outcome::Tie => "tie",
            Outcome::TooFewUnique => "too_few_unique",
            Outcome::JudgeInvalid => "judge_invalid",
            Outcome::NoValid => "no_valid",
        }
    }
}

/// Merges byte-identical candidate steps (§2.4): the distinct texts in first-seen order, and
/// for each candidate the index of its text among them.
pub fn dedupe(steps: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut unique: Vec<String> = Vec::new();
    let index = steps
        .iter()
        .map(|s| match unique.iter().position(|u| u == s) {
            Some(i) => i,
            None => {
                unique.push(s.clone());
                unique.len() - 1
            }
        })
        .collect();
    (unique, index)
}

/// Every ordered pair `(i, j)`, `i ≠ j`, of `m` candidates, row by row: the `m(m − 1)` judge
/// calls of a decision point (each pair in both orders, so a position bias cancels).
pub fn judge_pairs(m: usize) -> Vec<(usize, usize)> {
    (0..m)
        .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
        .collect()
}

/// Wins of each of `m` candidates (§2.6, the paper's Eq. 2 over both orders): candidate `i`
/// wins a call when it is A and the verdict is A, or B and the verdict is B; `Invalid` counts
/// for no one. Each candidate has at most `2(m − 1)` wins.
///
/// # Panics
///
/// If a verdict names a candidate `≥ m`.
pub fn score(m: usize, verdicts: &[(usize, usize, Verdict)]) -> Vec<u32> {
    let mut wins = vec![0u32; m];
    for &(a, b, v) in verdicts {
        match v {
            Verdict::A => wins[a] += 1,
            Verdict::B => wins[b] += 1,
            Verdict::Invalid => {}
        }
    }
    wins
}

/// The share of unordered pairs `{i, j}` judged both ways with valid verdicts whose two
/// verdicts agree once the order is undone (`(i, j) → A` with `(j, i) → B`, or the mirror);
/// `None` when no pair has two valid verdicts. A judge that always answers "A" scores 0.
pub fn position_consistency(m: usize, verdicts: &[(usize, usize, Verdict)]) -> Option<f64> {
    let mut table = vec![None; m * m];
    for &(a, b, v) in verdicts {
        if v != Verdict::Invalid {
            table[a * m + b] = Some(v);
        }
    }
    let (mut both, mut consistent) = (0usize, 0usize);
    for i in 0..m {
        for j in i + 1..m {
            if let (Some(x), Some(y)) = (table[i * m + j], table[j * m + i]) {
                both += 1;
                consistent += usize::from(x != y);
            }
        }
    }
    (both > 0).then(|| consistent as f64 / both as f64)
}

/// Best and worst from the wins (§2.6): best is the earliest among the most wins, worst the
/// latest among the fewest; with [`ExecSignal::Filter`] best is taken among valid candidates
/// and worst among invalid ones when any ([`Outcome::NoValid`] when none is valid); with
/// [`ExecSignal::Tiebreak`] the key is (wins, valid). The pair is kept when its margin is at
/// least `min_margin` (1 is the paper's "max ≠ min" rule), or, under `Tiebreak`, when the wins
/// are equal but only best is valid; otherwise [`Outcome::Tie`].
///
/// # Panics
///
/// If `valid` and `wins` differ in length.
pub fn select(wins: &[u32], valid: &[bool], min_margin: u32, mode: ExecSignal) -> Outcome {
    assert_eq!(wins.len(), valid.len(), "one validity flag per candidate");
    if wins.len() < 2 {
        return Outcome::TooFewUnique;
    }
    let all: Vec<usize> = (0..wins.len()).collect();
    let key = |i: usize| match mode {
        ExecSignal::Tiebreak => (wins[i], u32::from(valid[i])),
        _ => (wins[i], 0),
    };
    let (best_from, worst_from): (Vec<usize>, Vec<usize>) = match mode {
        ExecSignal::Filter => {
            let good: Vec<usize> = all.iter().copied().filter(|&i| valid[i]).collect();
            let bad: Vec<usize> = all.iter().copied().filter(|&i| !valid[i]).collect();
            if good.is_empty() {
                return Outcome::NoValid;
            }
            (good, if bad.is_empty() { all.clone() } else { bad })
        }
        _ => (all.clone(), all.clone()),
    };
    let best = *best_from
        .iter()
        .rev()
        .max_by_key(|&&i| key(i))
        .expect("at least one candidate");
    let worst = *worst_from
        .iter()
        .min_by_key(|&&i| key(i))
        .map(|&w| {
            worst_from
                .iter()
                .filter(|&&i| key(i) == key(w))
                .max()
                .expect("w itself")
        })
        .expect("at least one candidate");
    if best == worst {
        return Outcome::Tie;
    }
    let margin = wins[best].saturating_sub(wins[worst]);
    let decisive = wins[best] >= wins[worst]
        && (margin >= min_margin.max(1)
            || (mode == ExecSignal::Tiebreak && margin == 0 && valid[best] && !valid[worst]));
    if decisive {
        Outcome::Pair {
            best,
            worst,
            margin,
        }
    } else {
        Outcome::Tie
    }
}

/// The outcome of a decision point with `m` distinct candidates and the verdicts of their
/// judge calls: [`Outcome::TooFewUnique`] below 2 candidates, [`Outcome::JudgeInvalid`] when
/// more than half the verdicts are `Invalid`, otherwise [`select`] on the [`score`]s.
pub fn outcome(
    m: usize,
    verdicts: &[(usize, usize, Verdict)],
    valid: &[bool],
    min_margin: u32,
    mode: ExecSignal,
) -> Outcome {
    if m < 2 {
        return Outcome::TooFewUnique;
    }
    let invalid = verdicts
        .iter()
        .filter(|(_, _, v)| *v == Verdict::Invalid)
        .count();
    if 2 * invalid > verdicts.len() {
        return Outcome::JudgeInvalid;
    }
    select(&score(m, verdicts), valid, min_margin, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{A, B, Invalid};

    /// Verdicts of a judge that prefers the lower "quality rank" (candidate order given by
    /// `rank`, 0 best), consistently in both orders.
    fn ranked(rank: &[usize]) -> Vec<(usize, usize, Verdict)> {
        judge_pairs(rank.len())
            .into_iter()
            .map(|(i, j)| (i, j, if rank[i] < rank[j] { A } else { B }))
            .collect()
    }

    fn always(m: usize, v: Verdict) -> Vec<(usize, usize, Verdict)> {
        judge_pairs(m).into_iter().map(|(i, j)| (i, j, v)).collect()
    }

    #[test]
    fn a_consistent_total_order_gives_the_full_spread() {
        let v = ranked(&[0, 1, 2, 3]);
        assert_eq!(v.len(), 12);
        assert_eq!(score(4, &v), [6, 4, 2, 0]);
        assert_eq!(position_consistency(4, &v), Some(1.0));
        assert_eq!(
            outcome(4, &v, &[true; 4], 1, ExecSignal::Off),
            Outcome::Pair {
                best: 0,
                worst: 3,
                margin: 6
            }
        );
    }

    #[test]
    fn an_inconsistent_pair_moves_one_win_each() {
        let mut v = ranked(&[0, 1, 2, 3]);
        // (1, 0) should be B (0 better); the judge says A: position-inconsistent with (0, 1) = A
        let at = v.iter().position(|&(i, j, _)| (i, j) == (1, 0)).unwrap();
        v[at].2 = A;
        assert_eq!(score(4, &v), [5, 5, 2, 0]);
        assert_eq!(position_consistency(4, &v), Some(5.0 / 6.0));
        assert_eq!(
            outcome(4, &v, &[true; 4], 1, ExecSignal::Off),
            Outcome::Pair {
                best: 0,
                worst: 3,
                margin: 5
            }
        );
    }

    #[test]
    fn judges_that_ignore_the_steps_yield_no_pair() {
        for v in [A, B] {
            let verdicts = always(6, v);
            assert_eq!(score(6, &verdicts), [5; 6]);
            assert_eq!(position_consistency(6, &verdicts), Some(0.0));
            assert_eq!(
                outcome(6, &verdicts, &[true; 6], 1, ExecSignal::Off),
                Outcome::Tie
            );
        }
        // a judge that answers by position parity is inconsistent on every pair: a tie too
        let v: Vec<_> = judge_pairs(3)
            .into_iter()
            .map(|(i, j)| (i, j, if (i + j) % 2 == 0 { A } else { B }))
            .collect();
        assert_eq!(position_consistency(3, &v), Some(0.0));
        assert_eq!(outcome(3, &v, &[true; 3], 1, ExecSignal::Off), Outcome::Tie);
    }

    #[test]
    fn permuting_the_candidates_permutes_the_wins() {
        let rank = [2, 0, 3, 1];
        let wins = score(4, &ranked(&rank));
        assert_eq!(wins, [2, 6, 0, 4]);
        assert_eq!(
            outcome(4, &ranked(&rank), &[true; 4], 1, ExecSignal::Off),
            Outcome::Pair {
                best: 1,
                worst: 2,
                margin: 6
            }
        );
    }

    #[test]
    fn duplicates_collapse_and_one_distinct_step_is_too_few() {
        let steps: Vec<String> = ["x", "y", "x", "z", "y"].map(String::from).to_vec();
        let (unique, index) = dedupe(&steps);
        assert_eq!(unique, ["x", "y", "z"]);
        assert_eq!(index, [0, 1, 0, 2, 1]);
        let (unique, _) = dedupe(&["same".to_string(), "same".to_string()]);
        assert_eq!(
            outcome(unique.len(), &[], &[true], 1, ExecSignal::Off),
            Outcome::TooFewUnique
        );
    }

    #[test]
    fn min_margin_drops_close_pairs_and_ties_pick_deterministically() {
        // wins [3, 2, 1, 1]-like spread with margin 2 between best and worst
        let wins = [3, 2, 1, 1];
        assert_eq!(select(&wins, &[true; 4], 3, ExecSignal::Off), Outcome::Tie);
        assert_eq!(
            select(&wins, &[true; 4], 2, ExecSignal::Off),
            Outcome::Pair {
                best: 0,
                worst: 3,
                margin: 2
            }
        );
        // best = earliest of the maxima, worst = latest of the minima
        assert_eq!(
            select(&[4, 4, 0, 0], &[true; 4], 1, ExecSignal::Off),
            Outcome::Pair {
                best: 0,
                worst: 3,
                margin: 4
            }
        );
    }

    #[test]
    fn filter_never_chooses_an_invalid_step_and_tiebreak_prefers_valid() {
        let wins = [6, 4, 2, 0];
        let valid = [false, true, true, false];
        assert_eq!(
            select(&wins, &valid, 1, ExecSignal::Filter),
            Outcome::Pair {
                best: 1,
                worst: 3,
                margin: 4
            }
        );
        assert_eq!(
            select(&wins, &[false; 4], 1, ExecSignal::Filter),
            Outcome::NoValid
        );
        assert_eq!(
            select(&[3, 3, 3], &[false, true, true], 1, ExecSignal::Tiebreak),
            Outcome::Pair {
                best: 1,
                worst: 0,
                margin: 0
            }
        );
        assert_eq!(
            select(&[3, 3, 3], &[false, true, true], 1, ExecSignal::Off),
            Outcome::Tie
        );
    }

    #[test]
    fn mostly_invalid_verdicts_give_no_pair() {
        let mut v = ranked(&[0, 1, 2]);
        for x in v.iter_mut().take(4) {
            x.2 = Invalid;
        }
        assert_eq!(
            outcome(3, &v, &[true; 3], 1, ExecSignal::Off),
            Outcome::JudgeInvalid
        );
        let mut v = ranked(&[0, 1, 2]);
        v[0].2 = Invalid;
        assert!(matches!(
            outcome(3, &v, &[true; 3], 1, ExecSignal::Off),
            Outcome::Pair { .. }
        ));
    }
}

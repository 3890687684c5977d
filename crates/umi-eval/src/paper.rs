//! The paper's static results (Shen et al. 2024, Table 1, ToolBench out-of-domain columns, as
//! printed in the repository's `assets/result_static.png`), and the markdown table that puts a
//! run beside them.

use crate::EvalReport;

/// One row of Table 1 (out-of-domain ToolBench), in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperRow {
    /// Model and set-up as the paper names them.
    pub model: &'static str,
    /// Plan ACC.
    pub plan_acc: f64,
    /// Act. EM.
    pub act_em: f64,
    /// Hallu.
    pub hallu: f64,
    /// Arg. F1 (printed "Aug. F1").
    pub arg_f1: f64,
    /// R-L.
    pub rouge_l: f64,
}

const fn row(model: &'static str, v: [f64; 5]) -> PaperRow {
    PaperRow {
        model,
        plan_acc: v[0],
        act_em: v[1],
        hallu: v[2],
        arg_f1: v[3],
        rouge_l: v[4],
    }
}

/// Table 1, ToolBench out-of-domain, every row (computed upstream on the 400-trajectory
/// `out_of_domain.json`, of which `ood-train` holds 300).
pub const PAPER_OOD_ROWS: &[PaperRow] = &[
    row("ChatGPT (0-shot)", [81.62, 54.67, 8.19, 40.08, 22.85]),
    row("GPT-4 (0-shot)", [77.80, 55.26, 5.12, 47.45, 30.61]),
    row(
        "ToolLLaMA-7B (len = 4096)",
        [68.21, 30.75, 25.35, 25.07, 5.78],
    ),
    row(
        "ToolLLaMA-7B (len = 8192)",
        [77.76, 45.07, 3.45, 40.41, 18.10],
    ),
    row("Single-LLM 7B", [84.61, 56.54, 2.26, 50.09, 47.99]),
    row("Multi-LLM one-stage 7B", [88.42, 53.40, 2.52, 45.79, 46.39]),
    row(
        "Single-LLM multi-task 7B",
        [86.55, 56.89, 2.77, 49.50, 32.58],
    ),
    row("α-UMi w/o reuse 7B", [87.91, 58.02, 2.32, 50.55, 42.59]),
    row("α-UMi w/ reuse 7B", [89.72, 60.47, 0.45, 53.60, 46.26]),
    row("Single-LLM 13B", [86.74, 60.04, 2.03, 52.94, 48.46]),
    row(
        "Multi-LLM one-stage 13B",
        [87.45, 56.71, 3.23, 47.49, 41.62],
    ),
    row(
        "Single-LLM multi-task 13B",
        [86.64, 62.78, 3.42, 53.29, 35.46],
    ),
    row("α-UMi w/o reuse 13B", [87.75, 61.63, 2.95, 52.54, 37.70]),
    row("α-UMi w/ reuse 13B", [88.73, 64.21, 0.24, 57.38, 42.50]),
];

/// A markdown table: `ours` (label, report) rows in bold first, then the paper's rows.
pub fn markdown_table(ours: &[(String, EvalReport)]) -> String {
    let mut out = String::from(
        "| Model | Plan ACC | Act. EM | Hallu. | Arg. F1 | R-L | decisions |\n|---|---|---|---|---|---|---|\n",
    );
    for (label, r) in ours {
        out += &format!(
            "| **{label}** | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
            100.0 * r.plan_em,
            100.0 * r.action_em,
            100.0 * r.hallucination_rate,
            100.0 * r.argument_f1,
            100.0 * r.rouge_l,
            r.samples
        );
    }
    for p in PAPER_OOD_ROWS {
        out += &format!(
            "| {} (paper) | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | 400 traj. |\n",
            p.model, p.plan_acc, p.act_em, p.hallu, p.arg_f1, p.rouge_l
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_puts_ours_first_in_percent() {
        let r = EvalReport {
            samples: 7,
            plan_em: 0.5,
            action_em: 0.25,
            hallucination_rate: 0.0,
            argument_f1: 0.125,
            easy_f1: 0.0,
            hard_f1: 0.0,
            rouge_l: 1.0,
        };
        let t = markdown_table(&[("zero-shot".into(), r)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[2],
            "| **zero-shot** | 50.00 | 25.00 | 0.00 | 12.50 | 100.00 | 7 |"
        );
        assert_eq!(lines.len(), 3 + PAPER_OOD_ROWS.len());
        assert!(lines[3].starts_with("| ChatGPT (0-shot) (paper) | 81.62 |"));
    }
}

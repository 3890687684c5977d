//! Step preference pairs as JSON lines: one prompt (the role prompt up to a step), a chosen and a
//! rejected next step. A row is umi's full record (`../shared/docs/psrlm-design.md` §3.6: token
//! ids and reference log-probabilities recorded while mining) or TRL's standard
//! non-conversational preference format `{"prompt", "chosen", "rejected"}` (text only), so pairs
//! made elsewhere train here too. Fields a row does not use are ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::readers::{ReadError, ReadReport, Skipped, read_text};

/// One row of a pairs file. Either the texts or the token ids (or both) are present.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PreferencePair {
    /// Where the pair came from; rows without one are named `line-N`.
    #[serde(default)]
    pub id: String,
    /// The role whose step this is (`planner`, `caller`), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The prompt text (TRL `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The better step's text, ending with the EOS text (TRL `chosen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<String>,
    /// The worse step's text (TRL `rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// The prompt's token ids, BOS included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_ids: Option<Vec<u32>>,
    /// The chosen step's token ids, EOS included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_ids: Option<Vec<u32>>,
    /// The rejected step's token ids, EOS included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_ids: Option<Vec<u32>>,
    /// `Σ log π_ref(chosen_ids | prompt_ids)`, nats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_chosen_logps: Option<f64>,
    /// `Σ log π_ref(rejected_ids | prompt_ids)`, nats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_rejected_logps: Option<f64>,
}

impl PreferencePair {
    /// Whether the row has token ids for all three parts.
    pub fn has_ids(&self) -> bool {
        self.prompt_ids.is_some() && self.chosen_ids.is_some() && self.rejected_ids.is_some()
    }

    /// Whether the row has the three texts.
    pub fn has_text(&self) -> bool {
        self.prompt.is_some() && self.chosen.is_some() && self.rejected.is_some()
    }
}

/// Reads a JSON-lines pairs file ([`parse_pairs`] of its text).
///
/// # Errors
///
/// [`ReadError::Io`] when the file cannot be read; [`ReadError::Format`] when no line is a pair.
pub fn read_pairs(path: &Path) -> Result<(Vec<PreferencePair>, ReadReport), ReadError> {
    parse_pairs(&read_text(path)?, path)
}

/// The pairs of a JSON-lines text (a pairs file's contents; `path` names it in the report and
/// errors, e.g. a file the web app was given). Blank lines are skipped; a line that is not a
/// JSON object of [`PreferencePair`] fields, or has neither the three texts nor the three id
/// lists, is skipped and reported with its line number and why (the file's other pairs still
/// train).
///
/// # Errors
///
/// [`ReadError::Format`] when no line is a pair.
pub fn parse_pairs(
    text: &str,
    path: &Path,
) -> Result<(Vec<PreferencePair>, ReadReport), ReadError> {
    let mut report = ReadReport::default();
    let mut pairs = Vec::new();
    let skip = |report: &mut ReadReport, index: usize, reason: String| {
        report.skipped.push(Skipped {
            file: PathBuf::from(path),
            index,
            reason,
        });
    };
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        report.records += 1;
        match serde_json::from_str::<PreferencePair>(line) {
            Ok(mut pair) if pair.has_ids() || pair.has_text() => {
                if pair.id.is_empty() {
                    pair.id = format!("line-{}", index + 1);
                }
                pairs.push(pair);
            }
            Ok(_) => skip(
                &mut report,
                index,
                "neither prompt/chosen/rejected texts nor prompt_ids/chosen_ids/rejected_ids"
                    .into(),
            ),
            Err(e) => skip(&mut report, index, format!("not a preference pair: {e}")),
        }
    }
    report.kept = pairs.len();
    if pairs.is_empty() {
        return Err(ReadError::Format {
            path: path.to_path_buf(),
            format: "preference pairs (JSON lines)",
            message: match report.skipped.first() {
                Some(s) => format!("no line is a pair; line {}: {}", s.index + 1, s.reason),
                None => "the file has no pair".into(),
            },
        });
    }
    Ok((pairs, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trl_rows_umi_rows_and_reports_bad_lines() {
        let dir = std::env::temp_dir().join(format!("umi-pairs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pairs.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"prompt": "p", "chosen": " a", "rejected": " b", "extra": 1}"#,
                "\n\n",
                r#"{"id": "x", "prompt_ids": [1, 5], "chosen_ids": [7, 2], "rejected_ids": [8, 2], "ref_chosen_logps": -3.5, "ref_rejected_logps": -4.0}"#,
                "\n",
                r#"{"prompt": "p", "chosen": " a"}"#,
                "\nnot json\n",
            ),
        )
        .unwrap();
        let (pairs, report) = read_pairs(&path).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].id, "line-1");
        assert_eq!(pairs[0].chosen.as_deref(), Some(" a"));
        assert!(!pairs[0].has_ids());
        assert_eq!(pairs[1].ref_rejected_logps, Some(-4.0));
        assert_eq!((report.records, report.kept), (4, 2));
        let lines: Vec<usize> = report.skipped.iter().map(|s| s.index + 1).collect();
        assert_eq!(lines, vec![4, 5]);
        std::fs::write(&path, "{}\n").unwrap();
        let err = read_pairs(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        // a text from elsewhere (a file picked in the web app) is named by its origin
        let (pairs, _) = parse_pairs(
            "\n{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n",
            Path::new("picked.jsonl"),
        )
        .unwrap();
        assert_eq!(pairs[0].id, "line-2");
        let err = parse_pairs("not json\n", Path::new("picked.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("picked.jsonl") && err.contains("line 1"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! API-Bank (`api-bank/` of the shared data) into α-UMi conversations, as designed and checked
//! in the Python prototype `assets/reference/apibank_toolalpaca.py`, whose outputs this reader
//! reproduces record for record.
//!
//! Four kinds of input are read; [`read_api_bank`] tells them apart by extension and content:
//!
//! | input | detected by | one record is | one conversation is |
//! |---|---|---|---|
//! | `lv1-lv2-samples/level-*/…jsonl` | a folder, or the `.jsonl` extension | a file (rows `{"role": "User" \| "AI" \| "API", …}`) | the whole dialogue |
//! | `training-data/lv3-train.json` | objects `{instruction, input, output}` | a step sample | a `Generate AI Response` sample (its input holds the whole call chain) |
//! | `test-data/level-{1,2}-api.json` | objects with `expected_output` | a next-call decision point | its history, then the gold call (no observation) |
//! | `test-data/level-3.json` | objects with `requirement` / `apis` | a requirement with its gold calls | the full trajectory |
//!
//! The mapping (the same for every kind):
//! - the first `User` text is the instruction and the first turn; later `User` rows stay `user`
//!   turns, trailing ones with no reply are dropped;
//! - each API call becomes `assistant "<rationale>\n Next: caller."`, `caller "Action: X\nAction
//!   Input: <json.dumps(param_dict)>"`, `observation <str(output)>` (Python's `str()`, which is how
//!   API-Bank writes `->result` in its text formats; `Exception: …` when `exception` is set);
//! - an AI reply becomes `assistant "<rationale>\n Next: conclusion."` + `conclusion <text>`
//!   (consecutive AI rows joined with `"\n"`); AI narration directly before an API row has no
//!   α-UMi role and is dropped (or becomes the rationale, [`RationaleMode::Narration`]);
//! - API-Bank has no thoughts, so rationales are placeholders ([`RationaleMode`]);
//! - tool docs are `{"Name", "function": description[:256], "input": {p: "type, description"}}`
//!   (GLPFT `prepro_raw_stage_1.py`), from `tool-catalog/tool_catalog.json` for the dialogues, from
//!   the `API descriptions:` of test-data instructions, and from what `ToolSearcher` returned in
//!   lv3-train / level-3 histories; `ToolSearcher` itself comes first (its spec is not in the
//!   catalog). A called API with no doc gets a stub `{"Name", "function": "", "input": {}}`.
//!
//! The `.jsonl` dialogues and the level-1/2-api decision points are cut from the same dialogues
//! (train on one, evaluate on the other, never both); lv3-train requirements repeat with different
//! chains, so split it by instruction.
//!
//! The code follows the same division: `catalog.rs` (tool docs), `dialogue.rs` (dialogue rows
//! into turns, the `.jsonl` files), `request.rs` (the `API-Request: [Name(k='v')]->result` text
//! format), `chains.rs` (lv3-train and level-3) and `test_api.rs` (level-1/2-api); Python
//! literals and `str()` come from the crate's `python` module.

mod catalog;
mod chains;
mod dialogue;
mod request;
mod test_api;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{ReadError, ReadReport, read_json, read_json_array};
use crate::conversation::Conversation;
use chains::{read_level3, read_lv3_train};
use dialogue::read_dialogue;
use test_api::read_test_api;

const FORMAT: &str = "API-Bank";
const NEXT_CALLER: &str = " Next: caller.";
const NEXT_CONCLUSION: &str = " Next: conclusion.";
const TOOL_SEARCHER: &str = "ToolSearcher";

/// The placeholder rationales API-Bank's thought-less dialogues get (the prototype's
/// `--rationale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RationaleMode {
    /// `I will call the "X" API.` before a call; `The API results are enough to reply to the
    /// user.` before a reply when something was called since the last user turn, otherwise
    /// `I will reply to the user directly.`
    #[default]
    Template,
    /// As [`RationaleMode::Template`], but AI narration right before an API row ("Sure, let me
    /// check.") becomes that call's rationale instead of being dropped.
    Narration,
    /// No rationale: the planner turns are the bare `" Next: caller."` / `" Next: conclusion."`.
    Empty,
}

/// How API-Bank is converted (the defaults are the prototype's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiBankOptions {
    /// Placeholder rationales.
    pub rationale: RationaleMode,
    /// Keep `ToolSearcher` calls as ordinary calls (default). When false they are removed with
    /// their tool doc (the specs they returned stay as tools), and level-2-api decision points
    /// whose gold call is `ToolSearcher` are skipped.
    pub keep_toolsearcher: bool,
}

impl Default for ApiBankOptions {
    fn default() -> Self {
        Self {
            rationale: RationaleMode::Template,
            keep_toolsearcher: true,
        }
    }
}

impl ApiBankOptions {
    fn call_turn(&self, api: &str, narration: Option<&str>) -> String {
        let rationale = match (self.rationale, narration) {
            (RationaleMode::Empty, _) => String::new(),
            (RationaleMode::Narration, Some(n)) if !n.is_empty() => n.to_string(),
            _ => format!("I will call the \"{api}\" API."),
        };
        planner_text(&rationale, NEXT_CALLER)
    }

    fn conclude_turn(&self, called_since_user: bool) -> String {
        let rationale = match (self.rationale, called_since_user) {
            (RationaleMode::Empty, _) => "",
            (_, true) => "The API results are enough to reply to the user.",
            (_, false) => "I will reply to the user directly.",
        };
        planner_text(rationale, NEXT_CONCLUSION)
    }
}

fn planner_text(rationale: &str, marker: &str) -> String {
    if rationale.is_empty() {
        marker.to_string()
    } else {
        format!("{rationale}\n{marker}")
    }
}

/// Reads API-Bank with the default [`ApiBankOptions`]; see [`read_api_bank_with`].
///
/// # Errors
///
/// As [`read_api_bank_with`].
pub fn read_api_bank(path: &Path) -> Result<(Vec<Conversation>, ReadReport), ReadError> {
    read_api_bank_with(path, &ApiBankOptions::default())
}

/// Reads API-Bank data at `path`:
/// - a folder: every `.jsonl` dialogue below it (recursively, sorted by path), one record per
///   file;
/// - a `.jsonl` file: that dialogue;
/// - any other file: a JSON array, whose records say what it is: `{instruction, input, output}`
///   (`lv3-train.json`), `{file, id, instruction, input, expected_output}`
///   (`test-data/level-{1,2}-api.json`) or `{requirement, response, apis}` (`level-3.json`).
///
/// Dialogues and level-1/2-api files need the API-Bank root, the first folder at or above
/// `path` holding `tool-catalog/tool_catalog.json`: dialogue tool docs come from the catalog, and
/// level-1/2-api gold arguments that are not Python literals (nested quotes) are taken from the
/// source dialogue in `lv1-lv2-samples/`, as in the prototype.
///
/// `report.records` counts files (dialogues) or array entries; for lv3-train it counts all step
/// samples, and the `Generate API Request` samples that are prefixes of a converted dialogue are
/// neither kept nor skipped (they are decision points inside it); the others are skipped as
/// orphans.
///
/// # Errors
///
/// [`ReadError`] when a file cannot be read or is not JSON, when a JSON file is none of the kinds
/// above, when a folder holds no `.jsonl` file, or when the tool catalog is needed and not found.
pub fn read_api_bank_with(
    path: &Path,
    options: &ApiBankOptions,
) -> Result<(Vec<Conversation>, ReadReport), ReadError> {
    let mut report = ReadReport::default();
    let out = if path.is_dir() || path.extension().is_some_and(|e| e == "jsonl") {
        let files = if path.is_dir() {
            let mut files = Vec::new();
            collect_jsonl(path, &mut files)?;
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            return Err(format_error(path, "no .jsonl dialogue file in this folder"));
        }
        let (_, catalog) = api_bank_root(path)?;
        let mut out = Vec::new();
        for file in &files {
            report.records += 1;
            out.extend(read_dialogue(file, &catalog, options, &mut report)?);
        }
        out
    } else {
        let (records, unreadable) = read_json_array(path, FORMAT, "expected a JSON array")?;
        let has = |key: &str| records.iter().any(|r| r.get(key).is_some());
        let out = if has("expected_output") {
            let (root, catalog) = api_bank_root(path)?;
            read_test_api(path, &records, &root, &catalog, options, &mut report)
        } else if has("requirement") || has("apis") {
            read_level3(path, &records, options, &mut report)
        } else if has("instruction") && has("output") {
            read_lv3_train(path, &records, options, &mut report)
        } else if records.iter().all(Value::is_null) {
            report.records += records.len();
            Vec::new()
        } else {
            return Err(format_error(
                path,
                "neither lv3-train step samples, level-1/2-api decision points nor level-3 \
                 requirements",
            ));
        };
        // records only Python reads were skipped as non-objects: say why
        report.explain(path, unreadable);
        out
    };
    report.kept = out.len();
    Ok((out, report))
}

fn format_error(path: &Path, message: &str) -> ReadError {
    ReadError::Format {
        path: path.to_path_buf(),
        format: FORMAT,
        message: message.into(),
    }
}

fn collect_jsonl(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let io = |source| ReadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_jsonl(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            files.push(path);
        }
    }
    Ok(())
}

type Catalog = HashMap<String, Value>;

/// The API-Bank root at or above `path` and its tool catalog (`name` → spec).
fn api_bank_root(path: &Path) -> Result<(PathBuf, Catalog), ReadError> {
    let start = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(root) = start
        .ancestors()
        .find(|dir| dir.join("tool-catalog/tool_catalog.json").is_file())
    else {
        return Err(format_error(
            path,
            "no tool-catalog/tool_catalog.json in its folder or any folder above it (the API-Bank \
             root), which dialogues and level-1/2-api files need",
        ));
    };
    let catalog_path = root.join("tool-catalog/tool_catalog.json");
    let Value::Array(specs) = read_json(&catalog_path, "API-Bank tool catalog")? else {
        return Err(format_error(
            &catalog_path,
            "the tool catalog is not a JSON array",
        ));
    };
    let catalog = specs
        .into_iter()
        .filter_map(|s| Some((s.get("name")?.as_str()?.to_string(), s)))
        .collect();
    Ok((root.to_path_buf(), catalog))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("umi-api-bank-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tool-catalog")).unwrap();
        std::fs::write(
            dir.join("tool-catalog/tool_catalog.json"),
            r#"[{"name": "GetToday", "description": "Get today.", "input_parameters": {}},
                {"name": "AddAlarm", "description": "Add an alarm.", "input_parameters": {"time": {"type": "str", "description": "When."}}}]"#,
        )
        .unwrap();
        dir
    }

    #[test]
    fn dialogues_convert_and_bad_files_are_skipped_with_file_and_line() {
        let root = scratch("dialogues");
        let dir = root.join("lv1-lv2-samples/level-1-given-desc");
        std::fs::create_dir_all(&dir).unwrap();
        let user = r#"{"role": "User", "text": "Wake me at 7."}"#;
        let api = r#"{"role": "API", "api_name": "AddAlarm", "param_dict": {"time": "07:00"}, "result": {"input": {"time": "07:00"}, "output": {"ok": true, "n": 1.5}, "exception": null}}"#;
        let files = [
            (
                "AddAlarm-GetMeeting-level-1-1.jsonl",
                format!(
                    "{user}\n{{\"role\": \"AI\", \"text\": \"Sure.\"}}\n{api}\n{{\"role\": \"AI\", \"text\": \"Done.\"}}\n{{\"role\": \"AI\", \"text\": \"Bye.\"}}\n{user}\n"
                ),
            ),
            ("AddAlarm-level-1-2.jsonl", String::new()),
            (
                "AddAlarm-level-1-3.jsonl",
                format!("{user}\n{{\"role\": \"AI\", \"text\": \"[AddAlarm(time='7')]\"}}\n"),
            ),
            (
                "AddAlarm-level-1-4.jsonl",
                format!("{user}\n{{\"role\": \"Robot\", \"text\": \"x\"}}\n"),
            ),
            (
                "AddAlarm-level-1-5.jsonl",
                format!("{user}\n{{\"role\": \"AI\"\n"),
            ),
            ("AddAlarm-level-1-6.jsonl", format!("{api}\n{user}\n")),
        ];
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let (convs, report) = read_api_bank(&root.join("lv1-lv2-samples")).unwrap();
        assert_eq!((report.records, report.kept, convs.len()), (6, 1, 1));
        let skipped: Vec<(String, usize, &str)> = report
            .skipped
            .iter()
            .map(|s| {
                (
                    s.file.file_name().unwrap().to_string_lossy().into_owned(),
                    s.index,
                    s.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            skipped[0],
            ("AddAlarm-level-1-2.jsonl".into(), 0, "empty file")
        );
        assert_eq!(
            skipped[1],
            (
                "AddAlarm-level-1-3.jsonl".into(),
                1,
                "API call written inline in AI text, not executed"
            )
        );
        assert_eq!((skipped[2].1, skipped[2].2), (1, "unknown role \"Robot\""));
        assert_eq!(skipped[3].1, 1);
        assert!(skipped[3].2.starts_with("line is not JSON"), "{skipped:?}");
        assert_eq!(
            skipped[4],
            (
                "AddAlarm-level-1-6.jsonl".into(),
                0,
                "the dialogue does not start with a User row"
            )
        );
        assert!(
            report.skipped[1]
                .to_string()
                .contains("AddAlarm-level-1-3.jsonl record 1")
        );

        let c = &convs[0];
        let names: Vec<&str> = c
            .tools
            .iter()
            .map(|t| t["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["AddAlarm"]); // GetMeeting is not in the catalog
        assert_eq!(c.tools[0]["input"]["time"], "str, When.");
        let turns: Vec<(&str, &str)> = c
            .conversations
            .iter()
            .map(|t| (t.from.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            turns,
            [
                ("user", "Wake me at 7."),
                (
                    "assistant",
                    "I will call the \"AddAlarm\" API.\n Next: caller."
                ),
                (
                    "caller",
                    "Action: AddAlarm\nAction Input: {\"time\": \"07:00\"}"
                ),
                ("observation", "{'ok': True, 'n': 1.5}"),
                (
                    "assistant",
                    "The API results are enough to reply to the user.\n Next: conclusion."
                ),
                ("conclusion", "Done.\nBye."),
            ]
        );
        let narration = ApiBankOptions {
            rationale: RationaleMode::Narration,
            ..Default::default()
        };
        let (convs, _) = read_api_bank_with(&dir.join(files[0].0), &narration).unwrap();
        assert_eq!(convs[0].conversations[1].value, "Sure.\n Next: caller.");

        let lonely =
            std::env::temp_dir().join(format!("umi-api-bank-lonely-{}.jsonl", std::process::id()));
        std::fs::write(&lonely, user).unwrap();
        let err = read_api_bank(&lonely).unwrap_err().to_string();
        assert!(err.contains("tool_catalog.json"), "{err}");
        std::fs::remove_file(&lonely).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn json_kinds_skip_malformed_records_with_their_index() {
        let root = scratch("json");
        let write = |name: &str, text: &str| {
            let path = root.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let spec_line = r#"{\"apiCode\": \"ToolSearcher\"}"#;
        let ai = format!(
            r#"{{"instruction": "Generate a response", "input": "{spec_line}\nUser: When?\nAPI-Request: [GetToday()]->2023-03-01\nGenerate AI Response: ", "output": "AI: Today.\n"}}"#
        );
        let step = format!(
            r#"{{"instruction": "i", "input": "{spec_line}\nUser: When?\nGenerate API Request: ", "output": "API-Request: [GetToday()]"}}"#
        );
        let orphan = format!(
            r#"{{"instruction": "i", "input": "{spec_line}\nUser: Where?\nGenerate API Request: ", "output": "API-Request: [GetToday()]"}}"#
        );
        let lv3 = write(
            "lv3-train.json",
            &format!(
                r#"[{ai}, {step}, {orphan}, {{"instruction": "i", "input": "x"}}, {ai}, {{"instruction": "i", "input": "{spec_line}\nHello\nGenerate AI Response: ", "output": "AI: x"}}]"#
            ),
        );
        let (convs, report) = read_api_bank(&lv3).unwrap();
        assert_eq!((report.records, report.kept), (6, 1));
        let skipped: Vec<(usize, &str)> = report
            .skipped
            .iter()
            .map(|s| (s.index, s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    3,
                    "not exactly the string fields instruction, input, output"
                ),
                (4, "duplicate of sample 0"),
                (5, "the second input line is not \"User: …\""),
                (
                    2,
                    "API step sample not a prefix of any complete dialogue (orphan)"
                ),
            ]
        );
        assert_eq!(convs[0].conversations[3].value, "2023-03-01");
        assert_eq!(convs[0].conversations[5].value, "Today.");

        let level3 = write(
            "level-3.json",
            r#"[{"requirement": " Today?", "response": "It is Monday.", "apis": [{"api_name": "ToolSearcher", "input": {"keywords": "today"}, "output": {"output": {"name": "GetToday", "description": "Get today.", "input_parameters": {"none": "x"}}, "exception": null}}, {"api_name": "GetToday", "input": {}, "output": {"output": "Monday", "exception": null}}]},
                {"requirement": "x", "response": "y", "apis": []},
                {"requirement": "x", "response": "y", "apis": [{"api_name": "GetToday", "input": {}}]}]"#,
        );
        let (convs, report) = read_api_bank(&level3).unwrap();
        assert_eq!((report.records, report.kept), (3, 1));
        assert_eq!(
            report.skipped.iter().map(|s| s.index).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(report.skipped[1].reason.contains("apis[0]"));
        let names: Vec<&str> = convs[0]
            .tools
            .iter()
            .map(|t| t["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["ToolSearcher", "GetToday"]);
        assert_eq!(convs[0].instruction, "Today?");

        let desc = r#"API descriptions:\n{\"name\": \"GetToday\", \"description\": \"Get today.\", \"input_parameters\": {}}"#;
        let point = |expected: &str, input: &str| {
            format!(
                r#"{{"file": "GetToday-level-1-1.jsonl", "id": 0, "instruction": "Generate. {desc}", "input": "{input}", "expected_output": "{expected}"}}"#
            )
        };
        let api = write(
            "level-1-api.json",
            &format!(
                "[{}, {}, {}, {}, {}]",
                point(
                    "API-Request: [AddAlarm(time='7')]",
                    r"User: Hi\nAI: Sure.\nGenerate API Request:\n"
                ),
                point(
                    "API-Request: [AddAlarm(time='7')]",
                    r"User: Hi\nAI: Sure.\nGenerate API Request:\n"
                ),
                point("GetToday()", r"User: Hi\n"),
                point("API-Request: [GetToday()]", r"User: Hi\nRobot: x\n"),
                point("API-Request: [GetToday()]", r"AI: Hi\n"),
            ),
        );
        let (convs, report) = read_api_bank(&api).unwrap();
        assert_eq!((report.records, report.kept), (5, 1));
        let skipped: Vec<(usize, &str)> = report
            .skipped
            .iter()
            .map(|s| (s.index, s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped[0],
            (1, "GetToday-level-1-1.jsonl: exact duplicate of record 0")
        );
        assert_eq!(
            skipped[1],
            (
                2,
                "GetToday-level-1-1.jsonl: expected_output is not API-Request: [Name(args)]"
            )
        );
        assert_eq!((skipped[2].0, skipped[3].0), (3, 4));
        assert!(skipped[2].1.contains("unknown input line \"Robot: x\""));
        // the gold API is not among the descriptions: added from the catalog
        let names: Vec<&str> = convs[0]
            .tools
            .iter()
            .map(|t| t["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["GetToday", "AddAlarm"]);
        assert_eq!(
            convs[0].conversations.last().unwrap().value,
            "Action: AddAlarm\nAction Input: {\"time\": \"7\"}"
        );
        assert_eq!(convs[0].conversations.len(), 3);

        let err = read_api_bank(&write("other.json", r#"[{"a": 1}]"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

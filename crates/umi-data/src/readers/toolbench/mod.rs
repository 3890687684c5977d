//! ToolBench raw DFSDT answer files into α-UMi conversations: an exact port of GLPFT's
//! `process_data/toolbench/prepro_raw_stage_1.py` followed by `prepro_raw_stage_2.py`
//! (X-PLUG/Multi-LLM-Agent at f9eeef7), except that every record is kept: the reference
//! writes only the first 20 records of stage 1 (`json.dump(data[:20], …)`), a bug that leaves
//! it a handful of training samples from the full data.
//!
//! The two stages are exposed separately so each can be checked against its reference output:
//!
//! - [`stage1_record`]: one parsed answer file → `{"tools", "instruction", "chains"}` (a
//!   `raw_data_stage_1.json` record); its tool docs come from [`tool_doc`] and
//!   [`describe_argument`], which `umi-tools` also uses, so there is one implementation of the
//!   ToolBench function → α-UMi tool doc conversion;
//! - [`stage2_json`]: one stage-1 record → `{"tools", "instruction", "conversations"}` (a
//!   `raw_data_stage_2.json` record), as JSON, exactly as the reference writes it;
//! - [`stage2_record`]: the same as a [`Conversation`];
//! - [`read_toolbench`] / [`read_toolbench_excluding`]: files or folders of answer files, both
//!   stages, bad files skipped and reported.
//!
//! Where the reference would crash (a missing key, a value of the wrong type), the functions
//! return an error naming what is wrong, and the readers skip that file with the reason.
//!
//! # Python behaviour reproduced
//!
//! - Slices count Unicode code points (`name[-64:]`, `description[:256]`,
//!   `argument_description[-256:]`).
//! - The embedded JSON texts (tool observations, `Finish` arguments) are parsed as Python's
//!   `json.loads` parses them. Python also accepts `NaN`, `Infinity`, `-Infinity`, numbers
//!   beyond the `f64` range and lone UTF-16 surrogate escapes, none of which a [`Value`] or a
//!   Rust string can hold. Such a text makes the record an error (skipped by the readers)
//!   instead of silently taking the "not JSON" path the reference would not take; the same
//!   goes for nesting deeper than `serde_json`'s limit of 128.
//! - Remaining differences: integers beyond the 64-bit range parse as floats (this reaches no
//!   [`Conversation`]: stage 2 reads only strings from the chains), and values the reference
//!   would carry along by accident of Python's duck typing but the role scripts after it
//!   cannot use (a list as a tool name or description, a non-string query, a string as
//!   `chains`) are errors.

mod stage1;
mod stage2;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{ReadError, ReadReport};
use crate::conversation::Conversation;
use crate::python::json::{PyJson, py_json_loads};
pub use crate::tool_doc::{describe_argument, tool_doc};
pub use stage1::stage1_record;
pub use stage2::{stage2_json, stage2_record};

/// ToolBench's test query sets, in the order `prepro_raw_stage_1.py` reads them from
/// `<data_dir>/test_query_ids/<set>.json`.
pub const TEST_QUERY_SETS: [&str; 6] = [
    "G1_category",
    "G1_instruction",
    "G1_tool",
    "G2_category",
    "G2_instruction",
    "G3_instruction",
];

/// Reads ToolBench raw answer files (`data/answer/G{1,2,3}_answer/<query id>_….json`, as
/// written by ToolBench's DFSDT answer generation) into α-UMi conversations, as
/// `prepro_raw_stage_1.py` + `prepro_raw_stage_2.py` do but keeping every record.
///
/// `path` is one answer file, or a folder searched recursively for `*.json` files, which are
/// read in the order of their sorted paths (the reference takes `G1_answer`, `G2_answer`,
/// `G3_answer` in turn, each in `os.listdir` order, which is unspecified; sorted paths give
/// that group order for the ToolBench layout and a deterministic order within each group).
///
/// Each file is one record (`report.records` counts files, skipped files have index 0). A
/// file is skipped, with the reason, when it is not UTF-8 JSON, lacks
/// `answer_generation.train_messages` (the reference skips these silently; ToolBench writes
/// none when `valid_data` is false), or holds something the reference would crash on.
///
/// The reference also drops every file whose query id is in ToolBench's test sets; this
/// function drops nothing, see [`read_toolbench_excluding`] and [`load_test_query_ids`].
///
/// # Errors
///
/// [`ReadError::Io`] when `path` does not exist or a folder cannot be listed;
/// [`ReadError::Format`] when folders nest more than 64 deep (a symbolic link loop).
pub fn read_toolbench(path: &Path) -> Result<(Vec<Conversation>, ReadReport), ReadError> {
    read_toolbench_excluding(path, &HashSet::new())
}

/// [`read_toolbench`], skipping every file whose query id (its name up to the first `_`,
/// `"57"` for `57_ChatGPT_DFS_woFilter_w2.json`) is in `test_ids`, as the reference does with
/// the ids of [`load_test_query_ids`]. The ids of all sets form one pool, so an id drops the
/// files of that number in every group (`"10"` drops both `G1_answer/10_…` and
/// `G2_answer/10_…`). Excluded files are counted and reported as skipped.
///
/// # Errors
///
/// As [`read_toolbench`].
pub fn read_toolbench_excluding(
    path: &Path,
    test_ids: &HashSet<String>,
) -> Result<(Vec<Conversation>, ReadReport), ReadError> {
    let mut report = ReadReport::default();
    let mut out = Vec::new();
    for file in answer_files(path)? {
        report.records += 1;
        match convert_file(&file, test_ids) {
            Ok(c) => out.push(c),
            Err(reason) => report.skip(&file, 0, reason),
        }
    }
    report.kept = out.len();
    Ok((out, report))
}

/// Reads ToolBench's test query ids from `<data_dir>/test_query_ids/<set>.json` for every set
/// of [`TEST_QUERY_SETS`], as `prepro_raw_stage_1.py` does: each file is a JSON object whose
/// keys are the ids (`{"<query id>": …}`); a JSON array contributes its string items.
///
/// # Errors
///
/// [`ReadError`] when one of the six files is missing or not a JSON object or array (the
/// reference crashes too).
pub fn load_test_query_ids(data_dir: &Path) -> Result<HashSet<String>, ReadError> {
    let mut ids = HashSet::new();
    for set in TEST_QUERY_SETS {
        let path = data_dir.join("test_query_ids").join(format!("{set}.json"));
        match super::read_json(&path, "ToolBench test query ids")? {
            Value::Object(o) => ids.extend(o.into_iter().map(|(k, _)| k)),
            // Python's `list(...)` keeps the items; only strings can equal a file's query id.
            Value::Array(a) => ids.extend(a.into_iter().filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })),
            _ => {
                return Err(ReadError::Format {
                    path,
                    format: "ToolBench test query ids",
                    message: "expected a JSON object keyed by query id".into(),
                });
            }
        }
    }
    Ok(ids)
}

/// The query id of an answer file: its name up to the first `_` (the whole name without one),
/// as the reference's `file.split('_')[0]`.
pub fn query_id(file_name: &str) -> &str {
    file_name.split('_').next().unwrap_or(file_name)
}

/// The files `path` stands for: itself, or the `*.json` files under it, sorted by path.
fn answer_files(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReadError::Io { path, source }
    };
    if !std::fs::metadata(path).map_err(io(path))?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut folders = vec![(path.to_path_buf(), 0usize)];
    while let Some((folder, depth)) = folders.pop() {
        if depth > 64 {
            return Err(ReadError::Format {
                path: folder,
                format: "ToolBench raw answer files",
                message: "folders nested more than 64 deep (a symbolic link loop?)".into(),
            });
        }
        for entry in std::fs::read_dir(&folder).map_err(io(&folder))? {
            let entry = entry.map_err(io(&folder))?;
            let p = entry.path();
            // follows symbolic links; a dangling one is read (and reported) as a file
            if std::fs::metadata(&p).is_ok_and(|m| m.is_dir()) {
                folders.push((p, depth + 1));
            } else if p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One answer file through both stages, or why it is skipped.
fn convert_file(file: &Path, test_ids: &HashSet<String>) -> Result<Conversation, String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let id = query_id(&name);
    if test_ids.contains(id) {
        return Err(format!(
            "query id {id} is a test query (the reference drops test queries)"
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let answer = match py_json_loads(super::strip_bom(&text)) {
        PyJson::Parsed(v) => v,
        PyJson::Invalid(e) => return Err(format!("not JSON: {e}")),
        PyJson::Unrepresentable(why) => return Err(why),
    };
    let record = stage1_record(&answer)
        .map_err(|e| format!("stage 1: {e}"))?
        .ok_or(
            "no answer_generation.train_messages (ToolBench writes none when valid_data is \
             false; the reference skips such files)",
        )?;
    stage2_record(&record).map_err(|e| format!("stage 2: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Speaker, Turn};
    use serde_json::json;

    #[test]
    fn folders_are_read_in_path_order_and_bad_files_reported() {
        let dir = std::env::temp_dir().join(format!("umi-toolbench-{}", std::process::id()));
        let g1 = dir.join("answer/G1_answer");
        std::fs::create_dir_all(&g1).unwrap();
        let good = |query: &str| {
            json!({"answer_generation": {"query": query, "function": [], "train_messages": [[
                {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                {"role": "assistant", "content": "a", "function_call": {"name": "Finish",
                 "arguments": "{\"return_type\": \"give_answer\", \"final_answer\": \"done\"}"}}
            ]]}})
            .to_string()
        };
        std::fs::write(g1.join("2_x.json"), good("second")).unwrap();
        std::fs::write(g1.join("10_x.json"), good("first")).unwrap();
        std::fs::write(g1.join("3_bad.json"), "{\"answer_generation\": ").unwrap();
        std::fs::write(
            g1.join("4_invalid.json"),
            r#"{"answer_generation": {"valid_data": false}}"#,
        )
        .unwrap();
        std::fs::write(g1.join("notes.txt"), "not an answer file").unwrap();

        let (convs, report) = read_toolbench(&dir).unwrap();
        let queries: Vec<&str> = convs.iter().map(|c| c.instruction.as_str()).collect();
        assert_eq!(queries, ["first", "second"], "sorted paths: 10_ before 2_");
        assert_eq!(
            (report.records, report.kept, report.skipped.len()),
            (4, 2, 2)
        );
        assert_eq!(report.skipped[0].file, g1.join("3_bad.json"));
        assert!(
            report.skipped[0].reason.starts_with("not JSON"),
            "{report:?}"
        );
        assert!(
            report.skipped[0]
                .to_string()
                .contains("3_bad.json record 0: not JSON")
        );
        assert_eq!(report.skipped[1].file, g1.join("4_invalid.json"));
        assert!(report.skipped[1].reason.contains("train_messages"));
        assert_eq!(
            convs[0].conversations.last().unwrap(),
            &Turn::new(Speaker::Conclusion, "done")
        );

        // one file; test ids
        let (convs, report) = read_toolbench(&g1.join("2_x.json")).unwrap();
        assert_eq!((convs.len(), report.records), (1, 1));
        let ids = HashSet::from(["10".to_string()]);
        let (convs, report) = read_toolbench_excluding(&dir, &ids).unwrap();
        assert_eq!(convs.len(), 1);
        assert!(
            report.skipped[0].reason.contains("query id 10"),
            "{report:?}"
        );

        assert!(load_test_query_ids(&dir).is_err());
        std::fs::create_dir_all(dir.join("test_query_ids")).unwrap();
        for (i, set) in TEST_QUERY_SETS.iter().enumerate() {
            let ids = if i == 0 {
                json!({"10": 1, "7": 2})
            } else {
                json!(["3", 4])
            };
            std::fs::write(
                dir.join(format!("test_query_ids/{set}.json")),
                ids.to_string(),
            )
            .unwrap();
        }
        let ids = load_test_query_ids(&dir).unwrap();
        assert_eq!(ids, HashSet::from(["10".into(), "7".into(), "3".into()]));

        let err = read_toolbench(&dir.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn query_ids_are_the_name_up_to_the_first_underscore() {
        assert_eq!(query_id("57_ChatGPT_DFS_woFilter_w2.json"), "57");
        assert_eq!(query_id("57.json"), "57.json");
    }
}

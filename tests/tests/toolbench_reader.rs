//! The ToolBench reader reproduces GLPFT's `prepro_raw_stage_1.py` + `prepro_raw_stage_2.py`:
//!
//! - stage 2 over the released `raw_data_stage_1.json` gives `raw_data_stage_2.json`, record by
//!   record, key order included;
//! - stage 1 over the 15 ToolBench example answer files gives
//!   `assets/reference/toolbench_stage1_expected.json`, and the whole reader gives
//!   `assets/reference/toolbench_stage2_expected.json`; both were written by the independent
//!   Python port `assets/reference/toolbench_stage12.py` (sorted file order, no test ids).
//!
//! `Value`'s `==` ignores key order (its maps compare as sets), so records are also compared
//! as serialised text, where order counts.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::Value;
use umi_data::readers::toolbench::{
    read_toolbench, read_toolbench_excluding, stage1_record, stage2_json, stage2_record,
};
use umi_data::readers::{DataFormat, read};
use umi_tests::{assets, shared_data};

fn load(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn records(path: PathBuf) -> Vec<Value> {
    match load(path) {
        Value::Array(records) => records,
        other => panic!("expected a list of records, got {other}"),
    }
}

fn raw_data(stage: u8) -> Vec<Value> {
    records(shared_data().join(format!(
        "alpha-umi-toolbench/train-example/raw_data/raw_data_stage_{stage}.json"
    )))
}

fn answer_dir() -> PathBuf {
    shared_data().join("toolbench-data-example/answer")
}

/// The example answer files in the reference's group order, sorted within each group.
fn answer_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for group in ["G1_answer", "G2_answer", "G3_answer"] {
        let mut in_group: Vec<PathBuf> = std::fs::read_dir(answer_dir().join(group))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        in_group.sort();
        files.extend(in_group);
    }
    files
}

/// Equal as values and as text (key order).
fn assert_same(got: &Value, want: &Value, what: &str) {
    assert_eq!(got, want, "{what}");
    assert_eq!(got.to_string(), want.to_string(), "{what}: key order");
}

#[test]
fn stage2_reproduces_raw_data_stage_2() {
    let (stage1, stage2) = (raw_data(1), raw_data(2));
    assert_eq!((stage1.len(), stage2.len()), (20, 20));
    let mut turns = 0;
    for (i, (input, want)) in stage1.iter().zip(&stage2).enumerate() {
        let got = stage2_json(input).unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_same(&got, want, &format!("record {i}"));
        let conversation = stage2_record(input).unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_same(
            &serde_json::to_value(&conversation).unwrap(),
            want,
            &format!("record {i} as a Conversation"),
        );
        turns += conversation.conversations.len();
    }
    assert_eq!(turns, 243, "all turns of the fixture");
}

#[test]
fn stage1_reproduces_the_python_port_on_the_example_answers() {
    let want = records(assets().join("reference/toolbench_stage1_expected.json"));
    let mut got = Vec::new();
    let mut skipped = Vec::new();
    for path in answer_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match stage1_record(&load(path)).unwrap_or_else(|e| panic!("{name}: {e}")) {
            Some(record) => got.push(record),
            None => skipped.push(name),
        }
    }
    assert_eq!(
        skipped,
        [
            "69_ChatGPT_DFS_woFilter_w2.json",
            "8_ChatGPT_DFS_woFilter_w2.json"
        ],
        "the two files without train_messages"
    );
    assert_eq!((got.len(), want.len()), (13, 13));
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_same(got, want, &format!("record {i}"));
    }
    let empty_descriptions = got
        .iter()
        .flat_map(|r| r["tools"].as_array().unwrap())
        .flat_map(|t| t["input"].as_object().unwrap().values())
        .filter(|v| v.as_str().is_some_and(|s| s.ends_with(", ")))
        .count();
    assert!(
        empty_descriptions > 0,
        "the examples exercise empty argument descriptions (\"string, \")"
    );
}

#[test]
fn the_answer_folder_reads_into_13_conversations_and_reports_2_skipped() {
    let (conversations, report) = read(DataFormat::ToolBench, &answer_dir()).unwrap();
    assert_eq!((report.records, report.kept), (15, 13), "{report}");
    let skipped: Vec<(PathBuf, String)> = report
        .skipped
        .iter()
        .map(|s| (s.file.clone(), s.to_string()))
        .collect();
    assert_eq!(skipped.len(), 2, "{report:?}");
    for ((file, shown), want) in skipped.iter().zip([
        "G1_answer/69_ChatGPT_DFS_woFilter_w2.json",
        "G3_answer/8_ChatGPT_DFS_woFilter_w2.json",
    ]) {
        assert_eq!(file, &answer_dir().join(want));
        assert!(
            shown.contains(want) && shown.contains("train_messages"),
            "{shown}"
        );
    }

    let want = records(assets().join("reference/toolbench_stage2_expected.json"));
    assert_eq!(want.len(), 13);
    for (i, (got, want)) in conversations.iter().zip(&want).enumerate() {
        assert_same(
            &serde_json::to_value(got).unwrap(),
            want,
            &format!("conversation {i}"),
        );
    }
    let mut by_role = std::collections::BTreeMap::new();
    for turn in conversations.iter().flat_map(|c| &c.conversations) {
        *by_role.entry(turn.from.as_str()).or_insert(0) += 1;
    }
    assert_eq!(
        by_role.into_iter().collect::<Vec<_>>(),
        [
            ("assistant", 50),
            ("caller", 37),
            ("conclusion", 9),
            ("observation", 37),
            ("user", 20)
        ]
    );

    // one file on its own
    let (one, report) = read_toolbench(&answer_files()[0]).unwrap();
    assert_eq!((one.len(), report.records), (1, 1));
    assert_eq!(one[0], conversations[0]);
}

#[test]
fn a_test_query_id_drops_that_query_in_every_group() {
    let ids = HashSet::from(["10".to_string()]);
    let (conversations, report) = read_toolbench_excluding(&answer_dir(), &ids).unwrap();
    assert_eq!((report.records, report.kept), (15, 11), "{report:?}");
    let dropped: Vec<String> = report
        .skipped
        .iter()
        .filter(|s| s.reason.contains("test query"))
        .map(|s| s.to_string())
        .collect();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert!(dropped[0].contains("G1_answer/10_") && dropped[1].contains("G2_answer/10_"));
    assert_eq!(conversations.len(), 11);
}

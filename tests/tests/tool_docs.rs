//! Tool docs from the real datasets in `../shared/data` load into `ToolSpec`s: ToolAlpaca's
//! OpenAPI `Documentation`, ToolBench's raw `function` lists, and α-UMi conversation records.

use serde_json::Value;
use umi_tests::{assets, shared_data};
use umi_tools::load_tool_specs;

fn read(path: &str) -> Value {
    let p = shared_data().join(path);
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

#[test]
fn toolalpaca_openapi_documentation_loads() {
    for file in [
        "toolalpaca-eval/eval_real.json",
        "toolalpaca-eval/eval_simulated.json",
    ] {
        for (i, item) in read(file).as_array().unwrap().iter().enumerate() {
            let doc = item["Documentation"].as_str().unwrap();
            let specs =
                load_tool_specs(doc, &format!("{file}#{i}")).unwrap_or_else(|e| panic!("{e}"));
            assert!(!specs.is_empty(), "{file}#{i}");
            for s in &specs {
                let http = s.http.as_ref().unwrap();
                assert!(http.url.starts_with("http"), "{file}#{i}: {}", http.url);
                assert!(s.host().is_some());
            }
        }
    }
}

#[test]
fn toolbench_function_lists_convert_as_alpha_umi_stage_1() {
    // The docs are compared with the tools of the stage-1 records the Python port wrote
    // (assets/reference/toolbench_stage12.py): counts and lengths alone did not notice that an
    // empty argument description lost its ", " ("string" where the reference writes
    // "string, ").
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(assets().join("reference/toolbench_stage1_expected.json"))
            .unwrap(),
    )
    .unwrap();
    let mut expected = expected.as_array().unwrap().iter();
    let dir = shared_data().join("toolbench-data-example/answer");
    let mut files = 0;
    for group in ["G1_answer", "G2_answer", "G3_answer"] {
        let mut paths: Vec<_> = std::fs::read_dir(dir.join(group))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort(); // the order of the expected records
        for path in paths {
            let answer: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let functions = &answer["answer_generation"]["function"];
            let specs =
                load_tool_specs(&functions.to_string(), &path.display().to_string()).unwrap();
            let with_finish = functions.as_array().unwrap().len();
            assert_eq!(
                specs.len() + 1,
                with_finish,
                "{}: every function but Finish",
                path.display()
            );
            assert!(
                specs
                    .iter()
                    .all(|s| s.name.chars().count() <= 64 && s.description.chars().count() <= 256)
            );
            // the two files without train_messages have no stage-1 record
            if answer["answer_generation"].get("train_messages").is_some() {
                let docs: Vec<Value> = specs.iter().map(|s| Value::Object(s.doc())).collect();
                let want = &expected.next().unwrap()["tools"];
                assert_eq!(
                    Value::Array(docs).to_string(),
                    want.to_string(),
                    "{}",
                    path.display()
                );
            }
            files += 1;
        }
    }
    assert_eq!(files, 15);
    assert!(expected.next().is_none());
}

#[test]
fn alpha_umi_conversation_records_load() {
    let records = read("alpha-umi-toolbench/train-example/raw_data/raw_data_stage_2.json");
    for record in records.as_array().unwrap() {
        let specs = load_tool_specs(&record.to_string(), "raw_data_stage_2.json").unwrap();
        let docs: Vec<Value> = specs.iter().map(|s| Value::Object(s.doc())).collect();
        assert_eq!(
            Value::Array(docs),
            record["tools"],
            "docs survive a round trip in order"
        );
    }
}

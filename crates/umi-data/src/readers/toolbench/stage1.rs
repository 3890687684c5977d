//! Stage 1, `prepro_raw_stage_1.py`: one parsed answer file → `{"tools", "instruction",
//! "chains"}`.

use serde_json::{Map, Value};

use crate::python::json::kind;
use crate::tool_doc::tool_doc;

/// Stage 1 for one parsed answer file: `{"tools", "instruction", "chains"}`, in that key
/// order, as `prepro_raw_stage_1.py` builds a `raw_data_stage_1.json` record.
///
/// - `tools`: [`tool_doc`] of each entry of `answer_generation.function`, `Finish` dropped;
/// - `instruction`: `answer_generation.query`, as is;
/// - `chains`: the last element of `answer_generation.train_messages` (the full trajectory:
///   ToolBench stores one message list per assistant step), copied verbatim.
///
/// Returns `Ok(None)` when the file has no `answer_generation` or no
/// `answer_generation.train_messages`, which the reference skips silently. `valid_data`,
/// `finish_type` and `win` are not checked: give-up trajectories are kept.
///
/// # Errors
///
/// Where the reference would crash: a top level or `answer_generation` that is not an object,
/// a missing or non-string `query`, a `function` list that is not a list or a bad entry of it
/// (see [`tool_doc`]), an empty or non-list `train_messages`.
pub fn stage1_record(answer: &Value) -> Result<Option<Value>, String> {
    let Value::Object(answer) = answer else {
        return Err(format!("the file holds {}, not an object", kind(answer)));
    };
    let Some(generation) = answer.get("answer_generation") else {
        return Ok(None);
    };
    let Value::Object(generation) = generation else {
        return Err(format!(
            "answer_generation is {}, not an object",
            kind(generation)
        ));
    };
    if !generation.contains_key("train_messages") {
        return Ok(None);
    }
    let instruction = match generation.get("query") {
        Some(q @ Value::String(_)) => q.clone(),
        Some(q) => return Err(format!("answer_generation.query is {}", kind(q))),
        None => return Err("answer_generation has no query".into()),
    };
    let functions = match generation.get("function") {
        Some(Value::Array(list)) => list,
        Some(f) => return Err(format!("answer_generation.function is {}", kind(f))),
        None => return Err("answer_generation has no function list".into()),
    };
    let mut tools = Vec::new();
    for (i, function) in functions.iter().enumerate() {
        if let Some(doc) = tool_doc(function).map_err(|e| format!("function #{i}: {e}"))? {
            tools.push(Value::Object(doc));
        }
    }
    let chains = match &generation["train_messages"] {
        Value::Array(steps) => steps
            .last()
            .ok_or("answer_generation.train_messages is empty")?
            .clone(),
        other => {
            return Err(format!(
                "answer_generation.train_messages is {}, not a list",
                kind(other)
            ));
        }
    };
    let mut record = Map::new();
    record.insert("tools".into(), Value::Array(tools));
    record.insert("instruction".into(), instruction);
    record.insert("chains".into(), chains);
    Ok(Some(Value::Object(record)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool_doc::describe_argument;
    use serde_json::json;

    #[test]
    fn stage1_converts_tools_as_the_reference() {
        let long_name = format!("{}é{}", "x".repeat(70), "y".repeat(10));
        let answer = json!({"answer_generation": {
            "valid_data": false,
            "query": "q",
            "function": [
                {"name": long_name, "description": "d".repeat(300), "parameters": {"type": "object",
                 "properties": {
                    "empty": {"type": "string", "description": ""},
                    "long": {"type": "string", "description": format!("{}end", "z".repeat(300))},
                    "enum_only": {"type": "string", "enum": ["a"]},
                    "odd": {"type": ["string", "null"]}
                 }, "required": []}},
                {"name": "Finish", "description": "", "parameters": {}}
            ],
            "train_messages": [[{"role": "system"}], [{"role": "system", "valid": true}, {"role": "user"}]]
        }});
        let record = stage1_record(&answer).unwrap().unwrap();
        let keys: Vec<&String> = record.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["tools", "instruction", "chains"]);
        let tools = record["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1, "Finish is dropped");
        let name = tools[0]["Name"].as_str().unwrap();
        assert_eq!(name.chars().count(), 64);
        assert_eq!(name, format!("{}é{}", "x".repeat(53), "y".repeat(10)));
        assert_eq!(tools[0]["function"].as_str().unwrap().len(), 256);
        let input = &tools[0]["input"];
        assert_eq!(
            input["empty"], "string, ",
            "an empty description still adds \", \""
        );
        let long = input["long"].as_str().unwrap();
        assert!(long.starts_with("string, zzz") && long.ends_with("end"));
        assert_eq!(long.chars().count(), "string, ".len() + 256);
        assert_eq!(input["enum_only"], "string");
        assert_eq!(
            input["odd"],
            json!(["string", "null"]),
            "a raw type is kept"
        );
        assert_eq!(
            record["chains"],
            json!([{"role": "system", "valid": true}, {"role": "user"}]),
            "the last train_messages entry, verbatim"
        );

        assert_eq!(
            stage1_record(&json!({"answer_generation": {"query": "q"}})),
            Ok(None)
        );
        assert_eq!(stage1_record(&json!({"win": true})), Ok(None));
        let mut empty = answer.clone();
        empty["answer_generation"]["train_messages"] = json!([]);
        assert!(stage1_record(&empty).unwrap_err().contains("empty"));
        let mut bad = answer.clone();
        bad["answer_generation"]["function"][0]["parameters"]["properties"]["odd"]["description"] =
            json!("x");
        let e = stage1_record(&bad).unwrap_err();
        assert!(
            e.contains("function #0") && e.contains("argument odd"),
            "{e}"
        );
        assert!(describe_argument(&json!({"description": "x"})).is_err());
    }
}

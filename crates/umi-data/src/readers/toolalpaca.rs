//! ToolAlpaca's evaluation sets (`toolalpaca-eval/eval_simulated.json`, `eval_real.json`) into
//! α-UMi conversations, as designed and checked in the Python prototype
//! `assets/reference/apibank_toolalpaca.py` (`read_toolalpaca`), whose outputs this reader
//! reproduces record for record.
//!
//! Later gold steps need observations only ToolAlpaca's simulator produces, so each instruction
//! becomes one statically scorable decision point: its first gold step.

use std::path::Path;

use crate::ToolDoc;
use serde_json::{Map, Value};

use super::{ReadError, ReadReport, json_array_records, read_text};
use crate::conversation::{Conversation, Speaker, Turn};
use crate::python::json::python_json_dumps;
use crate::tool_doc::tool_doc_from_parts;

const FORMAT: &str = "ToolAlpaca evaluation set";

/// Reads a ToolAlpaca evaluation file: a JSON array of APIs `{Name, Function_Description,
/// Authentication?, Instructions, Golden_Answers, …}`. One record is one instruction, and it
/// becomes `[user: instruction, assistant: " Next: caller.", caller: "Action: <gold
/// Action>\nAction Input: <gold Action_Input>"]` from `Golden_Answers[i][0]`.
///
/// Tools come from `Function_Description` (not the OpenAPI `Documentation`, whose synthesized
/// operation names differ from the gold actions and which loses PUT/DELETE operations): for each
/// key but `components`, `{"Name": key, "function": the text before "Parameters: " (trimmed,
/// 256 characters at most), "input": the JSON between "Parameters: " and "\nOutput:"}`. Keys of
/// `Authentication` (API keys the executor injects) are removed from tool inputs and gold
/// arguments. A gold `Action_Input` that is a JSON object is rewritten as Python's `json.dumps`
/// writes it; otherwise (template placeholders) it is kept raw, and Arg. F1 drops it.
///
/// Skipped (with the API and instruction index in the reason; `index` counts instructions over
/// the file): a first gold step `getDetails` (ToolAlpaca's "ask the user" pseudo-action), a
/// first gold action missing from `Function_Description` (AviationAPI's nested paths), and
/// malformed entries.
///
/// # Errors
///
/// [`ReadError`] when the file cannot be read or is not a JSON array.
pub fn read_toolalpaca(path: &Path) -> Result<(Vec<Conversation>, ReadReport), ReadError> {
    let apis = json_array_records(
        &read_text(path)?,
        path,
        FORMAT,
        "expected a JSON array of APIs",
    )?;
    let mut report = ReadReport::default();
    let mut out = Vec::new();
    for (api_index, api) in apis.iter().enumerate() {
        let api = match api {
            Ok(api) => api,
            Err(why) => {
                report.skip(path, report.records, format!("API {api_index}: {why}"));
                report.records += 1;
                continue;
            }
        };
        let api_name = api.get("Name").and_then(Value::as_str).unwrap_or("?");
        let list = |k| {
            api.get(k)
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
        };
        let (instructions, golds) = (list("Instructions"), list("Golden_Answers"));
        let auth: Vec<&String> = api
            .get("Authentication")
            .and_then(Value::as_object)
            .map(|a| a.keys().collect())
            .unwrap_or_default();
        let tools = api
            .get("Function_Description")
            .and_then(Value::as_object)
            .map(|fd| tools_of(fd, &auth));
        for i in 0..instructions
            .len()
            .max(golds.len())
            .max(usize::from(tools.is_none()))
        {
            let index = report.records;
            report.records += 1;
            let at = format!("API {api_index} ({api_name}) instruction {i}");
            let first_step = golds
                .get(i)
                .and_then(Value::as_array)
                .and_then(|g| g.first());
            let action = first_step
                .and_then(|s| s.get("Action"))
                .and_then(Value::as_str);
            let input = first_step
                .and_then(|s| s.get("Action_Input"))
                .and_then(Value::as_str);
            let instruction = instructions
                .get(i)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty());
            let reason = match (&tools, instruction, action, input) {
                (None, ..) => "no Function_Description object".to_string(),
                (_, None, ..) => "no instruction".into(),
                (_, _, None, _) | (_, _, _, None) => {
                    "no first gold step with string Action and Action_Input".into()
                }
                (_, _, Some("getDetails"), _) => {
                    "first gold step is 'getDetails' (ask the user), not a tool".into()
                }
                (Some(tools), Some(instruction), Some(action), Some(input)) => {
                    if tools.iter().any(|t| t["Name"] == action) {
                        out.push(first_step_conversation(
                            tools.clone(),
                            instruction,
                            action,
                            input,
                            &auth,
                        ));
                        continue;
                    }
                    format!("first gold action {action:?} is not in Function_Description")
                }
            };
            report.skip(path, index, format!("{at}: {reason}"));
        }
    }
    report.kept = out.len();
    Ok((out, report))
}

/// The tool docs of one API from its `Function_Description`.
fn tools_of(descriptions: &Map<String, Value>, auth: &[&String]) -> Vec<ToolDoc> {
    let mut tools = Vec::new();
    for (name, text) in descriptions
        .iter()
        .filter(|(name, _)| *name != "components")
    {
        let text = text.as_str().unwrap_or_default();
        // split on the first `(^|\n)Parameters: `
        let (description, parameters) = match text.strip_prefix("Parameters: ") {
            Some(rest) => ("", Some(rest)),
            None => match text.find("\nParameters: ") {
                Some(at) => (&text[..at], Some(&text[at + "\nParameters: ".len()..])),
                None => (text, None),
            },
        };
        let parameters = parameters.map(|p| p.split("\nOutput:").next().unwrap_or_default());
        let mut input = match parameters.and_then(|p| serde_json::from_str(p).ok()) {
            Some(Value::Object(input)) => input,
            _ => Map::new(),
        };
        input.retain(|k, _| !auth.contains(&k));
        let function = description.trim().chars().take(256).collect();
        tools.push(tool_doc_from_parts(name, function, input));
    }
    tools
}

fn first_step_conversation(
    tools: Vec<ToolDoc>,
    instruction: &str,
    action: &str,
    input: &str,
    auth: &[&String],
) -> Conversation {
    let input = match serde_json::from_str::<Value>(input) {
        Ok(Value::Object(mut arguments)) => {
            arguments.retain(|k, _| !auth.contains(&k));
            python_json_dumps(&Value::Object(arguments))
        }
        _ => input.to_string(),
    };
    Conversation {
        tools,
        instruction: instruction.into(),
        conversations: vec![
            Turn::new(Speaker::User, instruction),
            Turn::new(Speaker::Assistant, " Next: caller."),
            Turn::new(
                Speaker::Caller,
                format!("Action: {action}\nAction Input: {input}"),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_steps_convert_and_bad_instructions_are_skipped() {
        let path = std::env::temp_dir().join(format!("umi-toolalpaca-{}.json", std::process::id()));
        let description = "Search images.\nParameters: {\"color\": \"string. The color.\", \"key\": \"Required. string.\"}\nOutput: A list.";
        let api = serde_json::json!([
            {
                "Name": "Axolotl",
                "Authentication": {"key": "secret"},
                "Function_Description": {"search": description, "random": "Parameters: {}\nOutput: x", "components": ""},
                "Instructions": ["Show me a white one.", "Ask first.", "Fly.", "", "Raw input."],
                "Golden_Answers": [
                    [{"Action": "search", "Action_Input": "{\"color\": \"white\", \"key\": \"k1\"}"}, {"Action": "random", "Action_Input": "{}"}],
                    [{"Action": "getDetails", "Action_Input": "{}"}],
                    [{"Action": "fly", "Action_Input": "{}"}],
                    [{"Action": "random", "Action_Input": "{}"}],
                    [{"Action": "search", "Action_Input": "{\"color\": ${color}}"}],
                    [{"Action": "random", "Action_Input": "{}"}]
                ]
            },
            {"Name": "Broken", "Instructions": ["x"], "Golden_Answers": [[]]}
        ]);
        std::fs::write(&path, api.to_string()).unwrap();
        let (convs, report) = read_toolalpaca(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((report.records, report.kept, convs.len()), (7, 2, 2));
        let skipped: Vec<(usize, &str)> = report
            .skipped
            .iter()
            .map(|s| (s.index, s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    1,
                    "API 0 (Axolotl) instruction 1: first gold step is 'getDetails' (ask the user), not a tool"
                ),
                (
                    2,
                    "API 0 (Axolotl) instruction 2: first gold action \"fly\" is not in Function_Description"
                ),
                (3, "API 0 (Axolotl) instruction 3: no instruction"),
                (5, "API 0 (Axolotl) instruction 5: no instruction"),
                (
                    6,
                    "API 1 (Broken) instruction 0: no Function_Description object"
                ),
            ]
        );
        let c = &convs[0];
        assert_eq!(
            python_json_dumps(&Value::Array(
                c.tools.iter().cloned().map(Value::Object).collect()
            )),
            r#"[{"Name": "search", "function": "Search images.", "input": {"color": "string. The color."}}, {"Name": "random", "function": "", "input": {}}]"#
        );
        let turns: Vec<&str> = c.conversations.iter().map(|t| t.value.as_str()).collect();
        assert_eq!(
            turns,
            [
                "Show me a white one.",
                " Next: caller.",
                "Action: search\nAction Input: {\"color\": \"white\"}"
            ]
        );
        assert_eq!(
            convs[1].conversations[2].value,
            "Action: search\nAction Input: {\"color\": ${color}}"
        );
    }
}

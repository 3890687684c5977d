//! `training-data/lv3-train.json`, `test-data/level-3.json`: call chains with ToolSearcher specs.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::catalog::{Tools, toolsearcher_spec};
use super::dialogue::api_turns;
use super::request::{parse_kwargs, parse_request, parse_specs, request_key};
use super::{ApiBankOptions, TOOL_SEARCHER};
use crate::conversation::{Conversation, Speaker, Turn};
use crate::python::repr::py_str;
use crate::readers::ReadReport;

/// One call of a chain: name, arguments, observation text, specs a `ToolSearcher` returned.
struct Step {
    name: String,
    params: Value,
    observation: String,
    specs: Vec<Value>,
}

/// The prototype's `steps_to_conv`: tools are ToolSearcher + every spec a search returned.
fn chain_conversation(
    user: &str,
    steps: &[Step],
    answer: &str,
    options: &ApiBankOptions,
) -> Conversation {
    let mut tools = Tools::default();
    if options.keep_toolsearcher {
        tools.add_spec(&toolsearcher_spec());
    }
    let mut turns = vec![Turn::new(Speaker::User, user)];
    for step in steps {
        step.specs.iter().for_each(|s| tools.add_spec(s));
        if step.name == TOOL_SEARCHER && !options.keep_toolsearcher {
            continue;
        }
        let planner = options.call_turn(&step.name, None);
        api_turns(
            &mut turns,
            &step.name,
            &step.params,
            &step.observation,
            planner,
        );
    }
    tools.stub_missing(&turns);
    let called = turns.iter().any(|t| t.from == Speaker::Caller);
    turns.push(Turn::new(Speaker::Assistant, options.conclude_turn(called)));
    turns.push(Turn::new(Speaker::Conclusion, answer));
    Conversation {
        tools: tools.docs,
        instruction: user.into(),
        conversations: turns,
    }
}

/// `API-Request: [Name(args)]->result` of a history: the result text is the observation.
fn history_step(line: &str) -> Option<Step> {
    let request = parse_request(line)?;
    let params = parse_kwargs(request.args).0?;
    let result = request.result.unwrap_or_default();
    Some(Step {
        name: request.name.into(),
        params: Value::Object(params),
        observation: result.into(),
        specs: match request.result {
            Some(result) if request.name == TOOL_SEARCHER => parse_specs(result),
            _ => Vec::new(),
        },
    })
}

/// lv3-train: `{instruction, input, output}` step samples. `input` is the ToolSearcher spec line,
/// `User: …`, the `API-Request: …->result` history and a `Generate API Request:` / `Generate AI
/// Response:` cue; `output` the next request or `AI: <answer>`. Each AI-response sample holds a
/// whole dialogue; API-request samples are its prefixes and only checked for that.
pub(super) fn read_lv3_train(
    path: &Path,
    records: &[Value],
    options: &ApiBankOptions,
    report: &mut ReadReport,
) -> Vec<Conversation> {
    let mut out = Vec::new();
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    let mut chains: HashMap<&str, Vec<Vec<String>>> = HashMap::new();
    let mut request_samples = Vec::new();
    for (index, record) in records.iter().enumerate() {
        report.records += 1;
        let fields = record.as_object().filter(|o| o.len() == 3);
        let field = |k| fields.and_then(|o| o.get(k)).and_then(Value::as_str);
        let (Some(_), Some(input), Some(output)) =
            (field("instruction"), field("input"), field("output"))
        else {
            report.skip(
                path,
                index,
                "not exactly the string fields instruction, input, output",
            );
            continue;
        };
        let lines: Vec<&str> = input.split('\n').collect();
        let (Some(user), Some(cue)) = (lines.get(1), lines.last()) else {
            report.skip(path, index, "input has no User line");
            continue;
        };
        let history = lines.get(2..lines.len() - 1).unwrap_or_default();
        let Some(user_text) = user.strip_prefix("User: ") else {
            report.skip(path, index, "the second input line is not \"User: …\"");
            continue;
        };
        if cue.starts_with("Generate API Request") {
            let mut keys: Vec<String> = history.iter().map(|h| request_key(h)).collect();
            keys.push(request_key(output.trim()));
            request_samples.push((index, *user, keys));
            continue;
        }
        if !cue.starts_with("Generate AI Response") {
            report.skip(path, index, format!("unknown generation cue {cue:?}"));
            continue;
        }
        if let Some(first) = seen.get(&(input, output)) {
            report.skip(path, index, format!("duplicate of sample {first}"));
            continue;
        }
        seen.insert((input, output), index);
        if history.iter().any(|h| h.starts_with("AI:")) {
            report.skip(path, index, "AI line inside the API history");
            continue;
        }
        let steps: Option<Vec<Step>> = history.iter().map(|h| history_step(h)).collect();
        let Some(steps) = steps else {
            report.skip(path, index, "unparseable API-Request line in the history");
            continue;
        };
        let answer = output.trim_end_matches('\n');
        let answer = answer.strip_prefix("AI: ").unwrap_or(answer);
        out.push(chain_conversation(user_text, &steps, answer, options));
        chains
            .entry(user)
            .or_default()
            .push(history.iter().map(|h| request_key(h)).collect());
    }
    for (index, user, keys) in request_samples {
        let covered = chains.get(user).is_some_and(|cs| {
            cs.iter()
                .any(|c| c.len() >= keys.len() && c[..keys.len()] == keys[..])
        });
        if !covered {
            let reason = "API step sample not a prefix of any complete dialogue (orphan)";
            report.skip(path, index, reason);
        }
    }
    out
}

/// test-data/level-3.json: `{requirement, response, apis: [{api_name, input, output: {output,
/// exception}}]}`; observations are `str(output.output)`, ToolSearcher outputs are specs.
pub(super) fn read_level3(
    path: &Path,
    records: &[Value],
    options: &ApiBankOptions,
    report: &mut ReadReport,
) -> Vec<Conversation> {
    let mut out = Vec::new();
    for (index, record) in records.iter().enumerate() {
        report.records += 1;
        let text = |k| record.get(k).and_then(Value::as_str);
        let apis = record
            .get("apis")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        let (Some(requirement), Some(response), Some(apis)) =
            (text("requirement"), text("response"), apis)
        else {
            report.skip(path, index, "missing requirement/response or no apis");
            continue;
        };
        let steps: Result<Vec<Step>, usize> = apis
            .iter()
            .enumerate()
            .map(|(i, api)| {
                let name = api.get("api_name").and_then(Value::as_str).ok_or(i)?;
                let result = api.get("output").filter(|r| r.is_object()).ok_or(i)?;
                let output = result.get("output").ok_or(i)?;
                let observation = match result.get("exception").unwrap_or(&Value::Null) {
                    Value::Null => py_str(output),
                    exception => format!("Exception: {}", py_str(exception)),
                };
                let specs = match output {
                    _ if name != TOOL_SEARCHER => Vec::new(),
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                let params = api.get("input").ok_or(i)?.clone();
                Ok(Step {
                    name: name.into(),
                    params,
                    observation,
                    specs,
                })
            })
            .collect();
        match steps {
            Ok(steps) => out.push(chain_conversation(
                requirement.trim(),
                &steps,
                response,
                options,
            )),
            Err(i) => report.skip(
                path,
                index,
                format!("apis[{i}] lacks api_name, input or output.output"),
            ),
        }
    }
    out
}

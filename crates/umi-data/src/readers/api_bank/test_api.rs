//! `test-data/level-{1,2}-api.json`: next-call decision points.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::catalog::Tools;
use super::dialogue::{Row, convert_rows};
use super::request::{parse_gold, parse_kwargs, parse_request, parse_specs};
use super::{ApiBankOptions, Catalog, TOOL_SEARCHER};
use crate::conversation::Conversation;
use crate::readers::ReadReport;

/// `{file, id, instruction, input, expected_output}`: the instruction ends with one JSON spec per
/// line after `API descriptions:`; `input` holds `User:` / `AI:` / `API-Request: …->result` lines.
/// The history is converted like a dialogue, then the gold call is appended without an
/// observation. Gold (and history) arguments that are not Python literals come from the k-th API
/// row of the source dialogue `file`; a gold API missing from the given and retrieved specs is
/// added from the catalog; exact duplicates are skipped.
pub(super) fn read_test_api(
    path: &Path,
    records: &[Value],
    root: &Path,
    catalog: &Catalog,
    options: &ApiBankOptions,
    report: &mut ReadReport,
) -> Vec<Conversation> {
    let folders = ["level-1-given-desc", "level-2-toolsearcher"];
    let level2 = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("level-2"));
    let mut dialogues: HashMap<&str, Vec<(String, Value)>> = HashMap::new();
    let mut seen: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut out = Vec::new();
    for (index, record) in records.iter().enumerate() {
        report.records += 1;
        let text = |k| record.get(k).and_then(Value::as_str);
        let fields = (
            text("file"),
            text("instruction"),
            text("input"),
            text("expected_output"),
        );
        let (Some(file), Some(instruction), Some(input), Some(expected)) = fields else {
            report.skip(
                path,
                index,
                "missing file/instruction/input/expected_output",
            );
            continue;
        };
        let skip = |report: &mut ReadReport, reason: String| {
            report.skip(path, index, format!("{file}: {reason}"))
        };
        if let Some(first) = seen.get(&(input, expected, file)) {
            skip(report, format!("exact duplicate of record {first}"));
            continue;
        }
        seen.insert((input, expected, file), index);
        let Some((_, descriptions)) = instruction.split_once("API descriptions:\n") else {
            skip(report, "no \"API descriptions:\" in the instruction".into());
            continue;
        };
        let specs: Result<Vec<Value>, _> = descriptions
            .trim()
            .split('\n')
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str::<Value>)
            .collect();
        let Ok(mut specs) = specs else {
            skip(report, "an API description line is not JSON".into());
            continue;
        };
        let dialogue_calls = dialogues.entry(file).or_insert_with(|| {
            let order = if level2 {
                [folders[1], folders[0]]
            } else {
                folders
            };
            let dir = root.join("lv1-lv2-samples");
            let text = order
                .iter()
                .find_map(|f| std::fs::read_to_string(dir.join(f).join(file)).ok());
            text.unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|r| r.get("role").and_then(Value::as_str) == Some("API"))
                .filter_map(|r| {
                    Some((
                        r.get("api_name")?.as_str()?.to_string(),
                        r.get("param_dict")?.clone(),
                    ))
                })
                .collect()
        });
        // Arguments that are not Python literals: the k-th call of the dialogue when it matches.
        let arguments = |name: &str, args: &str, k: usize| -> Option<Value> {
            match parse_kwargs(args) {
                (Some(map), true) => Some(Value::Object(map)),
                (lenient, _) => match dialogue_calls.get(k) {
                    Some((n, params)) if n == name => Some(params.clone()),
                    _ => lenient.map(Value::Object),
                },
            }
        };
        let mut rows = Vec::new();
        let mut bad = None;
        for line in input.split('\n') {
            if let Some(t) = line.strip_prefix("User: ") {
                rows.push(Row::User(t.into()));
            } else if let Some(t) = line.strip_prefix("AI: ") {
                rows.push(Row::Ai(t.into()));
            } else if line.starts_with("API-Request: ") {
                let k = rows.iter().filter(|r| matches!(r, Row::Api { .. })).count();
                let parsed =
                    parse_request(line).and_then(|r| Some((arguments(r.name, r.args, k)?, r)));
                let Some((params, request)) = parsed else {
                    bad = Some(format!("unparseable history line {line:?}"));
                    break;
                };
                let observation = request.result.unwrap_or_default();
                if request.name == TOOL_SEARCHER {
                    specs.extend(parse_specs(observation));
                }
                rows.push(Row::Api {
                    name: request.name.into(),
                    params,
                    observation: observation.into(),
                });
            } else if !(line.starts_with("Generate API Request") || line.trim().is_empty()) {
                bad = Some(format!("unknown input line {line:?}"));
                break;
            }
        }
        if let Some(reason) = bad {
            skip(report, reason);
            continue;
        }
        let Some((gold_name, gold_args)) = parse_gold(expected) else {
            skip(
                report,
                "expected_output is not API-Request: [Name(args)]".into(),
            );
            continue;
        };
        let k = rows.iter().filter(|r| matches!(r, Row::Api { .. })).count();
        let Some(gold) = arguments(gold_name, gold_args, k) else {
            skip(report, "gold arguments unparseable".into());
            continue;
        };
        if gold_name == TOOL_SEARCHER && !options.keep_toolsearcher {
            skip(
                report,
                "the gold call is ToolSearcher, which these options drop".into(),
            );
            continue;
        }
        let mut tools = Tools::default();
        for spec in &specs {
            let is_searcher = spec.get("name").and_then(Value::as_str) == Some(TOOL_SEARCHER);
            if options.keep_toolsearcher || !is_searcher {
                tools.add_spec(spec);
            }
        }
        if !tools.names.contains(gold_name)
            && let Some(spec) = catalog.get(gold_name)
        {
            tools.add_spec(spec);
        }
        rows.push(Row::Api {
            name: gold_name.into(),
            params: gold,
            observation: String::new(),
        });
        let Some(mut turns) = convert_rows(rows, &mut tools, options) else {
            skip(report, "the history does not start with a User line".into());
            continue;
        };
        turns.pop(); // the gold call has no observation: the record ends with the caller turn
        out.push(Conversation {
            tools: tools.docs,
            instruction: turns[0].value.clone(),
            conversations: turns,
        });
    }
    out
}

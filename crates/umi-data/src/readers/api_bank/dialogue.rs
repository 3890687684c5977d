//! Dialogue rows → turns (shared by the `.jsonl` dialogues and the level-1/2-api histories).

use std::path::Path;

use serde_json::Value;

use super::catalog::{Tools, toolsearcher_spec};
use super::{ApiBankOptions, Catalog, TOOL_SEARCHER};
use crate::conversation::{Conversation, Speaker, Turn};
use crate::python::json::python_json_dumps;
use crate::python::repr::py_str;
use crate::python::text::is_word;
use crate::readers::{ReadError, ReadReport, read_text};

pub(super) enum Row {
    User(String),
    Ai(String),
    Api {
        name: String,
        params: Value,
        observation: String,
    },
}

pub(super) fn api_turns(
    turns: &mut Vec<Turn>,
    name: &str,
    params: &Value,
    observation: &str,
    planner: String,
) {
    turns.push(Turn::new(Speaker::Assistant, planner));
    turns.push(Turn::new(
        Speaker::Caller,
        format!(
            "Action: {name}\nAction Input: {}",
            python_json_dumps(params)
        ),
    ));
    turns.push(Turn::new(Speaker::Observation, observation));
}

/// The prototype's `convert_dialogue`: `None` when no row is left or the first is not `User`.
pub(super) fn convert_rows(
    mut rows: Vec<Row>,
    tools: &mut Tools,
    options: &ApiBankOptions,
) -> Option<Vec<Turn>> {
    if !options.keep_toolsearcher {
        rows.retain(|r| !matches!(r, Row::Api { name, .. } if name == TOOL_SEARCHER));
    }
    while matches!(rows.last(), Some(Row::User(_))) {
        rows.pop();
    }
    let Some(Row::User(first)) = rows.first() else {
        return None;
    };
    let mut turns = vec![Turn::new(Speaker::User, first.clone())];
    let mut called_since_user = false;
    let mut i = 1;
    while i < rows.len() {
        match &rows[i] {
            Row::User(text) => {
                turns.push(Turn::new(Speaker::User, text.clone()));
                called_since_user = false;
                i += 1;
            }
            Row::Ai(_) => {
                let mut texts = Vec::new();
                while let Some(Row::Ai(text)) = rows.get(i) {
                    texts.push(text.as_str());
                    i += 1;
                }
                if let Some(Row::Api {
                    name,
                    params,
                    observation,
                }) = rows.get(i)
                {
                    let planner = options.call_turn(name, Some(&texts.join(" ")));
                    api_turns(&mut turns, name, params, observation, planner);
                    called_since_user = true;
                    i += 1;
                } else {
                    turns.push(Turn::new(
                        Speaker::Assistant,
                        options.conclude_turn(called_since_user),
                    ));
                    turns.push(Turn::new(Speaker::Conclusion, texts.join("\n")));
                }
            }
            Row::Api {
                name,
                params,
                observation,
            } => {
                api_turns(
                    &mut turns,
                    name,
                    params,
                    observation,
                    options.call_turn(name, None),
                );
                called_since_user = true;
                i += 1;
            }
        }
    }
    tools.stub_missing(&turns);
    Some(turns)
}

/// One `.jsonl` row; `Err` says what is wrong with it.
fn dialogue_row(v: &Value) -> Result<Row, String> {
    let text = || {
        v.get("text")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| "row without a string \"text\"".to_string())
    };
    match v.get("role").and_then(Value::as_str) {
        Some("User") => Ok(Row::User(text()?)),
        Some("AI") => Ok(Row::Ai(text()?)),
        Some("API") => {
            let name = v.get("api_name").and_then(Value::as_str);
            let params = v.get("param_dict").filter(|p| p.is_object());
            let (Some(name), Some(params)) = (name, params) else {
                return Err(
                    "API row without a string \"api_name\" and an object \"param_dict\"".into(),
                );
            };
            let result = v.get("result").filter(|r| r.is_object());
            let field = |k: &str| result.and_then(|r| r.get(k)).unwrap_or(&Value::Null);
            let observation = match field("exception") {
                Value::Null => py_str(field("output")),
                exception => format!("Exception: {}", py_str(exception)),
            };
            Ok(Row::Api {
                name: name.into(),
                params: params.clone(),
                observation,
            })
        }
        Some(other) => Err(format!("unknown role {other:?}")),
        None => Err("row without a string \"role\"".into()),
    }
}

/// Whether `text` holds an API call written inline, `[Name(…)]` (regex `\[[A-Z]\w*\(.*?\)\]`).
pub(super) fn has_inline_call(text: &str) -> bool {
    text.match_indices('[').any(|(at, _)| {
        let rest = &text[at + 1..];
        if !rest.starts_with(|c: char| c.is_ascii_uppercase()) {
            return false;
        }
        let after_name = rest.trim_start_matches(is_word);
        after_name.strip_prefix('(').is_some_and(|args| {
            let line = args.split('\n').next().unwrap_or_default();
            line.contains(")]")
        })
    })
}

/// The APIs a dialogue file name announces (`AddAgenda-AddAlarm-level-2-1.jsonl` → AddAgenda,
/// AddAlarm) and its level number.
fn file_name_apis(file_name: &str) -> (Vec<&str>, Option<&str>) {
    let Some(stem) = file_name.strip_suffix(".jsonl") else {
        return (Vec::new(), None);
    };
    for (at, _) in stem.rmatch_indices("-level-") {
        let tail = &stem[at + "-level-".len()..];
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        if let Some((level, n)) = tail.split_once('-')
            && digits(level)
            && digits(n)
        {
            return (stem[..at].split('-').collect(), Some(level));
        }
    }
    (Vec::new(), None)
}

/// One `lv1-lv2-samples` dialogue file (the prototype's `read_dialogues`).
pub(super) fn read_dialogue(
    path: &Path,
    catalog: &Catalog,
    options: &ApiBankOptions,
    report: &mut ReadReport,
) -> Result<Option<Conversation>, ReadError> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str::<Value>(line)
            .map_err(|e| format!("line is not JSON: {e}"))
            .and_then(|v| dialogue_row(&v));
        match row {
            Ok(row) => rows.push((line_index, row)),
            Err(reason) => {
                report.skip(path, line_index, reason);
                return Ok(None);
            }
        }
    }
    if rows.is_empty() {
        report.skip(path, 0, "empty file");
        return Ok(None);
    }
    if let Some((line_index, _)) = rows
        .iter()
        .find(|(_, r)| matches!(r, Row::Ai(text) if has_inline_call(text)))
    {
        report.skip(
            path,
            *line_index,
            "API call written inline in AI text, not executed",
        );
        return Ok(None);
    }
    // Tools: ToolSearcher for the level-2 (ToolSearcher) dialogues, then the APIs the file name
    // announces (those in the catalog), then the APIs called, in first-call order.
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (declared, level) = file_name_apis(file_name);
    let in_level2_folder = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("level-2"));
    let toolsearcher_first = in_level2_folder || level == Some("3");
    let called = rows.iter().filter_map(|(_, r)| match r {
        Row::Api { name, .. } => Some(name.as_str()),
        _ => None,
    });
    let first = toolsearcher_first.then_some(TOOL_SEARCHER);
    let mut tools = Tools::default();
    for name in first.into_iter().chain(declared).chain(called) {
        if name == TOOL_SEARCHER {
            if options.keep_toolsearcher {
                tools.add_spec(&toolsearcher_spec());
            }
        } else if let Some(spec) = catalog.get(name) {
            tools.add_spec(spec);
        }
    }
    let rows = rows.into_iter().map(|(_, r)| r).collect();
    let Some(turns) = convert_rows(rows, &mut tools, options) else {
        report.skip(path, 0, "the dialogue does not start with a User row");
        return Ok(None);
    };
    Ok(Some(Conversation {
        tools: tools.docs,
        instruction: turns[0].value.clone(),
        conversations: turns,
    }))
}

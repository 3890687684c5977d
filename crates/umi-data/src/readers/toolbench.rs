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

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{ReadError, ReadReport};
use crate::conversation::{Conversation, Next, Speaker, Turn};

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

/// ToolBench's answer pseudo-function, dropped from the tool docs and turned into the
/// conclusion / give-up turns.
const FINISH: &str = "Finish";
/// The `return_type` (or, in the fallback, the substring) that means "give up".
const GIVE_UP: &str = "give_up_and_restart";
/// The fallback marker for a `Finish` call whose arguments are not JSON (one space after `:`).
const FINAL_ANSWER_MARKER: &str = "\"final_answer\": ";
/// The fallback marker for an observation that is not JSON (no space after `:`).
const RESPONSE_MARKER: &str = "\"response\":";

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

/// Converts one ToolBench function schema (`{"name", "description", "parameters":
/// {"properties": {…}}}`, an entry of `answer_generation.function`) into the α-UMi tool doc
/// `{"Name", "function", "input"}` (in that key order), as `prepro_raw_stage_1.py` does:
///
/// - `Name`: the last 64 characters of `name`;
/// - `function`: the first 256 characters of `description`;
/// - `input`: for each property, in order, [`describe_argument`] of its schema.
///
/// Returns `Ok(None)` for the `Finish` pseudo-function (exact, case-sensitive name).
///
/// # Errors
///
/// Where the reference would crash: `function` not an object, a missing or non-string `name`
/// or `description`, `parameters.properties` missing or not an object, a bad argument schema.
pub fn tool_doc(function: &Value) -> Result<Option<Map<String, Value>>, String> {
    let Value::Object(function) = function else {
        return Err(format!("{}, not an object", kind(function)));
    };
    let name = match function.get("name") {
        Some(Value::String(name)) => name,
        Some(other) => return Err(format!("\"name\" is {}", kind(other))),
        None => return Err("no \"name\"".into()),
    };
    if name == FINISH {
        return Ok(None);
    }
    let description = match function.get("description") {
        Some(Value::String(d)) => d,
        Some(other) => return Err(format!("{name}: \"description\" is {}", kind(other))),
        None => return Err(format!("{name}: no \"description\"")),
    };
    let properties = match function
        .get("parameters")
        .ok_or_else(|| format!("{name}: no \"parameters\""))?
    {
        Value::Object(p) => match p.get("properties") {
            Some(Value::Object(props)) => props,
            Some(other) => {
                return Err(format!("{name}: parameters.properties is {}", kind(other)));
            }
            None => return Err(format!("{name}: no parameters.properties")),
        },
        other => return Err(format!("{name}: \"parameters\" is {}", kind(other))),
    };
    let mut input = Map::new();
    for (arg, schema) in properties {
        let text = describe_argument(schema).map_err(|e| format!("{name}: argument {arg}: {e}"))?;
        input.insert(arg.clone(), text);
    }
    let mut doc = Map::new();
    doc.insert("Name".into(), Value::String(last_chars(name, 64)));
    doc.insert(
        "function".into(),
        Value::String(first_chars(description, 256)),
    );
    doc.insert("input".into(), Value::Object(input));
    Ok(Some(doc))
}

/// One argument of a ToolBench function as `prepro_raw_stage_1.py` writes it into a tool doc's
/// `input`: `"<type>, <last 256 characters of description>"` when the schema has a
/// `description` key, even an empty one (`"string, "`, with the trailing space), and the raw
/// `type` value otherwise (normally a string such as `"integer"`; any JSON value is kept as
/// is). `required`, `example_value`, `enum` and the like are ignored.
///
/// # Errors
///
/// Where the reference would crash: the schema is not an object or has no `type`, or it has a
/// `description` while `type` or `description` is not a string.
pub fn describe_argument(schema: &Value) -> Result<Value, String> {
    let Value::Object(schema) = schema else {
        return Err(format!("its schema is {}, not an object", kind(schema)));
    };
    let ty = schema.get("type").ok_or("its schema has no \"type\"")?;
    let Some(description) = schema.get("description") else {
        return Ok(ty.clone());
    };
    match (ty, description) {
        (Value::String(ty), Value::String(d)) => {
            Ok(Value::String(format!("{ty}, {}", last_chars(d, 256))))
        }
        _ => Err(format!(
            "\"type\" is {} and \"description\" is {}; both must be strings",
            kind(ty),
            kind(description)
        )),
    }
}

/// Stage 2 for one stage-1 record (`{"tools", "instruction", "chains"}`): the
/// `raw_data_stage_2.json` record `{"tools", "instruction", "conversations"}` exactly as
/// `prepro_raw_stage_2.py` builds it, with `tools` and `instruction` passed through.
///
/// `conversations` starts with `{"from": "user", "value": instruction}`; then, skipping
/// `chains[0]` and `chains[1]` whatever they are (normally the system prompt and the query),
/// each message by `role`:
///
/// - `assistant` with a `function_call`: the text is `content + "\n"` (`""` when `content` is
///   null), then
///   - an ordinary call: `assistant` = text + `" Next: caller."`, then `caller` =
///     `"Action: <name>\nAction Input: <arguments>"` (the arguments string as written);
///   - `Finish`: the arguments are parsed as JSON (or taken as is when already an object);
///     `return_type == "give_up_and_restart"` gives one `assistant` turn text +
///     `" Next: give up."`; any other `return_type` gives text + `" Next: conclusion."` and a
///     `conclusion` turn with `final_answer` (`"none"` when absent). When that fails (not JSON,
///     e.g. truncated, or no `return_type`), the raw arguments decide: containing
///     `give_up_and_restart` means give up; else the text after the first `"final_answer": `,
///     stripped of whitespace, then `}`s, then `"`s (escapes not decoded); else the message's
///     `content`, or `"none"`;
/// - `assistant` without a `function_call`: dropped (DFSDT dead ends);
/// - `user`: a `user` turn with the content as is (DFSDT reflection prompts);
/// - `function`: an `observation` turn with the `response` of the content parsed as JSON; when
///   the content does not parse (ToolBench cuts it to 1024 characters plus `...`), the raw text
///   after the first `"response":`, not unescaped, with its leading space (`""` without one);
/// - any other role: ignored.
///
/// Values are JSON values: `final_answer`, `response` and user content are carried over
/// whatever their type, as the reference does.
///
/// # Errors
///
/// Where the reference would crash (a missing key, a value of the wrong type, an observation
/// that parses to something other than an object with `response` or a string), and where
/// Python's `json.loads` would parse an embedded text that Rust cannot represent (see the
/// module docs).
pub fn stage2_json(record: &Value) -> Result<Value, String> {
    let (tools, instruction, turns) = stage2_parts(record)?;
    let mut out = Map::new();
    out.insert("tools".into(), tools);
    out.insert("instruction".into(), instruction);
    out.insert("conversations".into(), Value::Array(turns));
    Ok(Value::Object(out))
}

/// Stage 2's `tools`, `instruction` and `conversations`.
fn stage2_parts(record: &Value) -> Result<(Value, Value, Vec<Value>), String> {
    let Value::Object(record) = record else {
        return Err(format!("the record is {}, not an object", kind(record)));
    };
    let field = |key: &str| {
        record
            .get(key)
            .ok_or_else(|| format!("the record has no \"{key}\""))
    };
    let instruction = field("instruction")?;
    let chains = match field("chains")? {
        Value::Array(c) => c,
        other => return Err(format!("\"chains\" is {}, not a list", kind(other))),
    };
    let mut turns = vec![turn("user", instruction.clone())];
    for (i, message) in chains.iter().enumerate().skip(2) {
        stage2_message(message, &mut turns).map_err(|e| format!("chains[{i}]: {e}"))?;
    }
    Ok((field("tools")?.clone(), instruction.clone(), turns))
}

/// [`stage2_json`] as a [`Conversation`].
///
/// # Errors
///
/// Those of [`stage2_json`], and a record that does not fit a conversation: `tools` not a list
/// of objects, an `instruction` or a turn value that is not a string (the reference would
/// write a `null` user turn or a numeric observation as it is; the role scripts after it
/// cannot use them).
pub fn stage2_record(record: &Value) -> Result<Conversation, String> {
    let (tools, instruction, turns) = stage2_parts(record)?;
    let Value::Array(tools) = tools else {
        return Err(format!("\"tools\" is {}, not a list", kind(&tools)));
    };
    let tools = tools
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t {
            Value::Object(doc) => Ok(doc),
            other => Err(format!("tool #{i} is {}, not an object", kind(&other))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Value::String(instruction) = instruction else {
        return Err(format!(
            "the instruction is {}, not a string",
            kind(&instruction)
        ));
    };
    let conversations = turns
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let speaker = match t["from"].as_str() {
                Some("user") => Speaker::User,
                Some("assistant") => Speaker::Assistant,
                Some("caller") => Speaker::Caller,
                Some("observation") => Speaker::Observation,
                _ => Speaker::Conclusion,
            };
            match &t["value"] {
                Value::String(s) => Ok(Turn::new(speaker, s.clone())),
                other => Err(format!(
                    "turn {i} ({}) would hold {}, not text",
                    speaker.as_str(),
                    kind(other)
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Conversation {
        tools,
        instruction,
        conversations,
    })
}

/// Appends the turns of one chain message (after the first two) to `turns`.
fn stage2_message(message: &Value, turns: &mut Vec<Value>) -> Result<(), String> {
    let Value::Object(message) = message else {
        return Err(format!("{}, not a message object", kind(message)));
    };
    let role = message.get("role").ok_or("no \"role\"")?;
    // Python compares with ==, so a role of another type or value is simply no match.
    match role.as_str() {
        Some("assistant") => {
            let content = match message.get("content") {
                Some(Value::String(c)) => Some(c.as_str()),
                Some(Value::Null) => None,
                Some(other) => return Err(format!("assistant content is {}", kind(other))),
                None => return Err("assistant message without \"content\"".into()),
            };
            let text = content.map(|c| format!("{c}\n")).unwrap_or_default();
            let Some(call) = message.get("function_call") else {
                return Ok(()); // the reference drops it: no turn at all
            };
            let Value::Object(call) = call else {
                return Err(format!("function_call is {}", kind(call)));
            };
            let name = call.get("name").ok_or("function_call without \"name\"")?;
            let arguments = call
                .get("arguments")
                .ok_or("function_call without \"arguments\"")?;
            if name == FINISH {
                match finish_outcome(content, arguments)? {
                    Finish::GiveUp => turns.push(turn("assistant", planner(&text, Next::GiveUp))),
                    Finish::Answer(answer) => {
                        turns.push(turn("assistant", planner(&text, Next::Conclusion)));
                        turns.push(turn("conclusion", answer));
                    }
                }
            } else {
                let (Value::String(name), Value::String(arguments)) = (name, arguments) else {
                    return Err(format!(
                        "function_call name is {} and arguments are {}; both must be strings",
                        kind(name),
                        kind(arguments)
                    ));
                };
                turns.push(turn("assistant", planner(&text, Next::Caller)));
                turns.push(turn(
                    "caller",
                    format!("Action: {name}\nAction Input: {arguments}"),
                ));
            }
        }
        Some("user") => {
            let content = message
                .get("content")
                .ok_or("user message without \"content\"")?;
            turns.push(turn("user", content.clone()));
        }
        Some("function") => {
            let content = message
                .get("content")
                .ok_or("function message without \"content\"")?;
            turns.push(turn("observation", observation_value(content)?));
        }
        _ => {} // system messages after the first two, unknown roles: ignored
    }
    Ok(())
}

/// The planner text of a turn: the rationale span, a space and the marker.
fn planner(span: &str, next: Next) -> String {
    format!("{span} {}", next.marker())
}

fn turn(from: &str, value: impl Into<Value>) -> Value {
    let mut t = Map::new();
    t.insert("from".into(), Value::String(from.into()));
    t.insert("value".into(), value.into());
    Value::Object(t)
}

/// How a `Finish` call ends the trajectory.
#[derive(Debug, PartialEq)]
enum Finish {
    /// `Next: give up.`, no conclusion turn.
    GiveUp,
    /// `Next: conclusion.` and this conclusion value.
    Answer(Value),
}

/// The reference's `try`/`except` over a `Finish` call's `arguments`.
fn finish_outcome(content: Option<&str>, arguments: &Value) -> Result<Finish, String> {
    // The try block: an object as is, a string through json.loads; anything else raises.
    let parsed: Option<Cow<'_, Value>> = match arguments {
        Value::Object(_) => Some(Cow::Borrowed(arguments)),
        Value::String(s) => match py_json_loads(s) {
            PyJson::Parsed(v) => Some(Cow::Owned(v)),
            PyJson::Invalid(_) => None,
            PyJson::Unrepresentable(why) => {
                return Err(format!("Finish arguments: {why}"));
            }
        },
        _ => None,
    };
    if let Some(Value::Object(j)) = parsed.as_deref()
        && let Some(return_type) = j.get("return_type")
    {
        if return_type == GIVE_UP {
            return Ok(Finish::GiveUp);
        }
        return Ok(Finish::Answer(
            j.get("final_answer")
                .cloned()
                .unwrap_or_else(|| "none".into()),
        ));
    }
    // The except path, on the original arguments.
    match arguments {
        Value::String(s) => {
            if s.contains(GIVE_UP) {
                Ok(Finish::GiveUp)
            } else if let Some(k) = s.find(FINAL_ANSWER_MARKER) {
                let tail = &s[k + FINAL_ANSWER_MARKER.len()..];
                let answer = tail
                    .trim_matches(is_py_space)
                    .trim_matches('}')
                    .trim_matches('"');
                Ok(Finish::Answer(answer.into()))
            } else {
                Ok(Finish::Answer(content.unwrap_or("none").into()))
            }
        }
        // `in` tests the keys of a dict and the items of a list; `.find` then fails on both.
        Value::Object(o) if o.contains_key(GIVE_UP) => Ok(Finish::GiveUp),
        Value::Array(a) if a.iter().any(|v| v == GIVE_UP) => Ok(Finish::GiveUp),
        other => Err(format!(
            "Finish arguments are {} without a return_type (the reference crashes)",
            kind(other)
        )),
    }
}

/// The reference's `try`/`except` over a function message's `content`.
fn observation_value(content: &Value) -> Result<Value, String> {
    let Value::String(text) = content else {
        return Err(format!(
            "function content is {}, not a string (the reference crashes)",
            kind(content)
        ));
    };
    let decoded;
    let haystack = match py_json_loads(text) {
        PyJson::Parsed(Value::Object(mut o)) if o.contains_key("response") => {
            return Ok(o.remove("response").unwrap_or(Value::Null));
        }
        // `ori` is rebound to the parsed value before `['response']` fails: a JSON string is
        // searched after decoding, anything else has no `.find`.
        PyJson::Parsed(Value::String(s)) => {
            decoded = s;
            decoded.as_str()
        }
        PyJson::Parsed(other) => {
            return Err(format!(
                "function content parses to {} without \"response\" (the reference crashes)",
                kind(&other)
            ));
        }
        PyJson::Invalid(_) => text.as_str(),
        PyJson::Unrepresentable(why) => return Err(format!("function content: {why}")),
    };
    Ok(Value::String(match haystack.find(RESPONSE_MARKER) {
        Some(k) => haystack[k + RESPONSE_MARKER.len()..].to_string(),
        None => String::new(),
    }))
}

/// Python's `str.isspace()`, what `str.strip()` removes: Rust's whitespace plus the
/// information separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// What Python's `json.loads` makes of a text.
#[derive(Debug)]
pub(super) enum PyJson {
    /// Parsed, with the same value Python gets.
    Parsed(Value),
    /// Python raises as well (the message is serde_json's).
    Invalid(String),
    /// Python parses it, but into something a [`Value`] cannot hold.
    Unrepresentable(String),
}

pub(super) fn py_json_loads(text: &str) -> PyJson {
    const WHY: &str = "Python's json.loads accepts it (NaN, Infinity, a number beyond the f64 \
                       range, a lone surrogate escape or deep nesting), but it cannot be \
                       represented exactly";
    let error = match serde_json::from_str::<Value>(text) {
        Ok(v) => return PyJson::Parsed(v),
        Err(e) => e.to_string(),
    };
    let deep = |e: &str| e.contains("recursion limit exceeded");
    if deep(&error) {
        return PyJson::Unrepresentable(format!("{WHY}: {error}"));
    }
    match replace_python_only_json(text) {
        Some(plain) => match serde_json::from_str::<Value>(&plain) {
            Ok(_) => PyJson::Unrepresentable(format!("{WHY}: {error}")),
            Err(e) if deep(&e.to_string()) => PyJson::Unrepresentable(format!("{WHY}: {e}")),
            Err(_) => PyJson::Invalid(error),
        },
        None => PyJson::Invalid(error),
    }
}

/// `text` with what Python's JSON accepts and standard JSON does not replaced by plain JSON
/// (`NaN`, `Infinity`, `-Infinity` and numbers that overflow `f64` outside strings by `0`,
/// lone surrogate escapes inside strings by `\ufffd`), or `None` when there is none.
fn replace_python_only_json(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0; // text[..copied] is in `out` (or replaced)
    let mut i = 0;
    let mut in_string = false;
    let replace = |out: &mut String, copied: &mut usize, start: usize, end: usize, with: &str| {
        out.push_str(&text[*copied..start]);
        out.push_str(with);
        *copied = end;
    };
    while i < b.len() {
        if in_string {
            match b[i] {
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                b'\\' if b.get(i + 1) == Some(&b'u') => match hex4(b, i + 2) {
                    Some(0xD800..=0xDBFF) => {
                        if b.get(i + 6) == Some(&b'\\')
                            && b.get(i + 7) == Some(&b'u')
                            && matches!(hex4(b, i + 8), Some(0xDC00..=0xDFFF))
                        {
                            i += 12; // a surrogate pair
                        } else {
                            replace(&mut out, &mut copied, i, i + 6, "\\ufffd");
                            i += 6;
                        }
                    }
                    Some(0xDC00..=0xDFFF) => {
                        replace(&mut out, &mut copied, i, i + 6, "\\ufffd");
                        i += 6;
                    }
                    _ => i += 2,
                },
                b'\\' => i += 2,
                _ => i += 1,
            }
        } else {
            // bytes, not `&text[i..]`: outside a string `i` may stop inside a multi-byte
            // character of malformed JSON (found by fuzzing: "not a char boundary" panic)
            let rest = &b[i..];
            if b[i] == b'"' {
                in_string = true;
                i += 1;
            } else if let Some(token) = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t.as_bytes()))
            {
                replace(&mut out, &mut copied, i, i + token.len(), " 0 ");
                i += token.len();
            } else if b[i] == b'-' || b[i].is_ascii_digit() {
                let len = rest
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                    .count();
                // ASCII bytes from an ASCII byte: a whole number of characters
                let number = &text[i..i + len];
                if is_json_number(number) && number.parse::<f64>().is_ok_and(f64::is_infinite) {
                    replace(&mut out, &mut copied, i, i + len, " 0 ");
                }
                i += len;
            } else {
                i += 1;
            }
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
    if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, the number grammar Python and JSON share.
fn is_json_number(s: &str) -> bool {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let s = s.strip_prefix('-').unwrap_or(s);
    let n = digits(s);
    if n == 0 || (n > 1 && s.starts_with('0')) {
        return false;
    }
    let mut s = &s[n..];
    if let Some(frac) = s.strip_prefix('.') {
        let n = digits(frac);
        if n == 0 {
            return false;
        }
        s = &frac[n..];
    }
    if let Some(exp) = s.strip_prefix(['e', 'E']) {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        let n = digits(exp);
        if n == 0 {
            return false;
        }
        s = &exp[n..];
    }
    s.is_empty()
}

fn last_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}

fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A JSON value's kind, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
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
    use serde_json::json;

    fn system_and_query() -> Vec<Value> {
        vec![
            json!({"role": "system", "content": "You are AutoGPT..."}),
            json!({"role": "user", "content": "\nq\nBegin!\n"}),
        ]
    }

    fn stage2_turns(chains_tail: Vec<Value>) -> Vec<(String, Value)> {
        let mut chains = system_and_query();
        chains.extend(chains_tail);
        let out = stage2_json(&json!({"tools": [], "instruction": "q", "chains": chains})).unwrap();
        out["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|t| (t["from"].as_str().unwrap().to_string(), t["value"].clone()))
            .collect()
    }

    fn finish(content: Option<&str>, arguments: Value) -> Finish {
        finish_outcome(content, &arguments).unwrap()
    }

    fn answer(v: impl Into<Value>) -> Finish {
        Finish::Answer(v.into())
    }

    #[test]
    fn truncated_observations_fall_back_to_the_raw_text_after_the_marker() {
        // ToolBench cuts contents at 1024 characters plus "...": no longer JSON.
        let truncated = r#"{"error": "", "response": "{'name': \"caf\u00e9\", 'items': [1, 2..."#;
        assert_eq!(
            observation_value(&json!(truncated)).unwrap(),
            json!(r#" "{'name': \"caf\u00e9\", 'items': [1, 2..."#),
            "leading space, escapes kept, no closing quote"
        );
        assert_eq!(observation_value(&json!("no marker")).unwrap(), json!(""));
        assert_eq!(
            observation_value(&json!(r#"{"error": "", "response": "ok"}"#)).unwrap(),
            json!("ok")
        );
        assert_eq!(
            observation_value(&json!(r#"{"response": {"a": 1}}"#)).unwrap(),
            json!({"a": 1}),
            "a parsed response keeps its JSON type"
        );
        // a JSON string literal is searched after decoding
        assert_eq!(
            observation_value(&json!(r#""{\"response\": 5}""#)).unwrap(),
            json!(" 5}")
        );
        for crash in [r#"{"error": ""}"#, "[1, 2]", "null", "3"] {
            assert!(observation_value(&json!(crash)).is_err(), "{crash}");
        }
        assert!(observation_value(&Value::Null).is_err());
        // Python parses NaN: the reference would emit the response, not the fallback
        let e = observation_value(&json!(r#"{"error": NaN, "response": "x"}"#)).unwrap_err();
        assert!(e.contains("NaN"), "{e}");
    }

    #[test]
    fn finish_calls_give_up_or_conclude_as_the_reference() {
        let give_up = r#"{"return_type": "give_up_and_restart"}"#;
        assert_eq!(finish(Some("c"), json!(give_up)), Finish::GiveUp);
        assert_eq!(
            finish(
                Some("c"),
                json!({"return_type": "give_up_and_restart", "final_answer": "x"})
            ),
            Finish::GiveUp
        );
        // truncated arguments: the substring decides
        assert_eq!(
            finish(None, json!(r#"{"return_type": "give_up_and_restart"#)),
            Finish::GiveUp
        );
        assert_eq!(
            finish(
                None,
                json!(r#"{"return_type": "give_answer", "final_answer": "x"}"#)
            ),
            answer("x")
        );
        assert_eq!(
            finish(Some("c"), json!(r#"{"return_type": "give_answer"}"#)),
            answer("none")
        );
        assert_eq!(
            finish(Some("c"), json!({"return_type": 5, "final_answer": 3})),
            answer(3)
        );
        // except path: marker tail, three separate strips, escapes not decoded
        assert_eq!(
            finish(
                Some("c"),
                json!(r#"{"return_type": "give_answer", "final_answer": "a\nb"#)
            ),
            answer(r"a\nb")
        );
        assert_eq!(
            finish(Some("c"), json!("{\"final_answer\": \"abc\"\n}")),
            answer("abc\"\n")
        );
        assert_eq!(
            finish(Some("c"), json!(r#"{"final_answer": "abc" } }"#)),
            answer("abc\" } ")
        );
        assert_eq!(
            finish(Some("c"), json!("{\"final_answer\": \"x\"}\u{1c}")),
            answer("x"),
            "Python's strip() also removes U+001C"
        );
        assert_eq!(
            finish(Some("c"), json!(r#"{"final_answer":"nospace"}"#)),
            answer("c")
        );
        assert_eq!(
            finish(Some("thought"), json!("not json")),
            answer("thought")
        );
        assert_eq!(finish(None, json!("not json")), answer("none"));
        assert_eq!(finish(Some("c"), json!("[1]")), answer("c"));
        assert_eq!(finish(None, json!(["give_up_and_restart"])), Finish::GiveUp);
        assert!(finish_outcome(None, &json!({"final_answer": "x"})).is_err());
        assert!(finish_outcome(None, &Value::Null).is_err());
        assert!(finish_outcome(None, &json!(r#"{"return_type": NaN}"#)).is_err());
    }

    #[test]
    fn stage2_turns_follow_the_reference() {
        let turns = stage2_turns(vec![
            json!({"role": "assistant", "content": null,
                   "function_call": {"name": "f_for_t", "arguments": "{\n  \"a\": 1\n}"}}),
            json!({"role": "function", "name": "f_for_t", "content": "{\"error\": \"\", \"response\": \"r\"}"}),
            json!({"role": "assistant", "content": "dead end"}),
            json!({"role": "system", "content": "ignored"}),
            json!({"role": "user", "content": "This is not the first time...", "valid": false}),
            json!({"role": "assistant", "content": "",
                   "function_call": {"name": "Finish", "arguments": "{\"return_type\": \"give_up_and_restart\"}"}}),
            json!({"role": "assistant", "content": "done",
                   "function_call": {"name": "Finish", "arguments": "{\"return_type\": \"give_answer\", \"final_answer\": \"A\"}"}}),
        ]);
        let expected: Vec<(String, Value)> = [
            ("assistant", " Next: caller."),
            ("caller", "Action: f_for_t\nAction Input: {\n  \"a\": 1\n}"),
            ("observation", "r"),
            ("user", "This is not the first time..."),
            ("assistant", "\n Next: give up."),
            ("assistant", "done\n Next: conclusion."),
            ("conclusion", "A"),
        ]
        .into_iter()
        .map(|(f, v)| (f.to_string(), json!(v)))
        .collect();
        assert_eq!(turns, expected);

        // chains[0] and chains[1] are skipped whatever they are
        let out = stage2_json(&json!({"tools": [], "instruction": "q", "chains": [
            {"role": "user", "content": "x"}, {"role": "function", "content": null}
        ]}))
        .unwrap();
        assert_eq!(
            out["conversations"],
            json!([{"from": "user", "value": "q"}])
        );
        assert!(
            stage2_json(&json!({"tools": [], "instruction": "q", "chains": [1, 2, {}]})).is_err()
        );
    }

    #[test]
    fn non_text_values_are_json_but_not_conversations() {
        let mut chains = system_and_query();
        chains.push(json!({"role": "user", "content": null}));
        let record = json!({"tools": [], "instruction": "q", "chains": chains});
        assert_eq!(
            stage2_json(&record).unwrap()["conversations"][1]["value"],
            Value::Null
        );
        let e = stage2_record(&record).unwrap_err();
        assert!(e.contains("turn 1 (user)") && e.contains("null"), "{e}");
    }

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

    #[test]
    fn python_json_extensions_are_recognised() {
        assert!(matches!(py_json_loads("[1, 2]"), PyJson::Parsed(_)));
        for python_only in [
            "NaN",
            "[-Infinity, 1]",
            r#"{"a": Infinity}"#,
            "1e400",
            r#""\ud800""#,
            r#""\udc00 \ud83d\ude00""#,
        ] {
            assert!(
                matches!(py_json_loads(python_only), PyJson::Unrepresentable(_)),
                "{python_only}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(py_json_loads(&deep), PyJson::Unrepresentable(_)));
        for invalid in [
            r#"{"a": NaN, "b": "trunc"#,
            "1NaN",
            "-NaN",
            "[+1e400]",
            r#""NaN"x"#,
            r#""\ud800"#,
            "",
            "nan",
        ] {
            assert!(
                matches!(py_json_loads(invalid), PyJson::Invalid(_)),
                "{invalid}"
            );
        }
        assert_eq!(
            replace_python_only_json(r#"["NaN", "\\ud800", "\ud83d\ude00", NaN]"#).unwrap(),
            r#"["NaN", "\\ud800", "\ud83d\ude00",  0 ]"#
        );
        assert!(is_json_number("-0.5e+3") && !is_json_number("01") && !is_json_number("1."));
    }

    /// Multi-byte characters outside strings (malformed JSON) once sliced `text` inside a
    /// character and panicked (found by `tests/tests/fuzz.rs`); they are invalid JSON instead.
    #[test]
    fn multi_byte_characters_outside_strings_are_invalid_not_a_panic() {
        for text in [
            "[é NaN]",
            "[\"a\\é\" é, 1e999]",
            "{\"k\": Récupère}",
            "[1, 日本, \"\\ud800\"]",
        ] {
            assert!(matches!(py_json_loads(text), PyJson::Invalid(_)), "{text}");
        }
        assert_eq!(replace_python_only_json("[é, NaN]").unwrap(), "[é,  0 ]");
    }

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

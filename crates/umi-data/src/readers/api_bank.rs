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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{ReadError, ReadReport, read_json, read_json_array, read_text};
use crate::conversation::{Conversation, Speaker, Turn};
use crate::pyjson::python_json_dumps;

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

// ---------------------------------------------------------------------------------------------
// Tool docs

fn toolsearcher_spec() -> Value {
    json!({
        "name": TOOL_SEARCHER,
        "description": "Searches for relevant tools in library based on the keywords.",
        "input_parameters": {"keywords": {"type": "str", "description": "The keyword to search for."}},
    })
}

/// The tools of one conversation, deduplicated by name, in order of addition.
#[derive(Default)]
struct Tools {
    docs: Vec<Map<String, Value>>,
    names: HashSet<String>,
}

impl Tools {
    /// Adds an API-Bank spec `{name, description, input_parameters: {p: {type, description}}}`
    /// as `{"Name", "function", "input"}`; specs without a string `name` are ignored.
    fn add_spec(&mut self, spec: &Value) {
        let Some(name) = spec.get("name").and_then(Value::as_str) else {
            return;
        };
        if !self.names.insert(name.to_string()) {
            return;
        }
        let mut input = Map::new();
        if let Some(Value::Object(params)) = spec.get("input_parameters") {
            for (p, d) in params {
                let text = match d {
                    Value::Object(d) => {
                        let ty = d.get("type").map_or_else(|| "str".into(), py_str);
                        match d.get("description").filter(|v| truthy(v)).map(py_str) {
                            Some(desc) => format!("{ty}, {}", last_chars(&desc, 256)),
                            None => ty,
                        }
                    }
                    other => py_str(other),
                };
                input.insert(p.clone(), Value::String(text));
            }
        }
        let function = spec
            .get("description")
            .filter(|v| truthy(v))
            .map_or_else(String::new, py_str);
        let function = function.chars().take(256).collect();
        self.docs.push(tool_doc(name, function, input));
    }

    /// Adds a stub doc for every called API that has none.
    fn stub_missing(&mut self, turns: &[Turn]) {
        for turn in turns.iter().filter(|t| t.from == Speaker::Caller) {
            let first_line = turn.value.split('\n').next().unwrap_or_default();
            let name = first_line.strip_prefix("Action: ").unwrap_or(first_line);
            if self.names.insert(name.to_string()) {
                self.docs.push(tool_doc(name, String::new(), Map::new()));
            }
        }
    }
}

/// `{"Name", "function", "input"}`, the α-UMi tool doc.
pub(super) fn tool_doc(
    name: &str,
    function: String,
    input: Map<String, Value>,
) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("Name".into(), name.into());
    doc.insert("function".into(), function.into());
    doc.insert("input".into(), Value::Object(input));
    doc
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn last_chars(s: &str, n: usize) -> &str {
    let count = s.chars().count();
    match s.char_indices().nth(count.saturating_sub(n)) {
        Some((at, _)) if count > n => &s[at..],
        _ => s,
    }
}

// ---------------------------------------------------------------------------------------------
// Dialogue rows → turns (shared by the .jsonl dialogues and the level-1/2-api histories)

enum Row {
    User(String),
    Ai(String),
    Api {
        name: String,
        params: Value,
        observation: String,
    },
}

fn api_turns(
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
fn convert_rows(
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
fn has_inline_call(text: &str) -> bool {
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
fn read_dialogue(
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

// ---------------------------------------------------------------------------------------------
// API-Bank's text formats: `API-Request: [Name(k='v', …)]->result`

struct Request<'a> {
    name: &'a str,
    args: &'a str,
    result: Option<&'a str>,
}

/// Regex `^API-Request: \[?(\w+)\((.*?)\)\]?(?:->(.*))?$` (brackets optional, as lv3-train
/// sometimes writes it).
fn parse_request(line: &str) -> Option<Request<'_>> {
    let rest = line.strip_prefix("API-Request: ")?;
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let after_name = rest.trim_start_matches(is_word);
    let name = &rest[..rest.len() - after_name.len()];
    let args_and_tail = after_name.strip_prefix('(').filter(|_| !name.is_empty())?;
    args_and_tail.match_indices(')').find_map(|(at, _)| {
        let tail = &args_and_tail[at + 1..];
        let tail = tail.strip_prefix(']').unwrap_or(tail);
        let args = &args_and_tail[..at];
        match tail.strip_prefix("->") {
            Some(result) => Some(Request {
                name,
                args,
                result: Some(result),
            }),
            None if tail.is_empty() || tail == "\n" => Some(Request {
                name,
                args,
                result: None,
            }),
            None => None,
        }
    })
}

/// A gold `expected_output`, regex `^API-Request: \[(\w+)\((.*)\)\]$` on the stripped text.
fn parse_gold(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim().strip_prefix("API-Request: [")?;
    let after_name = rest.trim_start_matches(is_word);
    let name = &rest[..rest.len() - after_name.len()];
    let args = after_name.strip_prefix('(')?.strip_suffix(")]")?;
    (!name.is_empty()).then_some((name, args))
}

/// What lv3-train step samples are matched on: `Name(args)` of a request line, else the line.
fn request_key(line: &str) -> String {
    match parse_request(line) {
        Some(r) => format!("{}({})", r.name, r.args.trim()),
        None => line.trim().to_string(),
    }
}

/// Keyword arguments `k='v', k2=3` as a JSON object, and whether they were Python literals
/// (`ast.parse("f(...)")` + `literal_eval`). Otherwise the lenient reading of lv3-train's
/// unquoted values: top-level `k=v` pieces, a value is a literal if it parses and a string
/// otherwise, and a piece with no `=` is glued to the previous value with a comma.
fn parse_kwargs(args: &str) -> (Option<Map<String, Value>>, bool) {
    if args.trim().is_empty() {
        return (Some(Map::new()), true);
    }
    if let Some(map) = python_kwargs(args) {
        return (Some(map), true);
    }
    let mut out = Map::new();
    let mut last: Option<String> = None;
    for piece in split_top_level(args) {
        match split_key_value(&piece) {
            Some((key, value)) => {
                let parsed = parse_literal(value).unwrap_or_else(|| {
                    let (first, end) = (value.chars().next(), value.chars().last());
                    if first == end && first.is_none_or(|c| c == '\'' || c == '"') {
                        value.trim_matches(['\'', '"']).into()
                    } else {
                        value.into()
                    }
                });
                out.insert(key.to_string(), parsed);
                last = Some(key.to_string());
            }
            None => {
                let Some(key) = &last else {
                    return (None, false);
                };
                let glued = format!("{},{piece}", py_str(&out[key.as_str()]));
                out.insert(key.clone(), glued.into());
            }
        }
    }
    (Some(out), false)
}

/// `^\s*(\w+)\s*=\s*(.*?)\s*$`.
fn split_key_value(piece: &str) -> Option<(&str, &str)> {
    let piece = piece.trim_start();
    let rest = piece.trim_start_matches(is_word);
    let key = &piece[..piece.len() - rest.len()];
    let value = rest.trim_start().strip_prefix('=')?;
    (!key.is_empty()).then(|| (key, value.trim()))
}

/// Splits on commas outside quotes and brackets (the prototype's `split_top_level`).
fn split_top_level(s: &str) -> Vec<String> {
    let (mut parts, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            cur.push(c);
            if c == '\\' {
                cur.extend(chars.next());
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        parts.push(cur);
    }
    parts
}

/// A `ToolSearcher` result (the repr of one spec dict or a list of them) as specs, repaired as
/// the prototype does: bare type names quoted (`'type': str`), apostrophes inside words escaped;
/// a truncated text still gives `{name, description}`. (The prototype's per-field regex
/// extraction, for untruncated texts that no repair fixes, is not ported: it never applies to
/// the shared data.)
fn parse_specs(text: &str) -> Vec<Value> {
    let bare = quote_bare_types(text);
    let candidates = [
        text.to_string(),
        bare.clone(),
        escape_apostrophes(text),
        escape_apostrophes(&bare),
    ];
    for candidate in &candidates {
        if let Some(v) = parse_literal(candidate) {
            return match v {
                Value::Array(items) => items,
                other => vec![other],
            };
        }
    }
    let name_and_description = || {
        let rest = text.strip_prefix("{'name': '")?;
        let after = rest.trim_start_matches(is_word);
        let name = &rest[..rest.len() - after.len()];
        let rest = after.strip_prefix("', 'description': '")?;
        let end = rest
            .match_indices('\'')
            .map(|(at, _)| at)
            .find(|&at| rest[at + 1..].starts_with(", '") || rest[at + 1..].starts_with('}'))?;
        (!name.is_empty())
            .then(|| json!({"name": name, "description": &rest[..end], "input_parameters": {}}))
    };
    name_and_description().into_iter().collect()
}

/// `re.sub(r"'type': ([A-Za-z_][\w\[\], ]*?)(?=[,}])", r"'type': '\1'", text)`.
fn quote_bare_types(text: &str) -> String {
    const KEY: &str = "'type': ";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let value = &rest[at + KEY.len()..];
        out.push_str(&rest[..at + KEY.len()]);
        let starts = value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        let end = value.char_indices().skip(1).find_map(|(i, c)| match c {
            ',' | '}' => Some(Some(i)),
            c if is_word(c) || matches!(c, '[' | ']' | ' ') => None,
            _ => Some(None),
        });
        match end.flatten().filter(|_| starts) {
            Some(end) => {
                out.push('\'');
                out.push_str(&value[..end]);
                out.push('\'');
                rest = &value[end..];
            }
            None => rest = value,
        }
    }
    out.push_str(rest);
    out
}

/// `re.sub(r"(?<=\w)'(?=\w)", r"\'", text)`.
fn escape_apostrophes(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let inside_word =
            i > 0 && is_word(chars[i - 1]) && chars.get(i + 1).is_some_and(|&n| is_word(n));
        if c == '\'' && inside_word {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

// ---------------------------------------------------------------------------------------------
// Python literals (`ast.literal_eval`) as JSON, and Python's `str()` of JSON values

/// A Python literal (string, number, `True`/`False`/`None`, list, tuple, dict, set) as JSON;
/// tuples and sets become arrays, dict keys strings (as `json.dumps` writes them).
fn parse_literal(s: &str) -> Option<Value> {
    let mut p = Lit::new(s);
    let v = p.value()?;
    p.at_end().then_some(v)
}

/// `f(k=v, …)` with literal values only (`None` for positional or repeated arguments).
fn python_kwargs(args: &str) -> Option<Map<String, Value>> {
    let mut p = Lit::new(args);
    let mut out = Map::new();
    while !p.at_end() {
        let key = p.ident()?;
        if !p.eat('=') {
            return None;
        }
        let value = p.value()?;
        if out.insert(key, value).is_some() || !(p.at_end() || p.eat(',')) {
            return None;
        }
    }
    Some(out)
}

struct Lit {
    c: Vec<char>,
    i: usize,
}

impl Lit {
    fn new(s: &str) -> Self {
        Self {
            c: s.chars().collect(),
            i: 0,
        }
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.c.get(self.i + k).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek_at(0), Some(' ' | '\t' | '\n' | '\r' | '\x0c')) {
            self.i += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.c.len()
    }

    fn eat(&mut self, ch: char) -> bool {
        self.ws();
        let hit = self.peek_at(0) == Some(ch);
        self.i += usize::from(hit);
        hit
    }

    fn ident(&mut self) -> Option<String> {
        self.ws();
        let start = self.i;
        if !self
            .peek_at(0)
            .is_some_and(|c| c.is_alphabetic() || c == '_')
        {
            return None;
        }
        while self.peek_at(0).is_some_and(is_word) {
            self.i += 1;
        }
        Some(self.c[start..self.i].iter().collect())
    }

    fn starts_string(&self) -> bool {
        let quote = |c: Option<char>| matches!(c, Some('\'' | '"'));
        quote(self.peek_at(0))
            || (matches!(self.peek_at(0), Some('u' | 'U' | 'r' | 'R')) && quote(self.peek_at(1)))
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        if self.starts_string() {
            let mut s = self.string()?;
            while {
                self.ws();
                self.starts_string()
            } {
                s += &self.string()?;
            }
            return Some(Value::String(s));
        }
        match self.peek_at(0)? {
            '[' => {
                self.i += 1;
                self.items(']').map(Value::Array)
            }
            '(' => {
                self.i += 1;
                if self.eat(')') {
                    return Some(Value::Array(Vec::new()));
                }
                let first = self.value()?;
                if self.eat(')') {
                    return Some(first);
                }
                if !self.eat(',') {
                    return None;
                }
                let mut items = vec![first];
                items.extend(self.items(')')?);
                Some(Value::Array(items))
            }
            '{' => {
                self.i += 1;
                self.dict_or_set()
            }
            c if c.is_ascii_digit() || matches!(c, '.' | '-' | '+') => self.number(),
            _ => match self.ident()?.as_str() {
                "True" => Some(Value::Bool(true)),
                "False" => Some(Value::Bool(false)),
                "None" => Some(Value::Null),
                _ => None,
            },
        }
    }

    /// Comma-separated values up to `close` (trailing comma allowed).
    fn items(&mut self, close: char) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.value()?);
            if !self.eat(',') {
                return self.eat(close).then_some(out);
            }
        }
    }

    fn dict_or_set(&mut self) -> Option<Value> {
        if self.eat('}') {
            return Some(Value::Object(Map::new()));
        }
        let first = self.value()?;
        if !self.eat(':') {
            let mut items = vec![first];
            if self.eat(',') {
                items.extend(self.items('}')?);
            } else if !self.eat('}') {
                return None;
            }
            return Some(Value::Array(items));
        }
        let mut map = Map::new();
        let mut key = first;
        loop {
            let value = self.value()?;
            map.insert(dict_key(&key)?, value);
            if !self.eat(',') {
                return self.eat('}').then_some(Value::Object(map));
            }
            if self.eat('}') {
                return Some(Value::Object(map));
            }
            key = self.value()?;
            if !self.eat(':') {
                return None;
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let negative = self.eat('-') || {
            self.eat('+');
            false
        };
        self.ws();
        let start = self.i;
        let digits = |p: &mut Self| {
            while p
                .peek_at(0)
                .is_some_and(|c| c.is_ascii_digit() || c == '_' || c == '.')
            {
                p.i += 1;
            }
        };
        digits(self);
        if matches!(self.peek_at(0), Some('e' | 'E')) {
            self.i += 1;
            if matches!(self.peek_at(0), Some('+' | '-')) {
                self.i += 1;
            }
            digits(self);
        }
        if self.peek_at(0).is_some_and(is_word) {
            return None; // 1j, 0x1f, 1abc
        }
        let token: String = self.c[start..self.i]
            .iter()
            .filter(|&&c| c != '_')
            .collect();
        if !token.contains(['.', 'e', 'E']) {
            if token.len() > 1 && token.starts_with('0') && token.contains(|c| c != '0') {
                return None; // Python 3 rejects leading zeros
            }
            let n: i64 = token.parse().ok()?;
            return Some(Value::from(if negative { -n } else { n }));
        }
        let f: f64 = token.parse().ok()?;
        serde_json::Number::from_f64(if negative { -f } else { f }).map(Value::Number)
    }

    fn string(&mut self) -> Option<String> {
        let mut raw = false;
        if let Some(prefix @ ('u' | 'U' | 'r' | 'R')) = self.peek_at(0) {
            raw = matches!(prefix, 'r' | 'R');
            self.i += 1;
        }
        let q = self.peek_at(0)?;
        let triple = self.peek_at(1) == Some(q) && self.peek_at(2) == Some(q);
        self.i += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let c = self.peek_at(0)?;
            self.i += 1;
            if c == q {
                if !triple {
                    return Some(out);
                }
                if self.peek_at(0) == Some(q) && self.peek_at(1) == Some(q) {
                    self.i += 2;
                    return Some(out);
                }
            } else if c == '\n' && !triple {
                return None;
            } else if c == '\\' {
                let e = self.peek_at(0)?;
                self.i += 1;
                if raw {
                    out.push('\\');
                    out.push(e);
                    continue;
                }
                let mut hex = |n: usize| {
                    let digits: String = self.c.get(self.i..self.i + n)?.iter().collect();
                    self.i += n;
                    char::from_u32(u32::from_str_radix(&digits, 16).ok()?)
                };
                match e {
                    '\n' => {}
                    '\\' | '\'' | '"' => out.push(e),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    'x' => out.push(hex(2)?),
                    'u' => out.push(hex(4)?),
                    'U' => out.push(hex(8)?),
                    '0'..='7' => {
                        let mut n = e.to_digit(8)?;
                        for _ in 0..2 {
                            match self.peek_at(0).and_then(|d| d.to_digit(8)) {
                                Some(d) => {
                                    n = n * 8 + d;
                                    self.i += 1;
                                }
                                None => break,
                            }
                        }
                        out.push(char::from_u32(n)?);
                    }
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
                continue;
            }
            out.push(c);
        }
    }
}

/// A dict key as `json.dumps` writes it (strings as they are, numbers and constants as text).
fn dict_key(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) => Some(py_repr(key)),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

/// Python's `str(value)` of a JSON value: a string as it is, anything else as `repr`.
fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr` of the value `json.loads` gives (dicts `{'k': v}`, lists `[a, b]`,
/// `None`/`True`/`False`, floats as Python prints them, strings with repr's quote choice and
/// escapes; "printable" is approximated by Unicode control and separator characters).
fn py_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    out
}

fn write_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) if n.is_f64() => out.push_str(&py_float(n.as_f64().unwrap_or_default())),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str_repr(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str_repr(k, out);
                out.push_str(": ");
                write_repr(v, out);
            }
            out.push('}');
        }
    }
}

/// `repr(float)`: shortest round-trip digits, scientific below 1e-4 and from 1e16 on.
fn py_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "nan"
        } else if f > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let plain = f.to_string();
        if plain.contains('.') {
            plain
        } else {
            plain + ".0"
        }
    } else {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

fn write_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control()
                || (c.is_whitespace() && c != ' ')
                || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}') =>
            {
                let n = c as u32;
                let escaped = match n {
                    0..=0xff => format!("\\x{n:02x}"),
                    0x100..=0xffff => format!("\\u{n:04x}"),
                    _ => format!("\\U{n:08x}"),
                };
                out.push_str(&escaped);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

// ---------------------------------------------------------------------------------------------
// training-data/lv3-train.json, test-data/level-3.json: call chains with ToolSearcher specs

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
fn read_lv3_train(
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
fn read_level3(
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

// ---------------------------------------------------------------------------------------------
// test-data/level-{1,2}-api.json: next-call decision points

/// `{file, id, instruction, input, expected_output}`: the instruction ends with one JSON spec per
/// line after `API descriptions:`; `input` holds `User:` / `AI:` / `API-Request: …->result` lines.
/// The history is converted like a dialogue, then the gold call is appended without an
/// observation. Gold (and history) arguments that are not Python literals come from the k-th API
/// row of the source dialogue `file`; a gold API missing from the given and retrieved specs is
/// added from the catalog; exact duplicates are skipped.
fn read_test_api(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Option<String> {
        parse_literal(s).map(|v| python_json_dumps(&v))
    }

    #[test]
    fn python_literals_parse_as_literal_eval() {
        assert_eq!(lit("'a\\'b'").as_deref(), Some(r#""a'b""#));
        assert_eq!(lit(r#""it's" 'x'"#).as_deref(), Some(r#""it'sx""#));
        assert_eq!(
            lit("{'a': [1, -2.5, (3,), None, True], 'b': {'none'}, 1: ()}").as_deref(),
            Some(r#"{"a": [1, -2.5, [3], null, true], "b": ["none"], "1": []}"#)
        );
        assert_eq!(lit("{'a': 1,}").as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(
            lit("'\\x41\\u00e9\\n\\q'").as_deref(),
            Some(r#""A\u00e9\n\\q""#)
        );
        assert_eq!(lit("1e5").as_deref(), Some("100000.0"));
        for bad in [
            "04",
            "2034-04-15",
            "John Smith",
            "'open",
            "[1, 2",
            "1j",
            "f(1)",
            "{'a' 1}",
        ] {
            assert_eq!(lit(bad), None, "{bad}");
        }
    }

    #[test]
    fn kwargs_parse_strictly_then_leniently() {
        let dumps = |args: &str| {
            let (map, strict) = parse_kwargs(args);
            (map.map(|m| python_json_dumps(&Value::Object(m))), strict)
        };
        assert_eq!(dumps(""), (Some("{}".into()), true));
        assert_eq!(
            dumps("keywords='add schedule', n=3, l=['a', \"b's\"]"),
            (
                Some(r#"{"keywords": "add schedule", "n": 3, "l": ["a", "b's"]}"#.into()),
                true
            )
        );
        // lv3-train's unquoted values; a piece without '=' is glued to the previous value
        assert_eq!(
            dumps("patient_name=John Smith, medication=aspirin, ibuprofen, age=42"),
            (
                Some(r#"{"patient_name": "John Smith", "medication": "aspirin, ibuprofen", "age": 42}"#.into()),
                false
            )
        );
        // nested quotes (test-data): the outer quotes are stripped from the raw text
        assert_eq!(
            dumps("a='1', d='[{'k': 'v'}]'"),
            (Some(r#"{"a": "1", "d": "[{'k': 'v'}]"}"#.into()), false)
        );
        assert!(!dumps("a=1, a=2").1);
        assert_eq!(dumps("no pair at all"), (None, false));
    }

    #[test]
    fn request_lines_parse_as_the_prototype_regex() {
        let r =
            parse_request("API-Request: [ToolSearcher(keywords='a (b)')]->{'name': 'X'}").unwrap();
        assert_eq!(
            (r.name, r.args, r.result),
            ("ToolSearcher", "keywords='a (b)'", Some("{'name': 'X'}"))
        );
        let r = parse_request("API-Request: PharmacyLocator(location=New York)->ok").unwrap();
        assert_eq!(
            (r.name, r.args, r.result),
            ("PharmacyLocator", "location=New York", Some("ok"))
        );
        let r = parse_request("API-Request: [GetToday()]").unwrap();
        assert_eq!((r.name, r.args, r.result), ("GetToday", "", None));
        assert!(parse_request("API-Request: [GetToday(]").is_none());
        assert_eq!(request_key("API-Request: [A( x=1 )]->r"), "A(x=1)");
        assert_eq!(
            parse_gold(" API-Request: [A(x='(1)')]\n"),
            Some(("A", "x='(1)'"))
        );
        assert!(has_inline_call("Sure. [QueryStock(stock_code='AAPL')]"));
        assert!(!has_inline_call("[note] (a) [lower(x)] [Split(\n)]"));
    }

    #[test]
    fn toolsearcher_results_are_repaired() {
        let specs = parse_specs(
            "{'name': 'A', 'description': 'd', 'input_parameters': {'p': {'type': str, 'description': 'the patient's id'}}}",
        );
        let mut tools = Tools::default();
        tools.add_spec(&specs[0]);
        assert_eq!(
            python_json_dumps(&Value::Object(tools.docs[0].clone())),
            r#"{"Name": "A", "function": "d", "input": {"p": "str, the patient's id"}}"#
        );
        assert_eq!(
            quote_bare_types("{'type': List[str], 'x': {'type': 'str'}}"),
            "{'type': 'List[str]', 'x': {'type': 'str'}}"
        );
        let truncated = parse_specs(
            "{'name': 'B', 'description': 'it's cut', 'input_parameters': {'a': {'type...",
        );
        assert_eq!(
            truncated,
            vec![json!({"name": "B", "description": "it's cut", "input_parameters": {}})]
        );
        assert!(parse_specs("garbage").is_empty());
    }

    #[test]
    fn values_print_as_python_str() {
        let v: Value = serde_json::from_str(
            r#"{"a": "it's", "b": "say \"hi\" it's", "c": [1, 2.0, 77.33333333333333, 1e-5, 1e16, null, false], "d": "tab\there\u0001é"}"#,
        )
        .unwrap();
        // python3 -c 'print(str({"a": "it'"'"'s", ...}))'
        assert_eq!(
            py_str(&v),
            r#"{'a': "it's", 'b': 'say "hi" it\'s', 'c': [1, 2.0, 77.33333333333333, 1e-05, 1e+16, None, False], 'd': 'tab\there\x01é'}"#
        );
        assert_eq!(py_str(&json!("success")), "success");
        assert_eq!(last_chars("abcdé", 2), "dé");
    }

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

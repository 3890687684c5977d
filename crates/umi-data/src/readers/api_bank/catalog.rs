//! Tool docs: API-Bank specs as α-UMi tool docs, one deduplicated list per conversation.

use std::collections::HashSet;

use crate::ToolDoc;
use serde_json::{Map, Value, json};

use super::TOOL_SEARCHER;
use crate::conversation::{Speaker, Turn};
use crate::python::repr::py_str;
use crate::python::text::last_chars;
use crate::tool_doc::tool_doc_from_parts;

pub(super) fn toolsearcher_spec() -> Value {
    json!({
        "name": TOOL_SEARCHER,
        "description": "Searches for relevant tools in library based on the keywords.",
        "input_parameters": {"keywords": {"type": "str", "description": "The keyword to search for."}},
    })
}

/// The tools of one conversation, deduplicated by name, in order of addition.
#[derive(Default)]
pub(super) struct Tools {
    pub(super) docs: Vec<ToolDoc>,
    pub(super) names: HashSet<String>,
}

impl Tools {
    /// Adds an API-Bank spec `{name, description, input_parameters: {p: {type, description}}}`
    /// as `{"Name", "function", "input"}`; specs without a string `name` are ignored.
    pub(super) fn add_spec(&mut self, spec: &Value) {
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
        self.docs.push(tool_doc_from_parts(name, function, input));
    }

    /// Adds a stub doc for every called API that has none.
    pub(super) fn stub_missing(&mut self, turns: &[Turn]) {
        for turn in turns.iter().filter(|t| t.from == Speaker::Caller) {
            let first_line = turn.value.split('\n').next().unwrap_or_default();
            let name = first_line.strip_prefix("Action: ").unwrap_or(first_line);
            if self.names.insert(name.to_string()) {
                self.docs
                    .push(tool_doc_from_parts(name, String::new(), Map::new()));
            }
        }
    }
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

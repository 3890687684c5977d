//! `ToolSpec`: what the agent knows of a tool, read from ToolBench-style tool docs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Bad tool docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ToolError {
    /// Where the docs came from.
    pub origin: String,
    /// What is wrong, with the tool's index or name.
    pub message: String,
}

/// HTTP method of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Arguments go in the query string.
    Get,
    /// Arguments go in a JSON body.
    Post,
}

/// How a tool is reached over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpBinding {
    /// Method.
    pub method: HttpMethod,
    /// Absolute URL.
    pub url: String,
}

/// A tool: its ToolBench doc (`Name`, `function`, `input`) and, for HTTP tools, its endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Name the caller must write after `Action:`.
    pub name: String,
    /// What it does (ToolBench `function`).
    pub description: String,
    /// Arguments: name → `"type, description"` (ToolBench `input`).
    pub input: Map<String, Value>,
    /// Endpoint, for tools run over HTTP.
    pub http: Option<HttpBinding>,
}

impl ToolSpec {
    /// The ToolBench doc the prompts show: `{"Name", "function", "input"}`, in that order.
    pub fn doc(&self) -> Map<String, Value> {
        let mut doc = Map::new();
        doc.insert("Name".into(), Value::String(self.name.clone()));
        doc.insert("function".into(), Value::String(self.description.clone()));
        doc.insert("input".into(), Value::Object(self.input.clone()));
        doc
    }

    /// The host (and port) of the tool's endpoint, if it has one.
    pub fn host(&self) -> Option<String> {
        let url = &self.http.as_ref()?.url;
        let rest = url.split_once("://")?.1;
        Some(rest.split(['/', '?']).next().unwrap_or(rest).to_string())
    }
}

/// Reads tool docs: a JSON list of ToolBench docs (`{"Name", "function", "input"}`, plus
/// `"http": {"method", "url"}` for HTTP tools), or an object with such a list under `"tools"`
/// (α-UMi conversation records, the tool server's `/tools`).
///
/// # Errors
///
/// [`ToolError`] naming `origin` and the tool when the JSON or a doc is malformed.
pub fn load_tool_specs(json: &str, origin: &str) -> Result<Vec<ToolSpec>, ToolError> {
    let fail = |message: String| ToolError {
        origin: origin.to_string(),
        message,
    };
    let value: Value = serde_json::from_str(json).map_err(|e| fail(format!("not JSON: {e}")))?;
    let list = match &value {
        Value::Array(list) => list,
        Value::Object(o) => o.get("tools").and_then(Value::as_array).ok_or_else(|| {
            fail("expected a list of tool docs or an object with a \"tools\" list".into())
        })?,
        _ => return Err(fail("expected a list of tool docs".into())),
    };
    list.iter()
        .enumerate()
        .map(|(i, doc)| {
            let name = doc
                .get("Name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| fail(format!("tool #{i} has no \"Name\" string")))?;
            let description = doc
                .get("function")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let input = match doc.get("input") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(o)) => o.clone(),
                Some(_) => return Err(fail(format!("tool {name}: \"input\" must be an object"))),
            };
            let http = match doc.get("http") {
                None | Some(Value::Null) => None,
                Some(h) => Some(
                    serde_json::from_value::<HttpBinding>(h.clone())
                        .map_err(|e| fail(format!("tool {name}: bad \"http\": {e}")))?,
                ),
            };
            Ok(ToolSpec {
                name: name.to_string(),
                description: description.to_string(),
                input,
                http,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toolbench_docs_and_http_bindings() {
        let specs = load_tool_specs(
            r#"{"tools": [{"Name": "add", "function": "Adds.", "input": {"a": "number, first"},
                "http": {"method": "GET", "url": "http://127.0.0.1:8080/tools/add"}},
               {"Name": "list_all", "function": "Lists.", "input": {}}]}"#,
            "tools.json",
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].host().as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            serde_json::to_string(&specs[0].doc()).unwrap(),
            r#"{"Name":"add","function":"Adds.","input":{"a":"number, first"}}"#
        );
        assert!(specs[1].http.is_none());
    }

    #[test]
    fn bad_docs_name_the_tool() {
        let e = load_tool_specs(r#"[{"function": "x"}]"#, "t.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.json") && e.contains("tool #0"), "{e}");
        let e = load_tool_specs(
            r#"[{"Name": "a", "http": {"method": "PUT", "url": "x"}}]"#,
            "t.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tool a") && e.contains("http"), "{e}");
    }
}

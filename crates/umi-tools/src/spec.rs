//! `ToolSpec`: what the agent knows of a tool, read from ToolBench-style tool docs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use umi_data::ToolDoc;
use umi_data::tool_doc::{self};

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
    pub fn doc(&self) -> ToolDoc {
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

/// Reads tool docs in any of the formats tool-use data comes in, recognised by shape:
///
/// - ToolBench / α-UMi docs: a list of `{"Name", "function", "input"}` (plus
///   `"http": {"method", "url"}` for HTTP tools), or an object with such a list under `"tools"`
///   (α-UMi conversation records, the tool server's `/tools`);
/// - function schemas: a list of `{"name", "description", "parameters"}` (ToolBench's raw
///   `function` lists, OpenAI function calling), optionally wrapped as
///   `{"type": "function", "function": …}`; converted as α-UMi's `prepro_raw_stage_1.py` does
///   (name cut to its last 64 characters, description to 256, `Finish` dropped, arguments as
///   `"type, description"`), by the ToolBench conversion
///   [`tool_doc`](umi_data::tool_doc::tool_doc), with defaults for what other
///   function schemas may leave out (description, parameters, argument types);
/// - an OpenAPI 3 document (ToolAlpaca's `Documentation`): one tool per operation, with its
///   HTTP endpoint.
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
    if value.get("openapi").is_some() {
        return from_openapi(&value, origin);
    }
    let is_function = |v: &Value| {
        v.get("function").is_some_and(Value::is_object)
            || (v.get("name").is_some() && v.get("Name").is_none())
    };
    if let Value::Array(list) = &value
        && list.first().is_some_and(is_function)
    {
        return from_function_schemas(list, origin);
    }
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

/// The URL of a tool server's docs: `server` itself when it already ends in `/tools`, else
/// `<server>/tools` (`umi tools serve` and any server speaking its protocol). Surrounding
/// whitespace and trailing slashes are ignored.
pub fn tools_url(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if server.ends_with("/tools") {
        server.to_string()
    } else {
        format!("{server}/tools")
    }
}

/// Where tool docs come from: `umi run --tools`, `umi eval live --tools`, and the web app's
/// tool-server field or pasted docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolDocsSource {
    /// A tool server's base URL (whose `/tools` is read, [`tools_url`]) or the docs' own URL
    /// ending in `/tools`.
    Url(String),
    /// A JSON file of tool docs (natively; the browser has no files).
    File(std::path::PathBuf),
    /// The docs themselves (pasted into the web app), and what to call them in messages.
    Text {
        /// The tool docs JSON.
        json: String,
        /// Their name in error messages (`pasted tool docs`).
        origin: String,
    },
}

impl ToolDocsSource {
    /// A command-line argument: `http://` or `https://` is a [`ToolDocsSource::Url`], anything
    /// else a [`ToolDocsSource::File`] path.
    pub fn from_arg(arg: &str) -> Self {
        if arg.starts_with("http://") || arg.starts_with("https://") {
            Self::Url(arg.to_string())
        } else {
            Self::File(arg.into())
        }
    }
}

/// Reads the tool docs of `source` (a URL fetched within `timeout` natively, with `fetch` in the
/// browser; a file; or the docs themselves), then [`load_tool_specs`]: the one way `umi run`,
/// `umi eval live` and the web app's worker get their tools.
///
/// # Errors
///
/// [`ToolError`] naming the source when it cannot be read (unreachable server, HTTP error,
/// timeout, missing file), when the docs are malformed, or when they list no tool.
pub async fn load_tool_specs_from(
    source: &ToolDocsSource,
    timeout: std::time::Duration,
) -> Result<Vec<ToolSpec>, ToolError> {
    let fail = |origin: &str, message: String| ToolError {
        origin: origin.to_string(),
        message,
    };
    let (text, origin) = match source {
        ToolDocsSource::Url(server) => {
            let url = tools_url(server);
            let text = http_get_text(&url, timeout).await.map_err(|e| {
                fail(
                    &url,
                    format!("cannot read the tool docs ({e}); is `umi tools serve` running?"),
                )
            })?;
            (text, url)
        }
        ToolDocsSource::File(path) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| fail(&origin, format!("cannot read the tool docs: {e}")))?;
            (text, origin)
        }
        ToolDocsSource::Text { json, origin } => (json.clone(), origin.clone()),
    };
    let specs = load_tool_specs(&text, &origin)?;
    if specs.is_empty() {
        return Err(fail(&origin, "the tool docs list no tools".into()));
    }
    Ok(specs)
}

/// The body of a GET of `url` as text (64 MiB at most), within `timeout`.
#[cfg(not(target_family = "wasm"))]
async fn http_get_text(url: &str, timeout: std::time::Duration) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    agent
        .get(url)
        .call()
        .and_then(|mut r| r.body_mut().with_config().limit(64 << 20).read_to_string())
        .map_err(|e| e.to_string())
}

/// The body of a GET of `url` as text, with the browser's `fetch` (whose own timeout applies).
#[cfg(target_family = "wasm")]
async fn http_get_text(url: &str, _timeout: std::time::Duration) -> Result<String, String> {
    let response = gloo_net::http::Request::get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.ok() {
        return Err(format!("HTTP {}", response.status()));
    }
    response.text().await.map_err(|e| e.to_string())
}

fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// An argument schema with what ToolBench's function lists always have and other schemas
/// (OpenAPI parameters, OpenAI function calling) may lack: `"type": "string"` when the type is
/// missing or not a string, and no `description` when it is not a string.
fn argument_with_defaults(schema: &Value) -> Value {
    let mut out = Map::new();
    let ty = schema.get("type").filter(|t| t.is_string());
    out.insert(
        "type".into(),
        ty.cloned().unwrap_or_else(|| "string".into()),
    );
    if let Some(d) = schema.get("description").filter(|d| d.is_string()) {
        out.insert("description".into(), d.clone());
    }
    Value::Object(out)
}

/// `"type, description"` as α-UMi writes an argument (the type alone without a description;
/// `"string, "` for an empty one), by the stage-1 conversion of
/// [`umi_data::tool_doc::describe_argument`].
fn describe_argument(schema: &Value) -> Value {
    // With the defaults filled in, type and description are strings and the conversion
    // cannot fail.
    tool_doc::describe_argument(&argument_with_defaults(schema))
        .unwrap_or_else(|_| Value::String("string".into()))
}

/// A function schema with the defaults ToolBench's function lists never need: an empty
/// `description` when it is missing or not a string, empty `parameters.properties` when they
/// are missing or not an object, and [`argument_with_defaults`] for each argument.
fn function_with_defaults(f: &Map<String, Value>) -> Value {
    let mut f = f.clone();
    if !f.get("description").is_some_and(Value::is_string) {
        f.insert("description".into(), Value::String(String::new()));
    }
    let properties: Map<String, Value> = f
        .get("parameters")
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(arg, schema)| (arg.clone(), argument_with_defaults(schema)))
                .collect()
        })
        .unwrap_or_default();
    let mut parameters = match f.remove("parameters") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    parameters.insert("properties".into(), Value::Object(properties));
    f.insert("parameters".into(), Value::Object(parameters));
    Value::Object(f)
}

/// Function schemas converted by α-UMi's stage-1 conversion,
/// [`umi_data::tool_doc::tool_doc`] (the one implementation, shared with the
/// ToolBench reader), after [`function_with_defaults`].
fn from_function_schemas(list: &[Value], origin: &str) -> Result<Vec<ToolSpec>, ToolError> {
    let fail = |message: String| ToolError {
        origin: origin.to_string(),
        message,
    };
    let mut specs = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let f = item
            .get("function")
            .filter(|f| f.is_object())
            .unwrap_or(item);
        let Some(f) = f
            .as_object()
            .filter(|f| f.get("name").is_some_and(Value::is_string))
        else {
            return Err(fail(format!("function #{i} has no \"name\"")));
        };
        // Finish: ToolBench's answer pseudo-function; α-UMi's planner/summarizer replace it
        let Some(mut doc) = tool_doc::tool_doc(&function_with_defaults(f))
            .map_err(|e| fail(format!("function #{i}: {e}")))?
        else {
            continue;
        };
        let mut text = |key: &str| match doc.remove(key) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let (name, description) = (text("Name"), text("function"));
        let input = match doc.remove("input") {
            Some(Value::Object(input)) => input,
            _ => Map::new(),
        };
        specs.push(ToolSpec {
            name,
            description,
            input,
            http: None,
        });
    }
    Ok(specs)
}

fn from_openapi(doc: &Value, origin: &str) -> Result<Vec<ToolSpec>, ToolError> {
    let fail = |message: String| ToolError {
        origin: origin.to_string(),
        message,
    };
    let server = doc
        .pointer("/servers/0/url")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("OpenAPI document has no servers[0].url".into()))?
        .trim_end_matches('/')
        .to_string();
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| fail("OpenAPI document has no paths".into()))?;
    let mut specs = Vec::new();
    for (path, item) in paths {
        for (method_name, method) in [("get", HttpMethod::Get), ("post", HttpMethod::Post)] {
            let Some(op) = item.get(method_name) else {
                continue;
            };
            let name = op
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{method_name}{}", path.replace(['/', '{', '}'], "_")));
            let description = ["summary", "description"]
                .iter()
                .find_map(|k| op.get(*k).and_then(Value::as_str))
                .unwrap_or_default();
            let mut input = Map::new();
            for p in op
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(pname) = p.get("name").and_then(Value::as_str) {
                    let mut schema = p.get("schema").cloned().unwrap_or(Value::Null);
                    if let (Value::Object(o), Some(d)) = (&mut schema, p.get("description")) {
                        o.insert("description".into(), d.clone());
                    }
                    input.insert(pname.to_string(), describe_argument(&schema));
                }
            }
            let body = op
                .pointer("/requestBody/content/application~1json/schema/properties")
                .and_then(Value::as_object);
            for (arg, schema) in body.into_iter().flatten() {
                input.insert(arg.clone(), describe_argument(schema));
            }
            specs.push(ToolSpec {
                name,
                description: first_chars(description, 256),
                input,
                http: Some(HttpBinding {
                    method,
                    url: format!("{server}{path}"),
                }),
            });
        }
    }
    if specs.is_empty() {
        return Err(fail(
            "OpenAPI document has no GET or POST operations".into(),
        ));
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_address_becomes_its_tools_url() {
        for server in [
            "http://h:8080",
            "http://h:8080/",
            " http://h:8080/tools/ ",
            "http://h:8080/tools",
        ] {
            assert_eq!(tools_url(server), "http://h:8080/tools", "{server:?}");
        }
        assert_eq!(tools_url("https://h/api"), "https://h/api/tools");
    }

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
    fn function_schemas_convert_like_alpha_umi_stage_1() {
        let specs = load_tool_specs(
            r#"[{"name": "video_for_seo_api", "description": "Search videos.", "parameters": {"type": "object",
                 "properties": {"query": {"type": "string", "description": "the query"}, "n": {"type": "integer"},
                                "lang": {"type": "string", "description": ""}}}},
                {"name": "Finish", "description": "", "parameters": {}}]"#,
            "functions.json",
        )
        .unwrap();
        assert_eq!(specs.len(), 1, "Finish is dropped");
        // an empty description still gets ", " (the reference writes `type + ', ' + description`)
        assert_eq!(
            serde_json::to_string(&specs[0].doc()).unwrap(),
            r#"{"Name":"video_for_seo_api","function":"Search videos.","input":{"query":"string, the query","n":"integer","lang":"string, "}}"#
        );
        let wrapped = load_tool_specs(
            r#"[{"type": "function", "function": {"name": "f", "parameters": {}}}]"#,
            "openai.json",
        )
        .unwrap();
        assert_eq!(wrapped[0].name, "f");
    }

    #[test]
    fn openapi_operations_become_http_tools() {
        let specs = load_tool_specs(
            r#"{"openapi": "3.0.1", "servers": [{"url": "https://date.nager.at/"}], "paths": {
                "/api/v3/CountryInfo/{countryCode}": {"get": {"summary": "Country info", "operationId": "CountryCountryInfo",
                    "parameters": [{"name": "countryCode", "in": "path", "description": "Two letters", "schema": {"type": "string"}}]}}}}"#,
            "doc.json",
        )
        .unwrap();
        assert_eq!(specs[0].name, "CountryCountryInfo");
        assert_eq!(
            specs[0].http.as_ref().unwrap().url,
            "https://date.nager.at/api/v3/CountryInfo/{countryCode}"
        );
        assert_eq!(specs[0].input["countryCode"], "string, Two letters");
        assert_eq!(specs[0].host().as_deref(), Some("date.nager.at"));
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

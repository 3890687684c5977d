//! The α-UMi tool doc `{"Name", "function", "input"}` and the conversions into it: from a
//! ToolBench function schema ([`tool_doc`] and [`describe_argument`], as GLPFT's
//! `prepro_raw_stage_1.py`; the one implementation, shared by the ToolBench reader and
//! `umi-tools`), and from its parts (the API-Bank and ToolAlpaca readers).

use serde_json::{Map, Value};

use crate::python::json::kind;
use crate::python::text::{first_chars, last_chars};

/// An α-UMi / ToolBench tool doc, `{"Name", "function", "input"}` (key order kept): what the
/// prompts list and a conversation record's `tools` holds.
pub type ToolDoc = Map<String, Value>;

/// The doc's `Name`, when it is a string.
pub fn tool_name(doc: &ToolDoc) -> Option<&str> {
    doc.get("Name").and_then(Value::as_str)
}

/// ToolBench's answer pseudo-function, dropped from the tool docs and turned into the
/// conclusion / give-up turns.
pub(crate) const FINISH: &str = "Finish";

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
pub fn tool_doc(function: &Value) -> Result<Option<ToolDoc>, String> {
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
    doc.insert(
        "Name".into(),
        Value::String(last_chars(name, 64).to_string()),
    );
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

/// `{"Name", "function", "input"}`, the α-UMi tool doc.
pub(crate) fn tool_doc_from_parts(
    name: &str,
    function: String,
    input: Map<String, Value>,
) -> ToolDoc {
    let mut doc = Map::new();
    doc.insert("Name".into(), name.into());
    doc.insert("function".into(), function.into());
    doc.insert("input".into(), Value::Object(input));
    doc
}

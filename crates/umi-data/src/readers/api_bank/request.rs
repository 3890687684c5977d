//! API-Bank's text formats: `API-Request: [Name(k='v', …)]->result`.

use serde_json::{Map, Value, json};

use crate::python::literal::{parse_literal, python_kwargs};
use crate::python::repr::py_str;
use crate::python::text::is_word;

pub(super) struct Request<'a> {
    pub(super) name: &'a str,
    pub(super) args: &'a str,
    pub(super) result: Option<&'a str>,
}

/// Regex `^API-Request: \[?(\w+)\((.*?)\)\]?(?:->(.*))?$` (brackets optional, as lv3-train
/// sometimes writes it).
pub(super) fn parse_request(line: &str) -> Option<Request<'_>> {
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
pub(super) fn parse_gold(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim().strip_prefix("API-Request: [")?;
    let after_name = rest.trim_start_matches(is_word);
    let name = &rest[..rest.len() - after_name.len()];
    let args = after_name.strip_prefix('(')?.strip_suffix(")]")?;
    (!name.is_empty()).then_some((name, args))
}

/// What lv3-train step samples are matched on: `Name(args)` of a request line, else the line.
pub(super) fn request_key(line: &str) -> String {
    match parse_request(line) {
        Some(r) => format!("{}({})", r.name, r.args.trim()),
        None => line.trim().to_string(),
    }
}

/// Keyword arguments `k='v', k2=3` as a JSON object, and whether they were Python literals
/// (`ast.parse("f(...)")` + `literal_eval`). Otherwise the lenient reading of lv3-train's
/// unquoted values: top-level `k=v` pieces, a value is a literal if it parses and a string
/// otherwise, and a piece with no `=` is glued to the previous value with a comma.
pub(super) fn parse_kwargs(args: &str) -> (Option<Map<String, Value>>, bool) {
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
pub(super) fn parse_specs(text: &str) -> Vec<Value> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::json::python_json_dumps;
    use crate::readers::api_bank::catalog::Tools;
    use crate::readers::api_bank::dialogue::has_inline_call;

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
}

//! Stage 2, `prepro_raw_stage_2.py`: one stage-1 record → `{"tools", "instruction",
//! "conversations"}`, as JSON or as a [`Conversation`].

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::conversation::{Conversation, Next, Speaker, Turn};
use crate::python::json::{PyJson, kind, py_json_loads};
use crate::python::text::is_py_space;
use crate::tool_doc::FINISH;

/// The `return_type` (or, in the fallback, the substring) that means "give up".
const GIVE_UP: &str = "give_up_and_restart";
/// The fallback marker for a `Finish` call whose arguments are not JSON (one space after `:`).
const FINAL_ANSWER_MARKER: &str = "\"final_answer\": ";
/// The fallback marker for an observation that is not JSON (no space after `:`).
const RESPONSE_MARKER: &str = "\"response\":";

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
}

//! JSON as Python's `json` module handles it: written exactly as `json.dumps` writes it with
//! default arguments (`", "` and `": "` separators, `ensure_ascii=True`), which α-UMi prompts
//! embed ([`python_json_dumps`]), and read as `json.loads` reads it ([`py_json_loads`]).

use std::io;

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{CharEscape, Formatter};

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(writer, "\\u{byte:04x}"),
        };
        writer.write_all(s)
    }
}

/// Serialises `value` as Python's `json.dumps(value)` does (keys in their stored order).
pub fn python_json_dumps(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut ser)
        .expect("serialising a JSON value into memory cannot fail");
    String::from_utf8(out).expect("the formatter writes ASCII only")
}

/// What Python's `json.loads` makes of a text.
#[derive(Debug)]
pub(crate) enum PyJson {
    /// Parsed, with the same value Python gets.
    Parsed(Value),
    /// Python raises as well (the message is serde_json's).
    Invalid(String),
    /// Python parses it, but into something a [`Value`] cannot hold.
    Unrepresentable(String),
}

pub(crate) fn py_json_loads(text: &str) -> PyJson {
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

/// A JSON value's kind, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_defaults() {
        let v: Value = serde_json::from_str(
            r#"{"Name": "a", "input": {"x": "string, café 🙂\n\"q\""}, "n": [1, 2.5, null, true]}"#,
        )
        .unwrap();
        // python3 -c 'import json; print(json.dumps({"Name": "a", "input": {"x": "string, café 🙂\n\"q\""}, "n": [1, 2.5, None, True]}))'
        assert_eq!(
            python_json_dumps(&v),
            r#"{"Name": "a", "input": {"x": "string, caf\u00e9 \ud83d\ude42\n\"q\""}, "n": [1, 2.5, null, true]}"#
        );
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
}

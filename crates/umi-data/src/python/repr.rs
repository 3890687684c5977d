//! Python's `str()` and `repr` of JSON values, as API-Bank writes results into its text formats.

use serde_json::Value;

/// Python's `str(value)` of a JSON value: a string as it is, anything else as `repr`.
pub(crate) fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr` of the value `json.loads` gives (dicts `{'k': v}`, lists `[a, b]`,
/// `None`/`True`/`False`, floats as Python prints them, strings with repr's quote choice and
/// escapes; "printable" is approximated by Unicode control and separator characters).
pub(crate) fn py_repr(value: &Value) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    }
}

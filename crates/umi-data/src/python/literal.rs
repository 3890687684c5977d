//! Python literals (`ast.literal_eval`) as JSON.

use serde_json::{Map, Value};

use super::repr::py_repr;
use super::text::is_word;

/// A Python literal (string, number, `True`/`False`/`None`, list, tuple, dict, set) as JSON;
/// tuples and sets become arrays, dict keys strings (as `json.dumps` writes them).
pub(crate) fn parse_literal(s: &str) -> Option<Value> {
    let mut p = Lit::new(s);
    let v = p.value()?;
    p.at_end().then_some(v)
}

/// `f(k=v, …)` with literal values only (`None` for positional or repeated arguments).
pub(crate) fn python_kwargs(args: &str) -> Option<Map<String, Value>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::json::python_json_dumps;

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
}

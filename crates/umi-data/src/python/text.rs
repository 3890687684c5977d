//! Python's view of text: slices that count code points, and its character classes.

pub(crate) fn last_chars(s: &str, n: usize) -> &str {
    let count = s.chars().count();
    match s.char_indices().nth(count.saturating_sub(n)) {
        Some((at, _)) if count > n => &s[at..],
        _ => s,
    }
}

pub(crate) fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Python's `str.isspace()`, what `str.strip()` removes: Rust's whitespace plus the
/// information separators U+001C..U+001F.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

pub(crate) fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_count_code_points() {
        assert_eq!(last_chars("abcdé", 2), "dé");
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Strings quoted as the two formats quote them: Go's `strconv.Quote` and JSON.

use std::fmt;

/// Writes `text` quoted as Go's `strconv.Quote` does: `"` and `\` escaped, control characters
/// as `\n`, `\t`, ... or `\xNN` / `\uNNNN`, printable characters as they are.
pub fn go_quote(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\u{7}' => out.write_str("\\a")?,
            '\u{8}' => out.write_str("\\b")?,
            '\u{c}' => out.write_str("\\f")?,
            '\u{b}' => out.write_str("\\v")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\x{:02x}", c as u32)?,
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{feff}' => {
                write!(out, "\\u{:04x}", c as u32)?
            }
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// Writes `text` as a JSON string.
pub fn json_quote(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quoting() {
        for (text, want) in [
            ("added address", r#""added address""#),
            ("a \"b\" \\ c", r#""a \"b\" \\ c""#),
            ("two\nlines\r\t", r#""two\nlines\r\t""#),
            ("\u{0}\u{1b}\u{7f}", r#""\x00\x1b\x7f""#),
            ("\u{85}\u{2028}", r#""\u0085\u2028""#),
            ("ünï 🦀", r#""ünï 🦀""#),
        ] {
            let mut out = String::new();
            go_quote(&mut out, text).expect("format");
            assert_eq!(out, want, "{text:?}");
        }
    }

    #[test]
    fn json_quoting() {
        for (text, want) in [
            ("plain", r#""plain""#),
            ("a \"b\" \\", r#""a \"b\" \\""#),
            ("x\ny\u{1}", r#""x\ny\u0001""#),
        ] {
            let mut out = String::new();
            json_quote(&mut out, text).expect("format");
            assert_eq!(out, want, "{text:?}");
        }
    }
}

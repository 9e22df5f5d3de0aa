//! A small YAML writer for the manifests (pure): maps, lists, strings, integers and
//! booleans, block style as `kubectl` prints it, and `#` comments before a document.
//! A string is written plain only when YAML cannot read it as anything else; every other
//! string is double-quoted with JSON's escapes (valid YAML), so no value can change type
//! or break out of its line.

use std::fmt::Write;

/// One YAML value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
    List(Vec<Value>),
    /// Keys in the order written (field names: plain identifiers).
    Map(Vec<(String, Value)>),
}

/// A map from `(key, value)` pairs.
pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

pub fn str(text: impl Into<String>) -> Value {
    Value::Str(text.into())
}

/// A YAML document: comment lines, then its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub comments: Vec<String>,
    pub value: Value,
}

/// Writes comment lines at the top, then each document after a `---` line.
pub fn render(header: &[String], documents: &[Document]) -> String {
    let mut out = String::new();
    comments(&mut out, header, 0);
    for document in documents {
        out.push_str("---\n");
        comments(&mut out, &document.comments, 0);
        match &document.value {
            Value::Map(entries) => write_map(&mut out, entries, 0),
            Value::List(items) => write_list(&mut out, items, 0),
            scalar => {
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
    out
}

fn comments(out: &mut String, lines: &[String], indent: usize) {
    for line in lines.iter().flat_map(|l| l.lines()) {
        let _ = writeln!(out, "{:indent$}# {line}", "");
    }
}

fn write_map(out: &mut String, entries: &[(String, Value)], indent: usize) {
    for (key, value) in entries {
        let _ = write!(out, "{:indent$}{key}:", "");
        write_after_key(out, value, indent);
    }
}

fn write_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_map(out, entries, indent + 2);
        }
        Value::List(items) if !items.is_empty() => {
            out.push('\n');
            write_list(out, items, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar_text(other));
            out.push('\n');
        }
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        match item {
            Value::Map(entries) if !entries.is_empty() => {
                // The first entry goes on the dash's line, the others line up under it.
                let mut block = String::new();
                write_map(&mut block, entries, indent + 2);
                let _ = write!(out, "{:indent$}- ", "");
                out.push_str(&block[indent + 2..]);
            }
            Value::List(inner) if !inner.is_empty() => {
                let _ = writeln!(out, "{:indent$}-", "");
                write_list(out, inner, indent + 2);
            }
            other => {
                let _ = writeln!(out, "{:indent$}- {}", "", scalar_text(other));
            }
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Str(text) => string_text(text),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Map(_) => "{}".to_string(),
        Value::List(_) => "[]".to_string(),
    }
}

/// Words YAML 1.1 (still read by some Kubernetes tools) or 1.2 takes for booleans or null.
const SPECIAL_WORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

fn string_text(text: &str) -> String {
    let plain = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !SPECIAL_WORDS.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).expect("a string serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_yaml_would_read_as_something_else_are_quoted() {
        for (text, written) in [
            ("cilium-peer", "cilium-peer"),
            ("2001:db8:1::1", "\"2001:db8:1::1\""),
            ("192.0.2.1", "\"192.0.2.1\""),
            ("yes", "\"yes\""),
            ("Off", "\"Off\""),
            ("", "\"\""),
            ("a: b", "\"a: b\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("#comment", "\"#comment\""),
        ] {
            assert_eq!(string_text(text), written, "{text:?}");
        }
    }

    #[test]
    fn maps_in_lists_start_on_the_dash_line_and_comments_precede_documents() {
        let doc = Document {
            comments: vec!["first\nsecond".into()],
            value: map([
                ("kind", str("Example")),
                (
                    "items",
                    Value::List(vec![
                        map([("name", str("a")), ("port", Value::Int(179))]),
                        str("b"),
                    ]),
                ),
                ("empty", Value::Map(vec![])),
                ("enabled", Value::Bool(true)),
            ]),
        };
        assert_eq!(
            render(&["top".to_string()], &[doc]),
            "# top\n---\n# first\n# second\nkind: Example\nitems:\n  - name: a\n    port: 179\n  - b\nempty: {}\nenabled: true\n"
        );
    }
}

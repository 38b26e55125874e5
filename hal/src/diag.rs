//! Diagnostics for hand-written TOML files (site configs, scenarios).
//!
//! People edit these files on a laptop in a branch office. Every problem is
//! reported as `FILE:LINE:COL: message`, the form editors and terminals turn
//! into a link. Syntax errors come from the TOML parser with their spans;
//! type errors from serde with the span of the offending value; semantic
//! problems found later by a `validate()` name a *path* into the document
//! (`lines[2].id`) which [`TomlSource`] resolves back to a span.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

/// One problem in one file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// A list of diagnostics that is itself an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A TOML file's text, kept to turn byte offsets and key paths into places.
#[derive(Debug)]
pub struct TomlSource {
    path: PathBuf,
    text: String,
}

impl TomlSource {
    /// Reads a file. An unreadable file becomes a diagnostic at 1:1.
    pub fn read(path: &Path) -> Result<TomlSource, Diagnostics> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(TomlSource::new(path, text)),
            Err(e) => Err(Diagnostics(vec![Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                message: format!("cannot read file: {e}"),
            }])),
        }
    }

    /// Wraps text already in memory (built-in files, tests).
    pub fn new(path: &Path, text: String) -> TomlSource {
        TomlSource {
            path: path.to_path_buf(),
            text,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Directory that relative paths inside the file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Parses the file into `T`: every syntax error, or the first type error,
    /// with its place.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostics> {
        let (_, errors) = DeTable::parse_recoverable(&self.text);
        if !errors.is_empty() {
            return Err(Diagnostics(
                errors
                    .iter()
                    .map(|e| self.at_offset(e.span().map_or(0, |s| s.start), e.message()))
                    .collect(),
            ));
        }
        toml::from_str(&self.text).map_err(|e| {
            Diagnostics(vec![
                self.at_offset(e.span().map_or(0, |s| s.start), e.message().trim()),
            ])
        })
    }

    /// A diagnostic at a byte offset.
    pub fn at_offset(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Diagnostic {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A diagnostic at the value a key path names, e.g. `lines[2].id` or
    /// `inbound.greeting`. When the path does not exist in the file (a
    /// missing key), the nearest enclosing table is used.
    pub fn at_path(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let offset = self.span_of(path).map_or(0, |s| s.start);
        self.at_offset(offset, message)
    }

    /// Span of the value at `path`, or of its nearest existing ancestor.
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let doc = DeTable::parse(&self.text).ok()?;
        let mut best = None;
        let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
        let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
        for seg in segments(path) {
            let next = match (seg, table, value.map(|v| v.get_ref())) {
                (Seg::Key(k), Some(t), _) => t.get(k),
                (Seg::Key(k), None, Some(DeValue::Table(t))) => t.get(k),
                (Seg::Index(i), None, Some(DeValue::Array(a))) => a.get(i),
                _ => None,
            };
            let Some(v) = next else { break };
            best = Some(v.span());
            value = Some(v);
            table = None;
        }
        best
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `a.b[3].c` into keys and indices.
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Parses a human duration (`"20s"`, `"1m 30s"`, `"250ms"`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write e.g. \"20s\", \"1m 30s\", \"250ms\"")
    })
}

/// Serde helpers for durations written as strings in TOML.
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserializes `"20s"`-style strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    /// Same, for optional fields.
    pub mod option {
        use super::*;
        /// Deserializes an optional `"20s"`-style string.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let s = String::deserialize(d)?;
            super::super::parse_duration(&s)
                .map(Some)
                .map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        id: u32,
    }

    fn src(text: &str) -> TomlSource {
        TomlSource::new(Path::new("f.toml"), text.to_string())
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = src("name = \"a\"\nitems = [\n").parse::<Doc>().unwrap_err();
        assert_eq!(e.0[0].file, Path::new("f.toml"));
        assert!(e.0[0].line >= 2, "{e}");
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let e = src("name = \"a\"\n\n[[items]]\nid = 1\ncolour = 3\n")
            .parse::<Doc>()
            .unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].col), (5, 1), "{e}");
        assert!(e.0[0].message.contains("colour"), "{e}");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let e = src("name = \"a\"\n[[items]]\nid = \"x\"\n")
            .parse::<Doc>()
            .unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].col), (3, 6), "{e}");
    }

    #[test]
    fn paths_resolve_to_values() {
        let s = src("name = \"a\"\n[[items]]\nid = 1\n[[items]]\nid = 2\n");
        let d = s.at_path("items[1].id", "bad");
        assert_eq!((d.line, d.col), (5, 6));
        assert_eq!(d.to_string(), "f.toml:5:6: bad");
        // a missing key falls back to the enclosing value
        let d = s.at_path("items[1].nope", "missing");
        assert_eq!(d.line, 4);
    }
}

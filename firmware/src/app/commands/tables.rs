//! Lookup tables and number lists that `lookup.update` rewrites: the CSV
//! shapes the IVR reads, and the lists written inside the config's text.

use serde_json::Value;

use super::args::{ArgError, clip};
use super::error::CommandError;
use crate::ivr::pattern::PatternError;

/// What is wrong with one of the rows `lookup.update` sent (the answer
/// says `rows[i]: ` and this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// A table row that is not an object.
    #[error("must be an object with {}", .columns.join(", "))]
    NotAnObject {
        /// The table's columns.
        columns: &'static [&'static str],
    },
    /// A column the table does not have.
    #[error("unknown column `{column}`; the {table} table has {}", .columns.join(", "))]
    UnknownColumn {
        /// The column sent (clipped).
        column: String,
        /// The table.
        table: &'static str,
        /// The table's columns.
        columns: &'static [&'static str],
    },
    /// A required column is missing, or not a string.
    #[error(transparent)]
    Field(#[from] ArgError),
    /// A required column is empty.
    #[error("`{column}` is empty")]
    Empty {
        /// The column.
        column: &'static str,
    },
    /// A value that would split the CSV row.
    #[error("`{column}` cannot contain a comma or a line break")]
    CommaOrBreak {
        /// The column.
        column: &'static str,
    },
    /// A key that is not what the table's keys are.
    #[error("{column} `{key}` must be {rule}")]
    BadKey {
        /// The key column.
        column: &'static str,
        /// The key (clipped).
        key: String,
        /// What it must be.
        rule: &'static str,
    },
    /// A key sent twice.
    #[error("{column} `{key}` appears twice (also rows[{first}])")]
    KeyTwice {
        /// The key column.
        column: &'static str,
        /// The key.
        key: String,
        /// The row it came first in.
        first: usize,
    },
    /// A number list's entry that is not a string.
    #[error("must be a string (a number pattern)")]
    NotAPattern,
    /// A number list's entry that does not compile.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A number list's entry sent twice.
    #[error("`{entry}` appears twice (also rows[{first}])")]
    EntryTwice {
        /// The entry (clipped).
        entry: String,
        /// The row it came first in.
        first: usize,
    },
}

/// Row `index` is wrong.
pub(super) fn bad_row(index: usize, why: impl Into<RowError>) -> CommandError {
    CommandError::Row {
        index,
        why: why.into(),
    }
}

/// A CSV lookup table's shape (as `ivr/lookup.rs` reads it).
pub(super) struct Table {
    pub(super) name: &'static str,
    columns: &'static [&'static str],
    /// Trailing columns that may be left out.
    optional: usize,
    /// Whether the key (first column) may start with `+`.
    plus: bool,
    /// What a key must be, for the error.
    key_rule: &'static str,
}

pub(super) const TABLES: [Table; 5] = [
    Table {
        name: "products",
        columns: &["code", "region", "product"],
        optional: 1,
        plus: false,
        key_rule: "digits a caller can key",
    },
    Table {
        name: "regions",
        columns: &["prefix", "region"],
        optional: 0,
        plus: true,
        key_rule: "digits (a leading + allowed)",
    },
    Table {
        name: "orders",
        columns: &["order", "status"],
        optional: 0,
        plus: false,
        key_rule: "digits a caller can key",
    },
    Table {
        name: "contacts",
        columns: &["number", "name"],
        optional: 0,
        plus: true,
        key_rule: "digits (a leading + allowed)",
    },
    // The campaigns' site-wide do-not-call list (`[campaigns] dnc`).
    Table {
        name: "dnc",
        columns: &["number"],
        optional: 0,
        plus: true,
        key_rule: "digits (a leading + allowed)",
    },
];

impl Table {
    /// Rows as sent, checked: every problem names the row's index.
    pub(super) fn rows(&self, rows: &[Value]) -> Result<Vec<Vec<String>>, CommandError> {
        let required = self.columns.len() - self.optional;
        let mut out: Vec<Vec<String>> = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let Value::Object(m) = r else {
                return Err(bad_row(
                    i,
                    RowError::NotAnObject {
                        columns: self.columns,
                    },
                ));
            };
            if let Some(k) = m.keys().find(|k| !self.columns.contains(&k.as_str())) {
                return Err(bad_row(
                    i,
                    RowError::UnknownColumn {
                        column: clip(k),
                        table: self.name,
                        columns: self.columns,
                    },
                ));
            }
            let mut fields = Vec::with_capacity(self.columns.len());
            for (j, col) in self.columns.iter().enumerate() {
                let v = match m.get(*col) {
                    None | Some(Value::Null) if j >= required => String::new(),
                    None | Some(Value::Null) => {
                        return Err(bad_row(i, ArgError::missing(col)));
                    }
                    Some(Value::String(s)) => s.trim().to_string(),
                    Some(_) => return Err(bad_row(i, ArgError::wrong(*col, "a string"))),
                };
                if v.is_empty() && j < required {
                    return Err(bad_row(i, RowError::Empty { column: col }));
                }
                // The file has no quoting: these would split the row.
                if v.contains([',', '\n', '\r']) {
                    return Err(bad_row(i, RowError::CommaOrBreak { column: col }));
                }
                fields.push(v);
            }
            let key = &fields[0];
            let digits = if self.plus {
                key.strip_prefix('+').unwrap_or(key)
            } else {
                key
            };
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad_row(
                    i,
                    RowError::BadKey {
                        column: self.columns[0],
                        key: clip(key),
                        rule: self.key_rule,
                    },
                ));
            }
            if let Some(j) = out.iter().position(|o| o[0] == *key) {
                return Err(bad_row(
                    i,
                    RowError::KeyTwice {
                        column: self.columns[0],
                        key: key.clone(),
                        first: j,
                    },
                ));
            }
            out.push(fields);
        }
        Ok(out)
    }

    /// The rows of a table file (header and comments skipped), each padded
    /// to every column.
    pub(super) fn parse_file(&self, text: &str) -> Vec<Vec<String>> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .skip(1)
            .map(|l| {
                let mut f: Vec<String> = l.split(',').map(|f| f.trim().to_string()).collect();
                f.resize(self.columns.len(), String::new());
                f
            })
            .collect()
    }

    pub(super) fn to_csv(&self, rows: &[Vec<String>]) -> String {
        let mut out = format!(
            "# {} table, written by callboxd for headquarters (lookup.update)\n{}\n",
            self.name,
            self.columns.join(",")
        );
        for r in rows {
            out.push_str(&r.join(","));
            out.push('\n');
        }
        out
    }
}

/// The file `[ivr.lookups] <table>` names, as written.
pub(super) fn lookup_file(text: &str, table: &str) -> Option<String> {
    let doc = text.parse::<toml::Table>().ok()?;
    if table == "dnc" {
        return doc
            .get("campaigns")?
            .get("dnc")?
            .as_str()
            .map(str::to_string);
    }
    doc.get("ivr")?
        .get("lookups")?
        .get(table)?
        .as_str()
        .map(str::to_string)
}

/// Where the array of `[ivr.lists] <name>` is in the text, and its entries.
pub(super) fn list_in(text: &str, name: &str) -> Option<(std::ops::Range<usize>, Vec<String>)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let DeValue::Table(ivr) = doc.get_ref().get("ivr")?.get_ref() else {
        return None;
    };
    let DeValue::Table(lists) = ivr.get("lists")?.get_ref() else {
        return None;
    };
    let list = lists.get(name)?;
    let DeValue::Array(items) = list.get_ref() else {
        return None;
    };
    let entries = items
        .iter()
        .filter_map(|v| match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    Some((list.span(), entries))
}

/// A TOML array of strings: on one line when short, one entry a line
/// otherwise.
pub(super) fn toml_array(entries: &[String]) -> String {
    let quoted: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    let one_line = format!("[{}]", quoted.join(", "));
    if one_line.len() <= 80 {
        return one_line;
    }
    let mut out = String::from("[\n");
    for q in quoted {
        out.push_str("    ");
        out.push_str(&q);
        out.push_str(",\n");
    }
    out.push(']');
    out
}

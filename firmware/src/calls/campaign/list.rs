//! A campaign's contact list: a CSV file whose header names the columns,
//! or (a file named `*.jsonl`) JSON lines, one object per contact.
//! `number` is required; `name` and `tz` (an IANA zone) are the contact's
//! own; every other column (key) becomes a variable of the flow
//! (`{amount}`). A malformed row is left out and reported with its line; a
//! number that comes twice is merged into its first row.

use std::collections::HashSet;
use std::path::Path;

use crate::store::NewContact;

/// A list as read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The contacts, in list order.
    pub contacts: Vec<NewContact>,
    /// Rows left out: (line, why).
    pub rejected: Vec<(usize, String)>,
    /// Rows merged into an earlier one with the same number.
    pub merged: usize,
}

/// Whether the list at `path` is JSON lines (by its name).
fn is_jsonl(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jsonl")
}

/// Checks the list can be read: a CSV header with a `number` column, or
/// JSON lines; an error names the file and what is wrong.
pub fn header(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if is_jsonl(path) {
        return Ok(());
    }
    header_of(&text)
        .map(drop)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn header_of(text: &str) -> Result<Vec<String>, String> {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .ok_or("the list is empty: its first line names the columns (number,name,…)")?;
    let cols: Vec<String> = fields(first)
        .into_iter()
        .map(|c| c.trim().to_string())
        .collect();
    if !cols.iter().any(|c| c == "number") {
        return Err(format!("the header `{first}` has no `number` column"));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = cols.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(format!("column `{dup}` comes twice in the header"));
    }
    Ok(cols)
}

/// Reads the list at `path`.
pub fn read(path: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if is_jsonl(path) {
        return Ok(parse_jsonl(&text));
    }
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses JSON lines: one object per line, `number` a string or an
/// integer, other values strings, numbers or booleans.
pub fn parse_jsonl(text: &str) -> Loaded {
    let mut out = Loaded::default();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let obj = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => {
                out.rejected.push((line_no, "not a JSON object".into()));
                continue;
            }
            Err(e) => {
                out.rejected.push((line_no, format!("not JSON: {e}")));
                continue;
            }
        };
        let mut c = Row::default();
        let mut bad = None;
        for (k, v) in obj {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => String::new(),
                _ => {
                    bad = Some(format!("`{k}` is not a string, number or boolean"));
                    break;
                }
            };
            c.set(&k, v);
        }
        if let Some(why) = bad {
            out.rejected.push((line_no, why));
            continue;
        }
        out.take(c, line_no, &mut seen);
    }
    out
}

/// A row as it is read: the contact and its other columns.
#[derive(Default)]
struct Row {
    number: String,
    name: Option<String>,
    tz: Option<String>,
    vars: serde_json::Map<String, serde_json::Value>,
}

impl Row {
    /// Sets column `col` to `v` (trimmed).
    fn set(&mut self, col: &str, v: String) {
        let v = v.trim().to_string();
        match col {
            "number" => self.number = v,
            "name" => self.name = Some(v).filter(|v| !v.is_empty()),
            "tz" => self.tz = Some(v).filter(|v| !v.is_empty()),
            _ => {
                self.vars
                    .insert(col.to_string(), serde_json::Value::String(v));
            }
        }
    }
}

impl Loaded {
    /// Takes row `line_no` after its checks: left out with why, merged
    /// into an earlier one, or added.
    fn take(&mut self, c: Row, line_no: usize, seen: &mut HashSet<String>) {
        if !crate::calls::dialplan::valid_number(&c.number) {
            self.rejected
                .push((line_no, format!("`{}` is not a number to dial", c.number)));
            return;
        }
        if let Some(tz) = &c.tz
            && jiff::tz::TimeZone::get(tz).is_err()
        {
            self.rejected
                .push((line_no, format!("unknown time zone `{tz}`")));
            return;
        }
        if !seen.insert(c.number.clone()) {
            self.merged += 1;
            return;
        }
        self.contacts.push(NewContact {
            number: c.number,
            name: c.name,
            tz: c.tz,
            vars: serde_json::Value::Object(c.vars).to_string(),
        });
    }
}

/// Parses a list's text.
pub fn parse(text: &str) -> Result<Loaded, String> {
    let cols = header_of(text)?;
    let mut out = Loaded::default();
    let mut seen = HashSet::new();
    let mut header_done = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if !header_done {
            header_done = true;
            continue;
        }
        let values = fields(line);
        if values.len() != cols.len() {
            out.rejected.push((
                line_no,
                format!(
                    "{} fields where the header has {}",
                    values.len(),
                    cols.len()
                ),
            ));
            continue;
        }
        let mut c = Row::default();
        for (col, v) in cols.iter().zip(values) {
            c.set(col, v);
        }
        out.take(c, line_no, &mut seen);
    }
    Ok(out)
}

/// A CSV line's fields: commas separate; a field in double quotes may hold
/// commas and `""` for a quote.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_bad_ones_reported_by_line_and_duplicates_merged() {
        let l = parse(
            "# renewals\nnumber,name,tz,amount\n13800000001,\"Wang, Li\",,120\n\
             13800000002,Zhao,America/New_York,80\n13800000001,Again,,1\nabc,Bad,,1\n\
             13800000003,Short\n13800000004,Zed,Mars/Base,1\n",
        )
        .unwrap();
        assert_eq!(l.contacts.len(), 2);
        assert_eq!(l.contacts[0].name.as_deref(), Some("Wang, Li"));
        assert_eq!(l.contacts[0].tz, None);
        assert_eq!(l.contacts[0].vars()["amount"], "120");
        assert_eq!(l.contacts[1].tz.as_deref(), Some("America/New_York"));
        assert_eq!(l.merged, 1);
        let lines: Vec<usize> = l.rejected.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [6, 7, 8], "{:?}", l.rejected);
        assert!(l.rejected[0].1.contains("not a number"));
        assert!(l.rejected[1].1.contains("2 fields where the header has 4"));
        assert!(l.rejected[2].1.contains("Mars/Base"));
    }

    #[test]
    fn json_lines_are_read_like_csv_rows() {
        let l = parse_jsonl(
            "{\"number\":\"13800000001\",\"name\":\"Wang\",\"amount\":120}\n\n\
             {\"number\":13800000002,\"vip\":true}\nnot json\n[1]\n\
             {\"number\":\"13800000001\"}\n{\"number\":\"x\"}\n{\"number\":\"1\",\"a\":[1]}\n",
        );
        assert_eq!(l.contacts.len(), 2);
        assert_eq!(l.contacts[0].vars()["amount"], "120");
        assert_eq!(l.contacts[1].number, "13800000002");
        assert_eq!(l.contacts[1].vars()["vip"], "true");
        assert_eq!(l.merged, 1);
        let lines: Vec<usize> = l.rejected.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [4, 5, 7, 8], "{:?}", l.rejected);
    }

    #[test]
    fn a_list_without_a_number_column_is_refused() {
        assert!(
            parse("phone,name\n1,a\n")
                .unwrap_err()
                .contains("no `number` column")
        );
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("number,number\n").unwrap_err().contains("twice"));
    }
}

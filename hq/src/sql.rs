//! SQL written once for both databases: headquarters' own tables (the
//! fleet's latest state, telemetry samples, calls and alarms in typed
//! columns, users, the audit log) use only what SQLite and PostgreSQL
//! share — `BIGINT` times in ms, `TEXT`, `DOUBLE PRECISION`, `$n`
//! parameters, `INSERT … ON CONFLICT` — so a statement runs on either.
//! Records and recordings keep their own, tuned, per-database code
//! ([`crate::store`], [`crate::pg`]).
//!
//! PostgreSQL reads integers as `BIGINT` only: every integer column is
//! one, and sums are `CAST(… AS BIGINT)`.

use anyhow::{Context, Result, bail};

/// A statement's parameter, typed even when null (PostgreSQL checks a
/// parameter's type before its value).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `BIGINT`.
    Int(Option<i64>),
    /// `DOUBLE PRECISION`.
    Float(Option<f64>),
    /// `TEXT`.
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Param {
        Param::Int(Some(v))
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Param {
        Param::Int(v)
    }
}
impl From<f64> for Param {
    fn from(v: f64) -> Param {
        Param::Float(Some(v))
    }
}
impl From<Option<f64>> for Param {
    fn from(v: Option<f64>) -> Param {
        Param::Float(v)
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Param {
        Param::Text(Some(v.to_string()))
    }
}
impl From<String> for Param {
    fn from(v: String) -> Param {
        Param::Text(Some(v))
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Param {
        Param::Text(v)
    }
}
impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Param {
        Param::Text(v.map(str::to_string))
    }
}

/// `[p1, p2…]` as parameters.
#[macro_export]
macro_rules! params {
    ($($p:expr),* $(,)?) => { [$($crate::sql::Param::from($p)),*] };
}

/// A value read.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
}

impl Cell {
    /// The integer, if it is one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => Some(*v),
            Cell::Float(f) => Some(*f as i64),
            _ => None,
        }
    }
    /// The text, if it is some.
    pub fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }
    /// As JSON.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(v) => (*v).into(),
            Cell::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Cell::Text(s) => s.clone().into(),
        }
    }
}

/// Rows read.
pub type Rows = Vec<Vec<Cell>>;

/// `$n` placeholders as SQLite's `?n` (SQLite numbers `$n` by order of
/// first appearance, not by `n`).
pub fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_value(p: &Param) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match p {
        Param::Int(Some(v)) => Value::Integer(*v),
        Param::Float(Some(v)) => Value::Real(*v),
        Param::Text(Some(v)) => Value::Text(v.clone()),
        _ => Value::Null,
    }
}

/// Runs a statement on SQLite; rows changed.
pub fn sqlite_exec(conn: &rusqlite::Connection, sql: &str, params: &[Param]) -> Result<u64> {
    let mut stmt = conn.prepare_cached(&sqlite_placeholders(sql))?;
    let n = stmt.execute(rusqlite::params_from_iter(params.iter().map(sqlite_value)))?;
    Ok(n as u64)
}

/// Runs a query on SQLite.
pub fn sqlite_query(conn: &rusqlite::Connection, sql: &str, params: &[Param]) -> Result<Rows> {
    let mut stmt = conn.prepare_cached(&sqlite_placeholders(sql))?;
    let cols = stmt.column_count();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(sqlite_value)))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(cols);
        for i in 0..cols {
            use rusqlite::types::ValueRef;
            row.push(match r.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Float(v),
                ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(_) => bail!("column {i} is a blob"),
            });
        }
        out.push(row);
    }
    Ok(out)
}

fn pg_params(params: &[Param]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
            match p {
                Param::Int(v) => Box::new(*v),
                Param::Float(v) => Box::new(*v),
                Param::Text(v) => Box::new(v.clone()),
            }
        })
        .collect()
}

/// Runs a statement on PostgreSQL; rows changed.
pub fn pg_exec(c: &mut impl postgres::GenericClient, sql: &str, params: &[Param]) -> Result<u64> {
    let owned = pg_params(params);
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = owned.iter().map(|b| &**b).collect();
    c.execute(sql, &refs)
        .with_context(|| format!("running {}", first_line(sql)))
}

/// Runs a query on PostgreSQL.
pub fn pg_query(c: &mut impl postgres::GenericClient, sql: &str, params: &[Param]) -> Result<Rows> {
    use postgres::types::Type;
    let owned = pg_params(params);
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = owned.iter().map(|b| &**b).collect();
    let rows = c
        .query(sql, &refs)
        .with_context(|| format!("running {}", first_line(sql)))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut row = Vec::with_capacity(r.len());
        for (i, col) in r.columns().iter().enumerate() {
            let t = col.type_();
            row.push(if *t == Type::INT8 {
                r.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int)
            } else if *t == Type::INT4 {
                r.get::<_, Option<i32>>(i)
                    .map_or(Cell::Null, |v| Cell::Int(v.into()))
            } else if *t == Type::INT2 {
                r.get::<_, Option<i16>>(i)
                    .map_or(Cell::Null, |v| Cell::Int(v.into()))
            } else if *t == Type::FLOAT8 {
                r.get::<_, Option<f64>>(i).map_or(Cell::Null, Cell::Float)
            } else if *t == Type::FLOAT4 {
                r.get::<_, Option<f32>>(i)
                    .map_or(Cell::Null, |v| Cell::Float(v.into()))
            } else if *t == Type::BOOL {
                r.get::<_, Option<bool>>(i)
                    .map_or(Cell::Null, |v| Cell::Int(v.into()))
            } else if *t == Type::TEXT || *t == Type::VARCHAR || *t == Type::NAME {
                r.get::<_, Option<String>>(i).map_or(Cell::Null, Cell::Text)
            } else {
                bail!(
                    "column {} is of type {t}, which this tool does not read",
                    col.name()
                );
            });
        }
        out.push(row);
    }
    Ok(out)
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_sqlites_numbered_ones_outside_quotes() {
        assert_eq!(
            sqlite_placeholders("SELECT $2, '$1', $1 WHERE x = $10"),
            "SELECT ?2, '$1', ?1 WHERE x = ?10"
        );
    }

    #[test]
    fn sqlite_binds_by_number_whatever_the_order() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let rows = sqlite_query(
            &c,
            "SELECT $2, $1, $2 || 'x', $3",
            &params![1i64, "b", None::<i64>],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![vec![
                Cell::Text("b".into()),
                Cell::Int(1),
                Cell::Text("bx".into()),
                Cell::Null
            ]]
        );
    }
}

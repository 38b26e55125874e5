//! `records` and `recordings`: what the store holds, as a table for people
//! or JSON lines for scripts; `records --table` dumps any other table.

use std::path::Path;

use anyhow::Context;
use callbox_firmware::store;

use crate::Failure;

pub fn table_rows(data: &Path, table: &str) -> Result<(), Failure> {
    use std::io::Write;
    let rows = store::read_table(data, table).map_err(Failure::Store)?;
    let mut out = std::io::stdout().lock();
    for r in rows {
        if writeln!(out, "{r}").is_err() {
            break;
        }
    }
    Ok(())
}

/// `callboxd campaigns`: each campaign's contacts by state and attempts.
pub fn campaigns(data: &Path, json: bool) -> Result<(), Failure> {
    use std::io::Write;
    let db = store::ReadOnly::open(data).map_err(Failure::Store)?;
    let summary = db.campaign_summary().map_err(Failure::Store)?;
    let mut out = std::io::stdout().lock();
    for t in summary {
        let contacts: u64 = t.states.values().sum();
        let line = if json {
            serde_json::json!({
                "campaign": t.name,
                "contacts": contacts,
                "states": t.states,
                "outcomes": t.outcomes,
                "attempts": t.attempts,
            })
            .to_string()
        } else {
            let by: Vec<String> = t.states.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let last: Vec<String> = t.outcomes.iter().map(|(s, n)| format!("{s} {n}")).collect();
            format!(
                "{}: {contacts} contacts ({}), {} attempts; last outcomes: {}",
                t.name,
                by.join(", "),
                t.attempts,
                if last.is_empty() {
                    "none".to_string()
                } else {
                    last.join(", ")
                }
            )
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

pub fn records(data: &Path, json: bool, query: &store::RecordQuery) -> Result<(), Failure> {
    let recs = store::read_records(data, query).map_err(Failure::Store)?;
    if let (Some(id), true) = (&query.call, recs.is_empty()) {
        return Err(Failure::NotFound(format!(
            "no call {id} in {}",
            data.join(store::DB_FILE).display()
        )));
    }
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for r in &recs {
        let mut line = if json {
            serde_json::to_string(r).context("encoding a record")?
        } else {
            format!(
                "{}  {:<8} {:<16} -> {:<12} {:<11} {:>7}  {}",
                r.start,
                r.trunk_line.as_deref().unwrap_or("-"),
                r.caller.as_deref().unwrap_or("unknown"),
                r.dialled.as_deref().unwrap_or("unknown"),
                r.disposition,
                r.duration_ms
                    .map_or("-".into(), |d| format!("{:.1}s", d as f64 / 1000.0)),
                r.hangup_side.as_deref().unwrap_or("-"),
            )
        };
        if !json {
            // One call asked for: its events and recordings under it.
            for e in &r.events {
                line += &format!("\n  {}  {:<18} {}", e.at, e.event, e.data);
            }
            if query.call.is_some() {
                for id in &r.recordings {
                    line += &format!("\n  recording {id}");
                }
            }
        }
        // A closed pipe (`| head`) is not an error worth a message.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

pub fn recordings(data: &Path, json: bool, call: Option<&str>) -> Result<(), Failure> {
    let rows = store::read_recordings(data, call).map_err(Failure::Store)?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for r in &rows {
        let line = if json {
            serde_json::to_string(r).context("encoding a recording")?
        } else {
            format!(
                "{}  {}  {}  {:<9} {:<11} {:>8} {:>12}  {}",
                r.start,
                r.id,
                r.call_id,
                r.kind,
                r.state,
                r.duration_ms
                    .map_or("-".into(), |d| format!("{:.1}s", d as f64 / 1000.0)),
                r.size.map_or("-".into(), |n| format!("{n} B")),
                r.file,
            )
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

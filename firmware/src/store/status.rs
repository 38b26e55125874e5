//! What the box is doing now, as the database shows it: calls in progress
//! and raised alarms, read for telemetry and the `status` command.

use super::{ReadOnly, StoreError};

/// One raise of an alarm not cleared since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedAlarm {
    /// Stable code, e.g. `disk_full`.
    pub code: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// When it was raised, ms since the epoch.
    pub at_ms: i64,
    /// What an operator should know.
    pub message: String,
}

impl ReadOnly {
    /// Calls in progress, counted per trunk line (`None`: a call without
    /// one).
    pub fn calls_in_progress(&self) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        self.read("calls in progress", |c| {
            c.prepare(
                "SELECT trunk_line, COUNT(*) FROM calls WHERE disposition = 'in_progress'
                 GROUP BY trunk_line",
            )?
            .query_map([], |r| {
                Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect()
        })
    }

    /// Every raise of an alarm not cleared since, oldest first (a code
    /// raised again before it was cleared appears once per raise).
    pub fn raised_alarms(&self) -> Result<Vec<RaisedAlarm>, StoreError> {
        self.read("alarms", |c| {
            c.prepare(
                "SELECT code, severity, at_ms, message FROM alarms WHERE cleared_ms IS NULL
                 ORDER BY seq",
            )?
            .query_map([], |r| {
                Ok(RaisedAlarm {
                    code: r.get(0)?,
                    severity: r.get(1)?,
                    at_ms: r.get(2)?,
                    message: r.get(3)?,
                })
            })?
            .collect()
        })
    }
}

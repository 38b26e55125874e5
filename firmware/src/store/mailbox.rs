//! What the voicemail boxes hold, read for the phones: how many messages
//! wait in each box (the lamps and the stutter dial tone) and each box's
//! messages in the order they are played.

use std::collections::HashMap;

use rusqlite::params;

use super::{ReadOnly, StoreError};

/// One message in a voicemail box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Message id (the recording's).
    pub id: String,
    /// Calling number, when known.
    pub caller: Option<String>,
    /// When it was left, wall-clock ms.
    pub at_ms: i64,
    /// Length, ms.
    pub duration_ms: i64,
    /// WAV file, relative to the data directory's recordings.
    pub file: String,
    /// `new` or `saved`.
    pub status: String,
}

impl ReadOnly {
    /// (new, saved) messages per box, for every box that has any.
    pub fn mailbox_counts(&self) -> Result<HashMap<String, (u32, u32)>, StoreError> {
        self.read("voicemail counts", |c| {
            let mut stmt = c.prepare(
                "SELECT mailbox, SUM(status = 'new'), SUM(status = 'saved') FROM voicemail
                 WHERE status != 'deleted' GROUP BY mailbox",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get::<_, u32>(1)?, r.get::<_, u32>(2)?),
                ))
            })?;
            rows.collect()
        })
    }

    /// The messages of `mailbox` not deleted: new ones first, each group
    /// oldest first (the order a phone plays them).
    pub fn mailbox_messages(&self, mailbox: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.read("voicemail messages", |c| {
            let mut stmt = c.prepare(
                "SELECT id, caller, at_ms, duration_ms, file, status FROM voicemail
                 WHERE mailbox = ?1 AND status != 'deleted'
                 ORDER BY status = 'saved', at_ms, seq",
            )?;
            let rows = stmt.query_map(params![mailbox], |r| {
                Ok(StoredMessage {
                    id: r.get(0)?,
                    caller: r.get(1)?,
                    at_ms: r.get(2)?,
                    duration_ms: r.get(3)?,
                    file: r.get(4)?,
                    status: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }
}

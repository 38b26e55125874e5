//! Recordings as the recorder reads them back: finished files retention
//! may delete, and rows the store still has open (a recording cut short by
//! a crash).

use super::{ReadOnly, StoreError};

/// A finished recording's file.
#[derive(Debug, Clone)]
pub struct RecordingFile {
    /// Recording id.
    pub id: String,
    /// File, relative to the data directory.
    pub file: String,
    /// File size, bytes.
    pub size: u64,
    /// When recording started, ms since the epoch.
    pub started_ms: i64,
    /// Whether headquarters confirmed it holds the recording.
    pub delivered: bool,
}

/// A recording the store still has in state `recording`.
#[derive(Debug, Clone)]
pub struct OpenRecording {
    /// Recording id.
    pub id: String,
    /// The call recorded.
    pub call_id: String,
    /// `call` or `voicemail`.
    pub kind: String,
    /// File, relative to the data directory.
    pub file: String,
    /// When recording started, ms since the epoch.
    pub started_ms: i64,
}

impl ReadOnly {
    /// Finished recordings with a file that is not empty and not set aside
    /// as damaged, oldest first, as the store has committed them.
    pub fn finished_recordings(&self) -> Result<Vec<RecordingFile>, StoreError> {
        self.read("finished recordings", |c| {
            c.prepare(
                "SELECT id, file, COALESCE(size, 0), started_ms, delivered FROM recordings
                 WHERE state IN ('complete', 'interrupted', 'failed') AND file != ''
                   AND file NOT LIKE 'recordings/damaged/%' AND COALESCE(size, 0) > 0
                 ORDER BY started_ms, seq",
            )?
            .query_map([], |r| {
                Ok(RecordingFile {
                    id: r.get(0)?,
                    file: r.get(1)?,
                    size: r.get::<_, i64>(2)?.max(0) as u64,
                    started_ms: r.get(3)?,
                    delivered: r.get::<_, i64>(4)? != 0,
                })
            })?
            .collect()
        })
    }

    /// Recordings still in state `recording` that have a file (only
    /// meaningful at start-up, before any new recording).
    pub fn open_recordings(&self) -> Result<Vec<OpenRecording>, StoreError> {
        self.read("open recordings", |c| {
            c.prepare(
                "SELECT id, call_id, kind, file, started_ms FROM recordings
                 WHERE state = 'recording' AND file != ''",
            )?
            .query_map([], |r| {
                Ok(OpenRecording {
                    id: r.get(0)?,
                    call_id: r.get(1)?,
                    kind: r.get(2)?,
                    file: r.get(3)?,
                    started_ms: r.get(4)?,
                })
            })?
            .collect()
        })
    }
}

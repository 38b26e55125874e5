//! What the fleet link has yet to send: outbox rows in order, recordings
//! not yet delivered, and the database's epoch. The link reads through its
//! own read-only connection; every change (deleting acknowledged rows,
//! upload progress) goes through the store thread as a [`StoreMsg`].
//!
//! [`StoreMsg`]: super::StoreMsg

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::{ReadOnly, StoreError};

/// One outbox row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Outbox sequence (global, internal).
    pub seq: i64,
    /// Stream.
    pub stream: String,
    /// Per-stream sequence number (the contract's `seq`).
    pub stream_seq: i64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// JSON payload as stored.
    pub payload: String,
}

/// A recording to upload.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Recordings table `seq` (upload order).
    pub seq: i64,
    /// Recording id.
    pub id: String,
    /// File, absolute.
    pub path: PathBuf,
    /// File, relative to the data directory (as stored).
    pub file: String,
    /// The call.
    pub call_id: String,
    /// `call` or `voicemail`.
    pub kind: String,
    /// Audio format.
    pub format: String,
    /// Encrypted at rest.
    pub encrypted: bool,
    /// SHA-256 when known (encrypted files).
    pub sha256: Option<String>,
    /// How far the upload got.
    pub offset: u64,
}

/// The link's read-only view of the database.
#[derive(Debug)]
pub struct Reader {
    db: ReadOnly,
    data_dir: PathBuf,
}

/// Recordings with a finished file headquarters does not have yet.
const UPLOADABLE: &str = "delivered = 0 AND deleted_ms IS NULL AND size > 0
     AND state IN ('complete', 'interrupted', 'failed')";

impl Reader {
    /// Opens the database the store has created.
    pub fn open(data_dir: &Path) -> Result<Reader, StoreError> {
        let db = ReadOnly::open(data_dir)?;
        // The store may hold the write lock briefly; readers in WAL mode do
        // not wait for it, but a checkpoint can make them retry.
        let _ = db.conn().busy_timeout(std::time::Duration::from_secs(2));
        Ok(Reader {
            db,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The database's epoch (a new database starts a new one).
    pub fn epoch(&self) -> Result<String, StoreError> {
        self.db.read("the epoch", |c| {
            c.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })
        })
    }

    /// Up to `limit` rows after outbox seq `after`, oldest first.
    pub fn rows_after(&self, after: i64, limit: usize) -> Result<Vec<Row>, StoreError> {
        self.db.read("outbox rows", |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, stream, stream_seq, at_ms, payload FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            st.query_map(params![after, limit as i64], |r| {
                Ok(Row {
                    seq: r.get(0)?,
                    stream: r.get(1)?,
                    stream_seq: r.get(2)?,
                    at_ms: r.get(3)?,
                    payload: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    /// The oldest row still in the outbox.
    pub fn oldest(&self) -> Result<Option<i64>, StoreError> {
        self.db.read("the oldest outbox row", |c| {
            c.query_row("SELECT MIN(seq) FROM outbox", [], |r| r.get(0))
        })
    }

    /// Rows waiting in the outbox.
    pub fn backlog(&self) -> Result<i64, StoreError> {
        self.db.read("the outbox backlog", |c| {
            c.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        })
    }

    /// Recordings waiting to be delivered, and their bytes.
    pub fn recording_backlog(&self) -> Result<(i64, i64), StoreError> {
        self.db.read("the recording backlog", |c| {
            c.query_row(
                &format!(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM recordings WHERE {UPLOADABLE}"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    /// The next recording to upload after recordings seq `after`.
    pub fn next_upload(&self, after: i64) -> Result<Option<Pending>, StoreError> {
        self.db.read("the next recording to upload", |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT seq, id, file, call_id, kind, format, encrypted, sha256, upload_offset
                 FROM recordings WHERE {UPLOADABLE} AND seq > ?1 ORDER BY seq LIMIT 1"
            ))?;
            st.query_row(params![after], |r| {
                let file: String = r.get(2)?;
                Ok(Pending {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    path: self.data_dir.join(&file),
                    file,
                    call_id: r.get(3)?,
                    kind: r.get(4)?,
                    format: r.get(5)?,
                    encrypted: r.get(6)?,
                    sha256: r.get(7)?,
                    offset: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
                })
            })
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use crate::store::{Store, StoreMsg};

    #[tokio::test]
    async fn the_link_reads_the_outbox_in_order_and_finished_recordings_to_upload() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        for (stream, ms) in [("notify", 1000), ("lookup", 2000), ("notify", 3000)] {
            h.send(StoreMsg::Outbox {
                stream: stream.into(),
                at: stamp(ms),
                payload: serde_json::json!({"ms": ms}),
            })
            .await;
        }
        h.send(call("c1", 4000)).await;
        h.send(started("open", "c1", 4100)).await;
        h.send(finished("done", "c1", None, 9000).into_msg()).await;
        h.flush().await.unwrap();

        let r = Reader::open(dir.path()).unwrap();
        assert_eq!(r.epoch().unwrap().len(), 16);
        let rows = r.rows_after(0, 10).unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|r| (r.stream.as_str(), r.stream_seq, r.at_ms))
            .collect();
        // The recording's own record comes last.
        assert_eq!(
            seen,
            [
                ("notify", 1, 1000),
                ("lookup", 1, 2000),
                ("notify", 2, 3000),
                ("recording", 1, 9000)
            ]
        );
        assert_eq!(rows[0].payload, r#"{"ms":1000}"#);
        assert_eq!(r.rows_after(rows[1].seq, 1).unwrap()[0].seq, rows[2].seq);
        assert_eq!(r.oldest().unwrap(), Some(rows[0].seq));
        assert_eq!(r.backlog().unwrap(), 4);
        // Only the finished recording is uploadable.
        assert_eq!(r.recording_backlog().unwrap(), (1, 64_044));
        let up = r.next_upload(0).unwrap().expect("a recording to upload");
        assert_eq!(up.id, "done");
        assert_eq!(up.path, dir.path().join("recordings/done.wav"));
        assert_eq!(up.offset, 0);
        assert!(r.next_upload(up.seq).unwrap().is_none());

        h.send(StoreMsg::OutboxAcked {
            rows: vec![rows[0].seq],
        })
        .await;
        h.send(StoreMsg::UploadProgress {
            id: "done".into(),
            offset: 32_000,
        })
        .await;
        h.flush().await.unwrap();
        assert_eq!(r.oldest().unwrap(), Some(rows[1].seq));
        assert_eq!(r.next_upload(0).unwrap().unwrap().offset, 32_000);
        h.send(StoreMsg::RecordingDelivered { id: "done".into() })
            .await;
        h.flush().await.unwrap();
        assert!(r.next_upload(0).unwrap().is_none());
        assert_eq!(r.recording_backlog().unwrap(), (0, 0));
        drop(h);
        store.close().await;
    }
}

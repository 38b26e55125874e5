//! The collector's SQLite database: records stored once each, finished
//! recordings, and the progress of recordings still arriving.
//!
//! ```sql
//! records(site, box, epoch, stream, seq, id, at, data, received_ms,
//!         PRIMARY KEY(site, box, epoch, stream, seq): a key unique per box even
//!         if two boxes ever shared an epoch (a cloned data partition))
//! recordings(site, box, id PRIMARY KEY, call_id, kind, format, encrypted,
//!            size, sha256, file, box_file, received_ms)
//! uploads(box, id, site, size, have, ranges, sha256, last_seen, meta,
//!         started_ms, updated_ms, PRIMARY KEY(box, id))
//! ```
//!
//! The database runs in WAL mode with `synchronous = FULL`, so a commit is
//! on disk before the collector acknowledges what it stored; every write
//! is a `BEGIN IMMEDIATE` transaction, so collectors of one group may share
//! a database file. The handle is owned by one thread (see `collect`).

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::wire::{Meta, Records};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    site TEXT NOT NULL,
    box TEXT NOT NULL,
    epoch TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    at TEXT,
    data TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (site, box, epoch, stream, seq)
);
CREATE TABLE IF NOT EXISTS recordings (
    site TEXT NOT NULL,
    box TEXT NOT NULL,
    id TEXT PRIMARY KEY,
    call_id TEXT,
    kind TEXT,
    format TEXT,
    encrypted INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    file TEXT NOT NULL,
    box_file TEXT,
    received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    box TEXT NOT NULL,
    id TEXT NOT NULL,
    site TEXT NOT NULL,
    size INTEGER NOT NULL,
    have INTEGER NOT NULL,
    ranges TEXT NOT NULL,
    sha256 TEXT,
    last_seen INTEGER NOT NULL,
    meta TEXT,
    started_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (box, id)
);
";

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)
            .with_context(|| format!("--db {}: cannot open it", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .with_context(|| format!("--db {}: not a usable SQLite database", path.display()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!(
                "--db {}: cannot switch to WAL mode (got `{mode}`)",
                path.display()
            );
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        conn.execute_batch(SCHEMA)
            .and_then(|()| conn.execute_batch(crate::fleetdb::SCHEMA))
            .with_context(|| format!("--db {}: creating the tables", path.display()))?;
        Ok(Store { conn })
    }

    /// Opens an existing database for reading (`gaps`, `export`).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("--db {}: cannot open it", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Store { conn })
    }

    /// The connection (headquarters' portable statements).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Starts a write transaction (taking the write lock at once).
    pub fn write(&mut self) -> Result<rusqlite::Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// Every missing range of seqs: 1..max per (site, box, epoch, stream).
    pub fn gaps(&self) -> Result<Vec<Gap>> {
        let mut stmt = self.conn.prepare(
            "SELECT site, box, epoch, stream, seq, prev FROM (
                 SELECT site, box, epoch, stream, seq,
                        LAG(seq, 1, 0) OVER (PARTITION BY site, box, epoch, stream ORDER BY seq) AS prev
                 FROM records)
             WHERE seq > prev + 1
             ORDER BY site, box, epoch, stream, seq",
        )?;
        let rows = stmt.query_map([], |r| {
            let seq: i64 = r.get(4)?;
            let prev: i64 = r.get(5)?;
            Ok(Gap {
                site: r.get(0)?,
                box_id: r.get(1)?,
                epoch: r.get(2)?,
                stream: r.get(3)?,
                from: prev as u64 + 1,
                to: seq as u64 - 1,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Calls `each` with the `data` of every record of `stream`, ordered by
    /// (box, epoch, seq); `site` and `box_id` narrow it down.
    pub fn export(
        &self,
        stream: &str,
        site: Option<&str>,
        box_id: Option<&str>,
        mut each: impl FnMut(&str) -> bool,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT data FROM records
             WHERE stream = ?1 AND (?2 IS NULL OR site = ?2) AND (?3 IS NULL OR box = ?3)
             ORDER BY box, epoch, seq",
        )?;
        let mut rows = stmt.query(params![stream, site, box_id])?;
        while let Some(row) = rows.next()? {
            let data: String = row.get(0)?;
            if !each(&data) {
                break;
            }
        }
        Ok(())
    }
}

/// A missing range of seqs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Site of the record after the gap.
    pub site: String,
    /// Box.
    pub box_id: String,
    /// The box's database generation.
    pub epoch: String,
    /// Stream.
    pub stream: String,
    /// First missing seq.
    pub from: u64,
    /// Last missing seq.
    pub to: u64,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} stream {} epoch {} missing {}..{}",
            self.site, self.box_id, self.stream, self.epoch, self.from, self.to
        )
    }
}

/// The highest seq stored for (box, epoch, stream), 0 if none.
pub fn max_seq(conn: &Connection, box_id: &str, epoch: &str, stream: &str) -> Result<u64> {
    let max: Option<i64> = conn.query_row(
        "SELECT MAX(seq) FROM records WHERE box = ?1 AND epoch = ?2 AND stream = ?3",
        params![box_id, epoch, stream],
        |r| r.get(0),
    )?;
    Ok(max.map_or(0, |m| m as u64))
}

/// The seqs stored for (box, epoch, stream) from `from` to `to`, ascending.
pub fn seqs_between(
    conn: &Connection,
    box_id: &str,
    epoch: &str,
    stream: &str,
    from: u64,
    to: u64,
) -> Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq FROM records WHERE box = ?1 AND epoch = ?2 AND stream = ?3
         AND seq BETWEEN ?4 AND ?5 ORDER BY seq",
    )?;
    let rows = stmt.query_map(
        params![box_id, epoch, stream, from as i64, to as i64],
        |r| r.get::<_, i64>(0),
    )?;
    Ok(rows
        .map(|r| r.map(|s| s as u64))
        .collect::<rusqlite::Result<_>>()?)
}

/// Stores a batch; a record stored before (same key or id) is left as it
/// was. Returns how many were new.
pub fn insert_records(
    conn: &Connection,
    site: &str,
    box_id: &str,
    batch: &Records,
    received_ms: i64,
) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO records
             (site, box, epoch, stream, seq, id, at, data, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut new = 0;
    for r in &batch.records {
        new += stmt.execute(params![
            site,
            box_id,
            batch.epoch,
            batch.stream,
            r.seq as i64,
            r.id,
            r.at,
            r.data,
            received_ms
        ])?;
    }
    Ok(new)
}

/// A recording still arriving.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// Site (for the ack topic).
    pub site: String,
    /// The whole file's size.
    pub size: u64,
    /// Byte ranges held, `[start, end)`, sorted and merged.
    pub ranges: Vec<(u64, u64)>,
    /// The file's SHA-256 from the last chunk.
    pub sha256: Option<String>,
    /// The last chunk (with the checksum) has arrived.
    pub last_seen: bool,
    /// The recording's description, from the first chunk that had one.
    pub meta: Option<Meta>,
    /// When the first chunk arrived.
    pub started_ms: i64,
}

impl Upload {
    /// A new, empty upload.
    pub fn new(site: &str, size: u64, now_ms: i64) -> Upload {
        Upload {
            site: site.to_string(),
            size,
            ranges: Vec::new(),
            sha256: None,
            last_seen: false,
            meta: None,
            started_ms: now_ms,
        }
    }

    /// The bytes held contiguously from the start.
    pub fn have(&self) -> u64 {
        match self.ranges.first() {
            Some(&(0, end)) => end,
            _ => 0,
        }
    }
}

/// The upload of `id` from `box_id`, if one is under way.
pub fn upload(conn: &Connection, box_id: &str, id: &str) -> Result<Option<Upload>> {
    conn.query_row(
        "SELECT site, size, ranges, sha256, last_seen, meta, started_ms
         FROM uploads WHERE box = ?1 AND id = ?2",
        params![box_id, id],
        |r| {
            let ranges: String = r.get(2)?;
            let meta: Option<String> = r.get(5)?;
            Ok(Upload {
                site: r.get(0)?,
                size: r.get::<_, i64>(1)? as u64,
                // A damaged column reads as nothing held: the box resends.
                ranges: serde_json::from_str(&ranges).unwrap_or_default(),
                sha256: r.get(3)?,
                last_seen: r.get(4)?,
                meta: meta.as_deref().map(Meta::from_json),
                started_ms: r.get(6)?,
            })
        },
    )
    .optional()
    .context("reading uploads")
}

/// Saves an upload's progress.
pub fn save_upload(
    conn: &Connection,
    box_id: &str,
    id: &str,
    u: &Upload,
    now_ms: i64,
) -> Result<()> {
    let ranges = serde_json::to_string(&u.ranges)?;
    conn.execute(
        "INSERT OR REPLACE INTO uploads
             (box, id, site, size, have, ranges, sha256, last_seen, meta, started_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            box_id,
            id,
            u.site,
            u.size as i64,
            u.have() as i64,
            ranges,
            u.sha256,
            u.last_seen,
            u.meta.as_ref().map(Meta::to_json),
            u.started_ms,
            now_ms
        ],
    )?;
    Ok(())
}

/// Forgets an upload (finished).
pub fn delete_upload(conn: &Connection, box_id: &str, id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM uploads WHERE box = ?1 AND id = ?2",
        params![box_id, id],
    )?;
    Ok(())
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Site.
    pub site: String,
    /// Box.
    pub box_id: String,
    /// Recording id.
    pub id: String,
    /// From the chunks' `meta`.
    pub meta: Meta,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Where the collector stored it.
    pub file: String,
}

/// Which box a finished recording came from, if it is stored.
pub fn recording_box(conn: &Connection, id: &str) -> Result<Option<String>> {
    conn.query_row(
        "SELECT box FROM recordings WHERE id = ?1",
        params![id],
        |r| r.get(0),
    )
    .optional()
    .context("reading recordings")
}

/// Stores a finished recording's row.
pub fn insert_recording(conn: &Connection, r: &Recording, now_ms: i64) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO recordings
             (site, box, id, call_id, kind, format, encrypted, size, sha256, file, box_file, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            r.site,
            r.box_id,
            r.id,
            r.meta.call_id,
            r.meta.kind,
            r.meta.format,
            r.meta.encrypted,
            r.size as i64,
            r.sha256,
            r.file,
            r.meta.file,
            now_ms
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Record;

    fn batch(epoch: &str, seqs: &[u64]) -> Records {
        Records {
            epoch: epoch.into(),
            stream: "cdr".into(),
            records: seqs
                .iter()
                .map(|&seq| Record {
                    seq,
                    id: format!("{epoch}/cdr/{seq}"),
                    at: None,
                    data: format!(r#"{{"n":{seq}}}"#),
                })
                .collect(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("hq.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn two_boxes_with_the_same_epoch_keep_their_own_records() {
        // A data partition cloned from another box carries its epoch.
        let (_d, mut s) = store();
        let tx = s.write().unwrap();
        for b in ["b1", "b2"] {
            assert_eq!(
                insert_records(&tx, "s", b, &batch("E", &[1, 2]), 1).unwrap(),
                2
            );
        }
        tx.commit().unwrap();
        let mut got = 0;
        s.export("cdr", None, None, |_| {
            got += 1;
            true
        })
        .unwrap();
        assert_eq!(got, 4);
    }

    #[test]
    fn a_record_sent_twice_is_stored_once() {
        let (_d, mut s) = store();
        let tx = s.write().unwrap();
        assert_eq!(
            insert_records(&tx, "s", "b", &batch("E", &[1, 2]), 1).unwrap(),
            2
        );
        assert_eq!(
            insert_records(&tx, "s", "b", &batch("E", &[2, 3]), 2).unwrap(),
            1
        );
        tx.commit().unwrap();
        let mut got = Vec::new();
        s.export("cdr", None, None, |d| {
            got.push(d.to_string());
            true
        })
        .unwrap();
        assert_eq!(got, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    }

    #[test]
    fn gaps_are_every_missing_range_from_one_to_the_max() {
        let (_d, mut s) = store();
        let tx = s.write().unwrap();
        insert_records(&tx, "s", "b", &batch("E1", &[2, 3, 6, 9]), 1).unwrap();
        insert_records(&tx, "s", "b", &batch("E2", &[1, 2, 3]), 1).unwrap();
        insert_records(&tx, "s", "c", &batch("E3", &[1, 3]), 1).unwrap();
        assert_eq!(max_seq(&tx, "b", "E1", "cdr").unwrap(), 9);
        assert_eq!(max_seq(&tx, "b", "E9", "cdr").unwrap(), 0);
        tx.commit().unwrap();
        let gaps: Vec<String> = s.gaps().unwrap().iter().map(|g| g.to_string()).collect();
        assert_eq!(
            gaps,
            [
                "s/b stream cdr epoch E1 missing 1..1",
                "s/b stream cdr epoch E1 missing 4..5",
                "s/b stream cdr epoch E1 missing 7..8",
                "s/c stream cdr epoch E3 missing 2..2",
            ]
        );
    }

    #[test]
    fn upload_progress_round_trips() {
        let (_d, mut s) = store();
        let tx = s.write().unwrap();
        let mut u = Upload::new("s", 100, 5);
        u.ranges = vec![(0, 10), (20, 30)];
        u.sha256 = Some("ab".repeat(32));
        u.last_seen = true;
        u.meta = Some(Meta {
            encrypted: true,
            ..Meta::default()
        });
        save_upload(&tx, "b", "R", &u, 6).unwrap();
        assert_eq!(upload(&tx, "b", "R").unwrap(), Some(u.clone()));
        assert_eq!(u.have(), 10);
        delete_upload(&tx, "b", "R").unwrap();
        assert_eq!(upload(&tx, "b", "R").unwrap(), None);
    }
}

//! The schema and opening the database for writing: migrations run forward
//! at open, a database from newer firmware is refused untouched, and a file
//! SQLite cannot read is moved aside for a fresh one.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode};

use super::{DB_FILE, StoreError};

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // v1: call records
    "CREATE TABLE calls (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             TEXT NOT NULL UNIQUE,
        direction      TEXT NOT NULL,
        trunk_line     TEXT,
        caller         TEXT,
        dialled        TEXT,
        started_ms     INTEGER NOT NULL,
        answered_ms    INTEGER,
        ended_ms       INTEGER,
        disposition    TEXT NOT NULL,
        hangup_cause   TEXT,
        hangup_side    TEXT,
        clock_synced   INTEGER NOT NULL,
        boot_id        TEXT NOT NULL,
        mono_start_ms  INTEGER NOT NULL,
        mono_end_ms    INTEGER
    );
    CREATE INDEX calls_started ON calls(started_ms);",
    // v2: what the IVR did on each call, and the records it produces
    "ALTER TABLE calls ADD COLUMN flow TEXT;
    ALTER TABLE calls ADD COLUMN language TEXT;
    ALTER TABLE calls ADD COLUMN ivr_path TEXT;
    ALTER TABLE calls ADD COLUMN ivr_vars TEXT;
    ALTER TABLE calls ADD COLUMN outcome TEXT;
    ALTER TABLE calls ADD COLUMN survey_score INTEGER;
    ALTER TABLE calls ADD COLUMN connected_to TEXT;
    ALTER TABLE calls ADD COLUMN job TEXT;
    CREATE TABLE voicemail (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        call_id      TEXT NOT NULL,
        mailbox      TEXT NOT NULL,
        caller       TEXT,
        at_ms        INTEGER NOT NULL,
        duration_ms  INTEGER NOT NULL,
        file         TEXT NOT NULL
    );
    CREATE TABLE product_checks (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id         TEXT NOT NULL,
        code            TEXT NOT NULL,
        caller          TEXT,
        at_ms           INTEGER NOT NULL,
        found           INTEGER NOT NULL,
        product_region  TEXT,
        caller_region   TEXT,
        diverted        INTEGER NOT NULL
    );
    CREATE INDEX product_checks_code ON product_checks(code);
    CREATE TABLE callbacks (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id  TEXT NOT NULL,
        number   TEXT NOT NULL,
        queue    TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        status   TEXT NOT NULL
    );
    CREATE TABLE outbox (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        stream   TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        payload  TEXT NOT NULL
    );
    CREATE TABLE outbound_jobs (
        name          TEXT PRIMARY KEY,
        number        TEXT NOT NULL,
        attempts      INTEGER NOT NULL,
        status        TEXT NOT NULL,
        result        TEXT,
        last_call_id  TEXT,
        updated_ms    INTEGER NOT NULL
    );",
    // v3: queues (ACD): what happened to a call in its queue, and the queue
    // event log for headquarters
    "ALTER TABLE calls ADD COLUMN queue TEXT;
    ALTER TABLE calls ADD COLUMN queue_wait_ms INTEGER;
    ALTER TABLE calls ADD COLUMN agent TEXT;
    ALTER TABLE calls ADD COLUMN talk_ms INTEGER;
    ALTER TABLE calls ADD COLUMN queue_exit TEXT;
    ALTER TABLE calls ADD COLUMN wrap_code TEXT;
    CREATE TABLE queue_log (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms    INTEGER NOT NULL,
        call_id  TEXT,
        queue    TEXT,
        agent    TEXT,
        event    TEXT NOT NULL,
        data     TEXT NOT NULL
    );",
    // v4: each call's event log, recordings (a call record points to its
    // recordings), alarms and directory lookups
    "CREATE TABLE call_events (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id  TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        mono_ms  INTEGER NOT NULL,
        event    TEXT NOT NULL,
        data     TEXT NOT NULL
    );
    CREATE INDEX call_events_call ON call_events(call_id);
    CREATE TABLE recordings (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        call_id         TEXT NOT NULL,
        kind            TEXT NOT NULL,
        file            TEXT NOT NULL,
        format          TEXT NOT NULL,
        channels        INTEGER NOT NULL,
        started_ms      INTEGER NOT NULL,
        ended_ms        INTEGER,
        size            INTEGER,
        duration_ms     INTEGER,
        paused_ms       INTEGER NOT NULL DEFAULT 0,
        pauses          TEXT NOT NULL DEFAULT '[]',
        sha256          TEXT,
        encrypted       INTEGER NOT NULL DEFAULT 0,
        state           TEXT NOT NULL,
        delivered       INTEGER NOT NULL DEFAULT 0,
        deleted_ms      INTEGER,
        deleted_reason  TEXT,
        error           TEXT
    );
    CREATE INDEX recordings_call ON recordings(call_id);
    CREATE INDEX recordings_started ON recordings(started_ms);
    CREATE TABLE alarms (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms       INTEGER NOT NULL,
        code        TEXT NOT NULL,
        severity    TEXT NOT NULL,
        message     TEXT NOT NULL,
        cleared_ms  INTEGER
    );
    CREATE TABLE lookups (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id  TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        source   TEXT NOT NULL,
        key      TEXT NOT NULL,
        found    INTEGER NOT NULL
    );",
    // v5: the fleet link. Outbox records get a gap-free number per stream
    // (headquarters spots a missing one), the database an epoch (numbers
    // restart only with a new database) and a connection counter, and
    // recordings remember how far their upload got.
    "ALTER TABLE outbox ADD COLUMN stream_seq INTEGER;
    UPDATE outbox SET stream_seq =
        (SELECT COUNT(*) FROM outbox o WHERE o.stream = outbox.stream AND o.seq <= outbox.seq);
    CREATE TABLE outbox_streams (
        stream    TEXT PRIMARY KEY,
        next_seq  INTEGER NOT NULL
    );
    INSERT INTO outbox_streams (stream, next_seq)
        SELECT stream, MAX(stream_seq) + 1 FROM outbox GROUP BY stream;
    CREATE UNIQUE INDEX outbox_stream_seq ON outbox(stream, stream_seq);
    CREATE TABLE outbox_held (
        seq         INTEGER PRIMARY KEY,
        stream      TEXT NOT NULL,
        stream_seq  INTEGER,
        at_ms       INTEGER NOT NULL,
        payload     TEXT NOT NULL,
        held_ms     INTEGER NOT NULL,
        reason      TEXT NOT NULL
    );
    CREATE TABLE meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('epoch', lower(hex(randomblob(8)))), ('session', '0');
    ALTER TABLE recordings ADD COLUMN upload_offset INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX calls_open ON calls(disposition) WHERE disposition = 'in_progress';",
    // v6: calls agents place from their phones: the station they keyed
    // it on (the `agent` column says who, the direction `internal` or
    // `outbound`); the caller's name from the site's contacts.
    "ALTER TABLE calls ADD COLUMN station TEXT;
    ALTER TABLE calls ADD COLUMN caller_name TEXT;",
    // v7: voicemail boxes: a message is `new` until its owner hears it,
    // then `saved` or `deleted` (kept until delivered, for headquarters).
    "ALTER TABLE voicemail ADD COLUMN status TEXT NOT NULL DEFAULT 'new';
    ALTER TABLE voicemail ADD COLUMN status_at_ms INTEGER;
    CREATE INDEX voicemail_box ON voicemail(mailbox, status);",
    // v8: outbound campaigns: each contact of each campaign, where it
    // stands (`pending`, `in_progress`, `done`, `exhausted`, `dnc`), its
    // attempts (in all and on its local day) and when it is due again.
    "CREATE TABLE campaign_contacts (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        campaign        TEXT NOT NULL,
        number          TEXT NOT NULL,
        name            TEXT,
        tz              TEXT,
        vars            TEXT NOT NULL DEFAULT '{}',
        state           TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        day             TEXT,
        attempts_day    INTEGER NOT NULL DEFAULT 0,
        next_at_ms      INTEGER NOT NULL DEFAULT 0,
        last_attempt_ms INTEGER,
        last_outcome    TEXT,
        last_call_id    TEXT,
        answers         TEXT,
        updated_ms      INTEGER,
        UNIQUE (campaign, number)
    );",
    // v9: the agent's wrap-up code of a campaign contact's last call.
    "ALTER TABLE campaign_contacts ADD COLUMN wrap_code TEXT;
    CREATE INDEX campaign_contacts_call ON campaign_contacts(last_call_id);",
    // v10: the web console's users (argon2id hashes; an agent's name is
    // their agent number), the audit log of what they changed, an agent's
    // notes on a call, and callers' earlier calls found by number.
    "CREATE TABLE console_users (
        name        TEXT PRIMARY KEY,
        role        TEXT NOT NULL,
        hash        TEXT NOT NULL,
        disabled    INTEGER NOT NULL DEFAULT 0,
        updated_ms  INTEGER NOT NULL
    );
    CREATE TABLE console_audit (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms       INTEGER NOT NULL,
        user        TEXT,
        ip          TEXT,
        action      TEXT NOT NULL,
        detail      TEXT NOT NULL
    );
    ALTER TABLE calls ADD COLUMN notes TEXT;
    CREATE INDEX calls_caller ON calls(caller, seq);",
];

/// Opens the database for writing, migrates it and marks calls left in
/// progress interrupted; returns the connection and how many were.
pub(super) fn open_db(path: &Path) -> Result<(Connection, usize), StoreError> {
    let sq = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(sq)?;
    // Until the file has proved usable, closing must not checkpoint a WAL
    // into it or delete the WAL: a refused (newer) or unreadable database
    // and its WAL are left exactly as found.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(sq)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sq)?;
    // The version check comes before anything that writes (switching to
    // WAL rewrites the header): a newer firmware's file stays untouched.
    check_version(&conn, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sq)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sq)?;
    migrate(&mut conn, path)?;
    let interrupted = conn
        .execute(
            "UPDATE calls SET disposition = 'interrupted' WHERE disposition = 'in_progress'",
            [],
        )
        .map_err(sq)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .map_err(sq)?;
    Ok((conn, interrupted))
}

/// Whether SQLite says the file is not a database or is damaged.
pub(super) fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Renames the database (and its `-wal`, `-shm`) to
/// `callbox.db.corrupt-<unix ms>`, never over an existing file; returns the
/// database's new path.
pub(super) fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |source| StoreError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DB_FILE.to_string());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let companions = ["", "-wal", "-shm"];
    // A later suffix if any of the three names is taken.
    let mut stamp = now;
    let suffix = loop {
        let suffix = format!(".corrupt-{stamp}");
        if companions
            .iter()
            .all(|c| !dir.join(format!("{name}{c}{suffix}")).exists())
        {
            break suffix;
        }
        stamp += 1;
    };
    let target = dir.join(format!("{name}{suffix}"));
    for c in companions {
        let from = dir.join(format!("{name}{c}"));
        if from.exists() {
            let to = dir.join(format!("{name}{c}{suffix}"));
            std::fs::rename(&from, &to).map_err(io)?;
        }
    }
    Ok(target)
}

/// Reads the schema version, refusing a database from newer firmware.
pub(super) fn check_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    Ok(version)
}

/// Runs the migrations the database lacks, all in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sq = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let version = check_version(conn, path)?;
    let supported = MIGRATIONS.len() as i64;
    if version == supported {
        return Ok(());
    }
    // All steps in one transaction: a reader (`records`, `export`) opening the
    // file meanwhile sees the old schema or the new one, never a half-built
    // one, and a power cut mid-way leaves the old version to migrate again.
    let tx = conn.transaction().map_err(sq)?;
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql).map_err(sq)?;
    }
    tx.pragma_update(None, "user_version", supported)
        .map_err(sq)?;
    tx.commit().map_err(sq)?;
    tracing::info!(from = version, to = supported, "database schema migrated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use crate::store::*;
    use rusqlite::Connection;

    #[tokio::test]
    async fn a_garbage_database_is_moved_aside_untouched_and_a_fresh_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        // A stray WAL goes with it.
        std::fs::write(dir.path().join("callbox.db-wal"), b"not a wal").unwrap();
        let (store, report) = Store::open(dir.path(), "boot").unwrap();
        let aside = report.moved_aside.clone().expect("moved aside");
        assert_eq!(aside.parent(), Some(dir.path()));
        let name = aside.file_name().unwrap().to_str().unwrap();
        let suffix = name.strip_prefix("callbox.db.corrupt-").expect(name);
        assert!(suffix.parse::<u64>().is_ok(), "{name}");
        assert_eq!(std::fs::read(&aside).unwrap(), garbage);
        assert_eq!(
            std::fs::read(dir.path().join(format!("callbox.db-wal.corrupt-{suffix}"))).unwrap(),
            b"not a wal"
        );
        let h = store.handle();
        h.send(call("fresh", 1000)).await;
        drop(h);
        store.close().await;
        let recs = read_records(dir.path(), &RecordQuery::default()).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].id, "fresh");
        // The copy aside is still untouched, and a healthy database is not
        // moved on the next start.
        assert_eq!(std::fs::read(&aside).unwrap(), garbage);
        let (store, report) = Store::open(dir.path(), "boot").unwrap();
        assert_eq!(report.moved_aside, None);
        store.close().await;
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = Store::open(dir.path(), "boot").unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99);
    }
}

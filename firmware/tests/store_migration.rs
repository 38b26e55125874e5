//! Migrating a real database written by earlier firmware.
//!
//! `fixtures/schema-v3.db` was written by the firmware of issue 4 (a demo
//! run: 10 calls, 1 voicemail). Opening it must carry every record forward
//! to the current schema; a database from newer firmware must be refused and
//! left byte for byte as it was.

use std::path::{Path, PathBuf};

use callbox_firmware::clock::Stamp;
use callbox_firmware::store::{
    self, DB_FILE, MIGRATIONS, RecordQuery, RecordingEnd, Store, StoreError, StoreMsg,
};
use rusqlite::Connection;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v3.db");

/// A copy of the fixture as `callbox.db` in a fresh data directory.
fn copy_fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DB_FILE);
    std::fs::copy(FIXTURE, &db).unwrap();
    (dir, db)
}

type CallRow = (String, String, Option<String>, Option<String>);

/// Every call's id, disposition, queue and agent, in order, read with plain
/// SQL.
fn calls(db: &Path) -> Vec<CallRow> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, disposition, queue, agent FROM calls ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn user_version(db: &Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn stamp(ms: i64) -> Stamp {
    Stamp {
        wall_ms: ms,
        mono_ms: ms,
        synced: true,
    }
}

#[tokio::test]
async fn a_v3_database_migrates_to_the_latest_keeping_every_call() {
    let (dir, db) = copy_fixture();
    assert_eq!(user_version(&db), 3);
    let before = calls(&db);
    assert_eq!(before.len(), 10);

    let (store, report) = Store::open(dir.path(), "boot").unwrap();
    assert_eq!(report.moved_aside, None);
    let call_id = before[0].0.clone();
    let h = store.handle();
    h.send(StoreMsg::RecordingStarted {
        id: "rec-1".into(),
        call_id: call_id.clone(),
        kind: "call",
        file: "recordings/rec-1.wav".into(),
        format: "wav",
        channels: 2,
        at: stamp(1_795_449_700_000),
    })
    .await;
    h.send(StoreMsg::RecordingFinished(RecordingEnd {
        id: "rec-1".into(),
        call_id: call_id.clone(),
        kind: "call".into(),
        file: "recordings/rec-1.wav".into(),
        format: "wav".into(),
        channels: 2,
        started: None,
        at: stamp(1_795_449_730_000),
        state: "complete",
        size: 960_044,
        duration_ms: 30_000,
        paused_ms: 0,
        pauses: Vec::new(),
        sha256: Some("0".repeat(64)),
        encrypted: false,
        error: None,
    }))
    .await;
    drop(h);
    store.close().await;

    assert_eq!(user_version(&db), MIGRATIONS.len() as i64);
    assert_eq!(user_version(&db), 10);
    assert_eq!(calls(&db), before);
    let conn = Connection::open(&db).unwrap();
    for table in ["call_events", "recordings", "alarms", "lookups"] {
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "table {table} missing");
    }
    // v5: the outbox rows the old firmware left are numbered per stream,
    // gap-free, in their order, and new ones continue the count.
    let mut st = conn
        .prepare("SELECT stream, stream_seq FROM outbox ORDER BY seq")
        .unwrap();
    let rows: Vec<(String, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!rows.is_empty());
    let mut next: std::collections::HashMap<&str, i64> = Default::default();
    for (stream, seq) in &rows {
        let n = next.entry(stream).or_insert(1);
        assert_eq!(seq, n, "{rows:?}");
        *n += 1;
    }
    let epoch: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(epoch.len(), 16);
    drop(st);
    // The v3 voicemail row survived too.
    let vm: i64 = conn
        .query_row("SELECT COUNT(*) FROM voicemail", [], |r| r.get(0))
        .unwrap();
    assert_eq!(vm, 1);
    drop(conn);

    let recs = store::read_records(dir.path(), &RecordQuery::default()).unwrap();
    let ids: Vec<_> = recs.iter().map(|r| r.id.clone()).collect();
    let before_ids: Vec<_> = before.iter().map(|c| c.0.clone()).collect();
    assert_eq!(ids, before_ids);
    assert_eq!(recs[0].recordings, ["rec-1"]);
    assert!(recs[1..].iter().all(|r| r.recordings.is_empty()));

    let rows = store::read_recordings(dir.path(), Some(&call_id)).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "rec-1");
    assert_eq!(rows[0].call_id, call_id);
    assert_eq!(rows[0].state, "complete");
    assert_eq!(rows[0].duration_ms, Some(30_000));
    assert_eq!(rows[0].size, Some(960_044));
}

#[test]
fn a_database_from_newer_firmware_is_refused_and_not_rewritten() {
    let (dir, db) = copy_fixture();
    {
        let conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
            .unwrap();
    }
    let bytes = std::fs::read(&db).unwrap();
    let e = Store::open(dir.path(), "boot").unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::TooNew { found, supported, .. }
                if found == supported + 1 && supported == MIGRATIONS.len() as i64
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&db.display().to_string()), "{e}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "database rewritten");
    // Nothing moved aside, no WAL started beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "callbox.db-shm")
        .collect();
    assert_eq!(names, [DB_FILE]);
    // Readers refuse it too.
    assert!(matches!(
        store::read_records(dir.path(), &RecordQuery::default()),
        Err(StoreError::TooNew { .. })
    ));
}

#[test]
fn readers_refuse_a_database_the_daemon_has_not_migrated_yet() {
    let (dir, db) = copy_fixture();
    let e = store::read_records(dir.path(), &RecordQuery::default()).unwrap_err();
    assert!(
        matches!(e, StoreError::TooOld { found: 3, supported, .. } if supported == MIGRATIONS.len() as i64),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&db.display().to_string()), "{msg}");
    assert!(msg.contains("start callboxd once to migrate"), "{msg}");
    assert_eq!(user_version(&db), 3, "a reader migrated the file");
}

#[test]
fn a_migration_that_fails_part_way_leaves_the_old_schema_whole() {
    let (dir, db) = copy_fixture();
    // A table the v5 step creates already exists: v4 would apply, v5 fails.
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE meta (x INTEGER)")
        .unwrap();
    let e = Store::open(dir.path(), "boot").unwrap_err();
    assert!(e.to_string().contains("meta"), "{e}");
    // Nothing of v4 landed either: one transaction or none.
    assert_eq!(user_version(&db), 3);
    let conn = Connection::open(&db).unwrap();
    let v4_tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('call_events', 'recordings')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v4_tables, 0);
    drop(conn);
    assert_eq!(calls(&db).len(), 10);
}
